"""AllocatedSampler against the scripted LiteLLM provider: dispatch, overrides, seeds, prompt variants, retries,
caps, the ledger, early stopping, the sample cache and the sync/async entry points. No network, no Docker."""

from __future__ import annotations

import asyncio
import random
import warnings
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import litellm
import pytest
import tenacity

from osca.allocation import Allocation
from osca.cache import SampleCache
from osca.configs import SamplingConfig
from osca.exceptions import BudgetError, ConfigError, SamplingError
from osca.ledger import Caps, Ledger
from osca.policies import EarlyStop, Retry
from osca.providers.scripted import calls
from osca.sampler import AllocatedSampler, Candidate
from osca.selectors import extract_code
from osca.verifiers import Status, Verdict, Verifier

MESSAGES = [{"role": "system", "content": "you are terse"},
            {"role": "user", "content": "add two numbers please"}]


def words(messages: list[dict[str, Any]]) -> int:
    """What the scripted provider reports as prompt tokens: whitespace words over all messages."""
    return sum(len(str(m.get("content", "")).split()) for m in messages)


class Recorder:
    """A script that records every sample it serves (index as the provider sees it, params, messages)."""

    def __init__(self, answer: Callable[[list[dict[str, Any]], int, dict[str, Any]], str] | None = None) -> None:
        self.seen: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
        self.answer = answer or (lambda messages, index, params: f"answer {index}")

    def __call__(self, messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
        self.seen.append((index, dict(params), [dict(m) for m in messages]))
        return self.answer(messages, index, params)

    @property
    def indices(self) -> list[int]:
        return sorted(i for i, _, _ in self.seen)


class FakeVerifier:
    """Judges a candidate by a function of its text -> per-test outcomes; PASSED iff every test passed."""

    def __init__(self, tests: Callable[[str], dict[str, str]]) -> None:
        self.tests = tests
        self.seen: list[str] = []

    def verify(self, candidate: str) -> Verdict:
        self.seen.append(candidate)
        tests = self.tests(candidate)
        ok = bool(tests) and all(o == "passed" for o in tests.values())
        return Verdict(status=Status.PASSED if ok else Status.FAILED, tests=tests)

    async def averify(self, candidate: str) -> Verdict:
        await asyncio.sleep(0)
        return self.verify(candidate)


def passes_if(marker: str) -> FakeVerifier:
    return FakeVerifier(lambda text: {"t::a": "passed" if marker in text else "failed"})


def summary(resp: Any) -> list[tuple[str, int, str | None]]:
    return [(c.config, c.index, c.text) for c in resp.osca.candidates]


class Sleeps:
    """Replaces asyncio.sleep between retries: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def rate_limited() -> Exception:
    return litellm.RateLimitError("slow", llm_provider="scripted", model="x")


# ---------------------------------------------------------------------------------------------- dispatch

@pytest.mark.parametrize("batch_n", [True, False])
def test_allocation_draws_k_candidates_per_configuration(script, batch_n):
    rec = Recorder(lambda messages, index, params: f"t={params.get('temperature')} i={index}")
    name, model = script(rec)
    configs = [SamplingConfig(name="a", model=model, temperature=0.2),
               SamplingConfig(name="b", model=model, temperature=1.1)]
    sampler = AllocatedSampler(configs, Allocation({"a": 3, "b": 2}), batch_n=batch_n, seed=0)

    resp = sampler.completion(messages=MESSAGES)

    drawn = {n: sorted(c.index for c in resp.osca.candidates if c.config == n) for n in ("a", "b")}
    assert drawn == {"a": [0, 1, 2], "b": [0, 1]}
    assert all(c.error is None and not c.cached for c in resp.osca.candidates)
    assert calls(name) == (2 if batch_n else 5)
    # every candidate came from its own configuration's request and carries its own sample index
    temperature = {"a": 0.2, "b": 1.1}
    for c in resp.osca.candidates:
        assert c.text == f"t={temperature[c.config]} i={c.index}"
    ns = sorted(params.get("n", 1) for _, params, _ in rec.seen)
    assert ns == ([2, 2, 3, 3, 3] if batch_n else [1] * 5)  # per sample served: n of its request


def test_allocation_may_come_from_a_learners_result(script):
    name, model = script(Recorder())
    result = SimpleNamespace(allocation=Allocation({"a": 2}))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], result, batch_n=False, seed=0)
    assert [(c.config, c.index) for c in sampler.completion(messages=MESSAGES).osca.candidates] == [("a", 0), ("a", 1)]
    assert calls(name) == 2


def test_configuration_overrides_the_call_and_passes_the_rest_through(script):
    site_rec = Recorder()
    site, site_model = script(site_rec)
    own_rec = Recorder()
    own, own_model = script(own_rec)
    configs = [SamplingConfig(name="tuned", model=own_model, temperature=0.25, top_p=0.5,
                              litellm_kwargs={"presence_penalty": 0.3}),
               SamplingConfig(name="plain")]  # keeps the call site's model and temperature
    sampler = AllocatedSampler(configs, {"tuned": 2, "plain": 3}, batch_n=False, seed=0)
    call = dict(model=site_model, messages=MESSAGES, temperature=0.9, max_tokens=17, osca_trace="trace-1",
                user="user-7", n=9)

    resp = sampler.completion(**call)

    assert len(resp.osca.candidates) == 5
    assert calls(own) == 2 and calls(site) == 3
    for _, params, messages in own_rec.seen:
        assert params["temperature"] == 0.25 and params["top_p"] == 0.5 and params["presence_penalty"] == 0.3
        assert params["max_tokens"] == 17 and params["osca_trace"] == "trace-1"
        assert params.get("n", 1) == 1  # the caller's n is ignored: the allocation decides
        assert messages == MESSAGES
    for _, params, messages in site_rec.seen:
        assert params["temperature"] == 0.9 and "top_p" not in params and "presence_penalty" not in params
        assert params["max_tokens"] == 17 and params["osca_trace"] == "trace-1"
        assert params.get("n", 1) == 1
        assert messages == MESSAGES
    # LiteLLM drops `user` on its way to a custom provider, so the request the sampler builds is checked instead
    for cfg, model, temperature in (("tuned", own_model, 0.25), ("plain", site_model, 0.9)):
        req = sampler.request(cfg, call)
        assert req["user"] == "user-7" and req["max_tokens"] == 17
        assert req["model"] == model and req["temperature"] == temperature


@pytest.mark.parametrize("batch_n", [True, False])
def test_sampler_seed_offsets_each_sample(script, batch_n):
    def answer(messages, index, params):
        return f"draw {random.Random(index).randrange(10**9)}"

    rec = Recorder(answer)
    name, model = script(rec)
    configs = [SamplingConfig(name="a", model=model)]

    first = AllocatedSampler(configs, {"a": 3}, batch_n=batch_n, seed=100).completion(messages=MESSAGES)
    if not batch_n:
        assert sorted(params["seed"] for _, params, _ in rec.seen) == [100, 101, 102]
    assert rec.indices == [100, 101, 102]  # sample i is the provider's sample seed + i
    again = AllocatedSampler(configs, {"a": 3}, batch_n=batch_n, seed=100).completion(messages=MESSAGES)
    other = AllocatedSampler(configs, {"a": 3}, batch_n=batch_n, seed=200).completion(messages=MESSAGES)

    assert summary(first) == summary(again)
    assert [c.text for c in first.osca.candidates] == [answer([], 100 + i, {}) for i in range(3)]
    assert [c.text for c in other.osca.candidates] == [answer([], 200 + i, {}) for i in range(3)]
    assert calls(name) == (3 if batch_n else 9)


def test_a_callers_seed_is_offset_the_same_way(script):
    rec = Recorder()
    _, model = script(rec)
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False)
    sampler.completion(messages=MESSAGES, seed=40)
    assert sorted(params["seed"] for _, params, _ in rec.seen) == [40, 41, 42]


# ---------------------------------------------------------------------------------------------- prompt variants

def test_prompt_variants_apply_only_to_the_configurations_naming_them(script):
    recs = {n: Recorder() for n in ("plain", "cot", "loud")}
    models = {n: script(r)[1] for n, r in recs.items()}
    configs = [SamplingConfig(name="plain", model=models["plain"]),
               SamplingConfig(name="cot", model=models["cot"], prompt_variant="step"),
               SamplingConfig(name="loud", model=models["loud"], prompt_variant="shout")]

    def shout(messages):
        return [{"role": "system", "content": "ANSWER IN CAPITALS"}, *messages]

    sampler = AllocatedSampler(configs, {"plain": 1, "cot": 2, "loud": 1}, batch_n=False, seed=0,
                               prompt_variants={"step": "Think step by step. {content}", "shout": shout})
    messages = [{"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "what is 2 + 3?"}]
    original = [dict(m) for m in messages]

    sampler.completion(messages=messages)

    assert messages == original  # the caller's messages are not mutated
    assert [m for _, _, m in recs["plain"].seen] == [original]
    rewritten = [*original[:2], {"role": "user", "content": "Think step by step. what is 2 + 3?"}]
    assert [m for _, _, m in recs["cot"].seen] == [rewritten, rewritten]  # only the last user message
    assert [m for _, _, m in recs["loud"].seen] == [shout(original)]


def test_unknown_prompt_variant_fails_at_construction(script):
    _, model = script(Recorder())
    with pytest.raises(ConfigError, match="prompt variant"):
        AllocatedSampler([SamplingConfig(name="a", model=model, prompt_variant="nope")], {"a": 1},
                         prompt_variants={"other": "{content}"})


def test_unknown_configuration_in_the_allocation(script):
    _, model = script(Recorder())
    with pytest.raises(ConfigError, match="'ghost'"):
        AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 1, "ghost": 2})


@pytest.mark.parametrize("allocation", [{"a": 0}, {}, Allocation({"a": 0, "b": 0})])
def test_an_allocation_summing_to_zero_is_a_budget_error(script, allocation):
    _, model = script(Recorder())
    with pytest.raises(BudgetError):
        AllocatedSampler([SamplingConfig(name="a", model=model), SamplingConfig(name="b", model=model)], allocation)


def test_a_missing_model_is_a_config_error():
    sampler = AllocatedSampler([SamplingConfig(name="nameless")], {"nameless": 1})
    with pytest.raises(ConfigError, match="no model"):
        sampler.completion(messages=MESSAGES)


def test_default_retry_wait_emits_no_deprecation_warning(script):
    _, model = script(Recorder())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 1})


def test_concurrency_must_be_positive(script):
    _, model = script(Recorder())
    with pytest.raises(ConfigError):
        AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 1}, concurrency=0)


# ---------------------------------------------------------------------------------------------- retries

def flaky(failures: int, only: set[int] | None = None, make_error: Callable[[], Exception] = rate_limited):
    """A script whose sample `index` (all, or those in `only`) raises on its first `failures` attempts."""
    attempts: Counter[int] = Counter()

    def fn(messages, index, params):
        attempts[index] += 1
        if (only is None or index in only) and attempts[index] <= failures:
            raise make_error()
        return f"ok {index}"

    return fn, attempts


def test_transient_errors_are_retried(script):
    fn, attempts = flaky(2)
    name, model = script(fn)
    sleeps = Sleeps()
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 1}, retry=Retry(sleep=sleeps),
                               seed=0)

    resp = sampler.completion(messages=MESSAGES)

    assert resp.osca.selected.text == "ok 0" and resp.osca.selected.error is None
    assert len(sleeps.delays) == 2 and all(d >= 0 for d in sleeps.delays)
    assert calls(name) == 3 and attempts[0] == 3
    assert sampler.ledger.total().samples == 1 and sampler.ledger.total().failed == 0


def test_retries_give_up_at_the_stop_and_the_sample_is_recorded_as_failed(script):
    fn, attempts = flaky(2, only={1})
    name, model = script(fn)
    sleeps = Sleeps()
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False, seed=0,
                               retry=Retry(stop=tenacity.stop_after_attempt(2), sleep=sleeps))

    resp = sampler.completion(messages=MESSAGES)

    by_index = {c.index: c for c in resp.osca.candidates}
    assert by_index[1].text is None and "RateLimitError" in by_index[1].error
    assert [by_index[i].text for i in (0, 2)] == ["ok 0", "ok 2"]
    assert resp.osca.selected.index in (0, 2)
    assert attempts == Counter({0: 1, 1: 2, 2: 1})
    assert len(sleeps.delays) == 1
    spent = sampler.ledger.total()
    assert (spent.samples, spent.failed) == (2, 1)


def test_a_non_transient_litellm_error_is_not_retried(script):
    def bad(messages, index, params):
        raise litellm.BadRequestError("malformed", model="x", llm_provider="scripted")

    name, model = script(bad)
    sleeps = Sleeps()
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 1}, retry=Retry(sleep=sleeps))
    with pytest.raises(litellm.BadRequestError, match="malformed") as info:  # LiteLLM's own type (issue 11)
        sampler.completion(messages=MESSAGES)
    assert calls(name) == 1 and sleeps.delays == []
    assert [c.error.split(":")[0] for c in info.value.candidates] == ["BadRequestError"]


def test_an_exception_in_the_provider_is_not_retried(script):
    def broken(messages, index, params):
        raise ValueError("the script is broken")

    name, model = script(broken)
    sleeps = Sleeps()
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 1}, retry=Retry(sleep=sleeps))
    with pytest.raises(litellm.BadRequestError, match="the script is broken"):
        sampler.completion(messages=MESSAGES)
    assert calls(name) == 1 and sleeps.delays == []


def test_when_every_candidate_fails_the_error_lists_and_chains_the_causes(script):
    def bad(messages, index, params):
        raise litellm.InternalServerError("malformed", model="x", llm_provider="scripted")

    _, bad_model = script(bad)
    fn, _ = flaky(99)
    _, slow_model = script(fn)
    sampler = AllocatedSampler([SamplingConfig(name="bad", model=bad_model),
                                SamplingConfig(name="slow", model=slow_model)], {"bad": 1, "slow": 2},
                               batch_n=False, seed=0,
                               retry=Retry(stop=tenacity.stop_after_attempt(1), sleep=Sleeps()))

    with pytest.raises(SamplingError) as info:
        sampler.completion(messages=MESSAGES)

    message = str(info.value)
    assert "3 candidates" in message and "InternalServerError" in message and "RateLimitError" in message
    assert sorted((k, len(v)) for k, v in info.value.errors.items()) == [("InternalServerError", 1),
                                                                         ("RateLimitError", 2)]
    assert isinstance(info.value.__cause__, litellm.InternalServerError | litellm.RateLimitError)
    got = info.value.candidates
    assert sorted((c.config, c.index) for c in got) == [("bad", 0), ("slow", 0), ("slow", 1)]
    assert all(isinstance(c, Candidate) and c.text is None and c.error for c in got)
    assert sampler.ledger.total().failed == 3 and sampler.ledger.total().samples == 0


# ---------------------------------------------------------------------------------------------- caps

@pytest.mark.parametrize("mode", [
    pytest.param(dict(early_stop=EarlyStop(wave=1), batch_n=False), id="sequential-waves"),
    pytest.param(dict(batch_n=False), id="concurrent-requests"),
    pytest.param(dict(batch_n=True), id="one-batched-request"),
])
def test_the_sample_cap_limits_what_is_drawn(script, mode):
    rec = Recorder()
    name, model = script(rec)
    ledger = Ledger(caps=Caps(samples=3))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 5}, ledger=ledger, seed=0, **mode)

    resp = sampler.completion(messages=MESSAGES)

    drawn = [c for c in resp.osca.candidates if c.text is not None]
    refused = [c for c in resp.osca.candidates if c.text is None]
    assert len(drawn) == 3 and len(refused) == 2
    assert all(c.error.startswith("not dispatched: sample cap") for c in refused)
    assert len(rec.seen) == 3 and ledger.total().samples == 3


def test_a_zero_sample_cap_is_a_budget_error():
    with pytest.raises(BudgetError):
        Ledger(caps=Caps(samples=0))


# ---------------------------------------------------------------------------------------------- ledger

@pytest.mark.parametrize("batch_n", [False, True])
def test_the_ledger_records_spend_per_configuration_and_call_site(script, batch_n):
    def answer(messages, index, params):
        return " ".join(["w"] * (index + 1))  # sample i: i + 1 completion tokens

    _, model = script(answer)
    configs = [SamplingConfig(name="a", model=model), SamplingConfig(name="b", model=model, temperature=0.5)]
    ledger = Ledger()
    plan = AllocatedSampler(configs, {"a": 2, "b": 1}, ledger=ledger, call_site="plan", batch_n=batch_n, seed=0)
    code = AllocatedSampler(configs, {"a": 1}, ledger=ledger, call_site="code", batch_n=batch_n, seed=0)

    resp = plan.completion(messages=MESSAGES)
    code.completion(messages=MESSAGES)

    prompt = words(MESSAGES)

    def expect(k: int) -> tuple[int, int, int]:  # samples, prompt tokens, completion tokens of k samples
        requests = 1 if batch_n else k
        return k, prompt * requests, sum(i + 1 for i in range(k))

    def got(**where: str) -> tuple[int, int, int]:
        s = ledger.total(**where)
        return s.samples, s.prompt_tokens, s.completion_tokens

    assert got(call_site="plan", config="a") == expect(2)
    assert got(call_site="plan", config="b") == expect(1)
    assert got(call_site="code", config="a") == expect(1)
    assert got(call_site="code", config="b") == (0, 0, 0)
    assert got(call_site="plan") == tuple(map(sum, zip(expect(2), expect(1))))
    assert got(config="a") == tuple(map(sum, zip(expect(2), expect(1))))
    assert got() == tuple(map(sum, zip(expect(2), expect(1), expect(1))))
    assert ledger.total().dollars == 0.0 and ledger.total().failed == 0

    # the response: this call's usage, no price for a scripted model, the selected candidate's text
    assert resp.usage.prompt_tokens == got(call_site="plan")[1]
    assert resp.usage.completion_tokens == got(call_site="plan")[2]
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.osca.dollars == 0.0
    assert isinstance(resp, litellm.ModelResponse)
    assert resp.choices[0].message.content == resp.osca.selected.text
    assert any(c is resp.osca.selected for c in resp.osca.candidates)
    assert resp.osca.unspent == 0
    # no verifier: majority vote; "w" (a0 and b0) outvotes "w w" (a1); the first in dispatch order wins
    assert (resp.osca.selected.config, resp.osca.selected.index, resp.osca.selected.text) == ("a", 0, "w")


def test_a_custom_selector_and_extract(script):
    _, model = script(lambda messages, index, params: f"```python\nx = {index}\n```")
    verifier = FakeVerifier(lambda text: {"t::a": "passed"})
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False, seed=0,
                               verifier=verifier, selector=lambda cs: cs[-1:], extract=str.upper)
    resp = sampler.completion(messages=MESSAGES)
    assert resp.osca.selected.index == 2
    assert sorted(verifier.seen) == sorted(f"```PYTHON\nX = {i}\n```" for i in range(3))


def test_the_verifier_sees_the_extracted_code_and_the_default_selector_prefers_verified(script):
    texts = {0: "no code at all", 1: "```python\nhalf\n```", 2: "prose\n```python\ngood\n```\nmore prose"}
    _, model = script(lambda messages, index, params: texts[index])

    def tests(code: str) -> dict[str, str]:
        return {"t::a": "passed" if code.strip() in ("half", "good") else "failed",
                "t::b": "passed" if code.strip() == "good" else "failed"}

    verifier = FakeVerifier(tests)
    assert isinstance(verifier, Verifier)
    resp = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False, seed=0,
                            verifier=verifier).completion(messages=MESSAGES)
    assert sorted(verifier.seen) == sorted(extract_code(t) for t in texts.values())
    assert resp.osca.selected.index == 2 and resp.osca.selected.verification.status is Status.PASSED

    # nothing verifies: the most tests passed wins
    texts[2] = "```python\nbad\n```"
    _, model = script(lambda messages, index, params: texts[index])
    resp = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False, seed=0,
                            verifier=FakeVerifier(tests)).completion(messages=MESSAGES)
    assert resp.osca.selected.index == 1 and resp.osca.selected.verification.n_passed == 1


# ---------------------------------------------------------------------------------------------- early stop

def test_plan_is_round_robin_largest_allocation_first(script):
    _, model = script(Recorder())
    configs = [SamplingConfig(name=n, model=model) for n in ("a", "b", "c")]
    sampler = AllocatedSampler(configs, {"c": 1, "b": 2, "a": 4})
    assert sampler.plan() == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3)]


def test_early_stop_ends_after_the_first_wave_with_a_passing_candidate(script):
    recs = {n: Recorder(lambda messages, index, params, n=n: f"{n}{index} " + ("good" if (n, index) == ("b", 1)
                                                                              else "bad")) for n in ("a", "b")}
    names = {}
    configs = []
    for n, rec in recs.items():
        names[n], model = script(rec)
        configs.append(SamplingConfig(name=n, model=model))
    verifier = passes_if("good")
    ledger = Ledger()
    sampler = AllocatedSampler(configs, {"b": 2, "a": 4}, verifier=verifier, ledger=ledger, early_stop=EarlyStop(),
                               batch_n=False, seed=0)
    plan = sampler.plan()
    assert plan == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3)]

    resp = sampler.completion(messages=MESSAGES)

    # waves of one sample per configuration: [a0 b0] [a1 b1] -> b1 passes -> a2 and a3 are never drawn
    assert [(c.config, c.index) for c in resp.osca.candidates] == plan[:4]
    assert resp.osca.unspent == 2
    assert (resp.osca.selected.config, resp.osca.selected.index) == ("b", 1)
    assert resp.osca.selected.verification.status is Status.PASSED
    assert recs["a"].indices == [0, 1] and recs["b"].indices == [0, 1]
    assert calls(names["a"]) == 2 and calls(names["b"]) == 2
    assert len(verifier.seen) == 4
    assert ledger.total().samples == 4


def test_early_stop_with_a_wave_of_one_stops_at_the_passing_sample(script):
    rec = Recorder(lambda messages, index, params: "good" if index == 1 else "bad")
    name, model = script(rec)
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 5}, verifier=passes_if("good"),
                               early_stop=EarlyStop(wave=1), seed=0)
    resp = sampler.completion(messages=MESSAGES)
    assert [c.index for c in resp.osca.candidates] == [0, 1]
    assert resp.osca.unspent == 3 and calls(name) == 2 and rec.indices == [0, 1]


def test_early_stop_draws_everything_when_nothing_passes(script):
    name, model = script(Recorder(lambda messages, index, params: "bad"))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model), SamplingConfig(name="b", model=model)],
                               {"a": 3, "b": 1}, verifier=passes_if("good"), early_stop=EarlyStop(), batch_n=False,
                               seed=0)
    resp = sampler.completion(messages=MESSAGES)
    assert [(c.config, c.index) for c in resp.osca.candidates] == sampler.plan()
    assert resp.osca.unspent == 0 and calls(name) == 4
    assert all(c.verification.status is Status.FAILED for c in resp.osca.candidates)


def test_without_early_stop_every_sample_is_drawn_even_after_a_pass(script):
    name, model = script(Recorder(lambda messages, index, params: "good"))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 4}, verifier=passes_if("good"),
                               batch_n=False, seed=0)
    resp = sampler.completion(messages=MESSAGES)
    assert len(resp.osca.candidates) == 4 and resp.osca.unspent == 0 and calls(name) == 4


# ---------------------------------------------------------------------------------------------- cache

# src bug (see test_a_fresh_empty_cache_is_filled_and_replayed): the sampler tests `if self.cache`, and an empty
# SampleCache is falsy (it defines __len__), so it would never be read or written. The other cache tests hold one
# unrelated row in the cache so they exercise the rest of the caching logic.
SEED_ROWS = 1


def seeded(cache: SampleCache) -> SampleCache:
    cache.put("unrelated call site", "unrelated", 0, "0" * 64, {"text": "not a candidate of these tests"})
    assert len(cache) == SEED_ROWS
    return cache


def rows(cache: SampleCache) -> int:
    """Candidates the tests have cached."""
    return len(cache) - SEED_ROWS


@pytest.fixture(params=["memory", "file"])
def cache(request, tmp_path):
    c = SampleCache(":memory:" if request.param == "memory" else tmp_path / "runs" / "cache.sqlite")
    yield seeded(c)
    c.close()


def test_a_fresh_empty_cache_is_filled_and_replayed(script):
    name, model = script(Recorder())
    with SampleCache(":memory:") as cache:
        sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 2}, cache=cache, batch_n=False,
                                   seed=0)
        sampler.completion(messages=MESSAGES)
        again = sampler.completion(messages=MESSAGES)
        assert len(cache) == 2
    assert calls(name) == 2 and all(c.cached for c in again.osca.candidates)


def test_a_rerun_is_served_from_the_cache(script, cache):
    rec = Recorder()
    name, model = script(rec)
    ledger = Ledger()
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 2}, cache=cache, ledger=ledger,
                               batch_n=False, seed=0)

    first = sampler.completion(messages=MESSAGES)
    assert calls(name) == 2 and rows(cache) == 2
    assert not any(c.cached for c in first.osca.candidates)
    second = sampler.completion(messages=MESSAGES)

    assert calls(name) == 2 and len(rec.seen) == 2  # the provider was not asked again
    assert summary(second) == summary(first)
    assert all(c.cached for c in second.osca.candidates)
    assert [c.usage for c in second.osca.candidates] == [c.usage for c in first.osca.candidates]
    assert second.osca.dollars == 0.0 and second.usage.total_tokens == 0  # no new spend
    spent = ledger.total()
    assert (spent.samples, spent.cached) == (2, 2)


@pytest.mark.parametrize("batch_n", [False, True])
def test_raising_the_allocation_draws_only_the_new_indices(script, cache, batch_n):
    rec = Recorder()
    name, model = script(rec)
    configs = [SamplingConfig(name="a", model=model)]
    small = AllocatedSampler(configs, {"a": 2}, cache=cache, batch_n=batch_n, seed=0).completion(messages=MESSAGES)
    before, seen = calls(name), len(rec.seen)

    large = AllocatedSampler(configs, {"a": 4}, cache=cache, batch_n=batch_n, seed=0).completion(messages=MESSAGES)

    assert sorted(i for i, _, _ in rec.seen[seen:]) == [2, 3]
    assert calls(name) - before == (1 if batch_n else 2)
    assert [(c.index, c.cached) for c in large.osca.candidates] == [(0, True), (1, True), (2, False), (3, False)]
    assert summary(large)[:2] == summary(small)
    assert [c.text for c in large.osca.candidates] == [f"answer {i}" for i in range(4)]
    assert rows(cache) == 4


def test_reselecting_with_another_verifier_costs_no_call(script, cache):
    name, model = script(Recorder())
    configs = [SamplingConfig(name="a", model=model)]
    first = AllocatedSampler(configs, {"a": 3}, cache=cache, batch_n=False, seed=0).completion(messages=MESSAGES)
    assert first.osca.selected.verification is None
    before = calls(name)

    verifier = passes_if("answer 2")
    again = AllocatedSampler(configs, {"a": 3}, cache=cache, batch_n=False, seed=0,
                             verifier=verifier).completion(messages=MESSAGES)

    assert calls(name) == before
    assert all(c.cached and c.verification is not None for c in again.osca.candidates)
    assert again.osca.selected.index == 2 and again.osca.selected.verification.passed
    assert len(verifier.seen) == 3


@pytest.mark.parametrize("change", ["messages", "call_site", "temperature"])
def test_a_changed_request_misses_the_cache(script, cache, change):
    name, model = script(Recorder())
    configs = [SamplingConfig(name="a", model=model)]
    AllocatedSampler(configs, {"a": 2}, cache=cache, batch_n=False, seed=0).completion(messages=MESSAGES)
    before = calls(name)

    site = "elsewhere" if change == "call_site" else "default"
    call: dict[str, Any] = {"messages": MESSAGES}
    if change == "messages":
        call["messages"] = [*MESSAGES[:-1], {"role": "user", "content": "multiply two numbers please"}]
    if change == "temperature":
        call["temperature"] = 0.7
    resp = AllocatedSampler(configs, {"a": 2}, cache=cache, batch_n=False, seed=0,
                            call_site=site).completion(**call)

    assert calls(name) == before + 2
    assert not any(c.cached for c in resp.osca.candidates)
    assert rows(cache) == 4


def test_the_cache_file_serves_a_new_cache_object(script, tmp_path):
    name, model = script(Recorder())
    configs = [SamplingConfig(name="a", model=model)]
    path = tmp_path / "cache.sqlite"
    with seeded(SampleCache(path)) as cache:
        first = AllocatedSampler(configs, {"a": 2}, cache=cache, batch_n=False, seed=0).completion(messages=MESSAGES)
    with SampleCache(path) as cache:
        second = AllocatedSampler(configs, {"a": 2}, cache=cache, batch_n=False, seed=0).completion(messages=MESSAGES)
    assert calls(name) == 2
    assert summary(second) == summary(first) and all(c.cached for c in second.osca.candidates)


# ---------------------------------------------------------------------------------------------- sync / async

def test_completion_works_inside_a_running_event_loop(script):
    name, model = script(Recorder())
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 2}, batch_n=False, seed=0)

    async def agent_step() -> Any:
        asyncio.get_running_loop()  # we are inside a loop
        return sampler.completion(messages=MESSAGES)

    resp = asyncio.run(agent_step())
    assert [c.text for c in resp.osca.candidates] == ["answer 0", "answer 1"]
    assert calls(name) == 2


def test_acompletion_returns_what_completion_returns(script):
    _, model = script(Recorder(lambda messages, index, params: f"v{index % 2}"))
    configs = [SamplingConfig(name="a", model=model), SamplingConfig(name="b", model=model, temperature=0.3)]
    sampler = AllocatedSampler(configs, {"a": 3, "b": 2}, verifier=passes_if("v1"), seed=5)

    sync = sampler.completion(messages=MESSAGES)
    async_ = asyncio.run(sampler.acompletion(messages=MESSAGES))

    assert summary(async_) == summary(sync)
    assert [c.verification for c in async_.osca.candidates] == [c.verification for c in sync.osca.candidates]
    assert (async_.osca.selected.config, async_.osca.selected.index) == (sync.osca.selected.config,
                                                                         sync.osca.selected.index)
    assert async_.choices[0].message.content == sync.choices[0].message.content
    assert async_.usage.total_tokens == sync.usage.total_tokens


def test_calls_from_many_threads_and_loops_reach_litellm_on_one_loop(script, caplog):
    """LiteLLM's logging state is bound to one event loop; sync calls from several threads (each running its own
    loop, as in LangGraph's worker threads) and async calls from the caller's loop must all reach it on one."""
    import concurrent.futures

    loops: list[int] = []
    _, model = script(Recorder(lambda messages, index, params: loops.append(id(asyncio.get_running_loop()))
                               or f"answer {index}"))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: sampler.completion(messages=MESSAGES), range(8)))
    replies.append(asyncio.run(sampler.acompletion(messages=MESSAGES)))

    assert [len(r.osca.candidates) for r in replies] == [3] * 9
    assert len(loops) == 27 and len(set(loops)) == 1
    assert not [r for r in caplog.records if "event loop changed" in r.getMessage()]


def test_acompletion_selects_off_the_event_loop(script):
    """A selector may block on a judge model; the caller's other coroutines keep running meanwhile."""
    import time

    _, model = script(Recorder())
    ticks: list[float] = []
    judging: list[float] = []

    def slow_judge(candidates: list[Candidate]) -> list[Candidate]:
        judging.append(time.monotonic())
        time.sleep(0.5)
        judging.append(time.monotonic())
        return candidates[::-1]

    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 2}, selector=slow_judge)

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> Any:
        tick = asyncio.create_task(ticker())
        resp = await sampler.acompletion(messages=MESSAGES)
        tick.cancel()
        return resp

    resp = asyncio.run(main())
    assert resp.choices[0].message.content == "answer 1"  # the selector's choice
    start, end = judging
    assert sum(start < t < end for t in ticks) >= 10  # the loop ran while the selector slept


@pytest.mark.timeout(60)
def test_a_provider_calling_a_sampler_synchronously_gets_an_error_not_a_hang(script):
    _, inner_model = script(Recorder())
    inner = AllocatedSampler([SamplingConfig(name="a", model=inner_model)], {"a": 1})
    _, outer_model = script(Recorder(lambda messages, index, params:
                                     inner.completion(messages=messages).choices[0].message.content))
    outer = AllocatedSampler([SamplingConfig(name="b", model=outer_model)], {"b": 1},
                             retry=Retry(stop=tenacity.stop_after_attempt(1)))
    with pytest.raises(litellm.BadRequestError, match="would wait on itself forever"):
        outer.completion(messages=MESSAGES)
