"""Raw -o options are checked before libfuse sees them (a daemonized mount cannot show libfuse's complaint)."""

from __future__ import annotations

import pytest

from historyfs.errors import ConfigError
from historyfs.mount import check_fuse_options


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
