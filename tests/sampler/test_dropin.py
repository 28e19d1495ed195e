"""The sampler as a faithful drop-in for `litellm.completion` (issue 11): whole messages with tool calls, `n`,
positional arguments, streaming, typed errors, preflight, Router pass-through, deadlines, endpoints that ignore
`n`, answers validated before they are cached."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import litellm
import pytest
import tenacity
from openai_stub import stub_server

from osca.cache import SampleCache
from osca.configs import SamplingConfig
from osca.exceptions import SamplingError, SandboxUnavailable
from osca.ledger import Ledger
from osca.policies import Deadline, Retry
from osca.providers.scripted import calls
from osca.sampler import AllocatedSampler
from osca.verifiers import UnitTestVerifier

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city.",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def call(name: str, arguments: str) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": arguments}}


def one(model: str, k: int = 1, **kwargs: Any) -> AllocatedSampler:
    return AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": k}, batch_n=False, seed=0, **kwargs)


# ------------------------------------------------------------------------------------------ whole messages

def test_a_tool_call_only_answer_is_a_candidate_and_comes_back_whole(script):
    name, model = script(lambda messages, index, params: {"content": None,
                                                          "tool_calls": [call("weather", '{"city": "Paris"}')]})
    resp = one(model, 3).completion(model, MESSAGES, tools=TOOLS)

    message = resp.choices[0].message
    assert message.content is None and resp.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("weather", {"city": "Paris"})]
    assert all(c.ok and c.error is None for c in resp.osca.candidates) and calls(name) == 3


def test_text_and_tool_calls_both_reach_the_response(script):
    _, model = script(lambda messages, index, params: {"content": "Let me look that up.",
                                                       "tool_calls": [call("weather", '{"city": "Paris"}')]})
    message = one(model).completion(model, MESSAGES, tools=TOOLS).choices[0].message
    assert message.content == "Let me look that up." and message.tool_calls[0].function.name == "weather"


def test_the_default_vote_counts_tool_calls_by_name_and_canonical_arguments(script):
    answers = [call("weather", '{"city": "Rome"}'), call("weather", '{"city":"Paris", "unit": "C"}'),
               call("weather", '{"unit": "C",  "city": "Paris"}'), call("clock", '{"city": "Paris"}')]
    _, model = script(lambda messages, index, params: {"tool_calls": [answers[index]]})
    resp = one(model, 4).completion(model, MESSAGES, tools=TOOLS)
    chosen = resp.choices[0].message.tool_calls[0].function
    assert (chosen.name, json.loads(chosen.arguments)) == ("weather", {"city": "Paris", "unit": "C"})
    assert resp.osca.selected.index == 1  # the first of the two equal calls


# ------------------------------------------------------------------------------------------ signature, n

def test_positional_model_and_messages_like_litellm(script):
    _, model = script(lambda messages, index, params: f"{messages[-1]['content']} #{index}")
    resp = one(model, 2).completion(model, MESSAGES)
    assert resp.choices[0].message.content == "What is the weather in Paris? #0"
    resp = asyncio.run(one(model, 2).acompletion(model, MESSAGES))
    assert resp.choices[0].message.content == "What is the weather in Paris? #0"


def test_n_returns_the_k_best_ranked_candidates_as_k_choices(script):
    answers = ["b", "a", "b", "c", "a", "b"]  # votes: b 3, a 2, c 1
    _, model = script(lambda messages, index, params: answers[index])
    resp = one(model, 6).completion(model, MESSAGES, n=3)
    # the vote's pick (b), then its pick among the other five (a 2, b 2: the first of them), then again
    assert [(c.message.content, r.index) for c, r in zip(resp.choices, resp.osca.ranked)] == [
        ("b", 0), ("a", 1), ("b", 2)]
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert len(one(model, 2).completion(model, MESSAGES, n=5).choices) == 2  # no more than answered


# ------------------------------------------------------------------------------------------ streaming

def _tool_script(messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> dict[str, Any]:
    return {"content": "Checking.", "tool_calls": [call("weather", '{"city": "Paris"}')]}


def test_stream_replays_the_selected_message_as_litellm_chunks_sync_and_async(script):
    _, model = script(_tool_script)
    sampler = one(model, 2)
    chunks = list(sampler.completion(model, MESSAGES, tools=TOOLS, stream=True))
    assert all(isinstance(c, litellm.ModelResponseStream) for c in chunks)
    rebuilt = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    message = rebuilt.choices[0].message
    assert message.content == "Checking." and message.tool_calls[0].function.name == "weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert rebuilt.choices[0].finish_reason == "tool_calls" and chunks[-1].usage.total_tokens > 0

    async def collect() -> list[Any]:
        stream = await sampler.acompletion(model, MESSAGES, tools=TOOLS, stream=True)
        assert stream.osca.selected.index == 0
        return [c async for c in stream]

    again = asyncio.run(collect())
    assert [c.choices[0].delta.model_dump() for c in again] == [c.choices[0].delta.model_dump() for c in chunks]


# ------------------------------------------------------------------------------------------ errors

def test_a_shared_context_window_error_is_raised_as_its_type_after_at_most_concurrency_requests(script):
    def too_long(messages, index, params):
        raise litellm.ContextWindowExceededError("prompt too long", model="x", llm_provider="scripted")

    name, model = script(too_long)
    sampler = one(model, 20, concurrency=4)
    with pytest.raises(litellm.ContextWindowExceededError) as info:
        sampler.completion(model, MESSAGES)
    assert calls(name) <= 4
    assert len(info.value.candidates) == 20 and all(c.error for c in info.value.candidates)


def test_a_verifier_that_cannot_run_stops_the_call_before_any_request(script, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    name, model = script(lambda messages, index, params: "def f(): return 1")
    verifier = UnitTestVerifier("from solution import f\n\ndef test_f():\n    assert f() == 1\n")
    with pytest.raises(SandboxUnavailable):
        one(model, 3, verifier=verifier).completion(model, MESSAGES)
    assert calls(name) == 0


# ------------------------------------------------------------------------------------------ Router

def test_a_configuration_naming_a_router_sends_its_requests_through_the_router(script):
    def down(messages, index, params):
        raise litellm.BadRequestError("this deployment is down", model="x", llm_provider="scripted")

    down_name, down_model = script(down)
    up_name, up_model = script(lambda messages, index, params: f"via the router #{index}")
    router = litellm.Router(model_list=[{"model_name": "primary", "litellm_params": {"model": down_model}},
                                        {"model_name": "backup", "litellm_params": {"model": up_model}}],
                            fallbacks=[{"primary": ["backup"]}])
    sampler = AllocatedSampler([SamplingConfig(name="team", model="primary", backend="team")], {"team": 2},
                               backends={"team": router}, seed=0)

    resp = sampler.completion(messages=MESSAGES)

    assert sorted(c.text for c in resp.osca.candidates) == ["via the router #0", "via the router #1"]
    assert calls(down_name) == 2 and calls(up_name) == 2  # each candidate: the group, then its fallback


def test_a_configuration_naming_an_unknown_backend_is_refused(script):
    with pytest.raises(Exception, match="names backend 'team'"):
        AllocatedSampler([SamplingConfig(name="a", model="m", backend="team")], {"a": 1})


# ------------------------------------------------------------------------------------------ real HTTP endpoint

def warm_up(server: Any) -> None:
    """LiteLLM's first OpenAI call imports its client (seconds on a busy machine): not what a deadline times."""
    one("openai/quick").completion(messages=MESSAGES, api_base=server.api_base, api_key="x")


