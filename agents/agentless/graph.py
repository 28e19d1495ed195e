"""Agentless as a LangGraph graph, one node per stage of the paper's figure:

    START ─┬─ localize_files → localize_elements → localize_edits → merge_locations
           │      → repair → extract_patches → normalize ─┐
           └─ write_reproduction ─────────────────────────┴→ run_tests → select → END

Every LLM call is an `AllocatedSampler` call site (named after its node) sharing one `SampleCache` and one
`Ledger`: a re-run replays what was drawn, and spend is itemized per step. The repair step draws its
candidates per a learned allocation over configurations = model x temperature x location set: a
configuration names its location set in `prompt_variant`. Model output never runs on the host: patches and
the reproduction script run only in the Docker sandbox (`testing.py`).

Real repositories with small local models (issue 14): every prompt is cut to a token budget (the model's
context window, LiteLLM's token counter); a stage whose call fails or whose answer is unusable degrades (its
error lands in the per-stage `report`, later stages go on with what they have) instead of ending the instance;
past the instance's deadline the remaining stages are skipped; and on a machine with few cores the
reproduction branch runs after repair instead of competing with localization for the model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

from osca import Allocation, SamplingConfig, litellm
from osca.cache import SampleCache
from osca.exceptions import ConfigError, DataError
from osca.ledger import Ledger
from osca.providers import ensure_provider
from osca.sandbox.container import Sandbox
from osca.selectors import extract_code

from . import prompts
from .edits import EditError, apply_edits, echoes, make_diff, normalized_patch, parse_edits
from .repo import (Element, elements, find_element, fit_lines, fit_sections, fit_tree, merge_intervals, numbered,
                   parse_file_list, parse_locations, python_files, rank_elements, rank_paths, resolve_path,
                   skeleton)
from .select import PatchCandidate, Selection, select_patch
from .swebench import SWEInstance
from .testing import InstanceTests, instance_tests

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from osca import AllocatedSampler

__all__ = ["Agentless", "AgentlessContext", "AgentlessSettings", "AgentlessState", "RepoFiles", "default_repair"]

Intervals = dict[str, list[tuple[int, int]]]
"""path -> sorted, disjoint 1-based inclusive line intervals."""


_GUESSED = 3  # elements shown of a file in which the model named none


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
    localize_max_tokens: int = Field(default=512, ge=16)
    """Answer tokens of the localization calls: file lists and locations are short, and a small model that echoes
    the prompt instead is cut off early (`max_tokens` bounds the repair and reproduction answers)."""
    max_prompt_tokens: int | None = Field(default=None, ge=256)
    """Tokens a prompt may take (counted with LiteLLM's `token_counter`); None: 90% of the model's context
    window (LiteLLM's `max_input_tokens`, 8,192 when LiteLLM does not know the model) less `max_tokens`."""
    env_image: str | None = None
    """Where the tests run: None in osca's base image over the checkout; "env" in the instance's image from
    `osca agentless env build`, "swebench" in SWE-bench's own, or the name of one image (see agentless.envs)."""
    parallel_reproduction: bool | None = None
    """Write the reproduction test alongside localization (the paper's graph); None: only on 4 or more cores,
    else after repair, so that one CPU-bound local model is not shared by both branches."""

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


@dataclass(frozen=True)
class AgentlessContext:
    """One solve's live objects, handed to every node in LangGraph's runtime context rather than the state, so
    that a state (and a trajectory) is data only."""

    ledger: Ledger
    """Where this instance's spend is recorded; its caps bind every call of the instance."""
    tests: InstanceTests
    """This instance's sandbox tests (one repository snapshot for both branches)."""
    sources: RepoFiles
    """This instance's checked-out files, each read once."""


def _merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    return {**(old or {}), **new}


class AgentlessState(TypedDict, total=False):
    instance_id: str
    problem: str
    """The issue to resolve (the instance's problem statement)."""
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
    answers: Annotated[dict[str, list[str]], _merge]
    """Raw model answers of each step that asks the localization model (for the trajectory)."""
    related_spans: Intervals
    """The related elements' line spans (localize_edits shows them; merge_locations falls back to them)."""
    deadline: float | None
    """Epoch seconds after which the remaining stages are skipped (None: no bound)."""
    report: Annotated[dict[str, dict[str, Any]], _merge]
    """stage -> what it did: seconds, prompt_tokens (LiteLLM's counts, one per prompt), what it produced, and
    `error` (the stage degraded) or `skipped` (past the deadline)."""


class Agentless:
    """The pipeline's stages as graph nodes, bound to settings, the repair allocation and a sandbox.

    Args:
        settings: sampling and testing settings of every stage.
        repair_configs, repair_allocation: the repair step's configurations (model x temperature x location
            set, the set in `prompt_variant`) and samples per configuration, e.g. learned with
            `osca.learn_allocation` (see examples/agentless_allocation.py).
        sandbox: where patches and reproduction scripts run (default: a fresh Docker container per job).
        cache, ledger: shared by every call site (a re-run replays cached samples); `ledger` is where a solve
            records its spend unless it is given its own.

    Each LLM call site (a node that asks a model) has one `AllocatedSampler`, built here once and shared by
    every instance the agent solves (`samplers`); a solve's calls pass its ledger.
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
        first = next(iter(settings.location_sets))  # configurations without a location set see the first one
        self.repair_configs = [c if c.prompt_variant else c.model_copy(update={"prompt_variant": first})
                               for c in self.repair_configs]
        self.sandbox = sandbox
        self.cache = cache
        self.ledger = ledger or Ledger()
        self.samplers = self._samplers()

    def _samplers(self) -> dict[str, AllocatedSampler]:
        """Call site -> its sampler. Localization and the reproduction script draw from `settings.model`; repair
        draws the allocation, each configuration shown its location set's prompt (the call sends one user
        message per set, in `settings.location_sets` order, and each variant keeps its own)."""
        from osca.sampler import AllocatedSampler

        s = self.settings
        draws = {"localize_files": (1, 0.0), "localize_elements": (1, 0.0),
                 "localize_edits": (s.edit_samples, s.edit_temperature)}
        if s.reproduction_samples:
            n = s.reproduction_samples
            draws["write_reproduction"] = (n, s.edit_temperature if n > 1 else 0.0)
        samplers = {step: AllocatedSampler([SamplingConfig(name=step, model=s.model, temperature=t)], {step: n},
                                           call_site=step, cache=self.cache, ledger=self.ledger, seed=0)
                    for step, (n, t) in draws.items()}
        variants = {name: (lambda messages, i=i: [messages[i]]) for i, name in enumerate(s.location_sets)}
        samplers["repair"] = AllocatedSampler(self.repair_configs, self.repair_allocation, call_site="repair",
                                              cache=self.cache, ledger=self.ledger, prompt_variants=variants, seed=0)
        return samplers

    # ------------------------------------------------------------------------------------------ graph

    def graph(self) -> Any:
        """The compiled graph, built on first use and shared by every solve (nothing in it is per instance)."""
        return self._graph

    @cached_property
    def _graph(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        b = StateGraph(AgentlessState, context_schema=AgentlessContext)
        chain = ["localize_files", "localize_elements", "localize_edits", "merge_locations", "repair",
                 "extract_patches", "normalize"]
        for name in [*chain, "write_reproduction", "run_tests", "select"]:
            b.add_node(name, self._stage(name))
        parallel = self.settings.parallel_reproduction
        if parallel is None:
            parallel = (os.cpu_count() or 1) >= 4
        if not parallel:
            chain.append("write_reproduction")
        b.add_edge(START, chain[0])
        for a, z in zip(chain, chain[1:]):
            b.add_edge(a, z)
        if parallel:
            b.add_edge(START, "write_reproduction")
            b.add_edge([chain[-1], "write_reproduction"], "run_tests")  # waits for both branches
        else:
            b.add_edge(chain[-1], "run_tests")
        b.add_edge("run_tests", "select")
        b.add_edge("select", END)
        return b.compile()

    def solve(self, instance: SWEInstance, repo: str | Path, *, ledger: Ledger | None = None,
              max_seconds: float | None = None,
              on_step: Callable[[AgentlessState], None] | None = None) -> AgentlessState:
        """Run the whole graph on one instance whose repository is checked out at `repo`; its spend goes to
        `ledger` (default: the agent's).

        Args:
            max_seconds: stages that would start later than this after the start are skipped (a stage under way
                finishes; `max_tokens` bounds its calls).
            on_step: called with the state so far after every step (e.g. to persist the trajectory, so that an
                interrupted instance leaves what it did).
        """
        s = self.settings
        tests = instance_tests(instance, repo, image=s.env_image, sandbox=self.sandbox, timeout=s.test_timeout,
                               wall_clock=s.wall_clock, workers=s.test_workers)
        start: AgentlessState = {
            "instance_id": instance.instance_id, "problem": instance.problem_statement, "repo": str(repo),
            "answers": {}, "report": {},
            "deadline": None if max_seconds is None else time.time() + max_seconds}
        state = start
        context = AgentlessContext(ledger=ledger or self.ledger, tests=tests, sources=RepoFiles(repo))
        for state in self.graph().stream(start, stream_mode="values", context=context):
            if on_step is not None:
                on_step(state)
        return state

    # ------------------------------------------------------------------------------------------ stages

    def _stage(self, name: str) -> Callable[..., dict[str, Any]]:
        """The node `name`, timed into the report. An exception (a failed call, an unusable answer) degrades it
        to `_degraded(name)`, with the error in the report; past the deadline every stage but `select` is
        skipped the same way. Either way the instance goes on with what the earlier stages found."""
        run = getattr(self, name)

        def node(state: AgentlessState, runtime: Runtime[AgentlessContext]) -> dict[str, Any]:
            began, ctx = time.time(), runtime.context
            deadline = state.get("deadline")
            if deadline is not None and began > deadline and name != "select":
                update, note = self._degraded(name, state, ctx), {"skipped": "the instance's time bound ran out"}
            else:
                try:
                    update, note = run(state, ctx), {}
                except Exception as e:  # noqa: BLE001 - any failure of one stage must not end the instance
                    update, note = self._degraded(name, state, ctx), {"error": f"{type(e).__name__}: {e}"}
            report = {**update.pop("report", {}), **note, "seconds": round(time.time() - began, 3)}
            return {**update, "report": {name: report}}

        node.__name__ = name
        return node

    def _degraded(self, name: str, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """What a stage leaves when it fails or is skipped: nothing found, which later stages handle."""
        return {
            "localize_files": lambda: {"files": []},
            "localize_elements": lambda: {"related": {}},
            "localize_edits": lambda: {"edit_locations": [], "related_spans": self._related_spans(state, ctx)},
            "merge_locations": lambda: {"location_sets": {}},
            "repair": lambda: {"candidates": []},
            "write_reproduction": lambda: {"reproduction": {"script": None, "tried": []}},
            "run_tests": lambda: {"regression_tests": []},
            "select": lambda: {"selection": select_patch([])},
        }.get(name, dict)()

    # ------------------------------------------------------------------------------------------ LLM calls

    @cached_property
    def prompt_budget(self) -> int:
        """Tokens a prompt may take: `max_prompt_tokens`, else 90% of the model's context window less the
        answer's `max_tokens` (the margin covers the gap between LiteLLM's count and the model's tokenizer)."""
        s = self.settings
        if s.max_prompt_tokens is not None:
            return s.max_prompt_tokens
        ensure_provider(s.model)  # osca's local models enter LiteLLM's model map when their provider registers
        try:
            window = litellm().get_model_info(s.model).get("max_input_tokens")
        except Exception:  # noqa: BLE001 - LiteLLM raises a bare Exception for a model it does not know
            window = None
        return max(256, int(0.9 * ((window or 8192) - s.max_tokens)))

    def _count(self, text: str) -> int:
        return int(litellm().token_counter(model=self.settings.model, text=text))

    def _room(self, frame: str) -> int:
        """Tokens left for a prompt's variable part, given the prompt without it."""
        return max(0, self.prompt_budget - self._count(frame))

    def _problem(self, state: AgentlessState) -> str:
        """The problem statement, cut to half the prompt budget (a few issues paste whole logs)."""
        return fit_lines(state["problem"], self.prompt_budget // 2, self._count)

    def _ask(self, ctx: AgentlessContext, step: str, prompt: str) -> list[str]:
        """The answers of the samples `step`'s sampler draws for `prompt` (cached, in the solve's ledger); the
        failed samples are left out.

        Raises:
            DataError: every sample failed (the first error is named).
        """
        s = self.settings
        resp = self.samplers[step].completion(
            messages=[{"role": "user", "content": prompt}], ledger=ctx.ledger,
            max_tokens=s.localize_max_tokens if step.startswith("localize") else s.max_tokens)
        drawn = resp.osca.candidates
        answers = [c.text or "" for c in drawn if not c.error]
        if not answers:
            raise DataError(f"every {step} sample failed: {drawn[0].error if drawn else 'none were drawn'}")
        return answers

    # ------------------------------------------------------------------------------------------ nodes

    def localize_files(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Files to edit, from the tree of the library's files most relevant to the problem (as many as fit).
        An answer naming no known file, or echoing the tree (more than twice the files asked for), falls back to
        the files sharing most words with the problem."""
        problem, n = self._problem(state), self.settings.top_files
        known = python_files(Path(state["repo"]), include_tests=False)
        ranked = rank_paths(known, problem)
        tree, shown = fit_tree(ranked, self._room(prompts.file_localization(problem, "", n)), self._count)
        prompt = prompts.file_localization(problem, tree, n)
        answers = self._ask(ctx, "localize_files", prompt)
        named = parse_file_list(answers[0], known, len(known))
        files = named[:n]
        report: dict[str, Any] = {"prompt_tokens": [self._count(prompt)], "tree_files": f"{shown} of {len(known)}"}
        if not files or len(named) > 2 * n:
            why = f"the answer lists {len(named)} files (an echo of the tree)" if named else \
                "no known file in the answer"
            files, report["fallback"] = ranked[:n], f"{why}: the files closest to the problem"
        return {"files": files, "answers": {"localize_files": answers}, "report": {**report, "files": files}}

    def localize_elements(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Related classes and functions, from the skeletons of the localized files (cut to the budget)."""
        skeletons = {}
        for path in state["files"]:
            try:
                skeletons[path] = skeleton(ctx.sources.text(path))
            except DataError:  # a file that does not parse is skipped, like Agentless does
                continue
        if not skeletons:
            return {"related": {}, "report": {"related": {}, "note": "no localized file parses"}}
        problem = self._problem(state)
        frame = prompts.related_elements(problem, dict.fromkeys(skeletons, ""))
        prompt = prompts.related_elements(problem, fit_sections(skeletons, self._room(frame), self._count))
        answers = self._ask(ctx, "localize_elements", prompt)
        related = parse_locations(answers[0], list(skeletons))
        return {"related": related, "answers": {"localize_elements": answers},
                "report": {"prompt_tokens": [self._count(prompt)], "related": related}}

    def localize_edits(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Edit locations, `edit_samples` times, from the numbered code of the related elements."""
        spans = self._related_spans(state, ctx)
        if not spans:
            return {"edit_locations": [], "related_spans": spans, "report": {"note": "no localized file"}}
        sources, problem = ctx.sources, self._problem(state)
        snippets = {p: "\n...\n".join(numbered(sources.text(p), s, e) for s, e in iv) for p, iv in spans.items()}
        frame = prompts.edit_locations(problem, dict.fromkeys(snippets, ""))
        prompt = prompts.edit_locations(problem, fit_sections(snippets, self._room(frame), self._count))
        answers = self._ask(ctx, "localize_edits", prompt)
        found = [self._intervals(ctx.sources, parse_locations(a, list(spans), quoted=True)) for a in answers]
        return {"edit_locations": found, "related_spans": spans, "answers": {"localize_edits": answers},
                "report": {"prompt_tokens": [self._count(prompt)],
                           "locations": [sum(e - s + 1 for iv in f.values() for s, e in iv) for f in found],
                           "unparsed": sum(not f for f in found)}}

    def merge_locations(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Union the edit-location samples of each set, widened by `context` lines; an empty set falls back
        to the related elements' spans, so every set has something to repair."""
        fallback = state.get("related_spans") or {}
        samples = state.get("edit_locations") or []
        sets: dict[str, Intervals] = {}
        for name, idx in self.settings.location_sets.items():
            merged: dict[str, list[tuple[int, int]]] = {}
            for i in idx:
                for path, iv in (samples[i] if i < len(samples) else {}).items():
                    merged.setdefault(path, []).extend(iv)
            sets[name] = {p: merge_intervals(iv, context=self.settings.context,
                                             max_line=ctx.sources.lines(p)) for p, iv in merged.items()} \
                or fallback
        return {"location_sets": sets,
                "report": {"lines": {n: sum(e - s + 1 for iv in v.values() for s, e in iv) for n, v in sets.items()}}}

    def repair(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Draw candidates per the repair allocation; each configuration sees the code of its location set."""
        sets = state["location_sets"]
        if not any(sets.values()):  # nothing localized (merge_locations fills every set, or none)
            return {"candidates": [], "report": {"note": "nothing localized"}}
        problem = self._problem(state)
        by_set = {}
        for name in self.settings.location_sets:
            code = self._snippets(ctx.sources, sets.get(name) or {})
            room = self._room(prompts.repair(problem, dict.fromkeys(code, "")))
            by_set[name] = prompts.repair(problem, fit_sections(code, room, self._count))
        resp = self.samplers["repair"].completion(
            messages=[{"role": "user", "content": prompt} for prompt in by_set.values()],
            max_tokens=self.settings.max_tokens, ledger=ctx.ledger)
        by_name = {c.name: c for c in self.repair_configs}
        candidates = [PatchCandidate(config=c.config, index=c.index, text=c.text or "", error=c.error,
                                     location_set=by_name[c.config].prompt_variant)
                      for c in resp.osca.candidates]
        return {"candidates": candidates,
                "report": {"location_sets": list(by_set), "prompt_tokens": [self._count(p) for p in by_set.values()],
                           "answers": len(candidates), "failed": sum(bool(c.error) for c in candidates)}}

    def extract_patches(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Apply each candidate's SEARCH/REPLACE edits inside its localized lines; keep a `git diff` of the
        result, or say why there is none."""
        out = []
        for cand in state["candidates"]:
            if cand.error:
                out.append(cand)
                continue
            allowed = state["location_sets"].get(cand.location_set) or {}
            try:
                # a path the model shortened or prefixed ("flask/cli.py", "/testbed/src/flask/cli.py") names the
                # localized file it ends like; a block without a path edits the only file shown
                edits = [replace(e, path=resolve_path(e.path, allowed) or e.path) for e in
                         parse_edits(cand.text, default_path=next(iter(allowed)) if len(allowed) == 1 else None)]
                if not edits:
                    raise EditError("the answer repeats the code it was shown, with no SEARCH/REPLACE edit"
                                    if echoes(cand.text, [ctx.sources.text(p) for p in allowed]) else
                                    "the answer has no SEARCH/REPLACE edit")
                old = {p: ctx.sources.text(p) for p in allowed}
                new = apply_edits(old, edits, allowed=allowed)
                patch = make_diff(old, new)
                out.append(cand.model_copy(update={"patch": patch, "edited": new}))
            except EditError as e:
                out.append(cand.model_copy(update={"error": f"edit: {e}"}))
        return {"candidates": out, "report": {"patches": sum(bool(c.patch) for c in out),
                                              "errors": [c.error for c in out if c.error]}}

    def normalize(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        """Key each patch by its normalized form (ast round trip, no comments or docstrings): the unit of
        testing and of the majority vote. A patch that changes nothing but comments gets no key."""
        out = []
        for cand in state["candidates"]:
            if not cand.patch:
                out.append(cand)
                continue
            key = normalized_patch({p: ctx.sources.text(p) for p in cand.edited}, cand.edited)
            out.append(cand.model_copy(update={"key": key} if key else
                                       {"error": "the patch changes only comments, docstrings or layout"}))
        return {"candidates": out, "report": {"distinct_patches": len({c.key for c in out if c.key})}}

    def write_reproduction(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        n = self.settings.reproduction_samples
        if n == 0:
            return {"reproduction": {"script": None, "tried": []}, "report": {"note": "reproduction_samples is 0"}}
        prompt = prompts.reproduction(self._problem(state))
        answers = self._ask(ctx, "write_reproduction", prompt)
        chosen = ctx.tests.choose_reproduction([extract_code(a) for a in answers])
        return {"reproduction": chosen, "answers": {"write_reproduction": answers},
                "report": {"prompt_tokens": [self._count(prompt)], "scripts": len(answers),
                           "reproduces": sum(bool(t.get("reproduced")) for t in chosen.get("tried", []))}}

    def run_tests(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        keyed = {c.key: c.patch for c in state["candidates"] if c.key}
        if not keyed:  # nothing to test: spare the sandbox runs
            return {"regression_tests": [], "report": {"note": "no patch to test"}}
        tests = ctx.tests
        found = tests.regression_tests(state.get("files", []))
        script = state["reproduction"].get("script")
        outcomes = tests.check_patches(keyed, found, script)
        return {"regression_tests": found.tests,
                "candidates": [c.model_copy(update=outcomes[c.key].as_update()) if c.key in outcomes else c
                               for c in state["candidates"]],
                "report": {"regression_tests": len(found.tests), "test_files": found.files,
                           "collection_errors": found.collection_errors, "note": found.note,
                           "patches_tested": len(keyed)}}

    def select(self, state: AgentlessState, ctx: AgentlessContext) -> dict[str, Any]:
        selection = select_patch(state["candidates"])
        return {"selection": selection, "report": {"reason": selection.reason}}

    # ------------------------------------------------------------------------------------------ helpers

    def _related_spans(self, state: AgentlessState, ctx: AgentlessContext) -> Intervals:
        """The related elements' line spans. For a file with none found, its functions and methods closest to
        the problem (`_GUESSED` of them), never the whole file; a file that does not parse shows its start
        (prompts cut every view to the budget)."""
        spans: Intervals = {}
        sources, problem = ctx.sources, state["problem"]
        for path in state.get("files", []):
            els = sources.elements(path)
            names = (state.get("related") or {}).get(path, [])
            found = [e for e in (find_element(els, n) for n in names) if e] or \
                rank_elements([e for e in els if e.kind in ("function", "method")] or els, problem)[:_GUESSED]
            spans[path] = merge_intervals([(e.start, e.end) for e in found]) or [(1, sources.lines(path))]
        return spans

    def _intervals(self, sources: RepoFiles, locations: dict[str, list[str]]) -> Intervals:
        """Edit locations ("line: 12", "function: Foo.bar", "class: Foo") -> line intervals per file."""
        out: Intervals = {}
        for path, locs in locations.items():
            els, last = sources.elements(path), sources.lines(path)
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

    def _snippets(self, sources: RepoFiles, intervals: Intervals) -> dict[str, str]:
        """The code the repair step sees: each file's intervals, without line numbers (the SEARCH text must
        match the file), separated by "...". """
        out = {}
        for path, iv in intervals.items():
            lines = sources.text(path).split("\n")
            out[path] = "\n...\n".join("\n".join(lines[s - 1:e]) for s, e in iv)
        return out
