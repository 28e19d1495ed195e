"""Agentless as a LangGraph graph, one node per stage of the paper's figure:

    START ─┬─ localize_files → localize_elements → localize_edits → merge_locations
           │      → repair → extract_patches → normalize ─┐
           └─ write_reproduction ─────────────────────────┴→ run_tests → select → END

Every LLM call is an `AllocatedSampler` call site (named after its node) sharing one `SampleCache` and one
`Ledger`: a re-run replays what was drawn, and spend is itemized per step. The repair step draws its
candidates per a learned allocation over configurations = model x temperature x location set: a
configuration names its location set in `prompt_variant`. Model output never runs on the host: patches and
the reproduction script run only in the Docker sandbox (`testing.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

from osca import Allocation, SamplingConfig
from osca.cache import SampleCache
from osca.exceptions import ConfigError, DataError
from osca.ledger import Ledger
from osca.sandbox.container import Sandbox
from osca.selectors import extract_code

from . import prompts
from .edits import EditError, apply_edits, make_diff, normalized_patch, parse_edits
from .repo import (Element, elements, find_element, merge_intervals, numbered, parse_file_list, parse_locations,
                   python_files, repo_tree, skeleton)
from .select import PatchCandidate, Selection, select_patch
from .swebench import SWEInstance
from .testing import InstanceTests

__all__ = ["Agentless", "AgentlessSettings", "AgentlessState", "RepoFiles", "default_repair"]

Intervals = dict[str, list[tuple[int, int]]]
"""path -> sorted, disjoint 1-based inclusive line intervals."""


class AgentlessSettings(BaseModel):
    """How each stage samples and tests. The repair step's configurations and allocation are separate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """LiteLLM model for localization and the reproduction script (e.g. "openai/gpt-4o")."""
    top_files: int = Field(default=3, ge=1)
    """Files kept from file-level localization."""
    edit_samples: int = Field(default=4, ge=1)
    """Edit-location samples (Agentless: 4, merged pairwise into location sets)."""
    edit_temperature: float = Field(default=0.8, ge=0)
    location_sets: dict[str, list[int]] = Field(
        default_factory=lambda: {"loc_merged_0-1": [0, 1], "loc_merged_2-3": [2, 3]})
    """Location set name -> the edit-location samples merged into it (the paper's 0-1 and 2-3)."""
    context: int = Field(default=10, ge=0)
    """Lines of context around each edit location shown to (and editable by) the repair step."""
    reproduction_samples: int = Field(default=2, ge=0)
    """Candidate reproduction scripts (0: select without a reproduction test)."""
    max_tokens: int = Field(default=2048, ge=16)
    test_timeout: float = Field(default=60.0, gt=0)
    """Seconds per test (pytest-timeout) in the sandbox."""
    wall_clock: float = Field(default=600.0, gt=0)
    """Seconds per sandbox job (a whole test run or one reproduction run)."""
    test_workers: int = Field(default=2, ge=1)
    """Sandbox jobs in flight at once."""
    max_file_lines: int = Field(default=400, ge=10)
    """A file shown whole (when nothing finer was localized) is cut after this many lines."""

    @model_validator(mode="after")
    def _check_sets(self) -> AgentlessSettings:
        for name, idx in self.location_sets.items():
            if not idx or any(not 0 <= i < self.edit_samples for i in idx):
                raise ValueError(f"location set {name!r} must name edit samples in 0..{self.edit_samples - 1}, "
                                 f"got {idx}")
        if not self.location_sets:
            raise ValueError("at least one location set is needed")
        return self


def default_repair(model: str, sets: Sequence[str], temperatures: Sequence[float] = (0.8,),
                   samples: int = 2) -> tuple[list[SamplingConfig], Allocation]:
    """A uniform repair allocation over model x temperature x location set (`samples` each)."""
    configs = [SamplingConfig(name=f"t{t}_{s}", model=model, temperature=t, prompt_variant=s)
               for t in temperatures for s in sets]
    return configs, Allocation({c.name: samples for c in configs})


class RepoFiles:
    """The checked-out files as the nodes see them: each read, and its elements found, at most once per solve
    (the checkout does not change during one)."""

    def __init__(self, repo: str | Path) -> None:
        self.repo = Path(repo)
        self._text: dict[str, str] = {}
        self._elements: dict[str, list[Element]] = {}

    def text(self, path: str) -> str:
        if path not in self._text:
            self._text[path] = (self.repo / path).read_text(encoding="utf-8", errors="replace")
        return self._text[path]

    def lines(self, path: str) -> int:
        source = self.text(path)  # lines end at "\n" only, as the edit and numbering code count them
        return source.count("\n") + (not source.endswith("\n"))

    def elements(self, path: str) -> list[Element]:
        """The file's elements; [] when it does not parse."""
        if path not in self._elements:
            try:
                self._elements[path] = elements(path, self.text(path))
            except DataError:
                self._elements[path] = []
        return self._elements[path]


