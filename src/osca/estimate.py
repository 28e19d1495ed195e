"""Estimating the count matrix OSCA learns from: C0 samples per (problem, configuration) at one step of a graph.

For each training problem and configuration h, the chosen node draws its LiteLLM calls from h alone (one
sample, seeded by the sample index; the other nodes run as they are), the graph runs to the end, and `verify`
judges the outcome. Every finished sample is appended to `<run_dir>/samples.jsonl` (flushed and fsynced), so a
crash or Ctrl-C loses nothing and a re-run does only what is missing. The result is a `CountMatrix` (runs =
samples that finished without error), also written to `<run_dir>/counts.json` for `osca learn` / `osca curve`.

Each logged sample carries the settings that made it (`settings`: a digest of the graph's structure and code,
the step, `verify` and the fixed samplers; the configuration's definition; the problem's input; the sample's
seed), and a run directory whose samples were made with other settings is refused, never mixed in (issue 11).
Each graph run gets its own `thread_id`, so graphs compiled with a checkpointer work too.

    counts = estimate(graph, "write_code", problems, configs, verify=passes_tests, c0=8, run_dir="runs/est")
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .jsonl import append_record, whole_lines
from .allocation import Allocation
from .configs import SamplingConfig
from .counts import CountMatrix
from .exceptions import BudgetError, ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["EstimationSpec", "LocalExecutor", "Problem", "RayExecutor", "StepReport", "aestimate", "estimate",
           "end_to_end", "learn_steps", "load_spec"]


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


def _digest(value: Any) -> str:
    """A short sha256 of `value`'s canonical JSON; objects that are not JSON by their repr, minus addresses."""
    def stable(obj: Any) -> str:
        return re.sub(r" at 0x[0-9a-f]+", "", repr(obj))

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=stable).encode()).hexdigest()[:16]


def _source(fn: Any) -> str:
    """The code of a node, `verify` or callable object, so that an edit to it changes the spec's digest."""
    target = inspect.unwrap(getattr(fn, "func", None) or getattr(fn, "afunc", None) or fn)
    try:
        return inspect.getsource(target if inspect.isroutine(target) else type(target))
    except (OSError, TypeError):  # built in, or defined where there is no source file
        return getattr(target, "__qualname__", type(target).__qualname__)


def _spec_digest(graph: Any, step: str, verify: Verify, fixed: Mapping[str, Any]) -> str:
    """What every sample of a run shares: the graph (structure, node and routing code), the step, `verify` and
    the samplers other steps run with."""
    from .langgraph import compile_graph

    compiled = compile_graph(graph)
    builder = getattr(compiled, "builder", None)
    branches = getattr(builder, "branches", {})
    return _digest({
        "step": step,
        "nodes": {name: _source(getattr(spec, "runnable", spec))
                  for name, spec in getattr(builder, "nodes", {}).items()},
        "edges": sorted((e.source, e.target, e.conditional) for e in compiled.get_graph().edges),
        "routes": {f"{start}/{name}": _source(spec.path) for start, named in branches.items()
                   for name, spec in named.items()},
        "verify": _source(verify),
        "fixed": {name: {"allocation": dict(getattr(s, "allocation", {})),
                         "configs": [c.model_dump(mode="json") if hasattr(c, "model_dump") else c
                                     for c in dict(getattr(s, "configs", {})).values()]}
                  for name, s in fixed.items()},
    })


_SETTINGS = {"spec": "graph, step, verify or fixed samplers", "configuration": "definition of the configuration",
             "input": "problem input", "seed": "seed"}


def _done(log: Path, expected: Callable[[str, str, int], dict[str, Any] | None]
          ) -> tuple[dict[tuple[str, str, int], bool], dict[tuple[str, str], str]]:
    """Finished samples from the log (a torn last line, from a crash mid-write, is cut off first), and the last
    error of each (problem, configuration).

    Raises:
        ConfigError: a logged sample of this run's problems and configurations was made with other settings
            (`expected(problem, config, k)` gives this run's; None: not part of this run).
    """
    done: dict[tuple[str, str, int], bool] = {}
    errors: dict[tuple[str, str], str] = {}
    if not log.exists():
        return done, errors
    whole_lines(log)
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        key = (rec["problem"], rec["config"], int(rec["sample"]))
        want = expected(*key)
        if want is None:
            continue
        made = rec.get("settings") or {}
        changed = [name for name in _SETTINGS if made.get(name) != want[name]]
        if changed:
            what = "no record of its settings (an older osca made it)" if not made else \
                f"another {_SETTINGS[changed[0]]}"
            raise ConfigError(f"{log.parent} holds samples made with {what} (first: problem {key[0]!r}, "
                              f"configuration {key[1]!r}, sample {key[2]}): estimate into a new run directory, "
                              f"or delete this one to start over")
        if rec.get("error") is None:
            done[key] = bool(rec["correct"])
        else:
            errors[key[:2]] = rec["error"]
    return done, errors


