"""A persistent, sample-indexed cache of candidates (SQLite), safe to share between processes.

Keyed by (call site, configuration, sample index, request hash): a re-run returns the same candidates without
calling the model, a larger budget reuses the cached samples and draws only the new indices, and re-selection
with another verifier costs no LLM call. (LiteLLM's own cache would collapse repeated samples of one request
into a single answer, which is exactly what repeated sampling must not do.)

Several processes may share one cache file and still pay once per key (issue 11): before drawing a sample a
caller `claim`s its key. The claim returns the stored value when there is one, waits while another caller holds
the key (polling), and otherwise hands the key to this caller, who draws the sample and `put`s it. The first value
stored under a key wins; `put` returns the stored one, so every process goes on with the same answer.

A cache file that is corrupt, truncated or locked for longer than `timeout` never costs paid samples: the
operation degrades (a miss, an unstored value) and a `CacheWarning` says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CacheWarning", "SampleCache", "request_hash"]

T = TypeVar("T")
Key = tuple[str, str, int, str]
_WHERE = "call_site=? AND config=? AND idx=? AND request=?"
_HOST = socket.gethostname()
_HIT, _MINE, _WAIT = "hit", "mine", "wait"


class CacheWarning(UserWarning):
    """The sample cache could not be read or written; the samples were still drawn and returned."""


def request_hash(request: dict[str, Any]) -> str:
    """sha256 of the request's canonical JSON (keys sorted; values that are not JSON by their repr)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=repr).encode()).hexdigest()


