"""Selection without tests: scored and LLM-judge selectors (scripted judge), and the precision report."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import litellm
import pytest

from osca import Allocation, ConfigError, DataError, SamplingConfig
from osca.providers.scripted import calls
from osca.sampler import AllocatedSampler, Candidate
from osca.scaling import precision_report
from osca.selectors import (JUDGE_PROMPT, parse_score, select_by_judge, select_by_score, select_first_verified,
                            select_majority)
from osca.verifiers import Status, Verdict


def cand(index: int, text: str | None, v: Verdict | None = None) -> Candidate:
    return Candidate(config="cfg", index=index, text=text, verification=v)


def ids(candidates: list[Candidate]) -> list[int]:
    return [c.index for c in candidates]


def judge_script(scores: dict[str, Any]) -> Callable[[list[dict[str, Any]], int, dict[str, Any]], str]:
    """A judge that reads the candidate out of the default prompt and replies with its listed score (or text)."""

    def script(messages: list[dict[str, Any]], index: int, params: dict[str, Any]) -> str:
        m = re.search(r"Candidate answer:\n(.*?)\n\nHow likely", messages[-1]["content"], re.S)
        answer = scores[m.group(1)]
        return answer if isinstance(answer, str) else f"Looks fine.\nSCORE: {answer}"

    return script


# ---------------------------------------------------------------------------------------------- scores


@pytest.mark.parametrize(("reply", "score"), [
    ("SCORE: 7", 7.0), ("**Score**: 8/10", 8.0), ("score=-3", -3.0), ("SCORE: 2\nthen again\nSCORE: 9", 9.0),
    ("  6.5 ", 6.5), ("I cannot judge this", -math.inf), ("", -math.inf), (None, -math.inf),
    ("the score of 3 people", -math.inf), ("nan", -math.inf),
])
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_select_by_score_keeps_the_best_and_ties():
    cs = [cand(0, "aa"), cand(1, "bbbb"), cand(2, None), cand(3, "cccc")]
    assert ids(select_by_score(lambda c: len(c.text))(cs)) == [1, 3]
    assert ids(select_by_score(lambda c: -len(c.text))(cs)) == [0]


def test_select_by_score_without_any_score_keeps_everyone():
    cs = [cand(0, "a"), cand(1, "b")]
    assert ids(select_by_score(lambda c: math.nan)(cs)) == [0, 1]
    assert ids((select_by_score(lambda c: math.nan) | select_majority())(cs)) == [0, 1]


# ---------------------------------------------------------------------------------------------- the judge


def test_judge_picks_the_highest_score_and_asks_once_per_text(script):
    name, model = script(judge_script({"x = 1": 3, "x = 2": 9, "x = 3": 5}))
    judge = select_by_judge(model, question="set x to two")
    cs = [cand(0, "x = 1"), cand(1, "x = 3"), cand(2, "x = 2"), cand(3, "x = 2"), cand(4, None)]
    assert ids(judge(cs)) == [2, 3]
    assert calls(name) == 3  # distinct texts only
    assert judge.judgements["x = 3"].score == 5 and "SCORE: 5" in judge.judgements["x = 3"].reply
    judge(cs)
    assert calls(name) == 3  # remembered


def test_judge_prompt_carries_the_question(script):
    seen: list[str] = []

    def record(messages, index, params):
        seen.append(messages[-1]["content"])
        return "SCORE: 1"

    _, model = script(record)
    select_by_judge(model, question="reverse a list")([cand(0, "a[::-1]")])
    assert seen == [JUDGE_PROMPT.replace("{question}", "reverse a list").replace("{candidate}", "a[::-1]")]
    with pytest.raises(ConfigError, match="candidate"):
        select_by_judge(model, prompt="no placeholder")


def test_a_broken_judge_reply_ranks_lowest(script):
    _, model = script(judge_script({"good": 2, "broken": "I'd rather not say"}))
    judge = select_by_judge(model)
    assert ids(judge([cand(0, "broken"), cand(1, "good")])) == [1]
    assert judge.judgements["broken"].score == -math.inf
    assert ids(judge([cand(0, "broken"), cand(1, "broken")])) == [0, 1]  # nothing scored: no preference


def test_a_failing_judge_request_raises(script):
    def fail(messages, index, params):
        raise RuntimeError("judge is down")

    _, model = script(fail)
    with pytest.raises(litellm.BadRequestError, match="judge is down"):
        select_by_judge(model)([cand(0, "a"), cand(1, "b")])


def test_judge_composes_with_the_other_selectors(script):
    name, model = script(judge_script({"a": 5, "b": 5, "c": 1}))
    judge = select_by_judge(model)
    cs = [cand(0, "c"), cand(1, "b"), cand(2, "a"), cand(3, "b")]
    assert ids((judge | select_majority())(cs)) == [1, 3]  # judge ties a/b, the vote prefers b
    assert ids((select_majority() | judge)(cs)) == [1, 3]
    passed = Verdict(status=Status.PASSED, tests={"t::x": "passed"})
    verified = [cand(0, "c", passed), cand(1, "a")]
    before = calls(name)
    assert ids((select_first_verified | judge)(verified)) == [0]
    assert calls(name) == before  # a verified candidate decides: the judge is not asked


def test_judge_inside_the_sampler(script):
    _, answer_model = script(lambda messages, index, params: f"answer {index}")
    _, judge_model = script(judge_script({f"answer {i}": s for i, s in enumerate([2, 7, 4])}))
    sampler = AllocatedSampler([SamplingConfig(name="s", model=answer_model)], Allocation({"s": 3}),
                               selector=select_by_judge(judge_model), seed=0)
    resp = sampler.completion(messages=[{"role": "user", "content": "say something"}])
    assert resp.choices[0].message.content == "answer 1"


# ---------------------------------------------------------------------------------------------- precision


def two_problems() -> tuple[list[list[Candidate]], list[list[bool]]]:
    # p1: the lone "A" is right, the "B" pair wrong (majority vote fails once both B are drawn);
    # p2: the "C" pair is right.
    texts = [["A", "B", "B"], ["C", "C", "D"]]
    truth = [[True, False, False], [True, True, False]]
    return [[cand(i, t) for i, t in enumerate(ts)] for ts in texts], truth


def test_precision_report_by_hand(script):
    candidates, truth = two_problems()
    _, model = script(judge_script({"A": 9, "B": 2, "C": 8, "D": 1}))
    report = precision_report(candidates, truth, {"first": lambda cs: cs[:1], "majority": select_majority(),
                                                  "judge": select_by_judge(model)})
    assert report.exact and report.n_problems == 2 and [r.k for r in report.rows] == [1, 2, 3]
    # k = 1: covered 1/3 and 2/3; any selector picks the one candidate
    # k = 2 (pairs 01, 02, 12): p1 covered 2/3, ties keep sample order so A wins when present; p2 always covered
    # k = 3: both covered; the vote picks B on p1 (wrong), C on p2; "first" picks A and C
    expected = {1: (1 / 2, 1 / 2, 1 / 2), 2: (5 / 6, 5 / 6, 5 / 6), 3: (1.0, 1.0, 1 / 2)}
    for row in report.rows:
        coverage, first, majority = expected[row.k]
        assert row.coverage == pytest.approx(coverage)
        assert row.solved["first"] == pytest.approx(first)
        assert row.solved["majority"] == pytest.approx(majority)
        assert row.solved["judge"] == pytest.approx(coverage)  # this judge ranks every right answer first
    assert report.rows[2].precision("majority") == pytest.approx(0.5)
    table = report.table()
    assert table.splitlines()[0] == "| k | coverage | first (precision) | majority (precision) | judge (precision) |"
    assert "| 3 | 1.000 | 1.000 (1.00) | 0.500 (0.50) | 1.000 (1.00) |" in table


def test_precision_report_samples_subsets_deterministically():
    candidates = [[cand(i, f"t{i % 3}") for i in range(10)] for _ in range(4)]
    truth = [[(i + j) % 4 == 0 for i in range(10)] for j in range(4)]
    selectors = {"majority": select_majority()}
    first = precision_report(candidates, truth, selectors, [5], subsets=100, seed=2)
    again = precision_report(candidates, truth, selectors, [5], subsets=100, seed=2)
    assert not first.exact and first == again
    # coverage from random 5-subsets approaches the exact 1 - C(10 - c, 5) / C(10, 5)
    exact = sum(1 - math.comb(10 - sum(t), 5) / math.comb(10, 5) for t in truth) / 4
    assert first.rows[0].coverage == pytest.approx(exact, abs=0.05)
    assert first.rows[0].solved["majority"] <= first.rows[0].coverage


def test_precision_report_rejects_mismatched_input():
    candidates, truth = two_problems()
    with pytest.raises(DataError, match="ground truths"):
        precision_report(candidates, truth[:1], {"m": select_majority()})
    with pytest.raises(DataError, match="problem 1"):
        precision_report(candidates, [truth[0], truth[1][:2]], {"m": select_majority()})
    with pytest.raises(DataError, match="1..3"):
        precision_report(candidates, truth, {"m": select_majority()}, [4])
    with pytest.raises(ConfigError):
        precision_report(candidates, truth, {})


def test_precision_plot(tmp_path):
    from osca.plot import plot_precision

    candidates, truth = two_problems()
    report = precision_report(candidates, truth, {"majority": select_majority()})
    plot_precision(report, tmp_path / "p.png", title="two problems")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
