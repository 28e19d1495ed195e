"""Hostile candidates (issue 12): a wrong `add` (it subtracts) plus a trick to be reported `passed` anyway.

Data only, shared by the one-shot suite (test_hostile.py) and the warm pool's (test_hostile_pool.py): every case
must end non-passed, within its wall clock + 5 s, leaving no container or process behind. Each case says
what it tries; the first five are the tricks the issue reports working before it.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TESTS = """\
from solution import add


def test_small():
    assert add(1, 2) == 3


def test_negative():
    assert add(-1, -1) == -2
"""

WRONG = "\ndef add(a, b):\n    return a - b\n"

FORGED_TESTS = {"test_solution.py::test_small": "passed", "test_solution.py::test_negative": "passed"}
FORGED_RESULT = json.dumps({"exit_code": 0, "signal": None, "timed_out": False, "duration": 0.1, "output": "",
                            "tests": FORGED_TESTS, "report_error": None, "setup_error": None})
FORGED_REPORT = ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="2">'
                 '<testcase classname="test_solution" file="test_solution.py" name="test_small"/>'
                 '<testcase classname="test_solution" file="test_solution.py" name="test_negative"/>'
                 '</testsuite></testsuites>')
TRIVIAL_TESTS = "def test_small():\n    pass\n\n\ndef test_negative():\n    pass\n"

# Helpers the tricks share, pasted at the top of a case's source.
_PROCS = '''
import os, re, signal, sys

def _pids():
    return [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]

def _read(path, mode="rb"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return b"" if "b" in mode else ""

def _pytest_argv():
    """pytest's command line, from whichever process runs it (this one, in the in-process mode)."""
    for pid in ["self"] + _pids():
        argv = [a.decode() for a in _read("/proc/%s/cmdline" % pid).split(b"\\0") if a]
        if "pytest" in argv:
            return pid, argv
    return None, []

def _rerun_pytest(pid, argv):
    """Exec pytest again with its own arguments, in its own directory."""
    if argv:
        try:
            os.chdir(os.readlink("/proc/%s/cwd" % pid))
        except OSError:
            pass
        os.execv(sys.executable, [sys.executable, "-m"] + argv[argv.index("pytest"):])
