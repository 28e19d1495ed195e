"""End to end: scripted samples verified by pytest in the Docker sandbox; the sampler picks a verified one."""

from __future__ import annotations

import pytest

from osca.configs import SamplingConfig
from osca.providers.scripted import calls
from osca.sampler import AllocatedSampler
from osca.verifiers import Status, UnitTestVerifier

pytestmark = [
    pytest.mark.slow,
]

TESTS = """\
from solution import add


def test_small():
    assert add(1, 2) == 3


def test_negative():
    assert add(-4, 1) == -3
"""

RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"


def answer(messages, index, params):
    code = RIGHT if index % 2 else WRONG
    return f"Here is the function:\n```python\n{code}```\nIt adds its arguments."


def test_the_sampler_selects_a_candidate_that_passes_in_the_sandbox(docker_client, script):
    from osca.sandbox.pool import SandboxPool

    name, model = script(answer)
    pool = SandboxPool(size=1, client=docker_client)
    try:
        verifier = UnitTestVerifier(TESTS, sandbox=pool, timeout=5, wall_clock=30)
        sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 4}, verifier=verifier,
                                   batch_n=False, seed=0)
        resp = sampler.completion(messages=[{"role": "user", "content": "write add(a, b)"}])
    finally:
        pool.close()

    assert calls(name) == 4
    by_index = {c.index: c for c in resp.osca.candidates}
    assert sorted(by_index) == [0, 1, 2, 3]
    for i, c in by_index.items():
        assert c.verification is not None
        expected = Status.PASSED if i % 2 else Status.FAILED
        assert c.verification.status is expected, c.verification.detail
    assert resp.osca.selected.index % 2 == 1
    assert resp.osca.selected.verification.status is Status.PASSED
    assert resp.osca.selected.verification.n_passed == 2
    assert resp.choices[0].message.content == resp.osca.selected.text
