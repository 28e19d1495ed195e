"""What the localization prompts show of a repository, and how the answers are read back.

Agentless narrows down in three views: the tree of files (`python_files`, `repo_tree`), compressed skeletons of a
few files (`skeleton`), then numbered code of chosen elements (`elements`, `numbered`). The model answers file
lists and locations in loose text; `parse_file_list` and `parse_locations` keep only what names real files, so a
hallucinated path never reaches later stages. Pure text work: stdlib `ast` only, no I/O beyond `python_files`.

Every view must fit the model's context: `rank_paths` and `rank_elements` order files and elements by how much
of the problem statement's vocabulary they share, and `fit_tree`, `fit_lines` and `fit_sections` keep what fits
a token budget (measured by the caller's counter, LiteLLM's `token_counter` in the graph), most relevant first,
saying what was left out. Nothing is shown whole past its budget.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from osca.exceptions import DataError

__all__ = ["Element", "ElementKind", "Interval", "TokenCounter", "elements", "find_element", "fit_lines",
           "fit_sections", "fit_tree", "merge_intervals", "numbered", "parse_file_list", "parse_locations",
           "parse_quietly", "python_files", "rank_elements", "rank_paths", "repo_tree", "resolve_path", "skeleton"]

Interval = tuple[int, int]
"""1-based inclusive line range `(start, end)`."""

ElementKind = Literal["class", "function", "method", "variable"]

# Skipped anywhere: caches and virtual environments hold no code of the project.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})
# Skipped only at the root: a package may have a real `build` subpackage, a root `build/` is setup.py output.
_SKIP_ROOT_DIRS = frozenset({"build", "dist"})
_TEST_DIRS = frozenset({"test", "tests"})


def _is_test(path: str) -> bool:
    *dirs, name = path.split("/")
    return (any(d in _TEST_DIRS for d in dirs) or name.startswith("test_") or name.endswith("_test.py")
            or name in ("conftest.py", "tests.py"))


def python_files(root: Path, *, include_tests: bool = True) -> list[str]:
    """The repository's Python files, as sorted root-relative posix paths.

    Hidden directories (`.git`, `.tox`), `__pycache__`, virtual environments (any directory holding a
    `pyvenv.cfg`) and a root `build/` or `dist/` are skipped.

    Args:
        root: the repository checkout.
        include_tests: False drops test code (files under `test/` or `tests/`, `test_*.py`, `*_test.py`,
            `conftest.py`, `tests.py`): Agentless localizes the fix in the library, not in its tests.

    Returns:
        e.g. `["pkg/__init__.py", "pkg/calc.py", "setup.py"]`.
    """
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        at_root = rel == Path(".")
        dirnames[:] = [d for d in dirnames
                       if not d.startswith(".") and d not in _SKIP_DIRS and not d.endswith(".egg-info")
                       and not (at_root and d in _SKIP_ROOT_DIRS)
                       and not (Path(dirpath) / d / "pyvenv.cfg").is_file()]
        for name in filenames:
            if name.endswith(".py"):
                path = (rel / name).as_posix()
                if include_tests or not _is_test(path):
                    out.append(path)
    return sorted(out)


def repo_tree(paths: Iterable[str]) -> str:
    """An indented tree of `paths` (four spaces a level, directories end with "/"), Agentless's structure view.

    Entries of a directory are sorted by name, so the text is the same however `paths` is ordered.

    Example:
        >>> print(repo_tree(["pkg/calc.py", "setup.py", "pkg/__init__.py"]))
        pkg/
            __init__.py
            calc.py
        setup.py
    """
    tree: dict[str, dict] = {}
    for path in paths:
        node = tree
        for part in path.split("/")[:-1]:
            node = node.setdefault(part + "/", {})
        node.setdefault(path.split("/")[-1], {})
    lines: list[str] = []

    def walk(node: dict[str, dict], depth: int) -> None:
        for name in sorted(node):
            lines.append("    " * depth + name)
            walk(node[name], depth + 1)

    walk(tree, 0)
    return "\n".join(lines)


def parse_quietly(source: str) -> ast.Module:
    """`ast.parse` with warnings silenced: old code warns about invalid escapes, and a `warnings = error` filter
    (pytest's `filterwarnings = error`) would make the compiler turn that warning into a SyntaxError.

    Raises:
        SyntaxError, ValueError: as `ast.parse` does (ValueError: source with NUL bytes).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source)


