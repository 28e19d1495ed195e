"""Estimating the count matrix OSCA learns from: C0 samples per (problem, configuration) at one step of a graph.

For each training problem and configuration h, the chosen node draws its LiteLLM calls from h alone (one
sample, seeded by the sample index; the other nodes run as they are), the graph runs to the end, and `verify`
judges the outcome. Every finished sample is appended to `<run_dir>/samples.jsonl` (flushed and fsynced), so a
crash or Ctrl-C loses nothing and a re-run does only what is missing. The result is a `CountMatrix` (runs =
samples that finished without error), also written to `<run_dir>/counts.json` for `osca learn` / `osca curve`.

    counts = estimate(graph, "write_code", problems, configs, verify=passes_tests, c0=8, run_dir="runs/est")
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .allocation import Allocation
from .configs import SamplingConfig
from .counts import CountMatrix
from .exceptions import BudgetError, ConfigError, DataError

__all__ = ["EstimationSpec", "Problem", "StepReport", "aestimate", "estimate", "learn_steps", "load_spec"]


@dataclass(frozen=True)
class Problem:
    """A training problem: an id and the graph's input state (anything else `verify` needs goes in `data`)."""

    id: str
    input: dict[str, Any]
    data: Any = None


Verify = Callable[[Problem, dict[str, Any]], bool | Awaitable[bool]]


@dataclass(frozen=True)
class EstimationSpec:
    """Everything `osca estimate SPEC` needs; SPEC names a Python object (or a function returning one)."""

    graph: Any
    step: str
    problems: Sequence[Problem]
    configs: Sequence[SamplingConfig]
    verify: Verify
    c0: int = 8


def load_spec(target: str) -> EstimationSpec:
    """`package.module:name` or `path/to/file.py:name` -> the `EstimationSpec` it holds or returns."""
    import importlib
    import importlib.util

    where, _, name = target.rpartition(":")
    if not where or not name:
        raise ConfigError(f"SPEC must look like module:name or file.py:name, got {target!r}")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"{where}: no such file")
            loader = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ImportError as e:
        raise ConfigError(f"cannot import {where!r}: {e}") from None
    obj = getattr(module, name, None)
    if obj is None:
        raise ConfigError(f"{where!r} has no {name!r}")
    spec = obj() if callable(obj) and not isinstance(obj, EstimationSpec) else obj
    if not isinstance(spec, EstimationSpec):
        raise ConfigError(f"{target} is not an EstimationSpec (got {type(spec).__name__})")
    return spec


def _done(log: Path) -> dict[tuple[str, str, int], bool]:
    """Finished samples from the log. A torn last line (a crash mid-write) is cut off, so that the next record
    starts on a line of its own."""
    done: dict[tuple[str, str, int], bool] = {}
    if not log.exists():
        return done
    data = log.read_bytes()
    if data and not data.endswith(b"\n"):
        with log.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("error") is None:
            done[(rec["problem"], rec["config"], int(rec["sample"]))] = bool(rec["correct"])
    return done


async def aestimate(graph: Any, step: str, problems: Sequence[Problem], configs: Sequence[SamplingConfig], *,
                    verify: Verify, c0: int, run_dir: str | Path, concurrency: int = 4, seed: int = 0,
                    progress: bool = True, fixed: Mapping[str, Any] | None = None) -> CountMatrix:
    """Async twin of `estimate` (see the module docstring)."""
    from .langgraph import instrument
    from .sampler import AllocatedSampler

    if c0 < 1:
        raise BudgetError(f"c0 (samples per problem and configuration) must be >= 1, got {c0}")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError("problem ids are not unique")
    if not configs:
        raise ConfigError("no sampling configurations to estimate")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    log = run / "samples.jsonl"
    done = _done(log)
    todo = [(p, c, k) for p in problems for c in configs for k in range(c0) if (p.id, c.name, k) not in done]
    limit = asyncio.Semaphore(concurrency)
    lock = asyncio.Lock()
    compiled = graph.compile() if hasattr(graph, "add_node") else graph
    if step not in getattr(compiled, "nodes", {step}):
        raise ConfigError(f"no node named {step!r} in the graph")
    others = {name: s for name, s in (fixed or {}).items() if name != step}

    async def one(problem: Problem, config: SamplingConfig, k: int) -> None:
        sampler = AllocatedSampler(configs, Allocation({config.name: 1}), seed=seed + k,
                                   call_site=f"{step}/{problem.id}/{k}")
        record: dict[str, Any] = {"problem": problem.id, "config": config.name, "sample": k}
        async with limit:
            try:
                final = await instrument(compiled, {**others, step: sampler}).ainvoke(problem.input)
                verdict = verify(problem, final)
                record.update(correct=bool(await verdict if inspect.isawaitable(verdict) else verdict), error=None)
            except Exception as e:  # recorded, retried by the next run; never counted as correct
                record.update(correct=False, error=f"{type(e).__name__}: {e}")
        async with lock:
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            if record["error"] is None:
                done[(problem.id, config.name, k)] = record["correct"]
            bar_advance()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"estimating {step}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress) as bar:
        task = bar.add_task("", total=len(problems) * len(configs) * c0, completed=len(done))

        def bar_advance() -> None:
            bar.advance(task)

        await asyncio.gather(*(one(*t) for t in todo))

    correct = np.zeros((len(configs), len(problems)), dtype=np.int64)
    runs = np.zeros_like(correct)
    where = {p.id: j for j, p in enumerate(problems)}
    rows = {c.name: i for i, c in enumerate(configs)}
    for (pid, name, k), ok in done.items():
        if pid in where and name in rows and k < c0:
            runs[rows[name], where[pid]] += 1
            correct[rows[name], where[pid]] += ok
    if (runs == 0).any():
        i, j = map(int, np.argwhere(runs == 0)[0])
        raise DataError(f"no finished sample for configuration {configs[i].name!r} on problem {ids[j]!r} "
                        f"(see the errors in {log}); re-run to retry them")
    matrix = CountMatrix(tuple(configs), tuple(ids), correct, runs)
    matrix.save(run / "counts.json")
    return matrix


