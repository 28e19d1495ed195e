"""osca.agents.agentless.edits: parsing SEARCH/REPLACE answers, applying them in the allowed lines, diffs that
`git apply` accepts, and the normalized majority-vote key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from osca.agents.agentless.edits import (EditError, SearchReplace, apply_edits, echoes, make_diff, normalize_source,
                                        normalized_patch, parse_edits)
from osca.exceptions import DataError

CALC = """\
import math


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b


def div(a, b):
    return a / b
"""


def block(path: str | None, search: str, replace: str) -> str:
    head = f"### {path}\n" if path else ""
    return f"{head}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


# -- parse_edits ---------------------------------------------------------------------------------------------------

def test_parse_edits_multiple_fenced_blocks_with_prose() -> None:
    answer = ("The bug is in `div`: it does not check for zero.\n\n"
              "```python\n" + block("pkg/calc.py", "    return a / b\n", "    if b == 0:\n        return 0\n"
                                                                       "    return a / b\n") + "```\n\n"
              "Also add a helper:\n"
              "```python\n### `pkg/util.py`\n<<<<<<< SEARCH\nX = 1\n\n=======\n>>>>>>> REPLACE\n```\n")
    assert parse_edits(answer) == [
        SearchReplace("pkg/calc.py", "    return a / b\n", "    if b == 0:\n        return 0\n    return a / b\n"),
        SearchReplace("pkg/util.py", "X = 1\n\n", ""),
    ]


def test_parse_edits_block_without_path_reuses_previous_and_headings_are_not_paths() -> None:
    answer = ("### Fix\n" + block("a/b.py", "x = 1\n", "x = 2\n") + "### Explanation.\n"
              + block(None, "y = 1\n", "y = 2\n"))
    assert [(e.path, e.search) for e in parse_edits(answer)] == [("a/b.py", "x = 1\n"), ("a/b.py", "y = 1\n")]


def test_parse_edits_keeps_markers_like_content_inside_blocks() -> None:
    # a "### path" line inside the replacement is code (a comment), not a new file
    answer = block("a.py", "x = 1\n", "### not/a/path.py\nx = 2\n")
    assert parse_edits(answer) == [SearchReplace("a.py", "x = 1\n", "### not/a/path.py\nx = 2\n")]


@pytest.mark.parametrize("head", ["# pkg/calc.py", "File: pkg/calc.py", "`pkg/calc.py`:", "pkg/calc.py",
                                  "**pkg/calc.py**", "## File: `pkg/calc.py`", "calc.py:"])
def test_parse_edits_path_lines_small_models_write(head: str) -> None:
    answer = f"Here is the fix.\n```python\n{head}\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```"
    assert [e.path for e in parse_edits(answer)] == ["calc.py" if head == "calc.py:" else "pkg/calc.py"]


def test_parse_edits_default_path_for_a_block_without_one() -> None:
    answer = "```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```"
    assert parse_edits(answer, default_path="pkg/calc.py") == [SearchReplace("pkg/calc.py", "x = 1\n", "x = 2\n")]
    # prose sentences are not paths, even with a dot in them
    assert parse_edits("Change it like this.\n" + answer, default_path="a.py")[0].path == "a.py"


def test_parse_edits_no_blocks() -> None:
    assert parse_edits("I could not find the bug.\n```python\nprint(1)\n```") == []


@pytest.mark.parametrize(("answer", "message"), [
    ("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n", "no '### path'"),
    ("### a.py\n<<<<<<< SEARCH\nx\n=======\ny\n", "unterminated"),
    ("### a.py\n<<<<<<< SEARCH\nx\n", "unterminated"),
    ("### a.py\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n", "no '=======' divider"),
    ("### a.py\n<<<<<<< SEARCH\nx\n=======\ny\n<<<<<<< SEARCH\n", "no '>>>>>>> REPLACE' end"),
    ("### a.py\nx\n=======\ny\n>>>>>>> REPLACE\n", "without a SEARCH block"),
])
def test_parse_edits_malformed(answer: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        parse_edits(answer)


def test_edit_error_is_a_data_error() -> None:
    assert issubclass(EditError, DataError) and issubclass(EditError, ValueError)


# -- apply_edits ---------------------------------------------------------------------------------------------------

def test_apply_exact_and_only_changed_files_returned() -> None:
    files = {"calc.py": CALC, "other.py": "z = 0\n"}
    new = apply_edits(files, [SearchReplace("calc.py", "def mul(a, b):\n    return a * b\n",
                                            "def mul(a, b):\n    return b * a\n")])
    assert new == {"calc.py": CALC.replace("return a * b", "return b * a")}
    noop = apply_edits(files, [SearchReplace("other.py", "z = 0\n", "z = 0\n")])
    assert noop == {}


def test_apply_tolerates_trailing_whitespace() -> None:
    files = {"calc.py": CALC.replace("def sub(a, b):\n", "def sub(a, b):   \n")}
    new = apply_edits(files, [SearchReplace("calc.py", "def sub(a, b):\n    return a - b\n",
                                            "def sub(a, b):\n    return -(b - a)\n")])
    assert "def sub(a, b):\n    return -(b - a)\n" in new["calc.py"]


METHOD = """class Box:
    def get(self, key):
        if key in self.items:
            return self.items[key]
        return None
