"""Untrusted candidates in the sandbox: each case asserts the verdict and that the host is untouched."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from osca.sandbox.container import LABEL, DockerSandbox, Limits
from osca.verifiers import Status, UnitTestVerifier

TESTS = """
from solution import add

def test_small():
    assert add(1, 2) == 3

def test_negative():
    assert add(-1, -1) == -2
"""

TOKEN = secrets.token_hex(6)


@pytest.fixture(scope="module")
def box(docker_client):
    with DockerSandbox(client=docker_client, limits=Limits(memory="256m", pids=64, host_grace=20)) as sandbox:
        yield sandbox


def verify(box, solution: str, tests: str = TESTS, **kw):
    return UnitTestVerifier(tests, sandbox=box, timeout=kw.pop("timeout", 5), wall_clock=kw.pop("wall_clock", 20),
                            **kw).verify(solution)


def test_correct_solution_passes(box):
    v = verify(box, "def add(a, b):\n    return a + b\n")
    assert v.status is Status.PASSED, v.detail
    assert v.tests == {"test_solution.py::test_small": "passed", "test_solution.py::test_negative": "passed"}


def test_buggy_solution_fails(box):
    v = verify(box, "def add(a, b):\n    return a - b\n")
    assert v.status is Status.FAILED, v.detail
    assert v.tests["test_solution.py::test_small"] == "failed"


def test_syntax_error_is_setup_failed(box):
    v = verify(box, "def add(a, b) return a\n")
    assert v.status is Status.SETUP_FAILED, v.detail


def test_infinite_loop_in_a_test_times_out(box):
    v = verify(box, "def add(a, b):\n    while True:\n        pass\n", timeout=2)
    assert v.status is Status.TIMEOUT, v.detail


def test_infinite_loop_at_import_hits_the_wall_clock(box):
    v = verify(box, "while True:\n    pass\n", wall_clock=5)
    assert v.status is Status.TIMEOUT, v.detail


def test_fork_bomb_is_contained(box):
    bomb = ("import os\n"
            "def add(a, b):\n"
            "    while True:\n"
            "        try:\n"
            "            os.fork()\n"
            "        except OSError:\n"
            "            pass\n")
    before = len(os.listdir("/proc"))
    v = verify(box, bomb, timeout=3, wall_clock=8)
    assert v.status in (Status.TIMEOUT, Status.FAILED), v.detail
    assert v.status is not Status.PASSED
    assert len(os.listdir("/proc")) < before + 50  # nothing leaked onto the host


def test_two_gib_allocation_is_oom(box):
    v = verify(box, "def add(a, b):\n    block = bytearray(2 * 1024 ** 3)\n    return a + b\n")
    assert v.status in (Status.OOM, Status.FAILED), v.detail
    assert v.status is not Status.PASSED


def test_network_is_unreachable(box):
    v = verify(box, "import socket\n"
                    "def add(a, b):\n"
                    "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                    "    return a + b\n")
    assert v.status is Status.FAILED, v.detail


@pytest.mark.parametrize("target", ["/", "/etc", "/usr"])
def test_writes_outside_scratch_fail(box, target):
    path = f"{target.rstrip('/')}/osca-escape-{TOKEN}"
    v = verify(box, f"def add(a, b):\n    open({path!r}, 'w').write('x')\n    return a + b\n")
    assert v.status is Status.FAILED, v.detail
    assert "Read-only file system" in v.detail or "Permission denied" in v.detail
    assert not Path(path).exists()


def test_exit_before_tests_is_never_a_pass(box):
    v = verify(box, "import os\nos._exit(0)\n")
    assert v.status is Status.NO_REPORT, v.detail


def test_killing_the_runner_is_never_a_pass(box):
    v = verify(box, "import os, signal\nos.kill(-1, signal.SIGKILL)\n")
    assert v.status is not Status.PASSED, v.detail


def test_forged_result_line_is_ignored(box):
    forged = 'OSCA-RESULT 0 {"exit_code": 0, "timed_out": false, "duration": 0, "output": "", "tests": {}}'
    v = verify(box, f"import sys, os\nprint({forged!r})\nsys.stdout.flush()\nos._exit(0)\n")
    assert v.status is Status.NO_REPORT, v.detail


def test_no_osca_container_is_left(docker_client, box):
    verify(box, "def add(a, b):\n    return a + b\n")
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []
