"""Verifiers: run a candidate against tests in the sandbox and say, honestly, whether it passed.

A verdict is `passed` only when the sandbox's runner reported back, the test process exited 0, and every
expected test id appears in the report as passed. Anything less is one of the other statuses:

    failed        some expected test failed or errored
    timeout       a test hit its time limit, or the job hit the wall clock
    oom           the job was killed for memory
    setup_failed  the tests could not even be collected (import error, syntax error in the candidate)
    no_report     the report is missing or partial (e.g. the candidate called os._exit before the tests ran)
    error         the verdict cannot be trusted otherwise (report says pass, exit code says no)
"""

from __future__ import annotations

import ast
import asyncio
import io
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from .exceptions import ConfigError
from .sandbox._harness import stand_in_source
from .sandbox.container import DockerSandbox, Job, JobResult, Sandbox, _escapes
from .sandbox.image import ensure_image

__all__ = ["InProcessUnitTestVerifier", "PatchVerifier", "Status", "UnitTestVerifier", "Verdict", "Verifier",
           "check_sandbox", "default_wall_clock", "expected_test_ids", "printable", "patch_paths", "patch_setup", "pytest_command"]


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"
    SETUP_FAILED = "setup_failed"
    NO_REPORT = "no_report"
    ERROR = "error"


class Verdict(BaseModel):
    """The outcome of verifying one candidate."""

    status: Status
    tests: dict[str, str] = Field(default_factory=dict)
    """Per-test outcome as reported: passed, failed, error, skipped, timeout (missing ones: `missing`)."""
    missing: list[str] = Field(default_factory=list)
    """Expected test ids absent from the report."""
    duration: float = 0.0
    detail: str = ""
    """Why the status is what it is, and the tail of the test output."""
    flags: list[str] = Field(default_factory=list)
    """What deserves a second look whatever the status, e.g. a patch that touched tests or pytest configuration
    (`PatchVerifier` restored them before the tests ran)."""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    @property
    def n_passed(self) -> int:
        return sum(outcome == "passed" for outcome in self.tests.values())


@runtime_checkable
class Verifier(Protocol):
    """Anything that turns a candidate (source text) into a `Verdict`. It may also have a cheap `check()`
    that raises when it cannot verify anything (no Docker, no image); the sampler runs it before paying for a
    sample (issue 11)."""

    def verify(self, candidate: str) -> Verdict: ...

    async def averify(self, candidate: str) -> Verdict: ...


def check_sandbox(sandbox: Sandbox) -> None:
    """Raise `SandboxUnavailable` / `ImageMissing` now when `sandbox` cannot run a job: a sandbox's own
    `check()` when it has one, else for Docker whether the daemon answers and the image is there."""
    check = getattr(sandbox, "check", None)
    if check is not None:
        check()
    elif isinstance(sandbox, DockerSandbox):
        ensure_image(sandbox.client, sandbox._image())


TESTS_FILE = "test_solution.py"


def pytest_command(timeout: float, *paths: str) -> list[str]:
    """How the sandbox runs pytest: no cache writes (read-only tree), a per-test timeout, and a JUnit report at
    the runner's `{report}` path (xunit1, whose ids map back to pytest's `file::Class::test`)."""
    return ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
            "--junitxml={report}", f"--timeout={timeout}", "--timeout-method=signal", *paths]


