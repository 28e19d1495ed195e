"""Learning an allocation: maximize f(pi) subject to costs . pi <= budget, pi_i >= 0 integers.

One entry point, `learn_allocation(..., method=...)`, dispatching to private solvers that all return an
`AllocationResult` (the shape of scipy's `minimize`):

- ``"frank_wolfe"`` (default): pairwise Frank-Wolfe on the concave relaxation until its duality gap is small,
  seeded roundings of the relaxed optimum scored exactly, then greedy fill and pairwise exchange from the best
  two: a few hundred matrix-vector products instead of a greedy pass over the whole budget (issue 13).
- ``"greedy_swap"``: lazy greedy on marginal gain per cost, then steepest pairwise-exchange local search (move
  one sample from configuration i to j) with exact, vectorized gains, then seeded perturbation restarts.
  Both are deterministic for a seed; their local optima can differ by ~1e-7 either way.
- ``"hill_climbing"``: the paper's Algorithm 1 as released (LeiLiLab/OSCA `osca.py`): a random list of C
  configuration choices, each position in turn switched to the configuration that most improves f, until a
  full pass changes nothing. Unit costs only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .allocation import Allocation
from .counts import CountMatrix, ScoreMatrix
from .exceptions import BudgetError, ConfigError
from .objective import Targets, _line_search, objective, upper_bound

__all__ = ["AllocationResult", "learn_allocation"]

_IMPROVES = 1e-12  # an exchange must gain more than this: rounding noise must not cycle the search


@dataclass(frozen=True)
class AllocationResult:
    """What a learner found.

    Attributes:
        allocation: samples per configuration name.
        x: the same as an int array aligned with the matrix's configurations, shape (n_configs,).
        objective: f(x) on the data learned from.
        upper_bound: a certified bound on the best achievable f (see `osca.objective.upper_bound`); NaN when
            the bound was not computed.
        budget: the budget, in cost units (samples when all costs are 1).
        spent: costs . x.
        method: the solver's name.
        nit: improving moves made (greedy additions, exchanges, hill-climbing switches).
        message: how the solver stopped.
    """

    allocation: Allocation
    x: np.ndarray = field(repr=False)
    objective: float
    upper_bound: float
    budget: float
    spent: float
    method: str
    nit: int
    message: str

    @property
    def gap(self) -> float:
        """upper_bound - objective: how far from optimal the allocation can at most be."""
        return self.upper_bound - self.objective

    def to_dict(self) -> dict[str, Any]:
        budget = int(self.budget) if float(self.budget).is_integer() else self.budget
        return {"budget": budget, "allocation": dict(self.allocation), "objective": self.objective,
                "upper_bound": self.upper_bound}

    def save(self, path: str | Path) -> None:
        """Write `{"budget", "allocation", "objective", "upper_bound"}` as JSON (read back by `Allocation.load`)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


class _Tables:
    """Per-data constants of the search: p, q = 1 - p, log q (0 where q = 0), the q = 0 cells, weights."""

    def __init__(self, t: Targets) -> None:
        self.p = t.p
        self.q = 1.0 - self.p
        self.zero = (self.q == 0.0).astype(np.int64)
        self.logq = np.log(np.where(self.q == 0.0, 1.0, self.q))
        self.w = t.weight / t.n_problems
        self.wp = self.p * self.w  # w_k p_ik: the gain of one more sample of i is R . wp_i


class _State:
    """Failure products R_k = prod_i q_ik ** x_i kept up to date as single samples are added and removed.

    Zero-failure cells (q = 0) are counted apart from the log-product so that removing a sample is exact.
    """

    def __init__(self, tables: _Tables, x: np.ndarray) -> None:
        self.p, self.q, self.zero, self.logq = tables.p, tables.q, tables.zero, tables.logq
        self.w, self.wp = tables.w, tables.wp
        self.x = np.array(x, dtype=np.int64)
        self.refresh()

    def refresh(self) -> None:
        used = self.x > 0
        self.log_r = self.x[used] @ self.logq[used]
        self.z = self.x[used] @ self.zero[used]
        self.r = np.exp(self.log_r) * (self.z == 0)

    def add(self, i: int) -> None:
        self.x[i] += 1
        self.log_r += self.logq[i]
        self.z += self.zero[i]
        self.r *= self.q[i]

    def remove(self, i: int) -> None:
        self.x[i] -= 1
        self.log_r -= self.logq[i]
        self.z -= self.zero[i]
        self.r = np.exp(self.log_r) * (self.z == 0)

    def value(self) -> float:
        return float(self.w @ (1.0 - self.r))

    def without(self, rows: np.ndarray) -> np.ndarray:
        """R with one sample of each configuration in `rows` removed, shape (len(rows), n_targets)."""
        return np.exp(self.log_r - self.logq[rows]) * ((self.z - self.zero[rows]) == 0)


