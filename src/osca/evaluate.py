"""Honest evaluation: expected pass@C on held-out problems, computed baselines, splits and bootstrap CIs.

Test-time success uses the unbiased without-replacement estimator (Chen et al. 2021): drawing k of the n
recorded runs of a configuration, all fail with probability C(n - c, k) / C(n, k). Where an allocation asks a
configuration for more samples than it has runs (k > n) there is no unbiased estimate; the estimate is held at
k = n (a problem counts as solved exactly when some recorded run solved it) and the configuration is flagged in
`Estimate.extrapolated`. That is the only continuation that never falls as k grows: the plug-in
(1 - c/n) ** k it replaced dropped below the unbiased value at k = n for every c > 0 (issue 13). Forecasts
beyond the recorded runs come from `osca.scaling`'s fitted laws, not from here.

Baselines are compared at equal cost: a pure configuration buys floor(B / cost) samples of a budget B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .allocation import Allocation
from .counts import CountMatrix, CountSplit, ScoreMatrix
from .exceptions import BudgetError, DataError
from .learn import AllocationResult, learn_allocation
from .objective import Targets, objective

__all__ = ["CurveRow", "Estimate", "Paired", "TrainSizeRow", "best_pure", "bootstrap_ci", "budget_unit", "curve",
           "expected_pass", "paired", "pure_samples", "train_sizes", "uniform_pass"]


@dataclass(frozen=True, eq=False)
class Estimate:
    """Expected pass@C (or expected max score) of an allocation on a set of problems.

    Attributes:
        value: the mean over problems.
        per_problem: shape (n_problems,), each problem's expected success.
        extrapolated: configurations asked for more samples than they have runs somewhere (held at the runs).
    """

    value: float
    per_problem: np.ndarray = field(repr=False)
    extrapolated: tuple[str, ...] = ()


def _fail(t: Targets, i: int, k: int) -> np.ndarray:
    """P(all k samples of configuration i fail) per target, shape (n_targets,): C(n - c, k) / C(n, k), held
    at k = n where k exceeds the runs n (the product simply stops at n)."""
    n, c = t.runs[i], t.count[i]
    out = np.ones(n.shape)
    for step in range(min(k, int(n.max()))):
        out *= np.where(step < n, np.clip(n - c - step, 0, None) / np.maximum(n - step, 1), 1.0)
    return out


def expected_pass(data: CountMatrix | ScoreMatrix, allocation: Allocation | np.ndarray) -> Estimate:
    """Expected fraction of problems solved when pi_i samples are drawn from configuration i.

    Args:
        data: the problems to evaluate on (usually the test part).
        allocation: an `Allocation` or samples per configuration, shape (n_configs,).
    """
    t = Targets.of(data)
    x = allocation.vector(data.names) if isinstance(allocation, Allocation) else np.asarray(allocation, int)
    fail = np.ones(t.weight.shape)
    extrapolated = []
    for i in np.flatnonzero(x):
        fail = fail * _fail(t, int(i), int(x[i]))
        if (x[i] > t.runs[i]).any():
            extrapolated.append(data.names[i])
    per_problem = t.per_problem(1.0 - fail)
    return Estimate(float(per_problem.mean()), per_problem, tuple(extrapolated))


def uniform_pass(data: CountMatrix | ScoreMatrix, budget: int) -> Estimate:
    """The uniform mix: C // n samples from every configuration and the remaining C % n on distinct
    configurations chosen uniformly at random, in exact expectation over that choice.

    With a_i, b_i a configuration's failure with and without its extra sample, the expected failure over
    uniform r-subsets is e_r(a, b) / C(n, r), accumulated as a running average so it never overflows.
    """
    t = Targets.of(data)
    n = t.n_configs
    base, r = divmod(int(budget), n)
    # avg[j] = mean over j-subsets S of the configurations seen so far of prod_{S} b * prod_{not S} a
    avg = np.zeros((r + 1, t.weight.size))
    avg[0] = 1.0
    for i in range(n):
        a = _fail(t, i, base) if base else np.ones(t.weight.size)
        b = _fail(t, i, base + 1)
        seen = i + 1
        top = min(r, seen)
        js = np.arange(top, 0, -1)
        avg[js] = ((seen - js) / seen)[:, None] * a * avg[js] + (js / seen)[:, None] * b * avg[js - 1]
        avg[0] = a * avg[0]
    per_problem = t.per_problem(1.0 - avg[r])
    extra = tuple(nm for i, nm in enumerate(data.names) if ((base + (r > 0)) > t.runs[i]).any())
    return Estimate(float(per_problem.mean()), per_problem, extra)


def bootstrap_ci(per_problem: Sequence[np.ndarray], *, level: float = 0.95, n_boot: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI over problems of the mean (averaged over splits when several are given)."""
    rng = np.random.default_rng(seed)
    means = np.zeros(n_boot)
    for values in per_problem:
        idx = rng.integers(values.size, size=(n_boot, values.size))
        means += values[idx].mean(axis=1)
    means /= len(per_problem)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


