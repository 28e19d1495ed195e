"""A tool-calling agent inside a LangGraph graph, its model node wrapped with `allocated()` (issue 11): the
selected message keeps its tool calls, so a `ToolNode` loop continues, and a streaming `ChatLiteLLM` node works
under `stream_mode="messages"`, sync and async."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langchain_litellm")

from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_litellm import ChatLiteLLM  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402

from osca.configs import SamplingConfig  # noqa: E402
from osca.langgraph import allocated  # noqa: E402
from osca.providers.scripted import calls  # noqa: E402
from osca.sampler import AllocatedSampler  # noqa: E402


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class State(TypedDict):
    messages: Annotated[list, add_messages]
    sampled: Annotated[list, operator.add]


def react(text: str | None) -> Any:
    """A ReAct-style model: ask the weather tool (with `text` beside the call, or none; cities vary by sample,
    Paris wins the vote), then answer from the tool's result."""
    def model(messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str | dict[str, Any]:
        if messages[-1]["role"] == "tool":
            return f"It is {messages[-1]['content']}."
        city = "Rome" if index == 1 else "Paris"
        return {"content": text,
                "tool_calls": [{"function": {"name": "weather", "arguments": f'{{"city": "{city}"}}'}}]}

    return model


def agent_graph(sampler: AllocatedSampler, llm: Any) -> Any:
    @allocated(sampler, state_key="sampled")
    def agent(state: State) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


@pytest.mark.parametrize("text", [None, "Let me check the weather."], ids=["tool-call-only", "text-and-tool-call"])
def test_a_wrapped_react_node_loops_through_a_tool_node(script, text):
    name, model = script(react(text))
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False, seed=0)
    graph = agent_graph(sampler, ChatLiteLLM(model=model).bind_tools([weather]))

    final = graph.invoke({"messages": [("user", "What is the weather in Paris?")]})

    asked, answer = final["messages"][1], final["messages"][-1]
    assert isinstance(asked, AIMessage) and asked.tool_calls[0]["args"] == {"city": "Paris"}
    assert asked.content == (text or "")
    assert isinstance(final["messages"][2], ToolMessage) and final["messages"][2].content == "sunny in Paris"
    assert answer.content == "It is sunny in Paris."
    assert calls(name) == 6 and len(final["sampled"]) == 2  # two model turns, three samples each


def one_node_graph(sampler: AllocatedSampler, llm: Any, *, asynchronous: bool) -> Any:
    if asynchronous:
        async def agent(state: State) -> dict[str, Any]:
            return {"messages": [await llm.ainvoke(state["messages"])]}
    else:
        def agent(state: State) -> dict[str, Any]:
            return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(State)
    builder.add_node("agent", allocated(sampler)(agent))
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_mode_messages_through_a_streaming_chat_litellm_node(script, asynchronous):
    answers = ["Sunny, 21 degrees.", "Rainy.", "Sunny, 21 degrees."]
    name, model = script(lambda messages, index, params: answers[index])
    sampler = AllocatedSampler([SamplingConfig(name="a", model=model)], {"a": 3}, batch_n=False, seed=0)
    graph = one_node_graph(sampler, ChatLiteLLM(model=model, streaming=True), asynchronous=asynchronous)
    state = {"messages": [("user", "Weather in Paris?")]}

    if asynchronous:
        async def collect() -> list[Any]:
            return [chunk async for chunk, _ in graph.astream(state, stream_mode="messages")]

        chunks = asyncio.run(collect())
    else:
        chunks = [chunk for chunk, _ in graph.stream(state, stream_mode="messages")]

    streamed = [c for c in chunks if isinstance(c, AIMessageChunk)]
    assert streamed and "".join(c.content for c in streamed) == "Sunny, 21 degrees."
    assert calls(name) == 3
