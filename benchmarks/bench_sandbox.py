"""Verification throughput: host subprocess (unsafe reference) vs fresh container vs warm pool, each sandbox
with the candidate in its own process (`UnitTestVerifier`, the default since issue 12) and imported into
pytest's process (`InProcessUnitTestVerifier`, the opt-in and the only mode before), side by side.

For each worker count, runs N trivial verifications (a correct `add` against two pytest tests) each way, in
one run, and prints verifications/s, median and p95 latency, each sandbox's throughput over the host's, and
CPU seconds per verification where they can be counted (the host's children; the pool's containers). On a
loaded machine the CPU figures are the fairer comparison: Docker's containers share one CPU cgroup, so they
are scheduled as a group against every host process.

    python benchmarks/bench_sandbox.py [--n 100] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from osca.sandbox.container import OWNER_PID, DockerSandbox
from osca.sandbox.pool import SandboxPool
from osca.verifiers import InProcessUnitTestVerifier, Status, UnitTestVerifier

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = ("from solution import add\n\ndef test_small():\n    assert add(1, 2) == 3\n\n"
         "def test_neg():\n    assert add(-1, -1) == -2\n")


HOST_ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # load what the sandbox loads, no more


def host_verify() -> bool:
    """The unsafe reference: a fresh interpreter on the host, no isolation at all."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "solution.py").write_text(SOLUTION)
        Path(tmp, "test_solution.py").write_text(TESTS)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                               "--timeout=10", "test_solution.py"], cwd=tmp, capture_output=True, env=HOST_ENV)
        return proc.returncode == 0


def measure(name: str, verify: Callable[[], bool], n: int, workers: int, bar: Progress,
            cpu: Callable[[], float] | None = None) -> dict:
    """Throughput, latency and (with `cpu`, a cumulative CPU-seconds counter) CPU seconds per verification."""
    task = bar.add_task(f"{name} x{workers}", total=n)

    def timed(_: int) -> tuple[float, bool]:
        start = time.perf_counter()
        ok = verify()
        bar.advance(task)
        return time.perf_counter() - start, ok

    cpu_before = cpu() if cpu else 0.0
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(timed, range(n)))
    wall = time.perf_counter() - start
    lat = sorted(t for t, _ in results)
    bar.remove_task(task)
    return {"rate": n / wall, "median": statistics.median(lat), "p95": lat[int(0.95 * (n - 1))],
            "ok": sum(ok for _, ok in results), "cpu": (cpu() - cpu_before) / n if cpu else None}


def host_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pool_cpu(pool: SandboxPool) -> float:
    """CPU seconds the pool's containers have used (this process's only running osca containers then)."""
    mine = pool.client.containers.list(filters={"label": f"{OWNER_PID}={os.getpid()}"})
    return sum(c.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] for c in mine) / 1e9


MODES = {"separate process": UnitTestVerifier, "in-process": InProcessUnitTestVerifier}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    table = Table(title=f"{args.n} trivial verifications per cell")
    for col in ["workers", "way", "candidate", "verifications/s", "median s", "p95 s", "passed", "/ host",
                "CPU s", "CPU / host"]:
        table.add_column(col, justify="right")
    with Progress(transient=True) as bar:
        for workers in map(int, args.workers.split(",")):
            host = measure("host", host_verify, args.n, workers, bar, cpu=host_cpu)
            table.add_row(str(workers), "host subprocess (unsafe)", "in-process", *cells(host, host, args.n))
            with DockerSandbox() as box, SandboxPool(size=workers) as pool:
                for way, sandbox, cpu in (("fresh container", box, None),
                                          ("warm pool", pool, lambda: pool_cpu(pool))):
                    for mode, kind in MODES.items():
                        verifier = kind(TESTS, sandbox=sandbox)
                        r = measure(f"{way} {mode}", lambda v=verifier: v.verify(SOLUTION).status is Status.PASSED,
                                    args.n, workers, bar, cpu=cpu)
                        table.add_row(str(workers), way, mode, *cells(r, host, args.n))
    Console(width=160).print(table)


def cells(r: dict, host: dict, n: int) -> list[str]:
    cpu = [f"{r['cpu']:.3f}", f"{host['cpu'] / r['cpu']:.2f}x"] if r["cpu"] else ["", ""]
    return [f"{r['rate']:.1f}", f"{r['median']:.3f}", f"{r['p95']:.3f}", f"{r['ok']}/{n}",
            f"{r['rate'] / host['rate']:.2f}x", *cpu]


if __name__ == "__main__":
    main()
