"""What `pip install osca` gets: one top-level package, with Agentless and the sandbox recipe inside it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_built_from_the_sdist_installs_only_osca(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "uv", "build", "--quiet", "-o", str(tmp_path), str(ROOT)], check=True)
    [wheel] = tmp_path.glob("osca-*.whl")  # uv builds the wheel from the sdist, as pip does from PyPI
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"osca"}  # no top-level `agents` to clash with another distribution's
    for part in ("osca/agents/agentless/graph.py", "osca/agents/agentless/cli.py", "osca/_sandboxes/base/setup.sh",
                 "osca/_sandboxes/base/Dockerfile", "osca/sandbox/container.py"):
        assert part in names
