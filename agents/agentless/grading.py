"""Grading a patch the way SWE-bench grades it, in the instance's environment image.

One sandbox job per (instance, patch): apply the patch (an empty one is run too: nothing to apply), put the test
files the test patch touches back to the base commit, apply `test_patch`, run the spec's test command on those
files, and read the log with the repository's parser. Ids follow SWE-bench's semantics: a test is the first
whitespace-separated word after its status (so a parametrization holding a space is cut there, as the dataset's
FAIL_TO_PASS / PASS_TO_PASS lists are), and a dataset id cut inside `[...]` matches the ids it is a prefix of when
they agree on pass/fail. A run whose log cannot be trusted (patch not applied, no test output, a timeout, an exit
status that contradicts the log) grades as not applied and unresolved, never as a pass.

    report = grade_patch(instance, patch, sandbox=env_sandbox(instance))
    report.resolved, report.to_swebench()
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

from osca.exceptions import ConfigError
from osca.sandbox.container import DockerSandbox, Job, JobResult, Sandbox
from osca.verifiers import repo_snapshot

from .envs import (BASE_CONTRACT, BASE_SPEC, CONTRACT, EnvSpec, ImageContract, LogFormat, env_sandbox,
                   instance_image, spec_for)
from .swebench import SWEInstance

__all__ = ["InstanceReport", "Outcomes", "eval_script", "evaluate", "grade_log", "grade_patch", "parse_log",
           "touched_test_files"]

PASSED, FAILED, SKIPPED, ERROR, XFAIL = "PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"
_STATUSES = (PASSED, FAILED, SKIPPED, ERROR, XFAIL)
BEGIN, END = ":: osca test output begins ::", ":: osca test output ends ::"
PATCH_FAILED, TEST_PATCH_FAILED = ":: osca: the patch does not apply ::", ":: osca: test_patch does not apply ::"
_EXIT = re.compile(r"^:: osca test exit status (\d+) ::$", re.MULTILINE)
_NOT_TESTS = (".json", ".png", ".csv", ".txt", ".md", ".jpg", ".jpeg", ".pkl", ".yml", ".yaml", ".toml")
_OUTPUT = 450_000  # bytes of test log kept: pytest's summary sits at the end, so the head is what gets cut


# --- logs -----------------------------------------------------------------------------------------------------

def _pytest_line(line: str) -> tuple[str, str] | None:
    """(status, id) from a `-rA` summary line such as `FAILED tests/t.py::test_a - assert 1`."""
    if not line.startswith(_STATUSES):
        return None
    if line.startswith(FAILED):
        line = line.replace(" - ", " ")
    words = line.split()
    if len(words) < 2 or words[0] not in _STATUSES:
        return None
    if words[0] == SKIPPED and re.fullmatch(r"\[\d+\]", words[1]):
        return None  # `SKIPPED [2] file.py:10: reason` counts skips, it names no test
    return words[0], words[1]


def _option_id(test: str) -> str:
    """pytest_options ids: a parametrization that is an absolute path keeps only its last part."""
    m = re.match(r"(.*?)\[(.*)\]", test)
    if not m:
        return test
    main, option = m.groups()
    if option.startswith("/") and not option.startswith("//") and "*" not in option:
        option = "/" + option.split("/")[-1]
    return f"{main}[{option}]"


def _parse_pytest(log: str, options: bool = False) -> dict[str, str]:
    found = {}
    for line in log.split("\n"):
        if (hit := _pytest_line(line)) is not None:
            found[_option_id(hit[1]) if options else hit[1]] = hit[0]
    return found


def _parse_pytest_v2(log: str) -> dict[str, str]:
    """Newer pytest logs: colour codes stripped, the whole rest of the line is the id (spaces kept)."""
    found = {}
    for raw in log.split("\n"):
        line = re.sub(r"\x1b?\[(\d+)m", "", raw)
        line = "".join(c for c in line if ord(c) >= 32 or c == "\t")
        words = line.split(" - ", 1)[0].split() if line.startswith(FAILED) else line.split()
        if len(words) >= 2 and words[0] in _STATUSES and not re.fullmatch(r"\[\d+\]", words[1]):
            found[" ".join(words[1:])] = words[0]
        elif len(words) >= 2 and words[-1] in _STATUSES:  # older pytest: `id STATUS`
            found[" ".join(words[:-1])] = words[-1]
    return found


def _parse_sympy(log: str) -> dict[str, str]:
    """sympy's bin/test: `test_name ok|F|E` lines, and `___ file.py:test_name ___` headers of failures."""
    found = {f"{m[1]}.py:{m[2]}": FAILED for m in re.findall(r"(_*) (.*)\.py:(.*) (_*)", log)}
    for line in log.split("\n"):
        line = line.strip()
        if line.startswith("test_"):
            outcome = {" E": ERROR, " F": FAILED, " ok": PASSED}
            for suffix, status in outcome.items():
                if line.endswith(suffix):
                    found[line.split()[0]] = status
    return found


