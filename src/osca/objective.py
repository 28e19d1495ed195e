"""The OSCA objective, its gradient and a certified upper bound on its maximum.

Everything is phrased over *targets*: weighted pass/fail events. For pass/fail counts a target is a problem
(weight 1). For scores in [0, 1] (paper, appendix A.4) a problem becomes one target per distinct score level
s_1 < ... < s_L it reaches, with weight s_l - s_{l-1}, because

    E[max score] = sum_l (s_l - s_{l-1}) * P(max score >= s_l),

and P(max >= s_l) is again "at least one sample succeeds". So one optimizer serves both objectives:

    f(pi) = 1/m * sum_k w_k * (1 - prod_i q_ik ** pi_i),    q_ik = 1 - c_ik / n_ik,

with m the number of problems. f is concave in a relaxed (real) pi, which gives the upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .counts import CountMatrix, ScoreMatrix

__all__ = ["Targets", "objective", "upper_bound"]

# Zero-failure cells (a configuration that solved a problem in every run) make the relaxed gradient infinite;
# the bound swaps q = 0 for q = eps and pays eps for it (see `upper_bound`), trying these eps.
_EPSILONS = (1e-2, 1e-3, 1e-4, 1e-6, 1e-9, 1e-12)


@dataclass(frozen=True, eq=False)
class Targets:
    """Weighted pass/fail targets derived from a count or score matrix.

    Attributes:
        count: int array (n_configs, n_targets): runs that succeeded (reached the target's level).
        runs: int array (n_configs, n_targets): runs behind each count.
        weight: float array (n_targets,): w_k (1 for pass/fail; a score level's width for scores).
        problem: int array (n_targets,): the problem each target belongs to.
        n_problems: the number of problems m.
        costs: float array (n_configs,): cost per sample.
    """

    count: np.ndarray
    runs: np.ndarray
    weight: np.ndarray
    problem: np.ndarray
    n_problems: int
    costs: np.ndarray

    @classmethod
    def of(cls, data: CountMatrix | ScoreMatrix | Targets) -> Targets:
        if isinstance(data, Targets):
            return data
        if isinstance(data, CountMatrix):
            m = data.n_problems
            return cls(data.correct, data.runs, np.ones(m), np.arange(m), m, data.costs)
        return cls._of_scores(data)

    @classmethod
    def _of_scores(cls, data: ScoreMatrix) -> Targets:
        present = ~np.isnan(data.scores)
        runs = present.sum(axis=2)
        counts, runs_out, weights, problems = [], [], [], []
        for j in range(data.n_problems):
            s = data.scores[:, j, :]
            levels = np.unique(s[~np.isnan(s)])
            levels = levels[levels > 0]
            widths = np.diff(levels, prepend=0.0)
            for level, width in zip(levels, widths):
                counts.append(np.sum(s >= level, axis=1))  # NaN compares False: absent runs never count
                runs_out.append(runs[:, j])
                weights.append(width)
                problems.append(j)
        n = data.n_configs
        as_matrix = lambda cols: np.array(cols, dtype=np.int64).T.reshape(n, len(cols))  # noqa: E731
        return cls(as_matrix(counts), as_matrix(runs_out), np.array(weights, dtype=float),
                   np.array(problems, dtype=np.int64), data.n_problems, data.costs)

    @property
    def n_configs(self) -> int:
        return self.count.shape[0]

    @property
    def p(self) -> np.ndarray:
        """Success probability per sample, shape (n_configs, n_targets)."""
        return self.count / self.runs

    @property
    def ceiling(self) -> float:
        """f with every reachable target certainly hit: no allocation scores more."""
        return float(self.weight[self.count.max(axis=0) > 0].sum() / self.n_problems)

    def per_problem(self, target_values: np.ndarray) -> np.ndarray:
        """Sum weighted per-target values into per-problem values, shape (n_problems,)."""
        return np.bincount(self.problem, weights=self.weight * target_values, minlength=self.n_problems)


def _failure(t: Targets, x: np.ndarray) -> np.ndarray:
    """R_k = prod_i q_ik ** x_i for real x >= 0, shape (n_targets,): 0 where a used configuration has q = 0.
    Only the used rows are read (a sparse allocation on a large matrix costs little)."""
    used = x > 0
    q = 1.0 - t.count[used] / t.runs[used]
    zero = q == 0.0
    log_r = x[used] @ np.log(np.where(zero, 1.0, q))
    return np.exp(np.where(zero.any(axis=0), -np.inf, log_r))


def objective(data: CountMatrix | ScoreMatrix | Targets, allocation: np.ndarray) -> float:
    """f(pi): the expected fraction of problems solved (or expected max score) with pi_i samples from config i.

    Args:
        data: count or score matrix (rows = configurations).
        allocation: samples per configuration, shape (n_configs,); real values give the concave relaxation.

    Example:
        Config A solves problem 1 in 3 of 4 runs and never problem 2; config B solves each in 1 of 4 runs.
        One sample of each: problem 1 fails with (1/4)(3/4), problem 2 with 1 * (3/4), so
        f = 1 - (3/16 + 12/16) / 2 = 0.53125.

        >>> m = CountMatrix(("A", "B"), ("p1", "p2"), [[3, 0], [1, 1]], [4, 4])
        >>> objective(m, [1, 1])
        0.53125
    """
    t = Targets.of(data)
    return float(t.weight @ (1.0 - _failure(t, np.asarray(allocation, dtype=float))) / t.n_problems)


def _log_q(t: Targets) -> tuple[np.ndarray, np.ndarray]:
    """(log q with 0 where q = 0, the q = 0 cells as 0/1 floats), each (n_configs, n_targets): computed once,
    so that log q for any eps in place of q = 0 is one fused add (`_with_eps`)."""
    q = 1.0 - t.p
    zero = q == 0.0
    return np.log(np.where(zero, 1.0, q)), zero.astype(float)


def _with_eps(logs: tuple[np.ndarray, np.ndarray], q_zero: float) -> np.ndarray:
    base, zero = logs
    return base + zero * np.log(q_zero) if q_zero else base


def _linear_bound(t: Targets, logq: np.ndarray, x: np.ndarray, budget: float) -> float:
    """f(x) + max over the budget polytope of g.(v - x), with g the gradient of the eps-relaxed f at x."""
    r = np.exp(x @ logq)
    g = -logq @ (t.weight * r / t.n_problems)
    value = float(t.weight @ (1.0 - r) / t.n_problems)
    return value + budget * float(np.max(g / t.costs)) - float(g @ x)


def upper_bound(data: CountMatrix | ScoreMatrix | Targets, allocation: np.ndarray, budget: float,
                *, refine: int = 60) -> float:
    """A certified upper bound on max f over integer allocations with costs . pi <= budget.

    f is concave in the relaxed pi, so for any feasible real x, with g the gradient at x,

        max f <= f(x) + budget * max_i (g_i / cost_i) - g . x.

    A configuration that solved some problem in every run has q = 0 there and an infinite gradient; there we
    bound f_eps (q = 0 replaced by eps), which differs from f at integer points by at most eps per affected
    problem. The bound is evaluated at `allocation` and then tightened by `refine` Frank-Wolfe steps on the
    relaxation (every iterate gives a valid bound; the smallest is returned).

    Args:
        data: count or score matrix.
        allocation: shape (n_configs,), the point to certify.
        budget: the budget in cost units (samples when all costs are 1).
        refine: Frank-Wolfe iterations; 0 returns the plain first-order bound at `allocation`.

    Returns:
        An upper bound on the best achievable objective, never above `Targets.ceiling`.
    """
    t = Targets.of(data)
    x = np.asarray(allocation, dtype=float)
    has_zero = (t.p == 1.0).any(axis=0)
    slack = float(t.weight[has_zero].sum() / t.n_problems)
    candidates = [(0.0, 0.0)] if slack == 0.0 else [(eps, eps * slack) for eps in _EPSILONS]
    logs = _log_q(t)
    scored = [(_linear_bound(t, _with_eps(logs, eps), x, budget) + pay, eps, pay) for eps, pay in candidates]
    best, eps, pay = min(scored)
    if refine and best < t.ceiling:
        best = min(best, _frank_wolfe_bound(t, _with_eps(logs, eps), x, budget, refine) + pay)
    return float(min(best, t.ceiling))


def _frank_wolfe_bound(t: Targets, logq: np.ndarray, x: np.ndarray, budget: float, iterations: int) -> float:
    """Smallest first-order bound over pairwise Frank-Wolfe iterates of the relaxed problem from x."""
    neg_logq = -logq
    w = t.weight / t.n_problems
    c = t.costs
    x = x.copy()
    log_r = x @ logq
    best = np.inf
    for _ in range(iterations):
        r = np.exp(log_r)
        g = neg_logq @ (w * r)
        ratio = g / c
        top = int(np.argmax(ratio))
        best = min(best, float(w @ (1.0 - r)) + budget * float(ratio[top]) - float(g @ x))
        d = np.zeros_like(x)
        spare = budget - float(c @ x)
        if spare > 1e-9 * budget:
            d[top] = 1.0 / c[top]  # spend one unit of cost on the best vertex (f is monotone)
            cap = spare
        else:
            support = np.flatnonzero(x > 0)
            away = int(support[np.argmin(ratio[support])])
            if away == top:
                break  # first-order optimal on the budget face
            d[top] = c[away] / c[top]  # move one unit of `away` to `top` at equal cost
            d[away] = -1.0
            cap = x[away]
        slope = d @ logq  # d log R / d step
        step = _line_search(w, log_r, slope, cap)
        x += step * d
        x[x < 0] = 0.0
        log_r = log_r + step * slope
    return float(best)


def _line_search(w: np.ndarray, log_r: np.ndarray, slope: np.ndarray, cap: float, *, tol: float = 1e-9) -> float:
    """argmax over s in [0, cap] of sum_k w_k (1 - exp(log_r_k + s * slope_k)), a concave function of s:
    safeguarded Newton steps on its derivative, falling back to bisection, to `tol` * cap."""

    def derivatives(s: float) -> tuple[float, float]:
        e = w * np.exp(log_r + s * slope) * slope
        return -float(e.sum()), -float(e @ slope)

    d1, _ = derivatives(cap)
    if d1 >= 0:
        return cap
    lo, hi, s = 0.0, cap, 0.0
    for _ in range(50):
        d1, d2 = derivatives(s)
        if d1 > 0:
            lo = s
        else:
            hi = s
        if hi - lo <= tol * cap:
            break
        newton = s - d1 / d2 if d2 < 0 else np.inf
        if abs(newton - s) <= 1e-3 * tol * cap:
            return float(newton)
        s = newton if lo < newton < hi else 0.5 * (lo + hi)
    return s
