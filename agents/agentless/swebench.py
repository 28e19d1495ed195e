"""SWE-bench's own data formats: task instances, repositories at their base commit, and prediction files.

Everything here reads and writes what the official benchmark uses, so a run on the real SWE-bench Lite needs no
conversion step:

- instances: the dataset rows (`princeton-nlp/SWE-bench_Lite` on the hub, or a local `.jsonl`/`.json` export);
  FAIL_TO_PASS / PASS_TO_PASS arrive JSON-encoded and are parsed once, here.
- repositories: a git work tree of `instance.repo` at `instance.base_commit`, cloned from a local repository or
  from GitHub (one full clone per repository, reused by every instance).
- predictions: `{"instance_id", "model_name_or_path", "model_patch"}` per line, the file
  `python -m swebench.harness.run_evaluation --predictions_path` reads.

    instances = load_instances("../shared/data/swebench/swebench_lite_test.jsonl")
    tree = checkout(instances[0], workdir=Path("runs/repos"))
    append_prediction("runs/preds.jsonl", Prediction(instance_id=instances[0].instance_id,
                                                     model_name_or_path="agentless", model_patch=diff))
    assert validate_predictions("runs/preds.jsonl", instances) == []
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from osca.jsonl import append_record, read_lines, split_lines, whole_lines
from osca.exceptions import DataError

__all__ = ["DEFAULT_DATASET", "GITHUB_URL", "Prediction", "SWEInstance", "append_prediction", "checkout",
           "load_instances", "read_predictions", "validate_predictions"]

DEFAULT_DATASET = "princeton-nlp/SWE-bench_Lite"
"""The hub dataset `load_instances` reads when given no source."""

GITHUB_URL = "https://github.com/{repo}.git"
"""Where `checkout` clones `owner/name` from when no local source is given (`{repo}` is replaced)."""

_TEST_LISTS = ("FAIL_TO_PASS", "PASS_TO_PASS")
_SHA = r"^[0-9a-f]{40}$"
_Sha = Annotated[str, StringConstraints(pattern=_SHA)]


def _describe(error: ValidationError, whole: str = "<record>") -> str:
    """A pydantic error as `field: message; ...`, the field first so the reader sees what to fix (`whole` for an
    error of the whole record)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in error.errors())


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], record: Any, at: str) -> _M:
    try:
        return model.model_validate(record)
    except ValidationError as e:
        raise DataError(f"{at}: {_describe(e)}") from None


