from __future__ import annotations

import pytest

from osca.agents.agentless.graph import AgentlessSettings, default_repair
from osca.agents.agentless.select import PatchCandidate, select_patch


def cand(key: str, *, regressions=(), reproduction=None, applies=True, error=None) -> PatchCandidate:
    return PatchCandidate(config="c", index=0, location_set="s", text="", key=key, patch=f"diff {key}",
                          regressions=None if regressions is None else list(regressions),
                          reproduction=reproduction, applies=applies, error=error)


def test_fewest_regressions_beat_the_majority() -> None:
    cands = [cand("a", regressions=["t1"]), cand("a", regressions=["t1"]), cand("b")]
    sel = select_patch(cands)
    assert sel.candidate == 2 and sel.patch == "diff b"


def test_reproduction_beats_the_majority_among_equal_regressions() -> None:
    cands = [cand("a", reproduction=False), cand("a", reproduction=False), cand("b", reproduction=True)]
    assert select_patch(cands).candidate == 2


def test_majority_then_first_drawn_breaks_ties() -> None:
    assert select_patch([cand("a"), cand("b"), cand("b")]).candidate == 1
    sel = select_patch([cand("a"), cand("b")])
    assert sel.candidate == 0 and sel.votes == {0: 1, 1: 1}


def test_untested_candidates_fall_back_to_the_vote_and_unusable_ones_are_never_chosen() -> None:
    cands = [cand("", error="edit: malformed"), cand("x", applies=False), cand("y", regressions=None)]
    assert select_patch(cands).candidate == 2
    none = select_patch([cand("", error="bad"), cand("x", applies=False)])
    assert none.patch == "" and none.candidate is None


def test_a_reproduction_failure_does_not_remove_every_candidate() -> None:
    """When no candidate passes the reproduction test, the regression-free ones still go to the vote."""
    sel = select_patch([cand("a", reproduction=False), cand("b", reproduction=False), cand("b", reproduction=False)])
    assert sel.candidate == 1


def test_settings_reject_location_sets_beyond_the_samples() -> None:
    with pytest.raises(ValueError, match="location set"):
        AgentlessSettings(model="m", edit_samples=2, location_sets={"far": [3]})
    configs, alloc = default_repair("m", ["loc_merged_0-1", "loc_merged_2-3"], temperatures=(0.4, 0.8))
    assert len(configs) == 4 and alloc.total == 8
    assert {c.prompt_variant for c in configs} == {"loc_merged_0-1", "loc_merged_2-3"}


def test_agent_rejects_an_allocation_over_unknown_configurations() -> None:
    from osca.agents.agentless.graph import Agentless
    from osca import Allocation, ConfigError

    configs, _ = default_repair("m", ["loc_merged_0-1"])
    with pytest.raises(ConfigError, match="gpt4o_0.8"):
        Agentless(AgentlessSettings(model="m"), configs, Allocation({"gpt4o_0.8": 2}))
