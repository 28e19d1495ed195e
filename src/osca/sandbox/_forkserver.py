"""Warm-pool job server executed inside a long-lived sandbox container (stdlib + the image's pytest).

Started as root holding only the one-shot runner's capabilities, it imports pytest and the runner once, runs
pytest on a trivial test of its own (`_warm_up`) and forks a zygote before it reads any request; then it serves
jobs read as JSON lines on stdin. Each job runs in a child the zygote forked ahead of it, so no job can find an
earlier job's data (results, sources) in its memory (issue 12). That child, before it gets its job, forks one
seed per part (the tree's builder, pytest, the candidate's process); then it reads its spec from a pipe and
runs it exactly as a one-shot container does (`runner.run_job`: each part under its own uid, output and report
over pipes), except that each part is a seed, with its modules already imported, instead of a process started
afresh (so the candidate's process never held the tests). Its result comes back over another pipe: this server
never opens a path a job controls, and no job uid can reach its descriptors or its stdout (the result channel).

After each job every process of the job uids is killed and /scratch, /tmp, /dev/shm, /dev/mqueue and the
uids' System V IPC objects are wiped, each as the uid that owns them. Stdin closing (the host is gone) ends
the server at once, and with it the container. Out: JSON lines, {"ready"} once, then per job {"started"} as
soon as the job is forked and its result fields when it is over.
"""

import contextlib
import ctypes
import fcntl
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import pytest_timeout  # noqa: F401  (imported once here: children start with it loaded)

sys.path.insert(0, "/job")
import harness  # noqa: E402  (preloaded: the candidate's process is forked, not started afresh)
import runner  # noqa: E402  (the one-shot runner: a pool job runs the same way)

sys.modules[harness.STAND_IN_NAME] = harness  # the stand-in finds it loaded instead of compiling it per job

JOB_UIDS = (runner.CANDIDATE_UID, runner.JOB_UID, runner.TREE_UID)  # wiped in this order (see _reset)
WIPE = (runner.SCRATCH, "/tmp", "/dev/shm", "/dev/mqueue")
RESULT_CAP = 16 << 20
BACKSTOP = 3.0
"""Seconds past the wall clock (when the server kills every job process) after which it also kills a job's
runner that has not reported."""
IPC_RMID = 0


class HostGone(Exception):
    """Stdin closed: the host process that owns this container is gone."""


class Lines:
    """Line reader over a descriptor that `select` can wait on (no hidden buffering)."""

    def __init__(self, fd):
        self.fd = fd
        self.buffer = b""

    def fill(self):
        """Read what is there; False at EOF."""
        chunk = os.read(self.fd, 65536)
        self.buffer += chunk
        return bool(chunk)

    def read_line(self):
        """The next line, blocking; None at EOF."""
        while b"\n" not in self.buffer:
            if not self.fill():
                return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


