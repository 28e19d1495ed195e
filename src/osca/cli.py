"""The `osca` command line: learn allocations and compare them with baselines.

Bad input ends with a one-line `error: ...` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .allocation import Allocation
from .configs import SamplingConfig
from .counts import CountMatrix, CountSplit, load_counts, read_json
from .exceptions import BudgetError, DataError, OscaError

__all__ = ["app", "main"]

app = typer.Typer(help="Learn how to split an LLM sample budget across sampling configurations (OSCA).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

CountsArg = Annotated[Path, typer.Argument(help="Count file: the OSCA release format or osca.counts/v1 JSON.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for every random choice (splits, restarts).")]
ConfigsOpt = Annotated[Path | None, typer.Option(
    "--configs", help="JSON list of sampling configurations (name, model, cost, ...) to attach by name.")]


def parse_budgets(text: str) -> list[int]:
    """`1-16` (a range) or `2,4,8` (a list) -> budgets; anything else, or a budget <= 0, is an error."""
    text = text.strip()
    if m := re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", text):
        lo, hi = int(m[1]), int(m[2])
        budgets = list(range(lo, hi + 1))
    elif re.fullmatch(r"-?\d+(\s*,\s*-?\d+)*", text):
        budgets = [int(b) for b in text.split(",")]
    else:
        raise BudgetError(f"--budgets must be a range like 1-16 or a list like 2,4,8, got {text!r}")
    if not budgets or min(budgets) <= 0:
        raise BudgetError(f"budgets must be > 0, got {text!r}")
    return budgets


def _load(path: Path, configs: Path | None) -> CountSplit | CountMatrix:
    data = load_counts(path)
    if configs is None:
        return data
    raw = read_json(configs)
    if not isinstance(raw, list):
        raise DataError(f"{configs}: expected a JSON list of configurations")
    try:
        richer = [SamplingConfig.model_validate(c) for c in raw]
    except ValueError as e:
        raise DataError(f"{configs}: {str(e).splitlines()[0]}") from None
    if isinstance(data, CountSplit):
        return CountSplit(data.train.with_configs(richer), data.test.with_configs(richer))
    return data.with_configs(richer)


@app.command()
def learn(
    counts: CountsArg,
    budget: Annotated[float, typer.Option(help="Samples per problem C (cost units when configs have costs).")],
    seed: SeedOpt = 0,
    method: Annotated[str, typer.Option(
        help="frank_wolfe (default), greedy_swap, or hill_climbing (the paper's).")] = "frank_wolfe",
    configs: ConfigsOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the allocation JSON here.")] = None,
) -> None:
    """Learn an allocation on the training part of COUNTS."""
    from .learn import learn_allocation

    data = _load(counts, configs)
    train = data.train if isinstance(data, CountSplit) else data
    res = learn_allocation(train, int(budget) if float(budget).is_integer() else budget, seed=seed, method=method)
    table = Table(title=f"osca allocation, budget {res.to_dict()['budget']} ({train.n_problems} training problems)")
    table.add_column("configuration")
    table.add_column("samples", justify="right")
    for name, k in sorted(res.allocation.items(), key=lambda kv: -kv[1]):
        table.add_row(name, str(k))
    out.print(table)
    out.print(f"train objective {res.objective:.4f}   certified upper bound {res.upper_bound:.4f}   "
              f"gap <= {res.gap:.2e}")
    if output is not None:
        res.save(output)
        out.print(f"wrote {output}")


def _fmt_alloc(a: Allocation) -> str:
    return " ".join(f"{n}x{k}" for n, k in sorted(a.items(), key=lambda kv: (-kv[1], kv[0])))


@app.command()
def curve(
    counts: CountsArg,
    budgets: Annotated[str, typer.Option(help="A range (1-16) or a list (2,4,8).")] = "1-16",
    default: Annotated[str | None, typer.Option(help="The configuration used without osca.")] = None,
    split: Annotated[str, typer.Option(
        help="'given' (the file's train/test parts) or a training FRACTION of a seeded random split.")] = "given",
    repeats: Annotated[int, typer.Option(help="Random splits to average (seeds seed, seed+1, ...).")] = 1,
    seed: SeedOpt = 0,
    configs: ConfigsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the curves here.")] = None,
    train_sizes: Annotated[str | None, typer.Option(
        help="Training problems to try, e.g. 30,60,90: the held-out gain against the training size (--repeats "
             "random splits each; --plot draws it).")] = None,
) -> None:
    """Compare the learned allocation with default pure, optimal pure and uniform at each budget."""
    from .evaluate import curve as compute_curve

    wanted = parse_budgets(budgets)
    data = _load(counts, configs)
    if repeats < 1:
        raise DataError(f"--repeats must be >= 1, got {repeats}")
    if train_sizes is not None:
        _curve_train_sizes(counts, data, train_sizes, wanted, repeats=repeats, default=default, seed=seed,
                           as_json=as_json, plot=plot)
        return
    if split == "given":
        if not isinstance(data, CountSplit):
            raise DataError(f"{counts}: has no train/test parts; use --split FRACTION")
        splits = [data]
        protocol = "in-sample (test = train), as released" if data.in_sample else "the file's train/test parts"
    else:
        try:
            fraction = float(split)
        except ValueError:
            raise DataError(f"--split must be 'given' or a fraction in (0, 1), got {split!r}") from None
        pool = data.pool() if isinstance(data, CountSplit) else data
        splits = [pool.split(fraction, seed + r) for r in range(repeats)]
        protocol = (f"seeded random split, {fraction:.0%} train / {1 - fraction:.0%} test, "
                    f"averaged over {repeats} seed{'s' * (repeats > 1)}")
    with _learning_bar(as_json) as bar:
        task = bar.add_task("", total=len(wanted) * len(splits))
        rows = compute_curve(splits, wanted, default=default, seed=seed, on_step=lambda: bar.advance(task))
    if as_json:
        print(json.dumps({"protocol": protocol, "unit": rows[0].unit, "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        _print_curve(rows, protocol, default, splits[0].test.n_problems)
        if len(splits) > 1:
            _print_verdicts(rows, default)
    if plot is not None:
        from .plot import plot_curve

        plot_curve(rows, plot, title=f"{counts.name}: {protocol}", default=default)
        if not as_json:
            out.print(f"wrote {plot}")


def _versus(p) -> str:
    return f"{p.diff:+.4f} ± {p.se:.4f} ({p.wins}/{p.ties}/{p.losses})"


def _compared(p, baseline: str) -> str:
    """'better than X', 'worse than X' or 'indistinguishable from X'."""
    return f"{p.verdict} {'from' if p.verdict == 'indistinguishable' else 'than'} {baseline}"


def _print_verdicts(rows, default: str | None) -> None:
    """Paired held-out differences per budget and a one-line verdict each (issue 13)."""
    table = Table(title="held-out paired differences, osca minus baseline: mean ± Nadeau-Bengio corrected SE "
                  "(wins/ties/losses over splits)", title_justify="left")
    for col in ["C", "vs optimal pure", f"vs default ({default})" if default else None]:
        if col is not None:
            table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.budget), _versus(r.versus_optimal_pure),
                      *([_versus(r.versus_default)] if default else []))
    out.print(table)
    for r in rows:
        said = [_compared(r.versus_optimal_pure, "optimal pure")]
        if default:
            said.append(_compared(r.versus_default, f"the default {default}"))
        out.print(f"C = {r.budget}: the learned mix is {' and '.join(said)} on held-out problems "
                  "(95% t test, Nadeau-Bengio corrected)")


def _curve_train_sizes(counts: Path, data, text: str, budgets: list[int], *, repeats: int, default: str | None,
                       seed: int, as_json: bool, plot: Path | None) -> None:
    """`osca curve --train-sizes`: the held-out gain against the number of training problems."""
    from .evaluate import train_sizes as compute_train_sizes

    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        raise DataError(f"--train-sizes must be a list of whole numbers like 30,60,90, got {text!r}") from None
    if repeats < 2:
        raise DataError("--train-sizes needs --repeats >= 2 (the standard error comes from repeated splits)")
    pool = data.pool() if isinstance(data, CountSplit) else data
    with _learning_bar(as_json) as bar:
        task = bar.add_task("", total=len(sizes) * len(budgets) * repeats)
        rows = compute_train_sizes(pool, sizes, budgets, repeats=repeats, default=default, seed=seed,
                                   on_step=lambda: bar.advance(task))
    protocol = f"{repeats} seeded random splits per training size, the rest of {pool.n_problems} problems as test"
    if as_json:
        print(json.dumps({"protocol": protocol, "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        table = Table(title=f"held-out gain by training size ({protocol}); mean ± Nadeau-Bengio SE (W/T/L)",
                      title_justify="left")
        for col in ["train", "C", "osca", "vs optimal pure", f"vs default ({default})" if default else None]:
            if col is not None:
                table.add_column(col, justify="right")
        for r in rows:
            table.add_row(str(r.n_train), str(r.row.budget), f"{r.row.osca_test:.4f}",
                          f"{_versus(r.row.versus_optimal_pure)} {r.row.versus_optimal_pure.verdict}",
                          *([f"{_versus(r.row.versus_default)} {r.row.versus_default.verdict}"] if default else []))
        out.print(table)
    if plot is not None:
        from .plot import plot_train_sizes

        plot_train_sizes(rows, plot, title=f"{counts.name}: held-out gain by training size", default=default)
        if not as_json:
            out.print(f"wrote {plot}")


def _print_curve(rows, protocol: str, default: str | None, n_test: int) -> None:
    table = Table(title=f"expected pass@C on {n_test} test problems, {protocol}; C in {rows[0].unit}, "
                  "every baseline at the same cost", title_justify="left")
    for col in ["C", f"default ({default})" if default else None, "optimal pure", "uniform", "osca",
                "osca 95% CI", "train", "gap", "osca allocation"]:
        if col is not None:
            table.add_column(col, justify="left" if col in ("optimal pure", "osca allocation") else "right")
    for r in rows:
        cells = [str(r.budget)]
        if default:
            cells.append(f"{r.default_test:.4f}")
        cells += [f"{r.optimal_pure_test:.4f} {r.optimal_pure_config}", f"{r.uniform_test:.4f}",
                  f"[bold]{r.osca_test:.4f}[/bold]", f"{r.osca_ci[0]:.3f}-{r.osca_ci[1]:.3f}",
                  f"{r.osca_train:.4f}", f"{r.gap:.1e}", _fmt_alloc(r.allocation)]
        table.add_row(*cells)
    out.print(table)
    flagged = sorted({n for r in rows for n in r.extrapolated})
    if flagged:
        out.print(f"[yellow]note:[/yellow] some allocations exceed the recorded runs of {', '.join(flagged)}; "
                  "those estimates are held at the recorded runs (the unbiased estimate stops there)")


@app.command()
def verify(
    solution: Annotated[Path, typer.Option(help="The candidate's source; tests import it as `solution`.")],
    tests: Annotated[Path, typer.Option(help="pytest tests for it.")],
    timeout: Annotated[float, typer.Option(help="Seconds per test.")] = 10.0,
    wall_clock: Annotated[float | None, typer.Option(
        help="Seconds for the whole run [default: 5 + timeout x (number of tests + 1)].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {status, tests} as JSON.")] = False,
) -> None:
    """Run TESTS against SOLUTION in a hardened sandbox container; exit code 0 only when it passed."""
    from .verifiers import UnitTestVerifier, printable

    texts = []
    for path in (solution, tests):
        try:
            texts.append(path.read_text())
        except OSError as e:
            raise DataError(f"{path}: {e.strerror.lower() if e.strerror else e}") from None
    verdict = UnitTestVerifier(texts[1], timeout=timeout, wall_clock=wall_clock).verify(texts[0])
    if as_json:
        print(json.dumps({"status": verdict.status.value, "tests": verdict.tests}))
    else:
        colour = "green" if verdict.passed else "red"
        out.print(f"[{colour}]{verdict.status.value}[/{colour}] ({verdict.n_passed}/{len(verdict.tests)} tests "
                  f"passed, {verdict.duration:.1f}s)")
        for test_id, outcome in verdict.tests.items():
            out.print(printable(f"  {outcome:8} {test_id}"), markup=False, highlight=False)
        if not verdict.passed:
            out.print(verdict.detail, markup=False, highlight=False)
    raise typer.Exit(0 if verdict.passed else 1)


@app.command()
def estimate(
    spec: Annotated[str, typer.Argument(help="module:name or file.py:name of an osca.estimate.EstimationSpec.")],
    run_dir: Annotated[Path, typer.Option(help="Progress lives here; a re-run resumes.")] = Path("runs/estimate"),
    c0: Annotated[int | None, typer.Option(help="Samples per problem and configuration (default: the spec's).")]
    = None,
    concurrency: Annotated[int, typer.Option(help="Graph runs in flight at once.")] = 4,
    seed: SeedOpt = 0,
) -> None:
    """Estimate the count matrix of SPEC's step: C0 samples per (problem, configuration), verified."""
    from .estimate import estimate as run_estimate
    from .estimate import load_spec

    s = load_spec(spec)
    matrix = run_estimate(s.graph, s.step, s.problems, s.configs, verify=s.verify, c0=c0 or s.c0,
                          run_dir=run_dir, concurrency=concurrency, seed=seed, progress=err.is_terminal)
    table = Table(title=f"correct samples at {s.step!r} ({matrix.n_problems} problems)")
    table.add_column("configuration")
    table.add_column("correct / runs", justify="right")
    table.add_column("mean pass@1", justify="right")
    for i, name in enumerate(matrix.names):
        table.add_row(name, f"{int(matrix.correct[i].sum())} / {int(matrix.runs[i].sum())}",
                      f"{matrix.rates[i].mean():.3f}")
    out.print(table)
    out.print(f"wrote {run_dir / 'counts.json'} (use it with `osca learn` / `osca curve`)")


