"""A persistent, sample-indexed cache of candidates (SQLite).

Keyed by (call site, configuration, sample index, request hash): a re-run returns the same candidates without
calling the model, a larger budget reuses the cached samples and draws only the new indices, and re-selection
with another verifier costs no LLM call. (LiteLLM's own cache would collapse repeated samples of one request
into a single answer, which is exactly what repeated sampling must not do.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["SampleCache", "request_hash"]


def request_hash(request: dict[str, Any]) -> str:
    """sha256 of the request's canonical JSON (keys sorted; values that are not JSON by their repr)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=repr).encode()).hexdigest()


class SampleCache:
    """`SampleCache("runs/cache.sqlite")` or `SampleCache(":memory:")`; a context manager, thread-safe."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS samples (
            call_site TEXT, config TEXT, idx INTEGER, request TEXT, value TEXT,
            PRIMARY KEY (call_site, config, idx, request))""")
        self._lock = threading.Lock()

    def get(self, call_site: str, config: str, index: int, request: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM samples WHERE call_site=? AND config=? AND idx=? AND request=?",
                                   (call_site, config, index, request)).fetchone()
        return None if row is None else json.loads(row[0])

    def set(self, call_site: str, config: str, index: int, request: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?)",
                             (call_site, config, index, request, json.dumps(value)))

    async def aget(self, call_site: str, config: str, index: int, request: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get, call_site, config, index, request)

    async def aset(self, call_site: str, config: str, index: int, request: str, value: dict[str, Any]) -> None:
        await asyncio.to_thread(self.set, call_site, config, index, request, value)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SampleCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
