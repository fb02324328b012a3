"""Bad input at every entry point: one clear line on stderr, a non-zero exit, no traceback, no key echoed.

Entry points: `historyfs` (mount, unmount, demo, fake-api, export, exporters), `mount.historyfs`
and `python -m historyfs`, each run as a real process against the session's fake API. Each case
names a fragment the one line must contain, so the right error is reported (not any error).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from historyfs.fakeapi import FakeApiServer
from tests.fixtures.fake_api import SESSION_KEY

BIN = Path(sys.executable).parent
ENTRY = {"historyfs": [str(BIN / "historyfs")], "python -m": [sys.executable, "-m", "historyfs"],
         "mount.historyfs": [str(BIN / "mount.historyfs")]}
SECRET = "sk_SECRET_do_not_echo_0123456789"

# (entry, arguments, environment changes, fragment of the one line). Placeholders: {mnt} an empty
# folder, {file} a regular file, {full} a non-empty folder, {empty} an empty file, {url} the fake
# API, {dead} a port nobody listens on, {busy} a port in use, {dst} a fresh export folder.
CASES = [
    ("historyfs", [], {}, "required"),
    ("historyfs", ["bogus"], {}, "invalid choice"),
    ("historyfs", ["--nope"], {}, "error"),
    ("historyfs", ["mount"], {}, "required: MOUNTPOINT"),
    ("historyfs", ["mount", "/nonexistent/x"], {}, "does not exist"),
    ("historyfs", ["mount", "{file}"], {}, "not a folder"),
    ("historyfs", ["mount", "{full}"], {}, "not empty"),
    ("historyfs", ["mount", "{mnt}", "--api-url", "not a url"], {}, "bad API URL"),
    ("historyfs", ["mount", "{mnt}", "--api-url", "ftp://example.org"], {}, "bad API URL"),
    ("historyfs", ["mount", "{mnt}", "--api-url", "http://127.0.0.1:99999"], {}, "bad port"),
    ("historyfs", ["mount", "{mnt}", "--api-url", "http://u:p@127.0.0.1:1"], {}, "credentials"),
    ("historyfs", ["mount", "{mnt}", "--api-url", "http://127.0.0.1:{dead}", "--api-deadline", "1"], {}, "cannot reach"),
    ("historyfs", ["mount", "{mnt}"], {"ELEVENLABS_API_KEY": SECRET}, "refused the key"),
    ("historyfs", ["mount", "{mnt}"], {"ELEVENLABS_API_KEY": None}, "no API key"),
    ("historyfs", ["mount", "{mnt}"], {"ELEVENLABS_API_KEY": "two words"}, "spaces or control"),
    ("historyfs", ["mount", "{mnt}", "--api-key-file", "/nonexistent/key"], {}, "not found"),
    ("historyfs", ["mount", "{mnt}", "--api-key-file", "{empty}"], {}, "empty"),
    ("historyfs", ["mount", "{mnt}", "--api-key-file", "{full}"], {}, "folder"),
    ("historyfs", ["mount", "{mnt}", "--api-key", SECRET], {}, "never taken on the command line"),
    ("historyfs", ["mount", "{mnt}", f"--api-key={SECRET}"], {}, "never taken on the command line"),
    ("historyfs", ["mount", "{mnt}", "--cache-max-size", "10Q"], {}, "10Q"),
    ("historyfs", ["mount", "{mnt}", "--tz", "Not/AZone"], {}, "Not/AZone"),
    ("historyfs", ["mount", "{mnt}", "--umask", "999"], {}, "umask"),
    ("historyfs", ["mount", "{mnt}", "--formats", "flac"], {}, "formats"),
    ("historyfs", ["mount", "{mnt}", "--refresh", "-1"], {}, "refresh"),
    ("historyfs", ["mount", "{mnt}", "--api-deadline", "0"], {}, "api-deadline"),
    ("historyfs", ["mount", "{mnt}", "--uid", "root"], {}, "invalid int"),
    ("historyfs", ["mount", "{mnt}", "--cache-dir", "{file}/sub"], {}, "not a directory"),
    ("historyfs", ["mount", "{mnt}", "--log-file", "/nonexistent/dir/log"], {}, "log file"),
    ("historyfs", ["mount", "{mnt}", "--bogus-flag"], {}, "unrecognized"),
    ("historyfs", ["mount", "{mnt}", "--max-concurrency", "0"], {}, "max-concurrency"),
    ("historyfs", ["unmount"], {}, "required: MOUNTPOINT"),
    ("historyfs", ["unmount", "/nonexistent/x"], {}, "not mounted"),
    ("historyfs", ["unmount", "{mnt}"], {}, "not mounted"),
    ("historyfs", ["unmount", "/proc"], {}, "not a historyfs mount"),
    ("historyfs", ["demo", "{file}", "--no-wait"], {}, "not a folder"),
    ("historyfs", ["demo", "{full}", "--no-wait"], {}, "not empty"),
    ("historyfs", ["demo", "--items", "many"], {}, "invalid int"),
    ("historyfs", ["fake-api", "--port", "99999"], {}, "port"),
    ("historyfs", ["fake-api", "--port", "{busy}"], {}, "cannot listen"),
    ("historyfs", ["fake-api", "--fail-rate", "2"], {}, "fail"),
    ("historyfs", ["fake-api", "--bandwidth", "fast"], {}, "fast"),
    ("historyfs", ["fake-api", "--items", "-1"], {}, "items"),
    ("historyfs", ["fake-api", "--plan", "gold"], {}, "plan"),
    ("historyfs", ["fake-api", "--state", "{file}/state.json"], {}, "state"),
    ("historyfs", ["export"], {}, "required: DEST"),
    ("historyfs", ["export", "bogus://x"], {}, "bogus"),
    ("historyfs", ["export", "s3://"], {}, "bucket"),
    ("historyfs", ["export", "{dst}", "--since", "someday"], {}, "someday"),
    ("historyfs", ["export", "{dst}", "--path", "../etc"], {}, ".."),
    ("historyfs", ["export", "{dst}", "--jobs", "0"], {}, "jobs"),
    ("historyfs", ["export", "{dst}", "--max-concurrency", "two"], {}, "max-concurrency"),
    ("historyfs", ["export", "{dst}", "--multipart-chunk-size", "1k"], {}, "5 MiB"),
    ("historyfs", ["export", "{dst}"], {"ELEVENLABS_API_KEY": SECRET}, "key"),
    ("historyfs", ["export", "{file}"], {}, "folder"),
    ("historyfs", ["exporters", "--bogus"], {}, "unrecognized"),
    ("mount.historyfs", [], {}, "usage"),
    ("mount.historyfs", ["historyfs"], {}, "usage"),
    ("mount.historyfs", ["historyfs", "{mnt}", "-o"], {}, "-o needs a value"),
    ("mount.historyfs", ["historyfs", "/nonexistent/x"], {}, "does not exist"),
    ("mount.historyfs", ["historyfs", "{mnt}", "-o", "tz=Bad/Zone"], {}, "Bad/Zone"),
    ("mount.historyfs", ["historyfs", "{mnt}", "-o", "api_url=gopher://x"], {}, "bad API URL"),
    ("mount.historyfs", ["historyfs", "{mnt}", "-o", "max_concurrency=-2"], {}, "max-concurrency"),
    ("historyfs", ["mount", "{mnt}", "-o", "nonsense_opt"], {}, "nonsense_opt"),
    ("historyfs", ["mount", "{mnt}", "--foreground", "-o", "nonsense_opt"], {}, "nonsense_opt"),
    ("historyfs", ["mount", "{mnt}", "-o", "ro,direct_io"], {}, "direct_io"),
    ("python -m", [], {}, "required"),
    ("python -m", ["mount", "/nonexistent/x"], {}, "does not exist"),
    ("python -m", ["mount", "{mnt}", f"--api-key={SECRET}"], {}, "never taken on the command line"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, fake_api: FakeApiServer) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "mnt").mkdir()
    (root / "full").mkdir()
    (root / "full" / "x").write_text("x")
    (root / "file").write_text("not a folder")
    (root / "empty").write_text("")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    return {"mnt": str(root / "mnt"), "full": str(root / "full"), "file": str(root / "file"),
            "empty": str(root / "empty"), "url": fake_api.base_url, "dead": str(dead), "busy": str(fake_api.port),
            "dst": str(root / "export"), "home": str(root)}


def _env(places: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELEVENLABS", "HISTORYFS", "AWS"))}
    env.update(ELEVENLABS_API_KEY=SESSION_KEY, HISTORYFS_API_URL=places["url"], HOME=places["home"],
               XDG_CACHE_HOME=places["home"] + "/xdg")
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _id(case: object) -> str:
    entry, args = (case.values if hasattr(case, "values") else case)[:2]  # type: ignore[attr-defined, index]
    return f"{entry} {' '.join(args)}".strip()


@pytest.mark.parametrize("entry, args, env, fragment", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_gets_one_clear_line(entry: str, args: list[str], env: dict[str, str | None], fragment: str,
                                       places: dict[str, str]) -> None:
    argv = [*ENTRY[entry], *(a.format(**places) for a in args)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_env(places, env),
                              stdin=subprocess.DEVNULL)
    finally:
        if os.path.ismount(places["mnt"]):  # a case that mounted after all: never leave it behind
            subprocess.run(["fusermount", "-u", "-z", places["mnt"]], capture_output=True)
            pytest.fail(f"{argv} mounted")
    lines = done.stderr.strip().splitlines()
    notices = [ln for ln in lines if ": retrying for up to" in ln]  # an unreachable API is reported while retried
    lines = [ln for ln in lines if ln not in notices]
    assert not notices or fragment == "cannot reach", notices
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    assert len(lines) == 1, done.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]
    assert "internal error" not in lines[0]
    assert SECRET not in done.stderr + done.stdout
