"""Which destination serves which URL scheme: built-ins plus third-party plugins, registered lazily.

Destinations are registered as "module:Class" strings (fsspec style) and imported only when a
destination of their scheme is opened, so a broken plugin cannot break the others. Third-party
plugins come from the entry-point group ``historyfs.exporters`` (name = scheme, value =
"module:Class"). Nothing is ever silently overridden: ``register(..., clobber=False)`` refuses a
taken scheme, and an entry point claiming a built-in scheme (or one already claimed) is skipped
with a warning - built-ins win. A class is validated when loaded (a ``Destination`` subclass, not
abstract, with a ``scheme`` matching its registration); failures are a PluginError naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import re
import threading
from dataclasses import dataclass, replace
from types import MappingProxyType

from historyfs.errors import ConfigError

from .base import Destination, DestinationOptions, PluginError
from .exporter import Exporter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "historyfs.exporters"
BUILTIN = "built-in"

_BUILTINS = {
    "file": "exporters.local:FolderDestination",
    "s3": "exporters.s3:S3Destination",
}
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")


@dataclass(frozen=True, slots=True)
class Registration:
    """One scheme's destination class: where it comes from (``built-in``, a distribution name, or ``runtime``)."""

    scheme: str
    target: str
    origin: str


#: Serves every scheme fsspec knows that nothing above claims (the optional extra historyfs[fsspec]).
FSSPEC = Registration("*", "exporters.fsspec_dest:FsspecDestination", "built-in, for every scheme fsspec knows")

_lock = threading.Lock()  # guards _registry, _loaded, _entry_points_done
_registry: dict[str, Registration] = {s: Registration(s, t, BUILTIN) for s, t in _BUILTINS.items()}
_loaded: dict[str, type[Destination]] = {}
_entry_points_done = False

#: Read-only view of what is registered (entry points are added on first use of the registry).
registry = MappingProxyType(_registry)


def register(scheme: str, target: str | type[Destination], *, origin: str = "runtime", clobber: bool = False) -> None:
    """Register ``target`` ("module:Class" or a class) for ``scheme``; a taken scheme needs ``clobber``."""
    _check_scheme(scheme, origin)
    text = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    with _lock:
        if scheme in _registry and not clobber:
            raise PluginError(f"exporter scheme {scheme!r} is already registered by {_registry[scheme].target}")
        _registry[scheme] = Registration(scheme, text, origin)
        _loaded.pop(scheme, None)
        if not isinstance(target, str):
            _loaded[scheme] = validate(scheme, target, text)


def unregister(scheme: str) -> None:
    """Remove a non-built-in registration (for tests and embedding applications)."""
    with _lock:
        reg = _registry.get(scheme)
        if reg is not None and reg.origin != BUILTIN:
            del _registry[scheme]
            _loaded.pop(scheme, None)


def load_entry_points(*, refresh: bool = False) -> int:
    """Register the ``historyfs.exporters`` entry points as strings; returns how many were added."""
    global _entry_points_done
    with _lock:
        if _entry_points_done and not refresh:
            return 0
        _entry_points_done = True
        added = 0
        from importlib.metadata import entry_points  # lazily: ~40 ms that a built-in destination does not need

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
            added += _add_entry_point_locked(ep.name, ep.value, _dist_name(ep))
        return added


def _add_entry_point_locked(scheme: str, target: str, origin: str) -> int:
    current = _registry.get(scheme)
    if current is not None:
        if current.target != target or current.origin != origin:
            who = "a built-in" if current.origin == BUILTIN else f"{current.target} ({current.origin})"
            log.warning("exporter plugin %s from %s claims scheme %r, already served by %s: refused", target, origin, scheme, who)
        return 0
    if not _SCHEME_RE.match(scheme):
        log.warning("exporter plugin %s from %s has an invalid scheme %r: ignored", target, origin, scheme)
        return 0
    _registry[scheme] = Registration(scheme, target, origin)
    return 1


def _dist_name(ep: object) -> str:
    name = getattr(getattr(ep, "dist", None), "name", None)
    return str(name) if name else "entry point"