def _parse_django(log: str) -> dict[str, str]:
    """Django's runner at verbosity 2: `test_x (module.Class) ... ok|FAIL|ERROR|skipped`."""
    found: dict[str, str] = {}
    previous = None
    for line in (raw.strip() for raw in log.split("\n")):
        if " ... " in line:
            previous = line.split(" ... ")[0]
        for suffix in (" ... ok", " ... OK", " ...  OK"):
            if line.endswith(suffix):
                found[line.rsplit(suffix, 1)[0]] = PASSED
                break
        if " ... skipped" in line:
            found[line.split(" ... skipped")[0]] = SKIPPED
        if line.endswith(" ... FAIL"):
            found[line.split(" ... FAIL")[0]] = FAILED
        elif line.endswith(" ... ERROR"):
            found[line.split(" ... ERROR")[0]] = ERROR
        if line.startswith(("FAIL:", "ERROR:")) and len(line.split()) > 1:
            found[line.split()[1].strip()] = FAILED if line.startswith("FAIL:") else ERROR
        if line.startswith("ok") and previous is not None:  # output printed between "..." and "ok"
            found[previous] = PASSED
    return found


def parse_log(log: str, log_format: LogFormat) -> dict[str, str]:
    """Test id -> status (PASSED, FAILED, SKIPPED, ERROR, XFAIL) as SWE-bench's parser for `log_format` reads it.

    Example:
        >>> parse_log("PASSED t.py::test_a[x y]\\nFAILED t.py::test_b - assert 0", "pytest")
        {'t.py::test_a[x': 'PASSED', 't.py::test_b': 'FAILED'}
    """
    if log_format in ("pytest", "pytest_options"):
        return _parse_pytest(log, options=log_format == "pytest_options")
    if log_format == "pytest_v2":
        return _parse_pytest_v2(log)
    if log_format == "sympy":
        return _parse_sympy(log)
    if log_format == "django":
        return _parse_django(log)
    raise ConfigError(f"unknown log format {log_format!r}")


# --- grading --------------------------------------------------------------------------------------------------

_PASSING = (PASSED, XFAIL)


def _status(test: str, statuses: Mapping[str, str]) -> str | None:
    """The status of a dataset id; one cut inside `[...]` takes the ids it prefixes when they agree."""
    if test in statuses:
        return statuses[test]
    if test.count("[") > test.count("]"):
        matches = [k for k in statuses if k.startswith(test)]
        if matches and len({statuses[k] in _PASSING for k in matches}) == 1:
            return statuses[matches[0]]
    return None


class Outcomes(BaseModel):
    success: list[str] = Field(default_factory=list)
    failure: list[str] = Field(default_factory=list)


class InstanceReport(BaseModel):
    """One instance's grade; `to_swebench()` is the harness's report.json entry."""

    instance_id: str
    patch_exists: bool
    patch_successfully_applied: bool
    resolved: bool
    status: Literal["RESOLVED_FULL", "RESOLVED_PARTIAL", "RESOLVED_NO"]
    fail_to_pass: Outcomes = Field(default_factory=Outcomes)
    pass_to_pass: Outcomes = Field(default_factory=Outcomes)
    error: str | None = None
    """Why the log could not be graded (patch not applied, timeout, no test output), when it could not."""
    network: bool = False
    """Whether the tests ran with network access."""
    seconds: float = 0.0

    def to_swebench(self) -> dict[str, object]:
        return {self.instance_id: {
            "patch_is_None": False, "patch_exists": self.patch_exists,
            "patch_successfully_applied": self.patch_successfully_applied, "resolved": self.resolved,
            "tests_status": {"FAIL_TO_PASS": self.fail_to_pass.model_dump(),
                             "PASS_TO_PASS": self.pass_to_pass.model_dump(),
                             "FAIL_TO_FAIL": Outcomes().model_dump(), "PASS_TO_FAIL": Outcomes().model_dump()}}}


