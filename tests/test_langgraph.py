"""Wrapping LangGraph nodes: LiteLLM calls inside them are sampled, calls anywhere else are not."""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
from typing import Annotated, TypedDict

import litellm
import pytest
from langgraph.graph import END, START, StateGraph

from osca import AllocatedSampler, Allocation, ConfigError, SamplingConfig
import osca
from osca.langgraph import SampledCall, _litellm_functions, allocated, instrument
from osca.providers.scripted import register_script

MODEL = register_script("graph", lambda messages, i, params: f"sample {i} at t={params.get('temperature')}")
ASK = [{"role": "user", "content": "go"}]
early_completion = _litellm_functions()[0]  # what `from litellm import completion` holds when done before osca


class State(TypedDict, total=False):
    out: Annotated[list, operator.add]
    osca: Annotated[list, operator.add]


def sampler() -> AllocatedSampler:
    configs = [SamplingConfig(name="cold", temperature=0.1), SamplingConfig(name="hot", temperature=0.9)]
    return AllocatedSampler(configs, Allocation({"cold": 2, "hot": 1}), seed=0)


def ask() -> str:
    return litellm.completion(model=MODEL, messages=ASK).choices[0].message.content


async def aask() -> str:
    return (await litellm.acompletion(model=MODEL, messages=ASK)).choices[0].message.content


def run(*nodes, edges=None, **compile_kw) -> dict:
    builder = StateGraph(State)
    for name, fn in nodes:
        builder.add_node(name, fn)
    for a, b in edges or [(START, nodes[0][0])] + [(nodes[k][0], nodes[k + 1][0]) for k in range(len(nodes) - 1)] \
            + [(nodes[-1][0], END)]:
        builder.add_edge(a, b)
    return builder.compile().invoke({"out": [], "osca": []})


def test_wrapped_node_is_sampled_and_the_next_node_is_not():
    s = sampler()
    wrapped = allocated(s, state_key="osca")(lambda state: {"out": [ask()]})
    plain = lambda state: {"out": [ask()]}  # noqa: E731
    result = run(("wrapped", wrapped), ("plain", plain))
    assert result["out"][1] == "sample 0 at t=None"  # untouched: the call site's own arguments
    assert result["out"][0].endswith(("t=0.1", "t=0.9"))
    [call] = result["osca"]
    assert isinstance(call, SampledCall) and call.node == "wrapped"
    assert sorted((c.config, c.index) for c in call.response.osca.candidates) == [("cold", 0), ("cold", 1), ("hot", 0)]
    assert s.ledger.total().samples == 3
    assert ask() == "sample 0 at t=None"  # and nothing outside a graph is routed


def test_async_node_and_acompletion():
    s = sampler()

    @allocated(s)
    async def node(state):
        return {"out": [await aask()]}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    result = asyncio.run(builder.compile().ainvoke({"out": []}))
    assert result["out"][0].endswith(("t=0.1", "t=0.9"))
    assert s.ledger.total().samples == 3


def test_concurrent_branches_only_the_wrapped_one_samples():
    s = sampler()

    async def plain(state):
        await asyncio.sleep(0.01)
        return {"out": ["plain: " + await aask()]}

    @allocated(s)
    async def wrapped(state):
        await asyncio.sleep(0.01)
        return {"out": ["wrapped: " + await aask()]}

    builder = StateGraph(State)
    builder.add_node("plain", plain)
    builder.add_node("wrapped", wrapped)
    builder.add_edge(START, "plain")
    builder.add_edge(START, "wrapped")
    builder.add_edge("plain", END)
    builder.add_edge("wrapped", END)
    out = dict(line.split(": ", 1) for line in asyncio.run(builder.compile().ainvoke({"out": []}))["out"])
    assert out["plain"] == "sample 0 at t=None"
    assert out["wrapped"] != "sample 0 at t=None"
    assert s.ledger.total().samples == 3


def test_a_thread_the_node_starts_without_its_context_is_not_routed():
    s = sampler()
    seen = []

    @allocated(s)
    def node(state):
        worker = threading.Thread(target=lambda: seen.append(ask()))
        worker.start()
        worker.join()
        return {"out": [ask()]}

    result = run(("node", node))
    assert seen == ["sample 0 at t=None"]
    assert result["out"][0] != "sample 0 at t=None"


def test_instrument_routes_by_node_name():
    coder, planner = sampler(), sampler()
    builder = StateGraph(State)
    for name in ("plan", "code", "check"):
        builder.add_node(name, lambda state: {"out": [ask()]})
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "code")
    builder.add_edge("code", "check")
    builder.add_edge("check", END)
    graph = instrument(builder, {"plan": planner, "code": coder})
    out = graph.invoke({"out": []})["out"]
    assert out[2] == "sample 0 at t=None"  # `check` has no sampler
    assert coder.ledger.total().samples == 3 and planner.ledger.total().samples == 3
    with pytest.raises(ConfigError, match="no node named 'review'"):
        instrument(builder, {"review": coder})


