"""The suite leaves nothing in /tmp: passing tests' temporary folders go, and no report file is written.

Runs a small pytest session under this project's settings (pyproject.toml) with TMPDIR pointed at an
empty folder, then looks at what it left there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

INNER = '''
import pytest

def test_big_file_in_tmp_path(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * (8 << 20))

def test_a_reliability_figure(report):
    report["files"] = 3
'''


def test_a_session_leaves_no_big_file_and_no_report(tmp_path: Path) -> None:
    scratch, tmp = tmp_path / "tests_inner", tmp_path / "tmp"
    scratch.mkdir()
    tmp.mkdir()
    (scratch / "test_inner.py").write_text(INNER)
    env = {**os.environ, "TMPDIR": str(tmp)}
    old_report = Path("/tmp/historyfs-reliability-report.json")  # where it used to be written
    before = old_report.stat().st_mtime_ns if old_report.exists() else None
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-c", str(ROOT / "pyproject.toml"),
                           "--rootdir", str(ROOT), "-p", "tests.reliability.conftest", str(scratch)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "files" in done.stdout  # the figure is in the terminal summary
    left = [p for p in tmp.rglob("*") if p.is_file() and p.stat().st_size > 4096]
    assert left == []
    assert not [p for p in tmp.rglob("*report*")]
    assert (old_report.stat().st_mtime_ns if old_report.exists() else None) == before