def _parse(source: str) -> ast.Module:
    try:
        return parse_quietly(source)
    except (SyntaxError, ValueError) as e:  # ValueError: source with NUL bytes
        where = f"line {e.lineno}: " if isinstance(e, SyntaxError) and e.lineno else ""
        raise DataError(f"the source does not parse as Python ({where}{getattr(e, 'msg', e)})") from e


_ASSIGN = (ast.Assign, ast.AnnAssign, ast.AugAssign)
_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)


def _one_line(node: ast.stmt, limit: int) -> str:
    text = " ".join(ast.unparse(node).split("\n"))
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def _indent(text: str, depth: int) -> str:
    return "\n".join("    " * depth + line for line in text.split("\n"))


def _skeleton_body(body: list[ast.stmt], depth: int, limit: int) -> list[str]:
    out = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            header = copy.copy(node)
            header.body = []
            inner = _skeleton_body(node.body, depth + 1, limit)
            out.append(_indent(ast.unparse(header), depth) + "\n"
                       + ("\n".join(inner) if inner else "    " * (depth + 1) + "..."))
        elif isinstance(node, _FUNC):
            sig = copy.copy(node)
            sig.body = [ast.Expr(ast.Constant(...))]
            out.append(_indent(ast.unparse(sig), depth))
        elif isinstance(node, _ASSIGN):
            out.append("    " * depth + _one_line(node, limit))
    return out


def skeleton(source: str, *, max_line: int = 100) -> str:
    """`source` compressed to its interface, the view Agentless uses to pick related elements.

    Kept: class headers (with decorators), function and method signatures (decorators kept, bodies replaced by
    `...`), nested classes, and module- and class-level assignments on one line each (cut to `max_line`
    characters). Dropped: imports, docstrings, comments, function bodies (nested functions with them) and other
    module-level statements. Code is re-rendered by `ast.unparse`, so a multi-line signature becomes one line.

    Raises:
        DataError: `source` does not parse (callers skip the file).

    Example:
        >>> print(skeleton("import os\\nX = 1\\nclass A:\\n    '''Doc.'''\\n    def f(self, a):\\n        return a\\n"))
        X = 1
        <BLANKLINE>
        class A:
            def f(self, a):
                ...
    """
    parts = _skeleton_body(_parse(source).body, 0, max_line)
    # A blank line around definitions keeps the file readable; consecutive assignments stay together.
    out: list[str] = []
    for part in parts:
        if out and ("\n" in part or "\n" in out[-1]):
            out.append("")
        out.append(part)
    return "\n".join(out)


@dataclass(frozen=True)
class Element:
    """A localizable piece of a file: what "class: Foo" or "function: Foo.bar" in an answer points at."""

    path: str
    """Repository-relative path of the file."""
    kind: ElementKind
    """"class", "function" (top-level), "method" (directly in a top-level class) or "variable" (top-level)."""
    name: str
    """Qualified name: "Foo", "Foo.bar", "baz", "X"."""
    start: int
    """First line, 1-based, decorators included."""
    end: int
    """Last line, 1-based, inclusive."""


def _span(node: ast.stmt) -> Interval:
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)])
    return start, node.end_lineno or node.lineno


def _target_names(node: ast.stmt) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[attr-defined]
    names: list[str] = []
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.append(n.id)
    return names


def elements(path: str, source: str) -> list[Element]:
    """The top-level classes, their methods, top-level functions and top-level assignments of a file.

    Elements come in source order. An assignment to several names (`a = b = 1`, `x, y = f()`) yields one element
    per name, all with the statement's span.

    Raises:
        DataError: `source` does not parse.
    """
    out = []
    for node in _parse(source).body:
        if isinstance(node, ast.ClassDef):
            out.append(Element(path, "class", node.name, *_span(node)))
            out.extend(Element(path, "method", f"{node.name}.{m.name}", *_span(m))
                       for m in node.body if isinstance(m, _FUNC))
        elif isinstance(node, _FUNC):
            out.append(Element(path, "function", node.name, *_span(node)))
        elif isinstance(node, _ASSIGN):
            out.extend(Element(path, "variable", name, *_span(node)) for name in _target_names(node))
    return out


_KIND_PREFIX = re.compile(r"^\s*(class|function|method|variable)\s*:\s*(.*)$", re.I)
_ACCEPTS: dict[str, tuple[str, ...]] = {"class": ("class",), "function": ("function", "method"),
                                        "method": ("method",), "variable": ("variable",)}


