"""osca.agents.agentless.swebench: SWE-bench instances, checkouts at the base commit, predictions files."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from osca.agents.agentless.swebench import (
    Prediction,
    SWEInstance,
    append_prediction,
    checkout,
    load_instances,
    read_predictions,
    validate_predictions,
)
from osca.exceptions import DataError

LITE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "swebench"
        / "swebench_lite_test.jsonl").resolve()

SHA = "d16bfe05a744909de4b27f5875fe0d4ed41ce607"
PATCH = "diff --git a/f.py b/f.py\n--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"


@pytest.fixture(scope="module")
def lite_path() -> Path:
    """SWE-bench Lite's test split as the dataset ships it (read in place, never copied into the repo)."""
    if not LITE.is_file():
        pytest.skip(f"SWE-bench Lite not found at {LITE} (expected ../shared/data/swebench next to the repo)")
    return LITE


@pytest.fixture(scope="module")
def lite_rows(lite_path: Path) -> list[dict]:
    return [json.loads(line) for line in lite_path.read_text().splitlines()]


def row(**changes: object) -> dict:
    """A minimal valid instance row in the dataset's schema."""
    base = {"repo": "owner/name", "instance_id": "owner__name-1", "base_commit": SHA, "patch": PATCH,
            "test_patch": PATCH, "problem_statement": "it breaks", "hints_text": "",
            "created_at": "2022-03-03T15:14:54Z", "version": "1.0", "FAIL_TO_PASS": '["t.py::test_a"]',
            "PASS_TO_PASS": "[]", "environment_setup_commit": SHA}
    return {**base, **changes}


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# --- instances ------------------------------------------------------------------------------------------------

def test_lite_loads_all_300(lite_path: Path) -> None:
    instances = load_instances(lite_path)
    ids = [i.instance_id for i in instances]
    assert len(ids) == 300 and len(set(ids)) == 300
    for inst in instances:
        assert inst.FAIL_TO_PASS and all(isinstance(t, str) and t for t in inst.FAIL_TO_PASS)
        assert isinstance(inst.PASS_TO_PASS, list) and all(isinstance(t, str) for t in inst.PASS_TO_PASS)
        assert inst.repo.count("/") == 1 and len(inst.base_commit) == 40
    assert sum(not i.PASS_TO_PASS for i in instances) > 0  # some instances really have no PASS_TO_PASS
    assert {i.repo for i in instances} >= {"django/django", "sympy/sympy", "astropy/astropy"}


def test_lite_round_trip_is_exact(lite_path: Path, lite_rows: list[dict]) -> None:
    instances = load_instances(lite_path)
    assert [i.to_record() for i in instances] == lite_rows
    # byte for byte too: a re-export is the same file
    assert "".join(json.dumps(i.to_record()) + "\n" for i in instances) == lite_path.read_text()


def test_ids_filter_keeps_their_order(lite_path: Path) -> None:
    want = ["sympy__sympy-20590", "astropy__astropy-12907", "django__django-11099"]
    assert [i.instance_id for i in load_instances(lite_path, ids=want)] == want


def test_unknown_ids_are_listed(lite_path: Path) -> None:
    with pytest.raises(DataError, match="2 instance id.*nope__nope-1, nope__nope-2"):
        load_instances(lite_path, ids=["django__django-11099", "nope__nope-1", "nope__nope-2"])
    with pytest.raises(TypeError):
        load_instances(lite_path, ids="django__django-11099")


def test_lists_accepted_and_extra_keys_kept() -> None:
    inst = SWEInstance.model_validate(row(FAIL_TO_PASS=["a", "b"], difficulty="<15 min fix"))
    assert inst.FAIL_TO_PASS == ["a", "b"] and inst.PASS_TO_PASS == []
    assert inst.to_record() == row(FAIL_TO_PASS='["a", "b"]', difficulty="<15 min fix")
    with pytest.raises(ValidationError):
        inst.repo = "x/y"  # frozen


