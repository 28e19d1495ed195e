"""Final patch selection, as Agentless does it: fewest regressions, then the reproduction test, then a
majority vote over normalized patches; `select_patch` is that cascade of osca selectors (`PATCH_SELECTOR`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

from osca.selectors import select_by_score, select_majority

__all__ = ["PATCH_SELECTOR", "PatchCandidate", "Selection", "select_patch", "select_same_patch"]


class PatchCandidate(BaseModel):
    """One repair sample and everything learned about it (a trajectory keeps these)."""

    config: str
    """The repair configuration that drew it (model x temperature x location set)."""
    index: int
    location_set: str
    text: str
    """The model's answer."""
    error: str | None = None
    """Why it yields no patch: the call failed, its edits are malformed or outside the localized lines, ..."""
    patch: str = ""
    """A `git diff` of the edits."""
    edited: dict[str, str] = Field(default_factory=dict, exclude=True)
    """The edited files' new contents, for normalization (left out of trajectories: `patch` has them)."""
    key: str = ""
    """The normalized patch: equal keys are the same change, for testing and voting."""
    applies: bool | None = None
    """Whether the patch applied in the sandbox (None: not tested)."""
    regressions: list[str] | None = None
    """Regression tests that no longer pass with the patch (None: not run)."""
    reproduction: bool | None = None
    """Whether the reproduction script says the issue is resolved with the patch (None: no script)."""


class Selection(BaseModel):
    patch: str
    """The chosen patch ("" when no candidate produced one)."""
    candidate: int | None
    """Its position among the candidates."""
    votes: dict[int, int]
    """Votes among the finalists, by the first candidate (position) of each group of equal normalized patches."""
    reason: str


def _usable(c: PatchCandidate) -> float:
    """A patch that may be chosen: it has a normalized form and did not fail to apply."""
    return 0.0 if c.key and c.applies is not False else -math.inf


def _fewest_regressions(c: PatchCandidate) -> float:
    """Fewer failing regression tests rank higher; a patch they did not run on ranks below every tested one."""
    return -math.inf if c.regressions is None else -len(c.regressions)


def _reproduced(c: PatchCandidate) -> float:
    return 1.0 if c.reproduction else 0.0


class select_same_patch(select_majority):  # noqa: N801  (named like osca's selectors)
    """Keep the most frequent normalized patch (`key`); candidates without one do not vote."""

    def vote(self, candidate: PatchCandidate) -> str | None:  # type: ignore[override]
        return candidate.key or None

    def __repr__(self) -> str:
        return "select_same_patch"


_USABLE, _FEWEST, _REPRODUCED = (select_by_score(_usable), select_by_score(_fewest_regressions),
                                 select_by_score(_reproduced))
_VOTE = select_same_patch()
PATCH_SELECTOR = _USABLE | _FEWEST | _REPRODUCED | _VOTE
"""Agentless's selection as a cascade: each step keeps the candidates it prefers, and keeps them all when it
prefers none (when no patch passes the reproduction test, the vote decides among the rest)."""

_SAID = {
    _USABLE: lambda kept, best: f"{kept} usable",
    _FEWEST: lambda kept, best: "no regression tests run" if best.regressions is None else
    f"{kept} with {len(best.regressions)} regression(s)",
    _REPRODUCED: lambda kept, best: f"{kept} pass the reproduction test" if best.reproduction else
    "none passes the reproduction test",
}
"""What a step that kept `kept` candidates says, given the chosen one (the vote's message is written apart)."""


def select_patch(candidates: Sequence[PatchCandidate]) -> Selection:
    """`PATCH_SELECTOR` over the candidates: the first survivor (the one drawn first) is chosen when it may be
    chosen at all. `votes` counts the normalized patches among the vote's finalists; `reason` says what each
    step kept."""
    pool = list(candidates)
    steps = PATCH_SELECTOR.trace(pool)  # type: ignore[arg-type]
    survivors = steps[-1][1] if steps else pool
    if not survivors or _usable(survivors[0]) < 0:
        return Selection(patch="", candidate=None, votes={}, reason="no candidate produced an applicable patch")
    winner, position = survivors[0], {id(c): i for i, c in enumerate(pool)}
    finalists = steps[-2][1] if len(steps) > 1 and steps[-1][0] is _VOTE else survivors
    votes = Counter(c.key for c in finalists)
    first: dict[str, int] = {}
    for c in finalists:
        first.setdefault(c.key, position[id(c)])
    said = [f"majority {votes[winner.key]} of {len(finalists)}" if step is _VOTE else _SAID[step](len(kept), winner)
            for step, kept in steps]
    reason = "; ".join(said) or "the only candidate"
    return Selection(patch=winner.patch, candidate=position[id(winner)],
                     votes={first[key]: n for key, n in votes.items()}, reason=reason)
