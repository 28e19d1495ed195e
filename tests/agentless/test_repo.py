"""osca.agents.agentless.repo: the repository views shown to the model and the parsing of its location answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from osca.agents.agentless.repo import (Element, elements, find_element, fit_lines, fit_sections, fit_tree,
                                        merge_intervals, numbered, parse_file_list, parse_locations, python_files,
                                        rank_elements, rank_paths, repo_tree, skeleton)
from osca.exceptions import DataError

SAMPLE = '''"""Module docstring."""
import os
from typing import Any

VERSION = "1.0"
TABLE = {"alpha": 1, "beta": 2, "gamma": 3, "delta": 4, "epsilon": 5, "zeta": 6, "eta": 7, "theta": 8, "iota": 9}


@register
@other(flag=True)
class Calculator(Base):
    """Adds things."""

    precision: int = 2

    def __init__(self, precision: int = 2) -> None:
        self.precision = precision

    @property
    def name(self):
        return "calc"

    def add(self, a,
            b=0,
            *args, **kwargs) -> float:
        """Add."""
        def helper(x):
            return x
        return round(helper(a) + b, self.precision)

    class Meta:
        ordering = ["name"]


async def fetch(url: str) -> bytes:
    # a comment
    return b""


def divide(a, b):
    if b == 0:
        raise ZeroDivisionError("b")
    return a / b


x, y = 1, 2
'''


def _touch(root: Path, *paths: str) -> None:
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text("")


def test_python_files_skips_noise_and_optionally_tests(tmp_path: Path) -> None:
    _touch(tmp_path, "setup.py", "pkg/__init__.py", "pkg/calc.py", "pkg/build/gen.py", "pkg/README.md",
           ".git/hooks/x.py", "pkg/__pycache__/calc.cpython-311.py", "build/lib/pkg/calc.py", "dist/x.py",
           "myenv/lib/site.py", "pkg.egg-info/x.py", "tests/test_calc.py", "pkg/tests/helpers.py",
           "pkg/test_io.py", "pkg/io_test.py", "conftest.py", "pkg/testing.py")
    (tmp_path / "myenv" / "pyvenv.cfg").write_text("home = /usr\n")
    everything = python_files(tmp_path)
    assert everything == ["conftest.py", "pkg/__init__.py", "pkg/build/gen.py", "pkg/calc.py", "pkg/io_test.py",
                          "pkg/test_io.py", "pkg/testing.py", "pkg/tests/helpers.py", "setup.py",
                          "tests/test_calc.py"]
    assert python_files(tmp_path, include_tests=False) == ["pkg/__init__.py", "pkg/build/gen.py", "pkg/calc.py",
                                                           "pkg/testing.py", "setup.py"]


def test_repo_tree_nests_and_sorts() -> None:
    tree = repo_tree(["setup.py", "pkg/sub/deep.py", "pkg/calc.py", "pkg/__init__.py", "docs/conf.py"])
    assert tree == ("docs/\n"
                    "    conf.py\n"
                    "pkg/\n"
                    "    __init__.py\n"
                    "    calc.py\n"
                    "    sub/\n"
                    "        deep.py\n"
                    "setup.py")
    assert repo_tree([]) == ""


def test_skeleton_keeps_interface_drops_bodies() -> None:
    sk = skeleton(SAMPLE)
    for kept in ["VERSION = '1.0'",
                 "@register\n@other(flag=True)\nclass Calculator(Base):",
                 "    precision: int = 2",
                 "    def __init__(self, precision: int=2) -> None:\n        ...",
                 "    @property\n    def name(self):\n        ...",
                 "    def add(self, a, b=0, *args, **kwargs) -> float:\n        ...",
                 "    class Meta:\n        ordering = ['name']",
                 "async def fetch(url: str) -> bytes:\n    ...",
                 "def divide(a, b):\n    ...",
                 "x, y = (1, 2)"]:
        assert kept in sk, kept
    for dropped in ["import", "docstring", "Adds things", "Add.", "helper", "round(", "self.precision = ",
                    "comment", "ZeroDivisionError", "return"]:
        assert dropped not in sk, dropped
    table = next(line for line in sk.splitlines() if line.startswith("TABLE"))
    assert len(table) == 100 and table.endswith(" ...")


def test_skeleton_of_empty_class_and_unparsable_source() -> None:
    assert skeleton("class A:\n    '''Only a docstring.'''\n") == "class A:\n    ..."
    with pytest.raises(DataError, match="line 1"):
        skeleton("def broken(:\n    pass\n")


def test_skeleton_ignores_invalid_escape_warnings() -> None:
    # pytest runs with warnings as errors: an old-style "\d" must not make the file unparsable
    assert skeleton('PATTERN = "\\d+"\n') == "PATTERN = '\\\\d+'"


def test_elements_spans_include_decorators() -> None:
    els = {e.name: e for e in elements("pkg/calc.py", SAMPLE)}
    assert list(els) == ["VERSION", "TABLE", "Calculator", "Calculator.__init__", "Calculator.name",
                         "Calculator.add", "fetch", "divide", "x", "y"]
    lines = SAMPLE.split("\n")
    calc = els["Calculator"]
    assert (calc.kind, lines[calc.start - 1], lines[calc.end - 1].strip()) == ("class", "@register",
                                                                               "ordering = [\"name\"]")
    name = els["Calculator.name"]
    assert name.kind == "method" and lines[name.start - 1].strip() == "@property" and name.end == name.start + 2
    add = els["Calculator.add"]
    assert lines[add.start - 1].strip().startswith("def add(") and "return round" in lines[add.end - 1]
    assert els["fetch"].kind == "function" and lines[els["fetch"].start - 1].startswith("async def fetch")
    assert els["divide"].end - els["divide"].start == 3
    assert els["x"].kind == els["y"].kind == "variable" and els["x"].start == els["y"].start
    assert "helper" not in " ".join(els) and "Calculator.Meta" not in els
    assert all(e.path == "pkg/calc.py" for e in els.values())


@pytest.mark.parametrize(("query", "expected"), [
    ("Calculator.add", "Calculator.add"),
    ("function: Calculator.add", "Calculator.add"),
    ("method: Calculator.add", "Calculator.add"),
    ("add", "Calculator.add"),
    ("function: add()", "Calculator.add"),
    ("class: Calculator", "Calculator"),
    ("Class:  `Calculator`", "Calculator"),
    ("function: divide", "divide"),
    ("variable: VERSION", "VERSION"),
    ("function: pkg.calc.Calculator.add", "Calculator.add"),
    ("pkg.calc.divide", "divide"),
])
def test_find_element_variants(query: str, expected: str) -> None:
    found = find_element(elements("pkg/calc.py", SAMPLE), query)
    assert found is not None and found.name == expected


@pytest.mark.parametrize("query", ["class: divide", "variable: divide", "function: Calculator", "function: nope",
                                   "Calculator.nope", "", "function: "])
def test_find_element_misses(query: str) -> None:
    assert find_element(elements("pkg/calc.py", SAMPLE), query) is None


def test_find_element_ambiguous_method_name() -> None:
    els = elements("m.py", "class A:\n    def run(self): ...\nclass B:\n    def run(self): ...\n")
    assert find_element(els, "run") is None
    found = find_element(els, "B.run")
    assert found == Element("m.py", "method", "B.run", 4, 4)


def test_find_element_property_setter_returns_first_definition() -> None:
    src = "class A:\n    @property\n    def v(self): ...\n    @v.setter\n    def v(self, x): ...\n"
    assert find_element(elements("m.py", src), "v") == Element("m.py", "method", "A.v", 2, 3)


def test_numbered_lines() -> None:
    src = "".join(f"line{i}\n" for i in range(1, 13))
    assert numbered(src, 8, 11) == " 8| line8\n 9| line9\n10| line10\n11| line11"
    assert numbered(src, 11, 99) == "11| line11\n12| line12"
    assert numbered(src, -3, 1) == "1| line1"
    assert numbered("a\n\nb", 1, 3) == "1| a\n2|\n3| b"


def test_merge_intervals() -> None:
    assert merge_intervals([]) == []
    assert merge_intervals([(5, 7), (1, 2), (3, 3)]) == [(1, 3), (5, 7)]  # adjacent 2/3 merge, 3/5 do not
    assert merge_intervals([(10, 20), (12, 15)]) == [(10, 20)]
    assert merge_intervals([(10, 12), (1, 2), (14, 20)], context=1, max_line=18) == [(1, 3), (9, 18)]
    assert merge_intervals([(2, 3), (40, 50)], context=5, max_line=30) == [(1, 8)]
    with pytest.raises(ValueError, match="ends before"):
        merge_intervals([(5, 4)])


KNOWN = ["pkg/__init__.py", "pkg/calc.py", "pkg/utils.py", "pkg/sub/__init__.py", "setup.py"]


def test_parse_file_list_fenced_answer_ignores_prose() -> None:
    answer = ("Looking at the problem, utils.py is probably not involved.\n\n"
              "```\n"
              "pkg/calc.py\n"
              "- `pkg/sub/__init__.py`\n"
              "pkg/missing.py\n"
              "calc.py\n"
              "2. setup.py  (for the version)\n"
              "```\n")
    assert parse_file_list(answer, KNOWN, 5) == ["pkg/calc.py", "pkg/sub/__init__.py", "setup.py"]
    assert parse_file_list(answer, KNOWN, 2) == ["pkg/calc.py", "pkg/sub/__init__.py"]


def test_parse_file_list_bare_and_truncated_answers() -> None:
    bare = "The files to edit:\n1. **utils.py**\n2. /testbed/pkg/calc.py.\n3. __init__.py\n"
    assert parse_file_list(bare, KNOWN, 3) == ["pkg/utils.py", "pkg/calc.py"]  # __init__.py is ambiguous
    assert parse_file_list("```python\npkg/utils.py\nsetup.py", KNOWN, 5) == ["pkg/utils.py", "setup.py"]
    assert parse_file_list("nothing useful", KNOWN, 5) == []


def test_parse_locations_messy_multi_file_answer() -> None:
    answer = """Here are the locations:

