"""After set-up, `historyfs`, `mount -t fuse.historyfs`, the fstab line and the systemd unit work as the README shows.

Each test takes its command from README.md, changes only /home/me (or %h) to a temporary home and
points the API at the fake server (HISTORYFS_API_URL), then runs it. Skipped, with the reason, where
set-up's links are absent or belong to another checkout of the project on this machine.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import _is_mounted, needs_fuse, unmount

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
VENV_BIN = ROOT.resolve() / ".venv" / "bin"
HELPER = Path("/sbin/mount.fuse.historyfs")
PATH_LINK = Path("/usr/local/bin/historyfs") if os.geteuid() == 0 else Path.home() / ".local" / "bin" / "historyfs"


def _ours(link: Path, target: Path) -> str | None:
    """Why ``link`` cannot be tested here, or None when it is set-up's link to this checkout."""
    if not link.is_symlink():
        return f"{link} is absent: run scripts/setup"
    if Path(os.path.realpath(link)) != target.resolve():
        return f"{link} belongs to another checkout ({os.readlink(link)}): run scripts/setup here"
    return None


needs_helper = pytest.mark.skipif(os.geteuid() != 0 or _ours(HELPER, VENV_BIN / "mount.historyfs") is not None,
                                  reason=f"needs root and set-up's helper: {_ours(HELPER, VENV_BIN / 'mount.historyfs')}")
pytestmark = [needs_fuse, pytest.mark.fuse]


@pytest.fixture
def home(tmp_path: Path, fake_tenant: Callable[..., FakeTenant]) -> tuple[Path, dict[str, str], FakeTenant]:
    """A home with ~/History and the key file, and the environment that points at the fake API."""
    t = fake_tenant(items=5, seed=47)
    (tmp_path / "History").mkdir()
    (tmp_path / ".config" / "historyfs").mkdir(parents=True)
    (tmp_path / ".config" / "historyfs" / "key").write_text(t.api_key + "\n")
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    env.update(HISTORYFS_API_URL=t.base_url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    return tmp_path, env, t


def _readme_block_after(marker: str) -> str:
    return re.search(re.escape(marker) + r".*?```\w*\n(.*?)```", README, re.S)[1]  # type: ignore[index]


@pytest.mark.skipif(_ours(PATH_LINK, VENV_BIN / "historyfs") is not None, reason=str(_ours(PATH_LINK, VENV_BIN / "historyfs")))
def test_historyfs_is_on_path() -> None:
    done = subprocess.run(["bash", "-lc", "command -v historyfs && historyfs --version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == [str(PATH_LINK), "historyfs", done.stdout.split()[-1]]


@needs_helper
def test_mount_t_fuse_historyfs_as_the_readme_shows(home: tuple[Path, dict[str, str], FakeTenant]) -> None:
    h, env, _ = home
    line = next(ln for ln in _readme_block_after("`mount -t fuse.historyfs` works").splitlines() if ln.startswith("mount -t"))
    try:
        done = subprocess.run(["bash", "-c", line.replace("/home/me", str(h))], env=env, cwd="/", capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"historyfs: mounted 5 items at {h / 'History'}")
        assert sorted(os.listdir(h / "History")) == [".historyfs", "by-date", "by-model", "by-voice", "recent", "search"]
        assert any(name.endswith(".mp3") for _, _, files in os.walk(h / "History" / "by-voice") for name in files)
    finally:
        unmount(h / "History")


@needs_helper
def test_the_readme_fstab_line(home: tuple[Path, dict[str, str], FakeTenant]) -> None:
    h, env, _ = home
    fstab = h / "fstab"
    fstab.write_text(_readme_block_after("fstab line:").replace("/home/me", str(h)))
    try:
        done = subprocess.run(["mount", "--fstab", str(fstab), str(h / "History")], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert _is_mounted(h / "History") and os.listdir(h / "History" / "by-date")
    finally:
        unmount(h / "History")


def test_the_readme_systemd_unit(home: tuple[Path, dict[str, str], FakeTenant]) -> None:
    """ExecStart and ExecStop as written, with %h a home where set-up linked ~/.local/bin/historyfs."""
    h, env, _ = home
    unit = dict(line.split("=", 1) for line in _readme_block_after("systemd user unit").splitlines() if "=" in line)
    (h / ".local" / "bin").mkdir(parents=True)
    (h / ".local" / "bin" / "historyfs").symlink_to(VENV_BIN / "historyfs")  # what set-up makes for a user
    name, _, value = unit["Environment"].partition("=")
    assert name == "HISTORYFS_API_URL" and value.startswith("https://")  # the real service: the fake stands in
    start = shlex.split(unit["ExecStart"].replace("%h", str(h)))
    proc = subprocess.Popen(start, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (_is_mounted(h / "History") and os.path.isdir(h / "History" / "by-date")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        stop = subprocess.run(shlex.split(unit["ExecStop"].replace("%h", str(h))), capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr
        assert proc.wait(30) == 0
    finally:
        unmount(h / "History")
        proc.kill()
        proc.wait()