def test_a_store_picks_the_sampler_by_node_name():
    store = {"code": sampler()}
    node = allocated(store)(lambda state: {"out": [ask()]})
    result = run(("code", node), ("other", allocated(store)(lambda state: {"out": [ask()]})))
    assert result["out"][1] == "sample 0 at t=None"
    assert store["code"].ledger.total().samples == 3
    with pytest.raises(ConfigError, match="inside a LangGraph graph"):
        node({"out": []})


def test_wrapping_keeps_the_node_signature():
    def node(state, config):
        return {"out": [config["metadata"]["langgraph_node"]]}

    wrapped = allocated(sampler())(node)
    assert wrapped.__wrapped__ is node and wrapped.__name__ == "node"
    assert run(("named", wrapped))["out"] == ["named"]


def test_a_node_whose_calls_bypass_the_sampler_says_why(caplog):
    s = sampler()
    aliased = allocated(s)(lambda state: {"out": [early_completion(model=MODEL, messages=ASK).choices[0]
                                                  .message.content]})
    with caplog.at_level(logging.WARNING, logger="osca.langgraph"):
        result = run(("solve", aliased))
    assert result["out"] == ["sample 0 at t=None"] and s.ledger.total().samples == 0  # not sampled...
    [record] = caplog.records  # ...and said so, naming the alias and the way out
    assert "'solve'" in record.getMessage() and "made no LiteLLM call" in record.getMessage()
    assert "early_completion is LiteLLM's function from before osca routed it" in record.getMessage()
    assert "osca.completion(...)" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="osca.langgraph"):
        run(("quiet", allocated(s)(lambda state: {"out": ["no model here"]})))
    assert "a client that bypasses LiteLLM" in caplog.records[0].getMessage()


def test_a_sampled_node_logs_nothing(caplog):
    store = {"solve": sampler()}
    with caplog.at_level(logging.WARNING, logger="osca.langgraph"):
        run(("solve", allocated(store)(lambda state: {"out": [ask()]})),
            ("other", allocated(store)(lambda state: {"out": ["no sampler in the store for me"]})))
    assert caplog.records == []


def test_osca_completion_is_routed_wherever_it_was_imported_from():
    from osca import acompletion, completion

    s = sampler()
    node = allocated(s)(lambda state: {"out": [completion(MODEL, ASK).choices[0].message.content]})  # positional
    assert run(("solve", node))["out"][0].endswith(("t=0.1", "t=0.9"))
    assert s.ledger.total().samples == 3
    assert completion(MODEL, ASK).choices[0].message.content == "sample 0 at t=None"  # outside: LiteLLM's own

    @allocated(s)
    async def anode(state):
        return {"out": [(await acompletion(model=MODEL, messages=ASK)).choices[0].message.content]}

    builder = StateGraph(State)
    builder.add_node("anode", anode)
    builder.add_edge(START, "anode")
    builder.add_edge("anode", END)
    assert asyncio.run(builder.compile().ainvoke({"out": []}))["out"][0].endswith(("t=0.1", "t=0.9"))
    assert s.ledger.total().samples == 6
    assert osca.completion is completion and "completion" in osca.__all__


def failing_over_router() -> litellm.Router:
    """Group "team" fails sample 1 (a 500); the Router then falls back to group "backup"."""
    def primary(messages, index, params):
        if index == 1:
            raise litellm.InternalServerError("primary is down", llm_provider="scripted", model="primary")
        return f"primary {index}"

    return litellm.Router(model_list=[
        {"model_name": "team", "litellm_params": {"model": register_script("router-primary", primary)}},
        {"model_name": "backup", "litellm_params": {"model": register_script("router-backup",
                                                                              lambda m, i, p: f"backup {i}")}},
    ], fallbacks=[{"team": ["backup"]}])


def test_a_router_call_in_a_wrapped_node_samples_each_candidate_through_that_router():
    router = failing_over_router()
    s = sampler()

    @allocated(s, state_key="osca")
    def node(state):
        return {"out": [router.completion(model="team", messages=ASK).choices[0].message.content]}

    [call] = run(("node", node))["osca"]
    texts = sorted(c.text or f"failed: {c.error}" for c in call.response.osca.candidates)
    assert texts == ["backup 1", "primary 0", "primary 0"]  # sample 1 failed over, as the Router promises
    assert router.completion(model="team", messages=ASK).choices[0].message.content == "primary 0"  # untouched


def test_an_async_router_call_in_a_wrapped_node_samples_each_candidate_through_that_router():
    router = failing_over_router()

    @allocated(sampler(), state_key="osca")
    async def node(state):
        return {"out": [(await router.acompletion(model="team", messages=ASK)).choices[0].message.content]}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    [call] = asyncio.run(builder.compile().ainvoke({"out": [], "osca": []}))["osca"]
    assert sorted(c.text or f"failed: {c.error}" for c in call.response.osca.candidates) == \
        ["backup 1", "primary 0", "primary 0"]