def _greedy(st: _State, budget: float, costs: np.ndarray, *, per_cost: bool = True) -> int:
    """Add samples by best marginal gain (per cost, or plain) while any fits.

    Lazy: a configuration's gain only shrinks as samples are added (f is DR-submodular), so a stale gain is an
    upper bound and only the top candidate needs recomputing.
    """
    spent = float(costs @ st.x)
    unit = bool(np.all(costs == costs[0]))
    scale = costs if per_cost else np.ones_like(costs)
    bound = st.p @ (st.w * st.r) / scale
    added = 0
    while True:
        if unit:
            if spent + costs[0] > budget + 1e-9:
                return added
            cand = bound
        else:
            fits = costs <= budget - spent + 1e-9
            if not fits.any():
                return added
            cand = np.where(fits, bound, -np.inf)
        while True:
            i = int(np.argmax(cand))
            cand[i] = bound[i] = float(st.r @ st.wp[i]) / scale[i]
            if int(np.argmax(cand)) == i:
                break
        st.add(i)
        spent += costs[i]
        added += 1


def _exchange(st: _State, budget: float, costs: np.ndarray) -> int:
    """Pairwise exchange (one sample i -> j) until no move gains; returns the moves made.

    Configurations in the support are visited in turn; for each, the gain of moving one of its samples to
    every j at once is  w.(R^{-i} * p_j) - w.(R^{-i} - R)  (one matrix-vector product), and the best move is
    taken while it gains. A full round without a move is a local optimum under all pairwise exchanges.
    """
    moves = 0
    unit = bool(np.all(costs == costs[0]))
    quiet = 0  # configurations visited since the last move
    i = 0
    while quiet < np.count_nonzero(st.x):
        support = np.flatnonzero(st.x)
        i = int(support[np.searchsorted(support, i) % support.size])
        r_minus = st.without(np.array([i]))[0]
        delta = st.p @ (st.w * r_minus) - float(st.w @ (r_minus - st.r))
        if not unit:
            delta[costs - costs[i] > budget - float(costs @ st.x) + 1e-9] = -np.inf
        j = int(np.argmax(delta))
        if delta[j] > _IMPROVES:
            st.remove(i)
            st.add(j)
            moves += 1
            quiet = 0
            if not unit:
                moves += _greedy(st, budget, costs)
        else:
            quiet += 1
            i += 1
    return moves


def _kick(x: np.ndarray, costs: np.ndarray, budget: float, rng: np.random.Generator, perturb: float) -> np.ndarray:
    """Move a random `perturb` share of the samples to random configurations (a restart's new start)."""
    x = x.copy()
    n = x.size
    kick = max(1, int(round(perturb * x.sum())))
    for i in rng.choice(np.repeat(np.arange(n), x), size=min(kick, int(x.sum())), replace=False):
        x[i] -= 1
    for i in rng.integers(n, size=kick):
        if costs @ x + costs[i] <= budget + 1e-9:
            x[i] += 1
    return x


def _greedy_swap(t: Targets, budget: float, rng: np.random.Generator, *, restarts: int = 2,
                 perturb: float = 0.1, seeds: int = 8) -> tuple[np.ndarray, int, str]:
    costs = t.costs
    n = t.n_configs
    empty = np.zeros(n, dtype=np.int64)
    starts = [(empty, True)]
    if not np.all(costs == costs[0]):
        # Gain per cost alone can keep trading one expensive, decisive sample for several cheap ones that
        # one-for-one exchanges never undo: also start from plain-gain greedy and from each of the `seeds`
        # best single samples (the classic fixes for knapsack-constrained submodular maximization).
        first = t.p @ t.weight
        starts.append((empty, False))
        starts += [(np.eye(n, dtype=np.int64)[j], True) for j in np.argsort(-first, kind="stable")[:seeds]
                   if costs[j] <= budget]
    tables = _Tables(t)
    best_x, best_f, nit = empty, -np.inf, 0
    for k in range(len(starts) + restarts):
        if k < len(starts):
            x, per_cost = starts[k][0].copy(), starts[k][1]
        else:
            x, per_cost = _kick(best_x, costs, budget, rng, perturb), True
        st = _State(tables, x)
        nit += _greedy(st, budget, costs, per_cost=per_cost) + _exchange(st, budget, costs)
        if st.value() > best_f + _IMPROVES:
            best_x, best_f = st.x.copy(), st.value()
    return best_x, nit, f"local optimum under pairwise exchange ({len(starts)} starts, {restarts} restarts)"


