"""Evaluation: the unbiased pass@k estimator, the uniform baseline, bootstrap CIs and the budget curve."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from osca import Allocation, BudgetError, ConfigError, CountMatrix, ScoreMatrix, load_counts
from osca import SamplingConfig
from osca.evaluate import bootstrap_ci, curve, expected_pass, paired, uniform_pass

# Published OSCA test accuracy on SWE-Bench (agentless), budgets 1..16
PUBLISHED = [.2196, .2708, .2997, .3205, .3359, .3474, .3565, .3636,
             .3693, .3753, .3801, .3839, .3882, .3915, .3949, .3979]


# ------------------------------------------------------------------------------------------- expected_pass


def unbiased(n: int, c: int, k: int) -> float:
    """Chen et al. (2021): P(at least one of k draws without replacement from n runs, c correct, is correct)."""
    return 1.0 - comb(n - c, k) / comb(n, k)


@pytest.mark.parametrize("k", range(1, 7))
def test_expected_pass_single_config_unbiased(k):
    n = 6
    cs = [0, 1, 2, 3, 5, 6]
    data = CountMatrix(("A",), tuple(f"p{c}" for c in cs), [cs], n)
    est = expected_pass(data, np.array([k]))
    expected = [unbiased(n, c, k) for c in cs]
    np.testing.assert_allclose(est.per_problem, expected, rtol=0, atol=1e-12)
    assert est.value == pytest.approx(sum(expected) / len(cs), abs=1e-12)
    assert est.extrapolated == ()


def test_expected_pass_two_configs_multiply_failures():
    # A: 2 of 5 correct, B: 1 of 4 correct on one problem; 2 samples of A, 3 of B, drawn independently
    data = CountMatrix(("A", "B"), ("p",), [[2], [1]], [5, 4])
    fail = (comb(3, 2) / comb(5, 2)) * (comb(3, 3) / comb(4, 3))
    est = expected_pass(data, np.array([2, 3]))
    assert est.value == pytest.approx(1.0 - fail, abs=1e-12)


def test_expected_pass_accepts_allocation():
    data = CountMatrix(("A", "B"), ("p", "q"), [[2, 0], [1, 3]], 4)
    by_name = expected_pass(data, Allocation({"B": 2, "A": 1}))
    by_vector = expected_pass(data, np.array([1, 2]))
    assert by_name.value == by_vector.value
    with pytest.raises(ConfigError):
        expected_pass(data, Allocation({"C": 1}))


def test_expected_pass_per_cell_runs():
    # one config; problem p has 3 runs, problem q has 6: 2 samples without replacement in each
    data = CountMatrix(("A",), ("p", "q"), [[1, 4]], [[3, 6]])
    est = expected_pass(data, np.array([2]))
    np.testing.assert_allclose(est.per_problem, [unbiased(3, 1, 2), unbiased(6, 4, 2)], atol=1e-12)


def test_expected_pass_more_samples_than_runs_is_held_at_the_runs():
    n, k = 4, 6
    cs = [0, 1, 3, 4]
    data = CountMatrix(("A", "B"), tuple(f"p{c}" for c in cs), [cs, [0, 0, 0, 0]], n)
    est = expected_pass(data, np.array([k, 1]))
    # held at k = n: solved exactly where a recorded run solved it (c = 0 stays unsolved; the released osca.py
    # says 1.0 there)
    np.testing.assert_allclose(est.per_problem, [0.0, 1.0, 1.0, 1.0], atol=1e-12)
    assert est.extrapolated == ("A",)


def test_expected_pass_never_falls_as_samples_grow_past_the_runs():
    # issue 13: the plug-in fallback dropped from 1.0 at k = n to 1 - (1 - c/n)^(n+1) at k = n + 1
    n = 5
    data = CountMatrix(("A",), tuple(f"p{c}" for c in range(n + 1)), [list(range(n + 1))], n)
    values = [expected_pass(data, np.array([k])).value for k in range(1, 3 * n)]
    assert all(b >= a - 1e-15 for a, b in zip(values, values[1:])), values
    assert values[n - 1] == pytest.approx(n / (n + 1))  # every problem some run solved


def test_expected_pass_zero_correct_more_samples_than_runs():
    data = CountMatrix(("A",), ("p",), [[0]], 3)
    est = expected_pass(data, np.array([10]))
    assert est.value == 0.0
    assert est.extrapolated == ("A",)


def test_expected_pass_zero_allocation():
    data = CountMatrix(("A",), ("p",), [[3]], 3)
    assert expected_pass(data, np.array([0])).value == 0.0


def test_expected_pass_scores_from_counts(make_counts):
    data = make_counts(3, 10, 5, seed=4)
    x = np.array([2, 0, 3])
    a = expected_pass(data, x)
    b = expected_pass(ScoreMatrix.from_counts(data), x)
    np.testing.assert_allclose(a.per_problem, b.per_problem, atol=1e-12)


# -------------------------------------------------------------------------------------------- uniform_pass


def brute_uniform(data: CountMatrix, budget: int) -> np.ndarray:
    """Per-problem expected pass of `budget // n` samples each plus one extra on every r-subset, averaged."""
    n = data.n_configs
    base, r = divmod(budget, n)
    rows = []
    for extra in itertools.combinations(range(n), r):
        x = np.full(n, base)
        x[list(extra)] += 1
        rows.append(expected_pass(data, x).per_problem)
    return np.mean(rows, axis=0)


@pytest.mark.parametrize("budget", [1, 2, 3, 5, 6, 7, 9, 11])
def test_uniform_pass_brute_force(budget, make_counts):
    data = make_counts(4, 12, 6, seed=8)
    est = uniform_pass(data, budget)
    expected = brute_uniform(data, budget)
    np.testing.assert_allclose(est.per_problem, expected, rtol=0, atol=1e-12)
    assert est.value == pytest.approx(expected.mean(), abs=1e-12)


def test_uniform_pass_five_configs_brute_force(make_counts):
    data = make_counts(5, 10, 4, seed=12)
    for budget in (2, 3, 8):
        np.testing.assert_allclose(uniform_pass(data, budget).per_problem, brute_uniform(data, budget), atol=1e-12)


@pytest.mark.parametrize("budget", [4, 8, 12])
def test_uniform_pass_even_budget(budget, make_counts):
    data = make_counts(4, 12, 6, seed=9)
    even = expected_pass(data, np.full(4, budget // 4))
    est = uniform_pass(data, budget)
    np.testing.assert_allclose(est.per_problem, even.per_problem, atol=1e-12)


def test_uniform_pass_flags_extrapolation():
    data = CountMatrix(("A", "B"), ("p",), [[1], [0]], 2)
    assert uniform_pass(data, 4).extrapolated == ()
    assert set(uniform_pass(data, 5).extrapolated) == {"A", "B"}


# -------------------------------------------------------------------------------------------- bootstrap_ci


def test_bootstrap_deterministic_and_brackets_mean():
    values = np.random.default_rng(0).random(200)
    lo, hi = bootstrap_ci([values], seed=3)
    assert (lo, hi) == bootstrap_ci([values], seed=3)
    assert lo < values.mean() < hi
    assert bootstrap_ci([values], seed=4) != (lo, hi)
    narrow = bootstrap_ci([values], level=0.5, seed=3)
    assert lo <= narrow[0] <= narrow[1] <= hi


def test_bootstrap_several_splits_brackets_average():
    rng = np.random.default_rng(1)
    parts = [rng.random(80), rng.random(120) * 0.5]
    lo, hi = bootstrap_ci(parts, seed=0)
    assert lo < np.mean([p.mean() for p in parts]) < hi


# ------------------------------------------------------------------------------------------------- curve


@pytest.fixture(scope="module")
def release_curve(swebench_path):
    split = load_counts(swebench_path)
    return curve([split], list(range(1, 17)), default="gpt4o_0.8")


def test_curve_matches_published(release_curve):
    assert [r.budget for r in release_curve] == list(range(1, 17))
    for row, published in zip(release_curve, PUBLISHED):
        assert row.osca_test >= published - 0.001, (row.budget, row.osca_test, published)


def test_curve_baselines_and_bound(release_curve):
    for row in release_curve:
        assert row.allocation.total == row.budget
        assert row.osca_test >= row.uniform_test
        assert row.osca_train <= row.upper_bound + 1e-12
        assert row.gap >= -1e-12
        assert row.default_test is not None
        lo, hi = row.osca_ci
        assert lo <= row.osca_test <= hi
        assert row.extrapolated == ()  # 16 runs each: budgets up to 16 never extrapolate


def test_curve_default_value(swebench_path, release_curve):
    split = load_counts(swebench_path)
    i = split.test.index("gpt4o_0.8")
    for row in release_curve[::5]:
        x = np.zeros(split.test.n_configs, dtype=int)
        x[i] = row.budget
        assert row.default_test == pytest.approx(expected_pass(split.test, x).value, abs=1e-12)


def test_curve_unknown_default(swebench_path):
    split = load_counts(swebench_path)
    with pytest.raises(ConfigError, match="nope"):
        curve([split], [1, 2], default="nope")


@pytest.mark.parametrize("budgets", [[0, 1, 2], [3, -1], []])
def test_curve_bad_budgets(budgets, make_counts):
    split = make_counts(3, 10, 4, seed=0).split(0.5)
    with pytest.raises(BudgetError):
        curve([split], budgets)


def test_curve_seeded_random_split_reproducible(swebench_path):
    pool = load_counts(swebench_path).pool()
    budgets = [1, 4, 8]
    steps = []
    first = curve([pool.split(0.3, seed=1)], budgets, default="gpt4o_0.8", on_step=lambda: steps.append(1))
    second = curve([pool.split(0.3, seed=1)], budgets, default="gpt4o_0.8")
    assert len(steps) == len(budgets)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]


def test_curve_averages_over_splits(make_counts):
    pool = make_counts(4, 30, 6, seed=3)
    splits = [pool.split(0.5, seed=s) for s in range(3)]
    rows = curve(splits, [2, 5])
    for row in rows:
        each = [curve([s], [row.budget])[0] for s in splits]
        assert row.osca_test == pytest.approx(np.mean([e.osca_test for e in each]), abs=1e-12)
        assert row.uniform_test == pytest.approx(np.mean([e.uniform_test for e in each]), abs=1e-12)
        assert row.default_test is None
        assert row.allocation == each[0].allocation


# ------------------------------------------------------------------------------------- equal-cost baselines


def test_curve_baselines_spend_the_same_budget_as_the_learned_mix():
    # issue 13: with costs, `pricey` as the default got 2 samples costing 20 against a budget of 2
    configs = (SamplingConfig(name="cheap", cost=1.0), SamplingConfig(name="pricey", cost=10.0))
    data = CountMatrix(configs, ("p", "q", "r"), [[1, 0, 0], [4, 4, 4]], 4)
    split = data.split(0.67, seed=0)
    (row,) = curve([split], [2], default="pricey")
    assert row.unit == "cost units"
    assert row.default_test == 0.0  # floor(2 / 10) = 0 samples of pricey
    assert row.optimal_pure_config == "cheap"
    assert row.allocation == Allocation({"cheap": 2})
    # at 10 cost units pricey is affordable once, and it solves everything
    (row,) = curve([split], [10], default="pricey")
    assert row.default_test == 1.0 and row.optimal_pure_test == 1.0
    assert row.to_dict()["unit"] == "cost units"


def test_curve_uniform_baseline_buys_samples_at_the_mean_cost():
    configs = (SamplingConfig(name="a", cost=1.0), SamplingConfig(name="b", cost=3.0))
    data = CountMatrix(configs, ("p", "q", "r", "s"), [[1, 0, 2, 0], [0, 3, 0, 1]], 4)
    split = data.split(0.5, seed=1)
    (row,) = curve([split], [8])
    assert row.uniform_test == pytest.approx(uniform_pass(split.test, 4).value)  # 8 / mean cost 2


# ----------------------------------------------------------------------------------- paired held-out verdict


def test_paired_difference_uses_the_nadeau_bengio_correction():
    learned = [0.50, 0.52, 0.49, 0.53, 0.51]
    base = [0.48, 0.50, 0.50, 0.50, 0.49]
    p = paired(learned, base, n_train=30, n_test=70)
    d = np.subtract(learned, base)
    assert p.diff == pytest.approx(d.mean())
    assert p.se == pytest.approx(np.sqrt((1 / 5 + 70 / 30) * d.var(ddof=1)))
    assert p.se > d.std(ddof=1) / np.sqrt(5) * 3  # far above the naive standard error
    assert (p.wins, p.ties, p.losses) == (4, 0, 1)
    assert p.verdict == "indistinguishable"


@pytest.mark.parametrize("shift, verdict", [(0.05, "better"), (-0.05, "worse"), (0.0, "indistinguishable")])
def test_paired_verdict(shift, verdict):
    base = np.linspace(0.3, 0.4, 10)
    noise = np.random.default_rng(0).normal(0, 0.002, 10)
    assert paired(base + shift + noise, base, n_train=30, n_test=70).verdict == verdict


def test_paired_single_split_has_no_verdict():
    p = paired([0.5], [0.4], n_train=30, n_test=70)
    assert np.isnan(p.se) and p.verdict == "unknown" and p.to_dict()["se_corrected"] is None


def test_curve_rows_carry_paired_comparisons(make_counts):
    pool = make_counts(4, 40, 6, seed=2)
    splits = [pool.split(0.5, seed=s) for s in range(4)]
    (row,) = curve(splits, [3], default="cfg0")
    d = [curve([s], [3], default="cfg0")[0] for s in splits]
    vs = row.versus_default
    assert vs.diff == pytest.approx(np.mean([r.osca_test - r.default_test for r in d]), abs=1e-12)
    assert vs.wins + vs.ties + vs.losses == 4
    assert row.to_dict()["default"]["osca_minus"]["verdict"] == vs.verdict


def test_train_sizes_repeat_the_paired_comparison_per_size(make_counts):
    from osca import DataError
    from osca.evaluate import train_sizes

    pool = make_counts(3, 30, 6, seed=5)
    rows = train_sizes(pool, [10, 20], [2, 4], repeats=3, default="cfg1")
    assert [(r.n_train, r.n_test, r.row.budget) for r in rows] == [(10, 20, 2), (10, 20, 4), (20, 10, 2), (20, 10, 4)]
    again = curve([pool.split(20 / 30, s) for s in range(3)], [4], default="cfg1")[0]
    assert rows[3].row.versus_default == again.versus_default
    assert rows[0].to_dict()["n_train"] == 10
    with pytest.raises(DataError, match="training sizes"):
        train_sizes(pool, [30], [2])