# --- osca scaling: coverage curves, their power-law fit, and a budget advisor (issue 7) -----------------------


@app.command()
def scaling(
    counts: CountsArg,
    config: Annotated[str | None, typer.Option(help="Fit this configuration's coverage curve.")] = None,
    allocation: Annotated[Path | None, typer.Option(
        help="Fit this allocation file's mix, scaled to k samples (default: every configuration and osca's "
             "learned allocation).")] = None,
    target: Annotated[float | None, typer.Option(help="Recommend the smallest budget reaching this coverage.")]
    = None,
    min_gain: Annotated[float | None, typer.Option(
        help="Recommend the budget where one more sample (cost unit with --per-cost) adds less coverage.")] = None,
    per_cost: Annotated[bool, typer.Option("--per-cost", help="--min-gain is per cost unit (costs: --configs).")]
    = False,
    fit_max_k: Annotated[float | None, typer.Option(
        help="Fit on k <= this only; the larger measured k check the extrapolation (the advice uses them all).")]
    = None,
    method: Annotated[str, typer.Option(
        help="Forecast with 'distribution' (per-problem pass rates), 'power-law', or 'auto': the one the first "
             "curve's held-out check favours.")] = "auto",
    budgets: Annotated[str | None, typer.Option(
        help="k to measure: a range (1-16) or a list (1,2,4,8); default: every k the recorded runs allow.")] = None,
    max_budget: Annotated[int, typer.Option(help="The largest budget the advisor may recommend.")] = 1024,
    seed: SeedOpt = 0,
    configs: ConfigsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print curves, fits and advice as JSON.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of measured vs fitted curves here.")] = None,
) -> None:
    """Fit coverage curves (pass-rate distribution or power law), check the extrapolation, recommend a budget."""
    from .scaling import FIT_METHODS, allocation_curve, choose_method, config_curve, learned_curve, recommend_budget

    if config is not None and allocation is not None:
        raise DataError("give --config or --allocation, not both")
    if method not in (*FIT_METHODS, "auto"):
        raise DataError(f"--method must be auto, distribution or power-law, got {method!r}")
    data = _load(counts, configs)
    ks = parse_budgets(budgets) if budgets is not None else None
    test = data.test if isinstance(data, CountSplit) else data
    if config is not None:
        curves = [config_curve(data, config, ks, seed=seed)]
    elif allocation is not None:
        curves = [allocation_curve(data, Allocation.load(allocation), ks, seed=seed)]
    else:
        with _learning_bar(as_json) as bar:
            task = bar.add_task("", total=len(ks) if ks else int(test.runs.max()))
            curves = [learned_curve(data, ks, seed=seed, on_step=lambda: bar.advance(task))]
        # every configuration at the learned curve's budgets: in cost units too when configurations have costs
        curves += sorted((config_curve(data, n, curves[0].k, per_cost=True, seed=seed) for n in test.names),
                         key=lambda c: -c.coverage[-1])
    why = "asked for"
    if method == "auto":
        method, errors = choose_method(curves[0], fit_max_k)
        why = (f"the held-out check on {curves[0].label} favours it (fit on the first half of the recorded k, "
               "error at the last: " + ", ".join(f"{m} {e:+.4f}" for m, e in errors.items()) + ")")
    fits = [curves[0].fit(fit_max_k, method)] + [_fit_or_reason(c, fit_max_k, method) for c in curves[1:]]
    advice = None
    if target is not None or min_gain is not None:  # advice uses every measured k; --fit-max-k only checks the law
        advice = recommend_budget(data, target=target, min_gain=min_gain, per_cost=per_cost, curve=curves[0],
                                  method=method, max_budget=max_budget, seed=seed)
    where = f"{test.n_problems} problems"
    if isinstance(data, CountSplit):
        where += ", in-sample (test = train), as released" if data.in_sample else ", the file's test part"
    if as_json:
        rows = [{**c.to_dict(), "fit": f.to_dict(), "holdout": _holdout(c, f)} if not isinstance(f, str)
                else {**c.to_dict(), "fit": None, "no_fit": f} for c, f in zip(curves, fits)]
        print(json.dumps({"problems": where, "unit": curves[0].unit, "method": method, "method_chosen_because": why,
                          "curves": rows, "advice": None if advice is None else advice.to_dict()}, indent=2))
    else:
        out.print(f"forecast method: [bold]{method}[/bold] ({why})")
        if len(curves) == 1:
            _print_scaling_curve(curves[0], fits[0], where, seed=seed)
        else:
            _print_scaling_table(curves, fits, where)
    if not as_json:
        _print_advice(advice)
    if plot is not None:
        from .plot import plot_scaling

        shown = [(c, f) for c, f in zip(curves, fits) if not isinstance(f, str)][:4]
        last = float(shown[0][0].k[-1])
        reach = [2 * last] + ([advice.budget] if advice is not None and advice.budget else [])
        plot_scaling(shown, plot, title=f"{counts.name}: coverage, {where}", k_max=max(reach))
        if not as_json:
            out.print(f"wrote {plot}")


