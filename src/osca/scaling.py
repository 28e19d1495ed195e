"""Inference scaling: coverage curves, their power-law fit, a budget advisor, and selector precision.

Repeated sampling pays off predictably: coverage c(k), the chance that some of k samples is correct, is well
fit by an exponentiated power law (Brown et al. 2024, "Large Language Monkeys", arXiv 2407.21787)

    log c(k) = a * k ** b,    a < 0, b < 0  (c rises toward 1 as k grows),

which is a straight line in log(-log c) = log(-a) + b * log k. osca measures c(k) from a count matrix with the
unbiased estimator of `osca.evaluate` (for a single configuration, a fixed allocation's mix, or the allocation
learned at each budget), fits the line by least squares, predicts larger k (flagged as extrapolation), and
turns a target coverage or a minimum marginal gain into a recommended budget and the allocation learned at it.

Coverage is a ceiling: a selector without a perfect verifier (majority vote, an LLM judge) turns only part of
it into solved problems. `precision_report` measures that part at each k on problems with known answers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .allocation import Allocation
from .counts import CountMatrix, CountSplit
from .evaluate import bootstrap_ci, budget_unit, expected_pass
from .exceptions import BudgetError, ConfigError, DataError
from .learn import learn_allocation

if TYPE_CHECKING:
    from .sampler import Candidate

__all__ = ["BudgetAdvice", "CoverageCurve", "DistributionFit", "ForecastError", "PowerLawFit", "PrecisionReport",
           "PrecisionRow", "allocation_curve", "choose_method", "config_curve", "extrapolation_check",
           "fit_distribution", "fit_pass_rates", "fit_power_law", "forecast_band", "learned_curve", "precision_report",
           "recommend_budget", "scale_allocation"]


# ------------------------------------------------------------------------------------------------ curves


@dataclass(frozen=True, eq=False)
class CoverageCurve:
    """Expected coverage (pass@k) at each measured k, with a bootstrap band over problems.

    Attributes:
        label: what was measured (a configuration name, "allocation", "osca (learned)").
        k: shape (m,), budgets measured: samples per problem (cost units for a learned curve on data with
            costs).
        coverage: shape (m,), expected fraction of problems with at least one correct sample.
        band: shape (m, 2), percentile bootstrap interval over problems at `level`.
        allocations: the allocation drawn at each k.
        per_problem: shape (m, n_problems), each problem's expected coverage.
        unit_cost: cost of one unit of k (a configuration's cost, a mix's mean cost; 1 for cost-unit budgets).
        ceiling: fraction of problems some recorded run of the curve's configurations solved (all
            configurations for a learned curve): the most the counts can vouch for at any k.
        extrapolated: configurations asked for more samples than they have runs somewhere (estimate held at
            the runs: see `recorded`).
        level: the band's confidence level.
        recorded: shape (m,), True where no configuration was asked for more samples than it has runs: the
            unbiased estimate. Beyond, the estimate is held at the recorded runs and forecasts come from a fit.
        counts: for a single configuration, its (correct, runs) per problem, shape (n_problems,) each, and the
            samples one unit of k buys: the distributional fit uses them (beta-binomial likelihood) instead of
            the curve.
        unit: what k counts: "samples" or "cost units".
    """

    label: str
    k: np.ndarray
    coverage: np.ndarray
    band: np.ndarray
    allocations: tuple[Allocation, ...] = field(repr=False)
    per_problem: np.ndarray = field(repr=False)
    ceiling: float = 1.0
    unit_cost: float = 1.0
    extrapolated: tuple[str, ...] = ()
    level: float = 0.95
    recorded: np.ndarray | None = field(default=None, repr=False)
    counts: tuple[np.ndarray, np.ndarray, float] | None = field(default=None, repr=False)
    unit: str = "samples"

    @property
    def measured(self) -> np.ndarray:
        """Points within the recorded runs (all when `recorded` is unset), shape (m,) bool."""
        return np.ones(self.k.shape, bool) if self.recorded is None else self.recorded

    def fit(self, fit_max_k: float | None = None, method: str = "power-law") -> PowerLawFit | DistributionFit:
        """Fit this curve's recorded points with k <= `fit_max_k` (all when None).

        Args:
            fit_max_k: fit on k <= this only (for a configuration's counts: its first runs only).
            method: "power-law" (`fit_power_law`) or "distribution" (`fit_pass_rates` on a configuration's
                counts, else `fit_distribution` on the curve).
        """
        k, c = self.k[self.measured], self.coverage[self.measured]
        if method == "power-law":
            return fit_power_law(k, c, fit_max_k=fit_max_k)
        if method != "distribution":
            raise ConfigError(f"unknown fit method {method!r} (known: {', '.join(FIT_METHODS)})")
        if self.counts is not None:
            correct, runs, per_k = self.counts
            use = None if fit_max_k is None else max(1, int(math.floor(fit_max_k * per_k + 1e-9)))
            return fit_pass_rates(correct, runs, use_runs=use, samples_per_k=per_k)
        samples = np.array([a.total for a in self.allocations], dtype=float)[self.measured] if self.allocations \
            else None
        return fit_distribution(k, c, samples=samples, fit_max_k=fit_max_k)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "unit": self.unit, "k": [_num(k) for k in self.k],
                "coverage": self.coverage.tolist(), "band": self.band.tolist(), "level": self.level,
                "ceiling": self.ceiling, "unit_cost": self.unit_cost, "recorded": self.measured.tolist(),
                "extrapolated": list(self.extrapolated)}


FIT_METHODS = ("distribution", "power-law")


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _parts(data: CountMatrix | CountSplit) -> tuple[CountMatrix, CountMatrix]:
    """(train, test): a matrix serves as both (in-sample)."""
    return (data.train, data.test) if isinstance(data, CountSplit) else (data, data)


def _measure(test: CountMatrix, label: str, ks: Sequence[float], allocations: Sequence[Allocation], *,
             unit_cost: float, level: float, n_boot: int, seed: int, configs: Sequence[str] | None = None,
             unit: str = "samples", counts: tuple[np.ndarray, np.ndarray, float] | None = None) -> CoverageCurve:
    """Coverage of each allocation on `test` (the unbiased product form of `expected_pass`) and its band.

    Every k shares the bootstrap's seed, so the band moves smoothly along the curve (common random numbers).
    `configs` are those the ceiling counts (default: the ones the allocations use).
    """
    used = sorted({n for a in allocations for n in a}) if configs is None else list(configs)
    rows = [test.index(n) for n in used]
    estimates = [expected_pass(test, a) for a in allocations]
    band = np.array([bootstrap_ci([e.per_problem], level=level, n_boot=n_boot, seed=seed) for e in estimates])
    return CoverageCurve(
        label=label, k=np.asarray(ks, dtype=float), coverage=np.array([e.value for e in estimates]), band=band,
        allocations=tuple(allocations), unit_cost=float(unit_cost),
        extrapolated=tuple(sorted({n for e in estimates for n in e.extrapolated})),
        per_problem=np.array([e.per_problem for e in estimates]),
        ceiling=float((test.correct[rows] > 0).any(axis=0).mean()), level=level,
        recorded=np.array([not e.extrapolated for e in estimates]), unit=unit, counts=counts)


def _checked_ks(ks: Sequence[float], *, whole: str | None = None) -> list[float]:
    """Budgets as floats, all > 0; whole numbers too when `whole` names what they count samples of."""
    ks = [float(k) for k in ks]
    if not ks or min(ks) <= 0:
        raise BudgetError(f"budgets must be > 0, got {ks}")
    if whole is not None and not all(k.is_integer() for k in ks):
        raise BudgetError(f"{whole} budgets count samples and must be whole numbers, got {ks}")
    return ks


def config_curve(data: CountMatrix | CountSplit, name: str, ks: Sequence[float] | None = None, *,
                 per_cost: bool = False, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> CoverageCurve:
    """Coverage of k samples from one configuration: pass@k = mean_j 1 - C(n - c_j, k) / C(n, k).

    Args:
        data: counts (a split's test part is measured).
        name: the configuration.
        ks: sample counts; default 1 .. the fewest runs it has on any problem (where the estimate is unbiased).
        per_cost: `ks` are budgets in cost units, of which the configuration buys floor(k / cost) samples: the
            equal-cost baseline beside a learned curve on data with costs.
        level, n_boot, seed: the bootstrap band.
    """
    test = _parts(data)[1]
    i = test.index(name)
    cost = float(test.costs[i])
    if per_cost:
        ks = _checked_ks(ks if ks is not None else [cost * k for k in range(1, int(test.runs[i].min()) + 1)])
        draws = [int(math.floor(k / cost + 1e-9)) for k in ks]
    else:
        ks = _checked_ks(range(1, int(test.runs[i].min()) + 1) if ks is None else ks, whole="a configuration's")
        draws = [int(k) for k in ks]
    return _measure(test, name, ks, [Allocation({name: k}) for k in draws], unit_cost=1.0 if per_cost else cost,
                    level=level, n_boot=n_boot, seed=seed, unit=budget_unit(test) if per_cost else "samples",
                    counts=(test.correct[i], test.runs[i], 1.0 / cost if per_cost else 1.0))


def scale_allocation(allocation: Allocation, k: int) -> Allocation:
    """The allocation's mix at k samples, apportioned by Sainte-Lague's divisor rule: samples are handed out one
    at a time, each to the configuration with the largest pi_i / (2 x_i + 1) (ties: the larger pi_i, then the
    name). Every x_i only grows with k, so coverage along the curve never falls (largest-remainder rounding can
    take a sample away as k grows: the Alabama paradox), and k = C gives the allocation back.

    Example:
        >>> scale_allocation(Allocation({"a": 3, "b": 1}), 2)
        Allocation({'a': 2})
    """
    if allocation.total == 0:
        raise BudgetError("the allocation draws no samples (it sums to zero)")
    names = sorted(allocation, key=lambda n: (-allocation[n], n))
    pi = np.array([allocation[n] for n in names], dtype=float)
    x = np.zeros(len(names), dtype=np.int64)
    for _ in range(int(k)):
        x[int(np.argmax(pi / (2 * x + 1)))] += 1  # argmax takes the first of ties: names are sorted that way
    return Allocation.from_vector(names, x)


def allocation_curve(data: CountMatrix | CountSplit, allocation: Allocation, ks: Sequence[int] | None = None, *,
                     level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> CoverageCurve:
    """Coverage of a fixed allocation's mix at k samples (`scale_allocation`), in the product form
    1 - prod_i C(n_i - c_ij, x_i) / C(n_i, x_i).

    Args:
        data: counts (a split's test part is measured).
        allocation: the mix; its total C is one point of the curve.
        ks: sample counts; default 1 .. C.
    """
    test = _parts(data)[1]
    x = allocation.vector(test.names)
    if ks is None:
        ks = range(1, allocation.total + 1)
    ks = _checked_ks(ks, whole="an allocation's")
    return _measure(test, "allocation", ks, [scale_allocation(allocation, int(k)) for k in ks],
                    unit_cost=float(test.costs @ x / x.sum()), level=level, n_boot=n_boot, seed=seed)


def learned_curve(data: CountMatrix | CountSplit, ks: Sequence[float] | None = None, *, seed: int = 0,
                  level: float = 0.95, n_boot: int = 1000,
                  on_step: Callable[[], Any] | None = None) -> CoverageCurve:
    """Coverage of the allocation learned at each budget (on the training part, measured on the test part).

    Args:
        data: counts; a `CountSplit` learns on `train` and measures on `test`, a matrix does both in-sample.
        ks: budgets; default 1 .. the most runs recorded, in samples (multiples of the cheapest configuration's
            cost when configurations have costs: budgets are then in cost units).
        seed: seeds the learner and the bootstrap.
        on_step: called after each budget (progress bars).
    """
    train, test = _parts(data)
    if ks is None:
        ks = [train.costs.min() * k for k in range(1, int(train.runs.max()) + 1)]
    ks = _checked_ks(ks)
    allocations = []
    for k in ks:
        allocations.append(learn_allocation(train, _num(k), seed=seed, bound=False).allocation)
        if on_step:
            on_step()
    return _measure(test, "osca (learned)", ks, allocations, unit_cost=1.0, level=level, n_boot=n_boot, seed=seed,
                    configs=test.names, unit=budget_unit(train))


# ------------------------------------------------------------------------------------------------ the fit


class _FittedRange:
    """What both fits share: the range of k they were fitted on (`k_min`, `k_max`)."""

    k_min: float
    k_max: float

    def extrapolates(self, k: float | Sequence[float] | np.ndarray) -> bool | np.ndarray:
        """Whether k lies outside the fitted range (a bool for a scalar k)."""
        k = np.asarray(k, dtype=float)
        out = (k > self.k_max) | (k < self.k_min)
        return bool(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class PowerLawFit(_FittedRange):
    """log c(k) = a * k ** b fitted to measured coverage; `predict` beyond [k_min, k_max] is extrapolation.

    Attributes:
        a, b: the law's parameters (a < 0; b < 0 when coverage grows with k).
        rmse: root mean squared error of the fitted coverage over the points used.
        rmse_log: the same for log c (the law's own space).
        max_error: the largest |fitted - measured| coverage over the points used.
        k_min, k_max: the range of k fitted; predictions outside it are extrapolated.
        n_points: points used.
        dropped: k of points left out because their coverage was 0 or 1 (log(-log c) is infinite there).
    """

    a: float
    b: float
    rmse: float
    rmse_log: float
    max_error: float
    k_min: float
    k_max: float
    n_points: int
    dropped: tuple[float, ...] = ()

    def predict(self, k: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """exp(a * k ** b): predicted coverage (a float for a scalar k)."""
        out = np.exp(self.a * np.asarray(k, dtype=float) ** self.b)
        return float(out) if out.ndim == 0 else out

    def budget_for(self, target: float) -> float:
        """The smallest real k with predicted coverage >= target: (log target / a) ** (1 / b); inf when the law
        never gets there (target >= 1, or b >= 0: coverage that does not grow with k)."""
        if not 0.0 < target < 1.0 or self.b >= 0.0:
            return math.inf
        return float((math.log(target) / self.a) ** (1.0 / self.b))

    method = "power-law"

    def describe(self) -> str:
        return f"log c = {self.a:.4f} k^{self.b:.4f} (fitted on k = {self.k_min:g}..{self.k_max:g})"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b, "rmse": self.rmse, "rmse_log": self.rmse_log,
                "max_error": self.max_error, "k_range": [_num(self.k_min), _num(self.k_max)],
                "n_points": self.n_points, "dropped": [_num(k) for k in self.dropped]}


def fit_power_law(k: Sequence[float] | np.ndarray, coverage: Sequence[float] | np.ndarray, *,
                  fit_max_k: float | None = None) -> PowerLawFit:
    """Fit log c(k) = a * k ** b by least squares on the line log(-log c) = log(-a) + b * log k.

    Exact for exact data: coverage computed from some a, b gives those a, b back. Points with coverage 0 or 1
    carry no slope information (log(-log c) is infinite) and are dropped, listed in `dropped`.

    Args:
        k: shape (m,), budgets > 0.
        coverage: shape (m,), coverage at each k, in [0, 1].
        fit_max_k: fit only the points with k <= this (the rest can check the extrapolation).

    Returns:
        A `PowerLawFit`; `DataError` when fewer than two distinct k with 0 < c < 1 remain.

    Example:
        >>> ks = np.arange(1, 9)
        >>> fit = fit_power_law(ks, np.exp(-1.5 * ks ** -0.2))
        >>> round(fit.a, 6), round(fit.b, 6), fit.extrapolates(16)
        (-1.5, -0.2, True)
    """
    k = np.asarray(k, dtype=float)
    c = np.asarray(coverage, dtype=float)
    if k.shape != c.shape or k.ndim != 1:
        raise DataError(f"k and coverage must be 1-d and of one length, got shapes {k.shape} and {c.shape}")
    if not np.all(np.isfinite(k)) or (k <= 0).any():
        raise DataError("k must be finite and > 0")
    if not np.all(np.isfinite(c)) or (c < 0).any() or (c > 1).any():
        raise DataError("coverage must lie in [0, 1]")
    window = k <= fit_max_k if fit_max_k is not None else np.ones(k.shape, bool)
    usable = window & (c > 0) & (c < 1)
    dropped = tuple(float(x) for x in k[window & ~usable])
    if np.unique(k[usable]).size < 2:
        where = f" with k <= {fit_max_k:g}" if fit_max_k is not None else ""
        raise DataError(f"a power-law fit needs coverage strictly between 0 and 1 at two or more k{where} "
                        f"(found {np.unique(k[usable]).size})")
    ku, cu = k[usable], c[usable]
    b, intercept = np.polyfit(np.log(ku), np.log(-np.log(cu)), 1)
    a = -float(np.exp(intercept))
    fitted_log = a * ku ** b
    err = np.exp(fitted_log) - cu
    return PowerLawFit(a=a, b=float(b), rmse=float(np.sqrt(np.mean(err ** 2))),
                       rmse_log=float(np.sqrt(np.mean((fitted_log - np.log(cu)) ** 2))),
                       max_error=float(np.abs(err).max()), k_min=float(ku.min()), k_max=float(ku.max()),
                       n_points=int(ku.size), dropped=dropped)


# ------------------------------------------------------------------------------------ the distributional fit


_lgamma = np.vectorize(math.lgamma, otypes=[float])


def _log_beta(a: Any, b: Any) -> Any:
    return _lgamma(a) + _lgamma(b) - _lgamma(np.add(a, b))


@dataclass(frozen=True)
class DistributionFit(_FittedRange):
    """Coverage as an average of per-problem exponentials (Schaeffer et al. 2025, arXiv 2502.17578).

    Per-problem pass rates p follow a zero-inflated beta: p = 0 (never solvable) with probability `w0`, else
    p ~ Beta(a, b). Then

        c(s) = 1 - E[(1 - p) ** s] = (1 - w0) * (1 - B(a, b + s) / B(a, b))

    for s samples, rising toward the ceiling 1 - w0. A curve whose k is not samples (cost units) maps k to
    s = k * `samples_per_k`.

    Attributes:
        w0: mass of never-solved problems, in [0, 1).
        a, b: the beta's parameters (> 0).
        samples_per_k: samples per unit of k (1 for sample budgets; 1 / cost for a pure configuration's cost
            budget).
        k_min, k_max: the range of k the fit used (the first `k_max` runs for a count fit); predictions outside
            it are extrapolation.
        n_points: curve points fitted (0 for a fit to counts).
        source: "counts" (beta-binomial maximum likelihood on the per-problem counts) or "curve" (least squares
            on the measured coverage points, for mixes that have no counts of their own).
    """

    w0: float
    a: float
    b: float
    samples_per_k: float
    k_min: float
    k_max: float
    n_points: int
    source: str

    method = "distribution"

    def predict(self, k: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
        """Predicted coverage at k (a float for a scalar k)."""
        s = np.asarray(k, dtype=float) * self.samples_per_k
        out = (1.0 - self.w0) * -np.expm1(_log_beta(self.a, self.b + s) - _log_beta(self.a, self.b))
        return float(out) if out.ndim == 0 else out

    def budget_for(self, target: float) -> float:
        """The smallest real k with predicted coverage >= target; inf at or above the ceiling 1 - w0."""
        if not 0.0 < target < 1.0 - self.w0:
            return math.inf
        lo, hi = 0.0, 1.0
        while self.predict(hi) < target:
            lo, hi = hi, 2.0 * hi
            if hi > 1e15:
                return math.inf
        while hi - lo > 1e-9 * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.predict(mid) < target else (lo, mid)
        return hi

    def describe(self) -> str:
        return (f"pass rates 0 w.p. {self.w0:.3f}, else Beta({self.a:.3f}, {self.b:.3f}) "
                f"(fitted to the {self.source} on k = {self.k_min:g}..{self.k_max:g})")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "w0": self.w0, "a": self.a, "b": self.b, "source": self.source,
                "samples_per_k": self.samples_per_k, "k_range": [_num(self.k_min), _num(self.k_max)],
                "n_points": self.n_points}


def _zib(theta: np.ndarray) -> tuple[float, float, float]:
    """(w0, a, b) from unconstrained (logit w0, log a, log b)."""
    return float(1.0 / (1.0 + np.exp(-theta[0]))), float(np.exp(theta[1])), float(np.exp(theta[2]))


def _nelder_mead(f: Callable[[np.ndarray], float], x0: Sequence[float], *, iterations: int = 600,
                 tol: float = 1e-10) -> np.ndarray:
    """Minimize f from x0 with the Nelder-Mead simplex (numpy only; 3 parameters here)."""
    n = len(x0)
    pts = np.vstack([x0, np.asarray(x0, dtype=float) + 0.5 * np.eye(n)])
    vals = np.array([f(p) for p in pts])
    for _ in range(iterations):
        order = np.argsort(vals)
        pts, vals = pts[order], vals[order]
        if vals[-1] - vals[0] <= tol * (abs(vals[0]) + tol):
            break
        centre = pts[:-1].mean(axis=0)
        reflected = 2.0 * centre - pts[-1]
        fr = f(reflected)
        if fr < vals[0]:
            expanded = 3.0 * centre - 2.0 * pts[-1]
            fe = f(expanded)
            pts[-1], vals[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = reflected, fr
        else:
            contracted = 0.5 * (centre + pts[-1])
            fc = f(contracted)
            if fc < vals[-1]:
                pts[-1], vals[-1] = contracted, fc
            else:
                pts[1:] = 0.5 * (pts[0] + pts[1:])
                vals[1:] = [f(p) for p in pts[1:]]
    return pts[int(np.argmin(vals))]


_STARTS = ((0.0, 0.0, 1.0), (-2.0, -1.0, 0.0), (1.0, 1.0, 2.0))


def _best_of_starts(loss: Callable[[np.ndarray], float]) -> np.ndarray:
    return min((_nelder_mead(loss, x0) for x0 in _STARTS), key=loss)


def _count_histograms(correct: np.ndarray, runs: np.ndarray, use_runs: int | None) -> dict[int, np.ndarray]:
    """Per number of runs r: expected count of problems with s = 0..r correct, had only the first r runs been
    recorded (the hypergeometric law of s given c of n; exact counts when r >= n)."""
    hist: dict[int, np.ndarray] = {}
    pairs, weight = np.unique(np.c_[runs, correct], axis=0, return_counts=True)
    for (n, c), w in zip(pairs.tolist(), weight.tolist()):
        r = n if use_runs is None else min(n, int(use_runs))
        h = hist.setdefault(r, np.zeros(r + 1))
        for s in range(max(0, r - (n - c)), min(r, c) + 1):
            h[s] += w * math.comb(c, s) * math.comb(n - c, r - s) / math.comb(n, r)
    return hist


def fit_pass_rates(correct: Sequence[int] | np.ndarray, runs: Sequence[int] | np.ndarray | int, *,
                   use_runs: int | None = None, samples_per_k: float = 1.0) -> DistributionFit:
    """Fit the zero-inflated beta of per-problem pass rates to counts by beta-binomial maximum likelihood.

    The likelihood of c correct of n runs is w0 * [c = 0] + (1 - w0) * C(n, c) B(a + c, b + n - c) / B(a, b).

    Args:
        correct: shape (n_problems,), correct runs per problem (one configuration).
        runs: runs per problem, shape (n_problems,) or one number.
        use_runs: fit as if only the first `use_runs` runs had been recorded (each problem's count then
            follows the hypergeometric law, and the log-likelihood is its expectation): the extrapolation check.
        samples_per_k: samples per unit of the curve's k (1 / cost on a cost axis).

    Returns:
        A `DistributionFit` (source "counts"); `DataError` when no run ever succeeded.
    """
    c = np.asarray(correct, dtype=np.int64)
    n = np.broadcast_to(np.asarray(runs, dtype=np.int64), c.shape)
    if c.ndim != 1 or c.size == 0 or (c < 0).any() or (c > n).any() or (n < 1).any():
        raise DataError("counts must be one count per problem with 0 <= correct <= runs and runs >= 1")
    if use_runs is not None and use_runs < 1:
        raise DataError(f"use_runs must be >= 1, got {use_runs}")
    hist = _count_histograms(c, n, use_runs)
    if all(h[1:].sum() == 0 for h in hist.values()):
        raise DataError("no run succeeded on any problem: a pass-rate distribution cannot be fitted")
    tables = [(h, np.array([math.log(math.comb(r, s)) for s in range(r + 1)]), np.arange(r)) for r, h in hist.items()]

    def loss(theta: np.ndarray) -> float:
        # log C(r, s) B(a + s, b + r - s) / B(a, b) = log C(r, s) + sum_{t<s} log(a + t) + sum_{t<r-s} log(b + t)
        #                                              - sum_{t<r} log(a + b + t)
        w0, a, b = _zib(theta)
        total = 0.0
        for h, log_comb, t in tables:
            up_a = np.concatenate([[0.0], np.cumsum(np.log(a + t))])
            up_b = np.concatenate([[0.0], np.cumsum(np.log(b + t))])
            pmf = (1.0 - w0) * np.exp(log_comb + up_a + up_b[::-1] - np.log(a + b + t).sum())
            pmf[0] += w0
            total -= float(h @ np.log(np.maximum(pmf, 1e-300)))
        return total

    w0, a, b = _zib(_best_of_starts(loss))
    k_max = max(hist) / samples_per_k
    return DistributionFit(w0, a, b, samples_per_k, 1.0 / samples_per_k, float(k_max), 0, "counts")


def fit_distribution(k: Sequence[float] | np.ndarray, coverage: Sequence[float] | np.ndarray, *,
                     samples: Sequence[float] | np.ndarray | None = None,
                     fit_max_k: float | None = None) -> DistributionFit:
    """Fit the zero-inflated beta to a measured curve by least squares on coverage.

    Coverage at s samples is 1 - E[(1 - p) ** s]: the measured curve gives the moments of the pass-rate
    distribution (of a mix, whose samples have no counts of their own), and the fit extends them.

    Args:
        k: shape (m,), budgets > 0.
        coverage: shape (m,), in [0, 1].
        samples: samples drawn at each k (default k itself).
        fit_max_k: fit only the points with k <= this.

    Returns:
        A `DistributionFit` (source "curve"); `DataError` with fewer than two usable points.
    """
    k = np.asarray(k, dtype=float)
    c = np.asarray(coverage, dtype=float)
    s = k if samples is None else np.asarray(samples, dtype=float)
    if k.shape != c.shape or k.shape != s.shape or k.ndim != 1:
        raise DataError(f"k, samples and coverage must be 1-d and of one length, got {k.shape}, {s.shape}, {c.shape}")
    window = (k <= fit_max_k if fit_max_k is not None else np.ones(k.shape, bool)) & (s > 0)
    if np.unique(k[window]).size < 2:
        raise DataError("a distribution fit needs two or more k with samples drawn"
                        + (f" at k <= {fit_max_k:g}" if fit_max_k is not None else ""))
    ks, cs, ss = k[window], c[window], s[window]
    per_k = float(ss.sum() / ks.sum())

    def loss(theta: np.ndarray) -> float:
        w0, a, b = _zib(theta)
        fit = DistributionFit(w0, a, b, 1.0, 0.0, 0.0, 0, "curve")
        return float(np.sum((fit.predict(ss) - cs) ** 2))

    w0, a, b = _zib(_best_of_starts(loss))
    return DistributionFit(w0, a, b, per_k, float(ks.min()), float(ks.max()), int(ks.size), "curve")


# ------------------------------------------------------------------------------------------------ the advisor


Fit = PowerLawFit | DistributionFit


@dataclass(frozen=True)
class ForecastError:
    """One row of `extrapolation_check`: both methods' forecasts of coverage at `at_k` from k <= `fit_max_k`."""

    label: str
    fit_max_k: float
    at_k: float
    measured: float
    predicted: dict[str, float]

    @property
    def error(self) -> dict[str, float]:
        """method -> predicted - measured."""
        return {m: p - self.measured for m, p in self.predicted.items()}


def extrapolation_check(curves: Sequence[CoverageCurve], fit_max_ks: Sequence[float] = (4, 8),
                        at_k: float = 16) -> list[ForecastError]:
    """Fit every curve on k <= each of `fit_max_ks` with both methods and forecast its recorded value at `at_k`.

    A configuration's distribution is fitted to its first `fit_max_k` runs only (the counts' hypergeometric
    expectation); a mix's to its curve up to `fit_max_k`, whose unbiased points are the same in expectation.
    A method that cannot fit a window forecasts NaN.
    """
    rows = []
    for curve in curves:
        hit = np.flatnonzero(np.isclose(curve.k, at_k) & curve.measured)
        if not hit.size:
            raise DataError(f"curve {curve.label!r} has no recorded point at k = {at_k:g}")
        for fit_max_k in fit_max_ks:
            predicted = {}
            for method in FIT_METHODS:
                try:
                    predicted[method] = float(curve.fit(fit_max_k, method).predict(at_k))
                except DataError:
                    predicted[method] = math.nan
            rows.append(ForecastError(curve.label, float(fit_max_k), float(at_k),
                                      float(curve.coverage[hit[0]]), predicted))
    return rows


def forecast_band(curve: CoverageCurve, k: Sequence[float] | np.ndarray, *, method: str,
                  fit_max_k: float | None = None, level: float = 0.95, n_boot: int = 100,
                  seed: int = 0) -> np.ndarray:
    """Percentile bootstrap band over problems of a fit's forecast: problems are resampled (their counts, or
    their per-problem coverage for a mix), the fit repeated, and each k's forecast collected.

    Returns:
        shape (len(k), 2): the band at `level` (NaN when no resample could be fitted).
    """
    ks = np.asarray(k, dtype=float)
    rng = np.random.default_rng(seed)
    n = curve.per_problem.shape[1]
    forecasts = []
    for _ in range(n_boot):
        idx = rng.integers(n, size=n)
        per_problem = curve.per_problem[:, idx]
        counts = None if curve.counts is None else (curve.counts[0][idx], curve.counts[1][idx], curve.counts[2])
        boot = replace(curve, coverage=per_problem.mean(axis=1), per_problem=per_problem, counts=counts)
        try:
            forecasts.append(boot.fit(fit_max_k, method).predict(ks))
        except DataError:
            continue
    if not forecasts:
        return np.full((ks.size, 2), np.nan)
    return np.quantile(np.array(forecasts), [(1 - level) / 2, (1 + level) / 2], axis=0).T


def choose_method(curve: CoverageCurve, fit_max_k: float | None = None) -> tuple[str, dict[str, float]]:
    """The fit method the curve's own held-out points favour: both fit the recorded k up to half the last one
    (or `fit_max_k` when smaller) and predict the last recorded point; the smaller |error| wins.

    Returns:
        (method, {method: prediction - measured}); a method that cannot fit the window has error inf.
    """
    k = curve.k[curve.measured]
    last = float(k.max())
    window = last / 2 if fit_max_k is None else min(fit_max_k, last / 2)
    measured = float(curve.coverage[curve.measured][-1])
    errors: dict[str, float] = {}
    for method in FIT_METHODS:
        try:
            errors[method] = curve.fit(window, method).predict(last) - measured
        except DataError:
            errors[method] = math.inf
    return min(FIT_METHODS, key=lambda m: abs(errors[m])), errors


@dataclass(frozen=True)
class BudgetAdvice:
    """A recommended budget for a call site and the allocation learned at it.

    Attributes:
        budget: the recommended C (samples; cost units for a learned curve on data with costs); None when the
            criterion cannot be met within `max_budget`.
        allocation: the allocation `learn_allocation` finds at that budget on the training part (None with
            `budget`).
        coverage: the coverage at `budget`: measured where the recorded runs reach, else the last recorded value
            plus the fit's predicted gain beyond it (so the curve never drops where the forecast takes over).
        extrapolated: the recommendation relied on the fit beyond the recorded k.
        criterion: what was asked, in words.
        message: why this budget (or why none).
        fit: the law used beyond the recorded k.
        curve: the measured curve.
        method: the fit's method, and `why` it was chosen.
    """

    budget: float | None
    allocation: Allocation | None
    coverage: float | None
    extrapolated: bool
    criterion: str
    message: str
    fit: Fit
    curve: CoverageCurve = field(repr=False)
    why: str = ""

    @property
    def success(self) -> bool:
        return self.budget is not None

    def to_dict(self) -> dict[str, Any]:
        return {"budget": None if self.budget is None else _num(self.budget), "unit": self.curve.unit,
                "allocation": None if self.allocation is None else dict(self.allocation),
                "coverage": self.coverage, "extrapolated": self.extrapolated, "criterion": self.criterion,
                "message": self.message, "method": self.fit.method, "method_chosen_because": self.why,
                "fit": self.fit.to_dict()}


def recommend_budget(data: CountMatrix | CountSplit, *, target: float | None = None,
                     min_gain: float | None = None, per_cost: bool = False, curve: CoverageCurve | None = None,
                     fit_max_k: float | None = None, method: str = "auto", max_budget: float = 1024,
                     seed: int = 0) -> BudgetAdvice:
    """The budget C a call site should spend, and the allocation learned at C.

    Exactly one criterion:

    - ``target``: the smallest C whose coverage reaches it, measured where the recorded runs reach, else the
      smallest C where the last recorded coverage plus the fit's gain beyond it does.
    - ``min_gain``: walk C up the curve while the next step adds at least `min_gain` coverage per unit of
      budget (per sample, or with `per_cost` per cost unit: a step of k costs `curve.unit_cost`); recorded steps
      first, then the fit's C -> C + 1. C is the last point reached (never below the first measured k).

    Args:
        data: counts (a split learns on `train`, measures on `test`).
        target: coverage to reach, in (0, 1].
        min_gain: least coverage the last unit of budget must add, > 0.
        per_cost: `min_gain` is per cost unit (uses the configurations' costs) instead of per sample.
        curve: the curve to advise on (e.g. `config_curve`); default `learned_curve(data, seed=seed)`.
        fit_max_k: fit on k <= this only.
        method: "distribution", "power-law" or "auto" (the one `choose_method` favours on this curve).
        max_budget: the largest C that may be recommended, > 0.
        seed: seeds the learner.

    Returns:
        A `BudgetAdvice`; its `budget` is None (and `message` says why) when `target` is not reached by
        `max_budget`.

    Example:
        >>> advice = recommend_budget(split, target=0.35)   # the released SWE-bench counts, in-sample
        >>> advice.budget, advice.coverage, advice.extrapolated
        (7, 0.3564..., False)
    """
    if (target is None) == (min_gain is None):
        raise ConfigError("give exactly one criterion: a target coverage or a minimum marginal gain")
    if isinstance(max_budget, bool) or not max_budget > 0:
        raise BudgetError(f"max_budget must be > 0, got {max_budget}")
    if target is not None and not 0.0 < target <= 1.0:
        raise ConfigError(f"target coverage must be in (0, 1], got {target}")
    if min_gain is not None and not min_gain > 0.0:
        raise BudgetError(f"min_gain must be > 0, got {min_gain}")
    if method not in (*FIT_METHODS, "auto"):
        raise ConfigError(f"unknown fit method {method!r} (known: auto, {', '.join(FIT_METHODS)})")
    if curve is None:
        curve = learned_curve(data, seed=seed)
    why = "asked for"
    if method == "auto":
        method, errors = choose_method(curve, fit_max_k)
        why = "held-out check on this curve: " + ", ".join(f"{m} {e:+.4f}" for m, e in errors.items())
    fit = curve.fit(fit_max_k, method)
    ks, cs = curve.k[curve.measured], curve.coverage[curve.measured]
    last, c_last = float(ks[-1]), float(cs[-1])
    beyond = lambda k: c_last + fit.predict(k) - fit.predict(last)  # noqa: E731  (continuous at the last point)
    if target is not None:
        criterion = f"coverage >= {target:g}"
        reached = np.flatnonzero((cs >= target) & (ks <= max_budget))
        if reached.size:
            j = int(reached[0])
            budget, coverage = float(ks[j]), float(cs[j])
            message = f"measured coverage {coverage:.4f} at C = {budget:g}"
        else:
            needed = fit.budget_for(target - c_last + fit.predict(last))
            budget = max(float(math.ceil(needed - 1e-9)), math.floor(last) + 1.0) if math.isfinite(needed) \
                else math.inf
            if budget > max_budget:
                return BudgetAdvice(None, None, None, True, criterion,
                                    f"not reached: measured at most {cs.max():.4f} (k <= {last:g}); "
                                    f"{fit.describe()} forecasts {beyond(max_budget):.4f} at the largest budget "
                                    f"allowed, {max_budget:g}", fit, curve, why)
            coverage = beyond(budget)
            message = (f"extrapolated: {fit.describe()} forecasts {coverage:.4f} at C = {budget:g} "
                       f"(recorded k <= {last:g})")
            if coverage > curve.ceiling:
                message += (f"; above the {curve.ceiling:.4f} of problems its configurations solved in any "
                            "recorded run, so the counts cannot confirm it")
    else:
        unit = curve.unit_cost if per_cost else 1.0
        per = "cost unit" if per_cost else "sample"
        criterion = f"marginal gain >= {min_gain:g} per {per}"
        budget, coverage = _walk(ks, cs, fit, min_gain * unit, max_budget)
        message = (f"the next step gains less than {min_gain:g} per {per}" if budget < max_budget
                   else f"still gaining at the largest budget allowed, {max_budget:g}")
        message = ("measured: " if budget <= last else f"extrapolated with {fit.describe()}: ") + message
    # The same spend as `budget` units of the curve (its unit cost is 1 with unit costs, or cost-unit budgets).
    allocation = learn_allocation(_parts(data)[0], _num(budget * curve.unit_cost), seed=seed,
                                  bound=False).allocation
    return BudgetAdvice(_num(budget), allocation, float(coverage), budget > last, criterion, message, fit, curve,
                        why)


def _walk(ks: np.ndarray, cs: np.ndarray, fit: Fit, threshold: float, max_budget: float) -> tuple[float, float]:
    """Climb while the next step gains >= threshold per unit of k: recorded steps, then the fit's unit steps
    (continuing from the last recorded coverage)."""
    for j in range(len(ks) - 1):
        if ks[j + 1] > max_budget or (cs[j + 1] - cs[j]) / (ks[j + 1] - ks[j]) < threshold:
            return float(ks[j]), float(cs[j])
    last = budget = float(ks[-1])
    while budget + 1 <= max_budget and fit.predict(budget + 1) - fit.predict(budget) >= threshold:
        budget += 1
    return budget, float(cs[-1]) + fit.predict(budget) - fit.predict(last)


# ------------------------------------------------------------------------------------------------ precision


@dataclass(frozen=True)
class PrecisionRow:
    """One k of a precision report.

    Attributes:
        k: candidates per problem the selectors chose from.
        coverage: fraction of problems where some of the k candidates is correct (the ceiling).
        solved: selector name -> fraction of problems where its pick is correct.
    """

    k: int
    coverage: float
    solved: dict[str, float]

    def precision(self, name: str) -> float:
        """solved / coverage: the share of the reachable problems the selector actually solves (NaN at 0)."""
        return self.solved[name] / self.coverage if self.coverage > 0 else math.nan


@dataclass(frozen=True)
class PrecisionReport:
    """Fraction solved by each selector against coverage, per k.

    Attributes:
        rows: one per k.
        selectors: the selectors' names, in the order given.
        n_problems: problems averaged over.
        exact: True when every (problem, k) enumerated all k-subsets (else seeded random subsets).
    """

    rows: tuple[PrecisionRow, ...]
    selectors: tuple[str, ...]
    n_problems: int
    exact: bool

    def table(self) -> str:
        """A Markdown table: k, coverage, then each selector's solved fraction and precision."""
        head = ["k", "coverage"] + [f"{n} (precision)" for n in self.selectors]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [str(r.k), f"{r.coverage:.3f}"] + [f"{r.solved[n]:.3f} ({r.precision(n):.2f})"
                                                      for n in self.selectors]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"n_problems": self.n_problems, "exact": self.exact, "selectors": list(self.selectors),
                "rows": [{"k": r.k, "coverage": r.coverage, "solved": r.solved} for r in self.rows]}


Pick = Callable[[list["Candidate"]], list["Candidate"]]


def precision_report(candidates: Sequence[Sequence[Candidate]], correct: Sequence[Sequence[bool]],
                     selectors: Mapping[str, Pick], ks: Sequence[int] | None = None, *, subsets: int = 200,
                     seed: int = 0) -> PrecisionReport:
    """How much of the coverage each selector turns into solved problems, at each k.

    For each problem and k, the selectors choose among k of its candidates (kept in sample order, as the
    sampler presents them; candidates without text are left out, as the sampler does). Every k-subset is used
    when there are at most `subsets` of them, else `subsets` seeded random ones; all selectors see the same
    subsets. A problem counts as solved by a selector in the share of subsets where its first survivor is
    correct, and as covered in the share where any candidate is.

    Args:
        candidates: per problem, its candidates (`osca.sampler.Candidate`, or anything the selectors accept).
        correct: per problem, the ground truth of each candidate (same shape as `candidates`).
        selectors: name -> selector (`osca.selectors` strategies, cascades, or plain functions).
        ks: subset sizes; default 1 .. the fewest candidates any problem has.
        subsets: most subsets per (problem, k).
        seed: seeds the random subsets.

    Returns:
        A `PrecisionReport`; `.table()` formats it, `osca.plot.plot_precision` draws it.
    """
    if len(candidates) != len(correct) or not candidates:
        raise DataError(f"need one list of ground truths per problem: {len(candidates)} candidate lists, "
                        f"{len(correct)} ground-truth lists")
    for j, (cs, ok) in enumerate(zip(candidates, correct)):
        if len(cs) != len(ok):
            raise DataError(f"problem {j}: {len(cs)} candidates but {len(ok)} ground truths")
    if not selectors:
        raise ConfigError("no selectors to compare")
    fewest = min(len(cs) for cs in candidates)
    ks = list(range(1, fewest + 1)) if ks is None else [int(k) for k in ks]
    if not ks or min(ks) < 1 or max(ks) > fewest:
        raise DataError(f"k must lie in 1..{fewest} (the fewest candidates of any problem), got {ks}")
    if subsets < 1:
        raise ConfigError(f"subsets must be >= 1, got {subsets}")
    rng = np.random.default_rng(seed)
    names = tuple(selectors)
    rows, exact = [], True
    for k in ks:
        covered = 0.0
        solved = dict.fromkeys(names, 0.0)
        for cs, ok in zip(candidates, correct):
            n = len(cs)
            if math.comb(n, k) <= subsets:
                draws: Any = itertools.combinations(range(n), k)
                m = math.comb(n, k)
            else:
                exact = False
                draws = (np.sort(rng.choice(n, size=k, replace=False)) for _ in range(subsets))
                m = subsets
            for idx in draws:
                alive = [cs[i] for i in idx if getattr(cs[i], "text", "") is not None]
                truth = {id(cs[i]): bool(ok[i]) for i in idx}
                covered += any(truth[id(c)] for c in alive) / m
                if not alive:
                    continue
                for name in names:
                    pick = (selectors[name](list(alive)) or alive)[0]
                    solved[name] += truth[id(pick)] / m
        total = len(candidates)
        rows.append(PrecisionRow(k, covered / total, {n: solved[n] / total for n in names}))
    return PrecisionReport(tuple(rows), names, len(candidates), exact)
