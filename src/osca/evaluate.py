"""Honest evaluation: expected pass@C on held-out problems, computed baselines, splits and bootstrap CIs.

Test-time success uses the unbiased without-replacement estimator (Chen et al. 2021): drawing k of the n
recorded runs of a configuration, all fail with probability C(n - c, k) / C(n, k). Where an allocation asks a
configuration for more samples than it has runs (k > n) there is no unbiased estimate; we fall back to the
plug-in (1 - c/n) ** k and flag the configuration in `Estimate.extrapolated`. (The released osca.py counts
k > n - c as a certain pass, even for c = 0; we do not.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .allocation import Allocation
from .counts import CountMatrix, CountSplit, ScoreMatrix
from .exceptions import BudgetError
from .learn import AllocationResult, learn_allocation
from .objective import Targets, objective

__all__ = ["CurveRow", "Estimate", "best_pure", "bootstrap_ci", "curve", "expected_pass", "uniform_pass"]


@dataclass(frozen=True, eq=False)
class Estimate:
    """Expected pass@C (or expected max score) of an allocation on a set of problems.

    Attributes:
        value: the mean over problems.
        per_problem: shape (n_problems,), each problem's expected success.
        extrapolated: configurations asked for more samples than they have runs somewhere (plug-in fallback).
    """

    value: float
    per_problem: np.ndarray = field(repr=False)
    extrapolated: tuple[str, ...] = ()


def _fail(t: Targets, i: int, k: int) -> np.ndarray:
    """P(all k samples of configuration i fail) per target, shape (n_targets,), and whether k exceeded runs."""
    n, c = t.runs[i], t.count[i]
    out = np.ones(n.shape)
    for step in range(min(k, int(n.max()))):
        out *= np.clip(n - c - step, 0, None) / np.maximum(n - step, 1)
    return np.where(k <= n, out, (1.0 - c / n) ** k)


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


@dataclass(frozen=True)
class CurveRow:
    """One budget of `curve`: test values averaged over the splits (the allocation is the first split's)."""

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

    @property
    def gap(self) -> float:
        return self.upper_bound - self.osca_train

    def to_dict(self) -> dict:
        return {
            "budget": self.budget,
            "osca": {"test": self.osca_test, "train": self.osca_train, "allocation": dict(self.allocation),
                     "upper_bound": self.upper_bound, "gap": self.gap, "ci95": list(self.osca_ci)},
            "optimal_pure": {"test": self.optimal_pure_test, "config": self.optimal_pure_config},
            "uniform": {"test": self.uniform_test},
            "default": None if self.default_test is None else {"test": self.default_test},
            "extrapolated": list(self.extrapolated),
        }


def best_pure(train: CountMatrix | ScoreMatrix, budget: int) -> str:
    """The single configuration whose `budget` samples score best on `train` (the optimal pure baseline)."""
    values = [objective(train, _only(train, i, budget)) for i in range(train.n_configs)]
    return train.names[int(np.argmax(values))]


def curve(splits: Sequence[CountSplit], budgets: Sequence[int], *, default: str | None = None, seed: int = 0,
          on_step=None) -> list[CurveRow]:
    """Learned allocation vs baselines at each budget, averaged over one or more train/test splits.

    Baselines are computed, never hand-picked: `default` pure (a named configuration), optimal pure (the best
    single configuration on the training part at this budget), and the uniform mix.

    Args:
        splits: train/test splits (several: results are averaged, as for seeded random splits; the allocation
            shown and the optimal pure configuration's name are the first split's / the most frequent).
        budgets: samples per problem C.
        default: name of the configuration a user would call without osca.
        seed: seeds the learner.
        on_step: called once per (budget, split) with no arguments (progress bars).
    """
    if not budgets or min(budgets) <= 0:
        raise BudgetError(f"budgets must be > 0, got {list(budgets)}")
    if default is not None:
        splits[0].train.index(default)  # an unknown name fails before any work
    rows = []
    for budget in budgets:
        runs = []
        for split in splits:
            res = learn_allocation(split.train, budget, seed=seed)
            pure = best_pure(split.train, budget)
            test = split.test
            runs.append(_SplitRun(
                res, expected_pass(test, res.x), expected_pass(test, _only(test, test.index(pure), budget)),
                uniform_pass(test, budget),
                None if default is None else expected_pass(test, _only(test, test.index(default), budget)),
                pure))
            if on_step:
                on_step()
        picks = [r.pure_config for r in runs]
        estimates = [e for r in runs for e in (r.osca, r.pure, r.uniform, r.default) if e is not None]
        rows.append(CurveRow(
            budget=budget, osca_test=_mean(r.osca.value for r in runs),
            osca_train=_mean(r.learned.objective for r in runs),
            osca_ci=bootstrap_ci([r.osca.per_problem for r in runs], seed=seed),
            allocation=runs[0].learned.allocation, upper_bound=_mean(r.learned.upper_bound for r in runs),
            optimal_pure_test=_mean(r.pure.value for r in runs),
            optimal_pure_config=max(picks, key=picks.count),  # most frequent; ties: first split
            uniform_test=_mean(r.uniform.value for r in runs),
            default_test=None if default is None else _mean(r.default.value for r in runs),
            extrapolated=tuple(sorted({n for e in estimates for n in e.extrapolated}))))
    return rows


class _SplitRun(NamedTuple):
    learned: AllocationResult
    osca: Estimate
    pure: Estimate
    uniform: Estimate
    default: Estimate | None
    pure_config: str


def _mean(values) -> float:
    return float(np.mean(list(values)))


def _only(data: CountMatrix | ScoreMatrix, i: int, budget: int) -> np.ndarray:
    x = np.zeros(data.n_configs, dtype=np.int64)
    x[i] = budget
    return x
