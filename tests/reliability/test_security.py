"""Security: the key stays secret, the cache and the mount are private, API names never escape, no shell.

- The API key is in no argv, thread name, log line (at debug), stats.json, sidecar, xattr, cache
  file or exception text.
- The cache folder is 0700 and its files 0600; the mount has no allow_other, and another user
  cannot list it (unless --allow-other).
- Names from the API ("../../etc", "..", "/", NUL...) stay inside their folder; zip members from
  the download endpoint are plain names in one folder.
- No module runs a shell; the fake API listens on loopback only.
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from historyfs.client import HistoryClient
from historyfs.errors import ApiError
from historyfs.fakeapi import FakeApiServer, Faults
from historyfs.retry import RetryPolicy
from tests.fixtures.fake_api import FakeTenant
from tests.fixtures.mount import Mount, mounted, needs_fuse
from tests.reliability.conftest import BASE_DATE, Expected, rsync

ROOT = Path(__file__).resolve().parents[2]


# -- the key -------------------------------------------------------------------------------------
def _exercise(m: Mount, t: FakeTenant, srv: FakeApiServer, tmp: Path) -> None:
    """Reads (cold, with faults so errors get logged), xattrs, stats and a delete."""
    srv.set_faults(Faults(fail_rate=0.2, truncate_rate=0.1))
    try:
        rsync(m.path / "by-voice", tmp / "copy")
    finally:
        srv.set_faults(Faults())
    srv.set_faults(Faults(outage=True))  # uncached reads now fail with EIO after the deadline
    try:
        t.library.add_item(date_unix=BASE_DATE + 90 * 86400, audio_size=20_000)
        (m.path / "by-voice" / "no-such-voice").exists()  # a miss: a refresh that fails
    finally:
        srv.set_faults(Faults())
    audio = next(p for p in (m.path / "by-date").rglob("*.mp3"))
    for name in os.listxattr(audio):
        os.getxattr(audio, name)
    os.unlink(audio)


def _secret_places(m: Mount, pid: int, log_file: Path, cache: Path) -> dict[str, bytes]:
    places = {"cmdline": Path(f"/proc/{pid}/cmdline").read_bytes(),
              "thread names": b"".join(p.read_bytes() for p in Path(f"/proc/{pid}/task").glob("*/comm")),
              "debug log": log_file.read_bytes(), "stdout+stderr": m.log.read_bytes(),
              "stats.json": (m.path / ".historyfs" / "stats.json").read_bytes()}
    for path in (p for p in m.path.rglob("*") if p.is_file()):
        places[f"file {path.name}"] = path.read_bytes()
        places[f"xattrs {path.name}"] = b"".join(os.getxattr(path, n) for n in os.listxattr(path))
    for path in (p for p in cache.rglob("*") if p.is_file()):
        places[f"cache {path.relative_to(cache)}"] = path.read_bytes()
    return places


@needs_fuse
@pytest.mark.fuse
def test_the_key_appears_nowhere(fake_faults: FakeApiServer, small_tenant: Callable[..., FakeTenant],
                                 tmp_path: Path) -> None:
    t = small_tenant(12, seed=91)
    (tmp_path / "mnt").mkdir()
    log_file = tmp_path / "debug.log"
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache", "--debug", "--log-file", str(log_file),
                 "--allow-delete", "--api-deadline", "1", "--xattrs") as m:
        _exercise(m, t, fake_faults, tmp_path)
        places = _secret_places(m, m.proc.pid, log_file, tmp_path / "cache")
    assert b" DEBUG " in places["debug log"] and b"WARNING" in places["debug log"]  # the log really is verbose
    assert len(places) > 20
    key = t.api_key.encode()
    assert [where for where, data in places.items() if key in data] == []


def test_api_errors_never_carry_the_key(fake_faults: FakeApiServer, fresh_library: FakeTenant) -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, deadline=2)
    secret = fresh_library.api_key + "-wrong"
    errors: list[BaseException] = []
    for key, faults in ((secret, Faults()), (fresh_library.api_key, Faults(fail_rate=1.0)),
                        (fresh_library.api_key, Faults(outage=True))):
        fake_faults.set_faults(faults)
        with HistoryClient(key, fresh_library.base_url, retry=policy, timeout=2) as client:
            for call in (lambda: client.get("nope"), lambda: client.list_page(), lambda: client.delete("x")):
                with pytest.raises(ApiError) as info:
                    call()
                errors.append(info.value)
    fake_faults.set_faults(Faults())
    texts = [f"{e!s} {e!r} {e.args!r} {vars(e)!r}" for e in errors]
    assert len(texts) == 9
    assert [t for t in texts if fresh_library.api_key in t] == []


# -- private cache and mount -----------------------------------------------------------------
def _cache_modes(small_tenant: Callable[..., FakeTenant], tmp_path: Path) -> dict[str, tuple[int, int]]:
    """Mode bits of the cache folder and everything in it after a copy: name -> (mode, wanted mode)."""
    t = small_tenant(6, seed=92)
    (tmp_path / "mnt").mkdir()
    cache = tmp_path / "cache"
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, cache) as m:
        assert rsync(m.path / "by-voice", tmp_path / "copy").returncode == 0
        return {str(p.relative_to(tmp_path)): (stat.S_IMODE(p.lstat().st_mode), 0o700 if p.is_dir() else 0o600)
                for p in [cache, *cache.rglob("*")]}


@needs_fuse
@pytest.mark.fuse
def test_cache_folders_are_0700_and_blobs_0600(small_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    modes = {k: v for k, v in _cache_modes(small_tenant, tmp_path).items() if "index.sqlite3" not in k}
    assert sum(1 for k in modes if len(Path(k).name) == 64) == 6  # the six blobs
    assert {k: oct(m) for k, (m, wanted) in modes.items() if m != wanted} == {}


@needs_fuse
@pytest.mark.fuse
def test_the_index_database_is_0600(small_tenant: Callable[..., FakeTenant], tmp_path: Path) -> None:
    modes = {k: v for k, v in _cache_modes(small_tenant, tmp_path).items() if "index.sqlite3" in k}
    assert "cache/index.sqlite3" in modes
    assert {k: oct(m) for k, (m, wanted) in modes.items() if m != wanted} == {}


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder every user can reach (pytest's tmp_path is 0700, which would hide the mount anyway)."""
    path = Path(tempfile.mkdtemp(prefix="historyfs-public-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
                          capture_output=True, text=True, timeout=30)


def _mount_options(path: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return next(line.split()[3].split(",") for line in f if line.split()[1] == str(path))


@needs_fuse
@pytest.mark.fuse
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
@pytest.mark.parametrize("allow_other", [False, True], ids=["private", "allow-other"])
def test_only_the_owner_sees_the_mount_unless_allow_other(allow_other: bool, small_tenant: Callable[..., FakeTenant],
                                                          public_dir: Path, tmp_path: Path) -> None:
    t = small_tenant(4, seed=93)
    mnt, plain = public_dir / "mnt", public_dir / "plain"
    mnt.mkdir(mode=0o755)
    plain.mkdir(mode=0o755)
    extra = ["--allow-other"] if allow_other else []
    with mounted(mnt, t.base_url, t.api_key, tmp_path / "cache", *extra):
        options = _mount_options(mnt)
        other = _as_nobody("ls", str(mnt / "by-voice"))
        control = _as_nobody("ls", str(plain))
    assert control.returncode == 0, control.stderr  # nobody can reach the folder: FUSE is what refuses
    assert ("allow_other" in options) is allow_other
    if allow_other:
        assert other.returncode == 0 and other.stdout.strip(), other.stderr
    else:
        assert other.returncode != 0 and "Permission denied" in other.stderr, (other.returncode, other.stderr)


# -- names from the API --------------------------------------------------------------------------
EVIL = ["../../etc", "..", ".", "/", "a/../../b", "\\..\\..\\windows", "\x00nul", "~root", "-rf", " ", "..\n..",
        "$(touch /tmp/x)", "%2e%2e%2f", "\u202e..", "CON"]


@pytest.fixture
def evil_tenant(small_tenant: Callable[..., FakeTenant]) -> FakeTenant:
    t = small_tenant(3, seed=94)
    for i, name in enumerate(EVIL):
        t.library.add_item(date_unix=BASE_DATE + i, audio_size=20_000, voice_name=name, text=name + "/../x")
        t.library.add_item(date_unix=BASE_DATE + 100 + i, audio_size=20_000, voice_id=f"v{i}", voice_name="ok",
                           text=f"../../{name}")
    return t


@needs_fuse
@pytest.mark.fuse
def test_no_name_from_the_api_escapes_its_folder(evil_tenant: FakeTenant, tmp_path: Path) -> None:
    t, want = evil_tenant, Expected.of(evil_tenant, sidecars=False)
    (tmp_path / "mnt").mkdir()
    with mounted(tmp_path / "mnt", t.base_url, t.api_key, tmp_path / "cache") as m:
        root = os.path.realpath(m.path)
        seen: list[str] = []
        for folder, dirs, files in os.walk(m.path):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                assert name not in (".", "..") and "/" not in name and "\0" not in name, repr(name)
                assert os.path.realpath(path).startswith(root + os.sep), path
                seen.append(os.path.relpath(path, m.path))
        audio = [p for p in seen if p.startswith("by-voice/") and p.endswith(".mp3")]
        assert len(audio) == len(want.item_of) == 3 + 2 * len(EVIL)
        assert all((m.path / p).stat().st_mode & stat.S_IFREG for p in audio)


def test_zip_members_from_the_download_endpoint_are_safe(evil_tenant: FakeTenant) -> None:
    ids = [d["history_item_id"] for d in evil_tenant.library.items()]
    with HistoryClient(evil_tenant.api_key, evil_tenant.base_url) as client, client.download(ids) as stream:
        data = stream.read()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert len(names) == len(ids)
    folders = {n.split("/")[0] for n in names}
    assert len(folders) == 1
    for name in names:
        parts = name.split("/")
        assert len(parts) == 2 and parts[1] and parts[1] not in (".", ".."), name
        assert not name.startswith("/") and "\\" not in name and "\0" not in name and ".." not in parts, name


# -- no shell, loopback only -------------------------------------------------------------------
def _shell_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "system", "popen"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} shell=")
    return found


def test_no_code_runs_a_shell() -> None:
    files = [*(ROOT / "historyfs").rglob("*.py"), *(ROOT / "exporters").rglob("*.py")]
    assert len(files) > 30
    assert [hit for f in files for hit in _shell_calls(f)] == []


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    out.append(local.rsplit(":", 1)[0])
    return out


def test_the_fake_api_listens_on_loopback_only(fake_api: FakeApiServer) -> None:
    assert _listening(fake_api.port) == ["0100007F"]


def test_the_fake_api_command_listens_on_loopback_only() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "historyfs", "fake-api", "--port", str(port), "--items", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening(port) == ["0100007F"]
    finally:
        proc.terminate()
        proc.wait(30)
