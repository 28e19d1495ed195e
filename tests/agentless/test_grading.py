"""SWE-bench grading: log parsers on real `-rA` output, id semantics, resolved/partial/not, unusable logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osca.agents.agentless.envs import SPECS, EnvSpec
from osca.agents.agentless.grading import (BEGIN, END, PATCH_FAILED, eval_script, grade_log, parse_log,
                                           touched_test_files)
from osca.agents.agentless.swebench import SWEInstance
from osca.exceptions import ConfigError

DATA = Path(__file__).with_name("data")
# `pytest -rA --continue-on-collection-errors` (pytest 9.2) on data/pytest_rA_source.py.txt saved as
# test_sample.py, plus a test file whose import fails: the real output, not a hand-made imitation.
RA_LOG = (DATA / "pytest_rA.log").read_text()


def _instance(f2p: list[str], p2p: list[str], repo: str = "pallets/flask", version: str = "2.3") -> SWEInstance:
    return SWEInstance(repo=repo, instance_id="pallets__flask-1", base_commit="a" * 40, patch="", problem_statement="",
                       hints_text="", created_at="", version=version, environment_setup_commit="a" * 40,
                       FAIL_TO_PASS=json.dumps(f2p), PASS_TO_PASS=json.dumps(p2p),
                       test_patch="diff --git a/tests/test_sample.py b/tests/test_sample.py\n"
                                  "diff --git a/tests/data/x.json b/tests/data/x.json\n")


def _log(body: str, code: int = 1) -> str:
    return f"noise before\n{BEGIN}\n{body}\n:: osca test exit status {code} ::\n{END}\n"


def test_pytest_parser_reads_the_real_summary_with_swebench_ids() -> None:
    statuses = parse_log(RA_LOG, "pytest")
    assert statuses == {
        "test_sample.py::test_split[a": "PASSED",  # cut at the space, as SWE-bench's ids are
        "test_sample.py::test_split[plain]": "PASSED",
        "test_sample.py::TestGroup::test_method": "PASSED",
        "test_sample.py::test_expected_failure": "XFAIL",
        "test_broken_import.py": "ERROR",  # the collection error of one file, the other file still ran
        "test_sample.py::test_errors": "ERROR",
        "test_sample.py::test_fails": "FAILED",
    }  # `SKIPPED [1] file:line` names no test, and the captured "noise PASSED ..." line is not one either


def test_options_parser_keeps_the_last_part_of_a_path_parametrization() -> None:
    log = "PASSED t.py::test_get[/home/u/data/file.txt]\nPASSED t.py::test_url[//host/x]\nPASSED t.py::test_b"
    assert parse_log(log, "pytest_options") == {"t.py::test_get[/file.txt]": "PASSED",
                                                "t.py::test_url[//host/x]": "PASSED", "t.py::test_b": "PASSED"}
    assert "t.py::test_get[/home/u/data/file.txt]" in parse_log(log, "pytest")


def test_v2_parser_keeps_spaces_and_reads_trailing_statuses() -> None:
    log = "\x1b[32mPASSED\x1b[0m t.py::test_a[x y]\nFAILED t.py::test_b - boom\nt.py::test_c SKIPPED"
    assert parse_log(log, "pytest_v2") == {"t.py::test_a[x y]": "PASSED", "t.py::test_b": "FAILED",
                                           "t.py::test_c": "SKIPPED"}


def test_sympy_and_django_parsers() -> None:
    # composed in the shape sympy's bin/test --verbose and Django's runner at verbosity 2 print
    sympy = ("sympy/core/tests/test_basic.py[3]\ntest_add ok\ntest_mul F\ntest_pow E\n"
             "________ sympy/core/tests/test_basic.py:test_mul ________\n")
    assert parse_log(sympy, "sympy") == {"test_add": "PASSED", "test_mul": "FAILED", "test_pow": "ERROR",
                                         "sympy/core/tests/test_basic.py:test_mul": "FAILED"}
    django = ("test_a (app.tests.T) ... ok\ntest_b (app.tests.T) ... FAIL\ntest_c (app.tests.T) ... skipped 'x'\n"
              "test_d (app.tests.T) ... noisy output\nok\n")
    assert parse_log(django, "django") == {"test_a (app.tests.T)": "PASSED", "test_b (app.tests.T)": "FAILED",
                                           "test_c (app.tests.T)": "SKIPPED", "test_d (app.tests.T)": "PASSED"}
    with pytest.raises(ConfigError, match="unknown log format"):
        parse_log("", "tap")  # type: ignore[arg-type]


def test_grading_resolves_partial_and_unresolved() -> None:
    inst = _instance(["test_sample.py::test_split[a", "test_sample.py::test_fails"],
                     ["test_sample.py::TestGroup::test_method", "test_sample.py::test_skipped_one"])
    report = grade_log(inst, _log(RA_LOG), patch="diff")
    assert report.fail_to_pass.success == ["test_sample.py::test_split[a"]
    assert report.fail_to_pass.failure == ["test_sample.py::test_fails"]
    assert report.pass_to_pass.failure == ["test_sample.py::test_skipped_one"]  # absent from the log: failure
    assert report.status == "RESOLVED_NO" and not report.resolved

    partial = _instance(["test_sample.py::test_split[a", "test_sample.py::test_fails"],
                        ["test_sample.py::TestGroup::test_method"])
    assert grade_log(partial, _log(RA_LOG), patch="diff").status == "RESOLVED_PARTIAL"

    full = _instance(["test_sample.py::test_split[a", "test_sample.py::test_expected_failure"],
                     ["test_sample.py::test_split[plain]"])
    report = grade_log(full, _log(RA_LOG), patch="diff")
    assert report.resolved and report.status == "RESOLVED_FULL"
    entry = report.to_swebench()["pallets__flask-1"]
    assert entry["resolved"] is True and entry["patch_successfully_applied"] is True
    assert entry["tests_status"]["FAIL_TO_PASS"]["success"] == full.FAIL_TO_PASS


def test_a_skipped_test_keeps_pass_to_pass_but_never_resolves_fail_to_pass() -> None:
    log = _log("SKIPPED t.py::test_a\nPASSED t.py::test_b", code=0)
    assert grade_log(_instance(["t.py::test_b"], ["t.py::test_a"]), log, patch="d").resolved
    assert not grade_log(_instance(["t.py::test_a"], ["t.py::test_b"]), log, patch="d").resolved


def test_an_id_cut_inside_brackets_matches_the_ids_it_prefixes_only_when_they_agree() -> None:
    agree = _log("PASSED t.py::test_p[a b-1]\nPASSED t.py::test_p[a b-2]", code=0)
    assert grade_log(_instance(["t.py::test_p[a"], []), agree.replace("a b", "a-b"), patch="d").resolved
    split = _log("PASSED t.py::test_p[ab-1]\nFAILED t.py::test_p[ab-2]")
    assert not grade_log(_instance(["t.py::test_p[ab"], []), split, patch="d").resolved


@pytest.mark.parametrize(("log", "why"), [
    (f"{PATCH_FAILED}\n", "the patch does not apply"),
    ("PASSED t.py::test_a\n", "incomplete"),  # killed before the end marker
    (_log("nothing parsed here"), "no test results"),
    (_log("PASSED t.py::test_a", code=2), "no failure"),  # a conftest printing PASSED lines, say
])
def test_an_untrustworthy_log_is_never_a_pass(log: str, why: str) -> None:
    report = grade_log(_instance(["t.py::test_a"], []), log, patch="d")
    assert not report.resolved and not report.patch_successfully_applied
    assert report.error is not None and why in report.error


def test_eval_script_runs_the_spec_command_on_the_touched_test_files() -> None:
    inst = _instance(["t"], [])
    assert touched_test_files(inst.test_patch) == ["tests/test_sample.py"]  # data files are not handed to pytest
    script = eval_script(inst)
    assert "pytest -rA tests/test_sample.py >" in script
    assert script.index("model.diff") < script.index("git checkout -q HEAD") < script.index("test.diff")
    assert script.index("test.diff") < script.index(BEGIN)
    django = EnvSpec(python="3.9", test_cmd="./tests/runtests.py --verbosity 2", test_modules=True,
                     log_format="django")
    inst = inst.model_copy(update={"test_patch": "diff --git a/tests/app/test_x.py b/tests/app/test_x.py\n"})
    assert "./tests/runtests.py --verbosity 2 app.test_x >" in eval_script(inst, spec=django)


def test_every_spec_in_the_table_names_a_parser_and_a_buildable_python() -> None:
    from osca.sandbox.image import PYTHON_SUITES

    for repo, versions in SPECS.items():
        for version, spec in versions.items():
            assert spec.python in PYTHON_SUITES, (repo, version)
            assert parse_log("", spec.log_format) == {}
