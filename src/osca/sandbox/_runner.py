"""Job runner executed inside a sandbox container (stdlib only: it runs on the image's python3).

Started as root holding only CAP_SETUID, CAP_SETGID, CAP_KILL and CAP_DAC_READ_SEARCH (to read the host's
0600 staging files), it never runs job code itself. Each part of a job runs under its own uid (issue 12):

    TREE_UID       builds the tree /scratch/work: files, the archive, the setup steps (e.g. `git apply`), then
                   locks it: `protect` paths are restored from the archive, read-only and undeletable to the
                   job; the rest is writable by group JOB_UID and closed to everyone else
    JOB_UID        runs the command (pytest) in the tree
    CANDIDATE_UID  runs the `candidate` module alone (see harness.py); the job imports a stand-in

The command's output and its JUnit report come back over pipes (`{report}` is `/proc/self/fd/N`), never
through a file the job could rewrite after the fact. One wall clock covers it all; then every process of the
three uids is killed, by a `kill(-1)` as each uid (a root one would also end the container's guard; past a
fork bomb that leaves no pid for that, by a root scan of /proc), and one
line `OSCA-RESULT <nonce> <json>` goes to stdout. The nonce is in this process's environment only; the runner
removes it and makes itself non-dumpable, and no job uid can read root's /proc entries or write its stdout.

Started as any other uid (an environment image that runs tests in place as its own user), the runner cannot
switch uids: every part then runs as that uid, and only the separate candidate process remains (see README).
"""

import ctypes
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET

SCRATCH = "/scratch"
WORK = os.path.join(SCRATCH, "work")
JOB_TMP = os.path.join(SCRATCH, "tmp")
TAIL = 4000
REPORT_CAP = 8 << 20
TREE_UID, JOB_UID, CANDIDATE_UID = 1000, 1001, 1002
# The whole environment of a job (here and in the warm pool's forkserver).
JOB_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": "/tmp"}
CANDIDATE_ENV = {**JOB_ENV, "HOME": "/tmp", "TMPDIR": "/tmp"}
_TAR_FILTER = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}  # Python >= 3.11.4


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


def _read_junit(source):
    """(tests, report error) from a JUnit report: a path or a binary file object."""
    try:
        root = ET.parse(source).getroot()
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


def _result(code, timed_out, duration, output, tests, report_error, **extra):
    """The result fields of one job (`code` as a wait status: negative for a signal), then `extra`."""
    result = {"exit_code": code if code >= 0 else None, "signal": -code if code < 0 else None,
              "timed_out": timed_out, "duration": duration, "output": output, "tests": tests,
              "report_error": report_error}
    result.update(extra)
    return result


class _Drain:
    """Reads a pipe to its end in a thread, keeping the first `cap` bytes (`keep="head"`) or the last."""

    def __init__(self, fd, cap, keep):
        self.data = bytearray()
        self.overflow = False
        self._thread = threading.Thread(target=self._read, args=(fd, cap, keep), daemon=True)
        self._thread.start()

    def _read(self, fd, cap, keep):
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                self.data += chunk
                if len(self.data) > cap:
                    self.overflow = True
                    if keep == "head":
                        del self.data[cap:]
                    else:
                        del self.data[:len(self.data) - cap]

    def join(self, timeout):
        self._thread.join(timeout)
        return bytes(self.data)


def _can_switch():
    """Whether this process may change uids: root with CAP_SETUID and CAP_SETGID in its effective set."""
    try:
        with open("/proc/self/status") as f:
            caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return False
    return os.getuid() == 0 and bool(caps & (1 << 6)) and bool(caps & (1 << 7))  # CAP_SETGID 6, CAP_SETUID 7


SWITCH = _can_switch()


def _switch(uid, groups=()):
    """Become `uid` (also its gid) with supplementary `groups`; a no-op where the runner cannot switch."""
    if SWITCH:
        os.setgroups(list(groups))
        os.setgid(uid)
        os.setuid(uid)


