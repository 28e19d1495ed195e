"""Hardened, throw-away Docker containers that run one job each.

Every container: no network, read-only root with small tmpfs scratch, job code under uids 1000-1002 (a root
runner holding only `_RUNNER_CAPS` starts each part; see `_runner.py`), all other capabilities dropped,
no-new-privileges, memory (= memory + swap), CPU and pids limits, file-size and open-file ulimits, capped
logs, an init process, and labels naming its owner (`owner_labels`). Timeouts in three layers: the job's own
(e.g. pytest-timeout per test), the runner's wall clock inside the container (kills the job's process group),
and the container's own deadline: its main process (`_guard.py`) exits when the host process is gone (stdin
closed) or the deadline passes, which ends the container, and Docker removes it (auto_remove). The host also
kills it after `wall_clock + host_grace`. Containers of owners that died without cleaning up (SIGKILL, a CI
timeout) are removed by `reap_orphans`, which each sandbox runs on first use and `osca sandbox prune` runs on
demand (testcontainers' reaper pattern).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import secrets
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..exceptions import SandboxError
from .image import docker_client, ensure_image, image_tag

__all__ = ["LABEL", "OWNER_PID", "DockerSandbox", "Job", "JobResult", "Limits", "Sandbox", "hardening",
           "owner_labels", "reap_orphans"]

LABEL = "osca.sandbox"
OWNER_PID, OWNER_START, OWNER_BOOT, OWNER_HOST = "osca.owner.pid", "osca.owner.start", "osca.owner.boot", \
    "osca.owner.host"
_RUNNER = Path(__file__).with_name("_runner.py")
_GUARD = Path(__file__).with_name("_guard.py")
_HARNESS = Path(__file__).with_name("_harness.py")
_RUNNER_CAPS = ("SETUID", "SETGID", "KILL", "DAC_READ_SEARCH")
"""All the root runner holds: to run each part of a job under its own uid, kill them, and read the host's
0600 staging files (see _runner.py). Job code never holds a capability."""
_MAX_LOG = 1 << 20
_GUARD_GRACE = 3.0
"""Seconds past the job's wall clock after which a one-shot container ends itself (the runner's own report
and exit normally come well before)."""


class Limits(BaseModel):
    """Resource limits of one sandbox container."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory: str = "512m"
    """Memory limit; swap is capped to the same value, so there is no swap."""
    cpus: float = Field(default=1.0, gt=0)
    """CPU quota in cores."""
    pids: int = Field(default=128, ge=8)
    """Most processes and threads at once (fork bombs stop here)."""
    file_size: int = Field(default=64 << 20, gt=0)
    """Largest file a job may write, bytes (RLIMIT_FSIZE)."""
    open_files: int = Field(default=256, ge=16)
    """Most open file descriptors (RLIMIT_NOFILE)."""
    scratch: str = "64m"
    """Size of the writable tmpfs at /scratch (the job's working directory lives there)."""
    host_grace: float = Field(default=5.0, gt=0)
    """Seconds the host waits beyond the job's wall clock before it kills the container (a backstop: the
    container ends itself sooner, see the module docstring)."""


