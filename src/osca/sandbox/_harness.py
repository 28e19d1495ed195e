"""The separated candidate, executed inside a sandbox container (stdlib only: it runs on the image's python3).

Function-level tests (HumanEval/MBPP style) import the candidate as a module. Imported into the test process,
the candidate could patch pytest, rewrite the report or return an object equal to anything (issue 12). So the
candidate runs alone, in its own process under its own uid:

    python3 -I /job/harness.py candidate <module> <fd>    (CANDIDATE_UID; source on stdin, channel on fd)

and the tests import a stand-in module of the same name (`stand_in_source`), whose functions forward each call
over a socket (its descriptor in the job's environment, OSCA_CANDIDATE_FD). Arguments, results and exceptions
cross as plain data only (None, bool, int, float, complex, str, bytes and lists, tuples, dicts, sets and
frozensets of them, by exact type); anything else is an error on the
candidate's side, so an always-equal object, a subclass with a custom `__eq__` or a live iterator never reaches
the test's comparison. Exceptions of builtin types are raised again by type name (`pytest.raises(ValueError)`
keeps working); any other is a `CandidateError`.
"""

import base64
import builtins
import json
import linecache
import os
import socket
import struct
import sys
import traceback
import types

MAX_MESSAGE = 64 << 20
MAX_DEPTH = 200


class CannotCross(TypeError):
    """A value that is not plain data was to cross between the candidate and the tests."""


_TAGGED = {tuple: "t", set: "s", frozenset: "f"}
_UNTAG = {"t": tuple, "s": set, "f": frozenset}


def encode(value, depth=0):
    """Plain data -> JSON-able tree (exact types only; JSON objects are tags, so none is ambiguous)."""
    if depth > MAX_DEPTH:
        raise CannotCross("value nested deeper than %d levels" % MAX_DEPTH)
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind in _TAGGED:
        return {_TAGGED[kind]: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"b": base64.b64encode(value).decode("ascii")}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    raise CannotCross("a %s cannot cross from the candidate's process: only plain data can" % kind.__qualname__)


def decode(tree):
    """The inverse of `encode`; anything `encode` cannot have produced is an error."""
    if tree is None or type(tree) in (bool, int, float, str):
        return tree
    if type(tree) is list:
        return [decode(v) for v in tree]
    if type(tree) is dict and len(tree) == 1:
        (tag, body), = tree.items()
        if tag in _UNTAG and type(body) is list:
            return _UNTAG[tag](decode(v) for v in body)
        if tag == "d" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
            return {decode(k): decode(v) for k, v in body}
        if tag == "b" and type(body) is str:
            return base64.b64decode(body)
        if tag == "c" and type(body) is list and len(body) == 2:
            return complex(float(body[0]), float(body[1]))
    raise CannotCross("malformed message from the candidate's process")


def send(sock, message):
    data = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv(sock):
    """One message, or None when the other side has gone."""
    header = _recv_exactly(sock, 4)
    if header is None:
        return None
    size = struct.unpack(">I", header)[0]
    if size > MAX_MESSAGE:
        raise CannotCross("message of %d bytes from the candidate's process is too large" % size)
    data = _recv_exactly(sock, size)
    return None if data is None else json.loads(data)


def _recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return data


# --- the candidate's side ---------------------------------------------------------------------------------------


def _error_message(exc):
    return {"raise": type(exc).__name__, "message": str(exc)[:2000],
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}


def _answer(module, request):
    """The reply to one request: {"ok": value} or {"raise": ...}."""
    try:
        target = getattr(module, request["name"])
        if "call" in request:
            args, kwargs = decode(request["call"])
            value = target(*args, **kwargs)
        else:
            value = target
        return {"ok": encode(value)}
    except BaseException as e:  # noqa: B036  (SystemExit, KeyboardInterrupt: the candidate's own, reported)
        return _error_message(e)


def serve_candidate(name, fd):
    """Load the candidate from stdin as module `name`, report its names, then answer requests until EOF."""
    os.nice(19)  # the tests keep the CPU they need to time out and report, even beside a fork bomb
    sys.stdout.reconfigure(line_buffering=True)  # what it prints is out before it is killed with the tests' end
    source = sys.stdin.buffer.read().decode("utf-8", "replace")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sock = socket.socket(fileno=fd)
    filename = name + ".py"
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show lines
    if recv(sock) is None:  # the tests ask for the candidate once pytest is up: a bomb at import then cannot
        return              # starve pytest's own start
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except BaseException as e:  # noqa: B036  (anything at import is the candidate failing to load)
        send(sock, {"failed": _error_message(e)})
        return
    # Callables the candidate imported (typing.List, math.sqrt) stay out: a stand-in for them would shadow the
    # tests' own imports after `from solution import *`.
    names = {n: callable(v) for n, v in vars(module).items() if not (n.startswith("__") and n.endswith("__"))
             and (not callable(v) or getattr(v, "__module__", None) == name)}
    send(sock, {"ready": names})
    while True:
        request = recv(sock)
        if request is None:
            return
        send(sock, _answer(module, request))


