"""SEARCH/REPLACE edits: parsed from a repair answer, applied inside the localized lines, turned into a patch.

The repair model never writes a diff (models miscount hunk lines); it quotes the lines to change and their
replacement, Agentless's format. `apply_edits` refuses anything doubtful: a quote found twice or not at all, an
edit outside the lines the localization chose, a result that no longer parses. `make_diff` turns the result into
a patch `git apply` accepts, and `normalized_patch` keys it for the majority vote so that patches differing only
in comments, docstrings or layout count as one.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from osca.exceptions import DataError

from .repo import merge_intervals, parse_quietly

__all__ = ["EditError", "SearchReplace", "apply_edits", "echoes", "make_diff", "normalize_source",
           "normalized_patch", "parse_edits"]


class EditError(DataError):
    """A model's edit is unusable: malformed, ambiguous, outside the allowed lines, or breaks the file."""


@dataclass(frozen=True)
class SearchReplace:
    """One edit: replace the lines `search` (which must occur once in `path`) by `replace`."""

    path: str
    """Repository-relative path of the file to edit."""
    search: str
    """Whole lines, each ending with a newline; "" for an empty SEARCH section."""
    replace: str
    """Whole lines, each ending with a newline; "" deletes the searched lines."""


_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
# "### path/to/file.py": the path has a "/" or ends in an extension, so a heading ("### Fix", "## Step 1.") is
# not taken for one. Small models also write "# path", "File: path", "`path`:" or the bare path; a line without
# "#" counts only when its path has a "/" or ends in ".py", so a stray "x.y" outside a block is not a file.
_PATH = re.compile(r"^\s*#{1,4}\s*(?:file:\s*)?[`*]*(?:\./)?((?:[\w.-]+/)*[\w-][\w.-]*\.\w+|(?:[\w.-]+/)+[\w.-]+)"
                   r"[`*]*:?\s*$", re.I)
_BARE_PATH = re.compile(r"^\s*(?:file:\s*)?[`*]*(?:\./)?((?:[\w.-]+/)+[\w-][\w.-]*\.\w+|[\w-][\w.-]*\.py)[`*]*:?\s*$",
                        re.I)


def _block_text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def parse_edits(text: str, default_path: str | None = None) -> list[SearchReplace]:
    """Every SEARCH/REPLACE block of a repair answer, in order.

    A block is a "### path/to/file.py" line, then "<<<<<<< SEARCH", the old lines, "=======", the new lines and
    ">>>>>>> REPLACE", each marker on its own line; fences such as ```python around blocks are ignored. The path
    line may also be "# path", "File: path", "`path`:" or the bare path. A block with no path line before it
    edits the file of the previous block, or `default_path` (the one file the model was shown) for the first.

    Returns:
        The edits; [] when the answer has no block.

    Raises:
        EditError: a block is unterminated, has no divider, has no path before it, or a REPLACE marker
            comes without a block.
    """
    edits: list[SearchReplace] = []
    path: str | None = default_path
    search: list[str] = []
    replace: list[str] = []
    state, start = "out", 0  # state: out | search | replace
    lines = text.split("\n")
    for i, line in enumerate(lines, 1):
        if state == "out":
            if _SEARCH.match(line):
                if path is None:
                    raise EditError(f"the SEARCH block at answer line {i} has no '### path' line before it")
                state, search, replace, start = "search", [], [], i
            elif _REPLACE.match(line):
                raise EditError(f"answer line {i}: a REPLACE marker without a SEARCH block")
            elif m := _PATH.match(line) or _BARE_PATH.match(line):
                path = m.group(1)
        elif state == "search":
            if _DIVIDER.match(line):
                state = "replace"
            elif _SEARCH.match(line) or _REPLACE.match(line):
                raise EditError(f"the SEARCH block at answer line {start} ({path}) has no '=======' divider")
            else:
                search.append(line)
        else:
            if _REPLACE.match(line):
                assert path is not None
                edits.append(SearchReplace(path, _block_text(search), _block_text(replace)))
                state = "out"
            elif _SEARCH.match(line):
                raise EditError(f"the SEARCH block at answer line {start} ({path}) has no '>>>>>>> REPLACE' end")
            else:
                replace.append(line)
    if state != "out":
        raise EditError(f"the SEARCH block at answer line {start} ({path}) is unterminated")
    return edits


