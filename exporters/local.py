"""FolderDestination: mirror into a folder (``file:///path`` or a plain path); the reference destination.

Every file is written as a hidden temporary file in its final folder (audio streamed into it as
it arrives, never spooled elsewhere first), given the item's date as its mtime and the item id,
sha256 and format as extended attributes (``user.historyfs.item_id``, ``.sha256``, ``.format``,
where the filesystem allows them), fsynced, then renamed over the target (``os.replace``): a
reader or an interrupted run never sees a partial file, and a run killed before it saved its
manifest is recovered from those attributes (``describe``). Stale temporary files of an
interrupted run are removed by ``prepare``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from historyfs.errors import ConfigError

from .base import Chunks, Destination, DestinationError, DestinationOptions, ObjectInfo, Stored
from .bodies import SourceFailed, copy_body, hash_file, marked

TMP_PREFIX = ".historyfs-tmp-"
FILE_MODE = 0o644
#: Extended attributes recording what each file is (the names the mount uses for its own).
XATTR_ITEM_ID, XATTR_SHA256, XATTR_FORMAT = "user.historyfs.item_id", "user.historyfs.sha256", "user.historyfs.format"


class FolderDestination(Destination):
    """A folder on a local (or mounted) filesystem."""

    scheme = "file"
    stream_threshold = 0  # audio goes straight into its temporary file in the destination folder: nothing is spooled

    def __init__(self, url: str, options: DestinationOptions) -> None:
        self.root = folder_from_url(url)
        self._stale: list[Path] | None = None  # temporary files of interrupted runs, found by scan

    # -- primitives ------------------------------------------------------------------
    def scan(self) -> list[Stored]:
        found: list[Stored] = []
        stale: list[Path] = []
        for rel, size, path in self._walk():
            if rel.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                stale.append(path)
            else:
                found.append(Stored(rel, size))
        self._stale = stale
        return found

    def describe(self, keys: Sequence[str]) -> list[Stored]:
        """From each file's extended attributes, if its bytes still have the sha256 recorded there
        (a file changed in place keeps them); files without them are left out."""
        out = []
        for key in keys:
            try:
                with open(self._path(key), "rb") as f:
                    item_id, sha256, fmt = (os.getxattr(f.fileno(), name).decode() for name in (XATTR_ITEM_ID, XATTR_SHA256, XATTR_FORMAT))
                    hashed = hash_file(f)
            except (OSError, UnicodeDecodeError, DestinationError):
                continue
            if hashed.sha256 == sha256:
                out.append(Stored(key, hashed.size, item_id, sha256, fmt))
        return out

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DestinationError(f"cannot read {self._path(key)}: {exc.strerror}") from None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        self._atomically(key, lambda f: copy_body(body, f), lambda: info)

    def write_stream(self, key: str, chunks: Chunks, info: ObjectInfo) -> None:
        self._atomically(key, lambda f: f.writelines(marked(chunks)), lambda: replace(info, sha256=chunks.sha256, size=chunks.size))

    def _atomically(self, key: str, fill: Callable[[IO[bytes]], object], info: Callable[[], ObjectInfo]) -> None:
        """Write a hidden temporary file beside the target with ``fill``, record ``info`` on it (mtime,
        extended attributes), fsync it, rename it over the target."""
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
                _label(f.fileno(), info())
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException as exc:
            _unlink(Path(tmp))
            if isinstance(exc, SourceFailed) and exc.__cause__ is not None:
                raise exc.__cause__ from None  # the download's own error (a cut body, a cancel), as it was
            if isinstance(exc, OSError):
                raise DestinationError(f"cannot write {target}: {exc.strerror}") from None
            raise

    def remove(self, keys: Sequence[str]) -> None:
        for key in keys:
            path = self._path(key)
            _unlink(path)
            self._prune(path.parent)

    def check(self) -> None:
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"destination {self.root} is not a folder ({existing} is a file)")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"destination {self.root} is not writable")

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create destination {self.root}: {exc.strerror}") from None
        if self._stale is None:
            self.scan()
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


def _label(fd: int, info: ObjectInfo) -> None:
    """The item's date as the file's mtime, and what it is as extended attributes (skipped where unsupported)."""
    if info.date is not None:
        stamp = info.date.timestamp()
        os.utime(fd, (stamp, stamp))
    if info.item_id is None:
        return
    try:
        for name, value in ((XATTR_ITEM_ID, info.item_id), (XATTR_SHA256, info.sha256), (XATTR_FORMAT, info.format)):
            os.setxattr(fd, name, value.encode())
    except OSError:
        pass  # a filesystem without user xattrs: such files are uploaded again after a kill -9 that lost the manifest



def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DestinationError(f"cannot remove {path}: {exc.strerror}") from None
