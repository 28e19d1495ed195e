"""The whole Agentless graph on the mini instances: scripted model, real Docker sandbox, real git."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import swe_mini
from typer.testing import CliRunner

from osca.agents.agentless.graph import Agentless, AgentlessSettings
from osca.agents.agentless.grading import InstanceReport, evaluate
from osca.agents.agentless.run import repo_source, run_instances
from osca.agents.agentless.swebench import (Prediction, SWEInstance, append_prediction, checkout, read_predictions,
                                            validate_predictions)
from osca import Allocation, SamplingConfig
from osca.cache import SampleCache
from osca.providers.scripted import calls, register_script

pytestmark = pytest.mark.usefixtures("docker_client")


@pytest.fixture
def model() -> str:
    return register_script("agentless-mini", swe_mini.script)


def grade(instances: list[SWEInstance], preds_file: Path, repos: Path, workdir: Path) -> dict[str, InstanceReport]:
    """SWE-bench's grading of a predictions file in osca's base image, over checkouts of the mini repositories."""
    patches = {iid: pred.model_patch for iid, pred in read_predictions(preds_file).items()}
    return evaluate(instances, patches, image="base",
                    checkout=lambda inst: checkout(inst, workdir=workdir, source=repo_source(repos, inst)))


def make_agent(model: str, cache: SampleCache | None = None) -> Agentless:
    settings = AgentlessSettings(model=model, context=1, reproduction_samples=2, test_timeout=30, wall_clock=120)
    configs = [SamplingConfig(name="cool_0-1", model=model, temperature=0.4, prompt_variant="loc_merged_0-1"),
               SamplingConfig(name="hot_2-3", model=model, temperature=0.8, prompt_variant="loc_merged_2-3")]
    return Agentless(settings, configs, Allocation({"cool_0-1": 4, "hot_2-3": 4}), cache=cache)


def test_mini_instances_resolve_end_to_end(tmp_path: Path, model: str) -> None:
    instances, repos, _ = swe_mini.build_all(tmp_path)
    run_dir = tmp_path / "run"
    with SampleCache(run_dir / "samples.sqlite") as cache:
        agent = make_agent(model, cache)
        summary = run_instances(agent, instances, run_dir=run_dir, repos=repos, workers=2)
    assert sorted(summary.done) == [i.instance_id for i in instances] and not summary.failed
    # each instance's spend is its own; the agent's ledger adds them up
    assert agent.ledger.total(call_site="repair").samples == 16

    preds_file = run_dir / "all_preds.jsonl"
    assert validate_predictions(preds_file, instances) == []
    preds = read_predictions(preds_file)
    calc = json.loads((run_dir / "trajectories" / "osca-mini__calc-1.json").read_text())
    slug = json.loads((run_dir / "trajectories" / "osca-mini__slug-1.json").read_text())

    # localization kept only the real file, and the two location sets differ
    assert calc["files"] == ["calc/ops.py"]
    sets = calc["location_sets"]
    assert set(sets) == {"loc_merged_0-1", "loc_merged_2-3"} and sets["loc_merged_0-1"] != sets["loc_merged_2-3"]

    cands = calc["candidates"]
    assert [c["config"] for c in cands].count("cool_0-1") == 4 and len(cands) == 8
    errors = {c["index"] + 4 * (c["config"] == "hot_2-3"): c["error"] for c in cands if c["error"]}
    assert "localized interval" in errors[3] and set(errors) == {3, 5}  # the docstring edit, the malformed answer
    breaker = next(c for c in cands if "a * b + 1" in c["text"])
    assert sorted(breaker["regressions"]) == ["tests/test_ops.py::test_mul", "tests/test_ops.py::test_mul_zero"]
    # the majority (abs, 3 votes) passes regressions but not the reproduction test: a + b must win
    abs_votes = [c for c in cands if "abs(" in c["text"]]
    assert len({c["key"] for c in abs_votes}) == 1 and all(c["reproduction"] is False for c in abs_votes)
    assert calc["reproduction"]["script"] == swe_mini.CALC_REPRO
    assert [t["reproduced"] for t in calc["reproduction"]["tried"]] == [False, True]
    assert "+    return a + b" in preds["osca-mini__calc-1"].model_patch
    assert "reproduction" in calc["selection"]["reason"]

    # slug: nothing reproduces, so the vote decides among regression-free patches
    assert slug["reproduction"]["script"] is None
    assert sorted(slug["selection"]["votes"].values()) == [1, 2, 3]
    assert '.lower()' in preds["osca-mini__slug-1"].model_patch
    assert set(slug["spend"]) >= {"repair/cool_0-1", "repair/hot_2-3", "localize_files/localize_files"}
    assert slug["spend"]["repair/cool_0-1"]["samples"] == 4

    reports = grade(instances, preds_file, repos, tmp_path / "eval")
    assert {i: r.resolved for i, r in reports.items()} == {i.instance_id: True for i in instances}, reports

    # a re-run resumes: nothing is solved again and the model is not called
    before = calls("agentless-mini")
    again = run_instances(make_agent(model), instances, run_dir=run_dir, repos=repos)
    assert again.skipped == [i.instance_id for i in instances] and not again.done and calls("agentless-mini") == before


def test_evaluation_resolves_gold_and_rejects_wrong_patches(tmp_path: Path) -> None:
    instances, repos, _ = swe_mini.build_all(tmp_path)
    preds = tmp_path / "preds.jsonl"
    calc, slug = instances
    append_prediction(preds, Prediction(instance_id=calc.instance_id, model_name_or_path="gold",
                                        model_patch=calc.patch))
    wrong = slug.patch.replace(".lower()", ".upper()")
    append_prediction(preds, Prediction(instance_id=slug.instance_id, model_name_or_path="wrong", model_patch=wrong))
    reports = grade(instances, preds, repos, tmp_path / "eval")
    assert reports[calc.instance_id].resolved, reports[calc.instance_id]
    assert not reports[slug.instance_id].resolved
    assert "tests/test_slug.py::test_lower" in reports[slug.instance_id].fail_to_pass.failure


def test_cli_runs_and_evaluates(tmp_path: Path, model: str) -> None:
    from osca.cli import app

    instances, repos, jsonl = swe_mini.build_all(tmp_path)
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([
        {"name": "cool_0-1", "model": model, "temperature": 0.4, "prompt_variant": "loc_merged_0-1"},
        {"name": "hot_2-3", "model": model, "temperature": 0.8, "prompt_variant": "loc_merged_2-3"}]))
    (tmp_path / "alloc.json").write_text(json.dumps({"allocation": {"cool_0-1": 4, "hot_2-3": 4}}))
    (tmp_path / "settings.json").write_text(json.dumps({"context": 1, "test_timeout": 30}))
    run_dir = tmp_path / "run"
    common = ["--instances", str(jsonl), "--repos", str(repos), "--run-dir", str(run_dir)]
    runner = CliRunner()
    res = runner.invoke(app, ["agentless", "run", *common, "--ids", "osca-mini__calc-1", "--model", model,
                              "--configs", str(configs), "--allocation", str(tmp_path / "alloc.json"),
                              "--settings", str(tmp_path / "settings.json")])
    assert res.exit_code == 0, res.output
    assert "1 solved now" in res.output
    res = runner.invoke(app, ["agentless", "evaluate", str(run_dir / "all_preds.jsonl"), *common, "--image", "base"])
    assert res.exit_code == 0, res.output
    assert "resolved 1/1" in res.output


def test_cli_run_budget_stops_starting_instances_and_counts_earlier_runs(tmp_path: Path, model: str) -> None:
    from osca.cli import app

    from osca.agents.agentless.run import run_spend

    _, repos, jsonl = swe_mini.build_all(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps({"context": 1, "test_timeout": 30}))
    run_dir = tmp_path / "run"
    args = ["agentless", "run", "--instances", str(jsonl), "--repos", str(repos), "--run-dir", str(run_dir),
            "--model", model, "--settings", str(tmp_path / "settings.json"), "--max-tokens", "1"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output
    assert "1 solved now" in first.output and "1 instances not started" in first.output
    assert list(read_predictions(run_dir / "all_preds.jsonl")) == ["osca-mini__calc-1"]
    [record] = [json.loads(line) for line in (run_dir / "spend.jsonl").read_text().splitlines()]
    assert record["instance_id"] == "osca-mini__calc-1" and record["spend"]["prompt_tokens"] > 0
    assert run_spend(run_dir).tokens == record["spend"]["prompt_tokens"] + record["spend"]["completion_tokens"]

    before = calls("agentless-mini")
    again = runner.invoke(app, args)  # the budget counts what the first run spent: still nothing starts
    assert again.exit_code == 1 and "0 solved now, 1 already done" in again.output
    assert "token cap 1 reached" in again.output and calls("agentless-mini") == before
