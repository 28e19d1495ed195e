"""Verifiers without Docker: test-id discovery, the sandbox job a verifier builds, the verdict rules (through a
fake sandbox that returns scripted results), and the runner's JUnit parsing (on small XML files)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from osca import ConfigError
from osca.sandbox import _harness, _runner
from osca.sandbox.container import Job, JobResult
from osca.verifiers import (InProcessUnitTestVerifier, Status, UnitTestVerifier, Verdict, Verifier,
                            default_wall_clock, expected_test_ids, printable)

TESTS = textwrap.dedent("""\
    import pytest
    from solution import add


    def helper():
        return 1


    def test_a():
        assert add(1, 2) == 3


    async def test_async():
        assert add(0, 0) == 0


    class TestAdd:
        def test_m(self):
            assert add(2, 2) == 4

        def helper_method(self):
            pass


    class Helper:
        def test_not_collected(self):
            pass
    """)

EXPECTED = ["test_solution.py::test_a", "test_solution.py::test_async", "test_solution.py::TestAdd::test_m"]
CANDIDATE = "def add(a, b):\n    return a + b\n"



class FakeSandbox:
    """Returns a scripted `JobResult` and records every `Job` it was given."""

    def __init__(self, result: JobResult) -> None:
        self.result = result
        self.jobs: list[Job] = []

    def run(self, job: Job) -> JobResult:
        self.jobs.append(job)
        return self.result


def all_passed(**overrides: object) -> JobResult:
    fields: dict[str, object] = dict(runner_ok=True, exit_code=0, duration=1.5, output="3 passed in 0.01s\n",
                                     tests={e: "passed" for e in EXPECTED})
    fields.update(overrides)
    return JobResult(**fields)


def verify(result: JobResult, tests: str = TESTS) -> tuple[Verdict, FakeSandbox]:
    box = FakeSandbox(result)
    return UnitTestVerifier(tests, sandbox=box).verify(CANDIDATE), box  # type: ignore[arg-type]


# --- expected_test_ids ----------------------------------------------------------------------------------------

def test_expected_ids_functions_async_and_test_classes_in_source_order() -> None:
    assert expected_test_ids(TESTS) == EXPECTED


def test_expected_ids_use_the_given_filename() -> None:
    assert expected_test_ids("def test_x(): pass\n", "test_other.py") == ["test_other.py::test_x"]


def test_expected_ids_ignore_helpers_non_test_classes_and_nested_functions() -> None:
    source = textwrap.dedent("""\
        def check(): pass
        x_test = 1
        class Suite:
            def test_hidden(self): pass
        def test_outer():
            def test_inner(): pass
        class TestK:
            x = 1
            def setup_method(self): pass
            async def test_am(self): pass
        """)
    assert expected_test_ids(source) == ["test_solution.py::test_outer", "test_solution.py::TestK::test_am"]


def test_expected_ids_of_source_without_tests_is_empty() -> None:
    assert expected_test_ids("def f(): pass\nclass C: pass\n") == []


def test_expected_ids_syntax_error_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="does not parse"):
        expected_test_ids("def test_a(:\n    pass\n")


def test_verifier_rejects_tests_that_define_no_tests() -> None:
    box = FakeSandbox(all_passed())
    with pytest.raises(ConfigError, match="no test functions"):
        UnitTestVerifier("def helper():\n    return 1\n", sandbox=box)  # type: ignore[arg-type]
    assert box.jobs == []


def test_verifier_rejects_unparsable_tests() -> None:
    with pytest.raises(ConfigError):
        UnitTestVerifier("def test_a(:\n", sandbox=FakeSandbox(all_passed()))  # type: ignore[arg-type]


def test_verifier_records_expected_ids() -> None:
    verifier = UnitTestVerifier(TESTS, sandbox=FakeSandbox(all_passed()))  # type: ignore[arg-type]
    assert verifier.expected == EXPECTED
    assert isinstance(verifier, Verifier)


# --- the job --------------------------------------------------------------------------------------------------

def test_job_files_argv_and_limits() -> None:
    verifier = UnitTestVerifier(TESTS, sandbox=FakeSandbox(all_passed()),  # type: ignore[arg-type]
                                timeout=7.5, wall_clock=42.0)
    job = verifier.job(CANDIDATE)
    # The tests get a stand-in; the candidate itself travels apart, to run in its own process.
    assert job.files == {"solution.py": _harness.stand_in_source(7.5), "test_solution.py": TESTS}
    assert job.candidate == CANDIDATE and job.candidate_module == "solution"
    assert job.argv[:3] == ["python3", "-m", "pytest"]
    assert "--junitxml={report}" in job.argv
    assert "--timeout=7.5" in job.argv
    assert job.argv[-1] == "test_solution.py"
    # _runner._test_id reads xunit1 attributes (file, classname): the job must ask pytest for that family.
    assert "junit_family=xunit1" in job.argv
    assert job.junit is True
    assert job.wall_clock == 42.0


def test_job_default_timeout_is_formatted_without_trailing_zero() -> None:
    job = UnitTestVerifier(TESTS, sandbox=FakeSandbox(all_passed())).job(CANDIDATE)  # type: ignore[arg-type]
    assert [a for a in job.argv if a.startswith("--timeout=")] == ["--timeout=10.0"]
    assert job.wall_clock == default_wall_clock(10.0, len(EXPECTED)) == 45.0


def test_wall_clock_follows_the_timeout_and_the_number_of_tests() -> None:
    one = UnitTestVerifier("def test_a(): pass\n", sandbox=FakeSandbox(all_passed()), timeout=5)  # type: ignore[arg-type]
    assert one.wall_clock == 15.0
    assert UnitTestVerifier(TESTS, sandbox=FakeSandbox(all_passed()), timeout=5).wall_clock == 25.0  # type: ignore[arg-type]


@pytest.mark.parametrize("limits", [{"timeout": 0}, {"timeout": -1}, {"wall_clock": 0}])
def test_non_positive_limits_are_config_errors(limits: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="must be > 0"):
        UnitTestVerifier(TESTS, sandbox=FakeSandbox(all_passed()), **limits)  # type: ignore[arg-type]


def test_in_process_opt_in_puts_the_candidate_beside_the_tests() -> None:
    job = InProcessUnitTestVerifier(TESTS, sandbox=FakeSandbox(all_passed())).job(CANDIDATE)  # type: ignore[arg-type]
    assert job.files == {"solution.py": CANDIDATE, "test_solution.py": TESTS}
    assert job.candidate is None


def test_verify_sends_the_verifiers_job_to_the_sandbox() -> None:
    _, box = verify(all_passed())
    assert len(box.jobs) == 1
    assert box.jobs[0].candidate == CANDIDATE
    assert box.jobs[0].files["test_solution.py"] == TESTS


# --- judge rules ----------------------------------------------------------------------------------------------

def test_all_expected_passed_and_exit_zero_is_passed() -> None:
    verdict, _ = verify(all_passed())
    assert verdict.status is Status.PASSED
    assert verdict.passed
    assert verdict.n_passed == 3
    assert verdict.tests == {e: "passed" for e in EXPECTED}
    assert verdict.missing == []
    assert verdict.duration == 1.5
    assert "3 passed" in verdict.detail


@pytest.mark.parametrize("bad", ["failed", "error"])
def test_a_failed_or_errored_test_fails(bad: str) -> None:
    tests = {e: "passed" for e in EXPECTED} | {"test_solution.py::test_async": bad}
    verdict, _ = verify(all_passed(exit_code=1, tests=tests))
    assert verdict.status is Status.FAILED
    assert not verdict.passed
    assert verdict.n_passed == 2
    assert verdict.tests["test_solution.py::test_async"] == bad


def test_a_failure_is_failed_even_when_exit_code_is_zero() -> None:
    tests = {e: "passed" for e in EXPECTED} | {"test_solution.py::test_a": "failed"}
    verdict, _ = verify(all_passed(exit_code=0, tests=tests))
    assert verdict.status is Status.FAILED


def test_a_skipped_expected_test_is_never_a_pass() -> None:
    tests = {e: "passed" for e in EXPECTED} | {"test_solution.py::TestAdd::test_m": "skipped"}
    verdict, _ = verify(all_passed(exit_code=0, tests=tests))
    assert verdict.status is Status.FAILED
    assert not verdict.passed
    assert "skipped" in verdict.detail


def test_an_expected_id_missing_from_the_report_is_no_report() -> None:
    tests = {e: "passed" for e in EXPECTED if not e.endswith("test_async")}
    verdict, _ = verify(all_passed(tests=tests))
    assert verdict.status is Status.NO_REPORT
    assert verdict.missing == ["test_solution.py::test_async"]
    assert not verdict.passed


def test_an_empty_report_lists_every_expected_id_as_missing() -> None:
    verdict, _ = verify(all_passed(tests={}))
    assert verdict.status is Status.NO_REPORT
    assert verdict.missing == EXPECTED


def test_no_report_written_with_exit_zero_is_no_report() -> None:
    verdict, _ = verify(all_passed(tests=None, report_error="no report written"))
    assert verdict.status is Status.NO_REPORT
    assert "no report written" in verdict.detail
    assert verdict.tests == {}


def test_runner_result_never_arrived_is_no_report() -> None:
    # Even a plausible-looking report does not count when the runner's own result line never arrived.
    verdict, _ = verify(JobResult(runner_ok=False, output="garbage", tests={e: "passed" for e in EXPECTED}))
    assert verdict.status is Status.NO_REPORT
    assert verdict.tests == {}
    assert not verdict.passed


@pytest.mark.parametrize("flag", ["timed_out", "host_killed"])
def test_wall_clock_kill_is_timeout(flag: str) -> None:
    verdict, _ = verify(all_passed(exit_code=None, signal=9, **{flag: True}))
    assert verdict.status is Status.TIMEOUT


def test_host_killed_without_runner_result_is_timeout() -> None:
    verdict, _ = verify(JobResult(runner_ok=False, host_killed=True))
    assert verdict.status is Status.TIMEOUT


def test_a_test_hitting_its_time_limit_is_timeout() -> None:
    tests = {e: "passed" for e in EXPECTED} | {"test_solution.py::test_a": "timeout"}
    verdict, _ = verify(all_passed(exit_code=1, tests=tests))
    assert verdict.status is Status.TIMEOUT
    assert verdict.tests["test_solution.py::test_a"] == "timeout"


def test_oom_killed_is_oom() -> None:
    verdict, _ = verify(all_passed(oom_killed=True, exit_code=None, signal=9))
    assert verdict.status is Status.OOM


def test_oom_killed_without_runner_result_is_oom() -> None:
    verdict, _ = verify(JobResult(runner_ok=False, oom_killed=True))
    assert verdict.status is Status.OOM


def test_signal_9_is_oom() -> None:
    verdict, _ = verify(all_passed(exit_code=None, signal=9, tests=None, report_error="no report written"))
    assert verdict.status is Status.OOM


def test_timeout_takes_precedence_over_oom() -> None:
    verdict, _ = verify(all_passed(timed_out=True, oom_killed=True))
    assert verdict.status is Status.TIMEOUT


def test_a_collection_error_outcome_is_setup_failed() -> None:
    tests = {"<collection>::test_solution": "collection_error"}
    verdict, _ = verify(all_passed(exit_code=2, tests=tests, output="ERROR collecting test_solution.py\n"))
    assert verdict.status is Status.SETUP_FAILED


def test_a_collection_id_is_setup_failed_whatever_its_outcome() -> None:
    tests = {e: "passed" for e in EXPECTED} | {"<collection>::test_solution": "error"}
    verdict, _ = verify(all_passed(exit_code=2, tests=tests))
    assert verdict.status is Status.SETUP_FAILED


def test_exit_2_with_empty_report_is_setup_failed() -> None:
    verdict, _ = verify(all_passed(exit_code=2, tests={}))
    assert verdict.status is Status.SETUP_FAILED


def test_no_report_and_collection_errors_in_output_is_setup_failed() -> None:
    output = "ERROR collecting test_solution.py\nSyntaxError: invalid syntax\n"
    verdict, _ = verify(all_passed(exit_code=2, tests=None, output=output))
    assert verdict.status is Status.SETUP_FAILED


def test_report_says_pass_but_exit_code_one_is_error() -> None:
    verdict, _ = verify(all_passed(exit_code=1))
    assert verdict.status is Status.ERROR
    assert not verdict.passed
    assert "exited 1" in verdict.detail


def test_parametrized_ids_satisfy_the_expected_id() -> None:
    tests = {"test_solution.py::test_a[1-2]": "passed", "test_solution.py::test_a[3-4]": "passed",
             "test_solution.py::test_async": "passed", "test_solution.py::TestAdd::test_m": "passed"}
    verdict, _ = verify(all_passed(tests=tests))
    assert verdict.status is Status.PASSED
    assert verdict.missing == []
    assert verdict.n_passed == 4


def test_a_failing_parametrized_case_fails() -> None:
    tests = {"test_solution.py::test_a[1-2]": "passed", "test_solution.py::test_a[3-4]": "failed",
             "test_solution.py::test_async": "passed", "test_solution.py::TestAdd::test_m": "passed"}
    verdict, _ = verify(all_passed(exit_code=1, tests=tests))
    assert verdict.status is Status.FAILED


def test_a_prefix_sharing_id_does_not_satisfy_the_expected_id() -> None:
    # test_ab is not a parametrization of test_a.
    tests = {e: "passed" for e in EXPECTED if e != "test_solution.py::test_a"} | {"test_solution.py::test_ab": "passed"}
    verdict, _ = verify(all_passed(tests=tests))
    assert verdict.status is Status.NO_REPORT
    assert verdict.missing == ["test_solution.py::test_a"]


def test_extra_unexpected_ids_do_not_block_a_pass() -> None:
    tests = {e: "passed" for e in EXPECTED} | {"test_solution.py::test_generated": "failed",
                                                 "conftest.py::test_other": "skipped"}
    verdict, _ = verify(all_passed(tests=tests))
    assert verdict.status is Status.PASSED
    assert verdict.tests == tests
    assert verdict.n_passed == 3


def test_detail_keeps_only_the_tail_of_long_output() -> None:
    output = "HEAD-MARKER" + "x" * 5000 + "TAIL-MARKER"
    verdict, _ = verify(all_passed(output=output))
    assert "TAIL-MARKER" in verdict.detail
    assert "HEAD-MARKER" not in verdict.detail


def test_averify_gives_the_same_verdict() -> None:
    tests = {e: "passed" for e in EXPECTED} | {"test_solution.py::test_a": "failed"}
    box = FakeSandbox(all_passed(exit_code=1, tests=tests))
    verifier = UnitTestVerifier(TESTS, sandbox=box)  # type: ignore[arg-type]
    sync = verifier.verify(CANDIDATE)
    asynchronous = asyncio.run(verifier.averify(CANDIDATE))
    assert asynchronous == sync
    assert asynchronous.status is Status.FAILED
    assert len(box.jobs) == 2 and box.jobs[0] == box.jobs[1]


def test_verdict_properties() -> None:
    verdict = Verdict(status=Status.FAILED, tests={"a": "passed", "b": "failed", "c": "passed", "d": "skipped"})
    assert verdict.n_passed == 2
    assert not verdict.passed
    assert Verdict(status=Status.PASSED).passed
    assert Verdict(status=Status.PASSED).n_passed == 0
    assert Status("no_report") is Status.NO_REPORT


# --- the runner's JUnit parsing -------------------------------------------------------------------------------

def write_junit(tmp_path: Path, cases: str) -> Path:
    path = tmp_path / "report.xml"
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="pytest" errors="0" '
                    f'failures="0" skipped="0" tests="1" time="0.1">{cases}</testsuite></testsuites>\n')
    return path


def case(name: str, body: str = "", *, classname: str = "test_solution", file: str = "test_solution.py") -> str:
    attrs = f'classname="{classname}" name="{name}" file="{file}" line="1" time="0.001"'
    return f"<testcase {attrs}>{body}</testcase>" if body else f"<testcase {attrs}/>"


def test_read_junit_outcomes_and_ids(tmp_path: Path) -> None:
    path = write_junit(tmp_path, "".join([
        case("test_a"),
        case("test_b", '<failure message="assert 1 == 2">def test_b(): ...</failure>'),
        case("test_c", '<error message="failed on setup with &quot;fixture&quot;">boom</error>'),
        case("test_d", '<skipped type="pytest.skip" message="nope">skip</skipped>'),
        case("test_e", '<failure message="Failed: Timeout &gt;10.0s">+++ Timeout +++</failure>'),
        case("test_m", classname="test_solution.TestAdd"),
        case("test_p[1-2]"),
    ]))
    tests, error = _runner._read_junit(str(path))
    assert error is None
    assert tests == {
        "test_solution.py::test_a": "passed",
        "test_solution.py::test_b": "failed",
        "test_solution.py::test_c": "error",
        "test_solution.py::test_d": "skipped",
        "test_solution.py::test_e": "timeout",
        "test_solution.py::TestAdd::test_m": "passed",
        "test_solution.py::test_p[1-2]": "passed",
    }


def test_read_junit_collection_error(tmp_path: Path) -> None:
    path = write_junit(tmp_path, '<testcase classname="" name="test_solution" time="0.000">'
                                 '<error message="collection failure">ImportError: no solution</error></testcase>')
    tests, error = _runner._read_junit(str(path))
    assert error is None
    assert tests == {"<collection>::test_solution": "collection_error"}


def test_read_junit_keeps_the_worst_outcome_of_a_repeated_test(tmp_path: Path) -> None:
    path = write_junit(tmp_path, "".join([
        case("test_a"),
        case("test_a", '<error message="failed on teardown">td</error>'),
        case("test_b", '<failure message="assert False">x</failure>'),
        case("test_b", '<error message="failed on teardown">td</error>'),
        case("test_c", '<skipped message="s">s</skipped>'),
        case("test_c", '<error message="failed on teardown">td</error>'),
    ]))
    tests, _ = _runner._read_junit(str(path))
    assert tests == {"test_solution.py::test_a": "error", "test_solution.py::test_b": "failed",
                     "test_solution.py::test_c": "error"}


def test_read_junit_unreadable_reports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<testsuites><testsuite>")
    tests, error = _runner._read_junit(str(bad))
    assert tests is None
    assert error is not None and error.startswith("report unreadable")
    tests, error = _runner._read_junit(str(tmp_path / "absent.xml"))
    assert tests is None
    assert error is not None and error.startswith("report unreadable")


def test_read_junit_empty_suite(tmp_path: Path) -> None:
    assert _runner._read_junit(str(write_junit(tmp_path, ""))) == ({}, None)


def test_outcome_timeout_text_and_skip_precedence() -> None:
    import xml.etree.ElementTree as ET

    def outcome(xml: str) -> str:
        return _runner._outcome(ET.fromstring(xml))

    assert outcome('<testcase name="t"/>') == "passed"
    assert outcome('<testcase name="t"><failure message="m">Timeout &gt;5s</failure></testcase>') == "timeout"
    assert outcome('<testcase name="t"><error message="Timeout &gt;5s"/></testcase>') == "timeout"
    # A skip reason that mentions a timeout is still a skip.
    assert outcome('<testcase name="t"><skipped message="Timeout &gt;5s"/></testcase>') == "skipped"
    assert outcome('<testcase name="t"><failure message="Timeout"/></testcase>') == "failed"
    assert outcome('<testcase name="t"><error message="collection failure"/></testcase>') == "collection_error"


def test_outcome_recognises_pytest_timeout_2_4_message() -> None:
    import xml.etree.ElementTree as ET

    xml = ('<testcase name="t"><failure message="Failed: Timeout (&gt;0.5s) from pytest-timeout.">'
           'E       Failed: Timeout (&gt;0.5s) from pytest-timeout.</failure></testcase>')
    assert _runner._outcome(ET.fromstring(xml)) == "timeout"


def test_test_id_shapes() -> None:
    import xml.etree.ElementTree as ET

    def test_id(attrs: str) -> str:
        return _runner._test_id(ET.fromstring(f"<testcase {attrs}/>"))

    assert test_id('classname="test_solution" name="test_a" file="test_solution.py"') == "test_solution.py::test_a"
    assert (test_id('classname="test_solution.TestC" name="test_m" file="test_solution.py"')
            == "test_solution.py::TestC::test_m")
    assert (test_id('classname="test_solution.TestC.TestInner" name="test_m" file="test_solution.py"')
            == "test_solution.py::TestC::TestInner::test_m")
    assert (test_id('classname="pkg.test_x.TestC" name="test_m" file="pkg/test_x.py"')
            == "pkg/test_x.py::TestC::test_m")
    assert test_id('classname="" name="test_solution"') == "<collection>::test_solution"


def test_runner_ids_match_expected_ids(tmp_path: Path) -> None:
    """What the runner reads back from an xunit1 report is what `expected_test_ids` expects."""
    path = write_junit(tmp_path, "".join([
        case("test_a"), case("test_async"), case("test_m", classname="test_solution.TestAdd")]))
    tests, _ = _runner._read_junit(str(path))
    assert tests is not None
    assert sorted(tests) == sorted(EXPECTED)
    verdict, _ = verify(all_passed(tests=tests))
    assert verdict.status is Status.PASSED


def run_on_host(tmp_path: Path, tests: str, candidate: str, *, timeout: float = 30) -> tuple[JobResult, str]:
    """Run a verifier's job with the host's pytest and the candidate in a process of its own, as the runner
    does it but without Docker, uids or sandbox, and read the report with the runner."""
    verifier = UnitTestVerifier(tests, sandbox=FakeSandbox(all_passed()), timeout=timeout)  # type: ignore[arg-type]
    job = verifier.job(candidate)
    job.files["solution.py"] = _harness.stand_in_source(timeout, _harness.__file__)
    for name, text in job.files.items():
        (tmp_path / name).write_text(text)
    report = tmp_path / "report.xml"
    argv = [sys.executable if a == "python3" else a.replace("{report}", str(report)) for a in job.argv]
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    theirs, ours = socket.socketpair()
    with theirs, ours, subprocess.Popen([sys.executable, "-I", _harness.__file__, "candidate", "solution",
                                         str(theirs.fileno())], stdin=subprocess.PIPE, env=env,
                                        pass_fds=[theirs.fileno()]) as served:
        assert served.stdin is not None
        served.stdin.write(candidate.encode())
        served.stdin.close()
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**env, "OSCA_CANDIDATE_FD": str(ours.fileno())}, pass_fds=[ours.fileno()])
        served.kill()
    reported, error = _runner._read_junit(str(report))
    assert error is None, proc.stdout + proc.stderr
    return JobResult(runner_ok=True, exit_code=proc.returncode, tests=reported, output=proc.stdout), tests


def test_job_argv_against_real_pytest_on_the_host(tmp_path: Path) -> None:
    """The argv is valid for pytest + pytest-timeout, and real xunit1 ids match the expected ids."""
    result, tests = run_on_host(tmp_path, textwrap.dedent("""\
        import pytest
        from solution import add

        def test_a():
            assert add(1, 2) == 3

        @pytest.mark.parametrize("a,b", [(1, 2), (3, 4)])
        def test_p(a, b):
            assert add(a, b) == a + b

        class TestAdd:
            def test_m(self):
                assert add(2, 2) == 4

            def test_wrong(self):
                assert add(2, 2) == 5
        """), CANDIDATE)
    assert result.exit_code == 1, result.output
    assert result.tests == {
        "test_solution.py::test_a": "passed",
        "test_solution.py::test_p[1-2]": "passed",
        "test_solution.py::test_p[3-4]": "passed",
        "test_solution.py::TestAdd::test_m": "passed",
        "test_solution.py::TestAdd::test_wrong": "failed",
    }
    verdict, _ = verify(result, tests)
    assert verdict.status is Status.FAILED
    assert verdict.missing == []
    assert verdict.n_passed == 4


def test_real_pytest_all_passing_is_passed(tmp_path: Path) -> None:
    result, tests = run_on_host(tmp_path, TESTS.replace("async def test_async", "def test_async"), CANDIDATE)
    assert result.exit_code == 0, result.output
    verdict, _ = verify(result, tests)
    assert verdict.status is Status.PASSED
    assert verdict.n_passed == 3


def test_real_pytest_collection_error_is_setup_failed(tmp_path: Path) -> None:
    # pytest writes the collection error with file="test_solution.py" (so not under "<collection>::").
    result, tests = run_on_host(tmp_path, "from solution import add\n\ndef test_a():\n    assert add(1, 2) == 3\n",
                                "def add(:\n")
    assert result.exit_code == 2, result.output
    assert result.tests == {"test_solution.py::test_solution": "collection_error"}
    verdict, _ = verify(result, tests)
    assert verdict.status is Status.SETUP_FAILED


def test_real_pytest_per_test_timeout_is_timeout(tmp_path: Path) -> None:
    result, tests = run_on_host(tmp_path, "import time\n\ndef test_slow():\n    time.sleep(30)\n\n"
                                          "def test_fast():\n    pass\n", CANDIDATE, timeout=0.5)
    assert result.tests == {"test_solution.py::test_slow": "timeout", "test_solution.py::test_fast": "passed"}
    verdict, _ = verify(result, tests)
    assert verdict.status is Status.TIMEOUT


# --- output shown to a person ---------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile", [
    "\x1b[2J\x1b[H",                       # clear screen, cursor home
    "\x1b]52;c;cm0gLXJmIH4K\x07",            # OSC 52: write the clipboard
    "\x1b]0;title\x1b\\",                   # OSC 0 with ST: retitle the window
    "\x9b2J",                               # 8-bit CSI
    "\x1bc",                                # full reset
    "\x1bP1$r\x1b\\",                       # DCS string
    "\r",                                   # carriage return: would overwrite the verdict's line
    "\x07\x08\x7f\x85",                      # bell, backspace, DEL, a C1 control
])
def test_printable_strips_terminal_control_sequences(hostile: str) -> None:
    assert printable(f"failed{hostile} here\n\tdone") == "failed here\n\tdone"
    assert printable(f"failed{hostile}") == "failed"


def test_verdict_detail_is_printable() -> None:
    verdict, _ = verify(all_passed(exit_code=1, tests={e: "failed" for e in EXPECTED},
                                   output="E   assert 1 == 3\x1b[2J\x1b]52;c;eA==\x07\r\n"))
    assert verdict.status is Status.FAILED
    assert verdict.detail.endswith("E   assert 1 == 3")


# --- PatchVerifier: the instance's tests, not the candidate's -------------------------------------------------

def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    return tmp_path


def _diff(path: str, old: str, new: str) -> str:
    import difflib

    body = "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        f"a/{path}", f"b/{path}"))
    return f"diff --git a/{path} b/{path}\n{body}"


SETUP_CFG = "[metadata]\nname = calc\n\n[tool:pytest]\naddopts = -q\n"
REPO = {"calc.py": "def add(a, b):\n    return a - b\n", "tests/test_calc.py": "def test_add():\n    pass\n",
        "setup.cfg": SETUP_CFG, "pyproject.toml": "[project]\nname = 'calc'\n\n[tool.pytest.ini_options]\nx = 1\n"}


@pytest.mark.parametrize(("path", "expected"), [
    ("tests/test_calc.py", True), ("test_x.py", True), ("pkg/x_test.py", True), ("pkg/conftest.py", True),
    ("testing/data.json", True), ("src/pkg/tests/fixtures/a.txt", True),
    ("calc.py", False), ("src/testing.py", False), ("latest_results.py", False), ("pkg/attest.py", False)])
def test_is_test_path(path: str, expected: bool) -> None:
    from osca.verifiers import is_test_path

    assert is_test_path(path) is expected


def test_patch_verifier_drops_and_flags_changes_to_tests_and_pytest_config(tmp_path: Path) -> None:
    from osca.verifiers import PatchVerifier

    verifier = PatchVerifier(_repo(tmp_path, REPO), ["tests/test_calc.py::test_add"], sandbox=FakeSandbox(all_passed()))  # type: ignore[arg-type]
    fix = _diff("calc.py", REPO["calc.py"], REPO["calc.py"].replace("a - b", "a + b"))
    tests = _diff("tests/test_calc.py", REPO["tests/test_calc.py"], "def test_add():\n    assert True\n")
    conftest = "diff --git a/conftest.py b/conftest.py\nnew file mode 100644\n--- /dev/null\n+++ b/conftest.py\n" \
               "@@ -0,0 +1 @@\n+import pytest\n"
    pytest_section = _diff("setup.cfg", SETUP_CFG, SETUP_CFG.replace("-q", "-q -p no:python"))
    other_section = _diff("setup.cfg", SETUP_CFG, SETUP_CFG.replace("name = calc", "name = calc2"))
    kept, flags = verifier._split(fix + tests + conftest + pytest_section)
    assert kept == fix
    assert flags == ["the patch touches test files (restored before the tests ran): conftest.py, tests/test_calc.py",
                     "the patch touches pytest configuration (restored before the tests ran): setup.cfg"]
    assert verifier._split(fix + other_section) == (fix, [])  # restored all the same, but not pytest's section
    job = verifier.job(fix + conftest)
    assert job.files == {".osca-patch-0.diff": fix}
    assert {"conftest.py", "tests/test_calc.py", "setup.cfg", "pyproject.toml"} <= set(job.protect)
    assert "calc.py" not in job.protect


def test_pyproject_pytest_section_is_flagged(tmp_path: Path) -> None:
    from osca.verifiers import PatchVerifier

    verifier = PatchVerifier(_repo(tmp_path, REPO), ["tests/test_calc.py::test_add"], sandbox=FakeSandbox(all_passed()))  # type: ignore[arg-type]
    old = REPO["pyproject.toml"]
    assert verifier._split(_diff("pyproject.toml", old, old.replace("x = 1", "x = 2")))[1] == [
        "the patch touches pytest configuration (restored before the tests ran): pyproject.toml"]
    assert verifier._split(_diff("pyproject.toml", old, old.replace("'calc'", "'calc2'")))[1] == []


def test_test_patch_is_applied_to_the_instance_on_the_host(tmp_path: Path) -> None:
    import io
    import tarfile

    from osca.verifiers import PatchVerifier

    test_patch = _diff("tests/test_calc.py", REPO["tests/test_calc.py"], "def test_add():\n    assert 1\n")
    verifier = PatchVerifier(_repo(tmp_path, REPO), ["tests/test_calc.py::test_add"], test_patch=test_patch,
                             sandbox=FakeSandbox(all_passed()))  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(verifier.job("").archive or b"")) as tar:
        assert tar.extractfile("tests/test_calc.py").read() == b"def test_add():\n    assert 1\n"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="test patch does not apply"):
        PatchVerifier(tmp_path, ["tests/test_calc.py::test_add"], test_patch=test_patch.replace("pass", "nope"),
                      sandbox=FakeSandbox(all_passed()))  # type: ignore[arg-type]