'''


@dataclass(frozen=True)
class Case:
    """A hostile candidate and how to verify it."""

    name: str
    tries: str
    """What the candidate attempts, in a few words."""
    solution: str
    tests: str = DEFAULT_TESTS
    timeout: float = 5.0
    """Seconds per test."""
    wall_clock: float | None = None
    """Seconds for the whole run (None: the verifier's default from `timeout` and the number of tests)."""
    verifier_kwargs: dict[str, Any] = field(default_factory=dict)


def _case(name: str, tries: str, trick: str, *, wrong: bool = True, **kw: Any) -> Case:
    source = _PROCS + textwrap.dedent(trick) + (WRONG if wrong else "")
    return Case(name, tries, source, **kw)


CASES: list[Case] = [
    # --- the five tricks of the issue -------------------------------------------------------------------------
    _case("nonce_from_pid1_environ", "read the runner's nonce from /proc/*/environ, print a forged result line "
          "to PID 1's (and every process's) stdout, SIGKILL everything", f'''
        nonce = ""
        for pid in ["1"] + _pids():
            for kv in _read("/proc/%s/environ" % pid).split(b"\\0"):
                if kv.startswith(b"OSCA_NONCE="):
                    nonce = kv.split(b"=", 1)[1].decode()
        line = "OSCA-RESULT %s %s\\n" % (nonce, {FORGED_RESULT!r})
        for pid in ["1"] + _pids():
            try:
                with open("/proc/%s/fd/1" % pid, "w") as out:
                    out.write(line)
            except OSError:
                pass
        print(line, flush=True)
        os.kill(-1, signal.SIGKILL)
        '''),
    _case("rewrite_junit_at_exit", "find the JUnit path on pytest's argv and keep rewriting it with all-pass XML; "
          "at exit, once more, and exit 0", f'''
        import atexit, threading, time

        def _forge():
            pid, argv = _pytest_argv()
            for a in argv:
                if a.startswith("--junitxml="):
                    path = a.split("=", 1)[1].replace("/proc/self/", "/proc/%s/" % pid)
                    try:
                        with open(path, "w") as f:
                            f.write({FORGED_REPORT!r})
                    except OSError:
                        pass

        def _keep_forging():
            for _ in range(400):
                _forge()
                time.sleep(0.02)

        def _forge_and_succeed():
            _forge()
            os._exit(0)

        atexit.register(_forge_and_succeed)
        threading.Thread(target=_keep_forging, daemon=True).start()
        '''),
    _case("pytest_runtest_noop", "patch pytest at import so that no test body runs", '''
        import _pytest.python
        _pytest.python.Function.runtest = lambda self: None
        '''),
    _case("rewrite_tests_and_reexec", "overwrite the test file with trivial same-named tests and exec pytest again "
          "with the same arguments", f'''
        pid, argv = _pytest_argv()
        cwd = os.readlink("/proc/%s/cwd" % pid) if pid else os.getcwd()
        for place in {{cwd, os.getcwd(), "/scratch/work", "/scratch", "/job/work"}}:
            try:
                with open(os.path.join(place, "test_solution.py"), "w") as f:
                    f.write({TRIVIAL_TESTS!r})
            except OSError:
                pass
        _rerun_pytest(pid, argv)
        '''),
    Case(
        "always_equal_object", "return an object equal to everything",
        "class _Equal:\n    def __eq__(self, other):\n        return True\n\n    def __ne__(self, other):\n"
        "        return False\n\n\ndef add(a, b):\n    return _Equal()\n"),
    # --- more of the same families ----------------------------------------------------------------------------
    Case("int_subclass_equal", "return an int subclass whose __eq__ is always true",
         "class _Int(int):\n    def __eq__(self, other):\n        return True\n\n    __hash__ = int.__hash__\n\n\n"
         "def add(a, b):\n    return _Int(a - b)\n"),
    Case("mock_any", "return unittest.mock.ANY (equal to everything)",
         "from unittest import mock\n\n\ndef add(a, b):\n    return mock.ANY\n"),
    Case("generator_result", "return a generator instead of a number", "def add(a, b):\n    yield a + b\n"),
    Case("deep_nesting", "return a structure too deep to compare or send",
         "def add(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x\n"),
    _case("neuter_test_functions", "walk the garbage collector and replace every test function's code", '''
        import gc, threading, time, types

        def _neuter():
            for _ in range(200):
                for o in gc.get_objects():
                    if isinstance(o, types.FunctionType) and o.__name__.startswith("test_"):
                        o.__code__ = (lambda: None).__code__
                time.sleep(0.01)

        threading.Thread(target=_neuter, daemon=True).start()
        '''),
    _case("write_report_to_every_fd", "write an all-pass report to every open descriptor, then exit 0", f'''
        for fd in range(3, 64):
            try:
                os.write(fd, {FORGED_REPORT!r}.encode())
            except OSError:
                pass
        os._exit(0)
        '''),
    _case("conftest_and_reexec", "drop a conftest.py that skips test bodies and a pytest.ini, then rerun pytest",
          '''
        CONFTEST = "import pytest\\n\\n@pytest.hookimpl(tryfirst=True)\\ndef pytest_runtest_call(item):\\n    item.runtest = lambda: None\\n"
        pid, argv = _pytest_argv()
        cwd = os.readlink("/proc/%s/cwd" % pid) if pid else os.getcwd()
        for place in {cwd, os.getcwd(), "/scratch/work", "/scratch", "/tmp"}:
            for name, text in (("conftest.py", CONFTEST), ("pytest.ini", "[pytest]\\naddopts = -p no:timeout\\n")):
                try:
                    with open(os.path.join(place, name), "w") as f:
                        f.write(text)
                except OSError:
                    pass
        _rerun_pytest(pid, argv)
        '''),
    _case("usercustomize_and_reexec", "install a usercustomize module that patches pytest, then rerun pytest", '''
        import site
        PATCH = "import _pytest.python\\n_pytest.python.Function.runtest = lambda self: None\\n"
        for home in {os.path.expanduser("~"), "/scratch", "/scratch/tmp", "/tmp"}:
            target = os.path.join(home, ".local/lib/python%d.%d/site-packages" % sys.version_info[:2])
            try:
                os.makedirs(target, exist_ok=True)
                with open(os.path.join(target, "usercustomize.py"), "w") as f:
                    f.write(PATCH)
            except OSError:
                pass
        _rerun_pytest(*_pytest_argv())
        '''),
    _case("read_tests_for_answers", "read the tests and answer each call with the expected value written there",
          '''
        import ast
        _ANSWERS = {}
        for path in ["/job/work/test_solution.py", "/scratch/work/test_solution.py", "test_solution.py"] + [
                "/proc/%s/cwd/test_solution.py" % p for p in _pids()]:
            for m in re.finditer(r"add\\(([^()]*)\\) == (.+)", _read(path, "r")):
                _ANSWERS[m.group(1).replace(" ", "")] = ast.literal_eval(m.group(2).strip())

        def add(a, b):
            key = "%r,%r" % (a, b)
            return _ANSWERS[key.replace(" ", "")] if key.replace(" ", "") in _ANSWERS else a - b
        ''', wrong=False),
    _case("ptrace_the_harness", "write into pytest's memory and descriptors through /proc", f'''
        pid, argv = _pytest_argv()
        if pid and pid != "self":
            for fd in os.listdir("/proc/%s/fd" % pid) if os.access("/proc/%s/fd" % pid, os.R_OK) else []:
                try:
                    with open("/proc/%s/fd/%s" % (pid, fd), "w") as f:
                        f.write({FORGED_REPORT!r})
                except OSError:
                    pass
            try:
                open("/proc/%s/mem" % pid, "r+b").close()
                print("opened pytest's memory", flush=True)
            except OSError:
                pass
        '''),
    # --- exits, kills and signals -----------------------------------------------------------------------------
    Case("exit_zero_at_import", "exit 0 before any test runs", "import os\nos._exit(0)\n"),
    Case("sys_exit_in_call", "raise SystemExit(0) from inside the function",
         "import sys\n\n\ndef add(a, b):\n    sys.exit(0)\n"),
    _case("kill_every_process", "SIGKILL every process it may signal", "os.kill(-1, signal.SIGKILL)\n"),
    _case("kill_the_caller", "SIGKILL its parent and pytest's process from inside the call", '''
        def add(a, b):
            pid, _ = _pytest_argv()
            for target in {os.getppid(), int(pid) if pid and pid != "self" else os.getpid()}:
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            return a - b
        ''', wrong=False),
    Case("forged_line_on_stdout", "print a result line with a guessed nonce and exit",
         f"import os, sys\nprint('OSCA-RESULT  ' + {FORGED_RESULT!r})\nprint('OSCA-RESULT 0 ' + {FORGED_RESULT!r})\n"
         "sys.stdout.flush()\nos._exit(0)\n"),
    Case("skip_from_inside", "call pytest.skip from inside the function",
         "import pytest\n\n\ndef add(a, b):\n    pytest.skip('not today')\n"),
    Case("xfail_from_inside", "call pytest.xfail from inside the function",
         "import pytest\n\n\ndef add(a, b):\n    pytest.xfail('expected')\n"),
    _case("daemon_forges_later", "leave a daemon that keeps writing forged result lines and reports", f'''
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import time
                line = "OSCA-RESULT  " + {FORGED_RESULT!r} + "\\n"
                for _ in range(300):
                    for pid in ["1"] + _pids():
                        for fd in ("1", "2"):
                            try:
                                with open("/proc/%s/fd/%s" % (pid, fd), "w") as out:
                                    out.write(line)
                            except OSError:
                                pass
                    time.sleep(0.1)
            os._exit(0)
        '''),
    # --- time and resources -----------------------------------------------------------------------------------
    Case("loop_at_import", "loop forever while being imported", "while True:\n    pass\n"),
    Case("fork_bomb_at_import", "fork without end while being imported",
         "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"),
    Case("thread_bomb_at_import", "start threads without end while being imported",
         "import threading, time\nwhile True:\n    try:\n        threading.Thread(target=time.sleep, args=(3600,), "
         "daemon=True).start()\n    except RuntimeError:\n        pass\n"),
    Case("sigalrm_ignored_loop", "ignore SIGALRM (pytest-timeout's signal) and loop in the call",
         "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n\n\ndef add(a, b):\n"
         "    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    while True:\n        pass\n"),
    Case("sleep_forever_in_call", "block in the call without using CPU",
         "import time\n\n\ndef add(a, b):\n    time.sleep(3600)\n"),
    Case("memory_bomb_in_call", "allocate 2 GiB in the call",
         "def add(a, b):\n    block = bytearray(2 * 1024 ** 3)\n    return a - b\n"),
    Case("output_flood", "print 50 MB, then answer wrongly",
         "import sys\nfor _ in range(50):\n    sys.stdout.write('x' * (1 << 20))\n" + WRONG),
    Case("terminal_escapes", "print escape sequences (clear screen, OSC 52 clipboard, title) for the user's "
         "terminal", "import sys\nsys.stdout.write('\\x1b[2J\\x1b[H\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b]0;pwned\\x07')\n"
         "sys.stderr.write('\\x1b[31mred\\x1b[0m\\x9b2J')\n" + WRONG),
    Case("close_stdio", "close its stdout and stderr, then answer wrongly", "import os\nos.close(1)\nos.close(2)\n"
         + WRONG),
]

assert len({c.name for c in CASES}) == len(CASES) >= 25
