"""Uploading one S3 object from a stream of chunks: one PUT when it is small, else a multipart
upload whose parts go out while the rest of the body is still arriving.

The body is cut into ``part_size`` parts as it arrives (a download from the API, or a local
file read part by part). A body shorter than one part is sent with a single PutObject. A longer
one opens a multipart upload when its first part is complete; each part is uploaded by a pool
shared by every upload of the exporter, so parts of one object go out in parallel while its
next part is still being received. Memory is bounded by ``max_parts`` parts in flight across all
uploads (a slot is taken before a part is read, given back when its upload ends). The object
becomes visible only when CompleteMultipartUpload is sent, after the whole body arrived and
every part succeeded; any failure or cancel aborts the upload (a killed process leaves it for
``S3Exporter.prepare`` of the next run to abort). Each part is retried by botocore's own retry
policy (its body is bytes, so a retry resends it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .base import Cancelled

log = logging.getLogger(__name__)

#: The checksum S3 computes per part when botocore's request checksums are on ("when_supported").
CHECKSUM_ALGORITHM = "CRC32"


def cut(chunks: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    """``chunks`` regrouped into parts of exactly ``part_size`` bytes (the last one may be shorter)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= part_size:
            yield bytes(buf[:part_size])
            del buf[:part_size]
    if buf:
        yield bytes(buf)


class PartUploader:
    """Uploads objects from chunk streams; one per exporter, used from many threads at once.

    Parameters:
        client: a botocore S3 client.
        part_size: bytes per part (S3: at least 5 MiB).
        workers: parts uploaded at once, across all objects.
        max_parts: parts held in memory at once, across all objects (at least ``workers``).
        checksums: send CRC32 part checksums (botocore's "when_supported" mode).
    """

    def __init__(self, client: Any, part_size: int, workers: int, max_parts: int, *, checksums: bool) -> None:
        self.client, self.part_size, self.checksums = client, part_size, checksums
        self._slots = threading.BoundedSemaphore(max(max_parts, workers))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-part")

    def upload(self, bucket: str, key: str, chunks: Iterable[bytes], extra: dict[str, Any], cancel: threading.Event | None = None) -> None:
        """Store ``chunks`` as ``key``; raises the first failure (the object then does not exist).

        ``cancel``, once set, stops the upload before its next part (Cancelled)."""
        cancel = cancel or threading.Event()
        parts = cut(chunks, self.part_size)
        first = self._next_part(parts, cancel)  # holds a memory slot unless None
        if first is None:
            self.client.put_object(Bucket=bucket, Key=key, Body=b"", **extra)
        elif len(first) < self.part_size:
            try:
                self.client.put_object(Bucket=bucket, Key=key, Body=first, **extra)
            finally:
                self._slots.release()
        else:
            _Multipart(self, bucket, key, extra, cancel).run(first, parts)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _next_part(self, parts: Iterator[bytes], cancel: threading.Event) -> bytes | None:
        """Take a memory slot, then read the next part (None at the end: the slot is given back)."""
        self._slots.acquire()
        try:
            if cancel.is_set():
                raise Cancelled("upload cancelled")
            part = next(parts, None)
        except BaseException:
            self._slots.release()
            raise
        if part is None:
            self._slots.release()
        return part

    def _submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Run ``fn`` on the pool; its memory slot is given back when it ends or is cancelled."""
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _f: self._slots.release())
        return future


class _Multipart:
    """One multipart upload: create, parts in parallel, then complete, or abort on any failure."""

    def __init__(self, uploader: PartUploader, bucket: str, key: str, extra: dict[str, Any], cancel: threading.Event) -> None:
        self.up, self.bucket, self.key, self.cancel = uploader, bucket, key, cancel
        self.extra = {**extra, "ChecksumAlgorithm": CHECKSUM_ALGORITHM} if uploader.checksums else dict(extra)
        self.upload_id = ""
        self.futures: list[Future[dict[str, Any]]] = []

    def run(self, first: bytes, rest: Iterator[bytes]) -> None:
        try:
            self.upload_id = self.up.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self.extra)["UploadId"]
        except BaseException:
            self.up._slots.release()  # the first part's slot
            raise
        try:
            self._send_parts(first, rest)
            parts = [f.result() for f in self.futures]
            self.up.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            self._abort()
            raise

    def _send_parts(self, first: bytes, rest: Iterator[bytes]) -> None:
        part: bytes | None = first
        while part is not None:
            self.futures.append(self.up._submit(self._send, len(self.futures) + 1, part))
            self._raise_failed()
            part = self.up._next_part(rest, self.cancel)

    def _raise_failed(self) -> None:
        """Stop early when a part already failed (its error is what the caller sees)."""
        for f in self.futures:
            if f.done() and f.exception() is not None:
                f.result()

    def _send(self, number: int, data: bytes) -> dict[str, Any]:
        if self.cancel.is_set():
            raise Cancelled("upload cancelled")
        args = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM} if self.up.checksums else {}
        answer = self.up.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data, **args)
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        checksum = answer.get(f"Checksum{CHECKSUM_ALGORITHM}")
        return {**part, f"Checksum{CHECKSUM_ALGORITHM}": checksum} if checksum else part

    def _abort(self) -> None:
        """Cancel parts not started, wait for the others, then abort the upload (best effort)."""
        for f in self.futures:
            f.cancel()
        for f in self.futures:
            if not f.cancelled():
                f.exception()  # wait; its error was already reported or is superseded
        try:
            self.up.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception as exc:  # noqa: BLE001 - the next run's prepare() aborts what is left
            log.warning("could not abort the unfinished upload of %s (%s); the next run will", self.key, exc.__class__.__name__)
