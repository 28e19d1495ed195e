"""The patch verifier on a tiny SWE-style repository: a bug, a failing test, a gold patch."""

from __future__ import annotations

import difflib
import subprocess
import textwrap
from pathlib import Path

import pytest

from osca.sandbox.container import DockerSandbox
from osca.verifiers import PatchVerifier, Status, patch_paths

CALC = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
TEST = ("from calc import add, mul\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_mul():\n    assert mul(2, 3) == 6\n")


def diff(new: str, old: str = CALC, path: str = "calc.py") -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}",
                                 f"b/{path}")
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


GOLD = diff(CALC.replace("a - b", "a + b"))
FAIL_TO_PASS = ["tests/test_calc.py::test_add"]
PASS_TO_PASS = ["tests/test_calc.py::test_mul"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "tests").mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(TEST)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "bug"], check=True)
    return root


@pytest.fixture(scope="module")
def verifier(repo, docker_client) -> PatchVerifier:
    return PatchVerifier(repo, FAIL_TO_PASS + PASS_TO_PASS, sandbox=DockerSandbox(client=docker_client),
                         timeout=5, wall_clock=30)


def test_gold_patch_passes(verifier):
    v = verifier.verify(GOLD)
    assert v.status is Status.PASSED, v.detail
    assert v.tests == {"tests/test_calc.py::test_add": "passed", "tests/test_calc.py::test_mul": "passed"}


def test_unpatched_repo_fails_the_fail_to_pass_test(verifier):
    v = verifier.verify(diff(CALC.replace("a - b", "a - b  # looked at it")))
    assert v.status is Status.FAILED, v.detail
    assert v.tests["tests/test_calc.py::test_add"] == "failed"


def test_patch_that_breaks_pass_to_pass_fails(verifier):
    v = verifier.verify(diff(CALC.replace("a - b", "a + b").replace("a * b", "a ** b")))
    assert v.status is Status.FAILED, v.detail
    assert v.tests == {"tests/test_calc.py::test_add": "passed", "tests/test_calc.py::test_mul": "failed"}


def test_patch_that_does_not_apply_is_setup_failed(verifier):
    v = verifier.verify(GOLD.replace("-    return a - b", "-    return a / b"))
    assert v.status is Status.SETUP_FAILED, v.detail
    assert "git apply" in v.detail


def test_patch_escaping_the_repository_is_rejected(verifier):
    evil = "--- a/../../etc/x\n+++ b/../../etc/x\n@@ -0,0 +1 @@\n+pwned\n"
    v = verifier.verify(evil)
    assert v.status is Status.SETUP_FAILED
    assert "outside the repository" in v.detail and "../../etc/x" in v.detail
    assert not Path("/etc/x").exists()


def test_garbage_is_not_a_patch(verifier):
    assert verifier.verify("just some prose").status is Status.SETUP_FAILED


def test_patch_paths():
    assert set(patch_paths(GOLD)) == {"calc.py"}
    renamed = "diff --git a/x.py b/y.py\nrename from x.py\nrename to ../y.py\n"
    assert set(patch_paths(renamed)) == {"x.py", "y.py", "../y.py"}


# --- hostile patches (issue 12): the tests that run are the instance's ----------------------------------------

WRONG = diff(CALC.replace("a - b", "a - b  # looked at it"))
TRIVIAL_TEST = "from calc import add, mul\n\n\ndef test_add():\n    pass\n\n\ndef test_mul():\n    pass\n"
SKIP_BODIES = "import pytest\n\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_call(item):\n" \
              "    item.runtest = lambda: None\n"


def new_file(path: str, text: str) -> str:
    lines = text.splitlines()
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
            f"@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{line}\n" for line in lines))


@pytest.mark.parametrize("tamper", [
    pytest.param(diff(TRIVIAL_TEST, TEST, "tests/test_calc.py"), id="rewrites_the_test_file"),
    pytest.param(new_file("conftest.py", SKIP_BODIES), id="adds_a_conftest"),
    pytest.param(new_file("pytest.ini", "[pytest]\naddopts = -p no:python\n"), id="adds_pytest_ini"),
])
def test_patch_touching_tests_or_config_is_restored_and_flagged(verifier, tamper):
    v = verifier.verify(WRONG + tamper)
    assert v.status is Status.FAILED, v.detail
    assert v.tests["tests/test_calc.py::test_add"] == "failed"
    assert v.flags and "restored before the tests ran" in v.flags[0]


def test_gold_patch_is_not_flagged(verifier):
    assert verifier.verify(GOLD).flags == []


def test_code_under_test_cannot_change_the_tests_at_run_time(verifier):
    """At import the patched module tries to rewrite, remove and rename the tests: they are read-only to it."""
    tamper = CALC + textwrap.dedent("""
        import os
        for attempt in (lambda: open("tests/test_calc.py", "w").write("def test_add():\\n    pass\\n"),
                        lambda: os.unlink("tests/test_calc.py"),
                        lambda: os.rename("tests/test_calc.py", "tests/old.py"),
                        lambda: os.chmod("tests/test_calc.py", 0o666)):
            try:
                attempt()
                print("TAMPERED")
            except OSError:
                pass
        """)
    v = verifier.verify(diff(tamper))
    assert v.status is Status.FAILED, v.detail
    assert "TAMPERED" not in v.detail


def test_test_patch_adds_the_tests_that_must_pass(repo, docker_client):
    test_patch = diff(TEST + "\n\ndef test_add_more():\n    assert add(1, 1) == 2\n", TEST, "tests/test_calc.py")
    verifier = PatchVerifier(repo, [*FAIL_TO_PASS, "tests/test_calc.py::test_add_more"], test_patch=test_patch,
                             sandbox=DockerSandbox(client=docker_client), timeout=5, wall_clock=30)
    assert verifier.verify(GOLD).status is Status.PASSED
    v = verifier.verify(WRONG)
    assert v.status is Status.FAILED and v.tests["tests/test_calc.py::test_add_more"] == "failed", v.detail


def test_in_process_attack_that_remains_possible(verifier):
    """Documented, not defended: the code under test runs inside pytest's process and can patch pytest."""
    cheat = CALC + "\nimport _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n"
    assert verifier.verify(diff(cheat)).status is Status.PASSED
