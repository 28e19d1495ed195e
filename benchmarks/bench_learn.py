"""Speed and quality of osca's learners against the paper's hill climbing, side by side.

Synthetic count matrices (seeded) of growing size, up to 300 configurations x 3000 problems x C = 1024, from
two generators: "hard" (skill/difficulty logits: many hard problems, coverage far from saturated) and
"realistic" (problem difficulty beta(0.3, 2), configuration-problem logit affinity normal(0, 1.2): most problems
solvable by some configuration; issue 13). For each size it times, in one run:
  - greedy_swap: greedy + exchange + restarts, certified upper bound included;
  - frank_wolfe: learn_allocation's default: relaxed warm start + roundings + exchange, bound included;
  - hc:       the paper's hill climbing, osca's implementation (incremental evaluation, same search);
  - hc-ref:   the paper's hill climbing evaluating every candidate from scratch, as the released osca.py
              does (in a child process, stopped after --ref-limit seconds; then the ratio is a lower bound);
and prints the objectives, the certified gap, the speed ratios and the time of one matrix-vector product
(configs x problems), the unit a pass over the budget costs at least (C of them). With --process it also times
whole `osca learn` processes (file loading and imports included) at the largest size.

    python benchmarks/bench_learn.py [--sizes 30x300x64,100x1000x256,300x3000x1024] [--generator both]
                                     [--ref-limit 300] [--process]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import osca


def _matrix(p: np.ndarray, runs: int, rng: np.random.Generator) -> osca.CountMatrix:
    n, m = p.shape
    return osca.CountMatrix(tuple(f"h{i}" for i in range(n)), tuple(f"q{j}" for j in range(m)),
                            rng.binomial(runs, p), np.full(n, runs))


def synthetic(n_configs: int, n_problems: int, runs: int = 200, seed: int = 0) -> osca.CountMatrix:
    """Hard: a skill/difficulty model with problem-specific affinities: many hard problems, a few
    configurations good at each, so coverage is far from saturated even at large budgets."""
    rng = np.random.default_rng(seed)
    skill = rng.normal(0.0, 1.0, n_configs)
    difficulty = rng.normal(7.0, 3.0, n_problems)
    affinity = rng.normal(0.0, 2.0, (n_configs, n_problems))
    return _matrix(1.0 / (1.0 + np.exp(-(skill[:, None] - difficulty[None, :] + affinity))), runs, rng)


def realistic(n_configs: int, n_problems: int, runs: int = 200, seed: int = 0) -> osca.CountMatrix:
    """Realistic: each problem's typical pass rate ~ beta(0.3, 2), shifted per configuration by a logit
    affinity ~ normal(0, 1.2): many problems solvable, by different configurations at different rates."""
    rng = np.random.default_rng(seed)
    base = np.clip(rng.beta(0.3, 2.0, n_problems), 1e-9, 1 - 1e-9)
    logit = np.log(base / (1 - base))[None, :] + rng.normal(0.0, 1.2, (n_configs, n_problems))
    return _matrix(1.0 / (1.0 + np.exp(-logit)), runs, rng)


GENERATORS: dict[str, Callable[..., osca.CountMatrix]] = {"hard": synthetic, "realistic": realistic}


def _timed(matrix: osca.CountMatrix, budget: int, **kw) -> tuple[float, osca.AllocationResult]:
    start = time.perf_counter()
    res = osca.learn_allocation(matrix, budget, **kw)
    return time.perf_counter() - start, res


def matvec_seconds(matrix: osca.CountMatrix, repeats: int = 50) -> float:
    """Median time of one (configs x problems) @ (problems,) product in float64."""
    a = np.log1p(-np.minimum(matrix.rates, 1 - 1e-6))
    v = np.random.default_rng(0).random(matrix.n_problems)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ v
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _reference(generator: str, size: tuple[int, int, int], seed: int, queue: mp.Queue) -> None:
    n, m, c = size
    seconds, res = _timed(GENERATORS[generator](n, m, seed=seed), c, method="hill_climbing", recompute=True,
                          bound=False)
    queue.put((seconds, res.objective))


def reference_run(generator: str, size: tuple[int, int, int], seed: int, limit: float) -> tuple[float, float | None]:
    """(seconds, objective) of the from-scratch hill climbing; (limit, None) if it had not finished by then."""
    queue: mp.Queue = mp.Queue()
    proc = mp.get_context("fork").Process(target=_reference, args=(generator, size, seed, queue))
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return limit, None
    return queue.get()


_PAPER_HC = ("import sys, osca; osca.learn_allocation(osca.load_counts(sys.argv[1]), int(sys.argv[2]), "
             "method='hill_climbing', recompute=True, bound=False)")
"""A whole process running the paper's search as released (every candidate's f from scratch)."""


def _process_once(argv: list[str], limit: float | None = None) -> float | None:
    """Wall seconds of one process, or None when it ran past `limit` (then it is killed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as an installed package runs
    start = time.perf_counter()
    try:
        subprocess.run(argv, check=True, capture_output=True, env=env, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - start


def process_seconds(path: Path, budget: int, ref_limit: float, repeats: int = 5) -> dict[str, float | None]:
    """Median wall time of whole processes (interpreter start, imports, loading, learning) after one warm-up
    each: `osca learn` per method, and the paper's hill climbing as released (once, stopped at `ref_limit`)."""
    learn = [sys.executable, "-m", "osca", "learn", str(path), "--budget", str(budget), "--method"]
    out: dict[str, float | None] = {}
    for meth in ("frank_wolfe", "greedy_swap", "hill_climbing"):
        _process_once(learn + [meth])
        out[meth] = float(np.median([_process_once(learn + [meth]) for _ in range(repeats)]))
    out["hc-ref"] = _process_once([sys.executable, "-c", _PAPER_HC, str(path), str(budget)], ref_limit)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="30x300x64,100x1000x256,300x3000x1024",
                    help="comma-separated CONFIGSxPROBLEMSxBUDGET")
    ap.add_argument("--generator", default="both", choices=["both", *GENERATORS])
    ap.add_argument("--ref-limit", type=float, default=300.0, help="seconds allowed to the from-scratch reference")
    ap.add_argument("--process", action="store_true", help="also time whole `osca learn` processes at the largest size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    generators = list(GENERATORS) if args.generator == "both" else [args.generator]

    table = Table(title="learning: osca vs the paper's hill climbing (synthetic, seeded; seconds)")
    for col in ["data", "configs x problems x C", "matvec ms", "greedy_swap", "frank_wolfe", "hc", "hc-ref",
                "hc / greedy_swap", "hc / frank_wolfe", "hc-ref / best", "greedy_swap f - hc f",
                "frank_wolfe f - hc f", "certified gap"]:
        table.add_column(col, justify="right")
    lines = []
    for generator in generators:
        for n, m, c in sizes:
            matrix = GENERATORS[generator](n, m, seed=args.seed)
            t_gs, gs = _timed(matrix, c, seed=args.seed, method="greedy_swap")
            t_fw, fw = _timed(matrix, c, seed=args.seed, method="frank_wolfe")
            t_hc, hc = _timed(matrix, c, seed=args.seed, method="hill_climbing", bound=False)
            t_ref, f_ref = reference_run(generator, (n, m, c), args.seed, args.ref_limit)
            stopped = f_ref is None
            mark = ">" if stopped else ""
            table.add_row(
                generator, f"{n} x {m} x {c}", f"{1e3 * matvec_seconds(matrix):.3f}", f"{t_gs:.3f}", f"{t_fw:.3f}",
                f"{t_hc:.3f}", f"{mark}{t_ref:.1f}", f"{t_hc / t_gs:.1f}x", f"{t_hc / t_fw:.1f}x",
                f"{mark}{t_ref / min(t_gs, t_fw):.0f}x", f"{gs.objective - hc.objective:+.2e}",
                f"{fw.objective - hc.objective:+.2e}", f"{min(gs.gap, fw.gap):.2e}")
            Console(stderr=True).print(f"done {generator} {n}x{m}x{c}", style="dim")
            if args.process and (n, m, c) == sizes[-1]:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "counts.json"
                    matrix.save(path)
                    whole = process_seconds(path, c, args.ref_limit)
                ref = f"{whole['hc-ref']:.1f} s" if whole["hc-ref"] else f"> {args.ref_limit:.0f} s (stopped)"
                ratio = f"{whole['hc-ref'] / whole['frank_wolfe']:.0f}x" if whole["hc-ref"] else \
                    f"> {args.ref_limit / whole['frank_wolfe']:.0f}x"
                lines.append(
                    f"whole processes, {generator} {n}x{m}x{c} (median of 5): `osca learn` (frank_wolfe) "
                    f"{whole['frank_wolfe']:.2f} s, greedy_swap {whole['greedy_swap']:.2f} s, hill_climbing "
                    f"(incremental) {whole['hill_climbing']:.2f} s, the paper's hill climbing as released {ref}; "
                    f"paper's HC / frank_wolfe {ratio}, incremental HC / frank_wolfe "
                    f"{whole['hill_climbing'] / whole['frank_wolfe']:.1f}x")
    Console(width=240).print(table)
    for line in lines:
        print(line)
    print("greedy_swap: greedy + pairwise exchange + 2 restarts; frank_wolfe: relaxed start + 16 roundings + exchange "
          "from the best 2; both include the certified bound. hc: the paper's search, incremental evaluation; "
          "hc-ref: the same search re-evaluating f from scratch per candidate, as the released code does. "
          "matvec: one configs x problems product, the unit of work.")


if __name__ == "__main__":
    main()