@pytest.mark.parametrize(("change", "field"), [
    ({"FAIL_TO_PASS": "[not json"}, "FAIL_TO_PASS"),
    ({"PASS_TO_PASS": "[1, 2]"}, "PASS_TO_PASS"),
    ({"FAIL_TO_PASS": '{"a": 1}'}, "FAIL_TO_PASS"),
    ({"base_commit": "HEAD"}, "base_commit"),
    ({"base_commit": SHA[:39]}, "base_commit"),
    ({"repo": "django"}, "repo"),
    ({"instance_id": ""}, "instance_id"),
    ({"instance_id": "../escape"}, "instance_id"),
])
def test_invalid_fields_are_named(change: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        SWEInstance.model_validate(row(**change))


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    good = [row(instance_id=f"owner__name-{k}") for k in range(3)]
    assert len(load_instances(write_jsonl(tmp_path / "ok.jsonl", good))) == 3

    bad_json = write_jsonl(tmp_path / "a.jsonl", [good[0], good[1], '{"repo": "owner/name",'])
    with pytest.raises(DataError, match=r"a\.jsonl: line 3 is not valid JSON"):
        load_instances(bad_json)

    missing = dict(good[1])
    del missing["problem_statement"]
    with pytest.raises(DataError, match=r"b\.jsonl:line 2: problem_statement: Field required"):
        load_instances(write_jsonl(tmp_path / "b.jsonl", [good[0], missing, good[2]]))

    with pytest.raises(DataError, match=r"c\.jsonl:line 3: FAIL_TO_PASS: .*not a JSON-encoded list"):
        load_instances(write_jsonl(tmp_path / "c.jsonl", [good[0], good[1], {**good[2], "FAIL_TO_PASS": "[x"}]))

    with pytest.raises(DataError, match=r"d\.jsonl:line 3: duplicate instance_id 'owner__name-0' .*line 1"):
        load_instances(write_jsonl(tmp_path / "d.jsonl", [good[0], good[1], good[0]]))


def test_json_list_file(tmp_path: Path) -> None:
    path = tmp_path / "lite.json"
    path.write_text(json.dumps([row(), row(instance_id="owner__name-2")]))
    assert [i.instance_id for i in load_instances(path)] == ["owner__name-1", "owner__name-2"]
    path.write_text(json.dumps([row(), row(repo="nope")]))
    with pytest.raises(DataError, match=r"lite\.json:item 2: repo"):
        load_instances(path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="JSON list"):
        load_instances(path)


def test_missing_file_is_not_taken_for_a_hub_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_instances(tmp_path / "lite.jsonl")
    with pytest.raises(DataError, match="no such file"):
        load_instances(str(tmp_path / "lite.jsonl"))


def test_hub_without_datasets_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError, installed or not
    with pytest.raises(DataError, match=r"local \.jsonl.*osca\[hub\]"):
        load_instances("princeton-nlp/SWE-bench_Lite")


def fake_datasets(load) -> types.ModuleType:
    """A stand-in for the `datasets` package, so the hub path runs offline."""
    module = types.ModuleType("datasets")
    module.load_dataset = load
    return module


def test_hub_rows_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load(name: str, *, split: str) -> list[dict]:
        calls.append((name, split))
        return [row(), row(instance_id="owner__name-2", FAIL_TO_PASS="[")]

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load))
    with pytest.raises(DataError, match=r"some/dataset\[dev\]:row 2: FAIL_TO_PASS"):
        load_instances("some/dataset", split="dev")
    assert calls == [("some/dataset", "dev")]


