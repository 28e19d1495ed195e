"""Small SWE-bench-style instances built from scratch (tiny git repos with an issue, a failing test, a gold
patch, FAIL_TO_PASS / PASS_TO_PASS in SWE-bench's schema) and a scripted model that plays every stage.

The scripted repair answers are chosen so that each selection rule matters:
- calc: the majority answer (`abs(a - b)`, three times with different comments) passes the regression tests
  but not the reproduction test; the right fix (`a + b`, twice) must win on the reproduction test; one
  answer breaks a regression test, one is malformed, one edits outside the localized lines.
- slug: no reproduction script reproduces the issue, so the majority vote among regression-free patches
  decides: the right fix (three times) beats a wrong one (once) and one that breaks `test_strip`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osca.agents.agentless.swebench import SWEInstance

OPS = '''"""Arithmetic helpers."""


def add(a, b):
    """Return the sum of a and b."""
    return a - b


def mul(a, b):
    """Return the product of a and b."""
    return a * b
'''

OPS_TESTS = '''from calc.ops import add, mul


def test_mul():
    assert mul(3, 4) == 12


def test_mul_zero():
    assert mul(0, 9) == 0
'''

SLUG = '''import re


def slugify(text):
    """A URL slug: words joined by dashes."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "-".join(words)


def strip_dashes(slug):
    return slug.strip("-")
'''

SLUG_TESTS = '''from text.slug import slugify, strip_dashes


def test_words():
    assert slugify("hello world") == "hello-world"


def test_strip():
    assert strip_dashes("-a-") == "a"
'''


@dataclass(frozen=True)
class Mini:
    name: str
    files: dict[str, str]
    issue: str
    fixed: dict[str, str]
    """Gold: the files after the fix."""
    new_tests: dict[str, str]
    """The test_patch: test files after adding the failing test."""
    fail_to_pass: list[str]
    pass_to_pass: list[str]

    @property
    def repo(self) -> str:
        return f"osca-mini/{self.name}"

    @property
    def instance_id(self) -> str:
        return f"osca-mini__{self.name}-1"


CALC = Mini(
    name="calc",
    files={"calc/__init__.py": "", "calc/ops.py": OPS, "calc/fmt.py": 'def show(x):\n    return f"<{x}>"\n',
           "tests/test_ops.py": OPS_TESTS, "README.md": "calc\n"},
    issue="calc.ops.add returns the difference: add(2, 3) gives -1 instead of 5.",
    fixed={"calc/ops.py": OPS.replace("return a - b", "return a + b")},
    new_tests={"tests/test_ops.py": OPS_TESTS.replace("from calc.ops import add, mul", "from calc.ops import add, mul")
               + "\n\ndef test_add():\n    assert add(2, 3) == 5\n"},
    fail_to_pass=["tests/test_ops.py::test_add"],
    pass_to_pass=["tests/test_ops.py::test_mul", "tests/test_ops.py::test_mul_zero"],
)

SLUGS = Mini(
    name="slug",
    files={"text/__init__.py": "", "text/slug.py": SLUG, "tests/test_slug.py": SLUG_TESTS},
    issue="slugify keeps capital letters: slugify('Hello World') should be 'hello-world'.",
    fixed={"text/slug.py": SLUG.replace('return "-".join(words)', 'return "-".join(words).lower()')},
    new_tests={"tests/test_slug.py": SLUG_TESTS + "\n\ndef test_lower():\n    assert slugify('Hello World') == "
               "'hello-world'\n"},
    fail_to_pass=["tests/test_slug.py::test_lower"],
    pass_to_pass=["tests/test_slug.py::test_words", "tests/test_slug.py::test_strip"],
)

MINIS = (CALC, SLUGS)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _diff(repo: Path, changed: dict[str, str]) -> str:
    for path, text in changed.items():
        (repo / path).write_text(text)
    patch = _git(repo, "diff")
    _git(repo, "checkout", "--", ".")
    return patch


def build(mini: Mini, repos: Path) -> dict[str, Any]:
    """Create the repository under `repos/owner__name` and return the instance's SWE-bench row."""
    repo = repos / mini.repo.replace("/", "__")
    repo.mkdir(parents=True)
    for path, text in mini.files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=osca", "-c", "user.email=osca@example.com", "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD").strip()
    return {"repo": mini.repo, "instance_id": mini.instance_id, "base_commit": base,
            "patch": _diff(repo, mini.fixed), "test_patch": _diff(repo, mini.new_tests),
            "problem_statement": mini.issue, "hints_text": "", "created_at": "2024-01-01T00:00:00Z",
            "version": "0.1", "FAIL_TO_PASS": json.dumps(mini.fail_to_pass),
            "PASS_TO_PASS": json.dumps(mini.pass_to_pass), "environment_setup_commit": base}


def build_all(tmp: Path) -> tuple[list[SWEInstance], Path, Path]:
    """Both instances: (instances, folder of repos, the jsonl file)."""
    repos = tmp / "repos"
    rows = [build(m, repos) for m in MINIS]
    jsonl = tmp / "instances.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [SWEInstance.model_validate(r) for r in rows], repos, jsonl


# ---------------------------------------------------------------------------------------------- the model

def _edit(path: str, search: str, replace: str, note: str = "") -> str:
    return f"{note}\n```python\n### {path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"


# Repair answers by slot: sample index, + 4 for the hotter configuration (which sees the second location set).
CALC_REPAIRS = [
    _edit("calc/ops.py", "    return a - b", "    return abs(a - b)  # keep it positive"),
    _edit("calc/ops.py", "    return a - b", "    return a + b"),
    _edit("calc/ops.py", "    return a - b", "    # absolute difference\n    return abs(a - b)"),
    _edit("calc/ops.py", '"""Arithmetic helpers."""', '"""Arithmetic."""'),              # outside the lines
    _edit("calc/ops.py", "    return a * b", "    return a * b + 1"),                      # breaks test_mul
    "I am not sure.\n<<<<<<< SEARCH\n    return a - b\n",                                   # malformed
    _edit("calc/ops.py", "    return a - b", "    return abs(a-b)"),
    _edit("calc/ops.py", "    return a - b", "    return a + b  # the fix"),
]
SLUG_REPAIRS = [
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(words).lower()'),
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(w.lower() for w in words)'),
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(words).lower()  # lower case'),
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(words).title()'),  # breaks test_words
    _edit("text/slug.py", '    return slug.strip("-")', '    return slug'),                      # breaks test_strip
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(words).lower()'),
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(words).replace("H", "h")'),  # wrong
    _edit("text/slug.py", '    return "-".join(words)', '    return "-".join(w.lower() for w in words)'),
]
# Edit-location samples 0-1 name the buggy function only; 2-3 also the neighbour (the second location set).
EDIT_LOCATIONS = {"calc": ["function: add", "line: {line}", "function: add\nfunction: mul",
                           "line: {line}\nfunction: mul"],
                  "slug": ["function: slugify", "line: {line}", "function: slugify\nfunction: strip_dashes",
                           "line: {line}\nfunction: strip_dashes"]}
BUGGY_LINE = {"calc": "return a - b", "slug": 'return "-".join(words)'}

CALC_REPRO = '''from calc.ops import add
try:
    result = add(2, 3)
