"""Job runner executed inside a sandbox container (stdlib only: it runs on the image's python3).

Reads /job/job.json, copies /job/work (and unpacks /job/work.tar) to the scratch tmpfs, runs the job's setup
steps and then its command there, each in its own session, under one wall clock (killing the whole process
group when it runs out), optionally reads a JUnit XML report,
and prints one line `OSCA-RESULT <nonce> <json>` on stdout. The nonce comes from the host through the
environment; the runner removes it before starting the job and makes itself non-dumpable, so code under test
can neither read it from /proc nor forge a result line.
"""

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

SCRATCH = "/scratch"
TAIL = 4000
# The whole environment of a job (here and in the warm pool's forkserver).
JOB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": "/tmp"}


def _undumpable():
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4: /proc/<pid>/environ, mem become private
    except (OSError, AttributeError):
        pass


def _outcome(case):
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        node = case.find(tag)
        if node is not None:
            text = (node.get("message") or "") + (node.text or "")
            if outcome == "error" and (node.get("message") or "").startswith("collection failure"):
                return "collection_error"
            if outcome != "skipped" and ("Timeout >" in text or "Timeout (>" in text):  # pytest-timeout < / >= 2.4
                return "timeout"
            return outcome
    return "passed"


def _test_id(case):
    """pytest's node id from an xunit1 testcase: file::Class::name (or file::name)."""
    path = case.get("file") or ""
    classname = case.get("classname") or ""
    module = path[:-3].replace("/", ".") if path.endswith(".py") else ""
    inner = classname[len(module) + 1:] if module and classname.startswith(module + ".") else ""
    parts = [path] + ([p for p in inner.split(".") if p]) + [case.get("name") or ""]
    return "::".join(p for p in parts if p) if path else "<collection>::" + (case.get("name") or "")


def _read_junit(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return None, "report unreadable: %s" % e
    tests = {}
    for case in root.iter("testcase"):
        test_id = _test_id(case)
        outcome = _outcome(case)
        # A test can appear twice (call failed and teardown errored): keep the worst.
        if tests.get(test_id) in (None, "passed", "skipped"):
            tests[test_id] = outcome
    return tests, None


def _report(path):
    """(tests, report error) from the JUnit report the job was asked to write at `path`."""
    if os.path.exists(path):
        return _read_junit(path)
    return None, "no report written"


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _run(argv, work, out, env, deadline):
    """Run one command in its own session until it exits or the deadline passes; (exit code, timed out)."""
    proc = subprocess.Popen(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic())), False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(), True


def _result(code, timed_out, duration, output, tests, report_error, **extra):
    """The result fields of one job (`code` as a wait status: negative for a signal), then `extra`."""
    result = {"exit_code": code if code >= 0 else None, "signal": -code if code < 0 else None,
              "timed_out": timed_out, "duration": duration, "output": output, "tests": tests,
              "report_error": report_error}
    result.update(extra)
    return result


def main():
    nonce = os.environ.pop("OSCA_NONCE", "")
    _undumpable()
    with open("/job/job.json") as f:
        spec = json.load(f)
    work = os.path.join(SCRATCH, "work")
    shutil.copytree("/job/work", work)
    if os.path.exists("/job/work.tar"):
        with tarfile.open("/job/work.tar") as tar:  # made by the host from a trusted snapshot
            tar.extractall(work)
    out_path = os.path.join(SCRATCH, ".osca-out-" + os.urandom(8).hex())
    junit = spec.get("junit")
    report_path = os.path.join(SCRATCH, ".osca-report-" + os.urandom(8).hex() + ".xml") if junit else None
    argv = [a.replace("{report}", report_path or "") for a in spec["argv"]]
    start = time.monotonic()
    deadline = start + spec["wall_clock"]
    setup_error = None
    with open(out_path, "wb") as out:
        for step in spec.get("setup", []):
            code, timed_out = _run(step, work, out, JOB_ENV, deadline)
            if code != 0 or timed_out:
                setup_error = "%s exited %s" % (" ".join(step), "on the wall clock" if timed_out else code)
                break
        else:
            code, timed_out = _run(argv, work, out, JOB_ENV, deadline)
    duration = time.monotonic() - start
    try:
        os.kill(-1, signal.SIGKILL)  # whatever the job left behind, in any session (never the runner itself)
    except OSError:
        pass
    tests, report_error = (None, None)
    if report_path is not None and setup_error is None:
        tests, report_error = _report(report_path)
    result = _result(code, timed_out, duration, _tail(out_path), tests, report_error, setup_error=setup_error)
    sys.stdout.write("OSCA-RESULT %s %s\n" % (nonce, json.dumps(result)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
