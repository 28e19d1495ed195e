"""Selectors on hand-built candidates; code normalization and extraction."""

from __future__ import annotations

import pytest

from osca.sampler import Candidate
from osca.selectors import (Selector, extract_code, normalize_code, normalize_whitespace, select_first_verified,
                            select_majority, select_most_tests)
from osca.verifiers import Status, Verdict


def verdict(passed: int, failed: int = 0, status: Status | None = None) -> Verdict:
    tests = {f"t::p{i}": "passed" for i in range(passed)} | {f"t::f{i}": "failed" for i in range(failed)}
    return Verdict(status=status or (Status.PASSED if failed == 0 and passed else Status.FAILED), tests=tests)


def cand(index: int, text: str | None = "x", v: Verdict | None = None, config: str = "cfg") -> Candidate:
    return Candidate(config=config, index=index, text=text, verification=v)


def ids(candidates: list[Candidate]) -> list[int]:
    return [c.index for c in candidates]


# ---------------------------------------------------------------------------------------------- single selectors

def test_first_verified_keeps_only_the_first_passing_candidate():
    cs = [cand(0, v=verdict(1, 1)), cand(1, v=None), cand(2, v=verdict(2)), cand(3, v=verdict(3))]
    assert ids(select_first_verified(cs)) == [2]


def test_first_verified_without_a_pass_keeps_everyone():
    cs = [cand(0, v=verdict(1, 1)), cand(1, v=None), cand(2, v=verdict(0, 2, Status.TIMEOUT))]
    assert ids(select_first_verified(cs)) == [0, 1, 2]


def test_a_verdict_with_passing_tests_but_another_status_is_not_verified():
    cs = [cand(0, v=verdict(3, 0, Status.ERROR)), cand(1, v=verdict(1))]
    assert ids(select_first_verified(cs)) == [1]


def test_most_tests_keeps_every_candidate_tied_at_the_top():
    cs = [cand(0, v=verdict(1, 2)), cand(1, v=verdict(2, 1)), cand(2, v=None), cand(3, v=verdict(2, 1))]
    assert ids(select_most_tests(cs)) == [1, 3]


def test_most_tests_ranks_an_unverified_candidate_below_zero_passes():
    cs = [cand(0, v=None), cand(1, v=verdict(0, 3))]
    assert ids(select_most_tests(cs)) == [1]
    unverified = [cand(0), cand(1)]
    assert ids(select_most_tests(unverified)) == [0, 1]


def test_majority_keeps_the_largest_group_under_whitespace_normalization():
    cs = [cand(0, "a  b"), cand(1, "c"), cand(2, " a\nb "), cand(3, None), cand(4, "a b")]
    assert ids(select_majority()(cs)) == [0, 2, 4]


def test_majority_keeps_all_tied_groups():
    cs = [cand(0, "x"), cand(1, "y"), cand(2, "y"), cand(3, "x"), cand(4, "z")]
    assert ids(select_majority()(cs)) == [0, 1, 2, 3]


def test_majority_with_a_custom_normalizer():
    cs = [cand(0, "ANSWER: 4"), cand(1, "answer: 5"), cand(2, "answer: 4")]
    assert ids(select_majority()(cs)) == [0, 1, 2]  # three different texts
    assert ids(select_majority(str.lower)(cs)) == [0, 2]


def test_majority_with_normalize_code_groups_equivalent_code():
    same_a = "```python\ndef f(x):\n    return x + 1  # one more\n```"
    same_b = "def f( x ):\n\n    return x+1\n"
    same_c = "def f(x):\n  return x + 1\n"
    other = "def f(x):\n    return x - 1\n"
    cs = [cand(0, other), cand(1, same_a), cand(2, other), cand(3, same_b), cand(4, same_c)]
    assert ids(select_majority(normalize_code)(cs)) == [1, 3, 4]
    assert ids(select_majority()(cs)) == [0, 2]  # without code normalization "other" is the largest group


def test_majority_without_any_text_keeps_everyone():
    cs = [cand(0, None), cand(1, None)]
    assert ids(select_majority()(cs)) == [0, 1]


# ---------------------------------------------------------------------------------------------- cascades

def test_a_cascade_breaks_ties_with_the_next_selector():
    x = "def f():\n    return 1\n"
    x_commented = "def f():\n    # the answer\n    return 1\n"
    y = "def f():\n    return 2\n"
    cs = [cand(0, y, verdict(2, 1)), cand(1, x, verdict(2, 1)), cand(2, x_commented, verdict(2, 1)),
          cand(3, y, verdict(0, 3)), cand(4, y, verdict(0, 3))]
    pick = select_first_verified | select_most_tests | select_majority(normalize_code)
    assert isinstance(pick, Selector)
    # nobody passed; 0, 1, 2 tie on tests; among them x (1, 2) outvotes y (0), although y is the overall majority
    assert ids(pick(cs)) == [1, 2]
    assert ids(select_majority(normalize_code)(cs)) == [0, 3, 4]


