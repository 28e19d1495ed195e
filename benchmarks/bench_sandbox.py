"""Verification throughput: host subprocess (unsafe reference) vs fresh container vs warm pool, each sandbox
with the candidate in its own process (`UnitTestVerifier`, the default since issue 12) and imported into
pytest's process (`InProcessUnitTestVerifier`, the opt-in and the only mode before), side by side.

For each worker count, runs N trivial verifications (a correct `add` against two pytest tests) each way, in
one run, the ways taking turns in --rounds blocks (so a drift in the machine's speed hits them alike), and
prints verifications/s, median and p95 latency, each sandbox's throughput over the host's, and CPU seconds
per verification where they can be counted (the host's children; the pool's containers). On a
loaded machine the CPU figures are the fairer comparison: Docker's containers share one CPU cgroup, so they
are scheduled as a group against every host process.

    python benchmarks/bench_sandbox.py [--n 100] [--workers 1,2,4] [--rounds 5]
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
from rich.progress import Progress, TaskID
from rich.table import Table

from osca.sandbox.container import OWNER_PID, DockerSandbox
from osca.sandbox.pool import SandboxPool
from osca.verifiers import InProcessUnitTestVerifier, Status, UnitTestVerifier, pytest_command

SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = ("from solution import add\n\ndef test_small():\n    assert add(1, 2) == 3\n\n"
         "def test_neg():\n    assert add(-1, -1) == -2\n")


HOST_ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # load what the sandbox loads, no more


def host_verify() -> bool:
    """The unsafe reference: a fresh interpreter on the host running the sandbox's pytest command (same flags,
    JUnit report included), no isolation at all."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "solution.py").write_text(SOLUTION)
        Path(tmp, "test_solution.py").write_text(TESTS)
        argv = [a.replace("{report}", str(Path(tmp, "report.xml"))) for a in pytest_command(10, "test_solution.py")]
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_timeout", *argv[3:]], cwd=tmp,
                              capture_output=True, env=HOST_ENV)
        return proc.returncode == 0


class Way:
    """One way of verifying, measured in blocks interleaved with the other ways' (a machine whose speed drifts
    then slows all of them alike): latencies, wall time and CPU seconds summed over its blocks."""

    def __init__(self, name: str, candidate: str, verify: Callable[[], bool],
                 cpu: Callable[[], float] | None = None) -> None:
        self.name, self.candidate, self.verify, self.cpu = name, candidate, verify, cpu
        self.latencies: list[float] = []
        self.passed = 0
        self.wall = self.cpu_seconds = 0.0

    def block(self, n: int, workers: int, bar: Progress, task: TaskID) -> None:
        def timed(_: int) -> tuple[float, bool]:
            start = time.perf_counter()
            ok = self.verify()
            bar.advance(task)
            return time.perf_counter() - start, ok

        cpu_before = self.cpu() if self.cpu else 0.0
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            results = list(ex.map(timed, range(n)))
        self.wall += time.perf_counter() - start
        self.cpu_seconds += self.cpu() - cpu_before if self.cpu else 0.0
        self.latencies += [t for t, _ in results]
        self.passed += sum(ok for _, ok in results)

    def summary(self) -> dict:
        n = len(self.latencies)
        lat = sorted(self.latencies)
        return {"rate": n / self.wall, "median": statistics.median(lat), "p95": lat[int(0.95 * (n - 1))],
                "ok": self.passed, "n": n, "cpu": self.cpu_seconds / n if self.cpu else None}


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
    ap.add_argument("--n", type=int, default=100, help="verifications per way and worker count")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=5, help="blocks each way's verifications are split into")
    args = ap.parse_args()
    table = Table(title=f"{args.n} trivial verifications per cell, in {args.rounds} interleaved blocks")
    for col in ["workers", "way", "candidate", "verifications/s", "median s", "p95 s", "passed", "/ host",
                "CPU s", "CPU / host"]:
        table.add_column(col, justify="right")
    with Progress(transient=True) as bar:
        for workers in map(int, args.workers.split(",")):
            with DockerSandbox() as box, SandboxPool(size=workers) as pool:
                ways = [Way("host subprocess (unsafe)", "in-process", host_verify, host_cpu)]
                for name, sandbox, cpu in (("fresh container", box, None),
                                           ("warm pool", pool, lambda: pool_cpu(pool))):
                    for mode, kind in MODES.items():
                        verifier = kind(TESTS, sandbox=sandbox)
                        ways.append(Way(name, mode, lambda v=verifier: v.verify(SOLUTION).status is Status.PASSED,
                                        cpu))
                task = bar.add_task(f"{workers} worker(s)", total=args.n * len(ways))
                for r in range(args.rounds):
                    size = args.n // args.rounds + (r < args.n % args.rounds)
                    for way in ways:
                        way.block(size, workers, bar, task)
                bar.remove_task(task)
            host = ways[0].summary()
            for way in ways:
                table.add_row(str(workers), way.name, way.candidate, *cells(way.summary(), host))
    Console(width=160).print(table)


def cells(r: dict, host: dict) -> list[str]:
    cpu = [f"{r['cpu']:.3f}", f"{host['cpu'] / r['cpu']:.2f}x"] if r["cpu"] else ["", ""]
    return [f"{r['rate']:.1f}", f"{r['median']:.3f}", f"{r['p95']:.3f}", f"{r['ok']}/{r['n']}",
            f"{r['rate'] / host['rate']:.2f}x", *cpu]


if __name__ == "__main__":
    main()