class Job(BaseModel):
    """A command to run in the sandbox over a few files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    files: dict[str, str]
    """Relative path -> text, copied into the job's working directory."""
    argv: list[str] = Field(min_length=1)
    """The command, run in the working directory; `{report}` is replaced by the JUnit report's path."""
    wall_clock: float = Field(default=60.0, gt=0)
    """Seconds before the runner kills the job's whole process group."""
    junit: bool = False
    """Read a JUnit XML report written to `{report}` and return per-test outcomes."""
    setup: list[list[str]] = Field(default_factory=list)
    """Commands run first, in order (e.g. applying a patch); the first that fails ends the job."""
    archive: bytes | None = None
    """A tar archive (a repository snapshot made by the host) unpacked into the working directory."""
    output_tail: int = Field(default=4000, ge=0, le=1 << 19)
    """How many bytes of the end of the job's output come back (a whole test log needs more than the default)."""
    candidate: str | None = None
    """Source of a module run apart from the job, in its own process under its own uid; `files` should hold
    the stand-in the job imports in its place (`osca.sandbox._harness.stand_in_source`)."""
    candidate_module: str = Field(default="solution", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The name the candidate module is loaded under."""
    protect: list[str] = Field(default_factory=list)
    """Paths in the working directory restored from `archive` after the setup steps (removed where the archive
    has none) and read-only to the job: it can neither change, remove nor replace them."""


class JobResult(BaseModel):
    """What happened to a job. `runner_ok` False means the runner's own result never arrived."""

    runner_ok: bool
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    host_killed: bool = False
    oom_killed: bool = False
    duration: float = 0.0
    output: str = ""
    tests: dict[str, str] | None = None
    report_error: str | None = None
    setup_error: str | None = None


@runtime_checkable
class Sandbox(Protocol):
    """Where jobs run: `DockerSandbox` (a fresh container each) or `SandboxPool` (warm containers)."""

    def run(self, job: Job) -> JobResult: ...

    async def arun(self, job: Job) -> JobResult: ...


def _escapes(p: PurePosixPath) -> bool:
    """Whether `p` may lead outside the directory it is taken relative to (absolute, or through `..`)."""
    return p.is_absolute() or ".." in p.parts


def _checked_path(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if _escapes(p) or not p.parts:
        raise SandboxError(f"job file path {name!r} must be relative and stay inside the job directory")
    return p


def _start_ticks(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22); "" where unknown.

    With the pid it names one process for good: a pid reused after its owner died has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def owner_labels(pid: int | None = None) -> dict[str, str]:
    """Labels naming the process that owns a container (default: this one): pid, its start time, boot id, host."""
    pid = os.getpid() if pid is None else pid
    return {LABEL: "1", OWNER_PID: str(pid), OWNER_START: _start_ticks(pid), OWNER_BOOT: _boot_id(),
            OWNER_HOST: socket.gethostname()}


def _owner_dead(labels: dict[str, str]) -> bool:
    """Whether the owner a container's labels name is surely gone. Containers of another machine (another
    hostname on a shared engine) and those without owner labels are never judged dead."""
    if OWNER_PID not in labels or labels.get(OWNER_HOST) != socket.gethostname():
        return False
    if labels.get(OWNER_BOOT) != _boot_id():
        return True  # this machine rebooted since
    pid = int(labels[OWNER_PID])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return _start_ticks(pid) != labels.get(OWNER_START)


def reap_orphans(client: Any) -> list[str]:
    """Remove every osca container whose owner process is dead (see `owner_labels`); their names."""
    import docker.errors

    removed = []
    # sparse: the listing alone, no inspect per container (one that removes itself meanwhile would be a 404)
    for container in client.containers.list(all=True, sparse=True, filters={"label": LABEL}):
        if _owner_dead(container.attrs.get("Labels") or {}):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass  # it removed itself meanwhile (auto_remove)
            removed.append((container.attrs.get("Names") or [container.id])[0].lstrip("/"))
    return removed


class _Attached:
    """A container's stdin and its stdout/stderr frames, attached before it starts.

    A thread reads the frames (docker-py's `frames_iter`) so that a read can time out; it ends when the
    container's output closes.
    """

    def __init__(self, client: Any, container: Any) -> None:
        from docker.utils.socket import frames_iter

        self._io = client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                                   "stream": 1})
        self._sock: socket.socket = self._io._sock
        self._frames: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._stdout = b""
        self.ended = False

        def pump() -> None:
            try:
                for frame in frames_iter(self._sock, tty=False):
                    self._frames.put(frame)
            except (OSError, ValueError):
                pass  # closed under us: the same as the end of the output
            finally:
                self._frames.put(None)

        self._pump = threading.Thread(target=pump, name=f"osca-attach-{container.short_id}", daemon=True)
        self._pump.start()

    def send(self, message: dict[str, Any]) -> None:
        self._sock.sendall(json.dumps(message).encode() + b"\n")

    def _next(self, deadline: float) -> tuple[int, bytes] | None:
        """The next (stream, bytes) frame; None at the end of the output; TimeoutError at `deadline`."""
        if self.ended:
            return None
        try:
            frame = self._frames.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("no output from the container before the deadline") from None
        self.ended = frame is None
        return frame

    def read_line(self, timeout: float) -> str:
        """The next line on stdout (stderr is dropped); ConnectionError if the output ends first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._stdout:
            frame = self._next(deadline)
            if frame is None:
                raise ConnectionError("the container closed its output")
            if frame[0] == 1:
                self._stdout += frame[1]
        line, _, self._stdout = self._stdout.partition(b"\n")
        return line.decode("utf-8", "replace")

    def read_all(self, timeout: float, limit: int = _MAX_LOG) -> str:
        """stdout and stderr as they came until the output ends (its last `limit` bytes); TimeoutError first."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        while (frame := self._next(deadline)) is not None:
            data += frame[1]
            del data[:-limit]
        return data.decode("utf-8", "replace")

    def close(self) -> None:
        """Close stdin and the stream (the container's main process sees EOF and ends the container)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # also wakes the reading thread
        except OSError:
            pass
        self._pump.join(timeout=10)  # before the descriptor is closed and its number reused
        self._sock.close()
        self._io.close()


class DockerSandbox:
    """Runs each `Job` in a fresh hardened container (see the module docstring).

    Example:
        >>> with DockerSandbox() as box:
        ...     box.run(Job(files={"a.py": "print(1)"}, argv=["python3", "a.py"])).output
        '1\\n'
    """

    def __init__(self, *, image: str | None = None, limits: Limits | None = None, client: Any = None,
                 network: bool = False, writable_root: bool = False, user: str | None = None) -> None:
        """`network`, `writable_root` and `user` loosen the hardening for environment images whose tests run in
        place (SWE-bench's /testbed, owned by `user`) or need the network: each is an explicit opt-in. With
        `user` None the runner starts as root holding only `_RUNNER_CAPS` and runs each part of a job under its
        own uid; with a `uid:gid` every part runs as that user (a weaker setup, see README)."""
        self._client = client
        self._own_client = client is None
        self.image = image
        self.limits = limits or Limits()
        self.network, self.writable_root, self.user = network, writable_root, user
        self._default_image: str | None = None
        self._reaped = False

    @property
    def client(self) -> Any:
        """The Docker client; the first use also removes the containers of dead owners (`reap_orphans`)."""
        if self._client is None:
            self._client = docker_client()
        if not self._reaped:
            reap_orphans(self._client)
            self._reaped = True
        return self._client

    def _image(self) -> str:
        """`image`, else this recipe's `image_tag()`, hashed once per sandbox rather than once per job."""
        if self.image:
            return self.image
        if self._default_image is None:
            self._default_image = image_tag()
        return self._default_image

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def run(self, job: Job) -> JobResult:
        """Run `job` in a new container and remove it; sandbox failures raise `SandboxError`."""
        import docker.errors

        client = self.client
        image = ensure_image(client, self._image())  # still checks that the image is there, each job
        nonce = secrets.token_hex(16)
        staging = Path(tempfile.mkdtemp(prefix="osca-job-"))
        container = stream = None
        host_killed = False
        try:
            self._stage(staging, job)
            if self.user is not None:  # one uid runs every part (see __init__), reading the inputs itself
                for p in [staging, *staging.rglob("*")]:
                    p.chmod(0o755 if p.is_dir() else 0o644)
            container = client.containers.create(image, command=["python3", "-I", "/job/guard.py"],
                                                 **self._hardening(staging))
            stream = _Attached(client, container)
            container.start()
            # The nonce travels on stdin: it is in no environment a job could read (issue 12).
            stream.send({"nonce": nonce, "deadline": job.wall_clock + _GUARD_GRACE})
            try:
                logs = stream.read_all(timeout=job.wall_clock + self.limits.host_grace)
            except TimeoutError:
                host_killed = True
                logs = ""
        except docker.errors.DockerException as e:
            raise SandboxError(f"sandbox container failed: {e}") from e
        finally:
            if stream is not None:
                stream.close()
            if container is not None:
                _remove(container)
            shutil.rmtree(staging, ignore_errors=True)
        return _parse_result(logs, nonce, host_killed=host_killed)

    async def arun(self, job: Job) -> JobResult:
        """`run` without blocking the event loop (the docker SDK is synchronous)."""
        return await asyncio.to_thread(self.run, job)

    def _hardening(self, staging: Path) -> dict[str, Any]:
        if self.user is None:  # /scratch belongs to the runner's tree uid, 1000 (see _runner.py)
            options = hardening(self.limits, staging, user="0:0", cap_add=_RUNNER_CAPS,
                                scratch_owner="uid=1000,gid=1000,mode=0755")
        else:
            uid, _, gid = self.user.partition(":")
            options = hardening(self.limits, staging, user=self.user,
                                scratch_owner=f"uid={uid},gid={gid or uid},mode=0700")
        if self.network:
            options["network_mode"] = "bridge"
        if self.writable_root:
            options["read_only"] = False
        return options

    @staticmethod
    def _stage(staging: Path, job: Job) -> None:
        work = staging / "work"
        work.mkdir()
        for name, text in job.files.items():
            target = work / _checked_path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (staging / "job.json").write_text(json.dumps(job.model_dump(mode="json", exclude={"files", "archive"})))
        if job.archive is not None:
            (staging / "work.tar").write_bytes(job.archive)
        _stage_scripts(staging, _GUARD)
        # The job's inputs (tests included) are for the root runner only, never for a job uid (issue 12).
        for p in [work, *work.rglob("*")]:
            p.chmod(0o700 if p.is_dir() else 0o600)
        for name in ("job.json", "work.tar"):
            if (staging / name).exists():
                (staging / name).chmod(0o600)


def _remove(container: Any) -> None:
    """Remove `container` (killing it if it runs), or wait for the auto-removal Docker already has under way:
    either way it is gone when this returns (or 30 s have passed)."""
    import docker.errors
    import requests.exceptions

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return  # it ended and removed itself
    except docker.errors.APIError as e:
        if e.status_code != 409:  # 409: its removal is already under way
            raise
        try:
            container.wait(condition="removed", timeout=30)
        except (docker.errors.NotFound, requests.exceptions.RequestException):
            pass  # gone before the wait began, or still going after 30 s: nothing more to do here


def _stage_scripts(staging: Path, *extra: Path) -> None:
    """Copy the runner, the harness and `extra` scripts into `staging` (each named without its leading `_`),
    then make all of `staging` readable by the container's user (directories 0755, files 0644)."""
    for script in (_RUNNER, _HARNESS, *extra):
        shutil.copy(script, staging / script.name.removeprefix("_"))
    for p in [staging, *staging.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def hardening(limits: Limits, staging: Path, *, user: str = "1000:1000", cap_add: tuple[str, ...] = (),
              scratch_owner: str = "uid=1000,gid=1000,mode=0700") -> dict[str, Any]:
    """`containers.create` keyword arguments shared by one-shot and pool containers (module docstring).

    stdin stays open until the host's attached stream closes (StdinOnce, which docker-py sets only when
    `detach` is False; `create` starts nothing either way): the container's main process reads EOF when its
    host is gone. The container is removed by Docker when it exits.
    """
    from docker.types import LogConfig, Mount, Ulimit

    return dict(
        # The image's WORKDIR is /scratch and Docker resets its mode to root 0755: ownership is set by uid/gid.
        user=user, working_dir="/job", network_mode="none", read_only=True,
        tmpfs={"/scratch": f"size={limits.scratch},{scratch_owner}", "/tmp": "size=16m,mode=1777"},
        mounts=[Mount("/job", str(staging), type="bind", read_only=True)],
        cap_drop=["ALL"], cap_add=list(cap_add) or None, security_opt=["no-new-privileges"], init=True,
        mem_limit=limits.memory, memswap_limit=limits.memory, nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids,
        ulimits=[Ulimit(name="fsize", soft=limits.file_size, hard=limits.file_size),
                 Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files)],
        log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        labels=owner_labels(), stdin_open=True, detach=False, auto_remove=True)


def _parse_result(logs: str, nonce: str, *, host_killed: bool) -> JobResult:
    marker = f"OSCA-RESULT {nonce} "
    for line in reversed(logs.splitlines()):
        if line.startswith(marker):
            try:
                fields = json.loads(line[len(marker):])
                return JobResult(runner_ok=True, host_killed=host_killed, **fields)
            except ValueError:
                break
    return JobResult(runner_ok=False, host_killed=host_killed, output=logs[-4000:])
