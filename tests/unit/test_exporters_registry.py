"""exporters.registry: lazy registration, validation at load, no silent clobbering, destination URLs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO

import pytest

from exporters import ConfigError, Destination, DestinationOptions, Exporter, ObjectInfo, PluginError, Stored, registry
from exporters.local import FolderDestination
from exporters.registry import get_destination_class, open_destination, register, split_destination, unregister


class GoodExporter(Destination):
    scheme = "unit-good"
    dest_options = {"colour": "the colour of the objects"}

    def __init__(self, url: str, options: DestinationOptions) -> None:
        self.extra = dict(options.extra)

    def scan(self) -> list[Stored]:
        return []

    def read(self, key: str) -> bytes | None:
        return None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        pass

    def remove(self, keys: Sequence[str]) -> None:
        pass


class Incomplete(Destination):
    scheme = "unit-incomplete"


class WrongScheme(GoodExporter):
    scheme = "something-else"


NotAClass = 42


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    for s in ("unit-good", "unit-lazy", "unit-incomplete", "unit-wrong", "unit-missing", "unit-notclass", "unit-nomodule"):
        unregister(s)


def test_builtins_are_registered_lazily_as_strings() -> None:
    assert registry.registry["s3"].target == "exporters.s3:S3Destination"
    assert registry.registry["file"].origin == "built-in"
    assert get_destination_class("file") is FolderDestination


def test_register_a_string_loads_and_validates_on_first_use() -> None:
    register("unit-good", f"{__name__}:GoodExporter")
    assert registry.registry["unit-good"].origin == "runtime"
    assert get_destination_class("unit-good") is GoodExporter
    opened = open_destination("unit-good://x")
    assert isinstance(opened, Exporter) and isinstance(opened.destination, GoodExporter)


def test_clobber_is_refused_unless_asked() -> None:
    register("unit-good", GoodExporter)
    with pytest.raises(PluginError, match="already registered"):
        register("unit-good", f"{__name__}:GoodExporter")
    with pytest.raises(PluginError, match="already registered"):
        register("s3", GoodExporter)
    register("unit-good", f"{__name__}:GoodExporter", clobber=True)
    assert get_destination_class("unit-good") is GoodExporter


@pytest.mark.parametrize(
    ("scheme", "target", "message"),
    [
        ("unit-incomplete", f"{__name__}:Incomplete", "does not implement: read, remove, scan, write"),
        ("unit-wrong", f"{__name__}:WrongScheme", "declares scheme 'something-else', registered as 'unit-wrong'"),
        ("unit-notclass", f"{__name__}:NotAClass", "is not a subclass of exporters.Destination"),
        ("unit-missing", f"{__name__}:NoSuchThing", "cannot be loaded: AttributeError"),
        ("unit-nomodule", "no_such_module_xyz:Cls", "cannot be loaded: ModuleNotFoundError"),
    ],
)
def test_bad_plugins_raise_a_plugin_error_naming_them(scheme: str, target: str, message: str) -> None:
    register(scheme, target)
    with pytest.raises(PluginError, match=message) as info:
        get_destination_class(scheme)
    assert target in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_invalid_scheme_names_are_refused() -> None:
    with pytest.raises(PluginError, match="not a valid URL scheme"):
        register("Bad Scheme", GoodExporter)


def test_entry_point_conflicts_are_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with registry._lock:
        assert registry._add_entry_point_locked("s3", "evil:S3", "evil-dist") == 0
        assert registry._add_entry_point_locked("unit-lazy", "pkg:Cls", "dist-a") == 1
        assert registry._add_entry_point_locked("unit-lazy", "other:Cls", "dist-b") == 0
    assert registry.registry["s3"].target == "exporters.s3:S3Destination"
    assert registry.registry["unit-lazy"].origin == "dist-a"
    messages = [r.getMessage() for r in caplog.records]
    assert any("evil:S3" in m and "built-in" in m and "refused" in m for m in messages)
    assert any("other:Cls" in m and "pkg:Cls" in m for m in messages)


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("s3://bucket/prefix", ("s3", "s3://bucket/prefix")),
        ("S3://bucket", ("s3", "S3://bucket")),
        ("file:///tmp/x", ("file", "file:///tmp/x")),
        ("/tmp/x", ("file", "/tmp/x")),
        ("relative/dir", ("file", "relative/dir")),
        ("backup:2026", ("file", "backup:2026")),
    ],
)
def test_split_destination(dest: str, expected: tuple[str, str]) -> None:
    assert split_destination(dest) == expected


@pytest.mark.parametrize("dest", ["", "  ", "s3:bucket", "file:/tmp"])
def test_bad_destinations(dest: str) -> None:
    with pytest.raises(ConfigError):
        split_destination(dest)


def test_unknown_scheme_lists_what_is_installed() -> None:
    with pytest.raises(ConfigError, match=r"unknown destination scheme 'nosuchscheme' \(installed exporters: .*file.*s3"):
        open_destination("nosuchscheme://host/x")


def test_dest_opts_reach_the_destination_and_unknown_keys_are_refused_in_one_line() -> None:
    register("unit-good", GoodExporter)
    opened = open_destination("unit-good://x", DestinationOptions(extra={"colour": "blue"}))
    assert isinstance(opened.destination, GoodExporter) and opened.destination.extra == {"colour": "blue"}
    with pytest.raises(ConfigError, match=r"^unknown --dest-opt 'color' for unit-good:// destinations \(they take: colour\)$"):
        open_destination("unit-good://x", DestinationOptions(extra={"color": "blue"}))
    with pytest.raises(ConfigError, match=r"unknown --dest-opt 'colour' for file:// destinations \(they take: none\)"):
        open_destination("/tmp/somewhere", DestinationOptions(extra={"colour": "blue"}))