def available() -> list[Registration]:
    """Every registered destination (entry points included), sorted by scheme, then fsspec's catch-all."""
    load_entry_points()
    with _lock:
        regs = sorted(_registry.values(), key=lambda r: r.scheme)
    missing = "" if _fsspec_installed() else "; not installed: pip install 'historyfs[fsspec]'"
    return [*regs, replace(FSSPEC, origin=FSSPEC.origin + missing)]


def get_destination_class(scheme: str) -> type[Destination]:
    """The validated class serving ``scheme`` (imported on first use); ConfigError if none.

    Entry points are read only for a scheme that is not built in (built-ins win anyway)."""
    if scheme not in _BUILTINS:
        load_entry_points()
    with _lock:
        if scheme in _loaded:
            return _loaded[scheme]
        reg = _registry.get(scheme)
    if reg is None:
        if _fsspec_knows(scheme):
            return validate(FSSPEC.scheme, _import(FSSPEC), FSSPEC.target)
        known = ", ".join(r.scheme for r in available() if r.scheme != FSSPEC.scheme)
        hint = "" if _fsspec_installed() else "; pip install 'historyfs[fsspec]' adds every filesystem fsspec knows"
        raise ConfigError(f"unknown destination scheme {scheme!r} (installed exporters: {known}; see `historyfs exporters`{hint})")
    cls = validate(scheme, _import(reg), reg.target)
    with _lock:
        _loaded[scheme] = cls
    return cls


def _fsspec_installed() -> bool:
    return importlib.util.find_spec("fsspec") is not None


def _fsspec_knows(scheme: str) -> bool:
    """Is ``scheme`` a protocol of fsspec (built in, or registered by a package through its entry points)?"""
    if not _fsspec_installed():
        return False
    import fsspec

    return scheme in fsspec.available_protocols()


def _import(reg: Registration) -> object:
    module_name, _, attr = reg.target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any failure of third-party code is the plugin's
        raise PluginError(f"exporter plugin {reg.target!r} ({reg.origin}) for scheme {reg.scheme!r} cannot be loaded: {exc.__class__.__name__}: {exc}") from None
    if not attr:
        raise PluginError(f"exporter plugin {reg.target!r} ({reg.origin}) should be 'module:Class'")
    return obj


def validate(scheme: str, obj: object, name: str) -> type[Destination]:
    """``obj`` if it is a usable Destination class for ``scheme``; PluginError naming ``name`` otherwise."""
    if not (inspect.isclass(obj) and issubclass(obj, Destination)):
        raise PluginError(f"exporter plugin {name!r} is not a subclass of exporters.Destination")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise PluginError(f"exporter plugin {name!r} does not implement: {missing}")
    declared = getattr(obj, "scheme", None)
    if not isinstance(declared, str) or declared != scheme:
        raise PluginError(f"exporter plugin {name!r} declares scheme {declared!r}, registered as {scheme!r}")
    return obj


def _check_scheme(scheme: str, origin: str) -> None:
    if not _SCHEME_RE.match(scheme):
        raise PluginError(f"exporter scheme {scheme!r} from {origin} is not a valid URL scheme")


def split_destination(dest: str) -> tuple[str, str]:
    """(scheme, url): ``s3://b/p`` -> ("s3", ...); a plain path -> ("file", path)."""
    if not dest or not dest.strip():
        raise ConfigError("empty destination: expected s3://bucket/prefix, file:///path or a folder")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?", dest)
    if m is None or (not m.group(2) and m.group(1).lower() not in {r.scheme for r in available()}):
        return "file", dest
    if not m.group(2):
        raise ConfigError(f"bad destination {dest!r}: expected {m.group(1)}://...")
    return m.group(1).lower(), dest


def open_destination(dest: str, options: DestinationOptions | None = None) -> Exporter:
    """An Exporter over the destination ``dest`` (its --dest-opt checked, constructed, not yet checked)."""
    scheme, url = split_destination(dest)
    cls = get_destination_class(scheme)
    opts = options or DestinationOptions()
    cls.check_options(url, opts.extra)
    return Exporter(cls(url, opts))