def test_a_cascade_stops_at_a_verified_candidate():
    cs = [cand(0, "a", verdict(1, 1)), cand(1, "b", verdict(2)), cand(2, "a", verdict(1, 1))]
    assert ids((select_first_verified | select_most_tests | select_majority())(cs)) == [1]


def test_plain_functions_compose_on_either_side():
    def shortest(cs):
        best = min(len(c.text) for c in cs)
        return [c for c in cs if len(c.text) == best]

    def last(cs):
        return cs[-1:]

    cs = [cand(0, "bb", verdict(1)), cand(1, "a", verdict(0, 1)), cand(2, "c", verdict(0, 1)),
          cand(3, "a", verdict(0, 1))]
    left = shortest | select_majority()
    assert isinstance(left, Selector)
    assert ids(left(cs)) == [1, 3]  # shortest: 1, 2, 3; majority among them: "a"
    right = select_most_tests | last
    assert isinstance(right, Selector)
    assert ids(right(cs)) == [0]  # most tests narrows to one: `last` is not needed
    assert ids((select_majority() | last)(cs)) == [3]
    assert ids((shortest | select_majority() | last)(cs)) == [3]


def test_a_selector_that_drops_everyone_leaves_the_candidates_to_the_next():
    cs = [cand(0, "a"), cand(1, "b"), cand(2, "b")]
    assert ids((select_most_tests | (lambda cs: []) | select_majority())(cs)) == [1, 2]


def test_a_cascade_stops_once_one_candidate_is_left():
    asked = []

    def spy(cs):
        asked.append(ids(cs))
        return cs

    cs = [cand(0, "a"), cand(1, "b"), cand(2, "b")]
    assert ids((select_majority() | spy)(cs)) == [1, 2]
    assert asked == [[1, 2]]
    asked.clear()
    assert ids((select_first_verified | spy)([cand(0, "a", verdict(1)), cand(1, "a", verdict(1))])) == [0]
    assert asked == []


def test_cascades_flatten_and_read_in_order():
    pick = (select_first_verified | select_most_tests) | select_majority(normalize_code)
    assert repr(pick) == "select_first_verified | select_most_tests | select_majority(normalize_code)"
    assert repr(select_first_verified | (select_most_tests | select_majority())) == (
        "select_first_verified | select_most_tests | select_majority(normalize_whitespace)")


# ---------------------------------------------------------------------------------------------- normalization

def test_normalize_code_ignores_comments_whitespace_and_blank_lines():
    a = "import os\n\n\ndef f(x, y):\n    # sum them\n    return x+y   # done\n\n"
    b = "import os\ndef f( x,y ):\n    return x + y\n"
    assert normalize_code(a) == normalize_code(b)


def test_normalize_code_keeps_real_differences():
    assert normalize_code("def f(x):\n    return x + y\n") != normalize_code("def f(x):\n    return x - y\n")
    assert normalize_code("s = 'a  b'\n") != normalize_code("s = 'a b'\n")  # inside a string, spaces count


def test_normalize_code_keeps_block_structure():
    inside = "for x in xs:\n    a(x)\n    b(x)\n"
    after = "for x in xs:\n    a(x)\nb(x)\n"
    assert normalize_code(inside) != normalize_code(after)


def test_normalize_code_reads_the_python_fence():
    fenced = "Here is my solution:\n```python\ndef f(x):\n    return x  # identity\n```\nIt returns x."
    assert normalize_code(fenced) == normalize_code("def f(x):\n    return x\n")
    assert "solution" not in normalize_code(fenced)


def test_normalize_code_falls_back_to_whitespace_for_text_that_does_not_tokenize():
    broken = 'x = """never\n   closed   string'
    assert normalize_code(broken) == normalize_whitespace(broken)


def test_extract_code_returns_the_first_fenced_block():
    text = "intro\n```python\nfirst = 1\n```\nmiddle\n```python\nsecond = 2\n```\n"
    assert extract_code(text) == "first = 1\n"


def test_extract_code_accepts_any_or_no_language_tag():
    assert extract_code("```\nplain\n```") == "plain\n"
    assert extract_code("see:\n```diff\n--- a/x\n+++ b/x\n```") == "--- a/x\n+++ b/x\n"


def test_extract_code_without_a_fence_returns_the_text():
    text = "def f():\n    return 1\n"
    assert extract_code(text) == text
    assert extract_code("") == ""
