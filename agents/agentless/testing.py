"""Regression and reproduction tests of one instance, run only in the sandbox (model-written patches and
scripts never run on the host).

- Regression tests: the tests, in the test files near the localized files, that pass on the original code
  (found by running them there, each with a time limit; a file that fails to import is reported and skipped,
  the others still run); a candidate's regressions are those that no longer pass with its patch.
- Reproduction test: a model-written script that must print "Issue reproduced" on the original code to be
  kept; a candidate passes it when the script then prints "Issue resolved" with the patch applied.

Both run either in osca's base image over a snapshot of the checkout, or, given an `InstanceEnv`, in the
instance's environment image, in place in its /testbed with its env active (see `envs.ImageContract`).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field

from osca.sandbox.container import DockerSandbox, Job, JobResult, Sandbox
from osca.selectors import normalize_code
from osca.verifiers import patch_setup, pytest_command, repo_snapshot

from .envs import CONTRACT, EnvSpec, ImageContract, env_sandbox, instance_image, spec_for
from .grading import ERROR, PASSED, parse_log
from .swebench import SWEInstance

__all__ = ["InstanceEnv", "InstanceTests", "PatchOutcome", "REPRODUCED", "RESOLVED", "Regression", "instance_tests",
           "near_test_files"]

REPRODUCED, RESOLVED = "Issue reproduced", "Issue resolved"
SCRIPT = "reproduce_issue.py"
_PATCH_FAILED = ":: osca: the patch does not apply ::"
_TIMEOUT_PLUGIN = "osca_test_timeout"
# A per-test time limit for environments without pytest-timeout: SIGALRM fails the test that overruns.
_TIMEOUT_SOURCE = '''import os, signal
import pytest

LIMIT = float(os.environ.get("OSCA_TEST_TIMEOUT", "60"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def expire(signum, frame):
        pytest.fail("Timeout > %ss (osca per-test limit)" % LIMIT, pytrace=False)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, LIMIT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
'''


class PatchOutcome(BaseModel):
    applies: bool | None
    """None when nothing ran (no regression tests, no reproduction script)."""
    regressions: list[str] | None = None
    reproduction: bool | None = None

    def as_update(self) -> dict[str, Any]:
        return {"applies": self.applies, "regressions": self.regressions, "reproduction": self.reproduction}


class Regression(BaseModel):
    """What regression-test discovery found, and why when it found nothing."""

    tests: list[str] = Field(default_factory=list)
    """Ids of the tests that pass on the original code."""
    files: list[str] = Field(default_factory=list)
    """The test files run (those near the localized files)."""
    collection_errors: list[str] = Field(default_factory=list)
    """Test files that could not be collected (a missing dependency, say); the others still ran."""
    note: str | None = None
    """Why there are no regression tests, when there are none."""


@dataclass(frozen=True)
class InstanceEnv:
    """The instance's environment image: tests run there in place, as SWE-bench runs them."""

    image: str
    spec: EnvSpec
    contract: ImageContract = CONTRACT


def _says(result: JobResult, phrase: str) -> bool:
    """The script printed `phrase` and finished on its own (a killed run proves nothing)."""
    return result.runner_ok and not (result.timed_out or result.host_killed or result.oom_killed) and \
        phrase in result.output


_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")


