"""A run directory's bookkeeping without running the graph: the spend log and where repositories come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

import swe_mini

from osca.agents.agentless.run import SPEND_LOG, repo_source, run_spend
from osca.agents.agentless.swebench import SWEInstance
from osca.exceptions import DataError
from osca.ledger import Caps, Ledger, Spend


def record(iid: str, **spend: float) -> str:
    return json.dumps({"instance_id": iid, "outcome": "done", "spend": spend})


def test_run_spend_adds_every_attempt_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    assert run_spend(tmp_path) == Spend()
    log = tmp_path / SPEND_LOG
    log.write_text(record("a", samples=3, prompt_tokens=10, dollars=0.5) + "\n"
                   + record("a", samples=1, completion_tokens=4, dollars=0.25) + "\n" + '{"instance_id": "b", "sp')
    assert run_spend(tmp_path) == Spend(samples=4, prompt_tokens=10, completion_tokens=4, dollars=0.75)


def test_run_spend_names_a_broken_line(tmp_path: Path) -> None:
    (tmp_path / SPEND_LOG).write_text(record("a", samples=1) + "\nnot json\n" + record("b", samples=1) + "\n")
    with pytest.raises(DataError, match=r"spend.jsonl:2: not a spend record"):
        run_spend(tmp_path)
    (tmp_path / SPEND_LOG).write_text(json.dumps({"instance_id": "a", "spend": {"euros": 1}}) + "\n")
    with pytest.raises(DataError, match=r"spend.jsonl:1"):
        run_spend(tmp_path)


def test_caps_say_which_is_exhausted() -> None:
    caps = Caps(samples=10, tokens=100, dollars=1.0)
    assert caps.exhausted(Spend(samples=9, prompt_tokens=99, dollars=0.99)) is None
    assert caps.exhausted(Spend(samples=10)) == "sample cap 10 reached (10 used)"
    assert "token cap 100" in caps.exhausted(Spend(prompt_tokens=60, completion_tokens=40))
    assert "dollar cap 1.0" in caps.exhausted(Spend(dollars=1.0))
    assert Caps().exhausted(Spend(samples=10**9, dollars=1e9)) is None


def test_repo_source_finds_owner__name_or_name_and_names_what_is_missing(tmp_path: Path) -> None:
    inst = SWEInstance.model_construct(repo="psf/requests")
    assert repo_source(None, inst) is None
    (tmp_path / "requests").mkdir()
    assert repo_source(tmp_path, inst) == tmp_path / "requests"
    (tmp_path / "psf__requests").mkdir()
    assert repo_source(tmp_path, inst) == tmp_path / "psf__requests"
    with pytest.raises(DataError, match="no clone of other/repo"):
        repo_source(tmp_path, SWEInstance.model_construct(repo="other/repo"))


def plain_data(value: object) -> bool:
    """JSON-like values and pydantic models made of them: what a checkpointer or a trajectory file can hold."""
    if isinstance(value, BaseModel):
        return all(plain_data(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and plain_data(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(map(plain_data, value))
    return value is None or isinstance(value, str | int | float | bool)


def test_a_solved_state_is_data_only_and_its_trajectory_is_the_state_as_it_is(tmp_path: Path) -> None:
    """Live objects (ledger, sandbox tests, file cache) travel in the graph's runtime context, so the state
    serializes as it is: the trajectory holds every key of the state, and the instance's own spend."""
    from test_graph import agent, scripted

    from osca.agents.agentless.run import trajectory

    instances, repos, _ = swe_mini.build_all(tmp_path)
    model, _ = scripted()
    ledger = Ledger()
    state = agent(model).solve(instances[0], repos / "osca-mini__calc", ledger=ledger)
    assert state["instance_id"] == "osca-mini__calc-1" and state["selection"].patch
    assert plain_data(dict(state)), {k: type(v).__name__ for k, v in state.items() if not plain_data(v)}
    record = json.loads(json.dumps(trajectory(state, ledger)))
    assert set(record) == {*state, "spend"}
    assert record["spend"]["repair/c01"]["samples"] == 2 and ledger.total(call_site="repair").samples == 4


def test_one_sampler_per_call_site_serves_a_whole_run_and_each_instance_keeps_its_own_spend(tmp_path: Path) -> None:
    from test_graph import QuietSandbox, scripted

    from osca import Allocation, SamplingConfig
    from osca.agents.agentless.graph import Agentless, AgentlessSettings
    from osca.agents.agentless.run import run_instances

    instances, repos, _ = swe_mini.build_all(tmp_path)
    model, _ = scripted()
    configs = [SamplingConfig(name="c01", model=model, temperature=0.4, prompt_variant="loc_merged_0-1"),
               SamplingConfig(name="first", model=model, temperature=0.8)]  # no set named: the first one
    agent = Agentless(AgentlessSettings(model=model, context=1, reproduction_samples=0), configs,
                      Allocation({"c01": 2, "first": 1}), sandbox=QuietSandbox())
    samplers = dict(agent.samplers)
    assert set(samplers) == {"localize_files", "localize_elements", "localize_edits", "repair"}
    summary = run_instances(agent, instances, run_dir=tmp_path / "run", repos=repos, workers=2)
    assert sorted(summary.done) == sorted(i.instance_id for i in instances)
    assert all(agent.samplers[site] is sampler for site, sampler in samplers.items())
    for inst in instances:  # each instance's spend is its own although the samplers are shared
        record = json.loads((tmp_path / "run" / "trajectories" / f"{inst.instance_id}.json").read_text())
        assert {k: v["samples"] for k, v in record["spend"].items()} == {
            "localize_files/localize_files": 1, "localize_elements/localize_elements": 1,
            "localize_edits/localize_edits": 4, "repair/c01": 2, "repair/first": 1}
        assert {c["location_set"] for c in record["candidates"] if c["config"] == "first"} == {"loc_merged_0-1"}
    # the agent's ledger adds the instances' up once: no call was recorded there directly
    assert agent.ledger.total().samples == 2 * 9 and agent.ledger.total(call_site="repair").samples == 6
