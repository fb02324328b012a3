"""historyfs exporters: mirror a selection of the history to S3, a folder, or a plugin's destination.

Public API (sorted):
    Cancelled, Chunks, ConfigError, Destination, DestinationError, DestinationOptions, Entry,
    ExportOptions, ExportSummary, Exporter, ItemUpload, ObjectInfo, PluginError, Registration,
    Selection, Stored, available_exporters, export, get_destination_class, open_destination, register
A destination plugin subclasses ``Destination`` (docs/PLUGINS.md; its contract suite is
``exporters.testing``). ``export`` and its option/summary types live in ``exporters.runner`` and
are imported on first use, so a plugin importing ``exporters.Destination`` does not pull in the
HTTP client.
"""

from __future__ import annotations

from typing import Any

from .base import Cancelled, Chunks, ConfigError, Destination, DestinationError, DestinationOptions, ItemUpload, ObjectInfo, PluginError, Stored
from .exporter import Exporter
from .manifest import Entry
from .registry import Registration, get_destination_class, open_destination, register
from .registry import available as available_exporters

__all__ = [
    "Cancelled",
    "Chunks",
    "ConfigError",
    "Destination",
    "DestinationError",
    "DestinationOptions",
    "Entry",
    "ExportOptions",
    "ExportSummary",
    "Exporter",
    "ItemUpload",
    "ObjectInfo",
    "PluginError",
    "Registration",
    "Selection",
    "Stored",
    "available_exporters",
    "export",
    "get_destination_class",
    "open_destination",
    "register",
]

_LAZY = {"export": "runner", "ExportOptions": "runner", "ExportSummary": "runner", "Selection": "select"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
