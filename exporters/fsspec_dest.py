"""FsspecDestination: any filesystem fsspec knows (sftp://, ftp://, gcs://, az://, webdav://...) as a destination.

Installed with ``pip install 'historyfs[fsspec]'``; it serves every URL scheme fsspec knows that no
other destination claims. It is written as a third-party plugin would be: it imports nothing of
historyfs but the public ``exporters`` names (a test checks), so it is also a worked example.

- Objects: written to a hidden temporary name in their final folder, then renamed into place
  (``fs.mv``; where a server will not rename over a file, the old one is removed first): no
  reader and no later run ever sees a partial object. ``prepare`` removes temporaries a killed
  run left.
- Recovery: fsspec has no portable object metadata, so once an object is in place a small JSON
  record of what it is (item id, sha256, format, size) goes to ``.historyfs-meta/<key>.json``.
  ``describe`` reads it and checks the object's bytes against its sha256, so an object replaced
  behind historyfs's back is not taken for what it was.
- Threads: filesystem objects are not all thread-safe (FTP keeps one control connection), so
  each thread that writes gets its own (``skip_instance_cache``).
- Credentials and settings as fsspec takes them: in the URL (``ftp://user@host:2121/dir``),
  fsspec's configuration (``~/.config/fsspec/*.json``, ``FSSPEC_FTP_PASSWORD=...``: keep secrets
  out of the command line), and ``--dest-opt KEY=VALUE`` for the filesystem's own arguments
  (typed from its signature; an unknown key is refused in one line).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any

from exporters import Cancelled, Chunks, ConfigError, Destination, DestinationError, DestinationOptions, ObjectInfo, Stored

log = logging.getLogger(__name__)

TMP_PREFIX = ".historyfs-tmp-"
META_DIR = ".historyfs-meta"
#: Write buffer: an object up to this size is one upload (FTP: one STOR), larger ones go in pieces.
BLOCK = 8 * 1024 * 1024
_COPY = 1024 * 1024
#: Arguments every fsspec filesystem takes (AbstractFileSystem's own).
_COMMON = {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache", "asynchronous", "loop"}
_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def redact(url: str) -> str:
    """``ftp://user:secret@host`` -> ``ftp://user:***@host`` (for messages)."""
    return _PASSWORD.sub(r"\1***@", url)