def test_unreachable_hub_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(name: str, *, split: str) -> list[dict]:
        raise ConnectionError("Couldn't reach 'princeton-nlp/SWE-bench_Lite' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(load))
    with pytest.raises(DataError, match=r"ConnectionError.*local \.jsonl.*osca\[hub\]") as info:
        load_instances()
    assert isinstance(info.value.__cause__, ConnectionError)


# --- checkouts ------------------------------------------------------------------------------------------------

def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
                           *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str, str]:
    """A local repository with two commits: (path, first sha, second sha)."""
    repo = tmp_path / "src"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / ".gitignore").write_text("*.pyc\n")
    (repo / "f.py").write_text("a = 1\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "first", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "f.py").write_text("a = 2\n")
    (repo / "g.py").write_text("b = 1\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "second", cwd=repo)
    return repo, first, git("rev-parse", "HEAD", cwd=repo)


def at(sha: str, instance_id: str = "owner__name-1") -> SWEInstance:
    return SWEInstance.model_validate(row(base_commit=sha, instance_id=instance_id))


def test_checkout_from_local_source(tmp_path: Path, source: tuple[Path, str, str]) -> None:
    repo, first, second = source
    tree = checkout(at(first), workdir=tmp_path / "work", source=repo)
    assert tree == tmp_path / "work" / "owner__name-1"
    assert git("rev-parse", "HEAD", cwd=tree) == first
    assert (tree / "f.py").read_text() == "a = 1\n" and not (tree / "g.py").exists()
    assert git("status", "--porcelain", "--ignored", cwd=tree) == ""
    assert git("rev-parse", "HEAD", cwd=repo) == second  # the source is left as it was

    later = checkout(at(second, "owner__name-2"), workdir=tmp_path / "work", source=repo)
    assert (later / "g.py").exists() and (tree / "f.py").read_text() == "a = 1\n"


def test_rerun_reuses_a_clean_checkout(tmp_path: Path, source: tuple[Path, str, str]) -> None:
    repo, first, _ = source
    tree = checkout(at(first), workdir=tmp_path, source=repo)
    moves = git("reflog", cwd=tree)
    assert checkout(at(first), workdir=tmp_path, source=repo) == tree
    assert git("reflog", cwd=tree) == moves  # nothing was checked out again


def test_dirty_checkout_is_reset(tmp_path: Path, source: tuple[Path, str, str]) -> None:
    repo, first, second = source
    tree = checkout(at(first), workdir=tmp_path, source=repo)
    (tree / "f.py").write_text("a = 99\n")
    (tree / "new.py").write_text("x = 1\n")
    (tree / "f.pyc").write_bytes(b"ignored build output")
    (tree / "staged.py").write_text("y = 1\n")
    git("add", "staged.py", cwd=tree)
    assert checkout(at(first), workdir=tmp_path, source=repo) == tree
    assert (tree / "f.py").read_text() == "a = 1\n"
    assert not any((tree / name).exists() for name in ("new.py", "f.pyc", "staged.py"))
    assert git("status", "--porcelain", "--ignored", cwd=tree) == ""

    git("checkout", "-q", second, cwd=tree)  # HEAD moved away from the base commit
    checkout(at(first), workdir=tmp_path, source=repo)
    assert git("rev-parse", "HEAD", cwd=tree) == first and not (tree / "g.py").exists()


def test_missing_commit_says_so(tmp_path: Path, source: tuple[Path, str, str]) -> None:
    repo, first, _ = source
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(DataError, match=f"owner/name @ {missing}: commit not found in source"):
        checkout(at(missing), workdir=tmp_path, source=repo)
    checkout(at(first), workdir=tmp_path, source=repo)
    with pytest.raises(DataError, match=f"owner/name @ {missing}: commit not found in the checkout"):
        checkout(at(missing), workdir=tmp_path, source=repo)  # same id, existing tree


def test_bad_source_and_occupied_folder(tmp_path: Path, source: tuple[Path, str, str]) -> None:
    repo, first, _ = source
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a git repository"):
        checkout(at(first), workdir=tmp_path / "w1", source=tmp_path / "plain")
    (tmp_path / "w2" / "owner__name-1").mkdir(parents=True)
    (tmp_path / "w2" / "owner__name-1" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not a git work tree"):
        checkout(at(first), workdir=tmp_path / "w2", source=repo)
    assert (tmp_path / "w2" / "owner__name-1" / "keep.txt").read_text() == "mine"


def test_checkout_clones_once_from_url(tmp_path: Path, source: tuple[Path, str, str]) -> None:
    repo, first, second = source
    remote = tmp_path / "remote" / "owner" / "name.git"
    remote.parent.mkdir(parents=True)
    git("clone", "-q", "--bare", str(repo), str(remote), cwd=tmp_path)
    url = f"file://{tmp_path}/remote/{{repo}}.git"

    work = tmp_path / "work"
    tree = checkout(at(first), workdir=work, url=url)
    assert git("rev-parse", "HEAD", cwd=tree) == first
    assert (work / ".repos" / "owner__name").is_dir()

    subprocess.run(["rm", "-rf", str(remote)], check=True)  # later checkouts need only the local clone
    other = checkout(at(second, "owner__name-2"), workdir=work, url=url)
    assert git("rev-parse", "HEAD", cwd=other) == second

    with pytest.raises(DataError, match=r"owner/name @ .*: cloning file://.*failed"):
        checkout(at(first), workdir=tmp_path / "elsewhere", url=url)


# --- predictions ----------------------------------------------------------------------------------------------

def pred(iid: str, patch: str = PATCH, model: str = "agentless") -> Prediction:
    return Prediction(instance_id=iid, model_name_or_path=model, model_patch=patch)


def test_append_and_read(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "preds.jsonl"
    assert read_predictions(path) == {}
    append_prediction(path, pred("a__a-1"))
    append_prediction(path, pred("b__b-2", patch=""))
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"instance_id": "a__a-1", "model_name_or_path": "agentless", "model_patch": PATCH},
        {"instance_id": "b__b-2", "model_name_or_path": "agentless", "model_patch": ""}]
    assert read_predictions(path) == {"a__a-1": pred("a__a-1"), "b__b-2": pred("b__b-2", patch="")}
    assert validate_predictions(path) == []


def test_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    append_prediction(path, pred("a__a-1"))
    full = json.dumps(pred("b__b-2").model_dump())
    with path.open("a") as f:
        f.write(full[: len(full) // 2])  # the crash
    assert list(read_predictions(path)) == ["a__a-1"]
    assert any("line 2: not valid JSON (torn last line?)" in p for p in validate_predictions(path))

    append_prediction(path, pred("c__c-3"))  # the resumed run
    assert list(read_predictions(path)) == ["a__a-1", "c__c-3"]
    assert validate_predictions(path) == []


def test_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps(pred("a__a-1").model_dump()))
    assert list(read_predictions(path)) == ["a__a-1"]
    append_prediction(path, pred("b__b-2"))
    assert list(read_predictions(path)) == ["a__a-1", "b__b-2"]


def test_malformed_prediction_lines(tmp_path: Path) -> None:
    good = pred("a__a-1").model_dump()
    with pytest.raises(DataError, match=r"p1\.jsonl: line 2 is not valid JSON"):
        read_predictions(write_jsonl(tmp_path / "p1.jsonl", [good, "{oops", good]))
    with pytest.raises(DataError, match=r"p2\.jsonl:line 2: model_name_or_path: Field required"):
        read_predictions(write_jsonl(tmp_path / "p2.jsonl", [good, {"instance_id": "b", "model_patch": ""}]))
    with pytest.raises(DataError, match=r"p3\.jsonl:line 1: model_patch"):
        read_predictions(write_jsonl(tmp_path / "p3.jsonl", [{**good, "model_patch": 3}]))


def test_duplicates_last_wins(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [pred("a__a-1", patch="").model_dump(), pred("b__b-2").model_dump(),
                                              pred("a__a-1").model_dump()])
    preds = read_predictions(path)
    assert list(preds) == ["b__b-2", "a__a-1"] and preds["a__a-1"].model_patch == PATCH
    assert validate_predictions(path) == ["line 3: duplicate instance_id 'a__a-1' (first at line 1); "
                                          "the harness keeps only the last"]


def test_null_patch_and_json_forms(tmp_path: Path) -> None:
    records = [{"instance_id": "a__a-1", "model_name_or_path": "m", "model_patch": None}, pred("b__b-2").model_dump()]
    as_list = tmp_path / "p.json"
    as_list.write_text(json.dumps(records))
    as_dict = tmp_path / "q.json"
    as_dict.write_text(json.dumps({r["instance_id"]: r for r in records}))  # SWE-agent's form
    for path in (as_list, as_dict):
        assert validate_predictions(path, ["a__a-1", "b__b-2"]) == []
        preds = read_predictions(path)
        assert preds["a__a-1"].model_patch == "" and preds["b__b-2"] == pred("b__b-2")


def test_gold_patches_validate(tmp_path: Path, lite_path: Path) -> None:
    instances = load_instances(lite_path)
    path = tmp_path / "gold.jsonl"
    for inst in instances:
        append_prediction(path, Prediction(instance_id=inst.instance_id, model_name_or_path="gold",
                                           model_patch=inst.patch))
    assert validate_predictions(path, instances) == []
    assert len(read_predictions(path)) == 300


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [
        pred("a__a-1").model_dump(),
        {"instance_id": "b__b-2", "model_patch": PATCH},
        {"instance_id": "", "model_name_or_path": 7, "model_patch": ["x"]},
        pred("c__c-3", patch="please change a to 2").model_dump(),
        pred("d__d-4", patch=PATCH.rstrip("\n")).model_dump(),
        pred("zz__zz-9").model_dump(),
        "[1, 2]",
        "",
    ])
    known = ["a__a-1", "b__b-2", "c__c-3", "d__d-4"]
    problems = validate_predictions(path, known)
    assert problems == [
        "line 2: missing key 'model_name_or_path'",
        "line 3: instance_id must be a non-empty string, got ''",
        "line 3: model_name_or_path must be a string, got int",
        "line 3: model_patch must be a string or null, got list",
        "line 4: model_patch is not a unified diff (no 'diff --git' header, no '---'/'+++'/'@@' hunk)",
        "line 5: model_patch does not end with a newline (git apply and patch reject it as corrupt)",
        "line 6: unknown instance_id 'zz__zz-9' (not among the given instances)",
        "line 7: a prediction must be a JSON object, got list",
        "line 8: not valid JSON (Expecting value: line 1 column 1 (char 0))",
    ]
    assert validate_predictions(path) == [p for p in problems if "unknown" not in p]


def test_patch_without_git_header_is_a_diff(tmp_path: Path) -> None:
    plain = PATCH.split("\n", 1)[1]  # `diff -u` output: ---/+++/@@ only, which `patch -p1` applies
    path = write_jsonl(tmp_path / "p.jsonl", [pred("a__a-1", patch=plain).model_dump()])
    assert validate_predictions(path) == []


def test_validate_file_level_problems(tmp_path: Path) -> None:
    assert validate_predictions(tmp_path / "p.txt") == [f"{tmp_path / 'p.txt'}: the harness reads only .json or "
                                                        ".jsonl predictions files"]
    assert validate_predictions(tmp_path / "none.jsonl") == [f"{tmp_path / 'none.jsonl'}: no such file"]
    (tmp_path / "empty.jsonl").write_text("")
    assert validate_predictions(tmp_path / "empty.jsonl") == [f"{tmp_path / 'empty.jsonl'}: no predictions"]


def test_cli_validates_a_predictions_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from osca.cli import app

    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps({"instance_id": "a__b-1", "model_name_or_path": "m", "model_patch": ""}) + "\n")
    bad.write_text(json.dumps({"instance_id": "a__b-1", "model_patch": "not a diff"}) + "\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["agentless", "validate", str(good)])
    assert ok.exit_code == 0 and "valid" in ok.output
    res = runner.invoke(app, ["agentless", "validate", str(bad)])
    assert res.exit_code == 1 and "model_name_or_path" in res.output
