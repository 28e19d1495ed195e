"""Correctness data that allocations are learned from and evaluated on.

`CountMatrix` holds, for each (configuration, problem), how many of `runs` samples were correct. It loads the
OSCA paper's release format and saves/loads its own. `ScoreMatrix` holds per-sample scores in [0, 1] for the
fractional objective (paper, appendix A.4). `CountSplit` pairs the part an allocation is learned on with the
part it is judged on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .configs import SamplingConfig
from .exceptions import ConfigError, DataError

__all__ = ["CountMatrix", "CountSplit", "ScoreMatrix", "load_counts"]

COUNTS_FORMAT = "osca.counts/v1"
SCORES_FORMAT = "osca.scores/v1"


def _as_configs(configs: Sequence[SamplingConfig | str]) -> tuple[SamplingConfig, ...]:
    out = tuple(c if isinstance(c, SamplingConfig) else SamplingConfig(name=c) for c in configs)
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"configuration name {dup!r} appears more than once")
    if not out:
        raise DataError("no sampling configurations")
    return out


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class _ConfigSet:
    """Name lookup shared by the count and score matrices."""

    configs: tuple[SamplingConfig, ...]
    problems: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.configs]

    @property
    def n_configs(self) -> int:
        return len(self.configs)

    @property
    def n_problems(self) -> int:
        return len(self.problems)

    @property
    def costs(self) -> np.ndarray:
        """Cost per sample of each configuration, shape (n_configs,)."""
        return np.array([c.cost for c in self.configs], dtype=float)

    def index(self, name: str) -> int:
        """Row of configuration `name`; `ConfigError` names the known ones when it is absent."""
        for i, c in enumerate(self.configs):
            if c.name == name:
                return i
        known = ", ".join(self.names[:8]) + (", ..." if self.n_configs > 8 else "")
        raise ConfigError(f"unknown configuration {name!r} (known: {known})")


@dataclass(frozen=True, eq=False)
class CountMatrix(_ConfigSet):
    """Correct counts c_ij out of n_ij runs of configuration i on problem j.

    Attributes:
        configs: the configurations, one per row.
        problems: problem ids, one per column.
        correct: int array, shape (n_configs, n_problems).
        runs: int array, shape (n_configs, n_problems) (a per-configuration vector is broadcast).
    """

    configs: tuple[SamplingConfig, ...]
    problems: tuple[str, ...]
    correct: np.ndarray
    runs: np.ndarray

    def __post_init__(self) -> None:
        configs = _as_configs(self.configs)
        problems = tuple(str(p) for p in self.problems)
        if len(set(problems)) != len(problems):
            raise DataError("problem ids are not unique")
        shape = (len(configs), len(problems))
        correct = _integral(self.correct, "correct counts")
        if correct.shape != shape:
            raise DataError(f"correct counts have shape {correct.shape}, expected {shape} (configs x problems)")
        runs = _integral(self.runs, "runs")
        if runs.ndim == 0 or runs.shape == (len(configs),):
            runs = np.broadcast_to(runs.reshape(-1, 1) if runs.ndim else runs, shape)
        if runs.shape != shape:
            raise DataError(f"runs have shape {runs.shape}, expected {shape} or ({len(configs)},)")
        for bad, what in ((runs < 1, "runs must be >= 1"), (correct < 0, "negative count"),
                          (correct > runs, "count exceeds runs")):
            if bad.any():
                i, j = map(int, np.argwhere(bad)[0])
                raise DataError(f"{what}: configuration {configs[i].name!r}, problem {problems[j]!r} "
                                f"({int(correct[i, j])} correct of {int(runs[i, j])} runs)")
        object.__setattr__(self, "configs", configs)
        object.__setattr__(self, "problems", problems)
        object.__setattr__(self, "correct", _frozen(correct.copy()))
        object.__setattr__(self, "runs", _frozen(np.array(runs)))

    @property
    def rates(self) -> np.ndarray:
        """Plug-in success probabilities p_ij = c_ij / n_ij, shape (n_configs, n_problems)."""
        return self.correct / self.runs

    def take(self, problems: Sequence[int] | np.ndarray) -> CountMatrix:
        """The sub-matrix of the given problem columns (by position)."""
        idx = np.asarray(problems, dtype=int)
        return CountMatrix(self.configs, tuple(self.problems[k] for k in idx),
                           self.correct[:, idx], self.runs[:, idx])

    def with_configs(self, configs: Sequence[SamplingConfig]) -> CountMatrix:
        """The same counts with richer configurations (model, cost, ...) matched by name."""
        by_name = {c.name: c for c in configs}
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise ConfigError(f"no configuration given for {missing[0]!r}")
        return CountMatrix(tuple(by_name[n] for n in self.names), self.problems, self.correct, self.runs)

    def split(self, train_fraction: float, seed: int = 0) -> CountSplit:
        """A seeded random split of the problems: `train_fraction` of them to learn on, the rest to test on."""
        if not 0.0 < train_fraction < 1.0:
            raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
        n_train = int(round(train_fraction * self.n_problems))
        if not 0 < n_train < self.n_problems:
            raise DataError(f"a {train_fraction} split of {self.n_problems} problems leaves a part empty")
        order = np.random.default_rng(seed).permutation(self.n_problems)
        return CountSplit(self.take(np.sort(order[:n_train])), self.take(np.sort(order[n_train:])))

    def to_dict(self) -> dict[str, Any]:
        return {"format": COUNTS_FORMAT, "configs": [c.model_dump(exclude_defaults=True) for c in self.configs],
                "problems": list(self.problems), "correct": self.correct.tolist(), "runs": self.runs.tolist()}

    def save(self, path: str | Path) -> None:
        """Write osca's own JSON format (`osca.counts/v1`)."""
        Path(path).write_text(json.dumps(self.to_dict()))


