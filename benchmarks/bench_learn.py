"""Speed and quality of osca's default learner against the paper's hill climbing, side by side.

Synthetic count matrices (seeded) of growing size, up to 300 configurations x 3000 problems x C = 1024.
For each size it times, in one run:
  - default:  learn_allocation(method="greedy_swap"), certified upper bound included;
  - hc:       the paper's hill climbing, osca's implementation (incremental evaluation, same search);
  - hc-ref:   the paper's hill climbing evaluating every candidate from scratch, as the released osca.py
              does (in a child process, stopped after --ref-limit seconds; then the ratio is a lower bound).
and prints both objectives, the default's certified gap and the speed ratios.

    python benchmarks/bench_learn.py [--sizes 30x300x64,100x1000x256,300x3000x1024] [--ref-limit 300]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
from rich.console import Console
from rich.table import Table

import osca


def synthetic(n_configs: int, n_problems: int, runs: int = 200, seed: int = 0) -> osca.CountMatrix:
    """Counts from a skill/difficulty model with problem-specific affinities: many hard problems, a few
    configurations good at each, so coverage is far from saturated even at large budgets."""
    rng = np.random.default_rng(seed)
    skill = rng.normal(0.0, 1.0, n_configs)
    difficulty = rng.normal(7.0, 3.0, n_problems)
    affinity = rng.normal(0.0, 2.0, (n_configs, n_problems))
    p = 1.0 / (1.0 + np.exp(-(skill[:, None] - difficulty[None, :] + affinity)))
    return osca.CountMatrix(tuple(f"h{i}" for i in range(n_configs)), tuple(f"q{j}" for j in range(n_problems)),
                            rng.binomial(runs, p), np.full(n_configs, runs))


def _timed(matrix: osca.CountMatrix, budget: int, **kw) -> tuple[float, osca.AllocationResult]:
    start = time.perf_counter()
    res = osca.learn_allocation(matrix, budget, **kw)
    return time.perf_counter() - start, res


def _reference(size: tuple[int, int, int], queue: mp.Queue) -> None:
    n, m, c = size
    seconds, res = _timed(synthetic(n, m), c, method="hill_climbing", recompute=True, bound=False)
    queue.put((seconds, res.objective))


def reference_run(size: tuple[int, int, int], limit: float) -> tuple[float, float | None]:
    """(seconds, objective) of the from-scratch hill climbing; (limit, None) if it had not finished by then."""
    queue: mp.Queue = mp.Queue()
    proc = mp.get_context("fork").Process(target=_reference, args=(size, queue))
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return limit, None
    return queue.get()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="30x300x64,100x1000x256,300x3000x1024",
                    help="comma-separated CONFIGSxPROBLEMSxBUDGET")
    ap.add_argument("--ref-limit", type=float, default=300.0, help="seconds allowed to the from-scratch reference")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    table = Table(title="learning: osca default vs the paper's hill climbing (synthetic, seeded)")
    for col in ["configs x problems x C", "default s", "hc s", "hc-ref s", "speed-up vs hc", "speed-up vs hc-ref",
                "default f", "hc f", "hc-ref f", "default f - hc f", "certified gap"]:
        table.add_column(col, justify="right")
    for n, m, c in sizes:
        matrix = synthetic(n, m, seed=args.seed)
        t_default, default = _timed(matrix, c, seed=args.seed)
        t_hc, hc = _timed(matrix, c, seed=args.seed, method="hill_climbing", bound=False)
        t_ref, f_ref = reference_run((n, m, c), args.ref_limit)
        stopped = f_ref is None
        table.add_row(
            f"{n} x {m} x {c}", f"{t_default:.3f}", f"{t_hc:.3f}", f"{'>' if stopped else ''}{t_ref:.1f}",
            f"{t_hc / t_default:.1f}x", f"{'>' if stopped else ''}{t_ref / t_default:.0f}x",
            f"{default.objective:.6f}", f"{hc.objective:.6f}", "stopped" if stopped else f"{f_ref:.6f}",
            f"{default.objective - hc.objective:+.2e}", f"{default.gap:.2e}")
        Console().print(f"done {n}x{m}x{c}", style="dim")
    Console(width=220).print(table)
    print("default: greedy + pairwise exchange + 2 restarts, bound included; hc: same search as the paper, "
          "incremental evaluation; hc-ref: the paper's search re-evaluating f from scratch per candidate, "
          "as the released code does.")


if __name__ == "__main__":
    main()
