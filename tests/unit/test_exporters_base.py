"""exporters.bodies, manifest and s3 helpers: hashing and buffering bodies, the manifest format, S3 URLs, part sizes and error lines."""

from __future__ import annotations

import hashlib
import threading

import pytest
from obstore.exceptions import GenericError, PermissionDeniedError

from exporters.bodies import Cancelled, HashingChunks, file_chunks, hash_file, spool, take
from exporters.local import folder_from_url
from exporters.manifest import Entry, dump, parse
from exporters.s3 import MIB, parse_s3_url, part_size
from exporters.s3_store import is_protected, s3_error
from historyfs.errors import ConfigError


def test_spool_hashes_and_counts_and_rewinds() -> None:
    chunks = [b"a" * 1000, b"b" * 5, b""]
    s = spool(chunks)
    assert s.size == 1005 and s.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert s.file.read() == b"".join(chunks)


def test_spool_stops_when_cancelled() -> None:
    cancel = threading.Event()

    def chunks():  # type: ignore[no-untyped-def]
        yield b"x"
        cancel.set()
        yield b"y"

    with pytest.raises(Cancelled):
        spool(chunks(), cancel)


def test_take_holds_up_to_the_limit_and_hands_back_the_rest() -> None:
    head, rest = take(iter([b"ab", b"cd", b"ef"]), 3)
    assert head == [b"ab", b"cd"] and rest is not None and list(rest) == [b"ef"]
    head, rest = take(iter([b"ab", b"cd"]), 4)
    assert head == [b"ab", b"cd"] and rest is None  # exactly the limit and nothing after: held whole
    assert take(iter([]), 0) == ([], None)
    head, rest = take(iter([b"x"]), 0)
    assert head == [] and rest is not None and list(rest) == [b"x"]


def test_hashing_chunks_know_when_the_source_ran_out() -> None:
    hashed = HashingChunks(iter([b"a" * 10, b"b"]))
    it = iter(hashed)
    next(it)
    assert not hashed.finished and hashed.size == 10
    assert list(it) == [b"b"] and hashed.finished and hashed.sha256 == hashlib.sha256(b"a" * 10 + b"b").hexdigest()


def test_a_local_file_is_hashed_in_place_in_large_pieces(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = b"z" * (3 * 1024 * 1024 + 5)
    (tmp_path / "f").write_bytes(data)
    with open(tmp_path / "f", "rb") as f:
        assert [len(c) for c in file_chunks(f)] == [1024 * 1024] * 3 + [5]
        f.seek(0)
        hashed = hash_file(f)
        assert (hashed.sha256, hashed.size, hashed.file.read()) == (hashlib.sha256(data).hexdigest(), len(data), data)


def test_manifest_round_trip_and_garbage() -> None:
    entries = {"b/k.mp3": Entry("id1", "ab", 3, "mp3"), "a/k.json": Entry("id1", "cd", 4, "json")}
    data = dump(entries)
    assert parse(data) == entries and data.count(b"\n") == 1 and data.index(b"a/k.json") < data.index(b"b/k.mp3")
    for bad in (None, b"", b"not json", b'{"version": 99, "objects": {"k": {}}}', b'{"version": 1, "objects": {"k": {"item_id": 1}}}', b"[]"):
        assert parse(bad) == {}


def test_manifest_written_by_the_indented_format_of_earlier_versions_still_reads() -> None:
    old = b'{\n "objects": {\n  "k.mp3": {\n   "format": "mp3",\n   "item_id": "i",\n   "sha256": "s",\n   "size": 3\n  }\n },\n "version": 1\n}\n'
    assert parse(old) == {"k.mp3": Entry("i", "s", 3, "mp3")}


@pytest.mark.parametrize(
    ("url", "expected"),
    [("s3://bucket", ("bucket", "")), ("s3://bucket/", ("bucket", "")), ("s3://b-1.x/a/b/", ("b-1.x", "a/b")), ("s3://bkt/My%20Folder", ("bkt", "My Folder"))],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    assert parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3:///x", "s3://b", "s3://bucket/a/../b", "s3://bucket/a//b", "s3://bucket/x?y=1", "s3://bad bucket/x"])
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_s3_url(url)


@pytest.mark.parametrize(
    ("size", "configured", "expected"),
    [(0, None, 8 * MIB), (1, None, 8 * MIB), (48 * MIB, None, 12 * MIB), (49 * MIB, None, 13 * MIB), (10**10, None, 16 * MIB), (48 * MIB, 5 * MIB, 5 * MIB)],
)
def test_part_size_follows_the_announced_size(size: int, configured: int | None, expected: int) -> None:
    assert part_size(size, configured) == expected


def test_payloads_are_signed_only_where_the_transport_does_not_protect_them() -> None:
    assert is_protected(None) and is_protected("https://minio.example:9000") and is_protected("http://127.0.0.1:9000") and is_protected("http://localhost:1")
    assert not is_protected("http://minio.lan:9000")


_HTTP = "Generic S3 error: Error performing {op} request: Error performing GET http://e/b?list-type=2 in 20ms - Server returned non-2xx status code: {status}: "


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (GenericError(_HTTP.format(op="list", status="404 Not Found") + "<Error><Code>NoSuchBucket</Code></Error>"), ConfigError, "S3 bucket 'b' does not exist"),
        (GenericError(_HTTP.format(op="get", status="403 Forbidden") + "<Error><Code>AccessDenied</Code></Error>"), ConfigError, "access denied to S3 bucket 'b' (AccessDenied)"),
        (PermissionDeniedError("The operation lacked the necessary privileges"), ConfigError, "access denied to S3 bucket 'b'"),
        (GenericError("Generic S3 error: Error performing list request: after 10 retries - HTTP error: error sending request\n\nDebug source: ..."), ConfigError, "cannot reach the S3 endpoint http://e"),
        (GenericError(_HTTP.format(op="list", status="503 Service Unavailable") + "<Error><Code>SlowDown</Code></Error>"), Exception, "S3 listing failed: SlowDown"),
        (GenericError(_HTTP.format(op="list", status="500 Internal Server Error")), Exception, "S3 listing failed: HTTP 500"),
    ],
)
def test_s3_errors_become_one_line(exc: Exception, kind: type, text: str) -> None:
    err = s3_error(exc, "listing", "b", "http://e")
    assert isinstance(err, kind) and text in str(err) and "\n" not in str(err)


def test_folder_from_url() -> None:
    assert str(folder_from_url("file:///tmp/a%20b")) == "/tmp/a b"
    assert str(folder_from_url("file://localhost/tmp/x")) == "/tmp/x"
    with pytest.raises(ConfigError):
        folder_from_url("file://otherhost/tmp/x")
