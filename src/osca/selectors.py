"""Selectors: pick one candidate, composable like tenacity's strategies.

A selector maps the candidates still in the running to those it prefers (ties kept). `a | b` applies `a`,
then `b` to the survivors: `select_most_tests | select_majority()` breaks ties in tests passed by a vote.
The sampler returns the first survivor (lowest sample order), so selection is deterministic. Plain functions
`(list[Candidate]) -> list[Candidate]` compose too.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sampler import Candidate

__all__ = ["Selector", "extract_code", "normalize_code", "normalize_whitespace", "select_first_verified",
           "select_majority", "select_most_tests"]

SelectFn = Callable[[list["Candidate"]], list["Candidate"]]


class Selector:
    """Base class: `__call__(candidates) -> preferred candidates`; `|` cascades."""

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        raise NotImplementedError

    def __or__(self, other: Selector | SelectFn) -> Selector:
        return _Cascade([*self._parts(), *_as_selector(other)._parts()])

    def __ror__(self, other: SelectFn) -> Selector:
        return _Cascade([*_as_selector(other)._parts(), *self._parts()])

    def _parts(self) -> list[Selector]:
        return [self]


class _Cascade(Selector):
    def __init__(self, parts: Sequence[Selector]) -> None:
        self.parts = list(parts)

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        for part in self.parts:
            if len(candidates) <= 1:
                break
            candidates = part(candidates) or candidates
        return candidates

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
    """Keep the candidates whose normalized output is the most common one (ties: all of the largest groups)."""

    def __init__(self, normalize: Callable[[str], str] | None = None) -> None:
        self.normalize = normalize or normalize_whitespace

    def __call__(self, candidates: list[Candidate]) -> list[Candidate]:
        keys = [self.normalize(c.text) if c.text is not None else None for c in candidates]
        counts = Counter(k for k in keys if k is not None)
        if not counts:
            return candidates
        top = max(counts.values())
        return [c for c, k in zip(candidates, keys) if k is not None and counts[k] == top]

    def __repr__(self) -> str:
        return f"select_majority({getattr(self.normalize, '__name__', '')})"


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