def _unusable(log: str, statuses: Mapping[str, str]) -> str | None:
    """Why a log cannot be graded, or None."""
    if PATCH_FAILED in log:
        return "the patch does not apply"
    if TEST_PATCH_FAILED in log:
        return "test_patch does not apply"
    if BEGIN not in log or END not in log:
        return "the test output is incomplete (no begin/end markers: killed, timed out or cut)"
    if not statuses:
        return "no test results in the log"
    exit_status = _EXIT.search(log)
    if exit_status and exit_status.group(1) != "0" and not any(s in (FAILED, ERROR) for s in statuses.values()):
        return f"the tests exited {exit_status.group(1)} yet the log shows no failure"
    return None


def grade_log(instance: SWEInstance, log: str, *, patch: str, spec: EnvSpec | None = None,
              network: bool = False) -> InstanceReport:
    """Grade a test log of `instance` (the output of `eval_script`): FAIL_TO_PASS must pass, PASS_TO_PASS must
    pass or be skipped; all of both is RESOLVED_FULL, some FAIL_TO_PASS with all PASS_TO_PASS is PARTIAL."""
    spec = spec or spec_for(instance)
    body = log.split(BEGIN, 1)[-1].split(END, 1)[0]
    statuses = parse_log(body, spec.log_format) or parse_log(log, spec.log_format)
    why = _unusable(log, statuses)
    base = dict(instance_id=instance.instance_id, patch_exists=bool(patch.strip()), network=network)
    if why is not None:
        return InstanceReport(**base, patch_successfully_applied=False, resolved=False, status="RESOLVED_NO",
                              error=why)
    f2p, p2p = Outcomes(), Outcomes()
    for test in instance.FAIL_TO_PASS:
        (f2p.success if _status(test, statuses) in _PASSING else f2p.failure).append(test)
    for test in instance.PASS_TO_PASS:
        (p2p.success if _status(test, statuses) in (*_PASSING, SKIPPED) else p2p.failure).append(test)
    full = not f2p.failure and not p2p.failure
    partial = bool(f2p.success) and bool(f2p.failure) and not p2p.failure
    return InstanceReport(**base, patch_successfully_applied=True, resolved=full, fail_to_pass=f2p,
                          pass_to_pass=p2p,
                          status="RESOLVED_FULL" if full else "RESOLVED_PARTIAL" if partial else "RESOLVED_NO")


# --- running --------------------------------------------------------------------------------------------------

_DIFF_PATHS = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


def touched_test_files(test_patch: str) -> list[str]:
    """The files the test patch touches, without data files (what the test command is given)."""
    paths = dict.fromkeys(m.group(2) for m in _DIFF_PATHS.finditer(test_patch))
    return [p for p in paths if not p.endswith(_NOT_TESTS)]


def _directives(files: Sequence[str], spec: EnvSpec) -> list[str]:
    if not spec.test_modules:
        return list(files)
    modules = []  # Django's runner: tests/a/b.py -> a.b
    for f in files:
        path = PurePosixPath(f)
        parts = path.with_suffix("").parts
        modules.append(".".join(parts[1:] if parts and parts[0] == "tests" else parts))
    return modules