def _learning_bar(as_json: bool) -> Progress:
    """A progress bar on stderr while allocations are learned (none for --json or when not a terminal)."""
    return Progress(TextColumn("learning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=True, disable=as_json or not err.is_terminal)


def _fit_or_reason(curve, fit_max_k: float | None, method: str):
    """The curve's fit, or why it has none (a configuration that never, or always, succeeds): one table row."""
    try:
        return curve.fit(fit_max_k, method)
    except DataError as e:
        return str(e)


def _holdout(curve, fit) -> list[dict]:
    """Measured points beyond the fit range: predicted vs measured coverage."""
    return [{"k": float(k), "measured": float(c), "predicted": fit.predict(k), "error": fit.predict(k) - float(c)}
            for k, c, recorded in zip(curve.k, curve.coverage, curve.measured) if recorded and fit.extrapolates(k)]


def _fit_line(label: str, fit) -> str:
    if fit.method == "distribution":
        return f"fit ({label}): [bold]{fit.describe()}[/bold]"
    return (f"fit ({label}): log c(k) = a * k^b with [bold]a = {fit.a:.4f}, b = {fit.b:.4f}[/bold] over "
            f"k = {fit.k_min:g}..{fit.k_max:g} ({fit.n_points} points); fit error: RMSE {fit.rmse:.4f} in coverage "
            f"(max {fit.max_error:.4f}), {fit.rmse_log:.4f} in log c"
            + (f"; dropped k = {', '.join(f'{k:g}' for k in fit.dropped)} (coverage 0 or 1)" if fit.dropped else ""))


def _print_scaling_curve(curve, fit, where: str, *, seed: int) -> None:
    from .scaling import forecast_band

    table = Table(title=f"coverage of {curve.label} on {where} (k in {curve.unit})", title_justify="left")
    for col in ["k", "measured", f"{curve.level:.0%} band", "fitted", "fitted - measured", ""]:
        table.add_column(col, justify="left" if col == "" else "right")
    for k, c, (lo, hi), recorded in zip(curve.k, curve.coverage, curve.band, curve.measured):
        p = fit.predict(k)
        note = "extrapolated" if fit.extrapolates(k) else ""
        if not recorded:
            note = "beyond the recorded runs: held there"
        table.add_row(f"{k:g}", f"{c:.4f}", f"{lo:.3f}-{hi:.3f}", f"{p:.4f}", f"{p - c:+.4f}",
                      f"[yellow]{note}[/yellow]" if note else "")
    last = float(curve.k[-1])
    ahead = [2 * last, 4 * last, 8 * last]
    band = forecast_band(curve, ahead, method=fit.method, fit_max_k=fit.k_max, n_boot=100, seed=seed)
    for k, (lo, hi) in zip(ahead, band):
        table.add_row(f"{k:g}", "-", f"{lo:.3f}-{hi:.3f}", f"{fit.predict(k):.4f}", "-",
                      "[yellow]extrapolated (band: bootstrap of the fit)[/yellow]")
    out.print(table)
    out.print(_fit_line(curve.label, fit))
    _print_holdout(curve, fit)


def _print_holdout(curve, fit) -> None:
    rows = _holdout(curve, fit)
    if rows:
        worst = max(rows, key=lambda r: abs(r["error"]))
        r = rows[-1]
        out.print(f"extrapolation check ({curve.label}): fitted on k <= {fit.k_max:g}, at k = {r['k']:g} "
                  f"predicted {r['predicted']:.4f} vs measured {r['measured']:.4f} (error [bold]{r['error']:+.4f}"
                  f"[/bold]); largest |error| beyond the fit {abs(worst['error']):.4f} at k = {worst['k']:g}")
    if curve.extrapolated:
        out.print(f"[yellow]note:[/yellow] some k exceed the recorded runs of {', '.join(curve.extrapolated)}; "
                  "those points are held at the recorded runs (never a drop), and the fits and advice ignore them")


def _print_scaling_table(curves, fits, where: str) -> None:
    title = f"{fits[0].method} fit per curve, {where}; k in {curves[0].unit}, every curve at the same budgets"
    table = Table(title=title, title_justify="left")
    for col in ["curve", "fit", "fit k", "last k", "measured", "fitted", "error", "at 2 x last k"]:
        table.add_column(col, justify="left" if col in ("curve", "fit") else "right")
    for c, f in zip(curves, fits):
        name = f"[bold]{c.label}[/bold]" if c is curves[0] else c.label
        last = float(c.k[c.measured][-1])
        measured = float(c.coverage[c.measured][-1])
        if isinstance(f, str):
            table.add_row(name, f"no fit: {f}", "-", f"{last:g}", f"{measured:.4f}", "-", "-", "-")
            continue
        p = f.predict(last)
        params = f"a={f.a:.4f} b={f.b:.4f}" if f.method == "power-law" else f"w0={f.w0:.3f} a={f.a:.3f} b={f.b:.3f}"
        table.add_row(name, params, f"{f.k_min:g}-{f.k_max:g}", f"{last:g}", f"{measured:.4f}",
                      f"{p:.4f}" + ("*" if f.extrapolates(last) else ""), f"{p - measured:+.4f}",
                      f"{f.predict(2 * last):.4f}*")
    out.print(table)
    out.print("* extrapolated: beyond the k the law was fitted on")
    out.print(_fit_line(curves[0].label, fits[0]))
    _print_holdout(curves[0], fits[0])


def _print_advice(advice) -> None:
    if advice is None:
        out.print("(give --target or --min-gain for a budget recommendation)")
        return
    if not advice.success:
        out.print(f"[red]no budget[/red] reaches {advice.criterion}: {advice.message}")
        return
    colour = "yellow" if advice.extrapolated else "green"
    out.print(f"recommended budget for {advice.criterion}: [bold]C = {advice.budget:g}[/bold] {advice.curve.unit}, "
              f"coverage {advice.coverage:.4f}; [{colour}]{advice.message}[/{colour}]")
    out.print(f"learned allocation at C = {advice.budget:g}: {_fmt_alloc(advice.allocation)}")


def main() -> None:
    """Console entry point: osca's own errors become one line and exit code 2."""
    try:
        app()
    except OscaError as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


sandbox_app = typer.Typer(help="The Docker sandbox that runs candidate code: build its image, remove leftovers.",
                          no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("build")
def sandbox_build(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image is already there.")] = False,
) -> None:
    """Build the sandbox image offline (debootstrap + docker import; needs root) and print its tag."""
    from .sandbox import build_image

    with err.status("building the sandbox image", spinner="dots") as status:
        seen: set[tuple[str, ...]] = set()

        def progress(message: str) -> None:
            status.update(message)
            key = tuple(message.split()[:2])  # off a terminal: one line per phase, not per package
            if not err.is_terminal and key not in seen:
                seen.add(key)
                err.print(message, markup=False, highlight=False)

        tag = build_image(force=force, progress=progress)
    out.print(tag, markup=False, highlight=False)


@sandbox_app.command("prune")
def sandbox_prune() -> None:
    """Remove sandbox containers whose owner process is gone (killed before it could clean up)."""
    from .sandbox import docker_client
    from .sandbox.container import reap_orphans

    client = docker_client()
    try:
        removed = reap_orphans(client)
    finally:
        client.close()
    for name in removed:
        out.print(name, markup=False, highlight=False)
    err.print(f"removed {len(removed)} container(s) of dead owners", markup=False, highlight=False)


def _add_agentless() -> None:
    """`osca agentless ...` comes from agents/agentless (installed as `osca.agents`, see hatch_build.py)."""
    from osca.agents.agentless.cli import app as agentless_app

    app.add_typer(agentless_app, name="agentless")


_add_agentless()
