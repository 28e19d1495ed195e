"""Selectors: pick one candidate, composable like tenacity's strategies.

A selector maps the candidates still in the running to those it prefers (ties kept). `a | b` applies `a`,
then `b` to the survivors: `select_most_tests | select_majority()` breaks ties in tests passed by a vote.
The sampler returns the first survivor (lowest sample order), so selection is deterministic. Plain functions
`(list[Candidate]) -> list[Candidate]` compose too.

Without tests to run, `select_majority` votes over normalized answers and `select_by_score` keeps the best
scored candidates: a reward model, or `select_by_judge`, an LLM judge reached through LiteLLM.
`osca.scaling.precision_report` measures how much of the coverage each of them turns into solved problems.
"""

from __future__ import annotations

import io
import math
import re
import tokenize
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from .candidates import canonical_tool_calls
from .exceptions import ConfigError

if TYPE_CHECKING:
    from .candidates import Candidate

__all__ = ["JUDGE_PROMPT", "Judgement", "Selector", "extract_code", "normalize_code", "normalize_whitespace",
           "parse_score", "select_by_judge", "select_by_score", "select_first_verified", "select_majority",
           "select_most_tests"]

SelectFn = Callable[[list["Candidate"]], list["Candidate"]]


class Selector:
    """Base class: `__call__(candidates) -> preferred candidates`; `|` cascades."""

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        raise NotImplementedError

    def __or__(self, other: Selector | SelectFn) -> Selector:
        return _Cascade([*self._parts(), *_as_selector(other)._parts()])

    def __ror__(self, other: SelectFn) -> Selector:
        return _Cascade([*_as_selector(other)._parts(), *self._parts()])

    def trace(self, candidates: list[Candidate]) -> list[tuple[Selector, list[Candidate]]]:
        """Each step of the selection with the candidates left after it, to explain a choice: one step, or
        one per part of a cascade until a single candidate is left (a step that keeps none keeps all)."""
        return [(self, self(candidates) or candidates)]

    def _parts(self) -> list[Selector]:
        return [self]


class _Cascade(Selector):
    def __init__(self, parts: Sequence[Selector]) -> None:
        self.parts = list(parts)

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        steps = self.trace(candidates)
        return steps[-1][1] if steps else candidates

    def trace(self, candidates: list[Candidate]) -> list[tuple[Selector, list[Candidate]]]:
        steps = []
        for part in self.parts:
            if len(candidates) <= 1:
                break
            candidates = part(candidates) or candidates
            steps.append((part, candidates))
        return steps

    def _parts(self) -> list[Selector]:
        return self.parts

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.parts))


class _Fn(Selector):
    def __init__(self, fn: SelectFn) -> None:
        self.fn = fn

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        return self.fn(candidates)

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _as_selector(s: Selector | SelectFn) -> Selector:
    return s if isinstance(s, Selector) else _Fn(s)


class _FirstVerified(Selector):
    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        verified = [c for c in candidates if c.verification is not None and c.verification.passed]
        return verified[:1] or candidates

    def __repr__(self) -> str:
        return "select_first_verified"


class _MostTests(Selector):
    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        scores = [c.verification.n_passed if c.verification is not None else -1 for c in candidates]
        best = max(scores, default=-1)
        return [c for c, s in zip(candidates, scores) if s == best]

    def __repr__(self) -> str:
        return "select_most_tests"


class select_majority(Selector):  # noqa: N801  (named like the other strategies)
    """Keep the candidates whose normalized output is the most common one (ties: all of the largest groups).

    A candidate that calls tools votes with its calls (function names and canonical JSON arguments, text aside),
    one that answers in text with its `normalize`d text.
    """

    def __init__(self, normalize: Callable[[str], str] | None = None) -> None:
        self.normalize = normalize or normalize_whitespace

    def vote(self, candidate: Candidate) -> str | None:
        """The answer `candidate` votes for; None: it has none."""
        if candidate.tool_calls:
            return "tool calls: " + canonical_tool_calls(candidate.tool_calls)
        return None if candidate.text is None else self.normalize(candidate.text)

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        keys = [self.vote(c) for c in candidates]
        counts = Counter(k for k in keys if k is not None)
        if not counts:
            return candidates
        top = max(counts.values())
        return [c for c, k in zip(candidates, keys) if k is not None and counts[k] == top]

    def __repr__(self) -> str:
        return f"select_majority({getattr(self.normalize, '__name__', '')})"


class select_by_score(Selector):  # noqa: N801
    """Keep the candidates with the highest score (ties: all of them), e.g. from a reward model.

    Args:
        score: `(Candidate) -> float`, higher is better. A candidate without text, or a NaN score, ranks lowest
            (-inf); when every candidate ranks lowest, all are kept (no preference).
    """

    def __init__(self, score: Callable[[Candidate], float]) -> None:
        self.score = score

    def scores(self, candidates: list[Candidate]) -> list[float]:
        """Each candidate's score, -inf for no text or NaN."""
        out = [-math.inf if c.text is None else float(self.score(c)) for c in candidates]
        return [-math.inf if math.isnan(s) else s for s in out]

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        scores = self.scores(candidates)
        best = max(scores, default=-math.inf)
        return [c for c, s in zip(candidates, scores) if s == best]

    def __repr__(self) -> str:
        return f"select_by_score({getattr(self.score, '__name__', '')})"