@dataclass(frozen=True, eq=False)
class ScoreMatrix(_ConfigSet):
    """Per-sample scores in [0, 1] (not just pass/fail), for the expected-maximum-score objective.

    Attributes:
        configs: the configurations, one per row.
        problems: problem ids, one per column.
        scores: float array, shape (n_configs, n_problems, n_runs); NaN marks a run that is absent.
    """

    configs: tuple[SamplingConfig, ...]
    problems: tuple[str, ...]
    scores: np.ndarray

    def __post_init__(self) -> None:
        configs = _as_configs(self.configs)
        problems = tuple(str(p) for p in self.problems)
        try:
            scores = np.array(self.scores, dtype=float)
        except (TypeError, ValueError) as e:
            raise DataError(f"scores are not a rectangular numeric array: {e}") from None
        if scores.ndim != 3 or scores.shape[:2] != (len(configs), len(problems)):
            raise DataError(f"scores have shape {scores.shape}, expected ({len(configs)}, {len(problems)}, runs)")
        present = ~np.isnan(scores)
        if ((scores[present] < 0) | (scores[present] > 1)).any():
            raise DataError("scores must lie in [0, 1]")
        if not present.any(axis=2).all():
            i, j = map(int, np.argwhere(~present.any(axis=2))[0])
            raise DataError(f"no runs: configuration {configs[i].name!r}, problem {problems[j]!r}")
        object.__setattr__(self, "configs", configs)
        object.__setattr__(self, "problems", problems)
        object.__setattr__(self, "scores", _frozen(scores))

    @classmethod
    def from_counts(cls, counts: CountMatrix) -> ScoreMatrix:
        """Pass/fail counts as 0/1 scores (runs padded with NaN): both objectives then agree."""
        width = int(counts.runs.max())
        k = np.arange(width)
        scores = np.where(k < counts.correct[..., None], 1.0, 0.0)
        scores[k >= counts.runs[..., None]] = np.nan
        return cls(counts.configs, counts.problems, scores)


