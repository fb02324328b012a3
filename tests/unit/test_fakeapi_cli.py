"""`historyfs fake-api` and `python -m historyfs.fakeapi` as real subprocesses.

Contract: the base URL is the first stdout line, the key to use the second; SIGTERM/SIGINT
stop it with exit 0; bad input is one line on stderr and a non-zero exit; --state and
--add-every work. Every process started here is killed in a finally block.
"""

from __future__ import annotations

import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

HISTORYFS = [sys.executable, "-m", "historyfs"]
URL_RE = re.compile(r"^http://127\.0\.0\.1:(\d+)$")


class Running:
    """A started fake-api process with its first two lines read."""

    def __init__(self, proc: subprocess.Popen[str], url: str, key: str) -> None:
        self.proc, self.url, self.key = proc, url, key

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"xi-api-key": self.key}, timeout=10)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


def _first_lines(proc: subprocess.Popen[str], n: int = 2, timeout: float = 20) -> list[str]:
    """The first ``n`` stdout lines (a reader thread, so a silent process cannot hang the test)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for _ in range(n):
            lines.put(proc.stdout.readline().rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        return [lines.get(timeout=timeout) for _ in range(n)]
    except queue.Empty:
        raise AssertionError("no output from the fake API in time") from None


def _env(key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    return env if key is None else {**env, "ELEVENLABS_API_KEY": key}


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    procs: list[subprocess.Popen[str]] = []

    def run(*args: str, key: str | None = None, cmd: list[str] | None = None) -> Running:
        proc = subprocess.Popen([*(cmd or [*HISTORYFS, "fake-api"]), "--port", "0", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(key))
        procs.append(proc)
        url, second = _first_lines(proc)
        assert URL_RE.match(url), f"first line is not the base URL: {url!r}"
        return Running(proc, url, key or second.split("=", 1)[1])

    try:
        yield run
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=20)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def test_first_line_is_the_url_then_the_demo_key(start: Callable[..., Running]) -> None:
    srv = start("--items", "25")
    assert srv.key.startswith("demo-")
    with srv.client() as c:
        assert len(c.get("/v1/history").json()["history"]) == 25
    assert srv.stop() == 0


def test_env_key_is_used_and_not_printed(start: Callable[..., Running]) -> None:
    secret = "sk_cli_test_secret_0001"
    srv = start("--items", "3", key=secret)
    with srv.client() as c:
        assert c.get("/v1/history").status_code == 200
    assert srv.stop(signal.SIGINT) == 0
    out, err = srv.proc.communicate(timeout=20)
    assert secret not in out and secret not in err


def test_python_m_fakeapi_works_the_same(start: Callable[..., Running]) -> None:
    srv = start("--items", "4", "--seed", "9", cmd=[sys.executable, "-m", "historyfs.fakeapi"])
    with srv.client() as c:
        assert len(c.get("/v1/history").json()["history"]) == 4
    assert srv.stop() == 0


def test_fault_flags_reach_the_server(start: Callable[..., Running]) -> None:
    srv = start("--items", "3", "--fail-rate", "1")
    with srv.client() as c:
        assert c.get("/v1/history").status_code in (500, 503)
    assert srv.stop() == 0


def test_limit_flags_reach_the_server(start: Callable[..., Running]) -> None:
    srv = start("--items", "3", "--plan", "free", "--chunked-audio", "--head")
    with srv.client() as c:
        item_id = c.get("/v1/history").json()["history"][0]["history_item_id"]
        audio = c.get(f"/v1/history/{item_id}/audio")
        head = c.head(f"/v1/history/{item_id}/audio")
    assert audio.headers["maximum-concurrent-requests"] == "2" and "content-length" not in audio.headers
    assert audio.content and head.status_code == 200
    assert srv.stop() == 0


def test_help_documents_the_limit_flags() -> None:
    out = subprocess.run([*HISTORYFS, "fake-api", "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--max-concurrent", "--plan", "--chunked-audio", "--head"):
        assert flag in out


def test_state_persists_deletes_and_additions_across_restarts(start: Callable[..., Running], tmp_path: Path) -> None:
    state = tmp_path / "fake-state.json"
    srv = start("--items", "10", "--state", str(state), key="k")
    with srv.client() as c:
        victim = c.get("/v1/history").json()["history"][4]["history_item_id"]
        assert c.delete(f"/v1/history/{victim}").status_code == 200
        added = c.post("/_fake/items", json={"text": "survives a restart"}).json()
    assert srv.stop() == 0
    again = start("--items", "10", "--state", str(state), key="k")
    with again.client() as c:
        assert c.get(f"/v1/history/{victim}").status_code == 404
        assert c.get(f"/v1/history/{added['history_item_id']}").json() == added
        assert len(c.get("/v1/history").json()["history"]) == 10
    assert again.stop() == 0


def test_add_every_adds_new_items(start: Callable[..., Running]) -> None:
    srv = start("--items", "5", "--add-every", "0.1")
    with srv.client() as c:
        deadline = time.monotonic() + 20
        while len(c.get("/v1/history").json()["history"]) < 8:
            assert time.monotonic() < deadline, "no new items appeared"
            time.sleep(0.05)
    assert srv.stop() == 0


@pytest.mark.parametrize("args", [
    ["--bandwidth", "fast"], ["--fail-rate", "2"], ["--port", "70000"], ["--items", "-1"], ["--add-every", "-3"],
    ["--max-concurrent", "-1"], ["--max-concurrent", "two"], ["--plan", "gold"], ["--plan", "free", "--max-concurrent", "4"],
])
def test_bad_input_is_one_line_and_nonzero(args: list[str]) -> None:
    proc = subprocess.run([*HISTORYFS, "fake-api", *args], capture_output=True, text=True, timeout=60, env=_env(None))
    assert proc.returncode != 0 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_damaged_state_file_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text("{oops")
    proc = subprocess.run([*HISTORYFS, "fake-api", "--state", str(state)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "state file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