def estimate(graph: Any, step: str, problems: Sequence[Problem], configs: Sequence[SamplingConfig], *,
             verify: Verify, c0: int, run_dir: str | Path, concurrency: int = 4, seed: int = 0,
             progress: bool = True, fixed: Mapping[str, Any] | None = None) -> CountMatrix:
    """Draw `c0` samples per (problem, configuration) at node `step` of `graph`, judge each run of the graph
    with `verify(problem, final_state)`, and return the counts (resumable through `run_dir`).

    Args:
        graph: a LangGraph `StateGraph` builder or compiled graph.
        step: the node whose LiteLLM calls are sampled from each configuration in turn.
        problems: training problems (id + input state).
        configs: the sampling configurations to estimate.
        verify: True when the final state solves the problem (sync or async).
        c0: samples per (problem, configuration).
        run_dir: where progress is kept; a re-run resumes from it.
        concurrency: graph runs in flight at once.
        seed: sample k of a configuration is requested with seed + k.
        fixed: node -> sampler for other steps (e.g. their learned allocations); the rest run as they are.
    """
    return asyncio.run(aestimate(graph, step, problems, configs, verify=verify, c0=c0, run_dir=run_dir,
                                 concurrency=concurrency, seed=seed, progress=progress, fixed=fixed))


@dataclass(frozen=True)
class StepReport:
    """What per-step learning found for one node."""

    step: str
    counts: CountMatrix
    """C0 samples per (problem, configuration) at this step, earlier steps at their learned allocations."""
    learned: Any
    """The `AllocationResult` on the training part."""
    row: Any
    """The `CurveRow` on the test part: default pure, optimal pure, uniform and the learned allocation."""
    sampler: Any
    """The `AllocatedSampler` this step uses from now on."""


def learn_steps(graph: Any, steps: Mapping[str, Sequence[SamplingConfig]], problems: Sequence[Problem], *,
                verify: Verify, c0: int, budget: int | Mapping[str, int], run_dir: str | Path,
                train_fraction: float = 0.5, default: Mapping[str, str] | None = None, seed: int = 0,
                concurrency: int = 4, progress: bool = True,
                make_sampler: Callable[[str, Sequence[SamplingConfig], Allocation], Any] | None = None,
                ) -> list[StepReport]:
    """Learn an allocation for each step of a multi-step graph, coordinate-wise in the given (graph) order.

    Step by step: estimate the step's counts with the steps already learned running their learned samplers and
    the later ones as they are, split the problems (seeded), learn the step's allocation on the training part
    and judge it on the test part against default pure, optimal pure and uniform.

    Args:
        steps: node -> its sampling configurations, in graph order.
        budget: samples per call at every step, or per step.
        default: node -> the configuration used without osca (for the "default pure" baseline).
        make_sampler: builds a step's sampler from its learned allocation (default: an `AllocatedSampler`
            with the default selector; pass one with a step-local verifier where there is one).
    """
    from .evaluate import curve
    from .learn import learn_allocation
    from .sampler import AllocatedSampler

    budgets = {s: budget for s in steps} if isinstance(budget, int) else dict(budget)
    build = make_sampler or (lambda step, configs, alloc: AllocatedSampler(configs, alloc, seed=seed))
    fixed: dict[str, Any] = {}
    reports = []
    for step, configs in steps.items():
        counts = estimate(graph, step, problems, configs, verify=verify, c0=c0, run_dir=Path(run_dir) / step,
                          concurrency=concurrency, seed=seed, progress=progress, fixed=fixed)
        split = counts.split(train_fraction, seed)
        learned = learn_allocation(split.train, budgets[step], seed=seed)
        [row] = curve([split], [budgets[step]], default=(default or {}).get(step), seed=seed)
        fixed[step] = build(step, configs, learned.allocation)
        reports.append(StepReport(step, counts, learned, row, fixed[step]))
    return reports
