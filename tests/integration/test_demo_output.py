"""`historyfs demo`: piped into `head` it still unmounts and exits cleanly; it suggests only what set-up installs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from historyfs.demo import _instructions
from tests.fixtures.mount import _is_mounted, needs_fuse, unmount
from tests.unit.test_setup_script import DEBIAN12, plan

HISTORYFS = str(Path(sys.executable).parent / "historyfs")
#: Debian's essential packages: on every machine, so set-up need not install them.
ESSENTIAL = {"coreutils", "findutils"}


@needs_fuse
@pytest.mark.fuse
@pytest.mark.parametrize("lines_read", [0, 1, 4, 4, 4])
def test_a_reader_that_goes_away_early_leaves_no_mount_and_no_traceback(tmp_path: Path, lines_read: int) -> None:
    mnt = tmp_path / "demo"
    proc = subprocess.Popen([HISTORYFS, "demo", str(mnt), "--items", "20", "--no-wait"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        read = [proc.stdout.readline() for _ in range(lines_read)]
        proc.stdout.close()  # as `head -N` does once it has its lines
        stderr = proc.stderr.read()
        proc.wait(120)
    finally:
        proc.kill()
        unmount(mnt)
    assert all(read) and (not read or read[0].startswith("historyfs demo: your demo history is mounted at"))
    assert proc.returncode == 0 and "Traceback" not in stderr and "error" not in stderr, stderr
    assert not _is_mounted(mnt)


@needs_fuse
@pytest.mark.fuse
def test_the_readme_pipeline_into_head(tmp_path: Path) -> None:
    mnt = tmp_path / "demo"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {HISTORYFS} demo {mnt} --items 20 --no-wait | head -4"],
                          capture_output=True, text=True, timeout=120)
    unmount(mnt)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 4 and "Traceback" not in done.stderr, done.stderr
    assert not _is_mounted(mnt)


def _programs(text: str) -> set[str]:
    """Every program the "Try" lines run, $(...) included, without VAR=value prefixes."""
    tried = text.split("Try, in another terminal:\n", 1)[1].split("\n\n", 1)[0]
    commands = [c for line in tried.splitlines() for c in re.split(r"\$\(|\||\)", line.replace('"', " "))]
    words = (next((w for w in c.split() if "=" not in w), "") for c in commands)
    return {w for w in words if w and not w.startswith(("(", "-", "'"))}


def _package_of(program: str) -> str:
    path = shutil.which(program)
    assert path, f"the demo suggests {program}, which is not installed here"
    for candidate in (os.path.realpath(path), path, path.removeprefix("/usr")):
        done = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0]
    raise AssertionError(f"no Debian package owns {path}")


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg (Debian or Ubuntu)")
def test_the_demo_suggests_only_what_setup_installs(tmp_path: Path) -> None:
    programs = _programs(_instructions(Path("/m"), "http://127.0.0.1:1", "k")) - {"historyfs"}
    assert {"ls", "find", "ffprobe", "sox", "ffplay", "cat", "rm"} <= programs
    installed_by_setup = set(plan(tmp_path, DEBIAN12, [], "--demo")["install"].split())
    for program in sorted(programs):
        assert _package_of(program) in installed_by_setup | ESSENTIAL, program


def test_the_demo_says_bare_historyfs_once_it_is_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = Path(sys.executable).parent
    monkeypatch.setattr(sys, "argv", [str(venv_bin / "historyfs"), "demo"])
    monkeypatch.setenv("PATH", str(tmp_path))
    assert f"{venv_bin / 'historyfs'} unmount" in _instructions(Path("/m"), "http://x", "k")  # not on PATH: the full path
    (tmp_path / "historyfs").symlink_to(venv_bin / "historyfs")  # what set-up links
    text = _instructions(Path("/m"), "http://x", "k")
    assert "or: historyfs unmount /m" in text and "  historyfs status" in text
