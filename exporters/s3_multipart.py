"""One S3 object from a stream of chunks, as a multipart upload whose parts go out while the rest
of the body is still arriving (a download from the API, or a local file read part by part).

The chunks are cut into parts of the size the exporter chose (from the announced size). A body
that turns out to fit in one part is sent with one PutObject instead. Otherwise the upload is
created when the first part is complete, and each part is sent by a pool shared by every upload
of the exporter (``upload_part`` with a ``bytes`` body, which botocore sends with one
``sendall`` and resends as is on a retry). At most ``in_flight`` parts of one object are held
at once, so memory is bounded by the exporter's count of concurrent large objects. The object
becomes visible only when CompleteMultipartUpload is sent, after the whole body arrived and
every part succeeded; a failure or a cancel aborts the upload (a killed process leaves it to
the next run: see ``S3Destination.prepare``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .bodies import Cancelled

log = logging.getLogger(__name__)

#: The checksum each part carries with --checksum-mode when_supported (cheap: zlib's CRC32).
CHECKSUM_ALGORITHM = "CRC32"


def cut(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``chunks`` regrouped into parts of exactly ``size`` bytes (the last one may be shorter);
    a chunk that is already a whole part is passed on without a copy."""
    held: list[bytes] = []
    n = 0
    for chunk in chunks:
        while chunk:
            room = size - n
            if len(chunk) < room:
                held.append(chunk)
                n += len(chunk)
                break
            held.append(chunk[:room] if len(chunk) > room else chunk)
            chunk = chunk[room:]
            yield held[0] if len(held) == 1 else b"".join(held)
            held, n = [], 0
    if held:
        yield b"".join(held)


class PartPool:
    """The threads that send the parts of every multipart upload of one exporter (started on first use)."""

    def __init__(self, client: Any, workers: int) -> None:
        self.client, self.workers = client, workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # guards _pool

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="s3-part")
            return self._pool.submit(fn, *args)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Upload:
    """One object: ``run(parts)`` sends it (one PUT if it fits a part), or raises with nothing visible.

    Parameters:
        pool: the exporter's PartPool.
        bucket, key: where the object goes.
        extra: PutObject / CreateMultipartUpload arguments (ContentType, Metadata, SSE...).
        cancel: once set, the upload stops before its next part (Cancelled) and is aborted.
        in_flight: parts of this object sent at once (each held in memory until sent).
        checksums: each part carries a CRC32 the store verifies.
        before_create: called just before CreateMultipartUpload (the exporter's marker object).
    """

    def __init__(self, pool: PartPool, bucket: str, key: str, extra: dict[str, Any], cancel: threading.Event, in_flight: int, *,
                 checksums: bool, before_create: Callable[[], None] | None = None) -> None:
        self.pool, self.client, self.bucket, self.key, self.cancel = pool, pool.client, bucket, key, cancel
        self.extra, self.checksums, self.before_create = extra, checksums, before_create
        self.upload_id = ""
        self.futures: list[Future[dict[str, Any]]] = []
        self._room = threading.BoundedSemaphore(in_flight)

    def run(self, parts: Iterator[bytes]) -> None:
        first = next(parts, None)
        second = next(parts, None) if first is not None else None
        if second is None:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=first or b"", **self.extra)
            return
        if self.before_create is not None:
            self.before_create()
        algorithm = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM} if self.checksums else {}
        self.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self.extra, **algorithm)["UploadId"]
        try:
            for part in chain((first, second), parts):
                self._submit(part)
            done = [f.result() for f in self.futures]
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": done})
        except BaseException:
            self._abort()
            raise

    def _submit(self, part: bytes) -> None:
        """Hand ``part`` to the pool once it holds fewer than ``in_flight`` parts of this object."""
        if self.cancel.is_set():
            raise Cancelled("upload cancelled")
        self._room.acquire()
        future = self.pool.submit(self._send, len(self.futures) + 1, part)
        future.add_done_callback(lambda _f: self._room.release())
        self.futures.append(future)
        self._raise_failed()

    def _raise_failed(self) -> None:
        """Stop early when a part already failed (its error is the one the caller sees)."""
        for f in self.futures:
            if f.done() and f.exception() is not None:
                f.result()

    def _send(self, number: int, data: bytes) -> dict[str, Any]:
        if self.cancel.is_set():
            raise Cancelled("upload cancelled")
        algorithm = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM} if self.checksums else {}
        answer = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data, **algorithm)
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        checksum = answer.get(f"Checksum{CHECKSUM_ALGORITHM}")
        return {**part, f"Checksum{CHECKSUM_ALGORITHM}": checksum} if checksum else part

    def _abort(self) -> None:
        """Cancel the parts not started, wait for the others, then abort the upload (best effort)."""
        for f in self.futures:
            f.cancel()
        for f in self.futures:
            if not f.cancelled():
                f.exception()  # waits; its error was already raised or is superseded
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception as exc:  # noqa: BLE001 - the exporter's marker makes the next run abort what is left
            log.warning("could not abort the unfinished upload of %s (%s); the next run will", self.key, exc.__class__.__name__)
