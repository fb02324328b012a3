"""A faithful fake of the ElevenLabs History API on 127.0.0.1 (stdlib only; shares nothing with the client).

    from historyfs.fakeapi import FakeApiServer, Faults
    with FakeApiServer(items=200, seed=1, api_key="test-key") as srv: ...   # srv.base_url, srv.library

Modules: catalog (voices, models, words), generate (seeded records), records (one item + JSON),
audio (real MP3/WAV from assets/), library (one tenant), query (listing/paging), state (--state),
faults, concurrency (requests in flight per key), stats, validation, responses, routes (/v1),
admin (/_fake), zipper (download zips), app (the pipeline), handler (the wire), server
(FakeApiServer), __main__ (`historyfs fake-api`).

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
  The per-second rate limit's 429 is {"detail": {"status": "rate_limit_exceeded", ...}} with
  Retry-After (integer seconds).
- Concurrency (max_concurrent / plan: free 2, starter 3, creator 5, pro 10, scale 15, business 15):
  history endpoints count (the spec is unsure; it says to assume so). Every /v1 request of a known
  key counts from its arrival until its last body byte is written, so a streamed audio body counts
  while it is sent; requests with a missing or unknown key, and /_fake, never count. The slot is
  taken before latency and the other faults, so latency is time spent holding it. Above the limit a
  request waits up to 50 ms for a slot (the service queues "about 50 ms"), then gets 429
  {"detail": {"status": "too_many_concurrent_requests", "code": "concurrent_limit_exceeded",
  "message"}} (both names the docs use) and no Retry-After (none is documented). The limit is the
  same for every key and counted per key.
- Every response (/v1, /_fake, unknown paths) carries current-concurrent-requests (the key's requests
  in flight, this one included; on a concurrency 429 the ones holding slots; 0 for an unknown key)
  and maximum-concurrent-requests (the limit, or 0 when none is set: the real service always has
  one, so 0 is the fake saying "no limit", and a client should read it as no information).
- chunked_audio: 2xx bodies of GET .../audio and POST /v1/history/download (bare audio and zips)
  go out with Transfer-Encoding: chunked and no Content-Length; error bodies keep Content-Length.
  A truncated chunked body stops inside a chunk and never gets the terminating zero-size chunk.
- HEAD: the real API is FastAPI, whose GET routes take no HEAD (unlike bare Starlette), so HEAD is
  405 {"detail": "Method Not Allowed"} with Allow: GET, headers only, Content-Length being that of
  the JSON it would have sent (as uvicorn does). With the ``head`` switch, HEAD on
  /v1/history/{id}/audio answers GET's headers without the body: 200 with Content-Type and the
  audio's Content-Length (none, and Transfer-Encoding: chunked, under chunked_audio), or 404
  invalid_id. HEAD on other paths stays 405. HEAD counts toward concurrency and faults like GET.
- Outage: each /v1 request's connection is reset (RST) without an answer.
- Truncation applies to 2xx bodies only; the connection closes after the partial body.
"""

from .faults import Faults
from .library import Library
from .server import FakeApiServer

__all__ = ["FakeApiServer", "Faults", "Library"]