def test_a_hanging_provider_with_timeout_2_returns_within_5_seconds():
    with stub_server() as server:
        sampler = AllocatedSampler([SamplingConfig(name="fast", model="openai/quick"),
                                    SamplingConfig(name="slow", model="openai/hang")], {"fast": 1, "slow": 2},
                                   batch_n=False, seed=0)
        warm_up(server)
        start = time.monotonic()
        resp = sampler.completion(messages=MESSAGES, api_base=server.api_base, api_key="x", timeout=2)
        took = time.monotonic() - start
    assert took < 5
    assert resp.osca.selected.config == "fast"
    slow = [c for c in resp.osca.candidates if c.config == "slow"]
    assert len(slow) == 2 and all(isinstance(c.exception, litellm.Timeout) for c in slow)
    assert sum(r["model"] == "hang" for r in server.requests) == 2  # no client retries behind the sampler's


def test_a_call_where_every_request_hangs_fails_within_the_deadline_with_the_timeout_as_cause():
    with stub_server() as server:
        warm_up(server)
        start = time.monotonic()
        with pytest.raises(SamplingError) as info:
            one("openai/hang", 2).completion(messages=MESSAGES, api_base=server.api_base, api_key="x", timeout=1)
        assert time.monotonic() - start < 4
    assert isinstance(info.value.__cause__, litellm.Timeout) and list(info.value.errors) == ["Timeout"]


def test_an_endpoint_that_ignores_n_still_yields_every_sample():
    with stub_server() as server:
        ledger = Ledger()
        sampler = AllocatedSampler([SamplingConfig(name="a", model="openai/qwen")], {"a": 4}, ledger=ledger,
                                   batch_n=True, seed=10)
        resp = sampler.completion(messages=MESSAGES, api_base=server.api_base, api_key="x")
        assert [r.get("n") for r in server.requests] == [4, None, None, None]
        assert all(c.ok for c in resp.osca.candidates) and len(resp.osca.candidates) == 4
        assert sorted(r.get("seed") for r in server.requests) == [10, 11, 12, 13]
        assert ledger.total().samples == 4

        sampler.completion(messages=MESSAGES, api_base=server.api_base, api_key="x")  # remembered
        assert [r.get("n") for r in server.requests[4:]] == [None] * 4


