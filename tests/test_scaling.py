"""Inference scaling: coverage curves, the exponentiated power-law fit, the budget advisor and `osca scaling`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction
from itertools import count
from math import comb
from pathlib import Path

import numpy as np
import pytest

from osca import Allocation, BudgetError, ConfigError, CountMatrix, DataError, SamplingConfig, load_counts
from osca.evaluate import expected_pass
from osca.scaling import (CoverageCurve, DistributionFit, allocation_curve, choose_method, config_curve,
                          extrapolation_check, fit_distribution, fit_pass_rates, fit_power_law, learned_curve,
                          recommend_budget, scale_allocation)
from test_cli import run  # the installed entry point, as a user runs it

# "good" solves problems p0..p3 in 0, 1, 2, 4 of 4 runs; "bad" never does better on any problem.
GOOD = [0, 1, 2, 4]
BAD = [0, 0, 1, 1]


def small() -> CountMatrix:
    return CountMatrix(("good", "bad"), ("p0", "p1", "p2", "p3"), [GOOD, BAD], 4)


def hand_pass(cs: list[int], n: int, k: int) -> Fraction:
    """Mean over problems of 1 - C(n - c, k) / C(n, k), exactly."""
    return sum(1 - Fraction(comb(n - c, k), comb(n, k)) for c in cs) / len(cs)


def law_curve(a: float, b: float, ks, *, unit_cost: float = 1.0) -> CoverageCurve:
    """A measured curve that follows log c = a k^b exactly (for the advisor's arithmetic)."""
    ks = np.asarray(ks, dtype=float)
    c = np.exp(a * ks ** b)
    return CoverageCurve(label="law", k=ks, coverage=c, band=np.c_[c, c], allocations=(),
                         per_problem=c[:, None], unit_cost=unit_cost)


# ------------------------------------------------------------------------------------------------ curves


def test_config_curve_is_the_unbiased_pass_at_k():
    curve = config_curve(small(), "good")
    # by hand: k=1 (0 + 1/4 + 1/2 + 1)/4; k=2 (0 + 1/2 + 5/6 + 1)/4; k=3 (0 + 3/4 + 1 + 1)/4; k=4 3/4
    assert [Fraction(7, 16), Fraction(7, 12), Fraction(11, 16), Fraction(3, 4)] == \
        [hand_pass(GOOD, 4, k) for k in range(1, 5)]
    np.testing.assert_allclose(curve.coverage, [7 / 16, 7 / 12, 11 / 16, 3 / 4], atol=1e-12)
    assert curve.k.tolist() == [1, 2, 3, 4]  # default: up to the recorded runs, where the estimate is unbiased
    assert curve.allocations[2] == Allocation({"good": 3})
    assert curve.ceiling == 0.75  # p1, p2, p3 were solved by some run
    assert curve.extrapolated == ()
    assert np.all(curve.band[:, 0] <= curve.coverage + 1e-12) and np.all(curve.coverage <= curve.band[:, 1] + 1e-12)
    assert np.all(np.diff(curve.band, axis=1) > 0)  # problems differ: the band has width


def test_config_curve_beyond_the_runs_is_flagged():
    curve = config_curve(small(), "good", [2, 6])
    assert curve.extrapolated == ("good",)
    # held at the 4 recorded runs beyond them: the problems some run solved
    assert curve.coverage[1] == pytest.approx(0.75)
    assert curve.recorded.tolist() == [True, False]


def test_config_curve_rejects_bad_input():
    with pytest.raises(ConfigError, match="unknown configuration"):
        config_curve(small(), "nope")
    with pytest.raises(BudgetError):
        config_curve(small(), "good", [0, 1])
    with pytest.raises(BudgetError):
        config_curve(small(), "good", [1.5])


@pytest.mark.parametrize(("k", "expected"), [(4, {"a": 3, "b": 1}), (2, {"a": 2}), (8, {"a": 6, "b": 2}),
                                             (1, {"a": 1}), (6, {"a": 5, "b": 1})])
def test_scale_allocation_keeps_the_mix(k, expected):
    # k * (3, 1) / 4: at k = 2 (1.5, 0.5) ties on the remainder, the larger share wins; at k = 6 (4.5, 1.5) too
    assert scale_allocation(Allocation({"a": 3, "b": 1}), k) == Allocation(expected)


def test_scale_allocation_only_adds_samples_and_gives_the_allocation_back():
    rng = np.random.default_rng(0)
    for _ in range(50):
        alloc = Allocation({f"c{i}": int(v) for i, v in enumerate(rng.integers(0, 9, size=5))} | {"z": 1})
        xs = [scale_allocation(alloc, k).vector(sorted(alloc)) for k in range(1, 2 * alloc.total + 1)]
        assert all((b >= a).all() and b.sum() == a.sum() + 1 for a, b in zip(xs, xs[1:]))
        assert scale_allocation(alloc, alloc.total) == alloc


def test_allocation_curve_never_falls_past_the_recorded_runs():
    # issue 13: the plug-in estimate beyond the runs dropped coverage from k = 9 to k = 10
    rng = np.random.default_rng(1)
    m = CountMatrix(("a", "b"), tuple(f"p{j}" for j in range(40)), rng.binomial(9, rng.beta(0.3, 2, (2, 40))), 9)
    curve = allocation_curve(m, Allocation({"a": 7, "b": 2}), range(1, 31))
    assert (np.diff(curve.coverage) >= -1e-12).all()
    assert curve.recorded[:9].all() and not curve.recorded[-1]


def test_allocation_curve_is_the_product_form():
    m = small()
    alloc = Allocation({"good": 1, "bad": 1})
    curve = allocation_curve(m, alloc, [2])
    # one sample of each, without replacement within a configuration: fail = (1 - c_g/4)(1 - c_b/4)
    fail = [(1 - g / 4) * (1 - b / 4) for g, b in zip(GOOD, BAD)]
    assert curve.coverage[0] == pytest.approx(1 - np.mean(fail), abs=1e-12)
    assert curve.unit_cost == 1.0


def test_allocation_curve_scales_the_mix_up_to_its_total_and_beyond():
    m = small()
    alloc = Allocation({"good": 1, "bad": 1})
    assert allocation_curve(m, alloc).k.tolist() == [1, 2]  # default: 1 .. C
    curve = allocation_curve(m, alloc, [8, 10])
    assert curve.coverage[0] == pytest.approx(expected_pass(m, Allocation({"good": 4, "bad": 4})).value)
    assert curve.extrapolated == ("bad", "good")  # 5 samples of each exceed their 4 runs: held there, flagged


def test_learned_curve_on_a_dominated_configuration_is_the_best_ones_curve():
    m = small()
    learned = learned_curve(m)
    assert [dict(a) for a in learned.allocations] == [{"good": k} for k in range(1, 5)]
    np.testing.assert_allclose(learned.coverage, config_curve(m, "good").coverage, atol=1e-12)
    assert learned.ceiling == 0.75


def test_learned_curve_on_a_split_learns_on_train_and_measures_on_test(make_counts):
    split = make_counts(4, 60, 8, seed=5).split(0.5, seed=1)
    curve = learned_curve(split, [1, 3])
    for k, alloc, value in zip((1, 3), curve.allocations, curve.coverage):
        assert alloc.total == k
        assert value == pytest.approx(expected_pass(split.test, alloc).value)


# ------------------------------------------------------------------------------------------------ the fit


@pytest.mark.parametrize(("a", "b"), [(-1.5, -0.2), (-0.4, -0.5), (-3.0, -0.05)])
def test_fit_recovers_an_exact_law(a, b):
    ks = np.arange(1, 17)
    fit = fit_power_law(ks, np.exp(a * ks ** b))
    assert fit.a == pytest.approx(a, rel=1e-9) and fit.b == pytest.approx(b, rel=1e-9)
    assert fit.rmse < 1e-12 and fit.rmse_log < 1e-12 and fit.max_error < 1e-12
    assert (fit.k_min, fit.k_max, fit.n_points, fit.dropped) == (1, 16, 16, ())
    assert fit.predict(100) == pytest.approx(math.exp(a * 100 ** b))


def test_fit_recovers_a_noisy_law_within_tolerance():
    rng = np.random.default_rng(0)
    a, b = -1.6, -0.2
    ks = np.arange(1, 33)
    noisy = np.exp(a * ks ** b) * (1 + rng.normal(0, 0.003, ks.size))
    fit = fit_power_law(ks, noisy)
    assert abs(fit.a - a) < 0.05 and abs(fit.b - b) < 0.02
    assert 0.0005 < fit.rmse < 0.005  # the fit error reflects the noise


def test_fit_range_and_extrapolation_flags():
    a, b = -1.2, -0.3
    ks = np.arange(1, 17)
    c = np.exp(a * ks ** b)
    c[ks > 8] = 0.99  # points beyond the fit range must not move the fit
    fit = fit_power_law(ks, c, fit_max_k=8)
    assert fit.a == pytest.approx(a) and fit.b == pytest.approx(b) and fit.k_max == 8
    assert fit.extrapolates(16) is True and fit.extrapolates(8) is False and fit.extrapolates(0.5) is True
    assert fit.extrapolates(np.array([4, 9])).tolist() == [False, True]
    assert fit.predict(16) == pytest.approx(math.exp(a * 16 ** b))


def test_budget_for_inverts_the_law():
    fit = fit_power_law([1, 2, 4, 8], np.exp(-2.0 * np.array([1, 2, 4, 8]) ** -0.25))
    k = fit.budget_for(0.5)
    assert k == pytest.approx((math.log(0.5) / -2.0) ** (1 / -0.25))  # a k^b = log t
    assert fit.predict(k) == pytest.approx(0.5)
    assert fit.budget_for(1.0) == math.inf
    growing_down = fit_power_law([1, 2], [0.5, 0.4])  # b > 0: coverage that falls with k never gets there
    assert growing_down.b > 0 and growing_down.budget_for(0.6) == math.inf


def test_fit_drops_coverage_zero_and_one():
    ks = np.arange(1, 7)
    c = np.exp(-1.0 * ks ** -0.5)
    c[0], c[5] = 0.0, 1.0
    fit = fit_power_law(ks, c)
    assert fit.dropped == (1.0, 6.0) and fit.n_points == 4
    assert fit.a == pytest.approx(-1.0) and fit.b == pytest.approx(-0.5)


@pytest.mark.parametrize(("k", "c", "kw", "match"), [
    ([1, 2, 3], [0.0, 1.0, 0.5], {}, "two or more k"),
    ([1, 2, 3], [0.2, 0.3, 0.4], {"fit_max_k": 1}, "k <= 1"),
    ([1, 2], [0.2, 1.2], {}, "coverage must lie in"),
    ([0, 2], [0.2, 0.3], {}, "k must be"),
    ([1, 2], [0.2], {}, "one length"),
])
def test_fit_rejects_what_it_cannot_fit(k, c, kw, match):
    with pytest.raises(DataError, match=match):
        fit_power_law(k, c, **kw)


# ------------------------------------------------------------------------------------ the distributional fit


def zib_counts(w0: float, a: float, b: float, runs: int, n_problems: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(n_problems) < w0, 0.0, rng.beta(a, b, n_problems))
    return rng.binomial(runs, p)


def test_distribution_fit_formula():
    fit = DistributionFit(0.2, 0.5, 2.0, 1.0, 1.0, 8.0, 0, "counts")
    # E[(1 - p)^2] under Beta(0.5, 2) = b (b + 1) / ((a + b)(a + b + 1)) = 2 * 3 / (2.5 * 3.5)
    assert fit.predict(2) == pytest.approx(0.8 * (1 - 6 / 8.75))
    assert fit.predict(1e9) == pytest.approx(0.8, abs=1e-3)  # the ceiling 1 - w0
    k = fit.budget_for(0.5)
    assert fit.predict(k) == pytest.approx(0.5) and fit.predict(k * 0.99) < 0.5
    assert fit.budget_for(0.8) == math.inf and fit.extrapolates(16) and not fit.extrapolates(4)


def test_fit_pass_rates_recovers_the_distribution():
    correct = zib_counts(0.4, 0.3, 1.5, runs=16, n_problems=4000, seed=0)
    fit = fit_pass_rates(correct, 16)
    assert fit.w0 == pytest.approx(0.4, abs=0.04)
    assert fit.a == pytest.approx(0.3, rel=0.2) and fit.b == pytest.approx(1.5, rel=0.3)
    truth = DistributionFit(0.4, 0.3, 1.5, 1.0, 1.0, 16.0, 0, "counts")
    assert abs(fit.predict(64) - truth.predict(64)) < 0.01


def test_fit_pass_rates_on_the_first_runs_forecasts_the_rest():
    correct = zib_counts(0.3, 0.25, 2.0, runs=16, n_problems=3000, seed=1)
    measured = (correct > 0).mean()  # the unbiased pass@16 with 16 runs
    dist = fit_pass_rates(correct, 16, use_runs=4)
    curve = config_curve(CountMatrix(("a",), tuple(map(str, range(3000))), [correct], 16), "a")
    law = curve.fit(4)
    assert dist.k_max == 4 and dist.extrapolates(16)
    assert abs(dist.predict(16) - measured) < abs(law.predict(16) - measured) / 2


def test_fit_distribution_on_a_curve_recovers_it():
    truth = DistributionFit(0.3, 0.4, 1.2, 1.0, 1.0, 8.0, 0, "curve")
    ks = np.arange(1, 9)
    fit = fit_distribution(ks, truth.predict(ks))
    np.testing.assert_allclose(fit.predict([16, 64]), truth.predict([16, 64]), atol=2e-3)
    assert fit.n_points == 8 and fit.source == "curve"


def test_distribution_fit_rejects_what_it_cannot_fit():
    with pytest.raises(DataError, match="no run succeeded"):
        fit_pass_rates([0, 0, 0], 4)
    with pytest.raises(DataError, match="correct <= runs"):
        fit_pass_rates([5], 4)
    with pytest.raises(DataError, match="two or more"):
        fit_distribution([1, 2, 3], [0.1, 0.2, 0.3], fit_max_k=1)
    with pytest.raises(ConfigError, match="unknown fit method"):
        config_curve(small(), "good").fit(method="spline")


def test_config_curve_distribution_fit_uses_the_counts():
    fit = config_curve(small(), "good").fit(method="distribution")
    assert fit.source == "counts" and fit.to_dict()["method"] == "distribution"
    assert fit.predict(1) == pytest.approx(7 / 16, abs=0.02)


# ------------------------------------------------------------------------------------------------ the advisor


def test_advisor_target_reached_within_the_measured_curve():
    m = small()
    advice = recommend_budget(m, target=0.6, curve=config_curve(m, "good"))
    assert advice.success and advice.budget == 3 and not advice.extrapolated  # 7/12 < 0.6 <= 11/16
    assert advice.coverage == pytest.approx(11 / 16)
    assert advice.allocation == Allocation({"good": 3})  # "bad" is dominated on every problem
    default = recommend_budget(m, target=0.6)  # the learned curve: the same here
    assert default.budget == 3 and default.allocation == Allocation({"good": 3})


def test_advisor_target_beyond_the_curve_uses_the_fit():
    a, b = -1.5, -0.2
    curve = law_curve(a, b, range(1, 9))
    advice = recommend_budget(small(), target=0.45, curve=curve)
    k_star = (math.log(0.45) / a) ** (1 / b)  # 29.9...
    assert advice.budget == math.ceil(k_star) and advice.extrapolated
    assert advice.coverage == pytest.approx(math.exp(a * math.ceil(k_star) ** b))
    assert advice.allocation == Allocation({"good": math.ceil(k_star)})
    assert "extrapolated" in advice.message


def test_advisor_unreachable_target_is_a_clear_result():
    curve = law_curve(-1.5, -0.2, range(1, 9))
    advice = recommend_budget(small(), target=0.45, curve=curve, max_budget=20)
    assert not advice.success and advice.budget is None and advice.allocation is None
    assert "not reached" in advice.message and "20" in advice.message
    assert recommend_budget(small(), target=1.0, curve=curve).budget is None


def test_advisor_min_gain_stops_where_the_next_sample_gains_too_little():
    a, b = -1.5, -0.2
    f = lambda k: math.exp(a * k ** b)  # noqa: E731
    curve = law_curve(a, b, range(1, 9))
    for gain in (0.02, 0.003):
        expected = next(c for c in count(1) if f(c + 1) - f(c) < gain)
        advice = recommend_budget(small(), min_gain=gain, curve=curve)
        assert advice.budget == expected
        assert advice.extrapolated == (expected > 8)
        assert advice.coverage == pytest.approx(f(expected))


def test_advisor_min_gain_per_cost_unit():
    a, b = -1.5, -0.2
    costly = small().with_configs([SamplingConfig(name="good", cost=2.0), SamplingConfig(name="bad", cost=1.0)])
    curve = law_curve(a, b, range(1, 9), unit_cost=2.0)
    per_cost = recommend_budget(costly, min_gain=0.002, per_cost=True, curve=curve)
    per_sample = recommend_budget(costly, min_gain=0.004, curve=curve)
    assert per_cost.budget == per_sample.budget  # a sample costs 2: 0.002 per unit is 0.004 per sample
    # the allocation is learned at the same spend: budget samples of cost 2
    assert per_cost.allocation == Allocation({"good": int(per_cost.budget)})


def test_advisor_forecast_continues_from_the_last_recorded_point():
    # issue 13: past the recorded runs the advice used the law's own level, below the measured curve
    truth = DistributionFit(0.3, 0.4, 1.2, 1.0, 1.0, 8.0, 0, "curve")
    ks = np.arange(1, 9, dtype=float)
    c = truth.predict(ks) + 0.01 * (ks == 8)  # the last recorded point sits above any smooth fit
    curve = CoverageCurve(label="x", k=ks, coverage=c, band=np.c_[c, c], allocations=(), per_problem=c[:, None])
    for method in ("power-law", "distribution"):
        advice = recommend_budget(small(), min_gain=1e-4, curve=curve, method=method)
        assert advice.extrapolated and advice.coverage > c[-1]
        assert advice.fit.method == method and advice.to_dict()["method"] == method
        target = recommend_budget(small(), target=float(c[-1]) + 0.005, curve=curve, method=method)
        assert target.budget > 8 and target.coverage >= float(c[-1]) + 0.005 - 1e-9


def test_advisor_says_which_method_the_held_out_check_chose():
    truth = DistributionFit(0.3, 0.4, 1.2, 1.0, 1.0, 16.0, 0, "curve")
    ks = np.arange(1, 17, dtype=float)
    c = truth.predict(ks)
    curve = CoverageCurve(label="x", k=ks, coverage=c, band=np.c_[c, c], allocations=(), per_problem=c[:, None])
    method, errors = choose_method(curve)
    assert method == "distribution" and abs(errors["distribution"]) < abs(errors["power-law"])
    advice = recommend_budget(small(), target=0.5, curve=curve)
    assert advice.fit.method == "distribution" and "held-out check" in advice.why
    law = law_curve(-1.5, -0.2, range(1, 17))
    assert choose_method(law)[0] == "power-law"


def test_advisor_ignores_points_beyond_the_recorded_runs():
    rng = np.random.default_rng(1)
    m = CountMatrix(("a", "b"), tuple(f"p{j}" for j in range(40)), rng.binomial(9, rng.beta(0.3, 2, (2, 40))), 9)
    alloc = Allocation({"a": 7, "b": 2})
    long = allocation_curve(m, alloc, range(1, 31))
    short = allocation_curve(m, alloc, range(1, 13))  # up to 9 of a and 3 of b: within the 9 runs
    assert long.recorded.sum() == 12
    for kw in ({"min_gain": 0.002}, {"target": 0.99 * float(long.coverage.max())}):
        a = recommend_budget(m, curve=long, method="power-law", **kw)
        b = recommend_budget(m, curve=short, method="power-law", **kw)
        assert (a.budget, a.coverage) == (b.budget, b.coverage)


def test_advisor_rejects_bad_arguments():
    m = small()
    with pytest.raises(BudgetError, match="max_budget"):
        recommend_budget(m, target=0.5, max_budget=0)
    with pytest.raises(ConfigError, match="exactly one"):
        recommend_budget(m)
    with pytest.raises(ConfigError, match="exactly one"):
        recommend_budget(m, target=0.5, min_gain=0.01)
    with pytest.raises(ConfigError, match="target"):
        recommend_budget(m, target=1.5)
    with pytest.raises(BudgetError, match="min_gain"):
        recommend_budget(m, min_gain=0.0)
    with pytest.raises(ConfigError, match="unknown fit method"):
        recommend_budget(m, min_gain=0.1, method="cubic")


# ------------------------------------------------------------------------------------------------ SWE-bench


@pytest.mark.parametrize("name", ["gpt4o_0.8", "deepseek_1.6", "qwen_0.8"])
def test_swebench_fit_on_k_up_to_8_predicts_k_16(swebench_path, name):
    split = load_counts(swebench_path)
    curve = config_curve(split, name)
    fit = curve.fit(8)
    assert fit.a < 0 and fit.b < 0 and fit.rmse < 0.005
    assert fit.extrapolates(16)
    assert abs(fit.predict(16) - curve.coverage[15]) < 0.02  # within two points of coverage, 8 samples out


def test_swebench_distribution_forecast_halves_the_power_law_error(swebench_path):
    # issue 13, done when: k = 16 from k <= 8, median configuration, at most half the power law's error
    split = load_counts(swebench_path)
    rows = extrapolation_check([config_curve(split, n) for n in split.test.names], (8,), 16)
    assert len(rows) == 22
    med = {m: np.median([abs(r.error[m]) for r in rows]) for m in ("distribution", "power-law")}
    assert med["distribution"] <= med["power-law"] / 2, med
    assert all(r.error["power-law"] > 0 for r in rows)  # the law over-shoots every configuration


def test_swebench_learned_curve_extrapolates(swebench_path):
    curve = learned_curve(load_counts(swebench_path))
    assert curve.coverage[0] == pytest.approx(0.2196, abs=5e-5)  # the published pass@1
    fit = curve.fit(8)
    assert abs(fit.predict(16) - curve.coverage[15]) < 0.03


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def counts_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    matrix = CountMatrix(("a", "b", "c"), tuple(f"p{j}" for j in range(60)),
                         rng.binomial(8, rng.beta(0.4, 1.2, (3, 60))), [8, 8, 8])
    path = tmp_path / "counts.json"
    matrix.save(path)
    return path


def test_cli_single_configuration(counts_file: Path, tmp_path: Path):
    png = tmp_path / "scaling.png"
    proc = run("scaling", counts_file, "--config", "a", "--fit-max-k", "4", "--target", "0.5", "--plot", png,
               "--method", "power-law")
    assert proc.returncode == 0, proc.stderr
    fit = config_curve(load_counts(counts_file), "a").fit(4)
    assert f"a = {fit.a:.4f}, b = {fit.b:.4f}" in proc.stdout
    assert f"RMSE {fit.rmse:.4f}" in proc.stdout
    assert "extrapolation check (a): fitted on k <= 4, at k = 8" in proc.stdout
    assert "recommended budget for coverage >= 0.5" in proc.stdout and "learned allocation at C = " in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_matches_the_library(counts_file: Path, tmp_path: Path):
    alloc = tmp_path / "alloc.json"
    Allocation({"a": 2, "b": 1}).save(alloc)
    proc = run("scaling", counts_file, "--allocation", alloc, "--min-gain", "0.01", "--json", "--method", "power-law")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    data = load_counts(counts_file)
    curve = allocation_curve(data, Allocation({"a": 2, "b": 1}))
    (row,) = doc["curves"]
    assert row["k"] == curve.k.tolist() and row["coverage"] == pytest.approx(curve.coverage.tolist())
    assert row["fit"]["a"] == pytest.approx(curve.fit().a) and row["holdout"] == []
    expected = recommend_budget(data, min_gain=0.01, curve=curve, method="power-law")
    assert doc["advice"]["budget"] == expected.budget
    assert doc["advice"]["allocation"] == dict(expected.allocation)


def test_cli_auto_method_says_which_and_why(counts_file: Path):
    proc = run("scaling", counts_file, "--config", "b", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    method, errors = choose_method(config_curve(load_counts(counts_file), "b"))
    assert doc["method"] == method and doc["curves"][0]["fit"]["method"] == method
    assert "held-out check" in doc["method_chosen_because"] and doc["unit"] == "samples"
    table = run("scaling", counts_file, "--config", "b", "--method", "distribution")
    assert "forecast method: distribution (asked for)" in table.stdout
    assert "extrapolated (band: bootstrap of the fit)" in table.stdout


def test_cli_baselines_at_equal_cost(counts_file: Path, tmp_path: Path):
    # issue 13: with costs the configuration curves were in samples beside a learned curve in cost units
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([{"name": "a", "cost": 1.0}, {"name": "b", "cost": 2.0}, {"name": "c", "cost": 4}]))
    proc = run("scaling", counts_file, "--configs", configs, "--budgets", "2,4,8", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["unit"] == "cost units"
    by_label = {c["label"]: c for c in doc["curves"]}
    assert {c["unit"] for c in by_label.values()} == {"cost units"}
    assert all(c["k"] == [2, 4, 8] for c in by_label.values())
    data = load_counts(counts_file)
    c_two = expected_pass(data, Allocation({"c": 2})).value  # 8 cost units buy 2 samples of c
    assert by_label["c"]["coverage"][2] == pytest.approx(c_two)
    assert by_label["c"]["coverage"][0] == 0.0  # 2 cost units buy none


def test_cli_every_configuration_and_the_learned_curve(counts_file: Path):
    proc = run("scaling", counts_file, "--budgets", "1-6", "--fit-max-k", "3")
    assert proc.returncode == 0, proc.stderr
    for label in ("osca (learned)", "a", "b", "c"):
        assert f"│ {label} " in proc.stdout
    assert "give --target or --min-gain" in proc.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (("--config", "a", "--allocation", "{alloc}"), "not both"),
    (("--config", "zz"), "unknown configuration 'zz'"),
    (("--config", "a", "--target", "0.5", "--max-budget", "0"), "max_budget must be > 0"),
    (("--config", "a", "--target", "0.5", "--min-gain", "0.1"), "exactly one"),
    (("--config", "a", "--budgets", "0-3"), "budgets must be > 0"),
    (("--config", "a", "--method", "spline"), "--method must be"),
])
def test_cli_bad_input_is_one_line_and_exit_2(counts_file: Path, tmp_path: Path, args, needle):
    alloc = tmp_path / "alloc.json"
    Allocation({"a": 1}).save(alloc)
    proc = run("scaling", counts_file, *(a.format(alloc=alloc) for a in args))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


def test_cli_on_the_release(swebench_path: Path):
    proc = run("scaling", swebench_path, "--config", "gpt4o_0.8", "--fit-max-k", "8")
    assert proc.returncode == 0, proc.stderr
    assert "in-sample" in proc.stdout and "extrapolation check (gpt4o_0.8): fitted on k <= 8, at k = 16" in proc.stdout


def test_scaling_stays_light():
    code = ("import sys, osca.scaling, osca.selectors; "
            "print(','.join(m for m in ('litellm', 'langgraph', 'docker', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
