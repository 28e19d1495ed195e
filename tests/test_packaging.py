"""What `pip install osca` gets: one top-level package, with Agentless and the sandbox recipe inside it, from a
wheel or an editable install alike; and Agentless, an application of osca, uses only osca's public API."""

from __future__ import annotations

import ast
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


def test_an_editable_install_imports_osca_agents_from_the_repository_in_place(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "uv", "venv", "--quiet", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python), "--no-deps",
                    "-e", str(ROOT)], check=True)
    assert not (ROOT / "src" / "osca" / "agents").exists()  # no link, no copy: hatch_build.py's finder maps it
    # the dependencies come from this interpreter's environment; osca itself only from the editable install
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "numpy").is_dir())
    probe = "import osca.agents.agentless.graph as g, osca.agents as a; print(a.__file__); print(g.__file__)"
    out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(deps), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [str(ROOT / "agents" / "__init__.py"), str(ROOT / "agents" / "agentless" / "graph.py")]


def private_osca_imports(source: str) -> list[str]:
    """`osca._x` modules, and `_names` taken from osca modules, that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module.split(".")[0] == "osca":
                found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        else:
            continue
        found += [m for m in modules if m.split(".")[0] == "osca" and any(p.startswith("_") for p in m.split("."))]
    return found


def test_agents_use_only_the_public_api_of_osca() -> None:
    assert private_osca_imports("from osca._jsonl import a\nimport osca._litellm\nfrom osca.x import _y, z") == [
        "osca._jsonl", "osca._litellm", "osca.x._y"]
    used = {str(p.relative_to(ROOT)): private_osca_imports(p.read_text(encoding="utf-8"))
            for p in sorted((ROOT / "agents").rglob("*.py"))}
    assert {path: names for path, names in used.items() if names} == {}