def find_element(candidates: Iterable[Element], name: str) -> Element | None:
    """The element an answer's location names, or None when none (or no single one) fits.

    Accepted: "Foo.bar", "class: Foo", "function: Foo.bar", "function: baz", "method: Foo.bar", "variable: X";
    backticks and a trailing "()" are ignored. A bare method name ("bar", "function: bar") is accepted when one
    class has such a method, and a dotted name with a module prefix ("pkg.calc.Foo.bar") matches by its
    longest element-name suffix. When a name is defined twice (a property's getter and setter) the first
    definition is returned.
    """
    kind = None
    m = _KIND_PREFIX.match(name)
    if m:
        kind, name = m.group(1).lower(), m.group(2)
    name = name.strip().strip("`").strip()
    name = name.removesuffix("()").strip()
    if not name:
        return None
    pool = [e for e in candidates if kind is None or e.kind in _ACCEPTS[kind]]
    exact = [e for e in pool if e.name == name]
    if exact:
        return exact[0]
    if "." not in name:
        methods = [e for e in pool if e.kind == "method" and e.name.rsplit(".", 1)[1] == name]
        return methods[0] if len({e.name for e in methods}) == 1 else None
    suffix = [e for e in pool if name.endswith("." + e.name)]
    if not suffix:
        return None
    longest = max(len(e.name) for e in suffix)
    return next(e for e in suffix if len(e.name) == longest)


def numbered(source: str, start: int, end: int) -> str:
    """Lines `start`..`end` (1-based, inclusive, clipped to the file) as "  42| code": numbered so the model
    can answer "line: 42". Numbers are right-aligned to the widest one shown."""
    lines = source.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    start, end = max(start, 1), min(end, len(lines))
    width = len(str(end))
    return "\n".join(f"{i:>{width}}| {lines[i - 1]}".rstrip() for i in range(start, end + 1))


def merge_intervals(intervals: Iterable[Interval], *, context: int = 0,
                    max_line: int | None = None) -> list[Interval]:
    """Widen each interval by `context` lines on both sides, clip to [1, max_line], merge overlapping or
    adjacent ones.

    Returns:
        Sorted, disjoint, non-adjacent intervals; an interval lying wholly past `max_line` disappears.

    Raises:
        ValueError: an interval ends before it starts, or `context` is negative.

    Example:
        >>> merge_intervals([(10, 12), (1, 2), (14, 20)], context=1, max_line=18)
        [(1, 3), (9, 18)]
    """
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    widened = []
    for start, end in intervals:
        if end < start:
            raise ValueError(f"interval ({start}, {end}) ends before it starts")
        start, end = max(1, start - context), end + context
        if max_line is not None:
            end = min(end, max_line)
        if start <= end:
            widened.append((start, end))
    merged: list[Interval] = []
    for start, end in sorted(widened):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


_FENCE_LINE = re.compile(r"^\s*```")
_BULLET = re.compile(r"^\s*(?:[-*+•]\s+|\d+[.)]\s+)")


def _answer_lines(text: str, *, headings: bool = False) -> list[str]:
    """The lines inside fenced blocks, or all lines when there is no fence: prose around a block often names
    files the model ruled out. A fence left open (a truncated answer) runs to the end. With `headings`, markdown
    headings between blocks ("### `pkg/calc.py`", then a block of its locations) are kept too."""
    lines = text.split("\n")
    if not any(_FENCE_LINE.match(line) for line in lines):
        return lines
    out, inside = [], False
    for line in lines:
        if _FENCE_LINE.match(line):
            inside = not inside
        elif inside or (headings and line.lstrip().startswith("#")):
            out.append(line)
    return out


_HEADING = re.compile(r"^#+\s*(?:file:\s*)?", re.I)


def _clean(line: str) -> str:
    """The line without bullets, markdown emphasis and a "### File:" heading (models echo the prompt's)."""
    line = _BULLET.sub("", line).replace("`", "").replace("**", "").strip()
    return _HEADING.sub("", line)


def resolve_path(candidate: str, known: Collection[str]) -> str | None:
    """A known path that `candidate` names: exactly, as a longer path ending in it ("/testbed/pkg/calc.py",
    "a/pkg/calc.py"), or as its unique tail ("calc.py" for "pkg/calc.py")."""
    candidate = candidate.strip().removeprefix("./")
    if not candidate:
        return None
    if candidate in known:
        return candidate
    longer = [p for p in known if candidate.endswith("/" + p)]
    if longer:
        return max(longer, key=len)
    tail = [p for p in known if p.endswith("/" + candidate)]
    if len(tail) == 1:
        return tail[0]
    return _module(candidate, known)


