"""Hostile candidates against the warm pool (issue 12): never a pass, within wall clock + 5 s, nothing left over.

The pool-specific attacks run the candidate in the same process as pytest (the fork server's warm path), the
strongest position an attacker gets there; probes that must find nothing are written as tests that pass only
when the probe comes back empty.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time

import pytest

from osca.sandbox.container import Job, Limits
from osca.sandbox.pool import SandboxPool
from osca.verifiers import TESTS_FILE, Status, UnitTestVerifier, Verdict, expected_test_ids, judge, pytest_command

from hostile_cases import CASES  # tests/sandbox is on sys.path (no package): shared with test_hostile.py

TESTS = "from solution import add\n\ndef test_small():\n    assert add(1, 2) == 3\n\n" \
        "def test_negative():\n    assert add(-1, -1) == -2\n"
CORRECT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
WALL = 8.0
SLACK = 5.0  # issue 12: every hostile case ends within its wall clock + 5 s


@pytest.fixture(scope="module")
def pool(docker_client):
    with SandboxPool(size=1, client=docker_client, limits=Limits(memory="256m", pids=64)) as p:
        yield p


def job_processes(pool: SandboxPool) -> list[list[str]]:
    """Live processes left in the pool's containers that do not belong to root (the server and its zygote);
    zombies are dead already, only not yet reaped by the container's init."""
    rows = []
    for worker in list(pool._all):
        top = worker.container.top(ps_args="-eo user,pid,stat,args")
        rows += [row for row in top["Processes"] if row[0] != "root" and not row[2].startswith("Z")]
    return rows


def in_pool(pool: SandboxPool, solution: str, *, tests: str = TESTS, wall_clock: float = WALL,
            timeout: float = 3.0) -> Verdict:
    """Verify `solution` with pytest in the pool's warm process; checks the time bound and the reset."""
    job = Job(files={"solution.py": solution, TESTS_FILE: tests}, argv=pytest_command(timeout, TESTS_FILE),
              wall_clock=wall_clock, junit=True)
    start = time.monotonic()
    verdict = judge(pool.run(job), expected_test_ids(tests))
    assert time.monotonic() - start <= wall_clock + SLACK, verdict.detail
    assert job_processes(pool) == []
    return verdict


def assert_refused(verdict: Verdict) -> None:
    assert verdict.status is not Status.PASSED, verdict.detail


SYMLINK_SWAP = WRONG + (
    "import atexit, os, sys\n"
    "def swap():\n"
    "    paths = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--junitxml=')]\n"
    "    for fd in os.listdir('/proc/self/fd'):\n"
    "        try:\n"
    "            paths.append(os.readlink('/proc/self/fd/' + fd))\n"
    "        except OSError:\n"
    "            pass\n"
    "    for path in paths + ['/scratch/.osca-out', '/scratch/.osca-report.xml']:\n"
    "        try:\n"
    "            os.unlink(path)\n"
    "        except OSError:\n"
    "            pass\n"
    "        try:\n"
    "            os.symlink('/etc/shadow', path)\n"
    "        except OSError:\n"
    "            pass\n"
    "swap()\n"
    "atexit.register(swap)\n")
"""Replaces every file it can name (its descriptors' targets, the report path, the old fixed names) with a
link to /etc/shadow, at import and again at exit."""

FIFO_PLANT = WRONG + (
    "import atexit, os\n"
    "def plant():\n"
    "    for fd in os.listdir('/proc/self/fd'):\n"
    "        try:\n"
    "            path = os.readlink('/proc/self/fd/' + fd)\n"
    "            os.unlink(path)\n"
    "            os.mkfifo(path)\n"
    "        except OSError:\n"
    "            pass\n"
    "    for name in ('.osca-out', '.osca-report.xml'):\n"
    "        for top in ('/scratch/', ''):\n"
    "            try:\n"
    "                os.mkfifo(top + name)\n"
    "            except OSError:\n"
    "                pass\n"
    "atexit.register(plant)\n")
