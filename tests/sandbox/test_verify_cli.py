"""`osca verify`: status and per-test outcomes, exit code 0 only for a pass."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = "from solution import add\n\ndef test_a():\n    assert add(1, 2) == 3\n\ndef test_b():\n    assert add(2, 2) == 4\n"


def osca(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osca", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"tests": tmp_path / "t.py", "good": tmp_path / "good.py", "bad": tmp_path / "bad.py"}
    out["tests"].write_text(TESTS)
    out["good"].write_text("def add(a, b):\n    return a + b\n")
    out["bad"].write_text("def add(a, b):\n    return a * b\n")
    return out


def test_pass_exits_0_with_json(docker_client, files):
    proc = osca("verify", "--solution", files["good"], "--tests", files["tests"], "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"status": "passed", "tests": {"test_solution.py::test_a": "passed",
                                                                     "test_solution.py::test_b": "passed"}}


def test_failure_exits_1_and_names_the_test(docker_client, files):
    proc = osca("verify", "--solution", files["bad"], "--tests", files["tests"])
    assert proc.returncode == 1
    assert proc.stdout.startswith("failed")
    assert "failed   test_solution.py::test_a" in proc.stdout and "passed   test_solution.py::test_b" in proc.stdout


def test_missing_file_is_exit_2(files, tmp_path):
    proc = osca("verify", "--solution", tmp_path / "nope.py", "--tests", files["tests"])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "nope.py" in proc.stderr


def test_no_daemon_is_a_clear_error(files, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "osca", "verify", "--solution", str(files["good"]), "--tests",
                           str(files["tests"])], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/closed.sock"})
    assert proc.returncode == 2
    assert "no Docker daemon answers" in proc.stderr and "Traceback" not in proc.stderr


def test_candidate_escape_codes_never_reach_the_terminal(docker_client, files, tmp_path):
    evil = tmp_path / "evil.py"
    evil.write_text("import sys\nsys.stdout.write('\\x1b[2J\\x1b]52;c;cm0gLXJmIH4K\\x07\\x9b2J\\rpassed')\n"
                    "def add(a, b):\n    return a - b\n")
    proc = osca("verify", "--solution", evil, "--tests", files["tests"])
    assert proc.returncode == 1
    assert proc.stdout.startswith("failed")
    assert not any(c in proc.stdout for c in "\x1b\x07\x9b\r"), repr(proc.stdout)


@pytest.mark.parametrize("candidate", ["while True:\n    pass\n",
                                       "import os\nwhile True:\n    try:\n        os.fork()\n"
                                       "    except OSError:\n        pass\n"], ids=["loop_at_import", "fork_bomb"])
def test_timeout_5_bounds_the_whole_run(docker_client, files, tmp_path, candidate):
    """Issue 12: with --timeout 5 the wall clock follows (5 + 5 x 3 = 20 s here), and the run ends by then."""
    path = tmp_path / "c.py"
    path.write_text(candidate)
    start = time.monotonic()
    proc = osca("verify", "--solution", path, "--tests", files["tests"], "--timeout", "5", "--json")
    assert time.monotonic() - start <= 20 + 5
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] in ("setup_failed", "timeout")


def test_wall_clock_is_settable(docker_client, files, tmp_path):
    path = tmp_path / "sleepy.py"
    path.write_text("import time\ntime.sleep(3600)\n")
    start = time.monotonic()
    proc = osca("verify", "--solution", path, "--tests", files["tests"], "--timeout", "60", "--wall-clock", "3",
                "--json")
    assert time.monotonic() - start < 60
    assert json.loads(proc.stdout)["status"] in ("setup_failed", "timeout"), proc.stdout


@pytest.mark.parametrize("option", [["--timeout", "0"], ["--wall-clock", "-1"]])
def test_non_positive_limits_are_exit_2(files, option):
    proc = osca("verify", "--solution", files["good"], "--tests", files["tests"], *option)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