def _as_user(uid, groups, work):
    """Run `work()` in a forked child as `uid`; the error text it raised, or None."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        status = 0
        try:
            _switch(uid, groups)
            work()
        except BaseException as e:  # noqa: B036  (reported to the parent, whatever it is)
            os.write(w, ("%s: %s" % (type(e).__name__, e)).encode()[:2000])
            status = 1
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        message = pipe.read().decode("utf-8", "replace")
    os.waitpid(pid, 0)
    return message or None


def kill_uid(uid):
    """SIGKILL every process of `uid` (one `kill(-1)` as that uid: it cannot miss a process forked meanwhile)."""
    _as_user(uid, (), _kill_all)


def _kill_all():
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def _alive(uids):
    """{pid: uid} of the live (not zombie) processes of `uids`, read from /proc as root."""
    pids = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:  # /proc/<pid>/status, not the directory's owner: a non-dumpable process's belongs to root
            with open("/proc/%s/status" % pid) as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            uid = int(status["Uid"].split()[0])
            if status["State"].split()[0] != "Z" and uid in uids:
                pids[int(pid)] = uid
        except (OSError, KeyError, ValueError):
            pass  # gone meanwhile
    return pids


def _kill_by_scan(uids):
    """SIGKILL every process of `uids` found in /proc, until none is left (no fork needed: root holds CAP_KILL)."""
    for _ in range(1000):
        pids = _alive(uids)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # gone meanwhile
        time.sleep(0.01)


def kill_uids(uids):
    """SIGKILL every process of `uids`: one `kill(-1)` as each uid that has one (none can start a process of a
    uid that has none: only the runner does), or, where no pid is left to fork that killer (a fork bomb at the
    pids limit), a /proc scan as root."""
    uids = set(uids)
    try:
        for uid in set(_alive(uids).values()):
            kill_uid(uid)
    except OSError:
        _kill_by_scan(uids)


def _end(uids, started):
    """Kill every process of `uids`; where the runner cannot switch uids, the sessions it `started` (a process
    that left its session then survives: the weaker setup the module docstring names)."""
    if SWITCH:
        kill_uids(uids)
        return
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def _popen_user(uid, groups):
    """`subprocess.Popen` keyword arguments that start a process as `uid` (when the runner is root)."""
    return {"user": uid, "group": uid, "extra_groups": list(groups)} if SWITCH else {}


def _read_staged(root):
    """Relative path -> bytes of every file under the host's staging directory `root` (read as root)."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def _build_tree(files, archive):
    """As TREE_UID: the job's directories, its files and the archive's members (umask 007: no access for
    anyone outside group JOB_UID, so never for the candidate's uid)."""
    os.umask(0o007)
    for path in (WORK, JOB_TMP):
        os.mkdir(path, 0o2770)
    for name, data in files.items():
        target = os.path.join(WORK, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    if archive is not None:
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:  # made by the host from a trusted snapshot
            tar.extractall(WORK, **_TAR_FILTER)


def _real_parents(path):
    """Make every directory above `path` (relative to WORK) a real directory: a setup step may have left a
    symlink there, and a restored file must land inside the locked tree."""
    parent = WORK
    for part in path.split("/")[:-1]:
        parent = os.path.join(parent, part)
        if os.path.islink(parent) or (os.path.lexists(parent) and not os.path.isdir(parent)):
            os.unlink(parent)
        os.makedirs(parent, exist_ok=True)


def _lock_tree(archive, protect):
    """As TREE_UID after the setup steps: restore each `protect` path from the archive (or remove it where
    the archive has none), then give the tree to group JOB_UID: protected files read-only in sticky
    directories (the job can neither change, remove nor replace them), everything else writable."""
    os.umask(0o007)
    members = {}
    if archive is not None and protect:
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            for path in protect:
                target = os.path.join(WORK, path)
                _real_parents(path)
                if os.path.lexists(target) and not os.path.isdir(target):
                    os.unlink(target)
                if path in members and members[path].isfile():
                    tar.extract(members[path], WORK, **_TAR_FILTER)
    protected = {os.path.join(WORK, p) for p in protect}
    sticky = {os.path.dirname(p) for p in protected}
    shared = JOB_UID in os.getgroups()  # False where the runner could not switch uids: one uid does it all
    for dirpath, _, names in os.walk(WORK):
        for path in [os.path.join(dirpath, n) for n in names] + [dirpath]:
            if os.path.islink(path):
                continue
            if shared:
                os.chown(path, -1, JOB_UID)
            if os.path.isdir(path):
                os.chmod(path, 0o3770 if path in sticky else 0o2770)
            elif path in protected:
                os.chmod(path, 0o440)
            else:
                os.chmod(path, 0o770 if os.stat(path).st_mode & 0o100 else 0o660)


def _start_candidate(module, source, out_fd, theirs):
    """The candidate's process (CANDIDATE_UID, alone in its session), given its end of the channel."""
    proc = subprocess.Popen(["python3", "-I", "/job/harness.py", "candidate", module, str(theirs.fileno())],
                            stdin=subprocess.PIPE, stdout=out_fd, stderr=out_fd, cwd="/tmp", env=CANDIDATE_ENV,
                            pass_fds=(theirs.fileno(),), start_new_session=True, umask=0o077,
                            **_popen_user(CANDIDATE_UID, ()))
    theirs.close()

    def feed():
        try:
            proc.stdin.write(source.encode())
            proc.stdin.close()
        except OSError:
            pass  # it died before reading its source: the stand-in reports that

    threading.Thread(target=feed, daemon=True).start()
    return proc


def _wait(proc, deadline):
    """(exit status, timed out) of `proc` by the deadline; past it, the caller kills every job process."""
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic())), False
    except subprocess.TimeoutExpired:
        return None, True


