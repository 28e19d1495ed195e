"""Allocations: how many samples each sampling configuration gets, and their JSON files."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .counts import read_json
from .exceptions import ConfigError, DataError

__all__ = ["Allocation"]


class Allocation(Mapping[str, int]):
    """An immutable mapping configuration name -> number of samples (zeros omitted).

    Example:
        >>> a = Allocation({"gpt4o_0.8": 3, "qwen_1.2": 1})
        >>> a.total, a["qwen_1.2"], a.get("deepseek_1.6", 0)
        (4, 1, 0)
    """

    __slots__ = ("_samples",)

    def __init__(self, samples: Mapping[str, int]) -> None:
        clean: dict[str, int] = {}
        for name, k in samples.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise DataError(f"allocation for {name!r} must be a whole number >= 0, got {k!r}")
            if k:
                clean[str(name)] = int(k)
        self._samples = clean

    @classmethod
    def from_vector(cls, names: Sequence[str], x: np.ndarray) -> Allocation:
        return cls({n: int(k) for n, k in zip(names, np.asarray(x).round().astype(int))})

    def vector(self, names: Sequence[str]) -> np.ndarray:
        """Samples per configuration in the order of `names`, shape (len(names),); unknown names are an error."""
        unknown = set(self._samples) - set(names)
        if unknown:
            raise ConfigError(f"allocation names unknown configuration {sorted(unknown)[0]!r}")
        return np.array([self._samples.get(n, 0) for n in names], dtype=np.int64)

    @property
    def total(self) -> int:
        return sum(self._samples.values())

    def __getitem__(self, name: str) -> int:
        return self._samples[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        return f"Allocation({self._samples!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    __hash__ = None  # type: ignore[assignment]

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write `{"allocation": {...}, **extra}` (the learner adds budget, objective and bound)."""
        Path(path).write_text(json.dumps({**extra, "allocation": dict(self._samples)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Allocation:
        """Read an allocation file written by `save` / `osca learn` (or a bare `{"name": samples}` object)."""
        raw = read_json(path)
        body = raw.get("allocation", raw) if isinstance(raw, dict) else raw
        if not isinstance(body, dict):
            raise DataError(f"{path}: expected an object mapping configuration names to sample counts")
        try:
            return cls(body)
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
