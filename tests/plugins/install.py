"""Fixture ``testplugin``: install tests/plugins/historyfs_testplugin as a distribution, then remove it;
``installed(folder)`` does the same for any plugin folder (a pyproject.toml beside its package).

Installing means what pip would leave behind: a ``historyfs_testplugin-0.1.0.dist-info`` folder
(METADATA + entry_points.txt generated from the plugin's own pyproject.toml) on sys.path, next
to the plugin's source folder, so importlib.metadata finds the entry points exactly as for a
pip-installed package. This is fast (no build) and leaves nothing in the venv; subprocesses get
the same two folders through PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PLUGIN_SRC = Path(__file__).resolve().parent / "historyfs_testplugin"


@dataclass(frozen=True)
class InstalledPlugin:
    """Where the plugin is importable from, and its declared entry points (scheme -> target)."""

    paths: tuple[str, ...]
    entry_points: dict[str, str]
    dist_name: str

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a subprocess that sees the plugin."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join([*self.paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env


def write_dist_info(target: Path, source: Path = PLUGIN_SRC) -> InstalledPlugin:
    """Write the .dist-info of the plugin in ``source`` (its pyproject.toml beside its package) into ``target``."""
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    eps: dict[str, str] = project["entry-points"]["historyfs.exporters"]
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[historyfs.exporters]", *(f"{k} = {v}" for k, v in eps.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return InstalledPlugin((str(target), str(source)), dict(eps), project["name"])


@contextmanager
def installed(source: Path) -> Iterator[InstalledPlugin]:
    """The plugin in ``source`` installed (importable, its entry points registered) until the block ends."""
    from exporters import registry

    target = Path(tempfile.mkdtemp(prefix="historyfs-plugin-"))
    plugin = write_dist_info(target, source)
    sys.path[:0] = plugin.paths
    try:
        registry.load_entry_points(refresh=True)
        yield plugin
    finally:
        for p in plugin.paths:
            while p in sys.path:
                sys.path.remove(p)
        for scheme in plugin.entry_points:
            registry.unregister(scheme)
        for name in [m for m in sys.modules if any(m.split(".")[0] == pkg.name for pkg in source.iterdir())]:
            sys.modules.pop(name, None)
        shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="session")
def testplugin() -> Iterator[InstalledPlugin]:
    with installed(PLUGIN_SRC) as plugin:
        yield plugin
