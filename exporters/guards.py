"""Guards that keep a mistyped export from touching data (pure: no I/O).

- A ``--path`` folder, ``--model`` or ``--source`` that names nothing in the history is a
  ConfigError before any transfer, as an unknown ``--voice`` already is (select.resolve_voices).
  Filters that merely match nothing together (``--since`` tomorrow) are not errors.
- ``--delete`` refuses, as a whole, to remove more than ``--max-delete`` objects, and refuses to
  empty a non-empty mirror from an empty selection (whatever ``--max-delete`` says). An object is
  what the destination holds: an item's audio and its sidecar are two.

Why a default of 100 objects (50 items): rclone's ``--max-delete`` is unlimited unless set and
``aws s3 sync --delete`` has no bound at all; both trust the user's file list. historyfs's
selection is computed (from filters, a time zone, a remote listing), so one typo, a changed
``--tz`` (every key changes) or a half-empty listing could ask to delete the whole mirror - which
may be the only copy left of clips deleted at the source. Routine pruning after deleting a few
clips in the app stays well below 100 objects; anything larger must be asked for.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from historyfs.errors import ConfigError
from historyfs.layout import Placement
from historyfs.models import HistoryItem

from .select import Criteria

DEFAULT_MAX_DELETE = 100
_SHOWN = 6  # names listed in a "no such folder" message


def check_names(crit: Criteria, items: Sequence[HistoryItem], placements: Mapping[str, Placement]) -> None:
    """ConfigError when ``--path``, ``--model`` or ``--source`` names nothing in the history."""
    if crit.folder:
        _check_folder(crit.view, crit.folder, placements.values())
    if crit.model is not None:
        _check_value("model", crit.model, {i.model_id for i in items})
    if crit.source is not None:
        _check_value("source", crit.source, {i.source for i in items})


def _check_folder(view: str, folder: tuple[str, ...], places: Iterable[Placement]) -> None:
    """The folder exists when an item lies under it; else name the first missing level."""
    places = list(places)
    for depth in range(1, len(folder) + 1):
        inside = [p for p in places if p.under(view, folder[:depth])]
        if inside:
            places = inside
            continue
        here = "/".join((view, *folder[: depth - 1]))
        children = sorted({p.dir_parts(view)[depth - 1] for p in places})
        raise ConfigError(f"--path: no folder {'/'.join((view, *folder))} in the history ({_hint(here, folder[depth - 1], children)})")


def _hint(here: str, wanted: str, children: list[str]) -> str:
    close = difflib.get_close_matches(wanted, children, n=1, cutoff=0.6) or [c for c in children if c.casefold() == wanted.casefold()]
    if close:
        return f"did you mean {here}/{close[0]}?"
    if not children:
        return f"{here} is empty"
    shown = ", ".join(children[:_SHOWN]) + (", ..." if len(children) > _SHOWN else "")
    return f"{here} holds {shown}"


def _check_value(flag: str, wanted: str, present: set[str | None]) -> None:
    known = sorted(v for v in present if v)
    if wanted in known:
        return
    close = [v for v in known if v.casefold() == wanted.casefold()] or difflib.get_close_matches(wanted, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "known: " + (", ".join(known[:_SHOWN]) or "none")
    raise ConfigError(f"--{flag}: no item with {flag} {wanted!r} in the history ({hint})")


def delete_refusal(selected: int, deletes: int, max_delete: int) -> str | None:
    """Why a plan's ``deletes`` must not run, or None when it may."""
    if deletes and selected == 0:
        return f"refusing to delete all {deletes} objects of the mirror from an empty selection: nothing deleted"
    if deletes > max_delete:
        return f"refusing to delete {deletes} objects (more than --max-delete {max_delete}): nothing deleted; pass --max-delete {deletes} to allow it"
    return None


def check_max_delete(value: int) -> None:
    if value < 0:
        raise ConfigError(f"bad --max-delete {value}: expected a number of objects, 0 or more")