def _relaxed_start(t: Targets, tables: _Tables, budget: float, *, gap_tol: float,
                   max_iter: int) -> tuple[np.ndarray, int]:
    """Pairwise Frank-Wolfe on the concave relaxation (real x >= 0, costs . x = budget), stopped when the duality
    gap  budget * max_i g_i / c_i - g . x  (an upper bound on how far f(x) is below the relaxed optimum) falls
    under `gap_tol`; returns (x, iterations). One matrix-vector product per iteration.

    Cells with q = 0 use q = 1e-6 here (an infinite gradient would stall the search); the integer search that
    follows uses the exact q.
    """
    logq = np.log(np.maximum(tables.q, 1e-6))
    neg_logq = -logq
    w, c = tables.w, t.costs
    g = neg_logq @ w  # the gradient at x = 0: start from the best vertex along it
    x = np.zeros(t.n_configs)
    top = int(np.argmax(g / c))
    x[top] = budget / c[top]
    log_r = x[top] * logq[top]
    for it in range(1, max_iter + 1):
        g = neg_logq @ (w * np.exp(log_r))
        ratio = g / c
        top = int(np.argmax(ratio))
        if budget * float(ratio[top]) - float(g @ x) <= gap_tol:
            return x, it
        support = np.flatnonzero(x > 0)
        away = int(support[np.argmin(ratio[support])])
        d_top = c[away] / c[top]  # move one sample of `away` to `top` at equal cost
        slope = d_top * logq[top] - logq[away]
        step = _line_search(w, log_r, slope, float(x[away]), tol=1e-6)  # a warm start: rounding follows
        x[top] += step * d_top
        x[away] = 0.0 if step >= x[away] else x[away] - step
        log_r = log_r + step * slope
    return x, max_iter


def _roundings(x: np.ndarray, budget: float, costs: np.ndarray, rng: np.random.Generator,
               count: int) -> list[np.ndarray]:
    """floor(x) plus one sample for configurations drawn without replacement in proportion to their fractional
    parts, as many as the spare budget buys: `count` seeded draws, the first by largest fractional part."""
    down = np.floor(x + 1e-9).astype(np.int64)
    frac = x - down
    spare = budget - float(costs @ down)
    fractional = np.flatnonzero(frac > 1e-9)
    orders = [fractional[np.argsort(-frac[fractional], kind="stable")]]
    if fractional.size:
        weights = frac[fractional] / frac[fractional].sum()
        orders += [rng.choice(fractional, size=fractional.size, replace=False, p=weights) for _ in range(count - 1)]
    out = []
    for order in orders:
        y, left = down.copy(), spare
        for i in order:
            if costs[i] <= left + 1e-9:
                y[i] += 1
                left -= costs[i]
        out.append(y)
    return out


def _frank_wolfe(t: Targets, budget: float, rng: np.random.Generator, *, gap: float = 1e-6,
                 max_iter: int = 2000, roundings: int = 16, polish: int = 2) -> tuple[np.ndarray, int, str]:
    """Relaxed warm start (`_relaxed_start`, stopped at a duality gap of `gap` times f's scale), `roundings`
    roundings of it scored exactly, then greedy fill and pairwise exchange from the `polish` best."""
    tables = _Tables(t)
    x_real, iterations = _relaxed_start(t, tables, budget, gap_tol=gap * float(tables.w.sum()), max_iter=max_iter)
    scored = []
    for x in _roundings(x_real, budget, t.costs, rng, roundings):
        st = _State(tables, x)
        scored.append((-st.value(), len(scored), st))
    best_x, best_f, moves = np.zeros(t.n_configs, dtype=np.int64), -np.inf, 0
    for _, _, st in sorted(scored, key=lambda s: s[:2])[:polish]:
        moves += _greedy(st, budget, t.costs) + _exchange(st, budget, t.costs)
        if st.value() > best_f + _IMPROVES:
            best_x, best_f = st.x.copy(), st.value()
    return best_x, iterations + moves, (f"local optimum under pairwise exchange from a relaxed start "
                                        f"({iterations} Frank-Wolfe steps, best of {polish} roundings polished)")