def _draw_one(graph: Any, step: str, others: Mapping[str, Any], configs: Sequence[SamplingConfig],
              problem: Problem, config: str, k: int, seed: int, verify: Verify) -> dict[str, Any]:
    """One estimation sample: run the graph with `step` drawing from `config` alone, judge the final state.

    A plain function of picklable arguments, so any executor (threads here, Ray workers) can run it.
    """
    from .langgraph import instrument
    from .sampler import AllocatedSampler

    record: dict[str, Any] = {"problem": problem.id, "config": config, "sample": k}
    try:
        sampler = AllocatedSampler(configs, Allocation({config: 1}), seed=seed + k,
                                   call_site=f"{step}/{problem.id}/{k}")
        final = instrument(graph, {**others, step: sampler}).invoke(problem.input, _fresh_thread())
        spent = sampler.ledger.total()
        record.update(correct=_verdict(verify, problem, final), error=None,
                      routed=spent.samples + spent.cached + spent.failed > 0)
    except Exception as e:  # recorded, retried by the next run; never counted as correct
        record.update(correct=False, error=f"{type(e).__name__}: {e}")
    return record


def _fresh_thread() -> dict[str, Any]:
    """A run config with a thread of its own: a checkpointer needs one, and a retried sample must not resume the
    failed run's thread."""
    return {"configurable": {"thread_id": f"osca-{uuid.uuid4().hex}"}}


class LocalExecutor:
    """Runs estimation samples in threads of this process, `concurrency` at a time (the default)."""

    def __init__(self, concurrency: int = 4) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency

    async def map(self, fn: Callable[..., dict[str, Any]], calls: Sequence[tuple]) -> AsyncIterator[dict[str, Any]]:
        limit = asyncio.Semaphore(self.concurrency)

        async def one(args: tuple) -> dict[str, Any]:
            async with limit:
                return await asyncio.to_thread(fn, *args)

        for next_done in asyncio.as_completed([one(args) for args in calls]):
            yield await next_done


class RayExecutor:
    """Runs estimation samples as Ray tasks: a local Ray instance, or a cluster at `address` (`osca[ray]`).

    The graph, its node functions and `verify` travel to the workers by pickle: define them in an importable
    module (give workers its path with `runtime_env`, e.g. ``{"env_vars": {"PYTHONPATH": ...}}``).
    """

    def __init__(self, address: str | None = None, *, task_cpus: float = 1, **init: Any) -> None:
        self.address = address
        self.task_cpus = task_cpus
        self.init = init  # more `ray.init` arguments (num_cpus, runtime_env, ...) when this starts Ray

    async def map(self, fn: Callable[..., dict[str, Any]], calls: Sequence[tuple]) -> AsyncIterator[dict[str, Any]]:
        try:
            import ray
        except ImportError:
            raise ConfigError("the Ray executor needs Ray: pip install 'osca[ray]'") from None
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init)
        remote = ray.remote(num_cpus=self.task_cpus)(fn)
        pending = [remote.remote(*args) for args in calls]
        while pending:
            ready, pending = await asyncio.to_thread(ray.wait, pending, num_returns=1)
            for ref in ready:
                yield ray.get(ref)


