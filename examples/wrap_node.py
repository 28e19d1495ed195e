"""Wrap one node of a LangGraph agent with an AllocatedSampler: plan -> write code -> check.

    .venv/bin/python examples/wrap_node.py

`plan` and `write_code` both call `litellm.completion` as any agent would. Only `write_code` is wrapped: its
one call becomes four candidates from local Qwen2.5-Coder at two temperatures, each verified by the task's
tests in the warm Docker sandbox pool, and the node receives the selected one. `check` re-verifies the final
code. Needs `pip install 'osca[local]'` and a Docker engine with the sandbox image (`osca sandbox build`).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: LiteLLM's bundled price list

import operator
from typing import Annotated, TypedDict

import litellm
from langgraph.graph import END, START, StateGraph

from osca import AllocatedSampler, Allocation, SamplingConfig
from osca.langgraph import allocated
from osca.providers.local import register
from osca.sandbox.pool import SandboxPool
from osca.selectors import extract_code
from osca.verifiers import UnitTestVerifier

MODEL = "local/qwen2.5-coder-0.5b"
TASK = ("Write a Python function `run_length(s: str) -> list[tuple[str, int]]` that returns the run-length "
        "encoding of s, e.g. run_length('aaab') == [('a', 3), ('b', 1)] and run_length('') == [].")
TESTS = """from solution import run_length

def test_example():
    assert run_length("aaab") == [("a", 3), ("b", 1)]

def test_empty():
    assert run_length("") == []

def test_single_runs():
    assert run_length("abc") == [("a", 1), ("b", 1), ("c", 1)]

def test_long_run():
    assert run_length("zzzzzzzzzz") == [("z", 10)]
"""


class State(TypedDict, total=False):
    task: str
    plan: str
    code: str
    verdict: str
    osca: Annotated[list, operator.add]


def plan(state: State) -> State:
    reply = litellm.completion(model=MODEL, temperature=0.2, max_tokens=96, seed=0, messages=[
        {"role": "user", "content": f"In three short steps, how would you solve this? {state['task']}"}])
    return {"plan": reply.choices[0].message.content}


def write_code(state: State) -> State:
    reply = litellm.completion(model=MODEL, max_tokens=256, messages=[
        {"role": "system", "content": "Answer with one ```python code block and nothing else."},
        {"role": "user", "content": f"{state['task']}\nPlan:\n{state['plan']}"}])
    return {"code": extract_code(reply.choices[0].message.content)}


def main() -> None:
    register()  # `local/...` for the agent's own litellm calls (the sampler registers it for its own)
    with SandboxPool(size=2) as pool:
        verifier = UnitTestVerifier(TESTS, sandbox=pool, timeout=10)
        configs = [SamplingConfig(name="qwen-t0.2", model=MODEL, temperature=0.2),
                   SamplingConfig(name="qwen-t0.9", model=MODEL, temperature=0.9)]
        sampler = AllocatedSampler(configs, Allocation({"qwen-t0.2": 2, "qwen-t0.9": 2}), verifier=verifier,
                                   seed=0, concurrency=1)

        def check(state: State) -> State:
            return {"verdict": verifier.verify(state["code"]).status.value}

        builder = StateGraph(State)
        builder.add_node("plan", plan)
        builder.add_node("write_code", allocated(sampler, state_key="osca")(write_code))
        builder.add_node("check", check)
        builder.add_edge(START, "plan")
        builder.add_edge("plan", "write_code")
        builder.add_edge("write_code", "check")
        builder.add_edge("check", END)
        final = builder.compile().invoke({"task": TASK, "osca": []})

    [call] = final["osca"]
    print(f"plan (unwrapped node, one sample):\n{final['plan']}\n")
    print("write_code candidates (wrapped node):")
    for c in call.response.osca.candidates:
        print(f"  {c.config}#{c.index}: {c.verification.status.value:12} {c.verification.n_passed}/4 tests, "
              f"{c.usage.get('completion_tokens', 0)} tokens")
    chosen = call.response.osca.selected
    print(f"selected: {chosen.config}#{chosen.index}; check says: {final['verdict']}")
    spend = sampler.ledger.total()
    print(f"ledger: {spend.samples} samples, {spend.prompt_tokens} prompt + {spend.completion_tokens} completion "
          f"tokens, ${spend.dollars:.4f}")
    print(f"\n{final['code']}")


if __name__ == "__main__":
    main()
