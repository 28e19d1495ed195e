"""Final patch selection, as Agentless does it: fewest regressions, then the reproduction test, then a
majority vote over normalized patches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

__all__ = ["PatchCandidate", "Selection", "select_patch"]


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


def select_patch(candidates: Sequence[PatchCandidate]) -> Selection:
    """Keep patches that applied; of those, the ones with the fewest regressions; of those, the ones the
    reproduction test calls resolved (when any are); then the most frequent normalized patch (ties: the one
    drawn first). Returns the first candidate of the winning group."""
    pool = [i for i, c in enumerate(candidates) if c.key and c.applies is not False]
    if not pool:
        return Selection(patch="", candidate=None, votes={}, reason="no candidate produced an applicable patch")
    steps = []
    tested = [i for i in pool if candidates[i].regressions is not None]
    if tested:
        fewest = min(len(candidates[i].regressions or []) for i in tested)
        pool = [i for i in tested if len(candidates[i].regressions or []) == fewest]
        steps.append(f"{len(pool)} with {fewest} regression(s)")
    resolved = [i for i in pool if candidates[i].reproduction]
    if resolved:
        pool = resolved
        steps.append(f"{len(pool)} pass the reproduction test")
    votes = Counter(candidates[i].key for i in pool)
    top = max(votes.values())
    winner = next(i for i in pool if votes[candidates[i].key] == top)
    steps.append(f"majority {top} of {len(pool)}")
    first = {}
    for i in pool:
        first.setdefault(candidates[i].key, i)
    return Selection(patch=candidates[winner].patch, candidate=winner,
                     votes={first[key]: n for key, n in votes.items()}, reason="; ".join(steps))
