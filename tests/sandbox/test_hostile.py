"""Hostile candidates against one-shot containers (issue 12): never `passed`, within the wall clock + 5 s, and no
container of ours left. The cases are data in hostile_cases.py; test_hostile_pool.py runs them in the pool."""

from __future__ import annotations

import os
import time

import pytest

from osca.sandbox.container import OWNER_PID, DockerSandbox, Limits
from osca.verifiers import InProcessUnitTestVerifier, Status, UnitTestVerifier

from hostile_cases import CASES, DEFAULT_TESTS, Case

SLACK = 5.0  # issue 12: every hostile case ends within its wall clock + 5 s


@pytest.fixture(scope="module")
def box(docker_client):
    with DockerSandbox(client=docker_client, limits=Limits(memory="256m", pids=64)) as sandbox:
        yield sandbox


def ours(docker_client) -> list[str]:
    """Names of the containers this test process owns (other users of the engine are not counted)."""
    return [c.name for c in docker_client.containers.list(all=True, filters={"label": f"{OWNER_PID}={os.getpid()}"})]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_candidate_never_passes(box, docker_client, case: Case):
    verifier = UnitTestVerifier(case.tests, sandbox=box, timeout=case.timeout, wall_clock=case.wall_clock,
                                **case.verifier_kwargs)
    start = time.monotonic()
    verdict = verifier.verify(case.solution)
    elapsed = time.monotonic() - start
    assert verdict.status is not Status.PASSED, f"{case.name} ({case.tries}) passed:\n{verdict.detail}"
    assert elapsed <= verifier.wall_clock + SLACK, f"{case.name} took {elapsed:.1f}s"
    assert ours(docker_client) == []


def test_the_same_harness_passes_a_correct_candidate(box):
    """The separation costs a correct candidate nothing: plain data crosses both ways, builtin errors too."""
    tests = DEFAULT_TESTS + (
        "\n\nimport pytest\nfrom solution import pair, LIMIT\n\n\n"
        "def test_plain_data_crosses():\n"
        "    assert pair((1, 'a'), {2: {3.5, None}}, b'x') == ((1, 'a'), {2: {3.5, None}}, b'x', 1j)\n"
        "    assert LIMIT == [1, (2, 3)]\n\n\n"
        "def test_builtin_exceptions_cross():\n"
        "    with pytest.raises(ValueError, match='negative'):\n"
        "        add(-5, 0)\n")
    candidate = ("LIMIT = [1, (2, 3)]\n\n\n"
                 "def add(a, b):\n    if a < -1:\n        raise ValueError('negative')\n    return a + b\n\n\n"
                 "def pair(*args):\n    return (*args, 1j)\n")
    verdict = UnitTestVerifier(tests, sandbox=box, timeout=5).verify(candidate)
    assert verdict.status is Status.PASSED, verdict.detail
    assert verdict.n_passed == 4


@pytest.mark.parametrize("name", ["pytest_runtest_noop", "always_equal_object"])
def test_in_process_opt_in_is_fooled_as_documented(box, name):
    """What InProcessUnitTestVerifier's docstring and the README's table say it does not defend against."""
    case = next(c for c in CASES if c.name == name)
    verdict = InProcessUnitTestVerifier(case.tests, sandbox=box, timeout=case.timeout).verify(case.solution)
    assert verdict.status is Status.PASSED, verdict.detail
