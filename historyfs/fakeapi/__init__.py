"""A faithful fake of the ElevenLabs History API on 127.0.0.1 (stdlib only; shares nothing with the client).

    from historyfs.fakeapi import FakeApiServer, Faults
    with FakeApiServer(items=200, seed=1, api_key="test-key") as srv: ...   # srv.base_url, srv.library

Modules: catalog (voices, models, words), generate (seeded records), records (one item + JSON),
audio (real MP3/WAV from assets/), library (one tenant), query (listing/paging), state (--state),
faults, stats, validation, responses, routes (/v1), admin (/_fake), zipper (download zips),
app (the pipeline), handler (the wire), server (FakeApiServer), __main__ (`historyfs fake-api`).

Choices made where the spec says UNCERTAIN or UNKNOWN:
- Unknown or deleted item id (get, delete, audio, download): 404 {"detail": {"status": "invalid_id", ...}}.
- Delete is hard: the item vanishes from listings at once; a second delete is 404 invalid_id.
- Cursor (start_after_history_item_id): an id never seen by this library -> 404 invalid_id; a
  deleted item's id still works (the page resumes where it used to be).
- Cursor + filters: filter, sort, then resume strictly after the cursor's position in that order.
- search: case-insensitive substring of ``text`` and of every dialogue line; an empty search is
  no filter. voice_id matches the item's own voice_id only (dialogue items have none).
- source outside the spec's enum, sort_direction other than asc/desc, page_size outside 1..1000
  and non-integer numbers: 422 in FastAPI's shape. ``search`` does not require ``source``.
- scanned_until = date_unix of the page's last item (null on an empty page).
- Missing key: 401 status "needs_authorization"; wrong key: 401 "invalid_api_key".
- Download: one id -> the bare audio (its own Content-Type; audio/wav with output_format "wav");
  two or more (duplicates count) -> application/zip, members in one folder, see zipper.py.
  output_format null/"default" = the item's own audio. Any other string -> 400 with both the
  spec's top-level {"error": "invalid_output_format", "message"} and a "detail" object.
  An empty id list -> 422 (too_short). The first unknown id -> 404 invalid_id.
- Items with content_type audio/wav (output_format pcm_22050) serve WAV bytes everywhere.
- 500 bodies are bare {"status": "internal_server_error", "message"}; 503 and 429 use "detail".
  429 carries Retry-After (integer seconds).
- Outage: each /v1 request's connection is reset (RST) without an answer.
- Truncation applies to 2xx bodies only; the connection closes after the partial body.
"""

from .faults import Faults
from .library import Library
from .server import FakeApiServer

__all__ = ["FakeApiServer", "Faults", "Library"]