"""Leaves FIFOs where a server reading files would block."""

LEAVE_BEHIND = WRONG + (
    "import ctypes, os, subprocess\n"
    "for path in ('/dev/shm/left', '/tmp/left', 'left'):\n"
    "    open(path, 'w').write('x')\n"
    "os.makedirs('/dev/shm/dir/sub')\n"
    "ctypes.CDLL(None).shmget(0, 4096, 0o1600)\n"  # IPC_PRIVATE segment, IPC_CREAT | 0600
    "daemon = ('import os, time\\n'\n"
    "          'if os.fork(): os._exit(0)\\n'\n"
    "          'os.setsid()\\n'\n"
    "          'time.sleep(1)\\n'\n"
    "          'open(\"/dev/shm/late\", \"w\").write(\"x\")\\n'\n"
    "          'time.sleep(600)\\n')\n"
    "subprocess.Popen(['python3', '-c', daemon], start_new_session=True)\n")
"""Leaves files, a shared memory segment and a daemon that writes a file a second later."""

LEFTOVERS_CHECK = (
    "import os\n"
    "def leftovers():\n"
    "    found = [d + '/' + n for d in ('/dev/shm', '/tmp') for n in os.listdir(d)]\n"
    "    found += [n for n in os.listdir('.') if n == 'left']\n"
    "    with open('/proc/sysvipc/shm') as f:\n"
    "        found += ['shm ' + line for line in list(f)[1:]]\n"
    "    mine = os.getsid(0)\n"
    "    for p in filter(str.isdigit, os.listdir('/proc')):\n"
    "        try:\n"
    "            state = open('/proc/' + p + '/stat').read().rsplit(')', 1)[1].split()[0]\n"
    "            if os.stat('/proc/' + p).st_uid != 0 and os.getsid(int(p)) != mine and state != 'Z':\n"
    "                found.append(open('/proc/' + p + '/cmdline').read())\n"
    "        except OSError:\n"
    "            pass\n"
    "    return found\n"
    "LEFT = leftovers()\n"
    "def add(a, b):\n"
    "    assert LEFT == [], LEFT\n"
    "    return a + b\n")
"""Right only if nothing of an earlier job is there: files, IPC objects, processes of another session."""


def test_symlinks_in_place_of_output_and_report_are_not_followed(pool):
    verdict = in_pool(pool, SYMLINK_SWAP)
    assert_refused(verdict)
    assert "root:" not in verdict.detail  # /etc/shadow never comes back
    assert in_pool(pool, CORRECT).passed


def test_fifos_in_place_of_output_and_report_do_not_block_the_server(pool):
    recycled = pool.recycled
    assert_refused(in_pool(pool, FIFO_PLANT))
    start = time.monotonic()
    assert in_pool(pool, CORRECT).passed
    assert time.monotonic() - start < WALL
    assert pool.recycled == recycled  # the same server went on serving


def memory_probe(token: str, *, control: bool = False) -> str:
    """A candidate whose `add` is right only if `token` is nowhere in its process's anonymous memory (heap,
    stack, arenas: where an inherited result would be), read in-process with ctypes.

    The token is kept in two halves, never whole, so the probe cannot find itself; `control` puts the whole
    token in memory on purpose (the probe must then fail: it works).
    """
    half = len(token) // 2
    head, tail = token[:half].encode().hex(), token[half:].encode().hex()
    return (
        f"HEAD, TAIL = bytes.fromhex('{head}'), bytes.fromhex('{tail}')\n"
        + ("CONTROL = HEAD + TAIL\n" if control else "")
        + "import ctypes\n"
        "def found():\n"
        "    with open('/proc/self/maps') as maps:\n"
        "        spans = [line.split() for line in maps]\n"
        "    for span in spans:\n"
        "        low, high = (int(x, 16) for x in span[0].split('-'))\n"
        "        anonymous = span[4] == '0' and (len(span) == 5 or span[5] in ('[heap]', '[stack]'))\n"
        "        if not span[1].startswith('rw') or not anonymous or high - low > 1 << 28:\n"
        "            continue\n"
        "        chunk = ctypes.string_at(low, high - low)\n"
        "        i = chunk.find(HEAD)\n"
        "        while i != -1:\n"
        "            if chunk[i + len(HEAD):i + len(HEAD) + len(TAIL)] == TAIL:\n"
        "                return True\n"
        "            i = chunk.find(HEAD, i + 1)\n"
        "    return False\n"
        "FOUND = found()\n"
        "def add(a, b):\n"
        "    assert not FOUND, 'an earlier job is readable from this one'\n"
        "    return a + b\n")