JUDGE_PROMPT = """You are reviewing a candidate answer to a task.

Task:
{question}

Candidate answer:
{candidate}

How likely is the candidate answer to be correct? Think briefly, then end with one line `SCORE: <n>`, where n is
an integer from 0 (certainly wrong) to 10 (certainly correct)."""
"""The default judge prompt: `{question}` and `{candidate}` are filled in; the reply ends with `SCORE: <n>`."""

_SCORE = re.compile(r"score\W{0,4}?([-+]?\d+(?:\.\d+)?)", re.I)


def parse_score(reply: str | None) -> float:
    """The judge's score: the number after the last `SCORE:` (any case, `**SCORE**: 7/10` too), else the whole
    reply when it is a bare number; -inf when there is neither (a broken judge output ranks lowest)."""
    found = _SCORE.findall(reply or "")
    if found:
        return float(found[-1])
    try:
        value = float((reply or "").strip())
    except ValueError:
        return -math.inf
    return value if math.isfinite(value) else -math.inf


class Judgement(NamedTuple):
    """What the judge said about one candidate text."""

    score: float
    """`parse_score` of the reply: -inf when it holds no score."""
    reply: str
    """The judge's whole reply."""


class select_by_judge(select_by_score):  # noqa: N801
    """Score every candidate with an LLM judge (through LiteLLM) and keep the best scored ones.

    Composes like the other selectors: `select_first_verified | select_by_judge(...)` asks the judge only when
    no candidate verified, `select_by_judge(...) | select_majority()` breaks the judge's ties by a vote.

    Args:
        model: the judge's LiteLLM model string (`"openai/gpt-4o"`, `"local/qwen2.5-coder-0.5b"`,
            `"scripted/<name>"` in tests).
        question: the task the candidates answer (the prompt's `{question}`); one judge per task.
        prompt: the template; `{question}` and `{candidate}` are replaced (other braces are left alone).
        concurrency: judge requests in flight at once (threads: selection runs inside the sampler's call).
        **completion_kwargs: passed to `litellm.completion` (temperature defaults to 0: a judge should agree
            with itself).

    A reply without a score ranks lowest (-inf) rather than failing the call; a request that fails raises
    (LiteLLM's exception: that is the judge's fault, not the candidate's). Judgements are kept per candidate
    text in `judgements`, so an answer seen again (a duplicate sample, another subset in a precision report)
    is not judged twice.

    Example:
        >>> judge = select_by_judge("openai/gpt-4o-mini", question="Add two numbers in Python.")
        >>> sampler = AllocatedSampler(configs, allocation, selector=select_majority() | judge)
    """

    def __init__(self, model: str, *, question: str = "", prompt: str = JUDGE_PROMPT, concurrency: int = 4,
                 **completion_kwargs: Any) -> None:
        if "{candidate}" not in prompt:
            raise ConfigError("the judge prompt must contain {candidate}")
        super().__init__(lambda c: self.judge(c.text or "").score)
        self.model = model
        self.question = question
        self.prompt = prompt
        self.concurrency = max(1, concurrency)
        self.completion_kwargs = {"temperature": 0.0, **completion_kwargs}
        self.judgements: dict[str, Judgement] = {}

    def judge(self, text: str) -> Judgement:
        """The judge's verdict on one candidate text (asked once per distinct text)."""
        if text not in self.judgements:
            from ._litellm import litellm
            from .providers import ensure_provider

            ensure_provider(self.model)
            content = self.prompt.replace("{question}", self.question).replace("{candidate}", text)
            resp = litellm().completion(model=self.model, messages=[{"role": "user", "content": content}],
                                        **self.completion_kwargs)
            reply = resp.choices[0].message.content or ""
            self.judgements[text] = Judgement(parse_score(reply), reply)
        return self.judgements[text]

    def scores(self, candidates: list[Candidate]) -> list[float]:
        todo = list(dict.fromkeys(c.text for c in candidates if c.text is not None and c.text not in self.judgements))
        if len(todo) > 1 and self.concurrency > 1:
            with ThreadPoolExecutor(min(self.concurrency, len(todo))) as pool:
                list(pool.map(self.judge, todo))
        return super().scores(candidates)

    def __repr__(self) -> str:
        return f"select_by_judge({self.model!r})"


select_first_verified = _FirstVerified()
select_most_tests = _MostTests()

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)```", re.S)


def extract_code(text: str) -> str:
    """The first fenced code block of a model answer (the whole answer when it has none)."""
    m = _FENCE.search(text)
    return m.group(1) if m else text


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


_LAYOUT = {tokenize.NEWLINE: "<nl>", tokenize.INDENT: "<in>", tokenize.DEDENT: "<out>"}


def normalize_code(text: str) -> str:
    """Python code as its token stream: comments, blank lines and spacing differences vanish, block structure
    (newlines, indents, dedents) stays. Text that does not tokenize falls back to whitespace normalization."""
    code = extract_code(text)
    try:
        tokens = [_LAYOUT.get(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(code).readline)
                  if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return normalize_whitespace(code)
    return " ".join(tokens)
