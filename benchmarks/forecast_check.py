"""Forecast check on recorded counts: fit each coverage curve on k <= 4 and k <= 8, forecast k = 16.

Side by side, the exponentiated power law (Brown et al. 2024) and the distribution of per-problem pass rates
(Schaeffer et al. 2025; a configuration's from its first runs only), for every configuration and the learned
allocation (issue 13). Prints the errors and their median |error| per method.

    python benchmarks/forecast_check.py [COUNTS] [--fit-max-k 4,8] [--at-k 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from osca import CountSplit, load_counts
from osca.scaling import FIT_METHODS, config_curve, extrapolation_check, learned_curve

RELEASE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "osca" / "swebench_agentless.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("counts", nargs="?", type=Path, default=RELEASE.resolve())
    ap.add_argument("--fit-max-k", default="4,8", help="comma-separated fit windows")
    ap.add_argument("--at-k", type=float, default=16)
    args = ap.parse_args()
    data = load_counts(args.counts)
    test = data.test if isinstance(data, CountSplit) else data
    windows = [float(w) for w in args.fit_max_k.split(",")]
    curves = [learned_curve(data)] + [config_curve(data, n) for n in test.names]
    rows = extrapolation_check(curves, windows, args.at_k)

    table = Table(title=f"forecast of coverage at k = {args.at_k:g} ({args.counts.name}, {test.n_problems} problems)")
    table.add_column("curve")
    table.add_column(f"measured k={args.at_k:g}", justify="right")
    for w in windows:
        for m in FIT_METHODS:
            table.add_column(f"{m} error, k<={w:g}", justify="right")
    for label in dict.fromkeys(r.label for r in rows):
        mine = [r for r in rows if r.label == label]
        table.add_row(label, f"{mine[0].measured:.4f}",
                      *(f"{r.error[m]:+.4f}" for r in mine for m in FIT_METHODS))
    Console(width=200).print(table)
    for w in windows:
        configs = [r for r in rows if r.fit_max_k == w and r.label != curves[0].label]
        medians = {m: float(np.nanmedian([abs(r.error[m]) for r in configs])) for m in FIT_METHODS}
        print(f"k <= {w:g}: median |error| over {len(configs)} configurations: "
              + ", ".join(f"{m} {v:.4f}" for m, v in medians.items())
              + f" (distribution / power law = {medians['distribution'] / medians['power-law']:.2f})")


if __name__ == "__main__":
    main()
