"""PNG plots of budget curves (matplotlib, loaded only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .evaluate import CurveRow

__all__ = ["plot_curve"]


def plot_curve(rows: Sequence[CurveRow], path: str | Path, *, title: str, default: str | None = None) -> None:
    """Expected pass@C against C for osca (with its 95% bootstrap band) and the computed baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