def _alive(host: str, pid: int) -> bool:
    """Whether a claim's owner may still be running (one on another host is assumed to be, until its lease ends)."""
    if host != _HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class SampleCache:
    """`SampleCache("runs/cache.sqlite")` or `SampleCache(":memory:")`; a context manager, thread-safe.

    Args:
        path: the SQLite file (parent folders are created), or ":memory:".
        timeout: seconds an operation waits for another process's write lock before it degrades.
        lease: seconds a claim holds a key against other callers (a draw slower than that may be paid twice;
            the first value stored still wins); a claim whose process died on this host is taken over at once.
        poll: longest pause between two looks at a key another caller holds.
    """

    def __init__(self, path: str | Path = ":memory:", *, timeout: float = 5.0, lease: float = 600.0,
                 poll: float = 0.2) -> None:
        self.path = str(path)
        self.lease = lease
        self.poll = poll
        self._owner = uuid.uuid4().hex  # this object's claims, as other processes see them
        self._held: dict[Key, float] = {}  # key -> lease end, of keys this object's callers are drawing
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._broken = False
        try:
            if self.path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; two commits per sample are cheap
            with self._transaction():
                self._db.execute("""CREATE TABLE IF NOT EXISTS samples (
                    call_site TEXT, config TEXT, idx INTEGER, request TEXT, value TEXT,
                    PRIMARY KEY (call_site, config, idx, request))""")
                self._db.execute("""CREATE TABLE IF NOT EXISTS claims (
                    call_site TEXT, config TEXT, idx INTEGER, request TEXT, owner TEXT, host TEXT, pid INTEGER,
                    expires REAL, PRIMARY KEY (call_site, config, idx, request))""")
        except (sqlite3.Error, OSError) as e:
            self._degrade(e, "this run does not use it")
            self._broken = True

    # ------------------------------------------------------------------------------------------ plumbing

    def _degrade(self, error: BaseException, consequence: str) -> None:
        """One warning per distinct problem: a cache that fails on every key would otherwise flood the log."""
        message = (f"sample cache {self.path}: {type(error).__name__}: {error}; {consequence} (the samples are "
                   f"still drawn and returned; move the file away if it stays unreadable)")
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, CacheWarning, stacklevel=3)

    def _guarded(self, op: Callable[[], T], fallback: T, consequence: str) -> T:
        """`op()` under the lock; a SQLite failure degrades to `fallback` with a warning."""
        if self._broken:
            return fallback
        try:
            with self._lock:
                return op()
        except sqlite3.Error as e:
            locked = isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e))
            self._broken = self._broken or not locked  # a lock passes; a damaged file stays damaged
            self._degrade(e, consequence)
            return fallback

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction taken up front, so that a look at a key and the claim on it are one step."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _stored(self, key: Key) -> dict[str, Any] | None:
        row = self._db.execute(f"SELECT value FROM samples WHERE {_WHERE}", key).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            value = None
        return value if isinstance(value, dict) else None  # a damaged row is a miss; `put` replaces it

    def _try_claim(self, key: Key) -> tuple[str, dict[str, Any] | None]:
        """One look at `key`: (_HIT, value), (_WAIT, None) while another caller holds it, or (_MINE, None)."""
        value = self._stored(key)  # a hit needs no write lock (a replay reads every key)
        if value is not None:
            return _HIT, value
        with self._transaction():
            value = self._stored(key)  # stored since the first look?
            if value is not None:
                return _HIT, value
            if self._held.get(key, 0.0) > time.time():  # another caller of this object draws it
                return _WAIT, None
            row = self._db.execute(f"SELECT owner, host, pid, expires FROM claims WHERE {_WHERE}", key).fetchone()
            if row is not None and row[0] != self._owner and row[3] > time.time() and _alive(row[1], row[2]):
                return _WAIT, None
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (*key, self._owner, _HOST, os.getpid(), time.time() + self.lease))
            self._held[key] = time.time() + self.lease
            return _MINE, None

    def _claim_step(self, key: Key) -> tuple[str, dict[str, Any] | None]:
        return self._guarded(lambda: self._try_claim(key), (_MINE, None), "this sample is drawn without the cache")

    def _pause(self, tries: int) -> float:
        return min(self.poll, 0.01 * 2 ** tries)

    def _put(self, key: Key, value: dict[str, Any]) -> dict[str, Any]:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):  # the caller's error, raised; the key must not stay claimed meanwhile
            self._release(key)
            raise
        with self._transaction():
            stored = self._stored(key)
            if stored is None:
                self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?)", (*key, text))
            self._release(key)
        return value if stored is None else stored

    def _release(self, key: Key) -> None:
        self._db.execute(f"DELETE FROM claims WHERE {_WHERE} AND owner=?", (*key, self._owner))

    # ------------------------------------------------------------------------------------------ sync API

    def get(self, call_site: str, config: str, index: int, request: str) -> dict[str, Any] | None:
        """The stored value, or None (also when the cache cannot be read)."""
        key = (call_site, config, index, request)
        return self._guarded(lambda: self._stored(key), None, "it is read as a miss")

    def claim(self, call_site: str, config: str, index: int, request: str) -> dict[str, Any] | None:
        """The stored value (waiting while another caller draws it), or None: the key is now this caller's to
        draw and then `put` (or `release` when the draw fails)."""
        key = (call_site, config, index, request)
        tries = 0
        while True:
            state, value = self._claim_step(key)
            if state != _WAIT:
                return value
            time.sleep(self._pause(tries))
            tries += 1

    def put(self, call_site: str, config: str, index: int, request: str, value: dict[str, Any]) -> dict[str, Any]:
        """Store `value` unless the key has one already, and drop this caller's claim.

        Returns:
            The stored value: `value`, or the one another caller stored first (go on with that one).
        """
        key = (call_site, config, index, request)
        try:
            return self._guarded(lambda: self._put(key, value), value, "this sample is not stored")
        finally:
            self._held.pop(key, None)

    def release(self, call_site: str, config: str, index: int, request: str) -> None:
        """Give up a claim without a value (the draw failed), so a waiting caller draws the key itself."""
        key = (call_site, config, index, request)
        self._held.pop(key, None)
        self._guarded(lambda: self._release(key), None, "another process may wait for this claim's lease")

    def discard(self, call_site: str, config: str, index: int, request: str) -> None:
        """Drop a stored value the caller found unusable (e.g. written by an older osca)."""
        key = (call_site, config, index, request)
        self._guarded(lambda: self._db.execute(f"DELETE FROM samples WHERE {_WHERE}", key), None,
                      "the unusable value stays")

    # ------------------------------------------------------------------------------------------ async twins

    async def aget(self, call_site: str, config: str, index: int, request: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get, call_site, config, index, request)

    async def aclaim(self, call_site: str, config: str, index: int, request: str) -> dict[str, Any] | None:
        """Async twin of `claim`; its waiting is an `asyncio.sleep`, so a deadline can cancel it."""
        key = (call_site, config, index, request)
        tries = 0
        while True:
            step = asyncio.ensure_future(asyncio.to_thread(self._claim_step, key))
            try:
                state, value = await asyncio.shield(step)
            except asyncio.CancelledError:  # the look goes on in its thread: a claim it wins goes back
                step.add_done_callback(lambda done: self._give_back(key, done))
                raise
            if state != _WAIT:
                return value
            await asyncio.sleep(self._pause(tries))
            tries += 1

    def _give_back(self, key: Key, step: asyncio.Future) -> None:
        """Release a claim won for a caller that was cancelled meanwhile: others would wait on it for nothing."""
        if not step.cancelled() and step.exception() is None and step.result()[0] == _MINE:
            self.release(*key)

    async def aput(self, call_site: str, config: str, index: int, request: str,
                   value: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.put, call_site, config, index, request, value)

    async def arelease(self, call_site: str, config: str, index: int, request: str) -> None:
        await asyncio.to_thread(self.release, call_site, config, index, request)

    async def adiscard(self, call_site: str, config: str, index: int, request: str) -> None:
        await asyncio.to_thread(self.discard, call_site, config, index, request)

    # ------------------------------------------------------------------------------------------ lifetime

    def __len__(self) -> int:
        return self._guarded(lambda: self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0], 0,
                             "it counts as empty")

    def close(self) -> None:
        if hasattr(self, "_db"):
            self._db.close()

    def __enter__(self) -> SampleCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
