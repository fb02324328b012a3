"""LocalExporter: mirror into a folder (``file:///path`` or a plain path); the reference exporter.

Every file is written as a hidden temporary file in its final folder (audio streamed into it as
it arrives, never spooled elsewhere first), fsynced, then renamed over the target
(``os.replace``), so a reader or an interrupted run never sees a partial file. Stale
temporary files of an interrupted run are removed by ``prepare``. What the exporter wrote is
recorded by the base class in ``<folder>/.historyfs-manifest.json`` and by each item's sidecar.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from historyfs.errors import ConfigError

from .base import DestinationError, DestinationOptions, Exporter, ObjectInfo, copy_body

TMP_PREFIX = ".historyfs-tmp-"
FILE_MODE = 0o644


class LocalExporter(Exporter):
    """A folder on a local (or mounted) filesystem."""

    scheme = "file"

    def __init__(self, url: str, options: DestinationOptions | None = None) -> None:
        super().__init__(url, options)
        self.root = folder_from_url(url)
        self._stale: list[Path] | None = None  # temporary files of interrupted runs, found by _scan

    # -- primitives ------------------------------------------------------------------
    def _scan(self) -> Mapping[str, int]:
        sizes: dict[str, int] = {}
        stale: list[Path] = []
        for rel, size, path in self._walk():
            if rel.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                stale.append(path)
            else:
                sizes[rel] = size
        self._stale = stale
        return sizes

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DestinationError(f"cannot read {self._path(key)}: {exc.strerror}") from None

    def _write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        self._atomically(key, lambda f: copy_body(body, f))

    def _stream_threshold(self) -> int | None:
        return 0  # audio goes straight into its temporary file in the destination folder: nothing is spooled

    def _write_stream(self, key: str, chunks: Iterable[bytes], info: ObjectInfo) -> None:
        self._atomically(key, lambda f: f.writelines(_marked(chunks)))

    def _atomically(self, key: str, fill: Callable[[IO[bytes]], object]) -> None:
        """Write a hidden temporary file beside the target with ``fill``, fsync it, rename it over the target."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        except OSError as exc:
            raise DestinationError(f"cannot write in {target.parent}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException as exc:
            _unlink(Path(tmp))
            if isinstance(exc, _SourceFailed) and exc.__cause__ is not None:
                raise exc.__cause__ from None  # the download's own error (a cut body, a cancel), as it was
            if isinstance(exc, OSError):
                raise DestinationError(f"cannot write {target}: {exc.strerror}") from None
            raise

    def _remove(self, keys: Sequence[str]) -> None:
        for key in keys:
            path = self._path(key)
            _unlink(path)
            self._prune(path.parent)

    def _check(self) -> None:
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"destination {self.root} is not a folder ({existing} is a file)")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"destination {self.root} is not writable")

    def _prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create destination {self.root}: {exc.strerror}") from None
        if self._stale is None:
            self._scan()
        for path in self._stale or ():
            _unlink(path)
        self._stale = []

    # -- helpers ---------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        """The file of ``key``, refusing anything that would leave the root."""
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") or "\x00" in p for p in parts):
            raise DestinationError(f"unsafe key {key!r}")
        return self.root.joinpath(*parts)

    def _walk(self) -> Iterator[tuple[str, int, Path]]:
        """(relative key, size, path) of every regular file under the root."""
        stack = [self.root]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise DestinationError(f"cannot list {folder}: {exc.strerror}") from None
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    yield Path(e.path).relative_to(self.root).as_posix(), e.stat(follow_symlinks=False).st_size, Path(e.path)

    def _prune(self, folder: Path) -> None:
        """Remove now-empty folders between ``folder`` and the root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent


def folder_from_url(url: str) -> Path:
    """``file:///abs/path`` or ``file://localhost/path`` or a plain path -> an absolute Path."""
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"bad destination {url!r}: expected file:///absolute/path")
        path = unquote(parts.path)
    else:
        path = url
    if "\x00" in path:
        raise ConfigError("bad destination: NUL in path")
    return Path(os.path.abspath(os.path.expanduser(path)))


class _SourceFailed(Exception):
    """Carries (as __cause__) an error raised by the chunks being written, not by the disk."""


def _marked(chunks: Iterable[bytes]) -> Iterator[bytes]:
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except BaseException as exc:
            raise _SourceFailed() from exc
        yield chunk


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DestinationError(f"cannot remove {path}: {exc.strerror}") from None