def near_test_files(repo: Path, localized: Iterable[str], limit: int = 8) -> list[str]:
    """The repository's test files most related to the `localized` source files, best first, at most `limit`:
    named after one of them (`test_app.py` for `app.py`) or after its package (`test_mark.py` for
    `mark/evaluate.py`), else importing one of them (or its package) by name.

    Example:
        >>> near_test_files(Path("flask"), ["src/flask/app.py"])  # doctest: +SKIP
        ['tests/test_app.py', 'tests/test_basic.py', ...]
    """
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "*.py"], capture_output=True, text=True,
                            check=False).stdout.split()
    tests = [f for f in listed if _TEST_FILE.search(f)]
    sources = [PurePosixPath(f) for f in localized if not _TEST_FILE.search(f)]
    # (name, weight when a test file is named after it, weight when a test file imports it)
    names = [(p.stem, 10, 2) for p in sources if p.stem != "__init__"]
    names += [(p.parent.name, 6, 1) for p in sources if p.parent.name not in ("", "src", "lib")]
    scores: Counter[str] = Counter()
    for test in tests:
        named = PurePosixPath(test).stem.removeprefix("test_").removesuffix("_test")
        try:
            text = (repo / test).read_text(errors="replace")
        except OSError:
            continue
        for name, by_name, by_import in names:
            scores[test] += by_name * (named == name) + by_import * bool(
                re.search(rf"\b(import|from)\s+[\w.]*\b{re.escape(name)}\b", text))
    ranked = sorted((t for t, score in scores.items() if score > 0), key=lambda t: (-scores[t], t))
    return ranked[:limit]


