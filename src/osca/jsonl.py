"""Append-only JSON-lines logs that survive a crash: every record is on disk before the next, and a record
torn by a crash mid-write is cut off before writing resumes. Public, so that applications built on osca (the
Agentless run directory) keep their logs the same way."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["append_record", "read_lines", "split_lines", "whole_lines"]


def whole_lines(path: Path) -> None:
    """Make `path` end at a line break: a last record missing only its newline gets one, a torn one (not valid
    JSON) is cut off, so the next record starts on a line of its own. A missing file is left alone."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    with path.open("r+b") as f:
        try:
            json.loads(data[start:].decode("utf-8", errors="replace"))
        except ValueError:
            f.truncate(start)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")


def split_lines(path: Path) -> tuple[list[str], str | None]:
    """The complete lines of a JSON-lines file, and its last line when that one has no line break (maybe torn)."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    # a crash can split a multi-byte character: only the tail may fail to decode
    lines = data[:cut].decode("utf-8").split("\n")[:-1]
    return lines, data[cut:].decode("utf-8", errors="replace") or None


def read_lines(path: Path) -> list[str]:
    """The records' lines of a log, read as they stand: a torn last line (no line break, not valid JSON, left by
    a crash mid-write) is left out, a whole one missing only its line break is kept."""
    lines, tail = split_lines(path)
    if tail is not None:
        try:
            json.loads(tail)
        except ValueError:
            return lines
        lines.append(tail)
    return lines


def append_record(f: IO[str], record: Any) -> None:
    """Write one JSON line to an open log, flushed and fsynced."""
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())
