"""CountMatrix / ScoreMatrix / CountSplit: validation, splitting, and both file formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from osca import CountMatrix, CountSplit, DataError, SamplingConfig, ScoreMatrix, load_counts, objective

NAMES = ("a", "b")
PROBLEMS = ("p1", "p2", "p3")


def counts(correct, runs=4, configs=NAMES, problems=PROBLEMS) -> CountMatrix:
    return CountMatrix(configs, problems, correct, runs)


# ------------------------------------------------------------------------------------------------ validation


def test_valid_matrix_fields():
    m = counts([[0, 1, 4], [2, 3, 0]])
    assert m.names == ["a", "b"]
    assert m.n_configs == 2 and m.n_problems == 3
    assert m.correct.dtype == np.int64
    np.testing.assert_array_equal(m.runs, np.full((2, 3), 4))
    np.testing.assert_allclose(m.rates, [[0, 0.25, 1.0], [0.5, 0.75, 0]])
    np.testing.assert_array_equal(m.costs, [1.0, 1.0])
    assert all(isinstance(c, SamplingConfig) for c in m.configs)


def test_arrays_are_read_only():
    m = counts([[0, 1, 4], [2, 3, 0]])
    with pytest.raises(ValueError):
        m.correct[0, 0] = 1


def test_count_above_runs_names_the_cell():
    with pytest.raises(DataError, match=r"count exceeds runs.*'b'.*'p2'.*5 correct of 4 runs"):
        counts([[0, 1, 4], [2, 5, 0]])


def test_negative_count_names_the_cell():
    with pytest.raises(DataError, match=r"negative count.*'a'.*'p3'"):
        counts([[0, 1, -1], [2, 3, 0]])


def test_ragged_rows():
    with pytest.raises(DataError, match="ragged"):
        counts([[0, 1, 2], [2, 3]])


@pytest.mark.parametrize("correct", [[[0, 1], [2, 3]], [[0, 1, 2]], [0, 1, 2], [[[0, 1, 2]], [[1, 1, 1]]]])
def test_wrong_shape(correct):
    with pytest.raises(DataError, match=r"shape.*expected \(2, 3\)"):
        counts(correct)


def test_fractional_counts_rejected():
    with pytest.raises(DataError, match="whole numbers"):
        counts([[0.5, 1, 2], [2, 3, 0]])


def test_whole_float_counts_accepted():
    m = counts(np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 0.0]]))
    assert m.correct.dtype == np.int64
    np.testing.assert_array_equal(m.correct, [[0, 1, 2], [2, 3, 0]])


def test_duplicate_config_names():
    with pytest.raises(DataError, match=r"'a' appears more than once"):
        counts([[0, 1, 2], [2, 3, 0]], configs=("a", "a"))


def test_duplicate_problem_ids():
    with pytest.raises(DataError, match="problem ids are not unique"):
        counts([[0, 1, 2], [2, 3, 0]], problems=("p1", "p1", "p3"))


def test_no_configs():
    with pytest.raises(DataError, match="no sampling configurations"):
        CountMatrix((), PROBLEMS, np.zeros((0, 3), dtype=int), 4)


@pytest.mark.parametrize("runs", [0, -1, [4, 0], [[4, 4, 4], [4, 0, 4]]])
def test_runs_below_one(runs):
    with pytest.raises(DataError, match="runs must be >= 1"):
        counts([[0, 0, 0], [0, 0, 0]], runs=runs)


def test_runs_of_wrong_shape():
    with pytest.raises(DataError, match="runs have shape"):
        counts([[0, 1, 2], [2, 3, 0]], runs=[4, 4, 4, 4])


def test_runs_per_configuration_broadcast_to_cells():
    m = counts([[0, 1, 2], [5, 3, 0]], runs=[2, 5])
    np.testing.assert_array_equal(m.runs, [[2, 2, 2], [5, 5, 5]])
    np.testing.assert_allclose(m.rates[1], [1.0, 0.6, 0.0])


def test_runs_per_configuration_checked_against_counts():
    # config a has 2 runs, so 3 correct is too many even though config b's 5 runs would allow it
    with pytest.raises(DataError, match=r"count exceeds runs.*'a'.*'p1'"):
        counts([[3, 0, 0], [3, 0, 0]], runs=[2, 5])


def test_runs_per_cell():
    runs = [[1, 2, 3], [4, 5, 6]]
    m = counts([[1, 2, 3], [0, 0, 0]], runs=runs)
    np.testing.assert_array_equal(m.runs, runs)


# --------------------------------------------------------------------------------------------- take and split


def test_take_selects_columns():
    m = counts([[0, 1, 2], [4, 3, 0]], runs=[[4, 4, 4], [4, 3, 4]])
    sub = m.take([2, 0])
    assert sub.problems == ("p3", "p1")
    np.testing.assert_array_equal(sub.correct, [[2, 0], [0, 4]])
    np.testing.assert_array_equal(sub.runs, [[4, 4], [4, 4]])
    assert sub.names == m.names


def test_split_disjoint_and_covering(make_counts):
    m = make_counts(3, 20, 5, seed=0)
    s = m.split(0.3, seed=7)
    assert isinstance(s, CountSplit)
    assert s.train.n_problems == 6 and s.test.n_problems == 14
    assert set(s.train.problems).isdisjoint(s.test.problems)
    assert set(s.train.problems) | set(s.test.problems) == set(m.problems)
    assert not s.in_sample
    # each part keeps its columns' counts
    for part in (s.train, s.test):
        for j, p in enumerate(part.problems):
            k = m.problems.index(p)
            np.testing.assert_array_equal(part.correct[:, j], m.correct[:, k])


def test_split_deterministic_per_seed(make_counts):
    m = make_counts(3, 40, 5, seed=1)
    a, b = m.split(0.5, seed=3), m.split(0.5, seed=3)
    assert a.train.problems == b.train.problems and a.test.problems == b.test.problems


def test_split_differs_between_seeds(make_counts):
    m = make_counts(3, 40, 5, seed=1)
    trains = {m.split(0.5, seed=s).train.problems for s in range(5)}
    assert len(trains) > 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, 0.01, 0.99])
def test_split_bad_fraction(fraction, make_counts):
    # 0.01 and 0.99 of 10 problems round to an empty part
    m = make_counts(2, 10, 4, seed=0)
    with pytest.raises(DataError):
        m.split(fraction, seed=0)


def test_pool_of_split_restores_all_problems(make_counts):
    m = make_counts(3, 12, 4, seed=2)
    pooled = m.split(0.25, seed=4).pool()
    assert sorted(pooled.problems) == sorted(m.problems)
    for j, p in enumerate(pooled.problems):
        k = m.problems.index(p)
        np.testing.assert_array_equal(pooled.correct[:, j], m.correct[:, k])
        np.testing.assert_array_equal(pooled.runs[:, j], m.runs[:, k])


def test_pool_of_overlapping_parts_keeps_each_problem_once():
    m = counts([[0, 1, 2], [4, 3, 0]])
    pooled = CountSplit(m.take([0, 1]), m.take([1, 2])).pool()
    assert pooled.problems == ("p1", "p2", "p3")
    np.testing.assert_array_equal(pooled.correct, m.correct)


def test_pool_conflicting_counts():
    train = counts([[0, 1, 2], [4, 3, 0]])
    test = counts([[0, 1, 2], [4, 2, 0]])
    with pytest.raises(DataError, match="'p2' has different counts"):
        CountSplit(train, test).pool()


def test_split_parts_need_same_configs():
    with pytest.raises(DataError, match="different configurations"):
        CountSplit(counts([[0, 1, 2], [4, 3, 0]]), counts([[0, 1, 2], [4, 3, 0]], configs=("a", "c")))


def test_with_configs_attaches_costs():
    m = counts([[0, 1, 2], [4, 3, 0]])
    rich = m.with_configs([SamplingConfig(name="b", cost=2.5), SamplingConfig(name="a", model="x/y")])
    assert rich.names == ["a", "b"]
    np.testing.assert_array_equal(rich.costs, [1.0, 2.5])
    assert rich.configs[0].model == "x/y"
    np.testing.assert_array_equal(rich.correct, m.correct)


# ------------------------------------------------------------------------------------------- osca's own format


def test_save_load_round_trip(tmp_path):
    m = CountMatrix((SamplingConfig(name="a", model="openai/gpt-4o", temperature=0.8, cost=2.0), "b"),
                    PROBLEMS, [[0, 1, 2], [5, 3, 0]], [4, 5])
    path = tmp_path / "counts.json"
    m.save(path)
    assert json.loads(path.read_text())["format"] == "osca.counts/v1"
    back = load_counts(path)
    assert isinstance(back, CountMatrix)
    assert back.configs == m.configs
    assert back.problems == m.problems
    np.testing.assert_array_equal(back.correct, m.correct)
    np.testing.assert_array_equal(back.runs, m.runs)


def test_own_format_with_split(tmp_path):
    doc = {"format": "osca.counts/v1", "configs": [{"name": "a"}, {"name": "b"}], "problems": list(PROBLEMS),
           "correct": [[0, 1, 2], [4, 3, 0]], "runs": 4, "train": ["p3", "p1"], "test": ["p2"]}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(doc))
    s = load_counts(path)
    assert isinstance(s, CountSplit)
    assert s.train.problems == ("p3", "p1")
    np.testing.assert_array_equal(s.train.correct, [[2, 0], [0, 4]])
    assert s.test.problems == ("p2",)
    np.testing.assert_array_equal(s.test.correct, [[1], [3]])
    assert not s.in_sample


@pytest.mark.parametrize(("change", "message"), [
    ({"train": ["p1", "p9"]}, "unknown problem 'p9'"),
    ({"test": None}, "'test' is missing"),
    ({"correct": [[0, 1, 9], [4, 3, 0]]}, "count exceeds runs"),
    ({"extra": 1}, "extra"),
    ({"format": "osca.counts/v0"}, "format"),
])
def test_own_format_errors(tmp_path, change, message):
    doc = {"format": "osca.counts/v1", "configs": [{"name": "a"}, {"name": "b"}], "problems": list(PROBLEMS),
           "correct": [[0, 1, 2], [4, 3, 0]], "runs": 4, "train": ["p1"], "test": ["p2", "p3"]}
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message):
        load_counts(path)


# ------------------------------------------------------------------------------------------ the OSCA release


def test_load_release_file(swebench_path):
    s = load_counts(swebench_path)
    assert isinstance(s, CountSplit)
    assert s.in_sample
    for part in (s.train, s.test):
        assert part.n_configs == 22
        assert part.n_problems == 300
        assert (part.runs == 16).all()
        assert part.names[0] == "gpt4o_0.4"
        assert (part.correct >= 0).all() and (part.correct <= 16).all()
    assert s.pool().n_problems == 300


def release_doc() -> dict:
    return {"settings": [{"name": "x", "runs": 4}, {"name": "y", "runs": 2}],
            "training_instances": ["t1", "t2", 3], "testing_instances": ["u1"],
            "train": {"0": [0, 4, 1], "1": [2, 0, 1]}, "test": {"0": [3], "1": [1]}}


def test_release_format_small(tmp_path):
    path = tmp_path / "release.json"
    path.write_text(json.dumps(release_doc()))
    s = load_counts(path)
    assert s.train.problems == ("t1", "t2", "3")
    np.testing.assert_array_equal(s.train.correct, [[0, 4, 1], [2, 0, 1]])
    np.testing.assert_array_equal(s.train.runs, [[4, 4, 4], [2, 2, 2]])
    np.testing.assert_array_equal(s.test.correct, [[3], [1]])
    assert not s.in_sample


def _write(tmp_path, obj, raw: str | None = None):
    path = tmp_path / "bad.json"
    path.write_text(raw if raw is not None else json.dumps(obj))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_counts(tmp_path / "nope.json")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_counts(tmp_path)


def test_invalid_json(tmp_path):
    with pytest.raises(DataError, match="malformed JSON"):
        load_counts(_write(tmp_path, None, raw="{not json"))


def test_top_level_list(tmp_path):
    with pytest.raises(DataError, match="JSON object at the top level"):
        load_counts(_write(tmp_path, [1, 2, 3]))


def test_unknown_object(tmp_path):
    with pytest.raises(DataError, match="not a count file"):
        load_counts(_write(tmp_path, {"hello": "world"}))


def test_release_ragged_train_row(tmp_path):
    doc = release_doc()
    doc["train"]["1"] = [2, 0]
    with pytest.raises(DataError, match=r"ragged rows: 'train'\['1'\] \('y'\) has 2 counts for 3 instances"):
        load_counts(_write(tmp_path, doc))


def test_release_count_above_runs(tmp_path):
    doc = release_doc()
    doc["train"]["1"] = [2, 3, 1]  # y has 2 runs
    with pytest.raises(DataError, match=r"count exceeds runs.*'y'.*'t2'"):
        load_counts(_write(tmp_path, doc))


def test_release_missing_setting_row(tmp_path):
    doc = release_doc()
    del doc["test"]["1"]
    with pytest.raises(DataError, match=r"'test' has no counts for setting 1 \('y'\)"):
        load_counts(_write(tmp_path, doc))


def test_release_bad_setting(tmp_path):
    doc = release_doc()
    doc["settings"][0]["runs"] = 0
    with pytest.raises(DataError, match="settings.0.runs"):
        load_counts(_write(tmp_path, doc))


# ---------------------------------------------------------------------------------------------- score matrix


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_scores_outside_unit_interval(bad):
    s = np.full((2, 1, 2), 0.5)
    s[1, 0, 1] = bad
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        ScoreMatrix(NAMES, ("p1",), s)


def test_scores_wrong_shape():
    with pytest.raises(DataError, match="shape"):
        ScoreMatrix(NAMES, ("p1",), np.zeros((2, 2)))
    with pytest.raises(DataError, match="shape"):
        ScoreMatrix(NAMES, ("p1", "p2"), np.zeros((2, 1, 3)))


def test_scores_ragged():
    with pytest.raises(DataError, match="rectangular"):
        ScoreMatrix(NAMES, ("p1",), [[[0.1, 0.2]], [[0.3]]])


def test_scores_cell_without_runs():
    s = np.full((2, 2, 2), 0.5)
    s[0, 1, :] = np.nan
    with pytest.raises(DataError, match=r"no runs.*'a'.*'p2'"):
        ScoreMatrix(NAMES, ("p1", "p2"), s)


def test_scores_from_counts_pads_with_nan():
    m = counts([[0, 1, 2], [4, 3, 0]], runs=[[4, 2, 4], [4, 3, 4]])
    s = ScoreMatrix.from_counts(m)
    assert s.scores.shape == (2, 3, 4)
    # (config a, problem p2): 1 correct of 2 runs -> [1, 0, nan, nan]
    np.testing.assert_array_equal(s.scores[0, 1], [1.0, 0.0, np.nan, np.nan])
    present = ~np.isnan(s.scores)
    np.testing.assert_array_equal(present.sum(axis=2), m.runs)
    np.testing.assert_array_equal(np.nansum(s.scores, axis=2), m.correct)
    assert s.names == m.names and s.problems == m.problems


def test_scores_from_counts_same_objective(make_counts):
    m = make_counts(3, 8, 5, seed=11)
    s = ScoreMatrix.from_counts(m)
    for x in ([1, 0, 0], [2, 1, 3], [0, 0, 5]):
        assert objective(s, np.array(x)) == pytest.approx(objective(m, np.array(x)), abs=1e-12)