except Exception:
    print("Other issues")
else:
    print("Issue resolved" if result == 5 else "Issue reproduced")
'''


def _which(prompt: str) -> Mini:
    return CALC if "calc.ops.add" in prompt else SLUGS


def script(messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
    """Plays every stage of the graph for the two instances (dispatching on the prompt)."""
    prompt = messages[-1]["content"]
    mini = _which(prompt)
    code_file = next(p for p in mini.fixed)
    if "Python files of the repository" in prompt:  # a file that does not exist first: it must be dropped
        return f"The bug is probably here:\n```\n{mini.name}/nothing.py\n{code_file}\n```"
    if "Outlines of the files" in prompt:
        return f"```\n{code_file}\nfunction: {'add' if mini is CALC else 'slugify'}\n```"
    if "Where exactly must the code change" in prompt:
        line = re.search(rf"^\s*(\d+).*{re.escape(BUGGY_LINE[mini.name])}", prompt, re.M)
        assert line, "the edit-location prompt shows numbered lines"
        return f"```\n{code_file}\n{EDIT_LOCATIONS[mini.name][index % 4].format(line=line[1])}\n```"
    if "edit block" in prompt:
        repairs = CALC_REPAIRS if mini is CALC else SLUG_REPAIRS
        return repairs[(index + (4 if params.get("temperature", 0) >= 0.8 else 0)) % len(repairs)]
    if "tells whether this issue is present" in prompt:
        if mini is CALC:  # sample 0 claims success without checking: it must be dropped
            return "```python\n" + (CALC_REPRO if index == 1 else 'print("Issue resolved")\n') + "```"
        return "```python\nprint('Other issues')\n```"
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")