def test_a_job_cannot_read_an_earlier_job_from_its_memory(pool):
    token = "osca-" + secrets.token_hex(12)
    earlier = f"def add(a, b):\n    print({token!r})\n    return a - b\n"
    verdict = in_pool(pool, earlier)
    assert verdict.status is Status.FAILED and token in verdict.detail  # the token went through the server
    assert in_pool(pool, memory_probe(token, control=True)).status is Status.FAILED  # the probe does find it
    probe = in_pool(pool, memory_probe(token))
    assert probe.passed, probe.detail


def test_nothing_of_a_job_survives_into_the_next(pool):
    assert_refused(in_pool(pool, LEAVE_BEHIND))
    time.sleep(1.5)  # a surviving daemon would have written its late file by now
    verdict = in_pool(pool, LEFTOVERS_CHECK)
    assert verdict.passed, verdict.detail


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_shared_hostile_cases_never_pass_in_the_pool(pool, case):
    """Every case of the one-shot suite, in the pool, with the default (separate-process) verifier."""
    verifier = UnitTestVerifier(case.tests, sandbox=pool, timeout=case.timeout, wall_clock=case.wall_clock,
                                **case.verifier_kwargs)
    start = time.monotonic()
    verdict = verifier.verify(case.solution)
    assert_refused(verdict)
    assert time.monotonic() - start <= verifier.wall_clock + SLACK, verdict.detail
    assert job_processes(pool) == []


def test_closing_the_report_pipe_is_no_pass(pool):
    close = ("import os, sys\n"
             "for arg in sys.argv:\n"
             "    if arg.startswith('--junitxml='):\n"
             "        os.close(int(arg.rsplit('/', 1)[1]))\n")
    assert in_pool(pool, close + CORRECT).status is Status.NO_REPORT


def test_a_dead_server_is_replaced_without_losing_the_request(pool):
    (worker,) = pool._all
    worker.container.kill()  # the server dies while idle
    recycled = pool.recycled
    verdict = in_pool(pool, CORRECT)
    assert verdict.passed, verdict.detail
    assert pool.recycled == recycled + 1


def test_waiting_callers_are_served_first_come_first_served(pool):
    stop = threading.Event()
    others: list[float] = []

    def hammer() -> None:
        while not stop.is_set():
            pool.run(Job(files={}, argv=["true"], wall_clock=5))
            others.append(time.monotonic())

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # the hammering threads now take turns on the one worker
        start = time.monotonic()
        result = pool.run(Job(files={}, argv=["true"], wall_clock=5))
        waited = time.monotonic() - start
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert result.runner_ok and result.exit_code == 0
    served_meanwhile = sum(start < t < start + waited for t in others)
    assert served_meanwhile <= 3 + 1, f"waited {waited:.2f}s while {served_meanwhile} later jobs ran"


def test_pool_containers_end_when_their_host_dies(containers_of):
    script = ("import sys, time\n"
              "from osca.sandbox.pool import SandboxPool\n"
              "pool = SandboxPool(size=1)\n"
              "print('up', flush=True)\n"
              "time.sleep(600)\n")
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert host.stdout is not None and host.stdout.readline() == b"up\n"
        assert len(containers_of(host.pid)) == 1
    finally:
        host.kill()
        host.wait()
        host.stdout.close()
    deadline = time.monotonic() + 15
    while containers_of(host.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers_of(host.pid) == []
