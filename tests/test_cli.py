"""The `osca` command line, run as a user would: a subprocess of the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import osca

OSCA = [sys.executable, "-m", "osca"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OSCA, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def counts_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    matrix = osca.CountMatrix(("a", "b", "c"), tuple(f"p{j}" for j in range(40)),
                              rng.binomial(8, rng.uniform(0, 0.6, (3, 40))), [8, 8, 8])
    path = tmp_path / "counts.json"
    matrix.save(path)
    return path


def test_learn_writes_the_documented_json(counts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "alloc.json"
    proc = run("learn", counts_file, "--budget", "5", "--seed", "1", "-o", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert set(doc) == {"budget", "allocation", "objective", "upper_bound"}
    assert doc["budget"] == 5 and sum(doc["allocation"].values()) == 5
    assert doc["objective"] <= doc["upper_bound"] + 1e-12
    expected = osca.learn_allocation(osca.load_counts(counts_file), 5, seed=1)
    assert doc["allocation"] == dict(expected.allocation)
    assert osca.Allocation.load(out) == expected.allocation


def test_curve_json_rows(counts_file: Path, tmp_path: Path) -> None:
    plot = tmp_path / "curve.png"
    proc = run("curve", counts_file, "--budgets", "2,4", "--split", "0.5", "--default", "b", "--json",
               "--plot", plot)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["budget"] for r in rows] == [2, 4]
    for r in rows:
        assert set(r) >= {"budget", "osca", "optimal_pure", "uniform", "default"}
        assert set(r["osca"]) >= {"test", "train", "allocation", "upper_bound"}
        assert sum(r["osca"]["allocation"].values()) == r["budget"]
        assert r["optimal_pure"]["config"] in {"a", "b", "c"}
        assert 0.0 <= r["default"]["test"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curve_repeated_splits_give_a_paired_verdict(counts_file: Path) -> None:
    proc = run("curve", counts_file, "--budgets", "2,4", "--split", "0.5", "--repeats", "4", "--default", "b")
    assert proc.returncode == 0, proc.stderr
    assert "Nadeau-Bengio" in proc.stdout
    for budget in (2, 4):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"C = {budget}: the learned mix is "))
        assert "optimal pure" in line and "the default b" in line
        assert any(v in line for v in ("better than", "worse than", "indistinguishable from"))
    doc = json.loads(run("curve", counts_file, "--budgets", "4", "--split", "0.5", "--repeats", "4", "--default",
                         "b", "--json").stdout)
    vs = doc["rows"][0]["default"]["osca_minus"]
    assert vs["wins"] + vs["ties"] + vs["losses"] == 4 and vs["se_corrected"] > 0
    assert doc["unit"] == "samples"


def test_curve_train_sizes_table_json_and_plot(counts_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "sizes.png"
    proc = run("curve", counts_file, "--budgets", "3", "--train-sizes", "10,20,30", "--repeats", "3",
               "--default", "a", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    assert "held-out gain by training size" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(run("curve", counts_file, "--budgets", "3", "--train-sizes", "10,30", "--repeats", "3",
                         "--json").stdout)
    assert [(r["n_train"], r["n_test"]) for r in doc["rows"]] == [(10, 30), (30, 10)]
    pool = osca.load_counts(counts_file)
    from osca.evaluate import curve

    expected = curve([pool.split(10 / 40, s) for s in range(3)], [3])[0]
    assert doc["rows"][0]["osca"]["test"] == pytest.approx(expected.osca_test)


def test_curve_table_on_the_release(swebench_path: Path) -> None:
    proc = run("curve", swebench_path, "--budgets", "1-3", "--default", "gpt4o_0.8")
    assert proc.returncode == 0, proc.stderr
    assert "in-sample" in proc.stdout and "gpt4o_0.8" in proc.stdout
    assert "0.2196" in proc.stdout  # C = 1: the best single configuration's pass@1, as published


def test_budget_ranges_and_lists() -> None:
    from osca.cli import parse_budgets

    assert parse_budgets("1-4") == [1, 2, 3, 4]
    assert parse_budgets("2, 4,8") == [2, 4, 8]
    for bad in ("0-3", "x", "4,-1", "3-1"):
        with pytest.raises(osca.BudgetError):
            parse_budgets(bad)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _release(**override) -> str:
    doc = {"settings": [{"name": "x", "runs": 4}, {"name": "y", "runs": 4}], "training_instances": ["i1", "i2"],
           "testing_instances": ["i1", "i2"], "train": {"0": [1, 2], "1": [0, 4]}, "test": {"0": [1, 2], "1": [0, 4]}}
    doc.update(override)
    return json.dumps(doc)


@pytest.mark.parametrize(("args", "needle"), [
    (("learn", "{missing}", "--budget", "4"), "no such file"),
    (("learn", "{malformed}", "--budget", "4"), "malformed JSON"),
    (("learn", "{over}", "--budget", "4"), "count exceeds runs"),
    (("learn", "{negative}", "--budget", "4"), "negative count"),
    (("learn", "{ragged}", "--budget", "4"), "ragged"),
    (("learn", "{good}", "--budget", "0"), "budget must be > 0"),
    (("learn", "{good}", "--budget", "-3"), "budget must be > 0"),
    (("learn", "{good}", "--budget", "4", "--method", "annealing"), "unknown method"),
    (("curve", "{good}", "--budgets", "0-4"), "budgets must be > 0"),
    (("curve", "{good}", "--budgets", "1-2", "--default", "nope"), "unknown configuration 'nope'"),
    (("curve", "{good}", "--budgets", "1-2", "--split", "1.5"), "train fraction"),
    (("curve", "{good}", "--budgets", "1-2", "--split", "half"), "--split"),
    (("curve", "{good}", "--budgets", "1-2", "--train-sizes", "1", "--repeats", "1"), "--repeats >= 2"),
    (("curve", "{good}", "--budgets", "1-2", "--train-sizes", "a,b", "--repeats", "2"), "--train-sizes must"),
    (("curve", "{good}", "--budgets", "1-2", "--train-sizes", "9", "--repeats", "2"), "training sizes must lie"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    files = {
        "missing": tmp_path / "absent.json",
        "malformed": _write(tmp_path, "bad.json", "{not json"),
        "over": _write(tmp_path, "over.json", _release(train={"0": [5, 2], "1": [0, 4]})),
        "negative": _write(tmp_path, "neg.json", _release(test={"0": [-1, 2], "1": [0, 4]})),
        "ragged": _write(tmp_path, "ragged.json", _release(train={"0": [1, 2, 3], "1": [0, 4]})),
        "good": _write(tmp_path, "good.json", _release()),
    }
    proc = run(*(a.format(**files) for a in args))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_importing_osca_and_learning_stay_light() -> None:
    code = ("import sys, osca, osca.cli, osca.evaluate; "
            "heavy = [m for m in ('litellm', 'langgraph', 'docker', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
