"""PNG plots of budget curves (matplotlib, loaded only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .evaluate import CurveRow, TrainSizeRow

if TYPE_CHECKING:
    from .scaling import CoverageCurve, DistributionFit, PowerLawFit, PrecisionReport

__all__ = ["plot_curve", "plot_precision", "plot_scaling", "plot_train_sizes"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(rows: Sequence[CurveRow], path: str | Path, *, title: str, default: str | None = None) -> None:
    """Expected pass@C against C for osca (with its 95% bootstrap band) and the computed baselines."""
    plt = _pyplot()
    budgets = [r.budget for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    ax.fill_between(budgets, [r.osca_ci[0] for r in rows], [r.osca_ci[1] for r in rows], color="C3", alpha=0.15,
                    label="osca 95% CI (bootstrap over problems)")
    ax.plot(budgets, [r.osca_test for r in rows], "o-", color="C3", label="osca (learned allocation)")
    ax.plot(budgets, [r.optimal_pure_test for r in rows], "s--", color="C0", label="optimal pure (best on train)")
    ax.plot(budgets, [r.uniform_test for r in rows], "^:", color="C2", label="uniform mix")
    if default is not None:
        ax.plot(budgets, [r.default_test for r in rows], "x-.", color="C7", label=f"default pure ({default})")
    ax.set_xlabel("samples per problem C")
    ax.set_ylabel("expected pass@C (test)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_train_sizes(rows: Sequence[TrainSizeRow], path: str | Path, *, title: str,
                     default: str | None = None) -> None:
    """Held-out gain of the learned mix (over the default and over optimal pure) against the number of training
    problems, one line per budget, with 95% intervals from the Nadeau-Bengio corrected standard error."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if default else 1, figsize=(11 if default else 6.5, 4.6), dpi=130, squeeze=False)
    panels = [("versus_optimal_pure", "osca - optimal pure")]
    if default:
        panels.append(("versus_default", f"osca - default ({default})"))
    for ax, (attr, label) in zip(axes[0], panels):
        for n, budget in enumerate(sorted({r.row.budget for r in rows})):
            mine = [r for r in rows if r.row.budget == budget]
            sizes = [r.n_train for r in mine]
            diffs = np.array([getattr(r.row, attr).diff for r in mine])
            half = 1.96 * np.nan_to_num([getattr(r.row, attr).se for r in mine])
            ax.errorbar(sizes, diffs, yerr=half, fmt="o-", ms=3.5, capsize=3, color=f"C{n % 10}",
                        label=f"C = {budget}")
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_xlabel("training problems")
        ax.set_ylabel(f"held-out gain: {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title + "\n(95% intervals: Nadeau-Bengio corrected over repeated random splits)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scaling(curves: Sequence[tuple[CoverageCurve, PowerLawFit | DistributionFit]], path: str | Path, *,
                 title: str, k_max: float | None = None) -> None:
    """Measured coverage (points, bootstrap band) against the fitted law (power law or pass-rate distribution),
    log-scaled k.

    The fit is solid over the k it was fitted on and dashed beyond (extrapolation), up to `k_max` (default:
    the largest measured k); a grey span marks k beyond the first curve's fit range.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    top = max(float(c.k.max()) for c, _ in curves) if k_max is None else float(k_max)
    for n, (curve, fit) in enumerate(curves):
        colour = f"C{n % 10}"
        ax.fill_between(curve.k, curve.band[:, 0], curve.band[:, 1], color=colour, alpha=0.12)
        ax.plot(curve.k, curve.coverage, "o", ms=3.5, color=colour, label=f"{curve.label}: measured")
        inside = np.geomspace(fit.k_min, fit.k_max, 100)
        ax.plot(inside, fit.predict(inside), "-", color=colour, lw=1.4)
        if top > fit.k_max:
            beyond = np.geomspace(fit.k_max, top, 100)
            ax.plot(beyond, fit.predict(beyond), "--", color=colour, lw=1.4)
    fit0 = curves[0][1]
    if top > fit0.k_max:
        ax.axvspan(fit0.k_max, top, color="0.5", alpha=0.08, lw=0, label=f"extrapolated (k > {fit0.k_max:g})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"{curves[0][0].unit} per problem k (log scale)")
    ax.set_ylabel("coverage: expected pass@k")
    ax.set_title(f"{title}\n{fit0.method} fit: {fit0.describe()}\n(solid: fitted range, dashed: extrapolated)",
                 fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_precision(report: PrecisionReport, path: str | Path, *, title: str) -> None:
    """Fraction of problems each selector solves against coverage (any candidate correct), per k."""
    plt = _pyplot()
    ks = [r.k for r in report.rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=130)
    ax.plot(ks, [r.coverage for r in report.rows], "k-o", ms=4, label="coverage (some candidate correct)")
    for n, name in enumerate(report.selectors):
        ax.plot(ks, [r.solved[name] for r in report.rows], "s--", ms=3.5, color=f"C{n % 10}", label=name)
    ax.set_xlabel("candidates per problem k")
    ax.set_ylabel(f"fraction of {report.n_problems} problems solved")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
