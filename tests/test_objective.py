"""The OSCA objective f(pi) and its certified upper bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from osca import CountMatrix, SamplingConfig, ScoreMatrix, objective, upper_bound
from osca.objective import Targets


def two_problem(a, b, runs):
    """Configs A and B on problems P1, P2 with correct counts a = (a1, a2), b = (b1, b2) out of `runs`."""
    return CountMatrix(("A", "B"), ("P1", "P2"), [list(a), list(b)], runs)


# ------------------------------------------------------------------------------------------ hand-computed f


@pytest.mark.parametrize(("x", "expected"), [
    # A solves P1 w.p. 0.9 and P2 w.p. 0.0; B solves P1 w.p. 0.0 and P2 w.p. 0.3 (counts out of 10).
    # f(kA, kB) = 1/2 * [(1 - 0.1**kA * 1.0**kB) + (1 - 1.0**kA * 0.7**kB)]
    ((2, 0), (1 - 0.1 ** 2 + 0.0) / 2),       # 0.495: pure A solves P1 almost surely, never P2
    ((0, 2), (0.0 + 1 - 0.7 ** 2) / 2),       # 0.255
    ((1, 1), (0.9 + 0.3) / 2),                # 0.600: the mix beats both pure allocations
    ((0, 0), 0.0),
    ((3, 5), (1 - 0.1 ** 3 + 1 - 0.7 ** 5) / 2),
])
def test_paper_illustration(x, expected):
    data = two_problem((9, 0), (0, 3), runs=10)
    assert objective(data, np.array(x)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_mix_beats_best_pure():
    # Counts out of 4: A = (3/4, 0/4), B = (1/4, 2/4); budget 4. By hand, in 512ths:
    #   pure A (4, 0): P1 1 - (1/4)^4 = 255/256, P2 0                          -> 255/512
    #   pure B (0, 4): P1 1 - (3/4)^4 = 175/256, P2 1 - (1/2)^4 = 240/256      -> 415/512
    #   (1, 3):        P1 1 - (1/4)(3/4)^3 = 229/256, P2 1 - (1/2)^3 = 224/256 -> 453/512
    #   (2, 2):        P1 1 - (1/16)(9/16) = 247/256, P2 1 - (1/2)^2 = 192/256 -> 439/512
    #   (3, 1):        P1 1 - (1/64)(3/4) = 253/256,  P2 1 - 1/2 = 128/256     -> 381/512
    data = two_problem((3, 0), (1, 2), runs=4)
    expected = {(4, 0): 255, (0, 4): 415, (1, 3): 453, (2, 2): 439, (3, 1): 381}
    for x, num in expected.items():
        assert objective(data, np.array(x)) == pytest.approx(num / 512, rel=1e-12)
    best = max(expected, key=expected.get)
    assert best == (1, 3)
    assert objective(data, np.array(best)) > max(objective(data, np.array(x)) for x in [(4, 0), (0, 4)])


def test_general_formula_per_problem(make_counts):
    # f = mean_j 1 - prod_i (1 - c_ij / n_ij) ** x_i, written out with Python floats
    data = make_counts(3, 7, 6, seed=5)
    x = (2, 0, 3)
    total = 0.0
    for j in range(data.n_problems):
        fail = 1.0
        for i in range(data.n_configs):
            fail *= (1 - int(data.correct[i, j]) / int(data.runs[i, j])) ** x[i]
        total += 1 - fail
    assert objective(data, np.array(x)) == pytest.approx(total / data.n_problems, rel=1e-12)


def test_zero_failure_cell_is_certain():
    # A solved P1 in all 4 runs: one sample of A solves P1 for sure; P2 is never solved by A.
    data = two_problem((4, 0), (0, 0), runs=4)
    assert objective(data, np.array([1, 0])) == 0.5
    assert objective(data, np.array([3, 5])) == 0.5
    assert objective(data, np.array([0, 5])) == 0.0


def test_relaxed_real_allocation():
    # p = 3/4 on P1 -> q = 1/4, q ** 0.5 = 1/2: half a sample solves P1 with "probability" 1/2
    data = two_problem((3, 0), (0, 0), runs=4)
    assert objective(data, np.array([0.5, 0.0])) == pytest.approx(0.25, rel=1e-12)


def test_per_cell_runs():
    # A: P1 1 of 2 runs, P2 1 of 4 runs; x = (2,): P1 1 - (1/2)^2 = 3/4, P2 1 - (3/4)^2 = 7/16
    data = CountMatrix(("A",), ("P1", "P2"), [[1, 1]], [[2, 4]])
    assert objective(data, np.array([2])) == pytest.approx((3 / 4 + 7 / 16) / 2, rel=1e-12)


# ------------------------------------------------------------------------------------- fractional scores


def brute_expected_max(scores: np.ndarray, x: tuple[int, ...]) -> float:
    """Mean over problems of E[max score], enumerating every draw (with replacement) of x_i present runs."""
    n_configs, n_problems, _ = scores.shape
    total = 0.0
    for j in range(n_problems):
        pools = [[s for s in scores[i, j] if not np.isnan(s)] for i in range(n_configs)]
        per_config = [list(itertools.product(pools[i], repeat=x[i])) for i in range(n_configs)]
        draws = list(itertools.product(*per_config))
        total += sum(max([0.0, *itertools.chain.from_iterable(d)]) for d in draws) / len(draws)
    return total / n_problems


SCORES = np.array([
    [[0.2, 0.7, 0.0], [1.0, 0.0, 0.5]],  # config a
    [[0.0, 0.3, 0.3], [0.4, 0.9, 0.1]],  # config b
])


@pytest.mark.parametrize("x", [(1, 2), (2, 1), (0, 3), (3, 0), (1, 1), (0, 0)])
def test_score_objective_brute_force(x):
    data = ScoreMatrix(("a", "b"), ("p", "q"), SCORES)
    assert objective(data, np.array(x)) == pytest.approx(brute_expected_max(SCORES, x), rel=1e-12, abs=1e-15)


def test_score_objective_with_absent_runs():
    scores = SCORES.copy()
    scores[0, 0, 2] = np.nan   # config a has only two runs on p
    scores[1, 1, 0] = np.nan   # config b has only two runs on q
    data = ScoreMatrix(("a", "b"), ("p", "q"), scores)
    for x in [(1, 2), (2, 2), (0, 1)]:
        assert objective(data, np.array(x)) == pytest.approx(brute_expected_max(scores, x), rel=1e-12)


def test_score_objective_single_sample_is_mean_score():
    # One sample from a: E[max] = E[score] = mean of a's runs, per problem
    data = ScoreMatrix(("a", "b"), ("p", "q"), SCORES)
    expected = ((0.2 + 0.7 + 0.0) / 3 + (1.0 + 0.0 + 0.5) / 3) / 2
    assert objective(data, np.array([1, 0])) == pytest.approx(expected, rel=1e-12)


def test_scores_from_counts_match_counts(make_counts):
    data = make_counts(3, 10, 4, seed=3)
    scores = ScoreMatrix.from_counts(data)
    for x in [(1, 1, 1), (0, 4, 0), (2, 0, 5)]:
        assert objective(scores, np.array(x)) == pytest.approx(objective(data, np.array(x)), abs=1e-12)


# ---------------------------------------------------------------------------------------- ceiling and bound


def test_ceiling_by_hand():
    # P3 is never solved by anyone: at most 2 of 3 problems can be solved
    data = CountMatrix(("A", "B"), ("P1", "P2", "P3"), [[1, 0, 0], [0, 4, 0]], 4)
    assert Targets.of(data).ceiling == pytest.approx(2 / 3)
    assert upper_bound(data, np.array([1, 1]), 2) <= 2 / 3 + 1e-15


def brute_optimum(data, budget, all_allocations) -> float:
    return max(objective(data, np.array(x)) for x in all_allocations(budget, data.n_configs))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("n_configs", "runs", "full"), [(3, 4, 0.0), (4, 5, 0.15), (3, 3, 0.3)])
def test_upper_bound_above_brute_force_optimum(seed, n_configs, runs, full, make_counts, all_allocations):
    data = make_counts(n_configs, 9, runs, seed=seed, full=full)
    ceiling = Targets.of(data).ceiling
    rng = np.random.default_rng(seed)
    for budget in (1, 3, 6):
        best = brute_optimum(data, budget, all_allocations)
        # certify at a pure allocation, a random one and the brute-force optimum itself
        points = [np.eye(n_configs, dtype=int)[0] * budget,
                  np.bincount(rng.integers(n_configs, size=budget), minlength=n_configs)]
        points.append(np.array(max(all_allocations(budget, n_configs), key=lambda x: objective(data, np.array(x)))))
        for x in points:
            plain = upper_bound(data, x, budget, refine=0)
            refined = upper_bound(data, x, budget)
            assert best <= refined + 1e-12
            assert refined <= plain + 1e-15
            assert plain <= ceiling + 1e-15
            assert objective(data, x) <= refined + 1e-12


def test_upper_bound_with_zero_failure_cells(all_allocations):
    # Every config solves some problem in every run (q = 0 cells): the bound must still hold
    data = CountMatrix(("A", "B", "C"), ("P1", "P2", "P3", "P4"),
                       [[3, 0, 1, 0], [0, 3, 0, 1], [1, 1, 3, 0]], 3)
    for budget in (1, 2, 4):
        best = brute_optimum(data, budget, all_allocations)
        bound = upper_bound(data, np.array([budget, 0, 0]), budget)
        assert best <= bound + 1e-12 <= Targets.of(data).ceiling + 1e-12


def test_upper_bound_tight_when_everything_is_solved():
    # A alone solves both problems for sure with 1 sample: f = 1 = ceiling, so the bound is exactly 1
    data = two_problem((2, 2), (1, 0), runs=2)
    assert objective(data, np.array([1, 0])) == 1.0
    assert upper_bound(data, np.array([1, 0]), 1) == pytest.approx(1.0, abs=1e-9)


def test_upper_bound_with_costs(make_counts):
    data = make_counts(3, 8, 4, seed=21)
    costs = [1.0, 2.0, 0.5]
    data = data.with_configs([SamplingConfig(name=n, cost=c) for n, c in zip(data.names, costs)])
    budget = 4.0
    feasible = [x for x in itertools.product(range(5), range(3), range(9)) if np.dot(x, costs) <= budget]
    best = max(objective(data, np.array(x)) for x in feasible)
    for x in ([4, 0, 0], [0, 2, 0], [1, 1, 2]):
        assert best <= upper_bound(data, np.array(x), budget) + 1e-12


def test_upper_bound_scores(all_allocations):
    data = ScoreMatrix(("a", "b"), ("p", "q"), SCORES)
    for budget in (1, 2, 4):
        best = brute_optimum(data, budget, all_allocations)
        bound = upper_bound(data, np.array([budget, 0]), budget)
        assert best <= bound + 1e-12 <= Targets.of(data).ceiling + 1e-12
