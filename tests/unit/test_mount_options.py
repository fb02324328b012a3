"""Raw -o options are checked before libfuse sees them (a daemonized mount cannot show libfuse's complaint)."""

from __future__ import annotations

import pytest

from dataclasses import replace
from pathlib import Path

from historyfs.core import Options
from historyfs.errors import ConfigError
from historyfs.mount import KERNEL_CACHE_SECONDS, MountSettings, check_fuse_options, fuse_kwargs


def test_known_options_pass_through_in_order() -> None:
    opts = ["allow_root", "max_read=65536", "fsname=work", "nonempty", "uid=1000", "noexec"]
    assert check_fuse_options(opts) == tuple(opts)


@pytest.mark.parametrize("bad,fragment", [
    ("nonsense_opt", "unknown FUSE option"),
    ("max_read", "unknown FUSE option"),  # needs a value
    ("allow_other=1", "unknown FUSE option"),  # takes none
    ("direct_io", "direct I/O per file"),
    ("kernel_cache", "page cache per file"),
    ("nothreads", "must not freeze"),
])
def test_refused_options_name_themselves(bad: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        check_fuse_options(["ro", bad])
    assert bad.split("=")[0] in str(info.value)


def test_each_libfuse_version_gets_its_own_options() -> None:
    assert check_fuse_options(["big_writes"], major=2) == ("big_writes",)
    with pytest.raises(ConfigError, match="libfuse 3"):
        check_fuse_options(["big_writes"], major=3)  # gone in libfuse 3: it would refuse to mount
    assert check_fuse_options(["max_idle_threads=20", "nonempty"], major=3) == ("max_idle_threads=20", "nonempty")


def _settings(**options: object) -> MountSettings:
    return MountSettings(mountpoint=Path("/m"), api_url="http://127.0.0.1:1", api_key="k", cache_dir=Path("/c"),
                         cache_max_size=1, options=Options(**options))  # type: ignore[arg-type]


def test_libfuse3_lets_the_kernel_cache_attributes_and_libfuse2_cannot() -> None:
    v3, v2 = fuse_kwargs(_settings(), 3), fuse_kwargs(_settings(), 2)
    assert v3["attr_timeout"] == v3["entry_timeout"] == KERNEL_CACHE_SECONDS > 0
    assert v2["attr_timeout"] == 0  # libfuse 2 cannot tell the kernel a path changed
    assert v3["default_permissions"] and v2["default_permissions"]  # the kernel checks modes: X_OK false
    assert v3["ro"] and "ro" not in fuse_kwargs(_settings(allow_delete=True), 3)
    assert "max_background" not in v3 and "nonempty" not in fuse_kwargs(replace(_settings(), fuse_options=("nonempty",)), 3)
    assert v3["max_idle_threads"] == v3["max_threads"]  # else libfuse 3.14.0 prints a complaint on every mount