def echoes(answer: str, shown: Iterable[str], *, share: float = 0.6) -> bool:
    """Whether `answer` mostly repeats the code it was shown: at least `share` of its non-blank lines (fences and
    "###" headings aside) occur, stripped, among the lines of `shown`. Qwen2.5-Coder-0.5B answered the repair
    prompt of a real SWE-bench instance this way (the localized code, unchanged, cut at the token limit), so a
    trajectory can say so instead of only "no edit"."""
    known = {line.strip() for text in shown for line in text.split("\n") if line.strip()}
    lines = [line.strip() for line in answer.split("\n")
             if line.strip() and not line.lstrip().startswith(("```", "###"))]
    return bool(lines) and sum(line in known for line in lines) >= share * len(lines)


def _split(text: str) -> tuple[list[str], bool]:
    """Lines without their "\\n" (only "\\n" splits: a form feed or "\\r" stays inside its line), and whether
    the text ends with a newline."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
        return lines, True
    return lines, False


def _join(lines: list[str], trailing_newline: bool) -> str:
    return "\n".join(lines) + ("\n" if trailing_newline and lines else "")


def _occurrences(lines: list[str], needle: list[str], key=lambda s: s) -> list[int]:
    n, wanted = len(needle), [key(s) for s in needle]
    return [i for i in range(len(lines) - n + 1) if [key(s) for s in lines[i:i + n]] == wanted]


def _indentation(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _shift(needle: list[str], found: list[str]) -> tuple[str, str] | None:
    """(indentation in the answer, in the file) when the file's lines are the answer's shifted as a whole: the
    same number of columns on every non-blank line. None otherwise."""
    pairs = [(_indentation(a), _indentation(b)) for a, b in zip(needle, found) if a.strip()]
    if not pairs:
        return None
    delta = len(pairs[0][1]) - len(pairs[0][0])
    return pairs[0] if all(len(new) - len(old) == delta for old, new in pairs) else None


def _reindent(lines: list[str], old: str, new: str) -> list[str]:
    """`lines` with the leading `old` indentation replaced by `new` where they start with it."""
    return [new + line[len(old):] if line.strip() and line.startswith(old) else line for line in lines]


def _parse_error(source: str) -> str | None:
    try:
        parse_quietly(source)
    except SyntaxError as e:
        return f"line {e.lineno}: {e.msg}"
    except ValueError as e:  # NUL bytes
        return str(e)
    return None


def _region(line: int, intervals: list[tuple[int, int]]) -> int | None:
    for k, (start, end) in enumerate(intervals):
        if start <= line <= end:
            return k
    return None


def apply_edits(files: Mapping[str, str], edits: Iterable[SearchReplace], *,
                allowed: Mapping[str, list[tuple[int, int]]] | None = None) -> dict[str, str]:
    """Apply `edits` in order and return the new contents of the files they changed.

    Matching is by whole lines: the search lines must occur exactly once in the file as it stands after the
    earlier edits, compared exactly, or else with trailing whitespace stripped from every line, or else with all
    surrounding whitespace stripped when the answer's block is the file's shifted as a whole (the same number of
    columns on every line); then the replacement is shifted back the same way. Otherwise the replacement lines
    are inserted as written.

    With `allowed`, every line an edit replaces must lie in one allowed region of its file. Regions are the
    file's intervals (1-based inclusive lines of the ORIGINAL file), overlapping or adjacent ones merged. The
    check is mapped through earlier edits by tagging each current line with its region: original lines carry
    the region their line number falls in (or none), lines an edit inserts carry the region of that edit.
    So a later edit may rework what an earlier one wrote, but no sequence of edits can reach outside the
    localized lines or join two separate regions.

    Args:
        files: path -> original contents; only these files may be edited.
        edits: the edits, applied in order.
        allowed: path -> allowed line intervals; None allows every line of every file in `files`.

    Returns:
        path -> new contents, for the files whose contents changed.

    Raises:
        EditError: the path is not in `files` (or not in `allowed`), the search is empty, not found or found
            more than once, the matched lines are outside the allowed regions, or an edited `.py` file no
            longer parses (checked only if its original parsed: a file we cannot judge is not held against
            the edit).
    """
    current: dict[str, tuple[list[str], bool]] = {}
    tags: dict[str, list[int | None]] = {}
    regions: dict[str, list[tuple[int, int]]] = {}
    for n, edit in enumerate(edits, 1):
        what = f"edit {n} ({edit.path})"
        if edit.path not in files:
            raise EditError(f"{what}: the file is not among the files that may be edited")
        if allowed is not None and edit.path not in allowed:
            raise EditError(f"{what}: the file has no localized lines, so it may not be edited")
        needle, _ = _split(edit.search)
        if not needle:
            raise EditError(f"{what}: the SEARCH section is empty (whole-file inserts are not allowed)")
        if edit.path not in current:
            lines, trailing = _split(files[edit.path])
            current[edit.path] = (lines, trailing)
            if allowed is not None:
                regions[edit.path] = merge_intervals(allowed[edit.path])
                tags[edit.path] = [_region(i, regions[edit.path]) for i in range(1, len(lines) + 1)]
        lines, trailing = current[edit.path]
        new_lines, _ = _split(edit.replace)
        hits = _occurrences(lines, needle) or _occurrences(lines, needle, key=str.rstrip)
        if not hits and (hits := _occurrences(lines, needle, key=str.strip)):
            # the model shifted the whole block's indentation (small models drop the leading spaces): shift
            # the replacement the same way. A block whose lines are shifted by different amounts lost its
            # structure (Qwen 1.5B flattened an `if` body and the loop after it): re-indenting would change the code.
            shift = _shift(needle, lines[hits[0]:hits[0] + len(needle)]) if len(hits) == 1 else None
            if len(hits) == 1 and shift is None:
                raise EditError(f"{what}: the SEARCH text matches line {hits[0] + 1} only with a different "
                                "indentation on each line")
            if shift is not None:
                new_lines = _reindent(new_lines, *shift)
        if not hits:
            raise EditError(f"{what}: the SEARCH text was not found in the file")
        if len(hits) > 1:
            where = ", ".join(str(h + 1) for h in hits)
            raise EditError(f"{what}: the SEARCH text was found {len(hits)} times (at lines {where}); "
                            "it must be unique")
        at, size = hits[0], len(needle)
        if allowed is not None:
            touched = set(tags[edit.path][at:at + size])
            if len(touched) != 1 or None in touched:
                spans = ", ".join(f"{s}-{e}" for s, e in regions[edit.path]) or "none"
                raise EditError(f"{what}: the SEARCH text (now at lines {at + 1}-{at + size}) is not inside one "
                                f"localized interval of the original file (allowed: {spans})")
            tags[edit.path][at:at + size] = [touched.pop()] * len(new_lines)
        current[edit.path] = (lines[:at] + new_lines + lines[at + size:], trailing)
    out = {}
    for path, (lines, trailing) in current.items():
        text = _join(lines, trailing)
        if text == files[path]:
            continue
        if path.endswith(".py") and _parse_error(files[path]) is None and (err := _parse_error(text)):
            raise EditError(f"{path}: the edited file does not parse ({err})")
        out[path] = text
    return out


def _keep_ends(text: str) -> list[str]:
    lines, trailing = _split(text)
    return [line + "\n" for line in lines[:-1]] + ([lines[-1] + ("\n" if trailing else "")] if lines else [])


def make_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """A git-style unified diff (3 lines of context) taking `old` to `new`, which `git apply` accepts.

    Files are in sorted order; a file in `new` with the same contents in `old` is left out, a file missing
    from `old` is a new file, and files only in `old` are untouched (`new` holds the edited files only, as
    `apply_edits` returns them). A last line without newline gets git's "\\ No newline at end of file".

    Returns:
        The patch text; "" when nothing changed.
    """
    chunks = []
    for path in sorted(new):
        before, after = old.get(path), new[path]
        if before == after:
            continue
        head = [f"diff --git a/{path} b/{path}\n"]
        if before is None:
            head += ["new file mode 100644\n", "--- /dev/null\n", f"+++ b/{path}\n"]
        else:
            head += [f"--- a/{path}\n", f"+++ b/{path}\n"]
        body = list(difflib.unified_diff(_keep_ends(before or ""), _keep_ends(after), n=3))[2:]  # skip ---/+++
        chunks.append("".join(head))
        for line in body:
            chunks.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(chunks)


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                # A body may not be empty: `def f(): "doc"` becomes `def f(): pass`, which it means.
                node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])


def normalize_source(source: str) -> str:
    """`source` as `ast.unparse` renders it without docstrings: comments, docstrings, quotes, spacing and line
    breaks inside brackets no longer matter, the code does.

    Raises:
        EditError: `source` does not parse.
    """
    try:
        tree = parse_quietly(source)
    except (SyntaxError, ValueError) as e:
        raise EditError(f"cannot normalize: the source does not parse ({e})") from e
    _drop_docstrings(tree)
    return ast.unparse(tree) + "\n"


def _normalized(path: str, text: str) -> str:
    # Non-Python files, and Python we cannot parse, are compared as they are.
    if not path.endswith(".py"):
        return text
    try:
        return normalize_source(text)
    except EditError:
        return text


def normalized_patch(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """The majority-vote key of a patch: `make_diff` of the normalized old and new contents of the files in
    `new`. Two patches that differ only in comments, docstrings or layout get the same key; a patch that only
    changes those gets "".
    """
    return make_diff({p: _normalized(p, old[p]) for p in new if p in old},
                     {p: _normalized(p, text) for p, text in new.items()})