# ------------------------------------------------------------------------------------------ cache

class MalformedOnce:
    """A backend whose sample 0 answers with a non-string content; the others answer normally."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def acompletion(self, **request: Any) -> Any:
        self.requests.append(request)
        content: Any = {"not": "text"} if request["seed"] == 0 else f"fine {request['seed']}"
        return SimpleNamespace(choices=[SimpleNamespace(message={"role": "assistant", "content": content},
                                                        finish_reason="stop")],
                               usage=SimpleNamespace(prompt_tokens=3, completion_tokens=2))

    def supports_n(self, request: dict[str, Any]) -> bool:
        return False

    def priced_model(self, request: dict[str, Any]) -> str:
        return request["model"]


def test_malformed_content_never_reaches_the_cache():
    backend, cache = MalformedOnce(), SampleCache(":memory:")
    sampler = AllocatedSampler([SamplingConfig(name="a", model="fake/m")], {"a": 3}, backend=backend,
                               cache=cache, seed=0)
    first = sampler.completion(messages=MESSAGES)
    bad = first.osca.candidates[0]
    assert bad.error.startswith("malformed answer: the message content is dict") and not bad.ok
    assert len(cache) == 2
    again = sampler.completion(messages=MESSAGES)  # replays the good two, asks for the bad one again
    assert [c.cached for c in again.osca.candidates] == [False, True, True] and len(backend.requests) == 4


# ------------------------------------------------------------------------------------------ per-call settings

def test_a_call_may_bring_its_own_ledger_backend_and_prompt_variants(script):
    _, model = script(lambda messages, index, params: messages[-1]["content"])
    router = litellm.Router(model_list=[{"model_name": "group", "litellm_params": {"model": model}}])
    sampler = AllocatedSampler([SamplingConfig(name="a", prompt_variant="ask")], {"a": 2},
                               prompt_variants={"ask": "{content}"}, seed=0)
    task = Ledger()

    resp = sampler.completion("group", MESSAGES, backend=router, ledger=task,
                              prompt_variants={"ask": "Briefly: {content}"})

    assert resp.choices[0].message.content == "Briefly: What is the weather in Paris?"
    assert task.total().samples == 2 and sampler.ledger.total().samples == 0


class Hangs:
    """A backend whose requests never answer (a provider that accepted the connection and went quiet)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def acompletion(self, **request: Any) -> Any:
        self.attempts += 1
        await asyncio.sleep(3600)

    def supports_n(self, request: dict[str, Any]) -> bool:
        return False

    def priced_model(self, request: dict[str, Any]) -> str:
        return request["model"]


def test_a_per_sample_deadline_bounds_each_attempt_and_the_retries_stay_the_samplers():
    backend, waits = Hangs(), []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    sampler = AllocatedSampler([SamplingConfig(name="a", model="fake/m")], {"a": 2}, backend=backend, seed=0,
                               deadline=Deadline(sample=0.2),
                               retry=Retry(stop=tenacity.stop_after_attempt(2), sleep=no_wait))
    start = time.monotonic()
    with pytest.raises(SamplingError, match="no answer within 0.2 s"):
        sampler.completion(messages=MESSAGES)
    assert time.monotonic() - start < 3 and backend.attempts == 4 and len(waits) == 2


class NoCallIds:
    """A backend answering with a tool call that has no id (plain dicts, as some servers' clients give them)."""

    async def acompletion(self, **request: Any) -> Any:
        message = {"role": "assistant", "tool_calls": [{"type": "function", **call("weather", "{}")}]}
        return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason="tool_calls")], usage=None)

    def supports_n(self, request: dict[str, Any]) -> bool:
        return False

    def priced_model(self, request: dict[str, Any]) -> str:
        return request["model"]


def test_a_tool_call_without_an_id_gets_a_stable_one():
    def tool_call_id() -> str:
        sampler = AllocatedSampler([SamplingConfig(name="a", model="fake/m")], {"a": 1}, backend=NoCallIds())
        return sampler.completion(messages=MESSAGES, tools=TOOLS).choices[0].message.tool_calls[0].id

    first = tool_call_id()
    assert first.startswith("call_") and first == tool_call_id()  # a ToolNode answers it by this id


def test_a_tool_call_answer_is_cached_and_replayed_whole(script):
    name, model = script(_tool_script)
    cache = SampleCache(":memory:")
    first = one(model, 2, cache=cache).completion(model, MESSAGES, tools=TOOLS)
    again = one(model, 2, cache=cache).completion(model, MESSAGES, tools=TOOLS)
    assert calls(name) == 2 and all(c.cached for c in again.osca.candidates)
    assert again.choices[0].message.model_dump() == first.choices[0].message.model_dump()
    assert again.choices[0].message.tool_calls[0].function.name == "weather"
