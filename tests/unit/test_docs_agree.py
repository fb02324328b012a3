"""What the README says agrees with --help and with the commands a user types after set-up."""

from __future__ import annotations

import re
from pathlib import Path

from historyfs.cli import build_parser

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _mount_help() -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return " ".join(sub.choices["mount"].format_help().split())  # type: ignore[attr-defined]


def test_the_xattrs_slowdown_is_stated_once_and_the_same() -> None:
    pattern = r"about (twice|[\w.]+ times) (?:as )?slow"
    said, helped = re.findall(pattern, " ".join(README.split())), re.findall(pattern, _mount_help())
    assert said and helped and set(said) == set(helped) == {"2.5 times"}


def test_readme_commands_call_historyfs_bare_once_it_is_on_path() -> None:
    """Set-up puts `historyfs` on PATH: no example should need .venv/bin/historyfs."""
    blocks = re.findall(r"```(?:sh|ini)?\n(.*?)```", README, re.S)
    assert blocks and not [b for b in blocks if ".venv/bin/historyfs" in b]


def test_readme_suggests_no_player_that_setup_does_not_install() -> None:
    assert "mpv" not in README