class InstanceTests:
    """The tests of one checked-out instance. The repository is snapshotted once (`git archive` of HEAD), when
    a job first needs it (not at all in an environment image, which holds the repository itself)."""

    def __init__(self, repo: str | Path, *, sandbox: Sandbox | None = None, timeout: float = 60.0,
                 wall_clock: float = 600.0, workers: int = 2, env: InstanceEnv | None = None) -> None:
        self.repo = Path(repo)
        self.env = env
        self.sandbox = sandbox or DockerSandbox()
        self.timeout, self.wall_clock, self.workers = timeout, wall_clock, workers

    @cached_property
    def snapshot(self) -> bytes:
        return repo_snapshot(self.repo)

    # --- jobs -------------------------------------------------------------------------------------------------

    def _in_env(self, patch: str | None, command: str, files: Mapping[str, str] = {},
                wall_clock: float | None = None) -> JobResult:
        """Run `command` in /testbed of the environment image with the env active, after applying `patch`."""
        assert self.env is not None
        script = "\n".join([
            "#!/bin/bash", 'work="$PWD"', self.env.contract.activate().rstrip("\n"),
            f'if [ -s "$work/patch.diff" ]; then git apply -v "$work/patch.diff" || '
            f'{{ echo {shlex.quote(_PATCH_FAILED)}; exit 97; }}; fi',
            command, ""])
        return self.sandbox.run(Job(files={**files, "run.sh": script, "patch.diff": patch or ""},
                                    argv=["bash", "run.sh"], wall_clock=wall_clock or self.wall_clock,
                                    output_tail=400_000))

    def _pytest(self, files: Sequence[str], patch: str | None = None) -> tuple[JobResult, dict[str, str]]:
        """Run pytest on `files` (each test under the per-test limit, past collection errors): the job's
        result and test id -> status (SWE-bench's statuses: PASSED, FAILED, ERROR, ...)."""
        quoted = " ".join(map(shlex.quote, files))
        if self.env is not None:
            command = (f'PYTHONPATH="$work${{PYTHONPATH:+:$PYTHONPATH}}" OSCA_TEST_TIMEOUT={self.timeout:g} '
                       f"python -m pytest -rA -p {_TIMEOUT_PLUGIN} --continue-on-collection-errors {quoted}")
            result = self._in_env(patch, command, {f"{_TIMEOUT_PLUGIN}.py": _TIMEOUT_SOURCE})
            return result, parse_log(result.output, self.env.spec.log_format)
        patch_files, setup = patch_setup(patch) if patch else ({}, [])
        result = self.sandbox.run(Job(files=patch_files, setup=setup, archive=self.snapshot, junit=True,
                                      argv=[*pytest_command(self.timeout, *files), "--continue-on-collection-errors"],
                                      wall_clock=self.wall_clock))
        junit = {"passed": PASSED, "collection_error": ERROR}
        return result, {t.removeprefix("<collection>::"): junit.get(o, o.upper())
                        for t, o in (result.tests or {}).items()}

    # --- regression -------------------------------------------------------------------------------------------

    def regression_tests(self, localized: Sequence[str]) -> Regression:
        """The tests near the `localized` files that pass on the original code."""
        files = near_test_files(self.repo, localized)
        if not files:
            return Regression(note=f"no test file near the localized files ({', '.join(localized) or 'none'})")
        result, statuses = self._pytest(files)
        # only ids of the files run: -rA also prints the captured output of passing tests, in which a test
        # that runs pytest itself shows its inner run's summary lines
        ran = {t: s for t, s in statuses.items() if t.split("::")[0] in files}
        errors = sorted(t for t, s in ran.items() if s == ERROR and "::" not in t)
        passed = sorted(t for t, s in ran.items() if s == PASSED)
        note = None
        if not passed:
            why = ("the run was killed on its wall clock" if result.timed_out else
                   f"collection failed in {', '.join(errors)}" if errors else "no test passed on the original code")
            note = f"no regression tests: {why} ({result.output[-300:].strip()})"
        return Regression(tests=passed, files=files, collection_errors=errors, note=note)

    # --- reproduction -----------------------------------------------------------------------------------------

    def run_script(self, script: str, patch: str | None = None) -> JobResult:
        wall_clock = min(self.wall_clock, 4 * self.timeout)
        if self.env is not None:
            # run from the repository's root, importing from it, as the script would be in a checkout
            return self._in_env(patch, f'PYTHONPATH="$PWD${{PYTHONPATH:+:$PYTHONPATH}}" python "$work/{SCRIPT}"',
                                {SCRIPT: script}, wall_clock)
        files, setup = patch_setup(patch) if patch else ({}, [])
        return self.sandbox.run(Job(files={**files, SCRIPT: script}, setup=setup, archive=self.snapshot,
                                    argv=["python3", SCRIPT], wall_clock=wall_clock))

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

    # --- candidates -------------------------------------------------------------------------------------------

    def _applies(self, result: JobResult) -> bool:
        return not result.setup_error and _PATCH_FAILED not in result.output

    def check_patches(self, patches: Mapping[str, str], regression: Regression,
                      script: str | None) -> dict[str, PatchOutcome]:
        """key -> outcome for each distinct patch: does it apply, which regression tests break (the same
        files are run again with the patch), does the reproduction script call the issue resolved."""

        def check(patch: str) -> PatchOutcome:
            regressions: list[str] = []
            if regression.tests:
                result, statuses = self._pytest(regression.files, patch)
                if not self._applies(result):
                    return PatchOutcome(applies=False)
                regressions = [t for t in regression.tests if statuses.get(t) != PASSED]
            reproduction = None
            if script is not None:
                result = self.run_script(script, patch)
                if not self._applies(result):
                    return PatchOutcome(applies=False)
                reproduction = _says(result, RESOLVED) and not _says(result, REPRODUCED)
            ran = bool(regression.tests) or script is not None
            return PatchOutcome(applies=True if ran else None, regressions=regressions, reproduction=reproduction)

        with ThreadPoolExecutor(self.workers) as pool:
            return dict(zip(patches, pool.map(check, patches.values())))


def instance_tests(instance: SWEInstance, repo: str | Path, *, image: str | None = None,
                   sandbox: Sandbox | None = None, **options: Any) -> InstanceTests:
    """The instance's tests: in osca's base image over the checkout (`image` None, on `sandbox`), or in its
    environment image (`image` "env", "swebench" or a name: see `envs.instance_image`)."""
    if image is None:
        return InstanceTests(repo, sandbox=sandbox, **options)
    tag, contract = instance_image(instance, image)
    return InstanceTests(repo, sandbox=env_sandbox(tag, contract), env=InstanceEnv(tag, spec_for(instance), contract),
                         **options)