class AgentlessState(TypedDict, total=False):
    instance: SWEInstance
    repo: str
    files: list[str]
    """File-level localization: real files, most relevant first."""
    related: dict[str, list[str]]
    """path -> related elements ("class: Foo", "function: Foo.bar")."""
    edit_locations: list[Intervals]
    """One entry per edit-location sample."""
    location_sets: dict[str, Intervals]
    candidates: list[PatchCandidate]
    reproduction: dict[str, Any]
    """The reproduction script kept (or None) and what each candidate script did on the original code."""
    regression_tests: list[str]
    selection: Selection
    answers: dict[str, list[str]]
    """Raw model answers of each localization step (for the trajectory)."""
    ledger: Ledger
    """Where this instance's spend is recorded."""
    tests: InstanceTests
    """This instance's sandbox tests (one repository snapshot for both branches)."""
    sources: RepoFiles
    """This instance's checked-out files, each read once."""
    related_spans: Intervals
    """The related elements' line spans (localize_edits shows them; merge_locations falls back to them)."""


class Agentless:
    """The pipeline's stages as graph nodes, bound to settings, the repair allocation and a sandbox.

    Args:
        settings: sampling and testing settings of every stage.
        repair_configs, repair_allocation: the repair step's configurations (model x temperature x location
            set, the set in `prompt_variant`) and samples per configuration, e.g. learned with
            `osca.learn_allocation` (see examples/agentless_allocation.py).
        sandbox: where patches and reproduction scripts run (default: a fresh Docker container per job).
        cache, ledger: shared by every call site (a re-run replays cached samples).
    """

    def __init__(self, settings: AgentlessSettings, repair_configs: Sequence[SamplingConfig],
                 repair_allocation: Allocation | Mapping[str, int], *, sandbox: Sandbox | None = None,
                 cache: SampleCache | None = None, ledger: Ledger | None = None) -> None:
        self.settings = settings
        self.repair_configs = list(repair_configs)
        self.repair_allocation = Allocation(dict(repair_allocation))
        missing = sorted(set(self.repair_allocation) - {c.name for c in self.repair_configs})
        if missing:
            raise ConfigError(f"the repair allocation names configuration(s) {missing} that are not among the "
                              f"repair configurations ({', '.join(c.name for c in self.repair_configs)})")
        unknown = {c.prompt_variant for c in self.repair_configs} - set(settings.location_sets) - {None}
        if unknown:
            raise ConfigError(f"repair configurations name unknown location set(s) {sorted(unknown)} "
                              f"(known: {', '.join(settings.location_sets)})")
        self.sandbox = sandbox
        self.cache = cache
        self.ledger = ledger or Ledger()

    # ------------------------------------------------------------------------------------------ graph

    def graph(self) -> Any:
        """The compiled graph, built on first use and shared by every solve (nothing in it is per instance)."""
        return self._graph

    @cached_property
    def _graph(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        b = StateGraph(AgentlessState)
        chain = ["localize_files", "localize_elements", "localize_edits", "merge_locations", "repair",
                 "extract_patches", "normalize"]
        for name in [*chain, "write_reproduction", "run_tests", "select"]:
            b.add_node(name, getattr(self, name))
        b.add_edge(START, chain[0])
        for a, z in zip(chain, chain[1:]):
            b.add_edge(a, z)
        b.add_edge(START, "write_reproduction")
        b.add_edge([chain[-1], "write_reproduction"], "run_tests")  # waits for both branches
        b.add_edge("run_tests", "select")
        b.add_edge("select", END)
        return b.compile()

    def solve(self, instance: SWEInstance, repo: str | Path, *, ledger: Ledger | None = None) -> AgentlessState:
        """Run the whole graph on one instance whose repository is checked out at `repo`; its spend goes to
        `ledger` (default: the agent's)."""
        s = self.settings
        tests = InstanceTests(repo, sandbox=self.sandbox, timeout=s.test_timeout, wall_clock=s.wall_clock,
                              workers=s.test_workers)
        return self.graph().invoke({"instance": instance, "repo": str(repo), "answers": {},
                                    "ledger": ledger or self.ledger, "tests": tests, "sources": RepoFiles(repo)})

    # ------------------------------------------------------------------------------------------ LLM calls

    def _ask(self, state: AgentlessState, step: str, prompt: str, n: int = 1,
             temperature: float = 0.0) -> list[str]:
        """`n` answers from the localization model, through a one-configuration sampler (cached, ledgered)."""
        from osca.sampler import AllocatedSampler

        config = SamplingConfig(name=step, model=self.settings.model, temperature=temperature)
        sampler = AllocatedSampler([config], {step: n}, call_site=step, cache=self.cache, ledger=state["ledger"],
                                   seed=0)
        resp = sampler.completion(messages=[{"role": "user", "content": prompt}],
                                  max_tokens=self.settings.max_tokens)
        return [c.text or "" for c in resp.candidates]

    # ------------------------------------------------------------------------------------------ nodes

    def localize_files(self, state: AgentlessState) -> dict[str, Any]:
        repo, problem = Path(state["repo"]), state["instance"].problem_statement
        known = python_files(repo, include_tests=False)
        prompt = prompts.file_localization(problem, repo_tree(known), self.settings.top_files)
        answers = self._ask(state, "localize_files", prompt)
        files = parse_file_list(answers[0], known, self.settings.top_files)
        return {"files": files, "answers": {**state["answers"], "localize_files": answers}}

    def localize_elements(self, state: AgentlessState) -> dict[str, Any]:
        skeletons = {}
        for path in state["files"]:
            try:
                skeletons[path] = skeleton(state["sources"].text(path))
            except DataError:  # a file that does not parse is skipped, like Agentless does
                continue
        if not skeletons:
            return {"related": {}}
        answers = self._ask(state, "localize_elements",
                            prompts.related_elements(state["instance"].problem_statement, skeletons))
        return {"related": parse_locations(answers[0], list(skeletons)),
                "answers": {**state["answers"], "localize_elements": answers}}

    def localize_edits(self, state: AgentlessState) -> dict[str, Any]:
        spans = self._related_spans(state)
        if not spans:
            return {"edit_locations": [], "related_spans": spans}
        snippets = {p: "\n...\n".join(numbered(state["sources"].text(p), s, e) for s, e in iv)
                    for p, iv in spans.items()}
        prompt = prompts.edit_locations(state["instance"].problem_statement, snippets)
        answers = self._ask(state, "localize_edits", prompt, n=self.settings.edit_samples,
                            temperature=self.settings.edit_temperature)
        found = [self._intervals(state, parse_locations(a, list(spans))) for a in answers]
        return {"edit_locations": found, "related_spans": spans,
                "answers": {**state["answers"], "localize_edits": answers}}

    def merge_locations(self, state: AgentlessState) -> dict[str, Any]:
        """Union the edit-location samples of each set, widened by `context` lines; an empty set falls back
        to the related elements' spans, so every set has something to repair."""
        fallback = state["related_spans"]
        samples = state.get("edit_locations") or []
        sets: dict[str, Intervals] = {}
        for name, idx in self.settings.location_sets.items():
            merged: dict[str, list[tuple[int, int]]] = {}
            for i in idx:
                for path, iv in (samples[i] if i < len(samples) else {}).items():
                    merged.setdefault(path, []).extend(iv)
            sets[name] = {p: merge_intervals(iv, context=self.settings.context,
                                             max_line=state["sources"].lines(p)) for p, iv in merged.items()} \
                or fallback
        return {"location_sets": sets}

    def repair(self, state: AgentlessState) -> dict[str, Any]:
        """Draw candidates per the repair allocation; each configuration sees the code of its location set."""
        from osca.sampler import AllocatedSampler

        sets = state["location_sets"]
        if not any(sets.values()):  # nothing localized (merge_locations fills every set, or none)
            return {"candidates": []}
        problem = state["instance"].problem_statement
        by_set = {name: prompts.repair(problem, self._snippets(state, iv)) for name, iv in sets.items()}
        variants = {name: (lambda _msgs, p=p: [{"role": "user", "content": p}]) for name, p in by_set.items()}
        sampler = AllocatedSampler(self.repair_configs, self.repair_allocation, call_site="repair",
                                   cache=self.cache, ledger=state["ledger"], prompt_variants=variants, seed=0)
        first = next(iter(sets))  # configurations without a location set see the first one
        resp = sampler.completion(messages=[{"role": "user", "content": by_set[first]}],
                                  max_tokens=self.settings.max_tokens)
        by_name = {c.name: c for c in self.repair_configs}
        return {"candidates": [
            PatchCandidate(config=c.config, index=c.index, text=c.text or "", error=c.error,
                           location_set=by_name[c.config].prompt_variant or first)
            for c in resp.candidates]}

    def extract_patches(self, state: AgentlessState) -> dict[str, Any]:
        """Apply each candidate's SEARCH/REPLACE edits inside its localized lines; keep a `git diff` of the
        result, or say why there is none."""
        out = []
        for cand in state["candidates"]:
            if cand.error:
                out.append(cand)
                continue
            allowed = state["location_sets"].get(cand.location_set) or {}
            try:
                edits = parse_edits(cand.text)
                if not edits:
                    raise EditError("the answer has no SEARCH/REPLACE edit")
                old = {p: state["sources"].text(p) for p in allowed}
                new = apply_edits(old, edits, allowed=allowed)
                patch = make_diff(old, new)
                out.append(cand.model_copy(update={"patch": patch, "edited": new}))
            except EditError as e:
                out.append(cand.model_copy(update={"error": f"edit: {e}"}))
        return {"candidates": out}

    def normalize(self, state: AgentlessState) -> dict[str, Any]:
        """Key each patch by its normalized form (ast round trip, no comments or docstrings): the unit of
        testing and of the majority vote. A patch that changes nothing but comments gets no key."""
        out = []
        for cand in state["candidates"]:
            if not cand.patch:
                out.append(cand)
                continue
            key = normalized_patch({p: state["sources"].text(p) for p in cand.edited}, cand.edited)
            out.append(cand.model_copy(update={"key": key} if key else
                                       {"error": "the patch changes only comments, docstrings or layout"}))
        return {"candidates": out}

    def write_reproduction(self, state: AgentlessState) -> dict[str, Any]:
        n = self.settings.reproduction_samples
        if n == 0:
            return {"reproduction": {"script": None, "tried": []}}
        answers = self._ask(state, "write_reproduction", prompts.reproduction(state["instance"].problem_statement),
                            n=n, temperature=self.settings.edit_temperature if n > 1 else 0.0)
        scripts = [extract_code(a) for a in answers]
        return {"reproduction": state["tests"].choose_reproduction(scripts)}

    def run_tests(self, state: AgentlessState) -> dict[str, Any]:
        keyed = {c.key: c.patch for c in state["candidates"] if c.key}
        if not keyed:  # nothing to test: spare the sandbox runs
            return {"regression_tests": []}
        tests = state["tests"]
        regression = tests.regression_tests()
        script = state["reproduction"].get("script")
        outcomes = tests.check_patches(keyed, regression, script)
        return {"regression_tests": regression,
                "candidates": [c.model_copy(update=outcomes[c.key].as_update()) if c.key in outcomes else c
                               for c in state["candidates"]]}

    def select(self, state: AgentlessState) -> dict[str, Any]:
        return {"selection": select_patch(state["candidates"])}

    # ------------------------------------------------------------------------------------------ helpers

    def _related_spans(self, state: AgentlessState) -> Intervals:
        """The related elements' line spans; a file with none found is shown whole (up to a limit)."""
        spans: Intervals = {}
        sources = state["sources"]
        for path in state.get("files", []):
            names = (state.get("related") or {}).get(path, [])
            found = [e for e in (find_element(sources.elements(path), n) for n in names) if e]
            spans[path] = merge_intervals([(e.start, e.end) for e in found]) or \
                [(1, min(sources.lines(path), self.settings.max_file_lines))]
        return spans

    def _intervals(self, state: AgentlessState, locations: dict[str, list[str]]) -> Intervals:
        """Edit locations ("line: 12", "function: Foo.bar", "class: Foo") -> line intervals per file."""
        out: Intervals = {}
        for path, locs in locations.items():
            els, last = state["sources"].elements(path), state["sources"].lines(path)
            iv = []
            for loc in locs:
                kind, _, value = loc.partition(":")
                if kind.strip() == "line" and value.strip().isdigit() and 1 <= int(value) <= last:
                    iv.append((int(value), int(value)))
                elif (el := find_element(els, loc)) is not None:
                    iv.append((el.start, el.end))
            if iv:
                out[path] = merge_intervals(iv)
        return out

    def _snippets(self, state: AgentlessState, intervals: Intervals) -> dict[str, str]:
        """The code the repair step sees: each file's intervals, without line numbers (the SEARCH text must
        match the file), separated by "...". """
        out = {}
        for path, iv in intervals.items():
            lines = state["sources"].text(path).split("\n")
            out[path] = "\n...\n".join("\n".join(lines[s - 1:e]) for s, e in iv)
        return out
