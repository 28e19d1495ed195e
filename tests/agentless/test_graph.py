"""The Agentless graph's behaviour on the mini instances without Docker (scripted model, a fake sandbox): a failed
call degrades its stage, the deadline skips stages, every prompt fits its token budget, the per-stage report,
and the reproduction branch's place on few cores."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import litellm
import pytest
import swe_mini

from osca import Allocation, SamplingConfig
from osca.agents.agentless.graph import Agentless, AgentlessSettings
from osca.agents.agentless.run import trajectory
from osca.providers.scripted import calls, register_script
from osca.sandbox.container import Job, JobResult

STAGES = ["localize_files", "localize_elements", "localize_edits", "merge_locations", "repair", "extract_patches",
          "normalize", "write_reproduction", "run_tests", "select"]
_names = itertools.count()


class QuietSandbox:
    """Runs nothing: every job 'prints' the same output and reports no tests (no Docker needed)."""

    def __init__(self, output: str = "Other issues\n") -> None:
        self.output = output
        self.jobs: list[Job] = []

    def run(self, job: Job) -> JobResult:
        self.jobs.append(job)
        return JobResult(runner_ok=True, exit_code=0, duration=0.01, output=self.output, tests={})

    async def arun(self, job: Job) -> JobResult:
        return self.run(job)


def scripted(play=swe_mini.script) -> tuple[str, list[str]]:
    """A fresh scripted model playing `play`, and the prompts it was sent, in order."""
    prompts: list[str] = []

    def script(messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
        prompts.append(messages[-1]["content"])
        return play(messages, index, params)

    return register_script(f"graph-{next(_names)}", script), prompts


def agent(model: str, **settings: Any) -> Agentless:
    s = AgentlessSettings.model_validate({"model": model, "context": 1, "reproduction_samples": 0, **settings})
    configs = [SamplingConfig(name="c01", model=model, temperature=0.4, prompt_variant="loc_merged_0-1"),
               SamplingConfig(name="c23", model=model, temperature=0.8, prompt_variant="loc_merged_2-3")]
    return Agentless(s, configs, Allocation({"c01": 2, "c23": 2}), sandbox=QuietSandbox())


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    instances, repos, _ = swe_mini.build_all(tmp_path_factory.mktemp("mini"))
    return instances[0], repos / "osca-mini__calc"  # calc: "calc.ops.add returns the difference"


def test_a_failed_call_degrades_its_stage_and_the_instance_goes_on(mini) -> None:
    def play(messages, index, params):
        if "Outlines of the files" in messages[-1]["content"]:
            raise litellm.ContextWindowExceededError(message="3324 tokens requested", model="m", llm_provider="x")
        return swe_mini.script(messages, index, params)

    model, _ = scripted(play)
    state = agent(model).solve(*mini)
    report = state["report"]
    assert "ContextWindowExceededError" in report["localize_elements"]["error"] and state["related"] == {}
    # no element was named, so the edit-location step saw the file's functions (not its module docstring)
    assert state["related_spans"] == {"calc/ops.py": [(4, 6), (9, 11)]}
    assert len(state["candidates"]) == 4 and state["selection"].patch
    assert set(report) == set(STAGES) and all("seconds" in r for r in report.values())
    record = trajectory(state)  # the trajectory keeps the report
    assert record["report"]["localize_elements"]["error"] == report["localize_elements"]["error"]


@pytest.mark.parametrize(
    ("answer", "fallback"),
    [
        ("I think the problem is in the addition helper.", "no known file"),
        # Qwen2.5-Coder-0.5B's real answer on a real repository: the tree, re-indented, instead of a choice
        ("```python\ncalc/\n    __init__.py\n    fmt.py\n    ops.py\n```", "3 files"),
    ],
    ids=["names-no-known-file", "echoes-the-tree"],
)
def test_an_unusable_file_answer_falls_back_to_the_files_closest_to_the_issue(mini, answer, fallback) -> None:
    def play(messages, index, params):
        if "Python files of the repository" in messages[-1]["content"]:
            return answer
        return swe_mini.script(messages, index, params)

    model, _ = scripted(play)
    state = agent(model, top_files=1).solve(*mini)
    assert state["files"] == ["calc/ops.py"]
    assert fallback in state["report"]["localize_files"]["fallback"]
    assert state["selection"].patch


def test_past_the_deadline_every_stage_but_select_is_skipped(mini) -> None:
    model, prompts = scripted()
    steps: list[set[str]] = []
    state = agent(model).solve(*mini, max_seconds=0, on_step=lambda s: steps.append(set(s.get("report", {}))))
    assert prompts == [] and calls(model.split("/", 1)[1]) == 0
    report = state["report"]
    assert all("time bound" in report[s]["skipped"] for s in STAGES if s != "select")
    assert "skipped" not in report["select"] and state["selection"].patch == ""
    assert steps[-1] == set(STAGES)


def test_on_few_cores_the_reproduction_waits_for_repair_and_each_step_is_reported(mini) -> None:
    model, prompts = scripted()
    steps: list[list[str]] = []
    a = agent(model, reproduction_samples=1, parallel_reproduction=False)
    state = a.solve(*mini, on_step=lambda s: steps.append(list(s.get("report", {}))))
    kinds = ["repro" if "tells whether this issue is present" in p else "edit" if "edit block" in p else "other"
             for p in prompts]
    assert kinds.index("repro") > max(i for i, k in enumerate(kinds) if k == "edit")
    # the state after each step: one more stage reported each time, in the chain's order
    assert [s for s in steps if s] == [STAGES[:k] for k in range(1, len(STAGES) + 1)]
    report = state["report"]
    assert report["repair"]["answers"] == 4 and report["repair"]["location_sets"] == ["loc_merged_0-1",
                                                                                      "loc_merged_2-3"]
    assert len(report["repair"]["prompt_tokens"]) == 2
    assert report["write_reproduction"]["scripts"] == 1 and report["write_reproduction"]["reproduces"] == 0
    assert report["localize_files"]["files"] == ["calc/ops.py"]


def test_every_prompt_fits_the_token_budget(mini) -> None:
    instance, repo = mini
    log = "\n".join(f"  File \"calc/ops.py\", line {i}, in add: value {i} was wrong" for i in range(400))
    long = instance.model_copy(update={"problem_statement": instance.problem_statement + "\n" + log})
    model, prompts = scripted()
    state = agent(model, max_prompt_tokens=300).solve(long, repo)
    assert prompts and all(litellm.token_counter(model=model, text=p) <= 300 for p in prompts)
    assert all("more lines not shown" in p for p in prompts)  # the problem statement was cut
    sizes = [n for r in state["report"].values() for n in r.get("prompt_tokens", [])]
    assert sizes and max(sizes) <= 300


def test_the_default_budget_is_the_models_context_window_less_the_answer() -> None:
    litellm.register_model({"graph-test/model-16k": {"max_input_tokens": 16000, "max_tokens": 16000,
                                                     "litellm_provider": "openai", "mode": "chat"}})
    assert agent("graph-test/model-16k", max_tokens=1000).prompt_budget == int(0.9 * 15000)
    assert agent("graph-test/unknown-model", max_tokens=192).prompt_budget == int(0.9 * (8192 - 192))
    assert agent("graph-test/unknown-model", max_prompt_tokens=500).prompt_budget == 500


STUCK_RUN = """
import sys, threading
sys.path.insert(0, {here!r})
import swe_mini, test_graph
from pathlib import Path
from osca.agents.agentless.run import run_instances

