"""Untrusted candidates in the sandbox: each case asserts the verdict and that the host is untouched."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from osca.sandbox.container import (LABEL, OWNER_BOOT, OWNER_HOST, OWNER_START, DockerSandbox, Limits, owner_labels,
                                    reap_orphans)
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
    v = verify(box, "import os\nos._exit(0)\n")  # the candidate's own process ends while it loads
    assert v.status in (Status.SETUP_FAILED, Status.NO_REPORT), v.detail


def test_killing_the_runner_is_never_a_pass(box):
    v = verify(box, "import os, signal\nos.kill(-1, signal.SIGKILL)\n")
    assert v.status is not Status.PASSED, v.detail


def test_forged_result_line_is_ignored(box):
    forged = 'OSCA-RESULT 0 {"exit_code": 0, "timed_out": false, "duration": 0, "output": "", "tests": {}}'
    v = verify(box, f"import sys, os\nprint({forged!r})\nsys.stdout.flush()\nos._exit(0)\n")
    assert v.status in (Status.SETUP_FAILED, Status.NO_REPORT), v.detail


def test_no_osca_container_is_left(containers_of, box):
    verify(box, "def add(a, b):\n    return a + b\n")
    assert containers_of(os.getpid()) == []


def test_the_container_ends_itself_at_its_deadline(box):
    """The runner is killed first (so it never reports): the container's own guard ends it, near the wall
    clock, long before the host's backstop would."""
    start = time.monotonic()
    v = verify(box, "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nwhile True:\n    pass\n",
               wall_clock=4)
    assert v.status is not Status.PASSED, v.detail
    assert time.monotonic() - start <= 4 + 5


def test_sigkilled_verify_leaves_no_container(tmp_path, containers_of):
    """A CI timeout SIGKILLs `osca verify` mid-run: its container must be gone 15 s after its deadline."""
    (tmp_path / "solution.py").write_text("while True:\n    pass\n")
    (tmp_path / "tests.py").write_text(TESTS)
    wall_clock = 10
    osca = Path(sys.executable).with_name("osca")
    run = subprocess.Popen([str(osca), "verify", "--solution", str(tmp_path / "solution.py"), "--tests",
                            str(tmp_path / "tests.py"), "--timeout", "2", "--wall-clock", str(wall_clock)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while not any(c.status == "running" for c in containers_of(run.pid)):
        assert run.poll() is None and time.monotonic() - start < 60, "osca verify never started its container"
        time.sleep(0.2)
    run.kill()
    run.wait()
    deadline = time.monotonic() + wall_clock + 15
    while containers_of(run.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers_of(run.pid) == []


class FakeContainer:
    """A container as a sparse listing returns it: its labels and names in `attrs`."""

    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.id, self.attrs, self.removed = name, {"Labels": labels, "Names": [f"/{name}"]}, False

    def remove(self, force: bool) -> None:
        self.removed = force


class FakeClient:
    """The part of docker.DockerClient that `reap_orphans` uses."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self
        self._containers = containers

    def list(self, all: bool, sparse: bool, filters: dict[str, str]) -> list[FakeContainer]:
        assert all and filters == {"label": LABEL}
        return list(self._containers)


def test_prune_removes_a_dead_owners_container(docker_client, containers_of):
    """An owner SIGKILLed between `create` and `start` leaves a container that never ends itself: `osca sandbox
    prune` removes it (and leaves this live session's alone)."""
    from typer.testing import CliRunner

    from osca.cli import app
    from osca.sandbox import image_tag

    child = subprocess.Popen(["sleep", "60"])
    labels = owner_labels(child.pid)
    child.kill()
    child.wait()
    orphan = docker_client.containers.create(image_tag(), command=["true"], labels=labels)
    result = CliRunner().invoke(app, ["sandbox", "prune"])
    assert result.exit_code == 0, result.output
    assert orphan.name in result.output
    assert containers_of(child.pid) == []


def test_the_reaper_removes_exactly_the_containers_of_dead_owners():
    child = subprocess.Popen(["sleep", "60"])
    dead = owner_labels(child.pid)
    child.kill()
    child.wait()
    me = owner_labels()
    containers = {
        "alive": me,
        "dead": dead,
        "pid reused": {**me, OWNER_START: str(int(me[OWNER_START]) + 1)},
        "rebooted": {**dead, OWNER_BOOT: "another-boot"},
        "other machine": {**dead, OWNER_HOST: socket.gethostname() + "-other"},
        "no owner": {LABEL: "1"},
    }
    fakes = [FakeContainer(name, labels) for name, labels in containers.items()]
    assert sorted(reap_orphans(FakeClient(fakes))) == ["dead", "pid reused", "rebooted"]
    assert {f.id for f in fakes if f.removed} == {"dead", "pid reused", "rebooted"}