"""


def test_apply_reindents_a_block_the_model_shifted_as_a_whole() -> None:
    """Small models drop a method body's leading spaces: the match ignores them and the replacement is shifted
    back by the same amount, keeping its own relative indentation."""
    dedented = SearchReplace("box.py", "if key in self.items:\n    return self.items[key]\n",
                             "if key in self.items:\n    return self.items[key]\nif key is None:\n    raise KeyError\n")
    new = apply_edits({"box.py": METHOD}, [dedented])["box.py"]
    assert "        if key is None:\n            raise KeyError\n        return None\n" in new
    calc = apply_edits({"calc.py": CALC}, [SearchReplace("calc.py", "return a - b\n", "return b - a\n")])
    assert "def sub(a, b):\n    return b - a\n" in calc["calc.py"]
    # Qwen2.5-Coder-1.5B's real answer shape: an `if` body and the loop after it flattened to one level; shifting
    # the replacement would have moved the loop into the `if` (6 PASS_TO_PASS tests broke): refused
    flattened = SearchReplace("box.py", "return self.items[key]\nreturn None\n", "return self.items.get(key)\n")
    with pytest.raises(EditError, match="different indentation on each line"):
        apply_edits({"box.py": METHOD}, [flattened])
    with pytest.raises(EditError, match="found 2 times"):  # stripped lines must still be unique
        apply_edits({"d.py": "def f():\n    x = 1\n\ndef g():\n    x = 1\n"},
                    [SearchReplace("d.py", "x = 1\n", "x = 2\n")])


def test_apply_edits_in_order_later_edit_sees_earlier_result() -> None:
    edits = [SearchReplace("calc.py", "    return a + b\n", "    total = a + b\n    return total\n"),
             SearchReplace("calc.py", "    return total\n", "    return int(total)\n")]
    new = apply_edits({"calc.py": CALC}, edits)["calc.py"]
    assert "def add(a, b):\n    total = a + b\n    return int(total)\n\n\ndef sub" in new


def test_apply_not_found_ambiguous_empty_unknown_file() -> None:
    files = {"calc.py": CALC}
    with pytest.raises(EditError, match=r"edit 1 \(calc.py\): the SEARCH text was not found"):
        apply_edits(files, [SearchReplace("calc.py", "    return a % b\n", "    return 0\n")])
    with pytest.raises(EditError, match=r"found 4 times \(at lines 2, 6, 10, 14\)"):
        apply_edits(files, [SearchReplace("calc.py", "\n\n", "\n")])  # two blank lines: between every def
    with pytest.raises(EditError, match="found 2 times"):
        apply_edits({"a.py": "x = 1\ny = 2\nx = 1\n"}, [SearchReplace("a.py", "x = 1\n", "x = 3\n")])
    with pytest.raises(EditError, match="SEARCH section is empty"):
        apply_edits(files, [SearchReplace("calc.py", "", "import os\n")])
    with pytest.raises(EditError, match=r"edit 2 \(nope.py\): the file is not among"):
        apply_edits(files, [SearchReplace("calc.py", "import math\n", "import os\n"),
                            SearchReplace("nope.py", "x\n", "y\n")])


def test_apply_rejects_result_that_does_not_parse() -> None:
    with pytest.raises(EditError, match=r"calc.py: the edited file does not parse \(line 5"):
        apply_edits({"calc.py": CALC}, [SearchReplace("calc.py", "    return a + b\n", "    return a +\n")])
    # non-Python files are not parsed, and a Python file that never parsed is not held against the edit
    assert apply_edits({"README.md": "a (\n"}, [SearchReplace("README.md", "a (\n", "b (\n")]) == \
        {"README.md": "b (\n"}
    assert apply_edits({"py2.py": "print 'x'\ny = 1\n"}, [SearchReplace("py2.py", "y = 1\n", "y = 2\n")]) == \
        {"py2.py": "print 'x'\ny = 2\n"}


def test_apply_keeps_missing_trailing_newline() -> None:
    new = apply_edits({"a.py": "x = 1\ny = 2"}, [SearchReplace("a.py", "y = 2\n", "y = 3\n")])
    assert new == {"a.py": "x = 1\ny = 3"}


def test_allowed_inside_accepted_outside_rejected() -> None:
    files = {"calc.py": CALC}
    allowed = {"calc.py": [(8, 9), (12, 13)]}  # sub and mul
    new = apply_edits(files, [SearchReplace("calc.py", "    return a - b\n", "    return a + -b\n")],
                      allowed=allowed)
    assert "return a + -b" in new["calc.py"]
    with pytest.raises(EditError, match=r"now at lines 17-17\) is not inside one localized interval.*8-9, 12-13"):
        apply_edits(files, [SearchReplace("calc.py", "    return a / b\n", "    return a // b\n")], allowed=allowed)
    # straddling the edge of an interval is outside too
    with pytest.raises(EditError, match="not inside one localized interval"):
        apply_edits(files, [SearchReplace("calc.py", "\n\ndef mul(a, b):\n", "\n\ndef mul(a, b, c=1):\n")],
                    allowed=allowed)
    with pytest.raises(EditError, match="has no localized lines"):
        apply_edits({**files, "b.py": "y = 1\n"}, [SearchReplace("b.py", "y = 1\n", "y = 2\n")], allowed=allowed)


def test_allowed_two_separate_intervals_cannot_be_joined_by_one_edit() -> None:
    search = "def sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
    with pytest.raises(EditError, match="not inside one localized interval"):
        apply_edits({"calc.py": CALC}, [SearchReplace("calc.py", search, "")], allowed={"calc.py": [(8, 9), (12, 13)]})
    # adjacent / overlapping allowed intervals form one region
    new = apply_edits({"calc.py": CALC}, [SearchReplace("calc.py", search, "")],
                      allowed={"calc.py": [(8, 10), (11, 13), (9, 12)]})
    assert "def sub" not in new["calc.py"] and "def mul" not in new["calc.py"]


def test_allowed_intervals_map_through_earlier_edits() -> None:
    # edit 1 grows `add` (lines 4-5) by 3 lines; `div` (original 16-17) moves to 19-20 but stays allowed,
    # and `mul` (original 12-13, now 15-16) stays forbidden although its new line numbers lie in 16-17
    allowed = {"calc.py": [(4, 5), (16, 17)]}
    grow = SearchReplace("calc.py", "    return a + b\n", "    if a is None:\n        a = 0\n    c = a + b\n"
                                                          "    return c\n")
    fix_div = SearchReplace("calc.py", "    return a / b\n", "    return a / b if b else 0\n")
    new = apply_edits({"calc.py": CALC}, [grow, fix_div], allowed=allowed)["calc.py"]
    assert "c = a + b" in new and "return a / b if b else 0" in new
    with pytest.raises(EditError, match="not inside"):
        apply_edits({"calc.py": CALC}, [grow, SearchReplace("calc.py", "    return a * b\n", "    return 0\n")],
                    allowed=allowed)
    # a later edit may rework the lines an earlier edit wrote inside an allowed interval
    again = SearchReplace("calc.py", "        a = 0\n", "        a = 1\n")
    assert "a = 1" in apply_edits({"calc.py": CALC}, [grow, again], allowed=allowed)["calc.py"]


# -- make_diff -----------------------------------------------------------------------------------------------------

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def _git(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, text=True, capture_output=True, check=False,
                          env={"PATH": str(Path(GIT or "git").parent), "HOME": str(repo),
                               "GIT_CONFIG_NOSYSTEM": "1"})


def _apply_with_git(tmp_path: Path, old: dict[str, str], patch: str) -> dict[str, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert _git(repo, "init", "-q").returncode == 0
    for path, text in old.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(text.encode())
    check = _git(repo, "apply", "--check", "-", stdin=patch)
    assert check.returncode == 0, check.stderr
    applied = _git(repo, "apply", "-", stdin=patch)
    assert applied.returncode == 0, applied.stderr
    return {p.relative_to(repo).as_posix(): p.read_bytes().decode() for p in repo.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(repo).parts}


@needs_git
def test_make_diff_applies_with_git_multiple_files(tmp_path: Path) -> None:
    old = {"pkg/calc.py": CALC, "pkg/b.py": "".join(f"v{i} = {i}\n" for i in range(40)), "same.py": "s = 1\n"}
    edits = [SearchReplace("pkg/calc.py", "    return a / b\n", "    if not b:\n        return 0\n    return a / b\n"),
             SearchReplace("pkg/calc.py", "import math\n", ""),
             SearchReplace("pkg/b.py", "v3 = 3\n", "v3 = 33\n"),
             SearchReplace("pkg/b.py", "v30 = 30\nv31 = 31\n", "v31 = 31\nv30 = 30\n")]
    new = apply_edits(old, edits)
    patch = make_diff({p: old[p] for p in new}, new)
    assert patch.startswith("diff --git a/pkg/b.py b/pkg/b.py\n--- a/pkg/b.py\n+++ b/pkg/b.py\n@@ ")
    assert patch.index("a/pkg/b.py") < patch.index("a/pkg/calc.py")  # sorted
    assert patch.count("@@ -") == 4  # 2 files x 2 distant hunks
    assert "same.py" not in patch and make_diff(old, {"same.py": "s = 1\n"}) == ""
    assert _apply_with_git(tmp_path, old, patch) == {**old, **new}


@needs_git
@pytest.mark.parametrize(("before", "after"), [
    ("x = 1\ny = 2", "x = 1\ny = 3"),  # no newline on either side
    ("x = 1\ny = 2", "x = 1\ny = 2\n"),  # adds the final newline
    ("x = 1\ny = 2\n", "x = 1\ny = 2"),  # removes it
    ("a\n" * 10 + "z", "a\n" * 10 + "zz"),
])
def test_make_diff_missing_trailing_newline(tmp_path: Path, before: str, after: str) -> None:
    patch = make_diff({"f.py": before}, {"f.py": after})
    assert "\\ No newline at end of file\n" in patch
    assert _apply_with_git(tmp_path, {"f.py": before}, patch) == {"f.py": after}


@needs_git
def test_make_diff_new_file(tmp_path: Path) -> None:
    patch = make_diff({}, {"pkg/new.py": "a = 1\n"})
    assert "new file mode 100644\n--- /dev/null\n+++ b/pkg/new.py\n" in patch
    assert _apply_with_git(tmp_path, {"keep.py": "k\n"}, patch) == {"keep.py": "k\n", "pkg/new.py": "a = 1\n"}


@needs_git
def test_make_diff_with_form_feed_and_crlf_lines(tmp_path: Path) -> None:
    # only "\n" splits lines: str.splitlines would also split at the form feed and produce a broken hunk
    before = "x = 1\n\x0c\ny = 2\r\nz = 3\n"
    after = before.replace("z = 3", "z = 4")
    assert _apply_with_git(tmp_path, {"f.py": before}, make_diff({"f.py": before}, {"f.py": after})) == \
        {"f.py": after}


# -- normalization -------------------------------------------------------------------------------------------------

def test_normalize_source_ignores_comments_docstrings_layout() -> None:
    a = 'def f(x):\n    """Doc."""\n    # comment\n    return (x +\n            1)\n'
    b = "def f( x ):\n    return x+1  # other comment\n"
    assert normalize_source(a) == normalize_source(b) == "def f(x):\n    return x + 1\n"
    assert normalize_source('"""Module."""\nclass A:\n    """Only doc."""\n') == "class A:\n    pass\n"
    assert normalize_source("x = 1\n") != normalize_source("x = 2\n")
    with pytest.raises(EditError, match="does not parse"):
        normalize_source("def (:\n")


def test_normalized_patch_is_a_vote_key() -> None:
    old = {"calc.py": CALC}
    plain = apply_edits(old, [SearchReplace("calc.py", "    return a / b\n",
                                            "    if b == 0:\n        return 0\n    return a / b\n")])
    styled = apply_edits(old, [SearchReplace("calc.py", "def div(a, b):\n    return a / b\n",
                                             'def div(a, b):\n    """Safe."""\n    if b==0:  # guard\n'
                                             "        return 0\n\n    return a/b\n")])
    other = apply_edits(old, [SearchReplace("calc.py", "    return a / b\n",
                                            "    if b == 0:\n        return None\n    return a / b\n")])
    comment_only = apply_edits(old, [SearchReplace("calc.py", "    return a / b\n",
                                                   "    # b may be zero\n    return a / b\n")])
    key = normalized_patch(old, plain)
    assert key and key == normalized_patch(old, styled)
    assert plain != styled and make_diff(old, plain) != make_diff(old, styled)
    assert normalized_patch(old, other) not in ("", key)
    assert comment_only and normalized_patch(old, comment_only) == ""
    # non-Python files are compared verbatim
    assert normalized_patch({"r.txt": "a\n"}, {"r.txt": "a \n"}) != ""


def test_echoes_tells_a_repeated_snippet_from_an_answer() -> None:
    """The shape of Qwen2.5-Coder-0.5B's real repair answers on a SWE-bench instance: the heading, then the code it
    was shown, unchanged and cut off at the token limit."""
    echo = "### pkg/calc.py\ndef sub(a, b):\n    return a - b\n...\n\ndef mul(a, b):\n    return a * b\n\n\ndef d"
    assert echoes(echo, [CALC])
    fix = "The bug is in sub.\n```python\n" + block("pkg/calc.py", "    return a - b\n", "    return b - a\n") + "```"
    assert not echoes(fix, [CALC]) and not echoes("", [CALC])


# A real Qwen2.5-Coder-0.5B answer to the repair prompt of the mini calc instance (tests/agentless/swe_mini.py),
# verbatim: the code it was shown, under its headings, unchanged.
QWEN_05B_REPAIR = '''```python
### calc/fmt.py
def show(x):
    return f"<{x}>"

### calc/ops.py
def add(a, b):
    """Return the sum of a and b."""
    return a - b
```'''


def test_a_real_small_model_repair_answer_is_an_echo_without_edits() -> None:
    ops = 'def add(a, b):\n    """Return the sum of a and b."""\n    return a - b\n'
    assert parse_edits(QWEN_05B_REPAIR) == []
    assert echoes(QWEN_05B_REPAIR, ['def show(x):\n    return f"<{x}>"\n', ops])
