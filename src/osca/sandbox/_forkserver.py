"""Warm-pool job server executed inside a long-lived sandbox container (stdlib + the image's pytest).

Started as root holding only CAP_SETUID, CAP_SETGID and CAP_KILL, it imports pytest once, then serves jobs
read as JSON lines on stdin. Each job runs in a forked child that drops to uid/gid 1001 (no capabilities
left), works in /scratch (a tmpfs owned by uid 1001), and has stdout/stderr on a file and every other descriptor closed, so job code
cannot reach the result channel (this server's stdout; its /proc entries belong to root). After each job a
uid-1001 helper kills every uid-1001 process and empties /scratch and /tmp. Results go out as JSON lines.
"""

import json
import os
import signal
import sys
import time

import pytest  # noqa: F401  (imported once here: children start with it loaded)
import pytest_timeout  # noqa: F401

sys.path.insert(0, "/job")
from runner import JOB_ENV, _report, _result, _tail  # noqa: E402  (shared with the one-shot runner)

JOB_UID = 1001
WORK = "/scratch"  # a tmpfs owned by uid 1001 (mode 0755: this server may read what jobs leave there)
WIPE = (WORK, "/tmp")


def _as_job_user():
    os.setgroups([])
    os.setgid(JOB_UID)
    os.setuid(JOB_UID)


def _run_child(spec, report_path, out_path):
    _as_job_user()
    os.umask(0o022)
    os.chdir(WORK)
    for name, text in spec["files"].items():
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        with open(name, "w") as f:
            f.write(text)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # the server reads it back
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.closerange(3, 65536)
    os.setsid()
    os.environ.clear()
    os.environ.update(JOB_ENV)  # HOME is /scratch, the same directory as WORK
    argv = [a.replace("{report}", report_path) for a in spec["argv"]]
    if argv[:3] == ["python3", "-m", "pytest"]:
        sys.argv = ["pytest", *argv[3:]]
        sys.path.insert(0, WORK)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = sys.stdout
        code = pytest.main(argv[3:])
        sys.stdout.flush()
        os._exit(int(code))
    os.execvp(argv[0], argv)


def _reset():
    """Kill every job process and empty the job directory, as the job user (who owns all of it)."""
    pid = os.fork()
    if pid == 0:
        try:
            _as_job_user()
            try:
                os.kill(-1, signal.SIGKILL)  # every uid-1001 process but this one
            except OSError:
                pass
            for top in WIPE:
                for root, dirs, files in os.walk(top, topdown=False):
                    for name in files:
                        try:
                            os.unlink(os.path.join(root, name))
                        except OSError:
                            pass
                    for name in dirs:
                        path = os.path.join(root, name)
                        try:
                            os.chmod(path, 0o700)
                            os.rmdir(path)
                        except OSError:
                            pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return not any(os.listdir(top) for top in WIPE)


def _serve_one(spec):
    tag = os.urandom(8).hex()
    report_path = os.path.join(WORK, ".osca-report-%s.xml" % tag)
    out_path = os.path.join(WORK, ".osca-out-%s" % tag)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            _run_child(spec, report_path, out_path)
        finally:
            os._exit(127)
    deadline = start + spec["wall_clock"]
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    duration = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    tests, report_error = _report(report_path) if spec.get("junit") else (None, None)
    output = _tail(out_path)
    clean = _reset()
    return _result(code, timed_out, duration, output, tests, report_error, clean=clean)


def main():
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            result = _serve_one(json.loads(line))
        except Exception as e:  # report, don't die: the host recycles this container on an error
            result = {"error": "%s: %s" % (type(e).__name__, e)}
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