def _hill_climbing(t: Targets, budget: float, rng: np.random.Generator, *,
                   recompute: bool = False) -> tuple[np.ndarray, int, str]:
    """The paper's search. `recompute=True` evaluates every candidate's f from scratch, as the released code
    does (the cost reference in benchmarks/); the default updates R incrementally and takes the same steps."""
    if np.any(t.costs != 1.0):
        raise ConfigError("hill_climbing (the paper's algorithm) supports unit costs only")
    n, c = t.n_configs, int(budget)
    strategy = rng.integers(n, size=c)
    st = _State(_Tables(t), np.bincount(strategy, minlength=n))
    switches, improved = 0, True
    while improved:
        improved = False
        for pos in range(c):
            st.remove(int(strategy[pos]))
            if recompute:
                # Row s: the whole strategy with this position drawn from s, summed over its configurations.
                used = np.flatnonzero(st.x)
                candidates = st.x[used] + (np.arange(n)[:, None] == used).astype(np.int64)
                fresh = ~np.isin(np.arange(n), used)
                log_r = candidates @ st.logq[used] + fresh[:, None] * st.logq
                zeros = candidates @ st.zero[used] + fresh[:, None] * st.zero
                values = (np.exp(log_r) * (zeros == 0)) @ st.w
            else:
                values = (st.w * st.r) @ st.q.T  # failure mass left when this position draws from each config
            best = int(np.argmin(values))
            if values[best] < values[strategy[pos]] - _IMPROVES:
                strategy[pos] = best
                improved = True
                switches += 1
            st.add(int(strategy[pos]))
    return st.x.copy(), switches, "no single position can be switched to improve f"


Solver = Callable[..., tuple[np.ndarray, int, str]]
_METHODS: dict[str, Solver] = {"frank_wolfe": _frank_wolfe, "greedy_swap": _greedy_swap,
                               "hill_climbing": _hill_climbing}


def learn_allocation(data: CountMatrix | ScoreMatrix, budget: float, *, seed: int = 0,
                     method: str | Solver = "frank_wolfe", bound: bool = True,
                     **options: Any) -> AllocationResult:
    """Learn how many samples to draw from each configuration to maximize the chance one is correct.

    Maximizes f(pi) = mean_j 1 - prod_i (1 - c_ij/n_ij) ** pi_i (or the expected maximum score for a
    `ScoreMatrix`) subject to sum_i cost_i * pi_i <= budget with integer pi_i >= 0. With unit costs the budget
    counts samples and is spent exactly.

    Args:
        data: correctness counts (or scores) on the training problems.
        budget: samples per problem C, or cost units when configurations have costs.
        seed: seeds every random choice (restarts, the paper's random start).
        method: ``"frank_wolfe"`` (default), ``"greedy_swap"``, ``"hill_climbing"`` (the paper's), or a callable
            ``(targets, budget, rng, **options) -> (x, nit, message)``.
        bound: compute the certified `upper_bound` (costs a few dozen matrix-vector products).
        **options: passed to the solver (``greedy_swap``: ``restarts``, ``perturb``; ``frank_wolfe``: ``gap``,
            ``max_iter``, ``roundings``, ``polish``).

    Returns:
        An `AllocationResult`.

    Example:
        >>> from osca import load_counts, learn_allocation
        >>> split = load_counts("../shared/data/osca/swebench_agentless.json")
        >>> res = learn_allocation(split.train, 16)
        >>> res.allocation.total, round(res.objective, 3)
        (16, ...)
    """
    t = Targets.of(data)
    budget = _checked_budget(budget, t.costs)
    if callable(method):
        solver, name = method, getattr(method, "__name__", "custom")
    elif method in _METHODS:
        solver, name = _METHODS[method], method
    else:
        raise ConfigError(f"unknown method {method!r} (known: {', '.join(_METHODS)})")
    try:
        x, nit, message = solver(t, budget, np.random.default_rng(seed), **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise ConfigError(f"method {name!r}: {e}") from None
        raise
    x = np.asarray(x, dtype=np.int64)
    return AllocationResult(
        allocation=Allocation.from_vector(data.names, x), x=x, objective=objective(t, x),
        upper_bound=upper_bound(t, x, budget) if bound else float("nan"), budget=budget,
        spent=float(t.costs @ x), method=name, nit=nit, message=message)


def _checked_budget(budget: float, costs: np.ndarray) -> float:
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise BudgetError(f"budget must be a number, got {budget!r}")
    if not budget > 0:
        raise BudgetError(f"budget must be > 0, got {budget}")
    if not np.isfinite(budget):
        raise BudgetError(f"budget must be finite, got {budget}")
    if np.all(costs == 1.0) and not float(budget).is_integer():
        raise BudgetError(f"budget counts samples and must be a whole number, got {budget}")
    if costs.min() > budget:
        raise BudgetError(f"budget {budget} is below the cheapest configuration's cost {costs.min()}")
    return float(budget)