class _Forked:
    """The part of `subprocess.Popen` the runner uses, for a forked child."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def wait(self, timeout=None):
        if self.returncode is None:
            if timeout is not None:
                exited = os.pidfd_open(self.pid)
                try:
                    if not select.select([exited], [], [], timeout)[0]:
                        raise subprocess.TimeoutExpired("pytest", timeout)
                finally:
                    os.close(exited)
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def kill(self):
        if self.returncode is None:  # not reaped yet: the pid is still this child's
            os.kill(self.pid, signal.SIGKILL)


def _close_all_but(keep):
    """Close every descriptor of this process not in `keep`."""
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory listing's own descriptor


class _Seed:
    """A child forked ahead of its job (nothing of the job's data in its memory), still root, that becomes one part
    of the job on request: `become(message, fds, sock)` runs in it. Forked ahead, its fork is off the job's path.
    Without a request it exits once the job child is gone (its socket closes)."""

    def __init__(self, become, *inherited):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                for fd in inherited:
                    os.close(fd)
                self.sock.close()
                msg, fds, flags, _ = socket.recv_fds(theirs, 1 << 16, 8)
                if msg and not flags & socket.MSG_TRUNC:
                    become(msg, fds, theirs)
            finally:
                os._exit(0)
        theirs.close()

    def request(self, message, fds):
        """Hand the seed its part (`fds` arrive as its own descriptors); the process, as `Popen` would be."""
        socket.send_fds(self.sock, [message], fds)
        return _Forked(self.pid)


def _become_candidate(msg, fds, sock):
    """The candidate's process, set up as `runner._start_candidate` sets it up but without starting an interpreter:
    `msg` is the module's name; fds: its source (a pipe), the output, its end of the channel."""
    source_fd, out_fd, channel_fd = fds
    os.setsid()
    runner._switch(runner.CANDIDATE_UID)
    os.umask(0o077)
    os.chdir("/tmp")
    os.dup2(source_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    _close_all_but({0, 1, 2, channel_fd})
    os.environ.clear()
    os.environ.update(runner.CANDIDATE_ENV)
    harness.serve_candidate(msg.decode(), channel_fd)


def _become_tree(msg, fds, sock):
    """As TREE_UID: build and lock the job's tree from the files (JSON, name -> text) read from fds[0]; reply on
    `sock` with "!" and an error text, empty when none (as `runner._as_user` reports)."""
    error = ""
    try:
        with os.fdopen(fds[0], "rb") as f:
            files = {name: text.encode() for name, text in json.load(f).items()}
        runner._switch(runner.TREE_UID, (runner.JOB_UID,))
        runner._build_tree(files, None)
        runner._lock_tree(None, [])
    except BaseException as e:  # noqa: B036  (reported to the job child, whatever it is)
        error = "%s: %s" % (type(e).__name__, e)
    sock.send(("!" + error).encode()[:2000])


def _become_pytest(msg, fds, sock):
    """What `Popen` would set up (own session, uid, umask, cwd, the descriptors at the numbers the job's argv and
    environment name, environment), then pytest's main. msg: JSON {args, uid, groups, env, fds}; fds: the output,
    then the descriptors to pass, in the order of msg's "fds"."""
    try:
        request = json.loads(msg)
        above = max([2, *request["fds"]]) + 1  # first out of the way of every number to be taken
        out_fd, *passed = [fcntl.fcntl(fd, fcntl.F_DUPFD, above) for fd in fds]
        for fd, number in zip(passed, request["fds"]):
            os.dup2(fd, number)
        os.setsid()
        runner._switch(request["uid"], request["groups"])
        os.umask(0o007)
        os.chdir(runner.WORK)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        _close_all_but({0, 1, 2, *request["fds"]})
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["pytest", *request["args"]]
        sys.dont_write_bytecode = True  # as JOB_ENV asks (this interpreter started with -I, which ignores it)
        sys.path.insert(0, runner.WORK)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = sys.stdout
        code = pytest.main(request["args"])
        sys.stdout.flush()
        os._exit(int(code))
    finally:
        os._exit(127)


class _WarmRun(runner._Run):
    """A job run as the one-shot runner runs it, except that its parts come from seeds forked ahead of it, with
    pytest and the runner's modules loaded, instead of processes started afresh."""

    def __init__(self, spec, staged, seeds):
        super().__init__(spec, staged)
        self.seeds = seeds

    def setup(self):
        if self.spec.get("setup") or self.archive is not None or self.protect or "files" not in self.spec:
            return super().setup()  # not a plain job (the pool sends none): the one-shot way
        files_r, files_w = os.pipe()
        self.seeds["tree"].request(b"tree", [files_r])
        os.close(files_r)
        with os.fdopen(files_w, "w") as f:
            try:
                json.dump(self.spec["files"], f)
            except BrokenPipeError:
                pass  # it died first: no reply below
        reply = self.seeds["tree"].sock.recv(4096).decode("utf-8", "replace")
        return reply[1:] or None if reply else "the tree's builder ended without a reply"

    def start_candidate(self, module, source, out_fd, theirs):
        source_r, source_w = os.pipe()
        proc = self.seeds["candidate"].request(module.encode(), [source_r, out_fd, theirs.fileno()])
        os.close(source_r)
        theirs.close()
        with os.fdopen(source_w, "wb") as f:
            try:
                f.write(source.encode())  # the candidate reads all of it before anything else
            except BrokenPipeError:
                pass  # it died first: the stand-in reports that
        return proc

    def start(self, argv, uid, groups=(), env=runner.JOB_ENV, pass_fds=()):
        if argv[:3] != ["python3", "-m", "pytest"] or "pytest" not in self.seeds:
            return super().start(argv, uid, groups, env, pass_fds)
        request = {"args": argv[3:], "uid": uid, "groups": list(groups), "env": env, "fds": list(pass_fds)}
        proc = self.seeds.pop("pytest").request(json.dumps(request).encode(), [self.out_w, *pass_fds])
        self.started.append(proc)
        return proc


def _job_child(seeds, spec_fd, result_fd):
    """In a job child (root with the server's capabilities) given its descriptors: run one job, send its result."""
    with os.fdopen(spec_fd, "rb") as f:
        spec = json.load(f)
    result = runner.run_job(spec, run=_WarmRun(spec, "/job", seeds))
    with os.fdopen(result_fd, "w") as f:
        json.dump(result, f)


def _fork_job_child(zygote_sock):
    """A child forked ahead of its job, which forks its parts' seeds at once (candidate, tree, pytest); it waits
    for the job's descriptors on the returned socket and exits if that closes first. (socket, pid)."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            zygote_sock.close()
            ours.close()
            seeds = {}  # before any job data exists in this process
            for part, become in (("candidate", _become_candidate), ("tree", _become_tree),
                                 ("pytest", _become_pytest)):
                seeds[part] = _Seed(become, theirs.fileno(), *(seed.sock.fileno() for seed in seeds.values()))
            msg, fds, _, _ = socket.recv_fds(theirs, 16, 2)
            if msg:
                theirs.close()
                _job_child(seeds, *fds)
        finally:
            os._exit(0)
    theirs.close()
    return ours, pid


def _zygote(sock):
    """Hand the descriptors of each request on `sock` to a job child forked ahead of it; report its pid, then
    its end. The next child is forked as soon as one ends, while the server resets the container, so a request
    finds its child (and the child's seeds) ready. The zygote never sees job data: only descriptors pass."""
    while True:
        child, pid = _fork_job_child(sock)
        msg, fds, _, _ = socket.recv_fds(sock, 16, 2)
        if not msg:
            os._exit(0)  # the waiting child sees its socket close and exits too
        socket.send_fds(child, [b"g"], fds)
        child.close()
        for fd in fds:
            os.close(fd)
        sock.sendall(b"%d\n" % pid)
        os.waitpid(pid, 0)
        sock.sendall(b"done\n")


def _start_zygote():
    ours, theirs = socket.socketpair()
    if os.fork() == 0:
        ours.close()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # the zygote holds neither the host's stdin nor the result channel
        os.dup2(devnull, 1)
        try:
            _zygote(theirs)
        finally:
            os._exit(0)
    theirs.close()
    return ours


def _wipe():
    """Empty the writable directories and drop the System V IPC objects of the calling uid."""
    for top in WIPE:
        for root, dirs, files in os.walk(top, topdown=False):
            for name in files:
                try:
                    os.unlink(os.path.join(root, name))
                except OSError:
                    pass
            for name in dirs:
                try:
                    os.rmdir(os.path.join(root, name))
                except OSError:
                    pass
    libc = ctypes.CDLL(None, use_errno=True)
    remove = {"shm": lambda i: libc.shmctl(i, IPC_RMID, None), "sem": lambda i: libc.semctl(i, 0, IPC_RMID),
              "msg": lambda i: libc.msgctl(i, IPC_RMID, None)}
    for kind, rm in remove.items():
        for ipc_id, uid in _ipc_objects(kind):
            if uid == os.getuid():
                rm(ipc_id)


def _owners():
    """The uids owning anything in the wiped directories or an IPC object, read as root without following a
    link (no job process is alive by then to change it)."""
    owners = {uid for kind in ("shm", "sem", "msg") for _, uid in _ipc_objects(kind)}
    for top in WIPE:
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                try:
                    owners.add(os.lstat(os.path.join(root, name)).st_uid)
                except OSError:
                    pass
    return owners


def _ipc_objects(kind):
    """(id, owner uid) of each System V IPC object of `kind` (shm, sem, msg) in this IPC namespace."""
    try:
        with open("/proc/sysvipc/%s" % kind) as f:
            header, *rows = [line.split() for line in f]
    except OSError:
        return []
    key = header.index({"shm": "shmid", "sem": "semid", "msg": "msqid"}[kind])
    return [(int(r[key]), int(r[header.index("uid")])) for r in rows]


def _reset(kill):
    """Kill every job process (if `kill`: a job that reported has had them killed by its runner) and wipe what
    jobs can write, each as its uid; whether nothing is left."""
    if kill:
        runner.kill_uids(JOB_UIDS)
    owners = _owners()
    for uid in JOB_UIDS:  # the candidate's files first, the tree's directories last
        if uid in owners:  # a fork less for each uid that left nothing (under load each costs a scheduler wait)
            runner._as_user(uid, (), _wipe)
    runner._kill_by_scan(set(JOB_UIDS))  # returns once no process of theirs is left
    if any(os.listdir(top) for top in WIPE if os.path.isdir(top)):
        return False
    return not any(uid in JOB_UIDS for kind in ("shm", "sem", "msg") for _, uid in _ipc_objects(kind))


def _serve_one(spec, zygote, stdin, emit):
    spec_r, spec_w = os.pipe()
    result_r, result_w = os.pipe()
    socket.send_fds(zygote.sock, [b"g"], [spec_r, result_w])
    for fd in (spec_r, result_w):
        os.close(fd)
    start = time.monotonic()
    pid = int(zygote.read_line())
    emit({"started": True})
    with os.fdopen(spec_w, "wb") as f:
        try:
            f.write(json.dumps(spec).encode())  # the child reads it whole before anything else
        except BrokenPipeError:
            pass
    # The wall clock is held here as well as in the job's runner: under a fork bomb the runner is starved of CPU.
    deadline = start + spec["wall_clock"]
    data, timed_out, killed = b"", False, False
    while True:
        timeout = None if killed else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([0, result_r], [], [], timeout)
        if not ready and not timed_out:
            timed_out = True
            runner._kill_by_scan(set(JOB_UIDS))  # no fork needed; the runner then sees its command end
            deadline += BACKSTOP
        elif not ready:
            killed = True
            os.kill(pid, signal.SIGKILL)  # the runner did not report either: its result pipe closes with it
        if 0 in ready and not stdin.fill():
            os.kill(pid, signal.SIGKILL)
            raise HostGone()
        if result_r in ready:
            chunk = os.read(result_r, 65536)
            if not chunk:
                break
            data += chunk
            if len(data) > RESULT_CAP:
                raise RuntimeError("the job's result is larger than %d bytes" % RESULT_CAP)
    os.close(result_r)
    if zygote.read_line() is None:
        raise RuntimeError("the zygote died")
    duration = time.monotonic() - start
    clean = _reset(kill=killed or not data)
    if killed:
        return runner._result(-signal.SIGKILL, True, duration, "", None, "the job never reported", clean=clean)
    if not data:
        raise RuntimeError("the job's process ended without a result")
    result = json.loads(data)
    result["timed_out"] = result["timed_out"] or timed_out
    return dict(result, clean=clean)


class Channel(Lines):
    """The zygote's socket, read as lines."""

    def __init__(self, sock):
        super().__init__(sock.fileno())
        self.sock = sock


def _warm_up():
    """Run pytest once here, on a trivial test of our own, before the zygote is forked: every job's pytest then
    starts with its plugins imported and its caches (compiled patterns, hook signatures) filled, about half of
    what a bare `pytest.main` costs. Nothing of it reaches the host's channel or stays on disk."""
    tmp = tempfile.mkdtemp(dir="/tmp")
    with open(os.path.join(tmp, "test_warm_up.py"), "w") as f:
        f.write("def test_warm_up():\n    assert [1] == [1]\n")
    path, modules, channel = sys.path[:], set(sys.modules), os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            pytest.main(["-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1", "--timeout=10",
                         "--timeout-method=signal", "--junitxml=" + os.path.join(tmp, "report.xml"), tmp])
    finally:
        os.dup2(channel, 1)
        os.close(channel)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if (getattr(sys.modules[name], "__file__", None) or "").startswith(tmp):
                del sys.modules[name]
        shutil.rmtree(tmp)


def main():
    _warm_up()
    zygote = Channel(_start_zygote())
    out = sys.stdout

    def emit(message):
        out.write(json.dumps(message) + "\n")
        out.flush()

    emit({"ready": True})
    stdin = Lines(0)
    while (line := stdin.read_line()) is not None:
        try:
            result = _serve_one(json.loads(line), zygote, stdin, emit)
        except HostGone:
            return
        except Exception as e:  # report, don't die: the host recycles this container on an error
            result = {"error": "%s: %s" % (type(e).__name__, e)}
        emit(result)


if __name__ == "__main__":
    main()
