"""An opt-in warm pool of long-lived sandbox containers, each serving jobs from a fork server.

Starting a container and an interpreter per verification costs most of the verification. A pool keeps `size`
hardened containers alive (same limits, no network, read-only root, labels as `DockerSandbox`); inside each, a
server that has already imported pytest forks one child per job from a zygote that never saw job data; that
child runs the job as a one-shot container's runner does (each part under its own uid, no capabilities), and
afterwards the server kills every job process and wipes every path a job can write (see `_forkserver.py`).
A container is recycled (removed and replaced) after an OOM, any error, a host-side timeout or `max_jobs`
jobs. A server found dead before it took a job is replaced and the job goes to the replacement, so the
caller's request is not lost. Callers waiting for a container are served first come, first served. A
container whose host process is gone sees its stdin close and ends itself (issue 12).

The server itself starts as root holding only the one-shot runner's capabilities (`_RUNNER_CAPS`: to run each
part of a job under its own uid, start it in its directory and clean up after it); job code never runs as root
and holds none.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

from ..exceptions import SandboxError
from .container import (_RUNNER_CAPS, Job, JobResult, Limits, _Attached, _checked_path, _remove, _stage_scripts,
                        hardening, reap_orphans)
from .image import docker_client, ensure_image

__all__ = ["SandboxPool"]

_FORKSERVER = Path(__file__).with_name("_forkserver.py")
_START_TIMEOUT = 60.0
"""Seconds a new server may take to say it is ready, and a running one to acknowledge a job."""


class _Worker:
    """One pool container and its attached stdin/stdout stream."""

    def __init__(self, client: Any, image: str, limits: Limits, staging: Path) -> None:
        self.jobs = 0
        self.container = client.containers.create(
            image, command=["python3", "-I", "/job/forkserver.py"],
            **hardening(limits, staging, user="0:0", cap_add=_RUNNER_CAPS,
                        scratch_owner="uid=1000,gid=1000,mode=0755"))  # the runner's layout (see _runner.py)
        try:
            self.stream = _Attached(client, self.container)
            self.container.start()
            ready = self.stream.read_line(timeout=_START_TIMEOUT)
            if not json.loads(ready).get("ready"):
                raise SandboxError(f"pool server did not start: {ready[:200]!r}")
        except BaseException:
            self.close()
            raise

    def start(self, job: Job) -> None:
        """Hand `job` to the server; returns once the server has forked it (errors: the job never ran)."""
        self.jobs += 1
        self.stream.send(job.model_dump(mode="json", exclude={"archive"}))
        answer = json.loads(self.stream.read_line(timeout=_START_TIMEOUT))
        if not answer.get("started"):
            raise ConnectionError(f"pool server did not take the job: {answer}")

    def result(self, timeout: float) -> dict[str, Any]:
        return json.loads(self.stream.read_line(timeout=timeout))

    def oom_killed(self) -> bool:
        import docker.errors

        try:
            self.container.reload()
        except docker.errors.NotFound:
            return False  # gone already (auto_remove): unknown
        return bool(self.container.attrs["State"].get("OOMKilled"))

    def close(self) -> None:
        if hasattr(self, "stream"):
            self.stream.close()
        _remove(self.container)


class _Turn:
    """A caller waiting for a worker: the releaser hands one over directly (first come, first served)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.worker: _Worker | None = None


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
        reap_orphans(self.client)
        self.image = ensure_image(self.client, image)
        self._staging = Path(tempfile.mkdtemp(prefix="osca-pool-"))
        _stage_scripts(self._staging, _FORKSERVER)
        self._idle: deque[_Worker] = deque()
        self._waiting: deque[_Turn] = deque()
        self._all: set[_Worker] = set()
        self._replacing: set[threading.Thread] = set()
        self._failure: SandboxError | None = None
        self._lock = threading.Lock()
        self.recycled = 0
        try:
            for _ in range(size):
                self._release(self._new_worker())
        except BaseException:
            self.close()
            raise

    def _new_worker(self) -> _Worker:
        worker = _Worker(self.client, self.image, self.limits, self._staging)
        with self._lock:
            self._all.add(worker)
        return worker

    def _acquire(self) -> _Worker:
        """An idle worker, else wait in line for one."""
        with self._lock:
            if self._idle and not self._waiting:
                return self._idle.popleft()
            if not self._all and not self._replacing:
                raise self._failure or SandboxError("the pool has no containers left (closed?)")
            turn = _Turn()
            self._waiting.append(turn)
        try:
            turn.ready.wait()
        except BaseException:  # interrupted while waiting: leave the line, pass on a worker handed over meanwhile
            with self._lock:
                if turn in self._waiting:
                    self._waiting.remove(turn)
            if turn.worker is not None:
                self._release(turn.worker)
            raise
        if turn.worker is None:  # every container is gone and none could be replaced
            raise self._failure or SandboxError("the pool has no containers left")
        return turn.worker

    def _release(self, worker: _Worker) -> None:
        """Give `worker` to the longest-waiting caller, else put it back as idle."""
        with self._lock:
            if self._waiting:
                turn = self._waiting.popleft()
                turn.worker = worker
                turn.ready.set()
            else:
                self._idle.append(worker)

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
            self.recycled += 1

    def _fresh(self, worker: _Worker) -> _Worker:
        """Remove `worker`'s container and return a new worker in its place (not yet released)."""
        self._retire(worker)
        worker.close()
        return self._new_worker()

    def _replace_later(self, worker: _Worker) -> None:
        """`_fresh` in a thread: the caller has its result and does not wait for a new container. If none can
        be made and no container is left, the callers waiting in line get the error."""

        def replace() -> None:
            try:
                worker.close()
                fresh = self._new_worker()
            except Exception as e:  # noqa: BLE001  (kept for the callers: a thread has no one to raise to)
                with self._lock:
                    self._replacing.discard(thread)
                    self._failure = SandboxError(f"a pool container could not be replaced: {e}")
                    stranded = [] if self._all or self._replacing else list(self._waiting)
                    self._waiting = deque(t for t in self._waiting if t not in stranded)
                for turn in stranded:
                    turn.ready.set()
                return
            with self._lock:
                self._replacing.discard(thread)
            self._release(fresh)

        thread = threading.Thread(target=replace, name="osca-pool-replace", daemon=True)
        with self._lock:
            self._replacing.add(thread)
        self._retire(worker)
        thread.start()

    def _started(self, job: Job) -> _Worker:
        """A worker whose server has taken `job`. A server found dead before that is replaced and the job
        handed to the replacement, so the request is not lost (once: a second failure is a SandboxError)."""
        worker = self._acquire()
        for _ in range(2):
            try:
                worker.start(job)
                return worker
            except (OSError, ValueError) as e:  # ConnectionError and TimeoutError are OSErrors
                error = e
                worker = self._fresh(worker)
        self._release(worker)
        raise SandboxError(f"pool servers keep failing before running a job: {error}") from error

    def run(self, job: Job) -> JobResult:
        """Run `job` on an idle warm container (see the module docstring)."""
        for name in job.files:
            _checked_path(name)
        if job.setup or job.archive is not None or job.protect:
            raise SandboxError("the warm pool runs plain jobs only (no setup steps, archives or protected "
                               "paths); use DockerSandbox for those")
        worker = self._started(job)
        healthy = False
        try:
            try:
                raw = worker.result(job.wall_clock + self.limits.host_grace)
            except (OSError, ValueError) as e:
                # Timed out past the grace period, or the server died (OOM, killed): never a pass.
                return JobResult(runner_ok=False, host_killed=isinstance(e, TimeoutError),
                                 oom_killed=worker.oom_killed(), output=f"pool server lost: {type(e).__name__}: {e}")
            if "error" in raw:
                return JobResult(runner_ok=False, output=f"pool server error: {raw['error']}")
            clean = raw.pop("clean", False)
            result = JobResult(runner_ok=True, **raw)
            healthy = clean and result.signal != 9 and worker.jobs < self.max_jobs
            return result
        finally:
            if healthy:
                self._release(worker)
            else:
                self._replace_later(worker)

    async def arun(self, job: Job) -> JobResult:
        return await asyncio.to_thread(self.run, job)

    def close(self) -> None:
        while self._replacing:  # a replacement under way adds its container when done
            with self._lock:
                pending = next(iter(self._replacing), None)
            if pending is not None:
                pending.join()
        with self._lock:
            workers, self._all = list(self._all), set()
            self._idle.clear()
        for worker in workers:
            worker.close()
        shutil.rmtree(self._staging, ignore_errors=True)
        if self._own_client:
            self.client.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