def play(messages, index, params):
    if "edit block" in messages[-1]["content"]:
        threading.Event().wait()  # the repair call never returns
    return swe_mini.script(messages, index, params)

instances, repos, _ = swe_mini.build_all(Path({tmp!r}))
model, _ = test_graph.scripted(play)
run_instances(test_graph.agent(model), instances[:1], run_dir=Path({tmp!r}) / "run", repos=repos)
"""


def test_an_interrupted_instance_leaves_its_trajectory_so_far(tmp_path: Path) -> None:
    """SIGTERM during the repair call: the trajectory written after each step holds the localization."""
    import json
    import signal
    import subprocess
    import sys
    import time

    code = STUCK_RUN.format(here=str(Path(__file__).parent), tmp=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    where = tmp_path / "run" / "trajectories" / "osca-mini__calc-1.json"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if where.exists() and "merge_locations" in where.read_text():
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended although its repair call never returns"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    record = json.loads(where.read_text())
    assert record["in_progress"] is True and record["files"] == ["calc/ops.py"]
    assert {"localize_files", "localize_elements", "localize_edits", "merge_locations"} <= set(record["report"])
    assert "repair" not in record["report"]
    assert not (tmp_path / "run" / "all_preds.jsonl").exists() or \
        (tmp_path / "run" / "all_preds.jsonl").read_text() == ""  # no prediction for an unfinished instance


def test_a_local_models_budget_is_its_own_context_window() -> None:
    """The local provider registers on first use and enters its models in LiteLLM's model map (32,768 tokens)."""
    assert agent("local/qwen2.5-coder-0.5b", max_tokens=768).prompt_budget == int(0.9 * (32768 - 768))
