"""scripts/setup decides what to install by Debian package, per Debian release, and where to link historyfs.

Runs `scripts/setup --plan` (which changes nothing) against a fake dpkg-query and apt-cache that
describe a Debian 12 or 13 machine, so the choices are tested without installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SETUP = ROOT / "scripts" / "setup"
TOOLS = ["ffmpeg", "sox", "libsox-fmt-mp3", "rsync", "file", "attr"]
BASE = ["fuse3", "python3", "python3-venv", "mount"]
DEBIAN12 = [*BASE, *TOOLS, "libfuse2", "fuse"]  # package names apt knows there
DEBIAN13 = [*BASE, *TOOLS, "libfuse2t64", "fuse"]

FAKE_DPKG = """#!/bin/sh
for name; do :; done
case " $FAKE_INSTALLED " in *" $name "*) printf 'ii ' ;; *) exit 1 ;; esac
"""
FAKE_APT_CACHE = """#!/bin/sh
echo "$2:"
case " $FAKE_KNOWN " in *" $2 "*) echo "  Candidate: 1.0-1" ;; *) echo "  Candidate: (none)" ;; esac
"""


def plan(tmp_path: Path, known: list[str], installed: list[str], *flags: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("dpkg-query", FAKE_DPKG), ("apt-cache", FAKE_APT_CACHE), ("sox", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_KNOWN": " ".join(known),
           "FAKE_INSTALLED": " ".join(installed)}
    done = subprocess.run(["bash", str(SETUP), "--plan", *flags], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        kind, _, rest = line.partition(": ")
        out[kind] = f"{out[kind]}\n{rest}" if kind in out else rest
    return out


def test_a_bare_machine_gets_everything_with_debian_12_names(tmp_path: Path) -> None:
    assert plan(tmp_path, DEBIAN12, [], "--test")["install"].split() == [*BASE, *TOOLS, "libfuse2"]


def test_debian_13_gets_libfuse2t64(tmp_path: Path) -> None:
    assert plan(tmp_path, DEBIAN13, [], "--test")["install"].split() == [*BASE, *TOOLS, "libfuse2t64"]
    assert "libfuse2" not in plan(tmp_path, DEBIAN13, [*BASE, *TOOLS, "libfuse2t64"], "--test")["install"].split()


def test_sox_without_mp3_support_is_completed(tmp_path: Path) -> None:
    """The bug that shipped: `sox` was there (command and package), libsox-fmt-mp3 was not."""
    have = [p for p in DEBIAN12 if p != "libsox-fmt-mp3"]
    assert plan(tmp_path, DEBIAN12, have, "--test")["install"] == "libsox-fmt-mp3"


def test_the_old_fuse_package_does_not_count_as_fuse3(tmp_path: Path) -> None:
    assert plan(tmp_path, DEBIAN12, ["fuse", "python3", "python3-venv", "mount"])["install"] == "fuse3"


def test_each_level_installs_what_it_promises(tmp_path: Path) -> None:
    assert plan(tmp_path, DEBIAN12, [])["install"].split() == BASE
    assert plan(tmp_path, DEBIAN12, [], "--demo")["install"].split() == [*BASE, *TOOLS]
    assert plan(tmp_path, DEBIAN12, DEBIAN12, "--bench")["install"] == "nothing"
    bad = subprocess.run(["bash", str(SETUP), "--plan", "--tset"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --tset" in bad.stderr


def test_links_point_at_this_checkout(tmp_path: Path) -> None:
    links = plan(tmp_path, DEBIAN12, DEBIAN12)["link"].splitlines()
    venv = ROOT.resolve() / ".venv" / "bin"
    home_bin = "/usr/local/bin" if os.geteuid() == 0 else f"{Path.home()}/.local/bin"
    assert links == [f"{home_bin}/historyfs -> {venv}/historyfs", f"/sbin/mount.fuse.historyfs -> {venv}/mount.historyfs"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as a user")
def test_a_user_gets_historyfs_in_local_bin(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"HOME={tmp_path}",
                           "bash", str(SETUP), "--plan"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"link: {tmp_path}/.local/bin/historyfs -> " in done.stdout