```
pkg/calc.py
class: Calculator
- function: Calculator.add()
function: divide  (the division)
line: 42
Line: 42
lines: 50-52

pkg/nowhere.py
function: ghost

`pkg/utils.py`:
variable: TIMEOUT
```

```
setup.py
```
"""
    assert parse_locations(answer, KNOWN) == {
        "pkg/calc.py": ["class: Calculator", "function: Calculator.add", "function: divide", "line: 42",
                        "line: 50", "line: 51", "line: 52"],
        "pkg/utils.py": ["variable: TIMEOUT"],
        "setup.py": [],
    }


def test_parse_locations_without_fences_and_orphans() -> None:
    answer = ("function: orphan\n"
              "I think the bug is here.\n"
              "* utils.py\n"
              "  * function: retry\n"
              "  * line: x\n"
              "  * line: 1-5000\n")
    assert parse_locations(answer, KNOWN) == {"pkg/utils.py": ["function: retry"]}


def test_parse_locations_echoed_prompt_headings() -> None:
    answer = "```\n### File: pkg/calc.py ###\nfunction: divide\n### pkg/utils.py\nline: 7\n```"
    assert parse_locations(answer, KNOWN) == {"pkg/calc.py": ["function: divide"], "pkg/utils.py": ["line: 7"]}
    assert parse_file_list("### File: pkg/calc.py ###\n## setup.py", KNOWN, 5) == ["pkg/calc.py", "setup.py"]


def test_parse_file_list_resolves_dotted_module_names() -> None:
    known = ["calc/__init__.py", "calc/ops.py", "pkg/sub/__init__.py", "pkg/sub/mod.py"]
    answer = "```\ncalc.ops.add.py\ncalc/ops/ops.py\npkg.sub\nnot.a.module\n```"
    assert parse_file_list(answer, known, 5) == ["calc/ops.py", "pkg/sub/__init__.py"]


# -- token budgets -----------------------------------------------------------------------------------------------

def words(text: str) -> int:
    """A stand-in token counter: whitespace-separated words (the graph uses LiteLLM's token_counter)."""
    return len(text.split())


ISSUE = "FlaskGroup does not pass create_app to ScriptInfo; `flask routes` should show each subdomain."
PATHS = ["docs/conf.py", "src/flask/__init__.py", "src/flask/app.py", "src/flask/cli.py", "src/flask/json/tag.py",
         "src/flask/scaffold.py", "src/flask/sansio/scaffold.py", "examples/tutorial/flaskr/db.py"]


def test_rank_paths_puts_the_files_the_issue_speaks_of_first_deterministically() -> None:
    ranked = rank_paths(PATHS, ISSUE)
    assert ranked[0] == "src/flask/app.py"  # shares "flask" and "app" (from create_app) with the issue
    assert set(ranked[-2:]) == {"docs/conf.py", "examples/tutorial/flaskr/db.py"}  # share nothing
    assert sorted(ranked) == sorted(PATHS) and rank_paths(reversed(PATHS), ISSUE) == ranked
    assert rank_paths(PATHS, "see src/flask/json/tag.py")[0] == "src/flask/json/tag.py"  # named outright


def test_rank_elements_prefers_names_the_issue_mentions_then_source_order() -> None:
    els = [Element("m.py", "function", "helper", 1, 2), Element("m.py", "method", "ScriptInfo.load_app", 3, 9),
           Element("m.py", "class", "FlaskGroup", 10, 40), Element("m.py", "function", "other", 41, 42)]
    ranked = [e.name for e in rank_elements(els, ISSUE)]
    assert ranked[0] == "FlaskGroup" and ranked.index("ScriptInfo.load_app") < ranked.index("helper")
    assert ranked[-2:] == ["helper", "other"]  # unrelated ones keep their source order


def test_fit_tree_keeps_the_most_relevant_paths_that_fit() -> None:
    ranked = rank_paths(PATHS, ISSUE)
    tree, shown = fit_tree(ranked, 6, words)
    assert words(tree) <= 6 and 0 < shown < len(PATHS)
    assert tree == repo_tree(ranked[:shown])
    assert fit_tree(ranked, 1000, words) == (repo_tree(ranked), len(PATHS))
    assert fit_tree(ranked, 0, words) == ("", 0)


def test_fit_lines_cuts_whole_lines_and_says_how_many_are_left_out() -> None:
    text = "\n".join(f"line {i}" for i in range(1, 101))  # 200 words
    assert fit_lines(text, 200, words) == text
    cut = fit_lines(text, 50, words)
    assert words(cut) <= 50 and cut.startswith("line 1\nline 2\n")
    kept = cut.count("\n")
    assert cut.endswith(f"... {100 - kept} more lines not shown")
    assert fit_lines(text, 3, words) == ""  # not even the note fits


def test_fit_sections_shares_the_budget_and_lets_short_sections_leave_room() -> None:
    sections = {"a.py": "x = 1", "b.py": "\n".join(f"y{i} = {i}" for i in range(100)),
                "c.py": "\n".join(f"z{i} = {i}" for i in range(100))}
    fitted = fit_sections(sections, 120, words)
    assert list(fitted) == ["a.py", "b.py", "c.py"] and fitted["a.py"] == "x = 1"
    assert sum(words(t) for t in fitted.values()) <= 120
    # a.py used 3 of its 40: b.py gets half of the 117 left, c.py the rest
    assert 50 <= words(fitted["b.py"]) <= 58 and 50 <= words(fitted["c.py"]) <= 60
    assert fit_sections(sections, 2, words) == {}


def test_parse_locations_quoted_reads_the_functions_a_small_model_quotes() -> None:
    """The shapes of Qwen2.5-Coder-0.5B's real edit-location answers on SWE-bench instances: prose naming files
    (one of them misnamed), then the function to change quoted as code; or quoted code with no file named."""
    known = ["pkg/app.py", "pkg/config.py", "pkg/__init__.py"]
    prose = ("To fix it we need to modify the `pkg/app.py` and `pkg/config.py` files.\n\n"
             "In `pkg/app.py`, replace the `from_file` method with:\n```python\ndef from_file(\n    self,\n"
             "    filename: str,\n) -> bool:\n    ...\n```")
    assert parse_locations(prose, known) == {}  # no location lines: the strict reading finds nothing
    assert parse_locations(prose, known, quoted=True) == {"pkg/app.py": ["function: from_file"],
                                                          "pkg/config.py": ["function: from_file"]}
    code_only = "```python\n```python\ndef make_config(instance_relative: bool = False):\n    ...\n```"
    assert parse_locations(code_only, known, quoted=True) == {p: ["function: make_config"] for p in sorted(known)}
    # an answer with real location lines is read as before, quoted code aside
    strict = "```\npkg/config.py\nfunction: Config.from_file\n```\n```python\ndef other():\n```"
    assert parse_locations(strict, known, quoted=True) == {"pkg/config.py": ["function: Config.from_file"]}


# A real Qwen2.5-Coder-0.5B answer to the edit-location prompt of the mini calc instance (tests/agentless/swe_mini.py:
# "calc.ops.add returns the difference"), verbatim: each file is a markdown heading outside its fenced block.
QWEN_05B_EDIT_LOCATIONS = """To fix the issue in the Python repository, we need to modify the `add` function in both \
`calc/fmt.py` and `calc/ops.py`. Specifically, we should change the code to return `-a - b` instead of `-b + a`. \
This change will ensure that the addition operation works correctly.

Here's how you can modify the code:

### `calc/fmt.py`
```python
function: add
    \"\"\"Return the sum of a and b.\"\"\"
    return -a - b
```

### `calc/ops.py`
```python
function: add
    \"\"\"Return the sum of a and b.\"\"\"
    return a - b
```

This change will correctly compute the sum of `a` and `b`, resulting in `-1` for the first `calc/fmt.py` function \
and `5` for the `calc/ops.py` function.
"""


def test_parse_locations_reads_file_headings_between_blocks_on_a_real_answer() -> None:
    known = ["calc/__init__.py", "calc/fmt.py", "calc/ops.py"]
    found = parse_locations(QWEN_05B_EDIT_LOCATIONS, known)
    # the answer credits `add` to both files; the graph keeps only what a file defines (calc/ops.py's add)
    assert found == {"calc/fmt.py": ["function: add"], "calc/ops.py": ["function: add"]}
    assert parse_file_list(QWEN_05B_EDIT_LOCATIONS, known, 3) == []  # a file list reads only the blocks