def filesystem_class(protocol: str) -> Any:
    """fsspec's class for ``protocol``; ConfigError (one line, with what to install) if there is none."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{protocol}:// needs fsspec: pip install 'historyfs[fsspec]'") from None
    try:
        return fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{protocol}:// destinations: {str(exc).strip().splitlines()[0]}") from None


class FsspecDestination(Destination):
    """A folder on any fsspec filesystem."""

    scheme = "*"  # every scheme fsspec knows and no other destination claims (see exporters.registry)
    stream_threshold = 0  # audio goes straight into its temporary object: nothing is spooled

    @classmethod
    def check_options(cls, url: str, extra: Mapping[str, str]) -> None:
        _typed(filesystem_class(_protocol(url)), extra, _protocol(url))

    def __init__(self, url: str, options: DestinationOptions) -> None:
        self.url, self.protocol = redact(url), _protocol(url)
        self.fs_class = filesystem_class(self.protocol)
        # one object per thread, and no cached listings: another thread's object may have changed a folder since
        self.storage = {"use_listings_cache": False, **self.fs_class._get_kwargs_from_urls(url), **_typed(self.fs_class, options.extra, self.protocol),
                        "skip_instance_cache": True}
        self.root = self.fs_class._strip_protocol(url).rstrip("/")
        self._local = threading.local()  # .fs: this thread's filesystem object
        self._made: set[str] = set()  # folders known to exist; guarded by _made_lock
        self._made_lock = threading.Lock()
        self._aborted = threading.Event()
        self._stale: list[str] = []

    # -- primitives ------------------------------------------------------------------
    def check(self) -> None:
        fs = self._fs()
        try:
            a_file = fs.exists(self.root) and not fs.isdir(self.root)
        except Exception as exc:  # noqa: BLE001 - filesystems raise their own kinds (ftplib.error_perm is no OSError)
            raise ConfigError(f"cannot use {self.url}: {_why(exc)}") from None
        if a_file:
            raise ConfigError(f"destination {self.url} is a file, not a folder")

    def scan(self) -> list[Stored]:
        found, stale = [], []
        fs = self._fs()
        try:
            for folder, dirs, files in fs.walk(self.root, detail=True):
                if folder.rstrip("/") == self.root:
                    dirs.pop(META_DIR, None)  # records, not objects (read by describe only)
                for name, info in files.items():
                    path = f"{folder.rstrip('/')}/{name}"
                    if name.startswith(TMP_PREFIX):
                        stale.append(path)
                    else:
                        found.append(Stored(self._key(path), int(info.get("size") or 0)))
        except Exception as exc:  # noqa: BLE001 - filesystems raise their own kinds (ftplib.error_perm is no OSError)
            raise DestinationError(f"cannot list {self.url}: {_why(exc)}") from None
        self._stale = stale
        return found

    def read(self, key: str) -> bytes | None:
        fs, path = self._fs(), self._path(key)
        try:
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - filesystems raise their own kinds (ftplib.error_perm is no OSError)
            if not fs.exists(path):
                return None
            raise DestinationError(f"cannot read {key} from {self.url}: {_why(exc)}") from None

    def write(self, key: str, body: IO[bytes], info: ObjectInfo) -> None:
        # after abort, items stop; the manifest (no item id) is still written, so the run's work is recorded
        self._put(key, iter(lambda: body.read(_COPY), b""), lambda: info, stoppable=info.item_id is not None)

    def write_stream(self, key: str, chunks: Chunks, info: ObjectInfo) -> None:
        self._put(key, chunks, lambda: replace(info, sha256=chunks.sha256, size=chunks.size), stoppable=True)

    def remove(self, keys: Sequence[str]) -> None:
        fs = self._fs()
        for key in keys:
            for path in (self._path(key), self._meta(key)):
                try:
                    fs.rm_file(path)
                except FileNotFoundError:
                    pass
                except Exception as exc:  # noqa: BLE001 - filesystems raise their own kinds (ftplib.error_perm is no OSError)
                    if fs.exists(path):
                        raise DestinationError(f"cannot remove {key} from {self.url}: {_why(exc)}") from None
                self._prune(fs, path)

    def describe(self, keys: Sequence[str]) -> list[Stored]:
        return [s for s in map(self._describe_one, keys) if s is not None]

    def prepare(self) -> None:
        fs = self._fs()
        try:
            fs.makedirs(self.root, exist_ok=True)
        except Exception as exc:  # noqa: BLE001 - filesystems raise their own kinds (ftplib.error_perm is no OSError)
            raise ConfigError(f"cannot create {self.url}: {_why(exc)}") from None
        for path in self._stale:
            _quietly(fs.rm_file, path)
        self._stale = []

    def abort(self) -> None:
        self._aborted.set()

    def close(self) -> None:
        self._local = threading.local()  # the last references to this thread's connection: closed when collected

    # -- helpers ---------------------------------------------------------------------
    def _fs(self) -> Any:
        """This thread's filesystem object (connecting is the first thing that can fail)."""
        fs = getattr(self._local, "fs", None)
        if fs is None:
            try:
                fs = self._local.fs = self.fs_class(**self.storage)
            except TypeError as exc:
                raise ConfigError(f"bad --dest-opt for {self.protocol}:// destinations: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - connecting: whatever the filesystem raises is the user's to fix
                raise ConfigError(f"cannot connect to {self.url}: {_why(exc)}") from None
        return fs

    def _put(self, key: str, chunks: Iterable[bytes], info: Callable[[], ObjectInfo], *, stoppable: bool) -> None:
        """Write ``chunks`` to a temporary object beside ``key``, rename it into place, then record what it
        is (``stoppable``: give up with Cancelled once the run is aborted)."""
        fs, path = self._fs(), self._path(key)
        parent = path.rsplit("/", 1)[0]
        tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            self._makedirs(fs, parent)
            with fs.open(tmp, "wb", block_size=BLOCK) as f:
                for chunk in _marked(chunks, self._aborted if stoppable else None):
                    f.write(chunk)
            _replace(fs, tmp, path)
        except BaseException as exc:
            _quietly(fs.rm_file, tmp)
            if isinstance(exc, _SourceFailed) and exc.__cause__ is not None:
                raise exc.__cause__ from None  # the download's own error (a cut body, a cancel), as it was
            if isinstance(exc, Exception) and not isinstance(exc, (Cancelled, DestinationError)):
                raise DestinationError(f"cannot write {key} to {self.url}: {_why(exc)}") from None
            raise
        done = info()
        if done.item_id is not None:
            record = {"item_id": done.item_id, "sha256": done.sha256, "format": done.format, "size": done.size}
            try:
                self._makedirs(fs, self._meta(key).rsplit("/", 1)[0])
                fs.pipe_file(self._meta(key), json.dumps(record).encode())
            except Exception as exc:  # noqa: BLE001 - the object is stored; its record only helps recovery
                log.warning("%s: stored, but its recovery record could not be written (%s)", key, _why(exc))

    def _describe_one(self, key: str) -> Stored | None:
        fs = self._fs()
        try:
            record = json.loads(fs.cat_file(self._meta(key)))
            digest, size = hashlib.sha256(), 0
            with fs.open(self._path(key), "rb", block_size=BLOCK) as f:
                for chunk in iter(lambda: f.read(_COPY), b""):
                    digest.update(chunk)
                    size += len(chunk)
        except Exception:  # noqa: BLE001 - no record, or no object: not recoverable
            return None
        if digest.hexdigest() != record.get("sha256") or size != record.get("size"):
            return None  # replaced behind historyfs's back
        return Stored(key, size, str(record["item_id"]), digest.hexdigest(), str(record.get("format", "")))

    def _makedirs(self, fs: Any, folder: str) -> None:
        """Create ``folder`` and its parents once per run, one level at a time, under a lock: over FTP two
        threads creating the same folder fail, and "already there" is an error (a write into a folder
        that could not be made fails, with the reason)."""
        with self._made_lock:
            if folder in self._made:
                return
            level = self.root.rsplit("/", 1)[0] if folder.startswith(self.root) else ""
            for part in folder[len(level) :].strip("/").split("/"):
                level = f"{level}/{part}"
                if level not in self._made:
                    _quietly(fs.mkdir, level, False)
                    self._made.add(level)

    def _prune(self, fs: Any, path: str) -> None:
        """Remove folders left empty between ``path`` and the root (stops at the first that is not)."""
        folder = path.rsplit("/", 1)[0]
        while folder.startswith(self.root + "/") and folder != self.root:
            try:
                if fs.ls(folder, detail=False):
                    return
                fs.rmdir(folder)
            except Exception:  # noqa: BLE001 - see _put
                return
            with self._made_lock:
                self._made.discard(folder)
            folder = folder.rsplit("/", 1)[0]

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise DestinationError(f"unsafe key {key!r}")
        return f"{self.root}/{key}"

    def _meta(self, key: str) -> str:
        return f"{self.root}/{META_DIR}/{key}.json"

    def _key(self, path: str) -> str:
        return path[len(self.root) :].lstrip("/")


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _typed(fs_class: Any, extra: Mapping[str, str], protocol: str) -> dict[str, Any]:
    """``--dest-opt`` values typed from the filesystem's signature; ConfigError for a key it does not take."""
    params, open_ended = _parameters(fs_class)
    out: dict[str, Any] = {}
    for key, text in extra.items():
        if key not in params and not open_ended:
            takes = ", ".join(sorted(params))
            raise ConfigError(f"unknown --dest-opt {key!r} for {protocol}:// destinations (fsspec's {fs_class.__name__} takes: {takes})")
        out[key] = _value(key, text, params.get(key))
    return out


def _parameters(fs_class: Any) -> tuple[dict[str, Any], bool]:
    """Named arguments of the class's constructors (name -> default), and whether it passes others on
    (``**ssh_kwargs`` and the like: those cannot be checked here; the filesystem refuses a wrong one)."""
    params: dict[str, Any] = {name: None for name in _COMMON}
    open_ended = False
    for klass in fs_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass.__name__ == "AbstractFileSystem":
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.VAR_KEYWORD:
                open_ended = open_ended or p.name not in ("kwargs", "storage_options")
            elif p.kind is not p.VAR_POSITIONAL and p.name != "self":
                params.setdefault(p.name, p.default)
    return params, open_ended


def _value(key: str, text: str, default: Any) -> Any:
    """The value as the filesystem's default is typed (never printed: it may be a secret)."""
    if isinstance(default, bool) and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    for kind in (int, float):
        if isinstance(default, kind) and not isinstance(default, bool):
            try:
                return kind(text)
            except ValueError:
                raise ConfigError(f"bad --dest-opt {key}: expected a number") from None
    return text


def _replace(fs: Any, tmp: str, path: str) -> None:
    try:
        fs.mv(tmp, path)
    except Exception:  # noqa: BLE001 - see _put
        if not fs.exists(path):
            raise
        fs.rm_file(path)  # a server that will not rename over a file: the object is absent a moment, never partial
        fs.mv(tmp, path)


# Written as a third-party plugin would be (public ``exporters`` names only), so it keeps its own copy of
# what exporters.bodies.marked does for the built-in stores.
class _SourceFailed(Exception):
    """Carries (as __cause__) an error raised by the chunks being written, not by the filesystem."""


def _marked(chunks: Iterable[bytes], aborted: threading.Event | None) -> Iterator[bytes]:
    it = iter(chunks)
    while True:
        try:
            if aborted is not None and aborted.is_set():
                raise Cancelled("upload cancelled")
            chunk = next(it)
        except StopIteration:
            return
        except BaseException as exc:
            raise _SourceFailed() from exc
        yield chunk


def _quietly(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 - best effort clean-up of a temporary object
        pass


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return redact(text)
