"""Estimating counts at a graph step: right counts, persisted as it goes, resumable, usable by the learner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import osca
from osca.estimate import estimate, load_spec

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
    calls = []

    def flaky(problem, final):
        calls.append(problem.id)
        if problem.id == "p1":
            raise RuntimeError("verifier crashed")
        return right(problem, final)

    with pytest.raises(osca.DataError, match="no finished sample .* 'p1'"):
        estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=flaky, c0=4, run_dir=tmp_path, progress=False)
    errors = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sum(r["error"] is not None for r in errors) == 8 and all(
        "verifier crashed" in r["error"] for r in errors if r["error"])
    calls.clear()
    matrix = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=right, c0=4, run_dir=tmp_path, progress=False)
    assert (matrix.correct == EXPECTED).all()


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    log = tmp_path / "samples.jsonl"
    done = [{"problem": "p0", "config": "cold", "sample": k, "correct": True, "error": None} for k in range(4)]
    log.write_text("".join(json.dumps(r) + "\n" for r in done) + '{"problem": "p0", "conf')  # torn last line
    seen = []

    def counting(problem, final):
        seen.append((problem.id, final["answer"]))
        return right(problem, final)

    matrix = estimate(graph(), "solve", PROBLEMS, CONFIGS, verify=counting, c0=4, run_dir=tmp_path, progress=False)
    assert len(seen) == 24 - 4  # the four logged samples were not drawn again
    assert (matrix.correct == EXPECTED).all()


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
    bad = subprocess.run([sys.executable, "-m", "osca", "estimate", "nope:spec"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot import 'nope'")


def test_spec_loads_by_file_path():
    assert load_spec(SPEC).step == "solve" and spec().c0 == 4
