"""Regression and reproduction tests of one instance, run only in the sandbox (model-written patches and
scripts never run on the host).

- Regression tests: the repository's tests that pass on the original code (found by running them there);
  a candidate's regressions are those that no longer pass with its patch.
- Reproduction test: a model-written script that must print "Issue reproduced" on the original code to be
  kept; a candidate passes it when the script then prints "Issue resolved" with the patch applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from osca.sandbox.container import DockerSandbox, Job, JobResult, Sandbox
from osca.selectors import normalize_code
from osca.verifiers import PatchVerifier, Status, patch_setup, pytest_command, repo_snapshot

__all__ = ["InstanceTests", "PatchOutcome", "REPRODUCED", "RESOLVED"]

REPRODUCED, RESOLVED = "Issue reproduced", "Issue resolved"
SCRIPT = "reproduce_issue.py"


class PatchOutcome(BaseModel):
    applies: bool | None
    """None when nothing ran (no regression tests, no reproduction script)."""
    regressions: list[str] | None = None
    reproduction: bool | None = None

    def as_update(self) -> dict[str, Any]:
        return {"applies": self.applies, "regressions": self.regressions, "reproduction": self.reproduction}


def _says(result: JobResult, phrase: str) -> bool:
    """The script printed `phrase` and finished on its own (a killed run proves nothing)."""
    return result.runner_ok and not (result.timed_out or result.host_killed or result.oom_killed) and \
        phrase in result.output


class InstanceTests:
    """The tests of one checked-out instance. The repository is snapshotted once (`git archive` of HEAD), when
    a job first needs it."""

    def __init__(self, repo: str | Path, *, sandbox: Sandbox | None = None, timeout: float = 60.0,
                 wall_clock: float = 600.0, workers: int = 2) -> None:
        self.repo = Path(repo)
        self.sandbox = sandbox or DockerSandbox()
        self.timeout, self.wall_clock, self.workers = timeout, wall_clock, workers

    @cached_property
    def snapshot(self) -> bytes:
        return repo_snapshot(self.repo)

    def regression_tests(self) -> list[str]:
        """Ids of the repository's tests that pass on the original code."""
        result = self.sandbox.run(Job(files={}, archive=self.snapshot, argv=pytest_command(self.timeout), junit=True,
                                      wall_clock=self.wall_clock))
        return sorted(t for t, outcome in (result.tests or {}).items() if outcome == "passed")

    def run_script(self, script: str, patch: str | None = None) -> JobResult:
        files, setup = patch_setup(patch) if patch else ({}, [])
        return self.sandbox.run(Job(files={**files, SCRIPT: script}, setup=setup, archive=self.snapshot,
                                    argv=["python3", SCRIPT], wall_clock=min(self.wall_clock, 4 * self.timeout)))

    def choose_reproduction(self, scripts: Sequence[str]) -> dict[str, Any]:
        """Run each distinct script on the original code; keep the most common one (normalized) among those
        that reproduce the issue, or None."""
        distinct = list(dict.fromkeys(s for s in scripts if s.strip()))
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(self.run_script, distinct))
        tried = [{"script": s, "reproduced": _says(r, REPRODUCED), "output": r.output[-2000:]}
                 for s, r in zip(distinct, results)]
        good = [t["script"] for t in tried if t["reproduced"]]
        if not good:
            return {"script": None, "tried": tried}
        votes = Counter(normalize_code(s) for s in scripts if s in good)
        best = max(votes.values())
        return {"script": next(s for s in good if votes[normalize_code(s)] == best), "tried": tried}

    def check_patches(self, patches: Mapping[str, str], regression: Sequence[str],
                      script: str | None) -> dict[str, PatchOutcome]:
        """key -> outcome for each distinct patch: does it apply, which regression tests break, does the
        reproduction script call the issue resolved."""
        verifier = PatchVerifier(self.repo, regression, sandbox=self.sandbox, timeout=self.timeout,
                                 wall_clock=self.wall_clock, snapshot=self.snapshot) if regression else None

        def check(patch: str) -> PatchOutcome:
            if verifier is not None:
                verdict = verifier.verify(patch)
                if verdict.status is Status.SETUP_FAILED:
                    return PatchOutcome(applies=False)
                regressions = [t for t in regression if verdict.tests.get(t) != "passed"]
            else:
                regressions = []
            reproduction = None
            if script is not None:
                result = self.run_script(script, patch)
                if result.setup_error:
                    return PatchOutcome(applies=False)
                reproduction = _says(result, RESOLVED) and not _says(result, REPRODUCED)
            ran = verifier is not None or script is not None
            return PatchOutcome(applies=True if ran else None, regressions=regressions, reproduction=reproduction)

        with ThreadPoolExecutor(self.workers) as pool:
            return dict(zip(patches, pool.map(check, patches.values())))
