"""The separated candidate's channel without Docker: what crosses (plain data, by exact type), what does not, and
how a call's outcome reaches the tests (a real candidate process on the host, talking over a socketpair)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from unittest import mock

import pytest

from osca.sandbox import _harness
from osca.sandbox._harness import CandidateError, CannotCross, decode, encode

PLAIN = [None, True, 0, -7, 2**80, 1.5, float("inf"), "", "é\n", b"\x00\xff", 1 + 2j, [1, [2]], (1, (2, "x")), (),
         {1: "a", (2, 3): [4], "k": {5: None}}, {1, 2}, frozenset({"a"}), {"nested": ({1}, [b"x"])}]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_data_crosses_unchanged(value: object) -> None:
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


class Equal:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class Int(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [Equal(), Int(3), [Int(3)], {"k": Equal()}, mock.ANY, (x for x in [1]), len,
                                   object(), bytearray(b"x"), range(3)], ids=lambda v: type(v).__name__)
def test_anything_else_cannot_cross(value: object) -> None:
    with pytest.raises(CannotCross, match="only plain data"):
        encode(value)


def test_nesting_is_bounded() -> None:
    deep: list[object] = []
    for _ in range(_harness.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(CannotCross, match="deeper"):
        encode(deep)


@pytest.mark.parametrize("tree", [{"x": 1}, {"t": 1}, {"d": [[1]]}, {"b": 3}, {"c": [1]}, {"t": [], "s": []}])
def test_malformed_messages_are_refused(tree: object) -> None:
    with pytest.raises(CannotCross, match="malformed"):
        decode(tree)


@pytest.fixture
def candidate() -> Iterator[object]:
    """`start(source)` -> the tests' namespace of a stand-in for `source`, served by a real candidate process."""
    procs: list[subprocess.Popen[bytes]] = []
    channels: list[_harness.Channel] = []

    def start(source: str, timeout: float = 10) -> dict[str, object]:
        theirs, ours = socket.socketpair()
        with theirs:  # closed here once the candidate holds it, so its death reads as EOF
            proc = subprocess.Popen([sys.executable, "-I", _harness.__file__, "candidate", "solution",
                                     str(theirs.fileno())], stdin=subprocess.PIPE, pass_fds=[theirs.fileno()])
        procs.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(source.encode())
        proc.stdin.close()
        namespace: dict[str, object] = {}
        os.environ["OSCA_CANDIDATE_FD"] = str(ours.detach())  # the stand-in's socket owns it from here
        try:
            channels.append(_harness.install_stand_in(namespace, timeout))
        finally:
            del os.environ["OSCA_CANDIDATE_FD"]
        return namespace

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
    for channel in channels:
        channel.sock.close()


def test_calls_values_and_builtin_exceptions_reach_the_tests(candidate) -> None:
    ns = candidate("from math import sqrt\nLIMIT = (1, 2)\n_hidden = 3\n\n"
                   "def div(a, b):\n    return a / b\n\n"
                   "def fail():\n    raise KeyError('k')\n\n"
                   "class Custom(Exception):\n    pass\n\n"
                   "def custom():\n    raise Custom('mine')\n")
    assert ns["div"](6, b=3) == 2.0
    assert ns["LIMIT"] == (1, 2) and ns["_hidden"] == 3
    assert "sqrt" not in ns  # imported by the candidate: no stand-in shadowing the tests' own imports
    with pytest.raises(ZeroDivisionError):
        ns["div"](1, 0)
    with pytest.raises(KeyError):
        ns["fail"]()
    with pytest.raises(CandidateError, match="Custom: mine"):
        ns["custom"]()


def test_a_result_that_cannot_cross_is_an_error_in_the_test(candidate) -> None:
    ns = candidate("class E:\n    def __eq__(self, other):\n        return True\n\ndef f():\n    return E()\n")
    with pytest.raises(CandidateError, match="CannotCross: a E cannot cross"):
        ns["f"]()


def test_a_candidate_that_dies_fails_this_call_and_every_later_one(candidate) -> None:
    ns = candidate("import os\n\ndef die():\n    os._exit(0)\n\ndef ok():\n    return 1\n")
    with pytest.raises(CandidateError, match="exited"):
        ns["die"]()
    with pytest.raises(CandidateError, match="exited"):
        ns["ok"]()


@pytest.mark.parametrize(("source", "timeout", "message"), [
    ("raise SystemExit(0)\n", 30, "failed to load: SystemExit"),
    ("import os\nos._exit(0)\n", 30, "exited while loading"),
    ("import time\ntime.sleep(60)\n", 0.5, "within 0.5s")])
def test_a_candidate_that_does_not_load_is_an_import_error(candidate, source: str, timeout: float,
                                                           message: str) -> None:
    with pytest.raises(ImportError, match=message):
        candidate(source, timeout=timeout)