class _Run:
    """One job's state while the runner works through it (see the module docstring)."""

    def __init__(self, spec, staged):
        self.spec = spec
        work = os.path.join(staged, "work")
        if "files" in spec:  # inline (the warm pool's requests)
            self.files = {name: text.encode() for name, text in spec["files"].items()}
        else:
            self.files = _read_staged(work) if os.path.isdir(work) else {}
        archive = os.path.join(staged, "work.tar")
        self.archive = open(archive, "rb") if os.path.exists(archive) else None  # opened as root
        self.protect = [p for p in spec.get("protect", []) if not os.path.isabs(p) and ".." not in p.split("/")]
        self.deadline = time.monotonic() + spec["wall_clock"]
        self.started = []
        out_r, self.out_w = os.pipe()
        self.output = _Drain(out_r, spec.get("output_tail", TAIL), keep="tail")
        self.report = None

    def start(self, argv, uid, groups=(), env=JOB_ENV, pass_fds=()):
        proc = subprocess.Popen(argv, cwd=WORK, stdout=self.out_w, stderr=self.out_w, stdin=subprocess.DEVNULL,
                                env=env, pass_fds=pass_fds, start_new_session=True, umask=0o007,
                                **_popen_user(uid, groups))
        self.started.append(proc)
        return proc

    def setup(self):
        """Build the tree, run the setup steps and lock the tree, as TREE_UID; an error text or None."""
        groups, steps = (JOB_UID,), self.spec.get("setup", [])
        if not steps:  # one process for both (each costs a fork)
            return _as_user(TREE_UID, groups, lambda: (_build_tree(self.files, self.archive),
                                                        _lock_tree(self.archive, self.protect)))
        error = _as_user(TREE_UID, groups, lambda: _build_tree(self.files, self.archive))
        for step in steps if error is None else ():
            code, timed_out = _wait(self.start(step, TREE_UID, groups), self.deadline)
            if code != 0:
                _end([TREE_UID], self.started)
                return "%s exited %s" % (" ".join(step), "on the wall clock" if timed_out else code)
        return error or _as_user(TREE_UID, groups, lambda: _lock_tree(self.archive, self.protect))

    def start_candidate(self, module, source, out_fd, theirs):
        """The candidate's process (`_start_candidate`; the warm pool forks a preloaded one instead)."""
        return _start_candidate(module, source, out_fd, theirs)

    def command(self):
        """Start the candidate (if any) and the command as JOB_UID; (exit status, timed out)."""
        spec = self.spec
        pass_fds, env = [], dict(JOB_ENV, HOME=JOB_TMP, TMPDIR=JOB_TMP)
        report_w = channel = None
        if spec.get("junit"):
            report_r, report_w = os.pipe()
            os.fchmod(report_w, 0o622)  # the job reopens it as `{report}`; no other process can reach its fds
            self.report = _Drain(report_r, REPORT_CAP, keep="head")
            pass_fds.append(report_w)
        report = "/proc/self/fd/%d" % report_w if report_w is not None else ""
        argv = [a.replace("{report}", report) for a in spec["argv"]]
        if spec.get("candidate") is not None:
            channel, theirs = socket.socketpair()
            pass_fds.append(channel.fileno())
            env["OSCA_CANDIDATE_FD"] = str(channel.fileno())
        candidate = None
        try:  # the tests first: a candidate that forks without end at import must not keep them from starting
            proc = self.start(argv, JOB_UID, env=env, pass_fds=pass_fds)
            if channel is not None:
                candidate = self.start_candidate(spec.get("candidate_module", "solution"), spec["candidate"],
                                                 self.out_w, theirs)
                self.started.append(candidate)
        except OSError as e:
            os.write(self.out_w, ("cannot start %s: %s\n" % (argv[0], e)).encode())
            return 127, False
        finally:
            if report_w is not None:
                os.close(report_w)
            if channel is not None:  # the processes hold their ends now
                channel.close()
                theirs.close()
        code, timed_out = _wait(proc, self.deadline)
        if timed_out:
            _end([JOB_UID, CANDIDATE_UID], self.started)
            code = proc.wait()
        elif candidate is not None:  # our own child: killed and reaped here, it needs no forked killer in `_end`
            candidate.kill()
            candidate.wait()
        return code, timed_out

    def tests(self):
        """(tests, report error) from what came over the report pipe."""
        if self.report is None:
            return None, None
        data = self.report.join(5)
        if self.report.overflow:
            return None, "report larger than %d bytes" % REPORT_CAP
        return _read_junit(io.BytesIO(data)) if data else (None, "no report written")


def run_job(spec, staged="/job", run=None):
    """Run one job (the fields of `Job`, as in job.json) and return its result fields (see module docstring).
    `run`: a `_Run` of `spec` to use instead (the warm pool's starts pytest from its preloaded interpreter)."""
    run = run or _Run(spec, staged)
    start = time.monotonic()
    code, timed_out = 0, False
    setup_error = run.setup()
    if setup_error is None:
        code, timed_out = run.command()
    duration = time.monotonic() - start
    _end([CANDIDATE_UID, JOB_UID, TREE_UID], run.started)
    os.close(run.out_w)
    output = run.output.join(5).decode("utf-8", "replace")
    tests, report_error = run.tests() if setup_error is None else (None, None)
    return _result(code, timed_out, duration, output, tests, report_error, setup_error=setup_error)


def main():
    nonce = os.environ.pop("OSCA_NONCE", "")
    _undumpable()
    with open("/job/job.json") as f:
        spec = json.load(f)
    result = run_job(spec)
    sys.stdout.write("OSCA-RESULT %s %s\n" % (nonce, json.dumps(result)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
