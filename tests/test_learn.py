"""learn_allocation: invariants, optimality on small cases, costs, errors, and allocation files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from osca import (Allocation, AllocationResult, BudgetError, ConfigError, CountMatrix, DataError, SamplingConfig,
                  ScoreMatrix, learn_allocation, objective)

SIZES = [(3, 10, 4), (5, 30, 8), (8, 40, 10)]


def best_pure(data, budget: int) -> float:
    return max(objective(data, np.eye(data.n_configs, dtype=int)[i] * budget) for i in range(data.n_configs))


# ---------------------------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("n_configs", "n_problems", "runs"), SIZES)
def test_invariants(seed, n_configs, n_problems, runs, make_counts):
    data = make_counts(n_configs, n_problems, runs, seed=seed)
    for budget in (1, 5, 12):
        res = learn_allocation(data, budget, seed=seed)
        assert isinstance(res, AllocationResult)
        assert res.x.dtype == np.int64 and (res.x >= 0).all()
        assert int(res.x.sum()) == budget
        assert res.spent == budget and res.budget == budget
        assert res.allocation.total == budget
        np.testing.assert_array_equal(res.allocation.vector(data.names), res.x)
        assert res.objective == pytest.approx(objective(data, res.x), abs=1e-12)
        assert res.objective >= best_pure(data, budget) - 1e-12
        assert res.objective <= res.upper_bound + 1e-12
        assert res.gap == pytest.approx(res.upper_bound - res.objective)
        assert res.method == "frank_wolfe"


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n_configs", "n_problems", "runs"), SIZES)
def test_default_at_least_hill_climbing(seed, n_configs, n_problems, runs, make_counts):
    data = make_counts(n_configs, n_problems, runs, seed=100 + seed)
    for budget in (3, 10):
        default = learn_allocation(data, budget, seed=seed)
        paper = learn_allocation(data, budget, seed=seed, method="hill_climbing")
        assert int(paper.x.sum()) == budget
        assert paper.method == "hill_climbing"
        assert paper.objective == pytest.approx(objective(data, paper.x), abs=1e-12)
        assert default.objective >= paper.objective - 1e-12


@pytest.mark.parametrize("seed", range(8))
def test_default_matches_brute_force_small(seed, make_counts, all_allocations):
    data = make_counts(4, 12, 5, seed=200 + seed)
    for budget in range(1, 7):
        res = learn_allocation(data, budget, seed=seed)
        best = max(objective(data, np.array(x)) for x in all_allocations(budget, 4))
        assert res.objective <= best + 1e-12          # nothing beats the true optimum
        assert best <= res.upper_bound + 1e-12        # the certificate holds
        assert best - res.objective <= res.gap + 1e-12
        assert res.objective >= best_pure(data, budget) - 1e-12


def test_default_is_usually_exactly_optimal(make_counts, all_allocations):
    hits = total = 0
    for seed in range(10):
        data = make_counts(4, 10, 4, seed=300 + seed)
        for budget in (2, 4, 6):
            res = learn_allocation(data, budget, seed=seed)
            best = max(objective(data, np.array(x)) for x in all_allocations(budget, 4))
            hits += best - res.objective <= 1e-12
            total += 1
    assert hits >= 0.9 * total


def test_hand_example_optimum():
    # A = (3/4, 0/4), B = (1/4, 2/4), budget 4: (1, 3) gives 453/512, every other split less (see test_objective)
    data = CountMatrix(("A", "B"), ("P1", "P2"), [[3, 0], [1, 2]], 4)
    res = learn_allocation(data, 4)
    assert res.allocation == {"A": 1, "B": 3}
    assert res.objective == pytest.approx(453 / 512, rel=1e-12)


@pytest.mark.parametrize("method", ["greedy_swap", "frank_wolfe", "hill_climbing"])
def test_deterministic_per_seed(method, make_counts):
    data = make_counts(6, 40, 8, seed=9)
    a = learn_allocation(data, 11, seed=5, method=method)
    b = learn_allocation(data, 11, seed=5, method=method)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.objective == b.objective and a.nit == b.nit and a.upper_bound == b.upper_bound


@pytest.mark.parametrize("seed", range(5))
def test_hill_climbing_recompute_takes_same_steps(seed, make_counts):
    data = make_counts(6, 30, 8, seed=400 + seed)
    for budget in (4, 9):
        fast = learn_allocation(data, budget, seed=seed, method="hill_climbing")
        slow = learn_allocation(data, budget, seed=seed, method="hill_climbing", recompute=True)
        np.testing.assert_array_equal(fast.x, slow.x)
        assert fast.nit == slow.nit


# ---------------------------------------------------------------------------------------------- frank_wolfe


@pytest.mark.parametrize("seed", range(6))
def test_frank_wolfe_against_brute_force(seed, make_counts, all_allocations):
    data = make_counts(4, 12, 5, seed=700 + seed)
    for budget in (1, 3, 6):
        res = learn_allocation(data, budget, seed=seed, method="frank_wolfe")
        best = max(objective(data, np.array(x)) for x in all_allocations(budget, 4))
        assert int(res.x.sum()) == budget and res.method == "frank_wolfe"
        assert res.objective <= best + 1e-12 <= res.upper_bound + 2e-12
        assert res.objective >= best_pure(data, budget) - 1e-12
        assert "Frank-Wolfe steps" in res.message


def test_frank_wolfe_matches_greedy_swap_on_mid_sized_data(make_counts):
    data = make_counts(20, 200, 16, seed=11, full=0.02)
    for budget in (16, 64):
        fw = learn_allocation(data, budget, method="frank_wolfe")
        gs = learn_allocation(data, budget)
        assert fw.objective == pytest.approx(gs.objective, abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_frank_wolfe_with_costs_spends_the_budget(seed, make_counts):
    rng = np.random.default_rng(800 + seed)
    costs = rng.choice([0.5, 1.0, 2.5], size=4)
    data = with_costs(make_counts(4, 15, 6, seed=800 + seed), costs)
    for budget in (3.0, 7.5):
        res = learn_allocation(data, budget, seed=seed, method="frank_wolfe")
        assert res.spent <= budget + 1e-9 and res.spent + costs.min() > budget + 1e-12
        grid = itertools.product(*(range(int(budget // c) + 1) for c in costs))
        best = max(objective(data, np.array(x)) for x in grid if np.dot(x, costs) <= budget)
        assert res.objective <= best + 1e-12


def test_no_bound():
    data = CountMatrix(("A", "B"), ("P1", "P2"), [[3, 0], [1, 2]], 4)
    res = learn_allocation(data, 2, bound=False)
    assert np.isnan(res.upper_bound)
    assert res.x.sum() == 2


def test_restart_options(make_counts):
    data = make_counts(5, 20, 6, seed=1)
    res = learn_allocation(data, 7, method="greedy_swap", restarts=0)
    assert res.x.sum() == 7
    assert "0 restarts" in res.message
    more = learn_allocation(data, 7, method="greedy_swap", restarts=4, perturb=0.3)
    assert more.x.sum() == 7


def test_custom_solver_callable():
    data = CountMatrix(("A", "B"), ("P1", "P2"), [[3, 0], [1, 2]], 4)

    def everything_on_b(targets, budget, rng, *, extra=0):
        return np.array([0, int(budget)]), 7 + extra, "fixed"

    res = learn_allocation(data, 4, method=everything_on_b, extra=1)
    assert res.method == "everything_on_b" and res.nit == 8 and res.message == "fixed"
    assert res.allocation == {"B": 4}
    assert res.objective == pytest.approx(415 / 512, rel=1e-12)


# ------------------------------------------------------------------------------------------- costed budgets


def with_costs(data: CountMatrix, costs) -> CountMatrix:
    return data.with_configs([SamplingConfig(name=n, cost=float(c)) for n, c in zip(data.names, costs)])


@pytest.mark.parametrize("seed", range(10))
def test_costed_budget_spent_and_maximal(seed, make_counts):
    rng = np.random.default_rng(500 + seed)
    data = make_counts(4, 15, 6, seed=500 + seed)
    costs = rng.choice([0.5, 1.0, 1.5, 2.5, 4.0], size=4)
    data = with_costs(data, costs)
    for budget in (2.5, 6.0, 9.5):
        if budget < costs.min():
            continue
        res = learn_allocation(data, budget, seed=seed)
        assert res.spent == pytest.approx(float(costs @ res.x))
        assert res.spent <= budget + 1e-9
        assert res.spent + costs.min() > budget + 1e-12   # nothing more fits
        assert res.budget == budget
        assert res.objective == pytest.approx(objective(data, res.x), abs=1e-12)


def test_costed_hand_example():
    # A (cost 1) solves P1 w.p. 1/2, B (cost 2) solves P2 w.p. 1/2; budget 4. By hand:
    #   (4, 0): (1 - 1/16 + 0) / 2 = 15/32    (2, 1): (3/4 + 1/2) / 2 = 5/8    (0, 2): (0 + 3/4) / 2 = 3/8
    #   (3, 0): 7/16   (1, 1): 1/2   (2, 0): 3/8   ... so (2, 1) is optimal at 5/8.
    data = with_costs(CountMatrix(("A", "B"), ("P1", "P2"), [[1, 0], [0, 1]], 2), [1.0, 2.0])
    res = learn_allocation(data, 4)
    assert res.allocation == {"A": 2, "B": 1}
    assert res.objective == pytest.approx(5 / 8, rel=1e-12)
    assert res.spent == 4.0
    assert 5 / 8 <= res.upper_bound + 1e-12


def test_costed_one_expensive_sample_beats_many_cheap():
    # A (cost 2.5) solves both problems in every run; C (cost 1) solves only P1, in every run. Budget 3:
    #   (1, 0): f = 1.0 (A alone solves both)    (0, 3): f = 1/2 (P1 only)    (0, 1), (0, 2): f = 1/2
    data = with_costs(CountMatrix(("A", "C"), ("P1", "P2"), [[2, 2], [2, 0]], 2), [2.5, 1.0])
    res = learn_allocation(data, 3.0)
    assert res.upper_bound >= 1.0 - 1e-12  # the certificate does flag the gap
    assert res.objective == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_costed_vs_brute_force(seed, make_counts):
    data = make_counts(3, 10, 6, seed=600 + seed)
    costs = np.array([1.0, 0.5, 1.5])
    data = with_costs(data, costs)
    budget = 3.0
    grid = itertools.product(*(range(int(budget // c) + 1) for c in costs))
    best = max(objective(data, np.array(x)) for x in grid if np.dot(x, costs) <= budget)
    res = learn_allocation(data, budget, seed=seed)
    assert res.objective <= best + 1e-12
    assert best <= res.upper_bound + 1e-12


def test_costed_budget_float_in_saved_file(tmp_path):
    data = with_costs(CountMatrix(("A", "B"), ("P1", "P2"), [[1, 0], [0, 1]], 2), [1.0, 2.0])
    res = learn_allocation(data, 4.5)
    path = tmp_path / "alloc.json"
    res.save(path)
    assert json.loads(path.read_text())["budget"] == 4.5


# ----------------------------------------------------------------------------------------------------- errors


@pytest.fixture
def small():
    return CountMatrix(("A", "B"), ("P1", "P2"), [[3, 0], [1, 2]], 4)


@pytest.mark.parametrize("budget", [0, -3, 2.5, float("nan"), True, "4", None])
def test_bad_budget_unit_costs(budget, small):
    with pytest.raises(BudgetError):
        learn_allocation(small, budget)


def test_budget_below_cheapest_cost(small):
    data = with_costs(small, [2.0, 3.0])
    with pytest.raises(BudgetError, match="cheapest"):
        learn_allocation(data, 1.5)


@pytest.mark.parametrize("costs", [[1.0, 2.0], [2.0, 2.0], [1.0, 1.0]])
def test_infinite_budget_is_an_error(costs, small):
    with pytest.raises(BudgetError, match="finite"):
        learn_allocation(with_costs(small, costs), float("inf"))


def test_fractional_budget_allowed_with_costs(small):
    data = with_costs(small, [0.5, 1.0])
    res = learn_allocation(data, 2.5)
    assert res.spent <= 2.5 + 1e-9


def test_unknown_method(small):
    with pytest.raises(ConfigError, match="unknown method 'annealing'"):
        learn_allocation(small, 2, method="annealing")


def test_hill_climbing_needs_unit_costs(small):
    with pytest.raises(ConfigError, match="unit costs"):
        learn_allocation(with_costs(small, [1.0, 2.0]), 4, method="hill_climbing")


@pytest.mark.parametrize("method", ["greedy_swap", "hill_climbing"])
def test_unknown_option(method, small):
    with pytest.raises(ConfigError, match="bogus"):
        learn_allocation(small, 2, method=method, bogus=1)


# --------------------------------------------------------------------------------------- allocation files


def test_result_save_and_load(tmp_path, make_counts):
    data = make_counts(4, 20, 5, seed=2)
    res = learn_allocation(data, 6)
    path = tmp_path / "allocation.json"
    res.save(path)
    doc = json.loads(path.read_text())
    assert set(doc) == {"budget", "allocation", "objective", "upper_bound"}
    assert doc["budget"] == 6 and isinstance(doc["budget"], int)
    assert doc["objective"] == res.objective and doc["upper_bound"] == res.upper_bound
    assert doc["allocation"] == {n: int(k) for n, k in zip(data.names, res.x) if k}
    loaded = Allocation.load(path)
    assert loaded == res.allocation
    np.testing.assert_array_equal(loaded.vector(data.names), res.x)


def test_allocation_save_load_bare(tmp_path):
    a = Allocation({"x": 2, "y": 0, "z": np.int64(1)})
    path = tmp_path / "a.json"
    a.save(path, budget=3)
    assert json.loads(path.read_text()) == {"budget": 3, "allocation": {"x": 2, "z": 1}}
    assert Allocation.load(path) == a
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"x": 2, "z": 1}))
    assert Allocation.load(bare) == a


def test_allocation_omits_zeros():
    a = Allocation({"x": 3, "y": 0, "z": 1})
    assert dict(a) == {"x": 3, "z": 1}
    assert len(a) == 2 and "y" not in a
    assert a.total == 4
    assert a.get("y", 0) == 0
    np.testing.assert_array_equal(a.vector(["z", "y", "x"]), [1, 0, 3])


@pytest.mark.parametrize("bad", [-1, 1.5, 2.0, "3", True, None])
def test_allocation_bad_counts(bad):
    with pytest.raises(DataError, match="whole number"):
        Allocation({"x": bad})


def test_allocation_vector_unknown_name():
    with pytest.raises(ConfigError, match="'w'"):
        Allocation({"x": 1, "w": 2}).vector(["x", "y"])


def test_allocation_load_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"allocation": {"x": -2}}))
    with pytest.raises(DataError, match="whole number"):
        Allocation.load(path)
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="expected an object"):
        Allocation.load(path)
    with pytest.raises(DataError, match="no such file"):
        Allocation.load(tmp_path / "missing.json")


def test_allocation_from_vector():
    a = Allocation.from_vector(["x", "y", "z"], np.array([0, 2, 1]))
    assert a == {"y": 2, "z": 1}


# ------------------------------------------------------------------------------------------- score matrices


def test_learn_on_scores():
    rng = np.random.default_rng(0)
    scores = rng.choice([0.0, 0.25, 0.5, 1.0], size=(4, 12, 5), p=[0.5, 0.2, 0.2, 0.1])
    scores[1, 3, 2:] = np.nan
    data = ScoreMatrix(tuple("abcd"), tuple(f"p{j}" for j in range(12)), scores)
    for budget in (1, 4, 9):
        res = learn_allocation(data, budget)
        assert res.x.sum() == budget
        assert 0.0 <= res.objective <= 1.0
        assert res.objective == pytest.approx(objective(data, res.x), abs=1e-12)
        assert res.objective <= res.upper_bound + 1e-12
        assert res.objective >= best_pure(data, budget) - 1e-12