def eval_script(instance: SWEInstance, *, spec: EnvSpec | None = None, contract: ImageContract = CONTRACT,
                test_command: str | None = None) -> str:
    """The bash script of a grading job: it expects `model.diff` and `test.diff` next to it (in its working
    directory) and prints the test log between the BEGIN/END markers with the test command's exit status."""
    spec = spec or spec_for(instance)
    files = touched_test_files(instance.test_patch)
    quoted = " ".join(map(shlex.quote, files))
    command = test_command or f"{spec.test_cmd} {' '.join(map(shlex.quote, _directives(files, spec)))}"
    return "\n".join([
        "#!/bin/bash",
        "set -uo pipefail",
        'work="$PWD"',
        contract.activate().rstrip("\n"),
        *spec.eval_env,
        'if [ -s "$work/model.diff" ]; then',
        '  git apply -v "$work/model.diff" || patch --batch --fuzz=5 -p1 -i "$work/model.diff" '
        f'|| {{ echo {shlex.quote(PATCH_FAILED)}; exit 1; }}',
        "fi",
        f"for f in {quoted}; do git cat-file -e \"HEAD:$f\" 2>/dev/null && git checkout -q HEAD -- \"$f\"; done",
        f'git apply -v "$work/test.diff" || {{ echo {shlex.quote(TEST_PATCH_FAILED)}; exit 1; }}',
        f'{command} > "$work/test.log" 2>&1',
        "code=$?",
        f"echo {shlex.quote(BEGIN)}",
        f'tail -c {_OUTPUT} "$work/test.log"',
        f'echo; echo ":: osca test exit status $code ::"; echo {shlex.quote(END)}',
        "",
    ])


def grade_patch(instance: SWEInstance, patch: str, *, sandbox: Sandbox, spec: EnvSpec | None = None,
                contract: ImageContract = CONTRACT, wall_clock: float = 1800.0, network: bool = False,
                archive: bytes | None = None) -> tuple[InstanceReport, JobResult]:
    """Run `patch` (possibly empty) against `instance`'s tests in `sandbox` (an environment-image sandbox, see
    `envs`) and grade the log; also returns the job's result (its output is the log).

    Args:
        network: only records that the sandbox gives the tests network (the sandbox decides).
        archive: a snapshot of the repository, for `BASE_CONTRACT` (the repository is not in the image).
    """
    spec = spec or spec_for(instance)
    job = Job(files={"eval.sh": eval_script(instance, spec=spec, contract=contract), "model.diff": patch,
                     "test.diff": instance.test_patch},
              argv=["bash", "eval.sh"], wall_clock=wall_clock, output_tail=_OUTPUT + 20_000, archive=archive)
    result = sandbox.run(job)
    report = grade_log(instance, result.output, patch=patch, spec=spec, network=network)
    if result.timed_out or result.host_killed or not result.runner_ok:
        report = report.model_copy(update={"patch_successfully_applied": False, "resolved": False,
                                           "status": "RESOLVED_NO", "fail_to_pass": Outcomes(),
                                           "pass_to_pass": Outcomes(),
                                           "error": "the tests ran past the wall clock" if result.timed_out
                                           else "the sandbox's result never arrived"})
    return report.model_copy(update={"seconds": round(result.duration, 1)}), result


def evaluate(instances: Sequence[SWEInstance], patches: Mapping[str, str], *, image: str = "env",
             checkout: Callable[[SWEInstance], Path] | None = None, network: bool = False,
             wall_clock: float = 1800.0,
             on_instance: Callable[[InstanceReport, JobResult], None] | None = None) -> dict[str, InstanceReport]:
    """Grade `patches` (instance id -> diff, "" for the empty patch) of `instances`, one after another.

    Args:
        image: "env" (the instance's image from `osca agentless env build`), "swebench" (SWE-bench's own),
            "base" (osca's base sandbox image over `checkout(instance)`: instances without an environment), or
            the name of one image following `envs.CONTRACT`.
        checkout: the instance's repository at its base commit, for `image="base"`.
        network: give the tests network access (SWE-bench's harness does); off unless asked, and recorded.
        on_instance: called with each report and job result as it is done.

    Raises:
        ImageMissing: an environment image is absent (the message names the command that makes it).
        DataError: no spec for an instance's repository/version (except with `image="base"`).
    """
    reports = {}
    for inst in instances:
        patch = patches[inst.instance_id]
        if image == "base":
            if checkout is None:
                raise ConfigError('image="base" grades over a checkout: pass `checkout`')
            options = dict(spec=BASE_SPEC, contract=BASE_CONTRACT, archive=repo_snapshot(checkout(inst)))
            box = DockerSandbox(network=network)
        else:
            tag, contract = instance_image(inst, image)
            options = dict(spec=spec_for(inst), contract=contract)
            box = env_sandbox(tag, contract, network=network)
        with box:
            report, result = grade_patch(inst, patch, sandbox=box, wall_clock=wall_clock, network=network,
                                         **options)  # type: ignore[arg-type]
        reports[inst.instance_id] = report
        if on_instance is not None:
            on_instance(report, result)
    return reports