class Paired(NamedTuple):
    """Held-out paired difference, learned minus a baseline, over repeated random splits.

    Attributes:
        diff: mean over splits of (learned - baseline) test value.
        se: its Nadeau-Bengio corrected standard error, sqrt((1/R + n_test/n_train) * s^2) with s^2 the
            variance of the per-split differences: the splits share problems, so the naive s / sqrt(R) is far too
            small (Nadeau & Bengio 2003). NaN for a single split.
        wins, ties, losses: splits where the learned mix is better, within `TIE`, or worse.
    """

    diff: float
    se: float
    wins: int
    ties: int
    losses: int

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the difference is beyond the 95% t interval (R - 1 degrees of freedom),
        "indistinguishable" inside it, "unknown" with one split."""
        repeats = self.wins + self.ties + self.losses
        if repeats < 2 or not np.isfinite(self.se):
            return "unknown"
        if self.se == 0.0:
            return "indistinguishable" if self.diff == 0.0 else ("better" if self.diff > 0 else "worse")
        t = self.diff / self.se
        cut = _t_quantile(0.975, repeats - 1)
        return "better" if t > cut else "worse" if t < -cut else "indistinguishable"

    def to_dict(self) -> dict:
        return {"diff": self.diff, "se_corrected": None if np.isnan(self.se) else self.se, "wins": self.wins,
                "ties": self.ties, "losses": self.losses, "verdict": self.verdict}


TIE = 5e-4
"""Per-split differences below this (half the printed precision) count as ties."""


def paired(learned: Sequence[float], baseline: Sequence[float], *, n_train: int, n_test: int) -> Paired:
    """The `Paired` comparison of per-split test values (one per split, same splits for both)."""
    d = np.asarray(learned, dtype=float) - np.asarray(baseline, dtype=float)
    se = float(np.sqrt((1.0 / d.size + n_test / n_train) * d.var(ddof=1))) if d.size > 1 else float("nan")
    return Paired(float(d.mean()), se, int((d > TIE).sum()), int((np.abs(d) <= TIE).sum()), int((d < -TIE).sum()))


def _t_quantile(q: float, df: int) -> float:
    """Student-t quantile by bisection on the CDF (its density integrated numerically; numpy only)."""
    grid = np.linspace(0.0, 60.0, 120001)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid ** 2 / df))
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    return float(np.interp(q, cdf, grid))


@dataclass(frozen=True)
class CurveRow:
    """One budget of `curve`: test values averaged over the splits (the allocation is the first split's).

    Every baseline spends the same budget: a pure configuration draws floor(budget / cost) samples, the
    uniform mix floor(budget / mean cost) (`unit` says whether budgets count samples or cost units).
    """

    budget: int
    osca_test: float
    osca_train: float
    osca_ci: tuple[float, float]
    allocation: Allocation
    upper_bound: float
    optimal_pure_test: float
    optimal_pure_config: str
    uniform_test: float
    default_test: float | None
    extrapolated: tuple[str, ...]
    unit: str = "samples"
    versus_optimal_pure: Paired | None = None
    versus_default: Paired | None = None

    @property
    def gap(self) -> float:
        return self.upper_bound - self.osca_train

    def to_dict(self) -> dict:
        return {
            "budget": self.budget, "unit": self.unit,
            "osca": {"test": self.osca_test, "train": self.osca_train, "allocation": dict(self.allocation),
                     "upper_bound": self.upper_bound, "gap": self.gap, "ci95": list(self.osca_ci)},
            "optimal_pure": {"test": self.optimal_pure_test, "config": self.optimal_pure_config,
                             "osca_minus": _opt_dict(self.versus_optimal_pure)},
            "uniform": {"test": self.uniform_test},
            "default": None if self.default_test is None else {"test": self.default_test,
                                                               "osca_minus": _opt_dict(self.versus_default)},
            "extrapolated": list(self.extrapolated),
        }


def _opt_dict(p: Paired | None) -> dict | None:
    return None if p is None else p.to_dict()


def budget_unit(data: CountMatrix | ScoreMatrix) -> str:
    """"samples" when every configuration costs 1, else "cost units"."""
    return "samples" if np.all(data.costs == 1.0) else "cost units"


def pure_samples(data: CountMatrix | ScoreMatrix, i: int, budget: float) -> np.ndarray:
    """The pure allocation of configuration i at equal cost: floor(budget / cost_i) samples, shape (n_configs,)."""
    x = np.zeros(data.n_configs, dtype=np.int64)
    x[i] = int(math.floor(budget / data.costs[i] + 1e-9))
    return x


def best_pure(train: CountMatrix | ScoreMatrix, budget: float) -> str:
    """The single configuration whose affordable samples (floor(budget / cost)) score best on `train`."""
    values = [objective(train, pure_samples(train, i, budget)) for i in range(train.n_configs)]
    return train.names[int(np.argmax(values))]


def curve(splits: Sequence[CountSplit], budgets: Sequence[int], *, default: str | None = None, seed: int = 0,
          on_step=None) -> list[CurveRow]:
    """Learned allocation vs baselines at each budget, averaged over one or more train/test splits.

    Baselines are computed, never hand-picked, and spend the same budget as the learned allocation: `default`
    pure (a named configuration), optimal pure (the best single configuration on the training part at this
    budget), and the uniform mix. With several splits each row also carries the paired held-out differences
    (learned minus optimal pure, learned minus default) with the Nadeau-Bengio corrected standard error.

    Args:
        splits: train/test splits (several: results are averaged, as for seeded random splits; the allocation
            shown and the optimal pure configuration's name are the first split's / the most frequent).
        budgets: samples per problem C (cost units when configurations have costs).
        default: name of the configuration a user would call without osca.
        seed: seeds the learner.
        on_step: called once per (budget, split) with no arguments (progress bars).
    """
    if not budgets or min(budgets) <= 0:
        raise BudgetError(f"budgets must be > 0, got {list(budgets)}")
    if default is not None:
        splits[0].train.index(default)  # an unknown name fails before any work
    first = splits[0].train
    unit = budget_unit(first)
    rows = []
    for budget in budgets:
        runs = []
        for split in splits:
            res = learn_allocation(split.train, budget, seed=seed)
            pure = best_pure(split.train, budget)
            test = split.test
            runs.append(_SplitRun(
                res, expected_pass(test, res.x), expected_pass(test, pure_samples(test, test.index(pure), budget)),
                uniform_pass(test, int(math.floor(budget / test.costs.mean() + 1e-9))),
                None if default is None else expected_pass(test, pure_samples(test, test.index(default), budget)),
                pure))
            if on_step:
                on_step()
        picks = [r.pure_config for r in runs]
        estimates = [e for r in runs for e in (r.osca, r.pure, r.uniform, r.default) if e is not None]
        sizes = {"n_train": first.n_problems, "n_test": splits[0].test.n_problems}
        learned = [r.osca.value for r in runs]
        rows.append(CurveRow(
            budget=budget, osca_test=_mean(learned),
            osca_train=_mean(r.learned.objective for r in runs),
            osca_ci=bootstrap_ci([r.osca.per_problem for r in runs], seed=seed),
            allocation=runs[0].learned.allocation, upper_bound=_mean(r.learned.upper_bound for r in runs),
            optimal_pure_test=_mean(r.pure.value for r in runs),
            optimal_pure_config=max(picks, key=picks.count),  # most frequent; ties: first split
            uniform_test=_mean(r.uniform.value for r in runs),
            default_test=None if default is None else _mean(r.default.value for r in runs),
            extrapolated=tuple(sorted({n for e in estimates for n in e.extrapolated})), unit=unit,
            versus_optimal_pure=paired(learned, [r.pure.value for r in runs], **sizes),
            versus_default=None if default is None else paired(learned, [r.default.value for r in runs], **sizes)))
    return rows


@dataclass(frozen=True)
class TrainSizeRow:
    """Held-out comparison at one number of training problems and one budget (`train_sizes`)."""

    n_train: int
    n_test: int
    row: CurveRow

    def to_dict(self) -> dict:
        return {"n_train": self.n_train, "n_test": self.n_test, **self.row.to_dict()}


def train_sizes(pool: CountMatrix, sizes: Sequence[int], budgets: Sequence[int], *, repeats: int = 10,
                default: str | None = None, seed: int = 0, on_step=None) -> list[TrainSizeRow]:
    """How the held-out gain of the learned mix grows with the number of problems it is learned from.

    For each size, `repeats` seeded random splits put that many problems in training and the rest in test;
    `curve` compares the learned mix with the baselines on the test part (paired, Nadeau-Bengio corrected).

    Args:
        pool: every problem with counts.
        sizes: training problems, each in 1 .. n_problems - 1.
        budgets, default, seed: as for `curve` (split r of every size uses seed + r).
        on_step: called once per (size, budget, split).
    """
    m = pool.n_problems
    bad = [n for n in sizes if not 0 < n < m]
    if not sizes or bad:
        raise DataError(f"training sizes must lie in 1..{m - 1} (the pool has {m} problems), got {list(sizes)}")
    out = []
    for n in sizes:
        splits = [pool.split(n / m, seed + r) for r in range(repeats)]
        for row in curve(splits, budgets, default=default, seed=seed, on_step=on_step):
            out.append(TrainSizeRow(n, m - n, row))
    return out


class _SplitRun(NamedTuple):
    learned: AllocationResult
    osca: Estimate
    pure: Estimate
    uniform: Estimate
    default: Estimate | None
    pure_config: str


def _mean(values) -> float:
    return float(np.mean(list(values)))
