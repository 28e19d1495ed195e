"""Caps that bind inside one call (issue 11): each request's worst case is reserved before dispatch, so no
concurrency can spend past a dollar or token cap."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import pytest

from osca.configs import SamplingConfig
from osca.exceptions import SamplingError
from osca.ledger import Caps, Ledger, Spend
from osca.sampler import AllocatedSampler

MESSAGES = [{"role": "user", "content": "Write a short poem about the sea."}]
PRICED = "gpt-4o-mini"


class PricedBackend:
    """Answers as a priced model would: prompt tokens by LiteLLM's counter, `length` words of output cut at
    `max_tokens`, priced by LiteLLM's cost map; each answer takes a moment, so requests overlap."""

    def __init__(self, length: int = 40) -> None:
        self.length = length
        self.in_flight = self.most_in_flight = 0

    async def acompletion(self, **request: Any) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        prompt = litellm.token_counter(model=PRICED, messages=request["messages"])
        out = min(self.length, request.get("max_tokens") or self.length)
        return litellm.ModelResponse(
            model=PRICED, choices=[{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": " ".join(["sea"] * out)}}],
            usage={"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out})

    def supports_n(self, request: dict[str, Any]) -> bool:
        return False

    def priced_model(self, request: dict[str, Any]) -> str:
        return PRICED


def worst_dollars(max_tokens: int) -> float:
    prompt = litellm.token_counter(model=PRICED, messages=MESSAGES)
    return sum(litellm.cost_per_token(model=PRICED, prompt_tokens=prompt, completion_tokens=max_tokens))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_dollar_cap_of_about_three_samples_is_never_exceeded(concurrency):
    cap = 3.5 * worst_dollars(50)
    backend, ledger = PricedBackend(length=45), Ledger(caps=Caps(dollars=cap))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=PRICED)], {"a": 20}, backend=backend,
                               ledger=ledger, concurrency=concurrency, seed=0)

    resp = sampler.completion(messages=MESSAGES, max_tokens=50)

    spent = ledger.total()
    assert 0 < spent.dollars <= cap and spent.samples == 3
    refused = [c for c in resp.osca.candidates if not c.ok]
    assert len(refused) == 17 and all("dollar cap" in c.error for c in refused)
    assert ledger.reserved == Spend(dollars=pytest.approx(0.0))  # every reservation was settled


def test_without_max_tokens_the_reservation_is_the_models_maximum_output_and_says_which_cap():
    ledger = Ledger(caps=Caps(dollars=3.5 * worst_dollars(50)))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=PRICED)], {"a": 5}, backend=PricedBackend(),
                               ledger=ledger, seed=0)
    with pytest.raises(SamplingError, match="dollar cap .*: a sample may cost up to"):
        sampler.completion(messages=MESSAGES)  # gpt-4o-mini may write 16384 tokens: one would break the cap
    assert ledger.total() == Spend()


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_token_cap_is_never_exceeded(script, concurrency):
    name, model = script(lambda messages, index, params: " ".join(["word"] * 30))
    ledger = Ledger(caps=Caps(tokens=100))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 20}, ledger=ledger,
                               concurrency=concurrency, batch_n=False, seed=0)

    resp = sampler.completion(messages=MESSAGES)

    assert 0 < ledger.total().tokens <= 100
    assert any(c.ok for c in resp.osca.candidates)
    assert any(c.error and "token cap 100" in c.error for c in resp.osca.candidates)


def test_concurrent_requests_overlap_when_the_caps_leave_room():
    backend = PricedBackend()
    sampler = AllocatedSampler([SamplingConfig(name="a", model=PRICED)], {"a": 8}, backend=backend,
                               ledger=Ledger(caps=Caps(dollars=1.0)), concurrency=8, seed=0)
    sampler.completion(messages=MESSAGES, max_tokens=50)
    assert backend.most_in_flight == 8  # reservations do not serialize requests that all fit


def test_reserve_grants_what_the_worst_case_fits_and_names_the_cap():
    ledger = Ledger(caps=Caps(tokens=100, dollars=1.0))
    worst = Spend(samples=1, prompt_tokens=10, completion_tokens=20, dollars=0.1)
    assert ledger.reserve(5, worst) == (3, "token cap 100: a sample may use up to 30 tokens and 100 are left")
    assert ledger.reserved == Spend(samples=3, prompt_tokens=30, completion_tokens=60, dollars=pytest.approx(0.3))
    assert ledger.reserve(1, worst) == (0, "token cap 100: a sample may use up to 30 tokens and 10 are left")
    ledger.record("s", "c", Spend(samples=1, prompt_tokens=10, completion_tokens=5, dollars=0.02))
    ledger.release(3, worst)  # settled: one sample spent 15 tokens of the 90 reserved
    assert ledger.reserved == Spend(dollars=pytest.approx(0.0))
    assert ledger.reserve(9, worst)[0] == 2  # 85 tokens left: two more worst cases fit