# --- the tests' side --------------------------------------------------------------------------------------------


class CandidateError(Exception):
    """The candidate raised a non-builtin exception, died, or returned something that cannot cross."""


def _raise(reply):
    kind = getattr(builtins, reply["raise"], None) if type(reply.get("raise")) is str else None
    message = str(reply.get("message", ""))
    detail = str(reply.get("traceback", ""))
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            error = kind(message)
        except Exception:  # an exception type whose constructor wants other arguments
            error = CandidateError("%s: %s" % (reply["raise"], message))
    else:
        error = CandidateError("%s: %s" % (reply.get("raise"), message))
    error.add_note("raised in the candidate's process:\n" + detail)
    raise error


class Channel:
    """The tests' end of the socket to the candidate's process. A call that did not get its answer (a test
    timed out while waiting) leaves the candidate busy and the channel out of step: every later call fails."""

    def __init__(self, sock):
        self.sock = sock
        self.broken = None

    def _exchange(self, request):
        if self.broken:
            raise CandidateError(self.broken)
        self.broken = "the candidate did not answer an earlier call"
        send(self.sock, request)
        reply = recv(self.sock)
        if reply is None:
            self.broken = "the candidate's process has exited"
            raise CandidateError(self.broken)
        if type(reply) is not dict:
            raise CandidateError("malformed reply from the candidate's process")
        self.broken = None
        return reply

    def ready(self):
        reply = recv(self.sock)
        if reply is None:
            raise ImportError("the candidate's process exited while loading the candidate")
        if "failed" in reply:
            failed = reply["failed"]
            raise ImportError("the candidate failed to load: %s: %s\n%s" % (
                failed.get("raise"), failed.get("message"), failed.get("traceback", "")))
        names = reply.get("ready")
        if type(names) is not dict:
            raise ImportError("malformed greeting from the candidate's process")
        return names

    def get(self, name):
        reply = self._exchange({"name": name})
        if "ok" not in reply:
            _raise(reply)
        return decode(reply["ok"])

    def call(self, name, args, kwargs):
        reply = self._exchange({"name": name, "call": encode([list(args), dict(kwargs)])})
        if "ok" not in reply:
            _raise(reply)
        return decode(reply["ok"])


def _proxy(channel, name):
    def forward(*args, **kwargs):
        return channel.call(name, args, kwargs)

    forward.__name__ = forward.__qualname__ = name
    return forward


def install_stand_in(namespace, timeout):
    """Fill the stand-in module's `namespace`: one forwarding function per callable the candidate defines, a
    copy of each plain-data value. Waits up to `timeout` seconds for the candidate to load; the `Channel`."""
    sock = socket.socket(fileno=int(os.environ["OSCA_CANDIDATE_FD"]))
    sock.settimeout(timeout)
    channel = Channel(sock)
    try:
        send(sock, {"load": True})
        names = channel.ready()
    except TimeoutError:
        sock.close()
        raise ImportError("the candidate did not finish loading within %gs" % timeout) from None
    except ImportError:
        sock.close()
        raise
    sock.settimeout(None)  # calls are bounded by the test's own timeout
    namespace["CandidateError"] = CandidateError
    for name, is_callable in names.items():
        if is_callable:
            namespace[name] = _proxy(channel, name)
        else:
            try:
                namespace[name] = channel.get(name)
            except CandidateError:
                pass  # a module, an instance: not plain data, so the tests cannot have it
    return channel


STAND_IN_NAME = "_osca_harness"
"""The name the stand-in loads this file under (the warm pool's interpreter has it loaded already)."""


def stand_in_source(timeout, harness="/job/harness.py"):
    """The text of the stand-in module the tests import in place of the candidate (`harness`: this file)."""
    return ("# Stand-in for the candidate, which runs in its own process (osca sandbox, issue 12).\n"
            "import importlib.util as _util, sys as _sys\n"
            "_harness = _sys.modules.get(%r)\n"
            "if _harness is None:\n"
            "    _spec = _util.spec_from_file_location(%r, %r)\n"
            "    _harness = _util.module_from_spec(_spec)\n"
            "    _spec.loader.exec_module(_harness)\n"
            "    del _spec\n"
            "_harness.install_stand_in(globals(), %r)\n"
            "del _util, _sys, _harness\n" % (STAND_IN_NAME, STAND_IN_NAME, harness, float(timeout)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["candidate"] and len(sys.argv) == 4:
        serve_candidate(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: harness.py candidate <module> <fd>")