@dataclass(frozen=True)
class CountSplit:
    """The part an allocation is learned on (`train`) and the part it is judged on (`test`)."""

    train: CountMatrix
    test: CountMatrix

    def __post_init__(self) -> None:
        if self.train.names != self.test.names:
            raise DataError("train and test parts have different configurations")

    @property
    def in_sample(self) -> bool:
        """True when the test part is the training part (the OSCA release's own protocol)."""
        return set(self.train.problems) == set(self.test.problems)

    def pool(self) -> CountMatrix:
        """All problems of both parts, once each (a problem in both must have the same counts in both)."""
        extra = [j for j, p in enumerate(self.test.problems) if p not in set(self.train.problems)]
        where = {p: j for j, p in enumerate(self.train.problems)}
        for j, p in enumerate(self.test.problems):
            if p in where and not (np.array_equal(self.test.correct[:, j], self.train.correct[:, where[p]])
                                   and np.array_equal(self.test.runs[:, j], self.train.runs[:, where[p]])):
                raise DataError(f"problem {p!r} has different counts in the train and test parts")
        t = self.test.take(extra)
        return CountMatrix(self.train.configs, self.train.problems + t.problems,
                           np.hstack([self.train.correct, t.correct]), np.hstack([self.train.runs, t.runs]))


# ---------------------------------------------------------------------------------------------- file formats


class _OscaSetting(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    runs: int = Field(ge=1)


class _OscaRelease(BaseModel):
    """The format released with the OSCA paper (LeiLiLab/OSCA `swebench_agentless.json`)."""

    model_config = ConfigDict(extra="ignore")
    settings: list[_OscaSetting] = Field(min_length=1)
    training_instances: list[str | int]
    testing_instances: list[str | int]
    train: dict[str, list[int]]
    test: dict[str, list[int]]


class _OwnCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["osca.counts/v1"]
    configs: list[SamplingConfig] = Field(min_length=1)
    problems: list[str]
    correct: list[list[int]]
    runs: int | list[int] | list[list[int]]
    train: list[str] | None = None
    test: list[str] | None = None


def _integral(a: Any, what: str) -> np.ndarray:
    try:
        arr = np.array(a)
    except ValueError:
        raise DataError(f"{what} are ragged (rows of different lengths)") from None
    if arr.dtype == object:
        raise DataError(f"{what} are ragged (rows of different lengths)")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(arr == np.round(arr)):
            raise DataError(f"{what} must be whole numbers")
    return arr.astype(np.int64)


def _release_part(doc: _OscaRelease, part: Literal["train", "test"]) -> CountMatrix:
    ids = doc.training_instances if part == "train" else doc.testing_instances
    rows = getattr(doc, part)
    correct = []
    for i, s in enumerate(doc.settings):
        row = rows.get(str(i))
        if row is None:
            raise DataError(f"'{part}' has no counts for setting {i} ({s.name!r})")
        if len(row) != len(ids):
            raise DataError(f"ragged rows: '{part}'['{i}'] ({s.name!r}) has {len(row)} counts "
                            f"for {len(ids)} instances")
        correct.append(row)
    runs = [s.runs for s in doc.settings]
    return CountMatrix(tuple(s.name for s in doc.settings), tuple(map(str, ids)), correct, runs)


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "top level"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, turning a missing or malformed file into a one-line `DataError`."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: malformed JSON ({e})") from None


def load_counts(path: str | Path) -> CountSplit | CountMatrix:
    """Load a count file: the OSCA release format or osca's own (`osca.counts/v1`).

    Returns:
        A `CountSplit` when the file names train and test parts (the release format always does), else the
        single `CountMatrix` it holds.
    """
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object at the top level")
    try:
        if "settings" in raw:
            doc = _OscaRelease.model_validate(raw)
            return CountSplit(_release_part(doc, "train"), _release_part(doc, "test"))
        if raw.get("format") == COUNTS_FORMAT or "correct" in raw:
            own = _OwnCounts.model_validate(raw)
            matrix = CountMatrix(tuple(own.configs), tuple(own.problems), own.correct, own.runs)
            if own.train is None and own.test is None:
                return matrix
            where = {p: j for j, p in enumerate(matrix.problems)}
            parts = []
            for name, ids in (("train", own.train), ("test", own.test)):
                unknown = [p for p in ids or [] if p not in where]
                if ids is None or unknown:
                    raise DataError(f"split part '{name}' " + (f"names unknown problem {unknown[0]!r}"
                                                               if unknown else "is missing"))
                parts.append(matrix.take([where[p] for p in ids]))
            return CountSplit(*parts)
    except ValidationError as e:
        raise DataError(f"{path}: {_one_line(e)}") from None
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    raise DataError(f"{path}: not a count file (expected the OSCA release format or {COUNTS_FORMAT!r})")
