"""Shared fixtures: the OSCA release file and seeded random count matrices."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm: no network

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path

import numpy as np
import pytest

from osca import CountMatrix

SWEBENCH = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "osca"
            / "swebench_agentless.json").resolve()


@pytest.fixture(scope="session")
def swebench_path() -> Path:
    """The count file released with the OSCA paper (LeiLiLab/OSCA `swebench_agentless.json`)."""
    if not SWEBENCH.is_file():
        pytest.skip(f"OSCA release file not found at {SWEBENCH} (expected ../shared/data/osca next to the repo)")
    return SWEBENCH


def random_counts(n_configs: int, n_problems: int, runs: int, seed: int, *, full: float = 0.1) -> CountMatrix:
    """A random count matrix: skewed success rates (many hard cells), and a `full` share of cells that were
    solved in every run (correct == runs, i.e. failure probability q = 0)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 1.5, size=(n_configs, n_problems))
    correct = rng.binomial(runs, p)
    correct[rng.random((n_configs, n_problems)) < full] = runs
    return CountMatrix(tuple(f"cfg{i}" for i in range(n_configs)), tuple(f"prob{j}" for j in range(n_problems)),
                       correct, runs)


@pytest.fixture
def make_counts() -> Callable[..., CountMatrix]:
    """`make_counts(n_configs, n_problems, runs, seed, full=0.1)` -> a seeded random `CountMatrix`."""
    return random_counts


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every tuple of `parts` non-negative integers summing to `total` (brute-force allocations)."""
    if parts == 1:
        yield (total,)
        return
    for k in range(total + 1):
        for rest in compositions(total - k, parts - 1):
            yield (k, *rest)


@pytest.fixture
def all_allocations() -> Callable[[int, int], Iterator[tuple[int, ...]]]:
    """`all_allocations(C, n_configs)`: every integer allocation of exactly C samples."""
    return compositions


# --- Docker sandbox -------------------------------------------------------------------------------------------

def _no_docker(reason: str) -> None:
    """Without Docker the sandbox tests skip, except in CI (CI set), where they must fail."""
    import os

    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A pinged Docker client, with the sandbox image built (or reused) once per session.

    Skips when no daemon answers or the image cannot be built; fails instead when the CI variable is set.
    """
    from osca.exceptions import SandboxError, SandboxUnavailable
    from osca.sandbox import build_image
    from osca.sandbox import docker_client as connect

    problem = None
    try:
        client = connect()
    except SandboxUnavailable as e:
        problem = f"no Docker daemon: {e}"
    else:
        try:
            build_image(client)
        except SandboxError as e:
            client.close()
            problem = f"the sandbox image is not available: {e}"
    if problem is not None:
        _no_docker(problem)
    yield client
    client.close()
