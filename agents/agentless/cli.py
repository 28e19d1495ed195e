"""`osca agentless run|evaluate`: Agentless over SWE-bench instances, with progress and resume.

Only typer, the standard library and what `import osca` has loaded already load at import: the `osca` command
line stays fast for its other commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from osca import Allocation, SamplingConfig
from osca.counts import read_json
from osca.exceptions import ConfigError, OscaError

__all__ = ["app"]

app = typer.Typer(help="Agentless (localize, repair with an allocation, test in Docker) on SWE-bench.",
                  no_args_is_help=True)

InstancesOpt = Annotated[str, typer.Option(
    help="A SWE-bench jsonl file, or a dataset on the Hugging Face hub (needs the hub extra and network).")]
IdsOpt = Annotated[str | None, typer.Option(help="Comma-separated instance ids (default: all).")]
ReposOpt = Annotated[Path | None, typer.Option(
    help="Folder of local clones named owner__name (default: clone from GitHub).")]
RunDirOpt = Annotated[Path, typer.Option(help="Predictions, trajectories, sample cache and checkouts go here.")]
ImageOpt = Annotated[str | None, typer.Option(
    help="Where the tests run: `env` (each instance's image from `osca agentless env build`), `swebench` "
         "(SWE-bench's own images), or one sandbox image (default: osca's base image over the checkout).")]


def _instances(source: str, split: str, ids: str | None, limit: int | None):
    from .swebench import load_instances

    wanted = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    found = load_instances(source, split=split, ids=wanted)
    return found[:limit] if limit else found


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


@app.command()
def run(
    instances: InstancesOpt = "princeton-nlp/SWE-bench_Lite",
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets only).")] = "test",
    ids: IdsOpt = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N instances.")] = None,
    repos: ReposOpt = None,
    model: Annotated[str, typer.Option(
        help="LiteLLM model for localization and reproduction tests.")] = "openai/gpt-4o",
    configs: Annotated[Path | None, typer.Option(
        help="JSON list of repair configurations (name, model, temperature, prompt_variant = location set).")] = None,
    allocation: Annotated[Path | None, typer.Option(
        help="Repair samples per configuration (`osca learn -o` or a {name: samples} object).")] = None,
    settings: Annotated[Path | None, typer.Option(help="JSON of AgentlessSettings fields to override.")] = None,
    run_dir: RunDirOpt = Path("runs/agentless"),
    image: ImageOpt = None,
    model_name: Annotated[str, typer.Option(help="model_name_or_path in the predictions.")] = "osca-agentless",
    workers: Annotated[int, typer.Option(help="Instances solved at once.")] = 1,
    max_dollars: Annotated[float | None, typer.Option(
        help="Stop starting instances once the run directory's runs have spent this much (LiteLLM's prices); "
             "instances under way finish.")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        help="The same in tokens (for models LiteLLM has no price for).")] = None,
    instance_max_dollars: Annotated[float | None, typer.Option(
        help="Hard cap per instance: no model call is dispatched past it.")] = None,
    max_instance_seconds: Annotated[float | None, typer.Option(
        min=1, help="Time bound per instance: stages that would start later are skipped (recorded in its "
                    "trajectory); the stage under way finishes.")] = None,
) -> None:
    """Solve instances; append each prediction to RUN_DIR/all_preds.jsonl (re-runs resume)."""
    from osca.cache import SampleCache
    from osca.ledger import Caps, Ledger

    from .graph import Agentless, AgentlessSettings
    from .run import run_instances

    todo = _instances(instances, split, ids, limit)
    extra = read_json(settings) if settings else {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{settings}: expected a JSON object of settings")
    env_image = {"env_image": image} if image in ("env", "swebench") else {}
    agent_settings = _validated(AgentlessSettings, {"model": model, **env_image, **extra}, settings or "settings")
    repair_configs, repair_alloc = _repair(configs, allocation, agent_settings)
    budget = Caps(dollars=max_dollars, tokens=max_tokens)
    per_instance = Ledger(caps=Caps(dollars=instance_max_dollars))
    run_dir.mkdir(parents=True, exist_ok=True)
    with SampleCache(run_dir / "samples.sqlite") as cache:
        sandbox = _sandbox(None if env_image else image)
        agent = Agentless(agent_settings, repair_configs, repair_alloc, sandbox=sandbox, cache=cache,
                          ledger=per_instance)
        with _progress() as bar:
            task = bar.add_task("agentless", total=len(todo))

            def advance(iid: str, outcome: str) -> None:
                bar.console.print(f"{iid}: {outcome}")
                bar.advance(task)

            summary = run_instances(agent, todo, run_dir=run_dir, repos=repos, model_name=model_name,
                                    workers=workers, budget=budget, on_instance=advance,
                                    max_instance_seconds=max_instance_seconds)
    spent, total = agent.ledger.total(), summary.spent
    typer.echo(f"{len(summary.done)} solved now, {len(summary.skipped)} already done, {len(summary.failed)} failed; "
               f"spent ${spent.dollars:.4f} / {spent.tokens} tokens (all runs here: ${total.dollars:.4f} / {total.tokens}); "
               f"predictions: {run_dir / 'all_preds.jsonl'}")
    for iid in summary.done:  # zero regression tests is a finding, not a silent default
        note = _regression_note(run_dir / "trajectories" / f"{iid}.json")
        if note:
            typer.echo(f"{iid}: {note}", err=True)
    for iid, why in summary.failed.items():
        typer.echo(f"failed {iid}: {why}", err=True)
    if summary.unstarted:
        typer.echo(f"budget spent ({summary.budget}): {len(summary.unstarted)} instances not started; "
                   "raise --max-dollars/--max-tokens and re-run to go on", err=True)
    if summary.failed or summary.unstarted:
        raise typer.Exit(1)


@app.command()
def evaluate(
    predictions: Annotated[str, typer.Argument(
        help="all_preds.jsonl (SWE-bench's predictions format), or `gold` / `empty` for the instances' gold patch "
             "or the empty patch (the harness's own sanity checks).")],
    instances: InstancesOpt = "princeton-nlp/SWE-bench_Lite",
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets only).")] = "test",
    ids: IdsOpt = None,
    repos: ReposOpt = None,
    run_dir: RunDirOpt = Path("runs/agentless"),
    image: Annotated[str, typer.Option(
        help="`env`: the image `osca agentless env build` made for each instance; `swebench`: SWE-bench's own "
             "per-instance images (pulled by you); `base`: osca's base sandbox image over a checkout (instances "
             "without an environment); anything else: one image following the env contract.")] = "env",
    network: Annotated[bool, typer.Option(
        help="Give the tests network access (SWE-bench's harness does; some instances' tests need it).")] = False,
    wall_clock: Annotated[float, typer.Option(help="Seconds the tests of one instance may run.")] = 1800.0,
) -> None:
    """Grade predictions as SWE-bench does, in each instance's environment image: patch (an empty one too),
    test files reset, test_patch, the instance's test command, its log parser, FAIL_TO_PASS / PASS_TO_PASS.
    Writes RUN_DIR/evaluation/<name>/<instance>/{report.json,test_output.txt} and a summary report.json."""
    import json

    from rich.console import Console
    from rich.table import Table

    from .grading import evaluate as grade
    from .run import repo_source
    from .swebench import checkout, read_predictions

    todo = _instances(instances, split, ids, None)
    if predictions in ("gold", "empty"):
        patches = {i.instance_id: i.patch if predictions == "gold" else "" for i in todo}
        name = predictions
    else:
        preds = read_predictions(Path(predictions))
        todo = [i for i in todo if i.instance_id in preds]
        patches = {i: p.model_patch for i, p in preds.items()}
        name = Path(predictions).stem
    out = run_dir / "evaluation" / name
    with _progress() as bar:
        task = bar.add_task("evaluating", total=len(todo))

        def done(report, result) -> None:
            where = out / report.instance_id
            where.mkdir(parents=True, exist_ok=True)
            (where / "report.json").write_text(json.dumps(report.to_swebench(), indent=1))
            (where / "test_output.txt").write_text(result.output)
            why = f" ({report.error})" if report.error else ""
            bar.console.print(f"{report.instance_id}: {report.status}{why}")
            bar.advance(task)

        reports = grade(todo, patches, image=image, network=network, wall_clock=wall_clock, on_instance=done,
                        checkout=lambda i: checkout(i, workdir=run_dir / "repos", source=repo_source(repos, i)))
    table = Table(title=f"SWE-bench grading ({'with' if network else 'no'} network for the tests)")
    for col in ("instance", "status", "FAIL_TO_PASS", "PASS_TO_PASS", "seconds", "why"):
        table.add_column(col)
    for iid, r in reports.items():
        f2p, p2p = r.fail_to_pass, r.pass_to_pass
        table.add_row(iid, r.status, f"{len(f2p.success)}/{len(f2p.success) + len(f2p.failure)}",
                      f"{len(p2p.success)}/{len(p2p.success) + len(p2p.failure)}", f"{r.seconds:.0f}", r.error or "")
    Console().print(table)
    summary = {"total_instances": len(todo), "network": network, "image": image,
               "resolved_ids": [i for i, r in reports.items() if r.resolved],
               "unresolved_ids": [i for i, r in reports.items() if not r.resolved and not r.error],
               "error_ids": [i for i, r in reports.items() if r.error],
               "empty_patch_ids": [i for i, r in reports.items() if not r.patch_exists]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(summary, indent=1))
    typer.echo(f"resolved {len(summary['resolved_ids'])}/{len(reports)}; report: {out / 'report.json'}")


env_app = typer.Typer(help="Per-instance test environments: build them offline, check an image.",
                      no_args_is_help=True)
app.add_typer(env_app, name="env")


@env_app.command("build")
def env_build(
    instances: Annotated[str, typer.Argument(help="A SWE-bench jsonl file, or a hub dataset.")],
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets only).")] = "test",
    ids: IdsOpt = None,
    repos: ReposOpt = None,
    run_dir: RunDirOpt = Path("runs/agentless"),
    force: Annotated[bool, typer.Option(help="Rebuild images that exist.")] = False,
) -> None:
    """Build each instance's environment image from the spec table (root, debootstrap, PyPI; never pulls)."""
    from .envs import build_env_image
    from .run import repo_source
    from .swebench import GITHUB_URL, _mirror

    todo = _instances(instances, split, ids, None)
    failed = {}
    with _progress() as bar:
        task = bar.add_task("environments", total=len(todo))
        for inst in todo:
            def step(line: str, iid: str = inst.instance_id) -> None:
                bar.update(task, description=f"{iid}: {line[:60]}")

            try:
                source = repo_source(repos, inst) or _mirror(inst, run_dir / "repos", GITHUB_URL)
                tag = build_env_image(inst, source, force=force, progress=step)
                bar.console.print(f"{inst.instance_id}: {tag}")
            except OscaError as e:
                failed[inst.instance_id] = str(e)
                bar.console.print(f"{inst.instance_id}: failed: {e}")
            bar.advance(task)
    typer.echo(f"{len(todo) - len(failed)} built or present, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@env_app.command("check")
def env_check(
    image: Annotated[str, typer.Argument(help="An image name, e.g. one `env build` printed.")],
    official: Annotated[bool, typer.Option(
        help="Check against SWE-bench's images' contract (everything owned by root) instead of osca's.")] = False,
) -> None:
    """Check that IMAGE follows the environment contract: the repository at /testbed (a clean git work tree,
    writable), the env's python and pytest first once activated."""
    from .envs import CONTRACT, OFFICIAL_CONTRACT, check_image, env_sandbox

    contract = OFFICIAL_CONTRACT if official else CONTRACT
    with env_sandbox(image, contract) as box:
        facts, problems = check_image(box, contract)
    for key, value in facts.items():
        typer.echo(f"{key}: {value}")
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{image}: follows the contract ({contract.testbed}, {contract.env}, user {contract.user})")


@app.command()
def validate(
    predictions: Annotated[Path, typer.Argument(help="A predictions file (.jsonl or .json).")],
    instances: Annotated[str | None, typer.Option(
        help="Also check the ids against these instances (a jsonl file or a hub dataset).")] = None,
    split: Annotated[str, typer.Option(help="Dataset split (hub datasets only).")] = "test",
) -> None:
    """Check a predictions file against SWE-bench's format (keys, types, diffs, duplicates, ids); exit 1 if
    anything is wrong."""
    from .swebench import validate_predictions

    known = _instances(instances, split, None, None) if instances else None
    problems = validate_predictions(predictions, known)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{predictions}: valid")


def _regression_note(trajectory: Path) -> str | None:
    """Why an instance's candidates were tested without regression tests, from its trajectory (None: they had
    some, or were not tested)."""
    import json

    try:
        report = json.loads(trajectory.read_text()).get("report", {}).get("run_tests", {})
    except (OSError, ValueError):
        return None
    tested = isinstance(report, dict) and "test_files" in report
    return report.get("note") if tested and not report.get("regression_tests") else None


def _validated(model, data: object, where: object):
    from .swebench import _describe

    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_describe(e, whole='value')}") from None


def _repair(configs: Path | None, allocation: Path | None, settings):
    """The repair step's configurations and allocation: given, or uniform over the location sets."""
    from .graph import default_repair

    if configs is None:
        repair_configs, repair_alloc = default_repair(settings.model, list(settings.location_sets))
    else:
        raw = read_json(configs)
        if not isinstance(raw, list):
            raise ConfigError(f"{configs}: expected a JSON list of configurations")
        repair_configs = [_validated(SamplingConfig, c, configs) for c in raw]
        repair_alloc = Allocation({c.name: 1 for c in repair_configs})
    if allocation is not None:
        repair_alloc = Allocation.load(allocation)
    return repair_configs, repair_alloc


def _sandbox(image: str | None):
    from osca.sandbox.container import DockerSandbox

    return DockerSandbox(image=image) if image else None
