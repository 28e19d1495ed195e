"""A tiny estimation spec (used by tests/test_estimate.py, also through `osca estimate`)."""

from __future__ import annotations

from typing import TypedDict

import litellm
from langgraph.graph import END, START, StateGraph

from osca import SamplingConfig
from osca.estimate import EstimationSpec, Problem
from osca.providers.scripted import register_script


def answer(messages, index, params) -> str:
    """Right on easy problems always; on hard ones only when hot and on even sample indices."""
    easy = "easy" in messages[-1]["content"]
    return "right" if easy or ((params.get("temperature") or 0) > 0.5 and index % 2 == 0) else "wrong"


MODEL = register_script("estimate-spec", answer)


class State(TypedDict, total=False):
    question: str
    answer: str


def solve(state: State) -> State:
    reply = litellm.completion(model=MODEL, messages=[{"role": "user", "content": state["question"]}])
    return {"answer": reply.choices[0].message.content}


def graph() -> StateGraph:
    builder = StateGraph(State)
    builder.add_node("solve", solve)
    builder.add_edge(START, "solve")
    builder.add_edge("solve", END)
    return builder


PROBLEMS = [Problem(id="p0", input={"question": "easy"}), Problem(id="p1", input={"question": "hard"}),
            Problem(id="p2", input={"question": "hard too"})]
CONFIGS = [SamplingConfig(name="cold", temperature=0.1), SamplingConfig(name="hot", temperature=0.9)]


def spec() -> EstimationSpec:
    return EstimationSpec(graph=graph(), step="solve", problems=PROBLEMS, configs=CONFIGS,
                          verify=lambda problem, final: final["answer"] == "right", c0=4)
