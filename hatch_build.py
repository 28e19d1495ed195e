"""Editable installs of osca: `osca.agents` is the repository's `agents/` folder, imported in place.

A wheel maps `agents/` to `osca/agents` with `sources` (pyproject.toml). Hatchling's editable mode cannot rename a
folder that way (it puts `src/` on the path, see `dev-mode-dirs`), so for `pip install -e .` / `uv pip install -e .`
this hook adds a finder, loaded by a `.pth` line, that resolves `osca.agents` to `agents/`: edits there take effect
without reinstalling, and osca stays the only top-level package a user imports.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

FINDER_MODULE = "_osca_agents_finder"
FINDER = '''"""From `pip install -e` of osca (its hatch_build.py): `osca.agents` is {agents!r}."""
import importlib.abc
import importlib.util
import sys


class _AgentsFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "osca.agents":
            return None
        return importlib.util.spec_from_file_location(
            fullname, {init!r}, submodule_search_locations=[{agents!r}])


if not any(isinstance(finder, _AgentsFinder) for finder in sys.meta_path):
    sys.meta_path.append(_AgentsFinder())
'''


class AgentsEditableHook(BuildHookInterface):
    """Adds the `osca.agents` finder and its `.pth` line to editable wheels; regular wheels are left alone."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version != "editable":
            return
        agents = Path(self.root, "agents").resolve()
        self._staging = Path(tempfile.mkdtemp(prefix="osca-editable-"))
        files = {
            f"{FINDER_MODULE}.py": FINDER.format(agents=str(agents), init=str(agents / "__init__.py")),
            f"{FINDER_MODULE}.pth": f"import {FINDER_MODULE}\n",
        }
        for name, text in files.items():
            (self._staging / name).write_text(text, encoding="utf-8")
            build_data["force_include_editable"][str(self._staging / name)] = name

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if version == "editable":
            shutil.rmtree(self._staging, ignore_errors=True)