def expected_test_ids(test_source: str, filename: str = TESTS_FILE) -> list[str]:
    """pytest ids of the tests a file defines (`file::test_f`, `file::TestC::test_m`), read with `ast` only:
    the test file is never executed on the host."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError as e:
        raise ConfigError(f"test source does not parse: {e}") from None
    ids = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            ids.append(f"{filename}::{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            ids += [f"{filename}::{node.name}::{m.name}" for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")]
    return ids


_CONTROL = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"       # CSI (7- or 8-bit): cursor moves, clear screen, colours
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC (clipboard, title), DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"                     # other escape sequences, or a lone ESC
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")         # other C0/C1 controls (\r too: it could overwrite a line)


def printable(text: str) -> str:
    """`text` without terminal control sequences, safe to show a person: candidate output can otherwise clear
    the screen, retitle the window or write the clipboard (OSC 52). Newlines and tabs stay."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def judge(result: JobResult, expected: list[str]) -> Verdict:
    """Turn a sandbox job's result into a verdict (see the module docstring for the rules). The detail's output
    tail is `printable`: it comes from the candidate."""
    tail = printable(result.output[-2000:])

    def verdict(status: Status, why: str, tests: dict[str, str] | None = None, missing=()) -> Verdict:
        return Verdict(status=status, tests=tests or {}, missing=list(missing), duration=result.duration,
                       detail=f"{why}\n{tail}".strip())

    if result.timed_out or result.host_killed:
        return verdict(Status.TIMEOUT, "the job ran past its wall clock and was killed", result.tests)
    if result.oom_killed or (result.signal == 9 and result.runner_ok):
        return verdict(Status.OOM, "the job was killed for memory", result.tests)
    if not result.runner_ok:
        return verdict(Status.NO_REPORT, "the sandbox runner's result never arrived")
    if result.setup_error:
        return verdict(Status.SETUP_FAILED, f"setup failed: {result.setup_error}")
    tests = result.tests
    if tests is None:
        if result.exit_code in (2, 3, 4) and ("ERROR collecting" in tail or "Error" in tail):
            return verdict(Status.SETUP_FAILED, "the tests could not be collected")
        return verdict(Status.NO_REPORT, f"no test report ({result.report_error})")
    if "collection_error" in tests.values() or any(t.startswith("<collection>") for t in tests) or (
            result.exit_code == 2 and not tests):
        return verdict(Status.SETUP_FAILED, "the tests could not be collected", tests)
    if any(outcome == "timeout" for outcome in tests.values()):
        return verdict(Status.TIMEOUT, "a test ran past its time limit", tests)
    missing = [e for e in expected if not any(t == e or t.startswith(e + "[") for t in tests)]
    if missing:
        return verdict(Status.NO_REPORT, f"{len(missing)} expected test(s) missing from the report", tests, missing)
    mine = {t: o for t, o in tests.items() if any(t == e or t.startswith(e + "[") for e in expected)}
    if any(outcome in ("failed", "error") for outcome in mine.values()):
        return verdict(Status.FAILED, "some tests failed", tests)
    if any(outcome != "passed" for outcome in mine.values()):
        return verdict(Status.FAILED, "some tests were skipped", tests)
    if result.exit_code != 0:
        return verdict(Status.ERROR, f"the report says pass but pytest exited {result.exit_code}", tests)
    return verdict(Status.PASSED, f"{len(mine)} tests passed", tests)


def default_wall_clock(timeout: float, n_tests: int) -> float:
    """Seconds for a whole run of `n_tests` tests at `timeout` seconds each: every test at its limit, one more
    limit for collection (the candidate loading), and 5 s to start the interpreters."""
    return 5.0 + timeout * (n_tests + 1)


