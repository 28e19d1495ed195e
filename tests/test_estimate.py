"""Estimating counts at a graph step: right counts, persisted as it goes, resumable, usable by the learner."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import osca
from osca.estimate import Problem, estimate, load_spec

from estimate_spec import CONFIGS, PROBLEMS, graph, spec

# cold solves only the easy problem; hot also solves hard ones on even sample indices (2 of 4)
EXPECTED = np.array([[4, 0, 0], [4, 2, 2]])
SPEC = str(Path(__file__).with_name("estimate_spec.py")) + ":spec"


def right(problem, final):
    return final["answer"] == "right"


def test_counts_per_problem_and_configuration(tmp_path):
    matrix = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=right, c0=4, run_dir=tmp_path, progress=False)
    assert matrix.names == ["cold", "hot"] and list(matrix.problems) == ["p0", "p1", "p2"]
    assert (matrix.correct == EXPECTED).all() and (matrix.runs == 4).all()
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 24
    saved = osca.load_counts(tmp_path / "counts.json")
    assert (saved.correct == EXPECTED).all()
    assert osca.learn_allocation(saved, 2).allocation == {"hot": 2}  # hot dominates cold everywhere


def test_errors_are_recorded_and_retried_by_the_next_run(tmp_path):
    down = {"p1"}  # the service verify needs is down for p1 during the first run

    def flaky(problem, final):
        if problem.id in down:
            raise RuntimeError("verifier crashed")
        return right(problem, final)

    with pytest.raises(osca.DataError, match="no finished sample .* 'p1'; the last error: RuntimeError: verifier"):
        estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=flaky, c0=4, run_dir=tmp_path, progress=False)
    errors = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sum(r["error"] is not None for r in errors) == 8 and all(
        "verifier crashed" in r["error"] for r in errors if r["error"])
    down.clear()
    matrix = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=flaky, c0=4, run_dir=tmp_path, progress=False)
    assert (matrix.correct == EXPECTED).all()


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    log = tmp_path / "samples.jsonl"
    seen = []

    def counting(problem, final):
        seen.append((problem.id, final["answer"]))
        return right(problem, final)

    estimate(graph(), "solve", PROBLEMS[:1], CONFIGS[:1], verify=counting, c0=4, run_dir=tmp_path, progress=False)
    with log.open("a") as out:
        out.write('{"problem": "p0", "conf')  # torn last line: the crash came mid-write
    seen.clear()
    matrix = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=counting, c0=4, run_dir=tmp_path, progress=False)
    assert len(seen) == 24 - 4  # the four logged samples were not drawn again
    assert (matrix.correct == EXPECTED).all()
    records = [json.loads(line) for line in log.read_text().splitlines()]  # the torn line is gone
    keys = [(r["problem"], r["config"], r["sample"]) for r in records]
    assert len(keys) == len(set(keys)) == 24  # nothing duplicated, nothing lost


@pytest.mark.parametrize("change, what", [
    (dict(seed=1), "another seed"),
    (dict(configs=[CONFIGS[0], CONFIGS[1].model_copy(update={"temperature": 0.7})]),
     "another definition of the configuration"),
    (dict(problems=[PROBLEMS[0], Problem(id="p1", input={"question": "harder"}), PROBLEMS[2]]),
     "another problem input"),
    (dict(verify=lambda problem, final: final["answer"] != "wrong"), "another graph, step, verify"),
])
def test_a_run_directory_made_with_other_settings_is_refused(tmp_path, change, what):
    base = dict(graph=graph(), problems=PROBLEMS, configs=CONFIGS, verify=right, seed=0)
    estimate(step="solve", c0=1, run_dir=tmp_path, progress=False, **base)
    log = (tmp_path / "samples.jsonl").read_text()
    with pytest.raises(osca.ConfigError, match=f"holds samples made with {what}.*new run directory"):
        estimate(step="solve", c0=2, run_dir=tmp_path, progress=False, **{**base, **change})
    assert (tmp_path / "samples.jsonl").read_text() == log  # nothing drawn, nothing mixed in


def test_a_run_directory_grows_with_new_configurations_problems_and_samples(tmp_path):
    seen = []

    def counting(problem, final):
        seen.append(problem.id)
        return right(problem, final)

    estimate(graph(), "solve", PROBLEMS[:2], CONFIGS[:1], verify=counting, c0=2, run_dir=tmp_path, progress=False)
    seen.clear()
    matrix = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=counting, c0=4, run_dir=tmp_path, progress=False)
    assert len(seen) == 24 - 4 and (matrix.correct == EXPECTED).all()


def test_a_graph_with_a_checkpointer_gets_a_thread_per_sample(tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver

    from osca.estimate import end_to_end

    saver = InMemorySaver()
    compiled = graph().compile(checkpointer=saver)
    matrix = estimate(compiled, "solve", PROBLEMS, CONFIGS, verify=right, c0=4, run_dir=tmp_path, progress=False)
    assert (matrix.correct == EXPECTED).all()
    assert len({c.config["configurable"]["thread_id"] for c in saver.list(None)}) == 24  # none resumed another
    assert end_to_end(compiled, {}, PROBLEMS, verify=right) == 1 / 3


def test_a_step_that_makes_no_routed_call_is_reported_once(tmp_path, caplog):
    from langgraph.graph import END, START, StateGraph

    from estimate_spec import State

    builder = StateGraph(State)
    builder.add_node("solve", lambda state: {"answer": "right"})  # e.g. its model client bypasses LiteLLM
    builder.add_edge(START, "solve")
    builder.add_edge("solve", END)
    with caplog.at_level(logging.WARNING, logger="osca.estimate"):
        matrix = estimate(builder, "solve", PROBLEMS, CONFIGS, verify=right, c0=2, run_dir=tmp_path, progress=False)
    assert (matrix.correct == 2).all()  # every configuration counts the same: hence the warning
    [record] = caplog.records
    assert "made no LiteLLM call through osca" in record.getMessage() and "osca.completion" in record.getMessage()


def test_bad_input(tmp_path):
    with pytest.raises(osca.BudgetError):
        estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=right, c0=0, run_dir=tmp_path, progress=False)
    with pytest.raises(osca.DataError, match="not unique"):
        estimate(graph(), "solve", PROBLEMS + PROBLEMS[:1], CONFIGS, verify=right, c0=1, run_dir=tmp_path,
                 progress=False)
    with pytest.raises(osca.ConfigError, match="no node named 'review'"):
        estimate(graph(), "review", PROBLEMS, CONFIGS, verify=right, c0=1, run_dir=tmp_path, progress=False)
    with pytest.raises(osca.ConfigError, match="module:name"):
        load_spec("no_colon")
    with pytest.raises(osca.ConfigError, match="has no 'nothing'"):
        load_spec(SPEC.replace(":spec", ":nothing"))


def test_cli_writes_counts_and_resumes(tmp_path):
    run = [sys.executable, "-m", "osca", "estimate", SPEC, "--run-dir", str(tmp_path)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "hot" in first.stdout and "8 / 12" in first.stdout  # hot: 4 + 2 + 2 of 12
    assert (osca.load_counts(tmp_path / "counts.json").correct == EXPECTED).all()
    again = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and len((tmp_path / "samples.jsonl").read_text().splitlines()) == 24
    other_seed = subprocess.run(run + ["--seed", "1"], capture_output=True, text=True, timeout=300)
    assert other_seed.returncode == 2 and "holds samples made with another seed" in other_seed.stderr
    assert "Traceback" not in other_seed.stderr
    bad = subprocess.run([sys.executable, "-m", "osca", "estimate", "nope:spec"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot import 'nope'")


def test_spec_loads_by_file_path():
    assert load_spec(SPEC).step == "solve" and spec().c0 == 4


def test_learn_steps_coordinate_wise(tmp_path):
    from typing import TypedDict

    import litellm
    from langgraph.graph import END, START, StateGraph

    from osca import SamplingConfig
    from osca.estimate import Problem, learn_steps
    from osca.providers.scripted import register_script

    def planner(messages, index, params):  # careful plans help "a" problems, bold plans help "b" problems
        return "careful" if (params.get("temperature") or 0) < 0.5 else "bold"

    def coder(messages, index, params):
        text = messages[-1]["content"]
        fits = ("careful" in text and "task a" in text) or ("bold" in text and "task b" in text)
        return "right" if fits and (index % 2 == 0 or (params.get("temperature") or 0) > 0.5) else "wrong"

    plan_model, code_model = register_script("steps-plan", planner), register_script("steps-code", coder)

    class State(TypedDict, total=False):
        task: str
        plan: str
        answer: str

    def plan(state):
        reply = litellm.completion(model=plan_model, messages=[{"role": "user", "content": state["task"]}])
        return {"plan": reply.choices[0].message.content}

    def code(state):
        prompt = f"{state['task']} with a {state['plan']} plan"
        return {"answer": litellm.completion(model=code_model, messages=[{"role": "user", "content": prompt}])
                .choices[0].message.content}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("code", code)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "code")
    builder.add_edge("code", END)
    problems = [Problem(id=f"{kind}{j}", input={"task": f"task {kind}"}) for kind in "ab" for j in range(4)]
    steps = {"plan": [SamplingConfig(name="careful", temperature=0.2), SamplingConfig(name="bold", temperature=0.9)],
             "code": [SamplingConfig(name="cool", temperature=0.2), SamplingConfig(name="warm", temperature=0.9)]}
    reports = learn_steps(builder, steps, problems, verify=lambda p, s: s["answer"] == "right", c0=2, budget=2,
                          run_dir=tmp_path, default={"plan": "careful", "code": "cool"}, progress=False)
    assert [r.step for r in reports] == ["plan", "code"]
    plan_counts = reports[0].counts
    assert plan_counts.correct.sum() > 0 and (plan_counts.runs == 2).all()
    assert reports[0].learned.allocation.total == 2 and reports[1].learned.allocation.total == 2
    # the code step was estimated with the plan step running its learned sampler
    assert reports[0].sampler.ledger.total().samples == 2 * len(problems) * 2 * 2  # 2 per run, 16 runs
    assert reports[1].row.osca_test >= reports[1].row.uniform_test - 1e-12
    assert (tmp_path / "plan" / "counts.json").exists() and (tmp_path / "code" / "counts.json").exists()
    assert reports[0].test_problems == reports[1].test_problems and len(reports[0].test_problems) == 4
    from osca.estimate import end_to_end

    test = [p for p in problems if p.id in reports[0].test_problems]
    verify = lambda p, s: s["answer"] == "right"  # noqa: E731
    learned = end_to_end(builder, {r.step: r.sampler for r in reports}, test, verify=verify)
    default = end_to_end(builder, {}, test, verify=verify)
    assert 0.0 <= default <= 1.0 and 0.0 <= learned <= 1.0
    # as it is, the graph plans "careful" (no temperature) and codes sample 0 (no seed): right exactly on "a" tasks
    assert default == sum(p.id.startswith("a") for p in test) / len(test)


def test_ray_executor_matches_the_local_one(tmp_path):
    ray = pytest.importorskip("ray", reason="pip install 'osca[ray]'")
    from osca.estimate import RayExecutor

    here = Path(__file__).parent
    local = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=right, c0=4, run_dir=tmp_path / "local",
                     progress=False)
    executor = RayExecutor(num_cpus=2, include_dashboard=False, log_to_driver=False,
                           runtime_env={"env_vars": {"PYTHONPATH": str(here)}})  # workers import estimate_spec
    try:
        remote = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=right, c0=4, run_dir=tmp_path / "ray",
                          progress=False, executor=executor)
    finally:
        ray.shutdown()
    assert (remote.correct == local.correct).all() and (remote.runs == local.runs).all()
    assert len((tmp_path / "ray" / "samples.jsonl").read_text().splitlines()) == 24