def _module(candidate: str, known: Collection[str]) -> str | None:
    """A dotted module name ("pkg.calc", or "pkg.calc.add.py" naming a function in it) -> the known file of
    its longest importable prefix: small models often answer in import paths rather than file paths."""
    if "/" in candidate or not _DOTTED.fullmatch(candidate):
        return None
    parts = candidate.removesuffix(".py").split(".")
    for n in range(len(parts), 0, -1):
        stem = "/".join(parts[:n])
        for path in (f"{stem}.py", f"{stem}/__init__.py"):
            if path in known:
                return path
    return None


_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _path_token(line: str) -> str:
    token = line.split()[0] if line.split() else ""
    return token.rstrip(":,;").rstrip(".") if token.endswith(".") else token.rstrip(":,;")


def parse_file_list(text: str, known_paths: Collection[str], limit: int) -> list[str]:
    """The files a file-localization answer lists, one a line, resolved against `known_paths`.

    Reads the fenced blocks (the whole answer when it has none); bullets, numbering, backticks and trailing
    prose on a line are ignored. A name counts when it is a known path or a unique tail of one ("calc.py" for
    "pkg/calc.py"); others are dropped.

    Returns:
        Known paths in answer order, without repeats, at most `limit`.
    """
    known = set(known_paths)
    out: list[str] = []
    for line in _answer_lines(text):
        path = resolve_path(_path_token(_clean(line)), known)
        if path is not None and path not in out:
            out.append(path)
    return out[:max(limit, 0)]


_LOCATION = re.compile(r"^(class|function|method|variable|line)s?\s*:\s*(.+)$", re.I)
_NAME = re.compile(r"[A-Za-z_][\w.]*")
_LINES = re.compile(r"^(\d+)(?:\s*[-–:]\s*(\d+))?")
_MAX_RANGE = 1000  # a "line: 1-100000" answer is noise, not 100000 locations


def _location(kind: str, value: str) -> list[str]:
    if kind == "line":
        m = _LINES.match(value)
        if not m:
            return []
        start, end = int(m.group(1)), int(m.group(2) or m.group(1))
        if end < start or end - start >= _MAX_RANGE:
            return []
        return [f"line: {n}" for n in range(start, end + 1)]
    m = _NAME.match(value.strip())
    return [f"{kind}: {m.group(0).rstrip('.')}"] if m else []


def parse_locations(text: str, known_paths: Collection[str], *, quoted: bool = False) -> dict[str, list[str]]:
    """The locations of an Agentless-style answer, per file.

    The answer names a file on a line, then its locations one a line ("class: Foo", "function: Foo.bar",
    "method: Foo.bar", "variable: X", "line: 42"), possibly for several files, in fenced blocks or not (a file
    may head its block as a markdown heading), with bullets and prose around. Locations are normalized to
    "kind: name" (kind lowercase, name without "()" or trailing words) and "line: N"; a range "line: 10-12"
    becomes one "line: N" per line. Locations under a path that is not a known file are dropped, not credited to
    the file before it.

    With `quoted`, an answer without any location line is read the way small models answer instead: the
    functions it quotes (`def name(` lines, e.g. Qwen2.5-Coder-0.5B's "In `flask/app.py`, replace the
    `from_file` method with: def from_file(...)") are its locations, credited to every known file it named before
    them (in prose too; models misname the file), or to every known file when it named none: the caller keeps
    only the names a file really defines.

    Returns:
        Known path -> its location lines in answer order without repeats; a known file named without
        locations maps to [].
    """
    known = set(known_paths)
    out: dict[str, list[str]] = {}
    current: str | None = None
    for raw in _answer_lines(text, headings=True):
        line = _clean(raw)
        if not line:
            continue
        m = _LOCATION.match(line)
        if m:
            if current is not None:
                for loc in _location(m.group(1).lower(), m.group(2)):
                    if loc not in out[current]:
                        out[current].append(loc)
            continue
        token = _path_token(line)
        path = resolve_path(token, known)
        if path is not None:
            current = path
            out.setdefault(path, [])
        elif "/" in token or token.endswith(".py"):
            current = None  # an unknown file: its locations must not land on the previous one
    if quoted and not any(out.values()):
        return _quoted_functions(text, known) or out
    return out


