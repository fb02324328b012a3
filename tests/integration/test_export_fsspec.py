"""`historyfs export ftp://...`: any fsspec filesystem as a destination, here a real FTP server on loopback.

The FTP password reaches fsspec through its configuration (FSSPEC_FTP_PASSWORD), never argv.
Covers: exact bytes, a no-op re-run, --delete within the guards of every destination,
--dest-opt typed and checked, one line for a server that cannot be reached, the listing of
exporters, and a password given in a URL never printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporters import get_destination_class
from exporters.fsspec_dest import FsspecDestination
from tests.fixtures.ftp import FtpServer
from tests.integration.test_export_s3 import _closed_port
from tests.integration.test_export_cli import TZ, Tenant, api_server, cli, expected_files, tenant  # noqa: F401 - fixtures


def mirrored(root: Path) -> dict[str, bytes]:
    """What the server holds under ``root``, the exporter's bookkeeping (.historyfs-*) left out."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.relative_to(root).as_posix().startswith(".historyfs")}


def test_any_scheme_fsspec_knows_and_nothing_claims_goes_to_the_fsspec_destination() -> None:
    for scheme in ("ftp", "sftp", "gcs", "az", "webdav"):
        assert get_destination_class(scheme) is FsspecDestination


def test_export_over_ftp_exact_bytes_then_a_no_op(cli: Any, tenant: Tenant, ftp_env: FtpServer) -> None:  # noqa: F811
    r = cli("export", ftp_env.url("mirror"), "--tz", TZ, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["uploaded"] == 24
    assert mirrored(ftp_env.home / "mirror") == expected_files(tenant, tenant.items())
    calls = len(tenant.requests("audio"))
    again = json.loads(cli("export", ftp_env.url("mirror"), "--tz", TZ, "--json").out)
    assert (again["uploaded"], again["skipped"]) == (0, 24) and len(tenant.requests("audio")) == calls


def test_delete_over_ftp_within_the_guards(cli: Any, tenant: Tenant, ftp_env: FtpServer) -> None:  # noqa: F811
    url, root = ftp_env.url("pruned"), ftp_env.home / "pruned"
    (root / "by-voice").mkdir(parents=True)
    (root / "by-voice" / "notes.txt").write_bytes(b"not ours")
    assert cli("export", url, "--tz", TZ).code == 0
    for item in tenant.items()[:2]:
        tenant.lib.delete(item.history_item_id)
    refused = cli("export", url, "--tz", TZ, "--delete", "--max-delete", "3")
    assert refused.code == 1 and "refusing to delete 4 objects (more than --max-delete 3)" in refused.err
    emptied = cli("export", url, "--tz", TZ, "--delete", "--since", "2099-01-01")
    assert emptied.code == 1 and "refusing to delete all" in emptied.err
    assert len(mirrored(root)) == 24 * 2 + 1  # nothing deleted by either
    done = json.loads(cli("export", url, "--tz", TZ, "--delete", "--json").out)
    assert done["deleted"] == 4
    assert mirrored(root) == {**expected_files(tenant, tenant.items()), "by-voice/notes.txt": b"not ours"}


def test_dest_opts_are_typed_and_checked(cli: Any, tenant: Tenant, ftp_env: FtpServer) -> None:  # noqa: F811
    ok = cli("export", ftp_env.url("opts"), "--tz", TZ, "--dest-opt", "timeout=20", "--dest-opt", "encoding=utf-8", "--json")
    assert ok.code == 0, ok.err
    bad = cli("export", ftp_env.url("opts"), "--dest-opt", "timeuot=20")
    assert bad.code == 1 and bad.err.count("\n") == 1
    assert "unknown --dest-opt 'timeuot' for ftp:// destinations (fsspec's FTPFileSystem takes: " in bad.err
    assert cli("export", ftp_env.url("opts"), "--dest-opt", "timeout=soon").err.strip() == "historyfs export: error: bad --dest-opt timeout: expected a number"


def test_a_server_that_cannot_be_reached_is_one_line_without_the_password(cli: Any, tenant: Tenant) -> None:  # noqa: F811
    unused_port = _closed_port()
    r = cli("export", f"ftp://someone:hunter2@127.0.0.1:{unused_port}/x", "--tz", TZ)
    assert r.code == 1 and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert f"cannot connect to ftp://someone:***@127.0.0.1:{unused_port}/x" in r.err and "hunter2" not in r.err
    assert tenant.requests("audio") == []


def test_exporters_lists_the_fsspec_catch_all(cli: Any) -> None:  # noqa: F811
    listed = json.loads(cli("exporters", "--json").out)
    assert listed[-1] == {"scheme": "*", "plugin": "exporters.fsspec_dest:FsspecDestination", "origin": "built-in, for every scheme fsspec knows"}
