"""Running Agentless over SWE-bench instances, resumably (grading the predictions: `grading.py`).

A run directory holds `all_preds.jsonl` (SWE-bench's predictions format, one line appended per finished
instance), `trajectories/<instance_id>.json` (every candidate, its configuration, tests and votes),
`samples.sqlite` (every model answer, so an interrupted instance replays its samples instead of paying for
them again), `spend.jsonl` (what each attempt at an instance spent, failed ones included: the run's budget
counts every run in the directory) and `repos/` (the checkouts). Re-running skips the instances already in
`all_preds.jsonl`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import to_jsonable_python

from osca.exceptions import ConfigError, DataError, OscaError
from osca.jsonl import append_record, read_lines, whole_lines
from osca.ledger import Caps, Ledger, Spend

from .graph import Agentless, AgentlessState
from .swebench import Prediction, SWEInstance, checkout, read_predictions

__all__ = ["RunSummary", "repo_source", "run_instances", "run_spend", "trajectory"]

PREDICTIONS = "all_preds.jsonl"
SPEND_LOG = "spend.jsonl"


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    """Instances finished in this run."""
    skipped: list[str] = field(default_factory=list)
    """Instances already in the predictions file."""
    failed: dict[str, str] = field(default_factory=dict)
    """Instance -> error; they get no prediction, so a re-run retries them."""
    unstarted: list[str] = field(default_factory=list)
    """Instances not started because the run's budget was spent; a re-run with a larger budget goes on."""
    budget: str | None = None
    """Why the run stopped starting instances, if it did."""
    spent: Spend = field(default_factory=Spend)
    """What every attempt at an instance in the run directory has spent, over all runs, this one included (the
    total of its `spend.jsonl`)."""


def repo_source(repos: Path | None, instance: SWEInstance) -> Path | None:
    """The local clone of the instance's repository under `repos` (`owner__name` or `name`), or None to
    clone from GitHub."""
    if repos is None:
        return None
    owner, name = instance.repo.split("/")
    for candidate in (repos / f"{owner}__{name}", repos / name):
        if candidate.exists():
            return candidate
    raise DataError(f"no clone of {instance.repo} in {repos} (expected {owner}__{name}/ or {name}/)")


def trajectory(state: AgentlessState, ledger: Ledger | None = None) -> dict[str, Any]:
    """A JSON-able record of one instance's run: its state as it is (data only, the live objects are in the
    graph's runtime context), and with `ledger` what its calls cost per call site/configuration."""
    record: dict[str, Any] = dict(state)
    if ledger is not None:
        record["spend"] = {"/".join(key): asdict(spend) for key, spend in ledger.entries.items()}
    return to_jsonable_python(record)


def run_spend(run_dir: Path) -> Spend:
    """What every attempt at an instance in `run_dir` has spent, over all runs (its `spend.jsonl`)."""
    path, total = run_dir / SPEND_LOG, Spend()
    if not path.exists():
        return total
    for number, line in enumerate(read_lines(path), 1):  # a torn last line is left out; the next append cuts it
        try:
            total.add(Spend(**json.loads(line)["spend"]))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{number}: not a spend record ({type(e).__name__}: {e})") from None
    return total


def run_instances(agent: Agentless, instances: Sequence[SWEInstance], *, run_dir: Path,
                  repos: Path | None = None, model_name: str = "osca-agentless", workers: int = 1,
                  budget: Caps | None = None, on_instance: Callable[[str, str], None] | None = None,
                  max_instance_seconds: float | None = None) -> RunSummary:
    """Solve each instance not yet in `run_dir/all_preds.jsonl`, appending its prediction and trajectory as
    soon as it is done. An instance that fails (a checkout or every model call failing) is reported and left
    for the next run; model output that yields no patch is a prediction with an empty patch.

    Args:
        workers: instances solved at once (threads; each instance's own calls and tests run concurrently too).
        budget: the whole run's caps, counting what earlier runs in `run_dir` spent. Checked before each instance
            starts, like SWE-agent's total cost limit: instances already running finish (under the per-instance
            caps of `agent.ledger`), so the run can overshoot by what `workers` instances spend.
        on_instance: called with (instance_id, outcome) after each instance (progress bars).
        max_instance_seconds: an instance's stages that would start later than this are skipped (`Agentless.solve`).

    An instance's trajectory is written after every step (`"in_progress": true` until it ends), so an interrupted
    run (SIGTERM, a crash) leaves what each instance did so far. Each instance records its spend in its own
    ledger, added to `agent.ledger` and `spend.jsonl` when it ends.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    (run_dir / "trajectories").mkdir(parents=True, exist_ok=True)
    preds, spend_log = run_dir / PREDICTIONS, run_dir / SPEND_LOG
    finished, spent = read_predictions(preds), run_spend(run_dir)
    whole_lines(preds)
    whole_lines(spend_log)
    summary, lock = RunSummary(spent=spent), threading.Lock()

    def solve(inst: SWEInstance) -> None:
        iid, where = inst.instance_id, run_dir / "trajectories" / f"{inst.instance_id}.json"
        with lock:
            summary.budget = summary.budget or (budget.exhausted(spent) if budget else None)
            if summary.budget:
                summary.unstarted.append(iid)
                _notify(on_instance, iid, "not started")
                return
        ledger = Ledger(caps=agent.ledger.caps)
        so_far: dict[str, Any] = {"instance_id": iid}

        def persist(state: AgentlessState) -> None:
            so_far.update(trajectory(state, ledger))
            where.write_text(json.dumps({**so_far, "in_progress": True}, indent=1))

        try:
            repo = checkout(inst, workdir=run_dir / "repos", source=repo_source(repos, inst))
            state = agent.solve(inst, repo, ledger=ledger, max_seconds=max_instance_seconds, on_step=persist)
        except OscaError as e:
            where.write_text(json.dumps({**so_far, "error": str(e)}, indent=1))
            with lock:
                charge(iid, ledger, "failed")
                summary.failed[iid] = str(e)
                _notify(on_instance, iid, "failed")
            return
        where.write_text(json.dumps(trajectory(state, ledger), indent=1))
        with lock:
            pred = Prediction(instance_id=iid, model_name_or_path=model_name, model_patch=state["selection"].patch)
            with preds.open("a", encoding="utf-8") as f:
                append_record(f, pred.model_dump())
            charge(iid, ledger, "done")
            summary.done.append(iid)
            _notify(on_instance, iid, "patched" if state["selection"].patch else "no patch")

    def charge(iid: str, ledger: Ledger, outcome: str) -> None:
        """Add an attempt's spend to the agent's ledger, the run's total and the spend log (lock held)."""
        for (site, config), spend in ledger.entries.items():
            agent.ledger.record(site, config, spend)
        total = ledger.total()
        spent.add(total)
        with spend_log.open("a", encoding="utf-8") as f:
            append_record(f, {"instance_id": iid, "outcome": outcome, "spend": asdict(total)})

    todo = []
    for inst in instances:
        if inst.instance_id in finished:
            summary.skipped.append(inst.instance_id)
            _notify(on_instance, inst.instance_id, "skipped")
        else:
            todo.append(inst)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(solve, todo))
    return summary


def _notify(callback: Callable[[str, str], None] | None, iid: str, outcome: str) -> None:
    if callback is not None:
        callback(iid, outcome)
