"""Hardened, throw-away Docker containers that run one job each.

Every container: no network, read-only root with small tmpfs scratch, uid 1000, all capabilities dropped,
no-new-privileges, memory (= memory + swap), CPU and pids limits, file-size and open-file ulimits, capped
logs, an init process, and the label `osca.sandbox`. Timeouts in three layers: the job's own (e.g.
pytest-timeout per test), the runner's wall clock inside the container (kills the job's process group), and
the host's wait on the container followed by a kill. The container is removed on every path out, errors and
KeyboardInterrupt included.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..exceptions import SandboxError
from .image import docker_client, ensure_image, image_tag

__all__ = ["LABEL", "DockerSandbox", "Job", "JobResult", "Limits", "Sandbox", "hardening"]

LABEL = "osca.sandbox"
_RUNNER = Path(__file__).with_name("_runner.py")
_MAX_LOG = 1 << 20


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
    host_grace: float = Field(default=15.0, gt=0)
    """Seconds the host waits beyond the job's wall clock before it kills the container."""


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


class DockerSandbox:
    """Runs each `Job` in a fresh hardened container (see the module docstring).

    Example:
        >>> with DockerSandbox() as box:
        ...     box.run(Job(files={"a.py": "print(1)"}, argv=["python3", "a.py"])).output
        '1\\n'
    """

    def __init__(self, *, image: str | None = None, limits: Limits | None = None, client: Any = None) -> None:
        self._client = client
        self._own_client = client is None
        self.image = image
        self.limits = limits or Limits()
        self._default_image: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
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
        import requests.exceptions

        client = self.client
        image = ensure_image(client, self._image())  # still checks that the image is there, each job
        nonce = secrets.token_hex(16)
        staging = Path(tempfile.mkdtemp(prefix="osca-job-"))
        container = None
        try:
            self._stage(staging, job)
            container = client.containers.create(image, command=["python3", "-I", "/job/runner.py"],
                                                 environment={"OSCA_NONCE": nonce},
                                                 **hardening(self.limits, staging))
            container.start()
            host_killed = False
            try:
                container.wait(timeout=job.wall_clock + self.limits.host_grace)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                host_killed = True
                container.kill()
                container.wait(timeout=30)
            container.reload()
            oom = bool(container.attrs["State"].get("OOMKilled"))
            logs = container.logs(stdout=True, stderr=True)[-_MAX_LOG:].decode("utf-8", "replace")
        except docker.errors.DockerException as e:
            raise SandboxError(f"sandbox container failed: {e}") from e
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
            shutil.rmtree(staging, ignore_errors=True)
        return _parse_result(logs, nonce, host_killed=host_killed, oom=oom)

    async def arun(self, job: Job) -> JobResult:
        """`run` without blocking the event loop (the docker SDK is synchronous)."""
        return await asyncio.to_thread(self.run, job)

    @staticmethod
    def _stage(staging: Path, job: Job) -> None:
        work = staging / "work"
        work.mkdir()
        for name, text in job.files.items():
            target = work / _checked_path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (staging / "job.json").write_text(json.dumps(
            {"argv": job.argv, "wall_clock": job.wall_clock, "junit": job.junit, "setup": job.setup}))
        if job.archive is not None:
            (staging / "work.tar").write_bytes(job.archive)
        _stage_scripts(staging)


def _stage_scripts(staging: Path, *extra: Path) -> None:
    """Copy the runner and `extra` scripts into `staging` (each named without its leading `_`), then make all
    of `staging` readable by the container's user (directories 0755, files 0644)."""
    for script in (_RUNNER, *extra):
        shutil.copy(script, staging / script.name.removeprefix("_"))
    for p in [staging, *staging.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def hardening(limits: Limits, staging: Path, *, user: str = "1000:1000", cap_add: tuple[str, ...] = (),
              scratch_owner: str = "uid=1000,gid=1000,mode=0700") -> dict[str, Any]:
    """`containers.create` keyword arguments shared by one-shot and pool containers (module docstring)."""
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
        labels={LABEL: "1"}, detach=True)


def _parse_result(logs: str, nonce: str, *, host_killed: bool, oom: bool) -> JobResult:
    marker = f"OSCA-RESULT {nonce} "
    for line in reversed(logs.splitlines()):
        if line.startswith(marker):
            try:
                fields = json.loads(line[len(marker):])
                return JobResult(runner_ok=True, host_killed=host_killed, oom_killed=oom, **fields)
            except ValueError:
                break
    return JobResult(runner_ok=False, host_killed=host_killed, oom_killed=oom, output=logs[-4000:])