_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_PY_PATH = re.compile(r"[\w./-]+\.py\b")


def _quoted_functions(text: str, known: Collection[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    named: list[str] = []
    for line in text.split("\n"):
        m = _DEF.match(line)
        if m:
            for path in named or sorted(known):
                found = out.setdefault(path, [])
                if f"function: {m.group(1)}" not in found:
                    found.append(f"function: {m.group(1)}")
            continue
        for token in _PY_PATH.findall(line):
            path = resolve_path(token, known)
            if path is not None and path not in named:
                named.append(path)
    return out


# ---------------------------------------------------------------------------------------------- token budgets

TokenCounter = Callable[[str], int]
"""Tokens a text takes in the model's prompt."""

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STOP_WORDS = frozenset({"the", "and", "for", "not", "this", "that", "with", "from", "are", "was", "but", "when",
                         "should", "would", "can", "get", "set", "use", "none", "true", "false", "self", "def",
                         "return", "import", "class", "init", "py", "src", "lib", "test", "tests"})


def _words(text: str) -> set[str]:
    """Lowercase identifier words of `text`, split at underscores and camel case too ("get_app", "FlaskGroup"
    -> get_app, app, flask, group, flaskgroup), without short and stop words."""
    out: set[str] = set()
    for token in _WORD.findall(text):
        parts = [p for p in re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", token) if p]
        out.update(w.lower() for w in [token, *parts])
    return {w for w in out if len(w) > 2 and w not in _STOP_WORDS}


def rank_paths(paths: Iterable[str], problem: str) -> list[str]:
    """`paths` ordered by relevance to `problem`: a path named in it first, then by how many of its
    directory/file words the problem uses, shallower first on ties, then by name (deterministic)."""
    vocabulary = _words(problem)

    def key(path: str) -> tuple[int, int, int, str]:
        named = path in problem or path.rsplit("/", 1)[-1] in problem
        return (-named, -len(_words(path.removesuffix(".py").replace("/", " ")) & vocabulary), path.count("/"),
                path)

    return sorted(paths, key=key)


def rank_elements(found: Iterable[Element], problem: str) -> list[Element]:
    """`found` ordered by relevance to `problem`: by how many of the element name's words the problem uses
    (an exact name mention counts most), then in source order."""
    vocabulary, mentioned = _words(problem), set(_WORD.findall(problem))
    return sorted(found, key=lambda e: (-(e.name.rsplit(".", 1)[-1] in mentioned) * 100
                                        - len(_words(e.name) & vocabulary), e.start))


def _longest_fitting(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in 0..n with fits(k), for a `fits` true up to some k and false after (binary search)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_tree(ranked: list[str], budget: int, count: TokenCounter) -> tuple[str, int]:
    """The tree (`repo_tree`) of the most relevant of `ranked` paths that fits `budget` tokens.

    Returns:
        The tree text and how many paths it shows (the rest, least relevant, are left out).
    """
    k = _longest_fitting(len(ranked), lambda k: count(repo_tree(ranked[:k])) <= budget)
    return repo_tree(ranked[:k]), k


def fit_lines(text: str, budget: int, count: TokenCounter) -> str:
    """The longest prefix of whole lines of `text` within `budget` tokens; when lines are cut, a last line says
    how many ("... 40 more lines not shown"). "" when not even that fits."""
    if count(text) <= budget:
        return text
    lines = text.split("\n")

    def cut(k: int) -> str:
        return "\n".join([*lines[:k], f"... {len(lines) - k} more lines not shown"])

    k = _longest_fitting(len(lines), lambda k: count(cut(k)) <= budget)
    return cut(k) if k or count(cut(0)) <= budget else ""


def fit_sections(sections: Mapping[str, str], budget: int, count: TokenCounter) -> dict[str, str]:
    """Sections (e.g. path -> code, most relevant first) cut to `budget` tokens in all: each gets an equal share
    of what is left when its turn comes, so a short one leaves room to the next; a section cut to nothing is
    dropped."""
    out: dict[str, str] = {}
    left = budget
    for i, (name, text) in enumerate(sections.items()):
        share = left // (len(sections) - i)
        kept = fit_lines(text, share, count)
        if kept:
            out[name] = kept
            left -= count(kept)
    return out
