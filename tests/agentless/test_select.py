from __future__ import annotations

import random
from collections import Counter

import pytest

from osca.agents.agentless.graph import AgentlessSettings, default_repair
from osca.agents.agentless.select import PATCH_SELECTOR, PatchCandidate, select_patch


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


def agentless_rule(cands: list[PatchCandidate]) -> int | None:
    """Agentless's selection written out step by step (the oracle the cascade must agree with)."""
    pool = [i for i, c in enumerate(cands) if c.key and c.applies is not False]
    if not pool:
        return None
    tested = [i for i in pool if cands[i].regressions is not None]
    if tested:
        fewest = min(len(cands[i].regressions) for i in tested)
        pool = [i for i in tested if len(cands[i].regressions) == fewest]
    pool = [i for i in pool if cands[i].reproduction] or pool
    votes = Counter(cands[i].key for i in pool)
    return next(i for i in pool if votes[cands[i].key] == max(votes.values()))


def test_the_cascade_chooses_what_agentless_rule_chooses() -> None:
    rng = random.Random(14)
    for _ in range(300):
        cands = [cand(rng.choice(["", "a", "b", "c"]), applies=rng.choice([True, False, None]),
                      regressions=rng.choice([None, (), ("t1",), ("t1", "t2")]),
                      reproduction=rng.choice([None, False, True])) for _ in range(rng.randint(1, 7))]
        sel = select_patch(cands)
        assert sel.candidate == agentless_rule(cands), cands
        assert sel.patch == ("" if sel.candidate is None else cands[sel.candidate].patch)
        if sel.candidate is not None:  # the cascade is an osca selector like any other: it picks the same one
            assert PATCH_SELECTOR(cands)[0] is cands[sel.candidate]


def test_the_reason_says_what_each_step_kept() -> None:
    cands = [cand("", error="bad"), cand("a", regressions=["t1"]), cand("b", reproduction=False),
             cand("b", reproduction=False), cand("c", reproduction=False)]
    sel = select_patch(cands)
    assert sel.candidate == 2 and sel.votes == {2: 2, 4: 1}
    assert sel.reason == ("4 usable; 3 with 0 regression(s); none passes the reproduction test; majority 2 of 3")
    assert [len(kept) for _, kept in PATCH_SELECTOR.trace(cands)] == [4, 3, 3, 2]
    # a cascade stops once one candidate is left
    assert [len(kept) for _, kept in PATCH_SELECTOR.trace([cand("a"), cand("")])] == [1]


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