class UnitTestVerifier:
    """Runs pytest tests against a candidate module in the sandbox, the candidate in a process of its own.

    The tests (`test_solution.py`) import `solution` as usual, but get a stand-in: its functions forward each
    call to the candidate, which runs in a separate process under another uid (`osca.sandbox._harness`).
    Arguments, results and exceptions cross as plain data only (numbers, strings, bytes, and lists, tuples,
    dicts and sets of them); a result that is not plain data, such as an object equal to everything, fails
    the test. The candidate can neither see the tests nor reach pytest, its report or the runner. What it
    cannot do either: return an instance of its own class (use `InProcessUnitTestVerifier`), or mutate an
    argument in place for the test to see.

    Args:
        tests: pytest source.
        sandbox: where to run (default: a fresh hardened container per verification).
        timeout: seconds per test (pytest-timeout), and for the candidate to load.
        wall_clock: seconds for the whole run, collection included (default: `default_wall_clock`).
    """

    def __init__(self, tests: str, *, sandbox: Sandbox | None = None, timeout: float = 10.0,
                 wall_clock: float | None = None) -> None:
        self.tests = tests
        self.expected = expected_test_ids(tests)
        if not self.expected:
            raise ConfigError("the test source defines no test functions (test_* / Test*.test_*)")
        if timeout <= 0 or (wall_clock is not None and wall_clock <= 0):
            raise ConfigError(f"timeout and wall clock must be > 0 seconds, got {timeout} and {wall_clock}")
        self.sandbox = sandbox or DockerSandbox()
        self.timeout = timeout
        self.wall_clock = wall_clock if wall_clock is not None else default_wall_clock(timeout, len(self.expected))
        self.test_command = pytest_command(timeout, TESTS_FILE)

    def check(self) -> None:
        """Raise before any sample is paid for when the sandbox cannot run the tests (`check_sandbox`)."""
        check_sandbox(self.sandbox)

    def job(self, candidate: str) -> Job:
        return Job(files={"solution.py": stand_in_source(self.timeout), TESTS_FILE: self.tests},
                   candidate=candidate, argv=self.test_command, wall_clock=self.wall_clock, junit=True)

    def verify(self, candidate: str) -> Verdict:
        return judge(self.sandbox.run(self.job(candidate)), self.expected)

    async def averify(self, candidate: str) -> Verdict:
        return await asyncio.to_thread(self.verify, candidate)


class InProcessUnitTestVerifier(UnitTestVerifier):
    """An explicit opt-in: the candidate is imported whole into the pytest process, for candidates the tests
    must use as objects (classes with state, callbacks, arguments mutated in place).

    What it does NOT defend against: sharing pytest's process, the candidate can make pytest report anything.
    It can patch pytest at import (`Function.runtest = lambda self: None`), return an object equal to
    everything, rewrite the tests and run pytest again, or write the report itself. The sandbox still holds
    (no network, read-only root, limits, the wall clock, no reach into the runner or its result line), so the
    host stays safe; but a `passed` from this verifier only means that the candidate did not try to cheat.
    """

    def job(self, candidate: str) -> Job:
        return Job(files={"solution.py": candidate, TESTS_FILE: self.tests}, argv=self.test_command,
                   wall_clock=self.wall_clock, junit=True)


def patch_paths(patch: str) -> list[str]:
    """Every path a unified diff names (old and new sides, renames and copies), `a/` / `b/` prefixes removed."""
    paths = []
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            parts = line[len("diff --git "):].split(" ")
            paths += [p for p in (parts[0], parts[-1]) if p]
        elif line.startswith(("--- ", "+++ ")):
            name = line[4:].split("\t")[0].strip()
            if name != "/dev/null":
                paths.append(name)
        elif line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
            paths.append(line.split(" ", 2)[2].strip())
    return [p[2:] if p.startswith(("a/", "b/")) else p for p in paths]


def _escaping(paths: list[str]) -> list[str]:
    return sorted({p for p in paths if _escapes(PurePosixPath(p))})