async def aestimate(graph: Any, step: str, problems: Sequence[Problem], configs: Sequence[SamplingConfig], *,
                    verify: Verify, c0: int, run_dir: str | Path, concurrency: int = 4, seed: int = 0,
                    progress: bool = True, fixed: Mapping[str, Any] | None = None,
                    executor: LocalExecutor | RayExecutor | None = None) -> CountMatrix:
    """Async twin of `estimate` (see the module docstring)."""
    if c0 < 1:
        raise BudgetError(f"c0 (samples per problem and configuration) must be >= 1, got {c0}")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise DataError("problem ids are not unique")
    if not configs:
        raise ConfigError("no sampling configurations to estimate")
    nodes = getattr(graph, "nodes", {step})
    if step not in nodes:
        raise ConfigError(f"no node named {step!r} in the graph")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    log = run / "samples.jsonl"
    others = {name: s for name, s in (fixed or {}).items() if name != step}
    spec = _spec_digest(graph, step, verify, others)
    inputs = {p.id: _digest([p.input, p.data]) for p in problems}
    definitions = {c.name: _digest(c.model_dump(mode="json")) for c in configs}

    def expected(pid: str, name: str, k: int) -> dict[str, Any] | None:
        """Everything that changes sample k of configuration `name` on problem `pid` (None: not in this run)."""
        if pid not in inputs or name not in definitions:
            return None
        return {"spec": spec, "configuration": definitions[name], "input": inputs[pid], "seed": seed + k}

    done, errors = _done(log, expected)
    calls = [(graph, step, others, configs, p, c.name, k, seed, verify)
             for p in problems for c in configs for k in range(c0) if (p.id, c.name, k) not in done]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"estimating {step}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not progress) as bar, log.open("a") as out:
        task = bar.add_task("", total=len(problems) * len(configs) * c0, completed=len(done))
        unrouted: list[str] = []  # warned once per run
        async for record in (executor or LocalExecutor(concurrency)).map(_draw_one, calls):
            if record.pop("routed", True) is False and not unrouted:
                unrouted.append(record["problem"])
                logger.warning("estimating %r: on problem %r the step made no LiteLLM call through osca, so every "
                            "configuration counts the same there; if the step calls a model, that call bypasses "
                            "osca (a `from litellm import completion` alias: use litellm.completion or "
                            "osca.completion; or a client outside LiteLLM)", step, record["problem"])
            key = (record["problem"], record["config"], int(record["sample"]))
            append_record(out, {**record, "settings": expected(*key)})  # one writer: this loop; on disk before
            if record["error"] is None:                                   # the next sample is counted
                done[key] = record["correct"]
            else:
                errors[key[:2]] = record["error"]
            bar.advance(task)

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
        last = errors.get((ids[j], configs[i].name), "none logged")
        raise DataError(f"no finished sample for configuration {configs[i].name!r} on problem {ids[j]!r}; the last "
                        f"error: {last} (all errors are in {log}; a re-run retries them)")
    matrix = CountMatrix(tuple(configs), tuple(ids), correct, runs)
    matrix.save(run / "counts.json")
    return matrix


def estimate(graph: Any, step: str, problems: Sequence[Problem], configs: Sequence[SamplingConfig], *,
             verify: Verify, c0: int, run_dir: str | Path, concurrency: int = 4, seed: int = 0,
             progress: bool = True, fixed: Mapping[str, Any] | None = None,
             executor: LocalExecutor | RayExecutor | None = None) -> CountMatrix:
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
        executor: where samples run: `LocalExecutor(concurrency)` (default) or `RayExecutor(address)`.
    """
    return asyncio.run(aestimate(graph, step, problems, configs, verify=verify, c0=c0, run_dir=run_dir,
                                 concurrency=concurrency, seed=seed, progress=progress, fixed=fixed,
                                 executor=executor))


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
    test_problems: tuple[str, ...] = ()
    """Ids of the problems the step was judged on (the same seeded split at every step)."""


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
        reports.append(StepReport(step, counts, learned, row, fixed[step], split.test.problems))
    return reports


def end_to_end(graph: Any, samplers: Mapping[str, Any], problems: Sequence[Problem], *, verify: Verify) -> float:
    """Fraction of `problems` whose final state verifies when the named nodes sample through their samplers
    (an empty mapping: the graph as it is)."""
    from .langgraph import compile_graph, instrument

    runner = instrument(graph, samplers) if samplers else compile_graph(graph)
    solved = sum(_verdict(verify, problem, runner.invoke(problem.input, _fresh_thread())) for problem in problems)
    return solved / len(problems) if problems else 0.0


def _verdict(verify: Verify, problem: Problem, final: Any) -> bool:
    """`verify`'s answer on a final state; an async `verify` is awaited."""
    verdict = verify(problem, final)
    return bool(asyncio.run(verdict) if inspect.isawaitable(verdict) else verdict)
