"""An opt-in warm pool of long-lived sandbox containers, each serving jobs from a fork server.

Starting a container and an interpreter per verification costs most of the verification. A pool keeps `size`
hardened containers alive (same limits, no network, read-only root, labels as `DockerSandbox`); inside each, a
server that has already imported pytest forks one child per job, drops it to uid 1001 with no capabilities,
and afterwards kills every job process and wipes scratch. A container is recycled (removed and replaced)
after an OOM, any error, a host-side timeout or `max_jobs` jobs.

The server itself starts as root holding only CAP_SETUID, CAP_SETGID and CAP_KILL (needed to drop each job to
its own uid and clean up after it); job code never runs as root.
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..exceptions import SandboxError
from .container import Job, JobResult, Limits, _checked_path, _stage_scripts, hardening
from .image import docker_client, ensure_image

__all__ = ["SandboxPool"]

_FORKSERVER = Path(__file__).with_name("_forkserver.py")


class _Worker:
    """One pool container and its attached stdin/stdout stream."""

    def __init__(self, client: Any, image: str, limits: Limits, staging: Path) -> None:
        self.jobs = 0
        self.container = client.containers.create(
            image, command=["python3", "-I", "/job/forkserver.py"], stdin_open=True, tty=False,
            **hardening(limits, staging, user="0:0", cap_add=("SETUID", "SETGID", "KILL"),
                        scratch_owner="uid=1001,gid=1001,mode=0755"))
        try:
            self.sock = client.api.attach_socket(self.container.id,
                                                 params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self.raw: socket.socket = self.sock._sock
            self.container.start()
            self.buffer = b""
            ready = self._read_line(timeout=60)
            if not json.loads(ready).get("ready"):
                raise SandboxError(f"pool server did not start: {ready[:200]!r}")
        except BaseException:
            self.close()
            raise

    def _read_line(self, timeout: float) -> str:
        """Next line the server wrote on stdout (the attach stream is framed: 8-byte header per chunk)."""
        self.raw.settimeout(timeout)
        while b"\n" not in self.buffer:
            header = self._recv(8)
            kind, size = header[0], struct.unpack(">I", header[4:])[0]
            chunk = self._recv(size)  # read every chunk, whatever its stream, so the next header is found
            if kind == 1:  # stdout; stderr chunks are dropped
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.raw.recv(n - len(data))
            if not chunk:
                raise ConnectionError("pool server closed its output")
            data += chunk
        return data

    def run(self, job: Job, grace: float) -> dict[str, Any]:
        self.jobs += 1
        request = {"files": job.files, "argv": job.argv, "wall_clock": job.wall_clock, "junit": job.junit}
        self.raw.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(self._read_line(timeout=job.wall_clock + grace))

    def oom_killed(self) -> bool:
        try:
            self.container.reload()
            return bool(self.container.attrs["State"].get("OOMKilled"))
        except Exception:
            return False

    def close(self) -> None:
        for stream in (getattr(self, "sock", None), getattr(self, "raw", None)):
            if stream is not None:
                stream.close()
        try:
            self.container.remove(force=True)
        except Exception:
            pass


class SandboxPool:
    """`size` warm sandbox containers; `run(job)` is thread-safe and blocks while all are busy.

    Example:
        >>> with SandboxPool(size=2) as pool:
        ...     verifier = UnitTestVerifier(tests, sandbox=pool)
    """

    def __init__(self, size: int = 2, *, image: str | None = None, limits: Limits | None = None,
                 client: Any = None, max_jobs: int = 200) -> None:
        if size < 1:
            raise SandboxError(f"pool size must be >= 1, got {size}")
        self.limits = limits or Limits()
        self.max_jobs = max_jobs
        self._own_client = client is None
        self.client = client or docker_client()
        self.image = ensure_image(self.client, image)
        self._staging = Path(tempfile.mkdtemp(prefix="osca-pool-"))
        _stage_scripts(self._staging, _FORKSERVER)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self.recycled = 0
        try:
            for _ in range(size):
                self._add()
        except BaseException:
            self.close()
            raise

    def _add(self) -> None:
        worker = _Worker(self.client, self.image, self.limits, self._staging)
        with self._lock:
            self._all.add(worker)
        self._idle.put(worker)

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
            self.recycled += 1
        worker.close()

    def run(self, job: Job) -> JobResult:
        """Run `job` on an idle warm container (see the module docstring)."""
        for name in job.files:
            _checked_path(name)
        if job.setup or job.archive is not None:
            raise SandboxError("the warm pool runs plain jobs only (no setup steps or archives); "
                               "use DockerSandbox for those")
        worker = self._idle.get()
        healthy = False
        try:
            try:
                raw = worker.run(job, self.limits.host_grace)
            except (OSError, ConnectionError, ValueError) as e:
                # Timed out past the grace period, or the server died (OOM, killed): never a pass.
                timed_out = isinstance(e, TimeoutError)  # socket.timeout is TimeoutError
                return JobResult(runner_ok=False, host_killed=timed_out, oom_killed=worker.oom_killed(),
                                 output=f"pool server lost: {type(e).__name__}: {e}")
            if "error" in raw:
                return JobResult(runner_ok=False, output=f"pool server error: {raw['error']}")
            clean = raw.pop("clean", False)
            result = JobResult(runner_ok=True, **raw)
            healthy = clean and result.signal != 9 and worker.jobs < self.max_jobs
            return result
        finally:
            if healthy:
                self._idle.put(worker)
            else:
                self._retire(worker)
                self._add()

    async def arun(self, job: Job) -> JobResult:
        return await asyncio.to_thread(self.run, job)

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.close()
        shutil.rmtree(self._staging, ignore_errors=True)
        if self._own_client:
            self.client.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
