"""`mount.historyfs`: the mount(8) helper, so `mount -t fuse.historyfs`, /etc/fstab and systemd mount units work.

Called as ``mount.historyfs <source> <mountpoint> [-o opt1,opt2,...] [-n] [-s] [-f] [-v]``. Our options
(api_url=, api_key_file=, cache_dir=, cache_max_size=, tz=, refresh=, full_resync=, formats=,
uid=, gid=, umask=, api_deadline=, max_concurrency=, views= (joined by "+": views=by-date+search), recent=,
allow_delete, read_only, allow_other, foreground, log_file=) become the
`historyfs mount` flags; generic mount options (_netdev, nofail, auto, noauto, user, users,
defaults, rw, ro, x-systemd.*, comment=...) are ignored; anything else is passed to FUSE with -o.
The source is informational (e.g. "historyfs"). The key comes from api_key_file= or the environment.
Install as /sbin/mount.fuse.historyfs (for `mount -t fuse.historyfs`) or /sbin/mount.historyfs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import cli

#: Our options that take a value, and the `historyfs mount` flag each becomes.
VALUED = {name: "--" + name.replace("_", "-") for name in (
    "api_url", "api_key_file", "cache_dir", "cache_max_size", "tz", "refresh", "full_resync", "formats",
    "uid", "gid", "umask", "log_file", "api_deadline", "max_concurrency", "views", "recent")}
FLAGS = {name: "--" + name.replace("_", "-") for name in ("allow_delete", "read_only", "allow_other", "foreground")}
IGNORED = {"_netdev", "nofail", "auto", "noauto", "user", "users", "defaults", "rw", "ro", "nouser", "owner",
           "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "sync", "async"}


def translate(argv: Sequence[str]) -> list[str]:
    """mount(8) helper arguments -> `historyfs mount` arguments (ValueError on a malformed line)."""
    positional: list[str] = []
    options: list[str] = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "-o":
            if not args:
                raise ValueError("-o needs a value")
            options += [o for o in args.pop(0).split(",") if o]
        elif a.startswith("-o"):
            options += [o for o in a[2:].split(",") if o]
        elif a.startswith("-"):
            continue  # mount(8)'s own switches: -n (no mtab), -s (sloppy), -f (fake), -v (verbose)
        else:
            positional.append(a)
    if len(positional) != 2:
        raise ValueError("usage: mount.historyfs SOURCE MOUNTPOINT [-o OPTIONS]")
    return ["mount", positional[1], *_flags(options)]


#: Options that would carry the key itself: refused, never passed on (fusermount's argv is public).
KEY_OPTIONS = {"api_key", "apikey", "key", "xi_api_key", "elevenlabs_api_key"}


def _flags(options: list[str]) -> list[str]:
    out: list[str] = []
    for opt in options:
        name, eq, value = opt.partition("=")
        if name.lower() in KEY_OPTIONS:
            raise ValueError(f"the API key is never taken as a mount option ({name}=…): use api_key_file=FILE")
        if name in VALUED and eq:
            out += [VALUED[name], value]
        elif name in FLAGS and not eq:
            out.append(FLAGS[name])
        elif name in IGNORED or name.startswith(("x-systemd.", "x-", "comment")):
            continue
        elif name == "debug":
            out.append("--debug")
        else:
            out += ["-o", opt]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = translate(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        print(f"mount.historyfs: {exc}", file=sys.stderr)
        return 1
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