class SWEInstance(BaseModel):
    """One SWE-bench task, field for field as the dataset has it (unknown extra keys are kept: variants such as
    SWE-bench Verified add some)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    repo: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    """GitHub `owner/name`."""
    instance_id: str
    """`owner__name-PR`; also the directory name of the instance's checkout."""
    base_commit: _Sha
    """The commit the gold patch and the model's patch apply to."""
    patch: str
    """The gold patch (never shown to the agent)."""
    test_patch: str
    """The tests the harness adds before running FAIL_TO_PASS / PASS_TO_PASS."""
    problem_statement: str
    """The issue text: the agent's input."""
    hints_text: str
    """Issue comments made before the fix (empty for most instances)."""
    created_at: str
    version: str
    """The repository's version; selects the harness's environment spec."""
    FAIL_TO_PASS: list[str]
    """Tests the fix must make pass (JSON-encoded in the dataset, a list here)."""
    PASS_TO_PASS: list[str]
    """Tests that passed before and must still pass."""
    environment_setup_commit: str

    @field_validator("instance_id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        # the id names a directory under `workdir` in `checkout`: no way out of it
        if not value.strip() or value in {".", ".."} or any(c in value for c in "/\\\0"):
            raise ValueError(f"must be a non-empty name without path separators, got {value!r}")
        return value

    @field_validator(*_TEST_LISTS, mode="before")
    @classmethod
    def _decode_tests(cls, value: Any) -> Any:
        # the dataset stores the lists as JSON text; a list (already decoded) is taken as it is
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as e:
                raise ValueError(f"not a JSON-encoded list of test names ({e})") from None
        return value

    def to_record(self) -> dict[str, Any]:
        """The row in the dataset's own schema (test lists JSON-encoded as the dataset does, extra keys kept), so
        `SWEInstance.model_validate(row).to_record() == row`."""
        record = self.model_dump()
        for name in _TEST_LISTS:
            record[name] = json.dumps(record[name])
        return record


class Prediction(BaseModel):
    """One line of a SWE-bench predictions file; an empty `model_patch` means "no patch" (the harness skips
    it and counts the instance unresolved)."""

    model_config = ConfigDict(frozen=True, extra="allow", protected_namespaces=())

    instance_id: Annotated[str, StringConstraints(min_length=1)]
    model_name_or_path: str
    """Names the run; the harness writes its logs under this name (with "/" as "__")."""
    model_patch: str
    """A unified diff against the instance's base commit, or "" for none."""

    @field_validator("model_patch", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value  # the harness treats null like "" (get_dataset_from_preds)


# --- instances ------------------------------------------------------------------------------------------------

def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(`file:line N` or `file:item N`, parsed JSON) for each record of a .jsonl or .json-list file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:line {n}", json.loads(line)
                except ValueError as e:
                    raise DataError(f"{path}: line {n} is not valid JSON ({e})") from None
    elif path.suffix == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(f"{path} is not valid JSON ({e})") from None
        if not isinstance(items, list):
            raise DataError(f"{path} must hold a JSON list of instances, got {type(items).__name__}")
        for n, item in enumerate(items, 1):
            yield f"{path}:item {n}", item
    else:
        raise DataError(f"{path}: expected a .jsonl or .json file of SWE-bench instances")


def _hub_rows(name: str, split: str) -> Iterator[tuple[str, Any]]:
    """Rows of a Hugging Face dataset; the hub is an optional dependency, reached only here."""
    hint = "pass the path of a local .jsonl export instead, or install the hub extra: pip install 'osca[hub]'"
    try:
        import datasets
    except ImportError:
        raise DataError(f"{name!r} is not a file and `datasets` is not installed: {hint}") from None
    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, bad split: all mean "cannot read it from the hub"
        raise DataError(f"cannot load {name!r} (split {split!r}) from the Hugging Face hub "
                        f"({type(e).__name__}: {e}); {hint}") from e
    for n, row in enumerate(rows, 1):
        yield f"{name}[{split}]:row {n}", row


def load_instances(source: str | os.PathLike[str] = DEFAULT_DATASET, *, split: str = "test",
                   ids: Sequence[str] | None = None) -> list[SWEInstance]:
    """Read SWE-bench instances from a local file or the Hugging Face hub.

    Args:
        source: a `.jsonl` file (one row per line) or `.json` file (a list of rows) in the dataset's schema; any
            other string is a hub dataset name, loaded with `datasets.load_dataset(source, split=split)`.
        split: the hub split (ignored for files).
        ids: keep only these instance ids, in this order.

    Returns:
        The instances, in file order (or in the order of `ids`).

    Raises:
        DataError: malformed record (the message names file, line and field), duplicate ids, unknown `ids`,
            a missing file, or a hub dataset that cannot be loaded (no `datasets`, no network).

    Example:
        >>> lite = load_instances("swebench_lite_test.jsonl", ids=["django__django-11099"])  # doctest: +SKIP
    """
    path = Path(source)
    if path.is_file():
        rows = _records(path)
    elif isinstance(source, os.PathLike) or path.suffix in {".json", ".jsonl"}:
        raise DataError(f"{path}: no such file")
    else:
        rows = _hub_rows(str(source), split)
    instances: list[SWEInstance] = []
    where: dict[str, str] = {}
    for at, row in rows:
        instance = _validated(SWEInstance, row, at)
        if instance.instance_id in where:
            raise DataError(f"{at}: duplicate instance_id {instance.instance_id!r} "
                            f"(first at {where[instance.instance_id]})")
        where[instance.instance_id] = at
        instances.append(instance)
    if ids is None:
        return instances
    if isinstance(ids, str):
        raise TypeError("ids must be a sequence of instance ids, not one string")
    by_id = {i.instance_id: i for i in instances}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise DataError(f"{len(unknown)} instance id(s) not in {source}: {', '.join(unknown)}")
    return [by_id[i] for i in dict.fromkeys(ids)]


# --- repositories ---------------------------------------------------------------------------------------------

def _git(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run git (no shell), never prompting for credentials and ignoring a caller's GIT_DIR & co."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"  # a private or misspelled repository fails instead of waiting for a password
    return subprocess.run(["git", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _fail(instance: SWEInstance, what: str, result: subprocess.CompletedProcess[str]) -> DataError:
    said = result.stderr.strip() or result.stdout.strip()
    return DataError(f"{instance.repo} @ {instance.base_commit}: {what}: {said}")


def _has_commit(repo: Path, sha: str) -> bool:
    return _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=repo).returncode == 0


def _is_work_tree(path: Path) -> bool:
    """True when `path` is the top of its own git work tree (not a folder inside some enclosing repository)."""
    if not (path / ".git").exists():
        return False
    top = _git("rev-parse", "--show-toplevel", cwd=path)
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == path.resolve()


def _mirror(instance: SWEInstance, workdir: Path, url: str) -> Path:
    """The shared clone of the instance's repository under `workdir/.repos`, cloned on first use.

    A full bare clone, not a blobless one: every later checkout then works offline and `git clone --shared` can
    borrow its objects (a partial clone would fetch the missing blobs again for each instance).
    """
    mirror = workdir / ".repos" / instance.repo.replace("/", "__")
    if not mirror.exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        partial = mirror.with_name(f"{mirror.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        remote = url.format(repo=instance.repo)
        result = _git("clone", "--bare", "--quiet", remote, partial)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise _fail(instance, f"cloning {remote} failed", result)
        try:
            partial.rename(mirror)  # a clone that died halfway never looks finished
        except OSError:  # another process finished first: use its clone
            shutil.rmtree(partial, ignore_errors=True)
    if not _has_commit(mirror, instance.base_commit):
        # commits off the default branches (SWE-bench has a few) are fetched by sha, once
        result = _git("fetch", "--quiet", "origin", instance.base_commit, cwd=mirror)
        if result.returncode != 0 or not _has_commit(mirror, instance.base_commit):
            raise _fail(instance, f"commit not found in {mirror} and fetching it failed", result)
    return mirror


def checkout(instance: SWEInstance, *, workdir: str | os.PathLike[str], source: str | os.PathLike[str] | None = None,
             url: str = GITHUB_URL) -> Path:
    """A clean git work tree of `instance.repo` at `instance.base_commit`, in `workdir/<instance_id>`.

    The tree is a `git clone --shared` of `source` (a local clone of the repository) or, without one, of a full
    clone of `url` kept in `workdir/.repos/<owner>__<name>` and reused by every instance of that repository. An
    existing checkout is reused as it is when it sits at the base commit with nothing changed, untracked or
    ignored; otherwise it is forced back there (`git checkout -f` + `git clean -fdx`), so edits left by an
    earlier attempt never leak into the next.

    Args:
        instance: the task.
        workdir: parent folder of the checkouts (created when missing).
        source: a local git repository holding `base_commit`; None clones from `url`.
        url: clone address for `source=None`; `{repo}` is replaced by `owner/name` (a mirror, or `file://...`).

    Returns:
        The work tree's path (HEAD detached at `base_commit`).

    Raises:
        DataError: any git failure; the message names the repository, the commit and git's stderr.

    Example:
        >>> tree = checkout(instance, workdir=Path("runs/repos"), source=Path.home() / "src/django")  # doctest: +SKIP
    """
    workdir = Path(workdir)
    sha = instance.base_commit
    tree = workdir / instance.instance_id
    if not _is_work_tree(tree):
        if tree.exists() and any(tree.iterdir()):
            raise DataError(f"{tree} exists and is not a git work tree; remove it or choose another workdir")
        if source is None:
            origin = _mirror(instance, workdir, url)
        else:
            origin = Path(source)
            probe = _git("rev-parse", "--git-dir", cwd=origin) if origin.is_dir() else None
            if probe is None or probe.returncode != 0:
                raise DataError(f"{instance.repo} @ {sha}: source {origin} is not a git repository")
            if not _has_commit(origin, sha):
                raise DataError(f"{instance.repo} @ {sha}: commit not found in source {origin}")
        workdir.mkdir(parents=True, exist_ok=True)
        result = _git("clone", "--shared", "--no-checkout", "--quiet", origin.resolve(), tree)
        if result.returncode != 0:
            raise _fail(instance, f"cloning {origin} into {tree} failed", result)
    else:
        head = _git("rev-parse", "HEAD", cwd=tree)
        dirty = _git("status", "--porcelain", "--ignored", cwd=tree)
        if head.returncode == 0 and head.stdout.strip() == sha and dirty.returncode == 0 and not dirty.stdout:
            return tree
    if not _has_commit(tree, sha):
        raise DataError(f"{instance.repo} @ {sha}: commit not found in the checkout {tree}")
    for args in (("checkout", "--quiet", "-f", "--detach", sha), ("clean", "-q", "-fdx")):
        result = _git(*args, cwd=tree)
        if result.returncode != 0:
            raise _fail(instance, f"git {args[0]} in {tree} failed", result)
    return tree


# --- predictions ----------------------------------------------------------------------------------------------

def append_prediction(path: str | os.PathLike[str], pred: Prediction) -> None:
    """Append one prediction as a JSON line, flushed and fsynced, so an interrupted run loses no finished one.

    A torn last line left by a crash (no newline, not valid JSON) is cut off first, so the new record starts on
    a line of its own and the file stays readable by the harness. One writer per file at a time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    whole_lines(path)
    with path.open("a", encoding="utf-8") as f:
        append_record(f, pred.model_dump())


def read_predictions(path: str | os.PathLike[str]) -> dict[str, Prediction]:
    """Predictions by instance id from a `.jsonl` file (or a `.json` list or id->prediction dict, as the harness
    accepts).

    A missing file reads as no predictions, so a first run and a resumed one start the same way. A torn last line
    (no newline, not valid JSON: a crash mid-write) is ignored. When an instance appears more than once the
    LAST line wins, as in the harness (`{pred["instance_id"]: pred for pred in predictions}`) and as a resumed run
    that re-does an instance expects; `validate_predictions` reports such duplicates.

    Raises:
        DataError: any other malformed line or record (the message names the line and the field).
    """
    path = Path(path)
    if not path.exists():
        return {}
    records: list[tuple[str, Any]] = []
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(f"{path} is not valid JSON ({e})") from None
        items = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise DataError(f"{path} must hold a list of predictions or an id -> prediction object")
        records = [(f"{path}:item {n}", item) for n, item in enumerate(items, 1)]
    else:
        for n, line in enumerate(read_lines(path), 1):
            if not line.strip():
                continue
            try:
                records.append((f"{path}:line {n}", json.loads(line)))
            except ValueError as e:
                raise DataError(f"{path}: line {n} is not valid JSON ({e})") from None
    out: dict[str, Prediction] = {}
    for at, record in records:
        pred = _validated(Prediction, record, at)
        out.pop(pred.instance_id, None)  # the last one wins, and takes the last place too
        out[pred.instance_id] = pred
    return out


_DIFF_GIT = re.compile(r"^diff --git \S", re.MULTILINE)
_HUNK = re.compile(r"^--- \S.*\n\+\+\+ \S.*\n@@ -\d+(,\d+)? \+\d+(,\d+)? @@", re.MULTILINE)


class _Invalid(str):
    """A line that is not JSON, kept in place so problems come out in line order."""


def _patch_problem(patch: str) -> str | None:
    """Why the harness could not apply `patch` on its face (not whether it fits the repository)."""
    if not _DIFF_GIT.search(patch) and not _HUNK.search(patch):
        return "model_patch is not a unified diff (no 'diff --git' header, no '---'/'+++'/'@@' hunk)"
    if not patch.endswith("\n"):
        return "model_patch does not end with a newline (git apply and patch reject it as corrupt)"
    return None


def validate_predictions(path: str | os.PathLike[str],
                         instances: Iterable[SWEInstance | str] | None = None) -> list[str]:
    """Everything that would stop `swebench.harness.run_evaluation` from taking this predictions file as meant.

    Checks the file type (.json or .jsonl), every record (a JSON object with `instance_id` (non-empty str),
    `model_name_or_path` (str) and `model_patch` (str or null)), that non-empty patches look like unified diffs
    ending in a newline, duplicate ids (the harness would silently keep the last), and, when `instances` (or
    their ids) are given, ids not among them (the harness refuses those). Unlike `read_predictions`, a torn last
    line is a problem here: the harness's line-by-line `json.loads` fails on it.

    Returns:
        One message per problem, each naming its line (or item); an empty list means the file is valid.
    """
    path = Path(path)
    if path.suffix not in {".json", ".jsonl"}:
        return [f"{path}: the harness reads only .json or .jsonl predictions files"]
    if not path.is_file():
        return [f"{path}: no such file"]
    problems: list[str] = []
    records: list[tuple[str, Any]] = []
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            return [f"{path}: not valid JSON ({e})"]
        items = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(items, list):
            return [f"{path}: must hold a list of predictions or an id -> prediction object"]
        records = [(f"item {n}", item) for n, item in enumerate(items, 1)]
    else:
        lines, tail = split_lines(path)
        if tail is not None:
            lines.append(tail)
        for n, line in enumerate(lines, 1):
            try:
                records.append((f"line {n}", json.loads(line)))
            except ValueError as e:  # the harness's `json.loads(line)` fails here too (blank lines included)
                torn = " (torn last line?)" if n == len(lines) and tail is not None else ""
                records.append((f"line {n}", _Invalid(f"not valid JSON{torn} ({e})")))
    if not records:
        return [f"{path}: no predictions"]
    known = None if instances is None else {i if isinstance(i, str) else i.instance_id for i in instances}
    first: dict[str, str] = {}
    for at, record in records:
        if not isinstance(record, dict):
            why = record if isinstance(record, _Invalid) else f"a prediction must be a JSON object, got " \
                f"{type(record).__name__}"
            problems.append(f"{at}: {why}")
            continue
        for key in ("instance_id", "model_name_or_path", "model_patch"):
            if key not in record:
                problems.append(f"{at}: missing key {key!r}")
        iid, name, patch = record.get("instance_id"), record.get("model_name_or_path"), record.get("model_patch")
        if "instance_id" in record and (not isinstance(iid, str) or not iid):
            problems.append(f"{at}: instance_id must be a non-empty string, got {iid!r}")
            iid = None
        if "model_name_or_path" in record and not isinstance(name, str):
            problems.append(f"{at}: model_name_or_path must be a string, got {type(name).__name__}")
        if "model_patch" in record and patch is not None and not isinstance(patch, str):
            problems.append(f"{at}: model_patch must be a string or null, got {type(patch).__name__}")
        elif isinstance(patch, str) and patch and (why := _patch_problem(patch)):
            problems.append(f"{at}: {why}")
        if isinstance(iid, str):
            if iid in first:
                problems.append(f"{at}: duplicate instance_id {iid!r} (first at {first[iid]}); the harness keeps "
                                "only the last")
            else:
                first[iid] = at
            if known is not None and iid not in known:
                problems.append(f"{at}: unknown instance_id {iid!r} (not among the given instances)")
    return problems
