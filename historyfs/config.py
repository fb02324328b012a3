"""Where settings come from: the API key, the API URL, the cache folder, sizes and time zones.

The API key is read from ELEVENLABS_API_KEY or from a file, never from argv. Nothing here
logs or echoes the key.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from datetime import tzinfo

from .errors import ConfigError

API_KEY_ENV = "ELEVENLABS_API_KEY"
API_URL_ENV = "HISTORYFS_API_URL"
DEFAULT_API_URL = "https://api.elevenlabs.io"


def load_api_key(key_file: str | os.PathLike[str] | None = None, *, required: bool = True) -> str | None:
    """The API key from ``key_file`` if given, else from $ELEVENLABS_API_KEY.

    A key file must be a regular file; its first non-empty line is the key.
    """
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"API key file not found: {key_file}") from None
        except IsADirectoryError:
            raise ConfigError(f"API key file is a folder: {key_file}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read API key file {key_file}: {exc.__class__.__name__}") from None
        key = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not key:
            raise ConfigError(f"API key file is empty: {key_file}")
        return _check_key(key)
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        return _check_key(key)
    if required:
        raise ConfigError(f"no API key: set {API_KEY_ENV} or pass --api-key-file FILE")
    return None


def _check_key(key: str) -> str:
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in key) or not key.isprintable():
        # Never echo the key itself.
        raise ConfigError("the API key contains spaces or control characters")
    return key


def resolve_api_url(arg: str | None = None) -> str:
    """The API base URL from --api-url, else $HISTORYFS_API_URL, else the real service.

    The base is scheme://host[:port][/prefix] without /v1 (paths add it).
    """
    url = (arg or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"bad API URL {url!r}: expected http(s)://host[:port]")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"bad API URL {url!r}: bad port") from None
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"bad API URL {url!r}: no query, fragment or credentials allowed")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/historyfs, or ~/.cache/historyfs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "historyfs"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700; refuse a path that is not a folder."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot create folder {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"not a folder: {path}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise ConfigError(f"cannot make {path} private (0700): {exc.strerror}") from None
    return path


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'10G', '512M', '1.5GiB', '100000' → bytes (binary multiples, like rclone)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ConfigError(f"bad size {text!r}: expected a number with an optional K, M, G or T suffix")
    n, unit = float(m.group(1)), m.group(2).lower()
    return int(n * 1024 ** "_kmgt".index(unit)) if unit else int(n)


def parse_tz(name: str | None) -> tzinfo:
    """An IANA zone name, 'UTC', or None/'local' for the machine's local zone."""
    if name is None or name.lower() == "local":
        from datetime import datetime

        local = datetime.now().astimezone().tzinfo
        assert local is not None
        tzname = os.environ.get("TZ")
        if tzname:
            try:
                return ZoneInfo(tzname.lstrip(":"))
            except (ZoneInfoNotFoundError, ValueError):
                pass
        try:
            target = os.path.realpath("/etc/localtime")
            if "zoneinfo/" in target:
                return ZoneInfo(target.split("zoneinfo/", 1)[1])
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        return local
    if name.upper() == "UTC":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}: use an IANA name like Europe/Paris, or UTC") from None
