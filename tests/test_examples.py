"""The examples run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_learn_swebench_example(swebench_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "learn_swebench.py"), str(swebench_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("learned on 150 problems")
    assert "certified optimum <=" in lines[1]
    assert lines[2].startswith("test pass@8: osca")
    assert "spends" in lines[3]
