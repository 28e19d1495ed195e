"""The warm pool: same verdicts as a fresh container, each part of a job under its own uid, reset between jobs,
recycling."""

from __future__ import annotations

import os

import pytest

from osca.sandbox.container import DockerSandbox, Job, Limits
from osca.sandbox.pool import SandboxPool
from osca.verifiers import InProcessUnitTestVerifier, Status, UnitTestVerifier

TESTS = "from solution import add\n\ndef test_a():\n    assert add(1, 2) == 3\n"


@pytest.fixture(scope="module")
def pool(docker_client):
    with SandboxPool(size=1, client=docker_client, limits=Limits(memory="256m", pids=64), max_jobs=50) as p:
        yield p


@pytest.mark.parametrize("kind", [UnitTestVerifier, InProcessUnitTestVerifier])
def test_verdicts_match_a_fresh_container(pool, docker_client, kind):
    candidates = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n",
                  "import os\nos._exit(0)\n", "def add(a b)\n"]
    with DockerSandbox(client=docker_client) as box:
        fresh, warm = (kind(TESTS, sandbox=where, timeout=3, wall_clock=10) for where in (box, pool))
        statuses = [(warm.verify(c).status, fresh.verify(c).status) for c in candidates]
    assert [w for w, _ in statuses] == [f for _, f in statuses]
    assert statuses[0][0] is Status.PASSED and statuses[1][0] is Status.FAILED



def test_what_the_candidate_prints_comes_back_both_ways(pool, docker_client):
    """Its process is killed once the tests end: printed lines must be out by then (line-buffered stdout)."""
    candidate = "print('loaded')\ndef add(a, b):\n    print('add', a, b)\n    return a + b\n"
    with DockerSandbox(client=docker_client) as box:
        for where in (box, pool):
            result = where.run(UnitTestVerifier(TESTS, sandbox=where).job(candidate))
            assert result.tests == {"test_solution.py::test_a": "passed"}, result.output
            assert "loaded" in result.output and "add 1 2" in result.output, (type(where).__name__, result.output)

def uid_probe(uid: int) -> str:
    return ("import os\n"
            "def add(a, b):\n"
            f"    assert (os.getuid(), os.geteuid(), os.getgid()) == ({uid}, {uid}, {uid})\n"
            "    caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
            "    assert int(caps.split()[1], 16) == 0, caps\n"
            "    return a + b\n")


def test_jobs_run_as_their_own_uid_without_capabilities(pool):
    v = UnitTestVerifier(TESTS, sandbox=pool).verify(uid_probe(1002))  # the separated candidate
    assert v.status is Status.PASSED, v.detail
    v = InProcessUnitTestVerifier(TESTS, sandbox=pool).verify(uid_probe(1001))  # in pytest's process
    assert v.status is Status.PASSED, v.detail


def test_reset_kills_leftovers_and_wipes_scratch(pool):
    spawn = ("import os, subprocess\n"
             "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
             "open('left-behind', 'w').write('x')\n"
             "open('/tmp/left-behind', 'w').write('x')\n"
             "open('/dev/shm/left-behind', 'w').write('x')\n"
             "def add(a, b):\n"
             "    return a + b\n")
    assert InProcessUnitTestVerifier(TESTS, sandbox=pool).verify(spawn).status is Status.PASSED
    check = ("import os\n"
             "def add(a, b):\n"
             "    for path in ('left-behind', '/tmp/left-behind', '/dev/shm/left-behind'):\n"
             "        assert not os.path.exists(path), path\n"
             "    cmds = []\n"
             "    for p in filter(str.isdigit, os.listdir('/proc')):\n"
             "        try:\n"
             "            cmds.append(open(f'/proc/{p}/cmdline').read())\n"
             "        except OSError:\n"
             "            pass\n"
             "    assert not any(c.startswith('sleep') for c in cmds), cmds\n"
             "    return a + b\n")
    v = InProcessUnitTestVerifier(TESTS, sandbox=pool).verify(check)
    assert v.status is Status.PASSED, v.detail


def test_oom_recycles_the_container(pool):
    before = pool.recycled
    hog = "def add(a, b):\n    bytearray(2 * 1024 ** 3)\n"
    v = InProcessUnitTestVerifier(TESTS, sandbox=pool).verify(hog)  # pytest's own process is killed
    assert v.status is Status.OOM, v.detail
    assert pool.recycled == before + 1
    assert UnitTestVerifier(TESTS, sandbox=pool).verify("def add(a, b):\n    return a + b\n").passed


def test_wall_clock_in_the_pool(pool):
    v = UnitTestVerifier(TESTS, sandbox=pool, wall_clock=2).verify("while True:\n    pass\n")
    assert v.status is Status.TIMEOUT, v.detail


def test_generic_command_and_bad_paths(pool):
    result = pool.run(Job(files={"a.py": "print(6 * 7)"}, argv=["python3", "a.py"]))
    assert result.runner_ok and result.exit_code == 0 and result.output.strip() == "42"
    with pytest.raises(Exception, match="must be relative"):
        pool.run(Job(files={"../x.py": ""}, argv=["true"]))


def test_close_leaves_no_container(docker_client, containers_of):
    def mine() -> set[str]:
        return {c.id for c in containers_of(os.getpid())}  # other sessions may be starting containers too

    before = mine()
    with SandboxPool(size=2, client=docker_client) as p:
        started = mine() - before
        assert len(started) == 2
        p.run(Job(files={}, argv=["true"]))
    assert not mine() & started