def repo_snapshot(repo: str | Path, revision: str = "HEAD") -> bytes:
    """A tar of the repository's files at `revision` (`git archive`; untracked files are not included)."""
    proc = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", revision], capture_output=True)
    if proc.returncode != 0:
        raise ConfigError(f"cannot snapshot {repo} at {revision}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def patch_setup(*patches: str) -> tuple[dict[str, str], list[list[str]]]:
    """Files and setup commands of a sandbox job that applies `patches` in order to its working directory."""
    names = [f".osca-patch-{i}.diff" for i in range(len(patches))]
    return (dict(zip(names, patches)),
            [["git", "apply", "--verbose", "--whitespace=nowarn", name] for name in names])


# pytest's configuration files, and the section pytest reads in each (None: the whole file).
PYTEST_CONFIG = {"pytest.ini": None, "pyproject.toml": "tool.pytest", "setup.cfg": "tool:pytest", "tox.ini": "pytest"}
_SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def is_test_path(path: str) -> bool:
    """Whether a repository path belongs to the tests: `conftest.py`, `test_*.py`, `*_test.py`, or anything
    under a `tests`, `test` or `testing` directory."""
    p = PurePosixPath(path)
    return (p.name == "conftest.py" or (p.suffix == ".py" and (p.name.startswith("test_") or p.stem.endswith("_test")))
            or any(part in ("tests", "test", "testing") for part in p.parts[:-1]))


def _file_sections(patch: str) -> list[tuple[list[str], str]]:
    """A unified diff cut into one section per file: (the paths it names, its text)."""
    lines = patch.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("diff --git ")]
    if not starts:  # a plain unified diff: each file starts at its `--- ` line
        starts = [i for i, line in enumerate(lines) if line.startswith("--- ")
                  and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")]
    bounds = list(zip(starts, [*starts[1:], len(lines)]))
    return [(patch_paths(text := "".join(lines[a:b])), text) for a, b in bounds]


def _touches_pytest_section(section_text: str, original: str | None, section: str | None) -> bool:
    """Whether a file's diff changes lines inside pytest's `section` of it (or adds that section)."""
    if section is None:
        return True
    headers = [(n, m.group(1)) for n, line in enumerate((original or "").splitlines(), 1)
               if (m := _SECTION.match(line))]

    def inside(line_no: int) -> bool:
        names = [name for n, name in headers if n <= line_no]
        return bool(names) and names[-1].startswith(section)

    old = 0
    for line in section_text.splitlines():
        if m := _HUNK.match(line):
            old = int(m.group(1))
        elif line.startswith(" "):
            old += 1
        elif line.startswith("-") and not line.startswith("---"):
            if inside(old):
                return True
            old += 1
        elif line.startswith("+") and not line.startswith("+++"):
            header = _SECTION.match(line[1:])
            if (header and header.group(1).startswith(section)) or inside(max(old - 1, 1)):
                return True
    return False


def _apply_on_host(snapshot: bytes, patch: str) -> bytes:
    """`snapshot` with a trusted `patch` (the instance's test patch, never a candidate's) applied."""
    with tempfile.TemporaryDirectory(prefix="osca-instance-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(snapshot)) as tar:
            tar.extractall(tmp, filter="tar")
        for argv in (["git", "init", "-q"], ["git", "apply", "--whitespace=nowarn", "-"]):
            proc = subprocess.run(argv, cwd=tmp, input=patch.encode(), capture_output=True)
            if proc.returncode != 0:
                raise ConfigError(f"the test patch does not apply: {proc.stderr.decode(errors='replace').strip()}")
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for name in sorted(p.name for p in Path(tmp).iterdir() if p.name != ".git"):
                tar.add(Path(tmp) / name, arcname=name)
        return out.getvalue()


class PatchVerifier:
    """Applies a candidate unified diff to a repository snapshot in the sandbox and runs the tests that must
    pass (SWE-bench's FAIL_TO_PASS + PASS_TO_PASS).

    A patch that names a path outside the repository is rejected before anything runs; one that does not
    apply is `setup_failed`. Both say why in `Verdict.detail`.

    The tests are the instance's, not the candidate's (issue 12): the instance is the snapshot with
    `test_patch` applied; the candidate's changes to test files (`is_test_path`), `conftest.py` or pytest's
    configuration files (`PYTEST_CONFIG`) are dropped, such files are restored from the instance, and the test
    process can neither change, remove nor replace them. A patch that tried is flagged in `Verdict.flags`
    (test files; configuration when it touched pytest's section). What this cannot defend against: the code
    under test IS the candidate and runs inside pytest's process, as in SWE-bench's own harness, so a patch
    can still patch pytest at import, return objects equal to everything, or write the report itself.

    Args:
        repo: a git repository on the host (its files at `revision` are copied, never mounted).
        tests: pytest ids that must pass, e.g. ``["tests/test_calc.py::test_add"]``.
        test_command: the command that runs them and writes a JUnit report to ``{report}``; by default pytest
            on the test files the ids name.
        test_patch: the instance's diff adding the tests that must now pass (SWE-bench's `test_patch`); it is
            applied on the host, to the snapshot, once.
        sandbox: where to run (default: a fresh hardened container per verification).
        snapshot: a `repo_snapshot` of `repo` already taken (a large repository is then archived only once).
    """

    def __init__(self, repo: str | Path, tests: Sequence[str], *, revision: str = "HEAD",
                 test_command: Sequence[str] | None = None, sandbox: Sandbox | None = None,
                 timeout: float = 30.0, wall_clock: float = 300.0, test_patch: str | None = None,
                 snapshot: bytes | None = None) -> None:
        if not tests:
            raise ConfigError("a patch verifier needs the ids of the tests that must pass")
        self.expected = list(tests)
        snapshot = snapshot if snapshot is not None else repo_snapshot(repo, revision)
        self.instance = _apply_on_host(snapshot, test_patch) if test_patch else snapshot
        files = list(dict.fromkeys(t.split("::")[0] for t in self.expected))
        with tarfile.open(fileobj=io.BytesIO(self.instance)) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            self._configs = {name: tar.extractfile(m).read().decode("utf-8", "replace")  # type: ignore[union-attr]
                             for name, m in members.items() if PurePosixPath(name).name in PYTEST_CONFIG}
        self._protected = ({name for name in members if self._protects(name)} | set(files)
                           | set(patch_paths(test_patch or "")))
        self.test_command = list(test_command) if test_command else pytest_command(timeout, *files)
        self.sandbox = sandbox or DockerSandbox()
        self.wall_clock = wall_clock
        self.test_patch = test_patch

    @staticmethod
    def _protects(path: str) -> bool:
        return is_test_path(path) or PurePosixPath(path).name in PYTEST_CONFIG

    def check(self) -> None:
        """Raise before any sample is paid for when the sandbox cannot run the tests (`check_sandbox`)."""
        check_sandbox(self.sandbox)

    def _split(self, patch: str) -> tuple[str, list[str]]:
        """(the patch without its sections on protected paths, flags saying what those sections touched)."""
        kept, tests, configs = [], set(), set()
        for paths, text in _file_sections(patch):
            if not any(self._protects(p) or p in self._protected for p in paths):
                kept.append(text)
                continue
            for p in paths:
                name = PurePosixPath(p).name
                if name in PYTEST_CONFIG:
                    if _touches_pytest_section(text, self._configs.get(p), PYTEST_CONFIG[name]):
                        configs.add(p)
                elif self._protects(p) or p in self._protected:
                    tests.add(p)
        flags = []
        if tests:
            flags.append(f"the patch touches test files (restored before the tests ran): {', '.join(sorted(tests))}")
        if configs:
            flags.append("the patch touches pytest configuration (restored before the tests ran): "
                         + ", ".join(sorted(configs)))
        return "".join(kept), flags

    def job(self, patch: str) -> Job:
        kept, _ = self._split(patch)
        files, setup = patch_setup(kept) if kept.strip() else ({}, [])
        protect = sorted(self._protected | {p for p in patch_paths(patch) if self._protects(p)})
        return Job(files=files, archive=self.instance, setup=setup, argv=self.test_command,
                   wall_clock=self.wall_clock, junit=True, protect=protect)

    def verify(self, patch: str) -> Verdict:
        paths = patch_paths(patch)
        escaping = _escaping(paths)
        if escaping:
            return Verdict(status=Status.SETUP_FAILED,
                           detail=f"patch names paths outside the repository: {', '.join(escaping)}")
        if not paths:
            return Verdict(status=Status.SETUP_FAILED, detail="not a unified diff: it names no file")
        verdict = judge(self.sandbox.run(self.job(patch)), self.expected)
        return verdict.model_copy(update={"flags": self._split(patch)[1]})

    async def averify(self, patch: str) -> Verdict:
        return await asyncio.to_thread(self.verify, patch)
