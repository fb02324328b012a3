"""The official `elevenlabs` SDK (sync and async) against the fake: it must read it like the real API."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from historyfs.fakeapi import FakeApiServer, Faults, catalog
from tests.fixtures.fake_api import SESSION_KEY, FakeTenant, expected_listing, page_through

elevenlabs_client = pytest.importorskip("elevenlabs.client", reason="the elevenlabs SDK is not installed")
from elevenlabs.core.api_error import ApiError  # noqa: E402

ElevenLabs, AsyncElevenLabs = elevenlabs_client.ElevenLabs, elevenlabs_client.AsyncElevenLabs
T = TypeVar("T")

FILTERS: list[dict[str, Any]] = [
    {},
    {"sort_direction": "asc"},
    {"voice_id": catalog.VOICES[1].voice_id, "sort_direction": "desc"},
    {"model_id": "eleven_multilingual_v2", "source": "TTS"},
    {"search": "the", "date_after_unix": 1_785_000_000},
    {"date_before_unix": 1_785_000_000, "sort_direction": "asc"},
]


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _dumps(items: list[Any]) -> list[dict]:
    return [x.model_dump(mode="json") for x in items]


def _sync_listing(client: Any, page_size: int, **filters: Any) -> list[dict]:
    def get(cursor: str | None) -> tuple[list[dict], bool, str | None]:
        r = client.history.list(page_size=page_size, start_after_history_item_id=cursor, **filters)
        return _dumps(r.history), r.has_more, r.last_history_item_id

    return page_through(get)


async def _async_listing(client: Any, page_size: int, **filters: Any) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while True:
        r = await client.history.list(page_size=page_size, start_after_history_item_id=cursor, **filters)
        out.extend(_dumps(r.history))
        if not r.has_more:
            return out
        cursor = r.last_history_item_id


@pytest.fixture(scope="module")
def sdk(fake_api: FakeApiServer) -> Any:
    return ElevenLabs(api_key=SESSION_KEY, base_url=fake_api.base_url)


@pytest.mark.parametrize("page_size", [17, 100, 1000])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f) or "none")
def test_sync_paging_matches_the_library(sdk: Any, fake_api: FakeApiServer, page_size: int, filters: dict) -> None:
    assert _sync_listing(sdk, page_size, **filters) == expected_listing(fake_api.library.items(), **filters)


@pytest.mark.parametrize("page_size", [29, 1000])
@pytest.mark.parametrize("filters", FILTERS[:4], ids=lambda f: ",".join(f) or "none")
def test_async_paging_matches_the_library(fake_api: FakeApiServer, page_size: int, filters: dict) -> None:
    async def go() -> list[dict]:
        client = AsyncElevenLabs(api_key=SESSION_KEY, base_url=fake_api.base_url)
        return await _async_listing(client, page_size, **filters)

    assert run(go()) == expected_listing(fake_api.library.items(), **filters)


def test_sync_get_and_get_audio(sdk: Any, fake_api: FakeApiServer) -> None:
    for item in fake_api.library.items()[:12]:
        item_id = item["history_item_id"]
        assert sdk.history.get(item_id).model_dump(mode="json") == item
        assert b"".join(sdk.history.get_audio(item_id)) == fake_api.library.audio_bytes(item_id)


def test_sync_download_single_default_and_wav(sdk: Any, fake_api: FakeApiServer) -> None:
    item_id = fake_api.library.items()[7]["history_item_id"]
    assert b"".join(sdk.history.download(history_item_ids=[item_id])) == fake_api.library.audio_bytes(item_id)
    assert b"".join(sdk.history.download(history_item_ids=[item_id], output_format=None)) == fake_api.library.audio_bytes(item_id)
    assert b"".join(sdk.history.download(history_item_ids=[item_id], output_format="wav")) == fake_api.library.wav_bytes(item_id)


def _members(data: bytes) -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [zf.read(n) for n in zf.namelist()]


def test_sync_download_zip(sdk: Any, fake_api: FakeApiServer) -> None:
    ids = [x["history_item_id"] for x in fake_api.library.items()[20:24]]
    data = b"".join(sdk.history.download(history_item_ids=ids))
    assert _members(data) == [fake_api.library.audio_bytes(i) for i in ids]
    wav = b"".join(sdk.history.download(history_item_ids=ids[:2], output_format="wav"))
    assert _members(wav) == [fake_api.library.wav_bytes(i) for i in ids[:2]]


def test_sync_delete_then_get_is_404(fresh_library: FakeTenant) -> None:
    sdk = ElevenLabs(api_key=fresh_library.api_key, base_url=fresh_library.base_url)
    item_id = fresh_library.library.items()[2]["history_item_id"]
    assert sdk.history.delete(item_id).status == "ok"
    with pytest.raises(ApiError) as err:
        sdk.history.get(item_id)
    assert err.value.status_code == 404 and err.value.body["detail"]["status"] == "invalid_id"


def test_sync_bad_key_is_401(fake_api: FakeApiServer) -> None:
    sdk = ElevenLabs(api_key="not-the-key", base_url=fake_api.base_url)
    with pytest.raises(ApiError) as err:
        sdk.history.list()
    assert err.value.status_code == 401 and err.value.body["detail"]["status"] == "invalid_api_key"
    with pytest.raises(ApiError) as err:
        b"".join(sdk.history.get_audio(fake_api.library.items()[0]["history_item_id"]))
    assert err.value.status_code == 401


def test_async_get_audio_and_downloads(fake_api: FakeApiServer) -> None:
    lib = fake_api.library
    ids = [x["history_item_id"] for x in lib.items()[30:33]]

    async def collect(gen: Any) -> bytes:
        return b"".join([chunk async for chunk in gen])

    async def go() -> tuple[dict, bytes, bytes, bytes]:
        client = AsyncElevenLabs(api_key=SESSION_KEY, base_url=fake_api.base_url)
        got = (await client.history.get(ids[0])).model_dump(mode="json")
        audio = await collect(client.history.get_audio(ids[0]))
        wav = await collect(client.history.download(history_item_ids=[ids[1]], output_format="wav"))
        zipped = await collect(client.history.download(history_item_ids=ids))
        return got, audio, wav, zipped

    got, audio, wav, zipped = run(go())
    assert got == lib.get(ids[0]) and audio == lib.audio_bytes(ids[0]) and wav == lib.wav_bytes(ids[1])
    assert _members(zipped) == [lib.audio_bytes(i) for i in ids]


def test_async_delete_and_bad_key(fresh_library: FakeTenant) -> None:
    item_id = fresh_library.library.items()[0]["history_item_id"]

    async def go(call: Callable[[Any], Awaitable[Any]], key: str) -> Any:
        return await call(AsyncElevenLabs(api_key=key, base_url=fresh_library.base_url))

    assert run(go(lambda c: c.history.delete(item_id), fresh_library.api_key)).status == "ok"
    with pytest.raises(ApiError) as err:
        run(go(lambda c: c.history.get(item_id), fresh_library.api_key))
    assert err.value.status_code == 404
    with pytest.raises(ApiError) as err:
        run(go(lambda c: c.history.list(), "wrong-key"))
    assert err.value.status_code == 401


@pytest.mark.parametrize("faults", [Faults(chunked_audio=True), Faults(plan="free", chunked_audio=True, head=True)],
                         ids=["chunked", "free-plan-chunked-head"])
def test_sdk_reads_chunked_audio_and_limited_responses(fake_faults: FakeApiServer, faults: Faults) -> None:
    lib = fake_faults.library
    ids = [x["history_item_id"] for x in lib.items()[40:43]]
    fake_faults.set_faults(faults)
    sdk = ElevenLabs(api_key=SESSION_KEY, base_url=fake_faults.base_url)
    assert b"".join(sdk.history.get_audio(ids[0])) == lib.audio_bytes(ids[0])
    assert b"".join(sdk.history.download(history_item_ids=[ids[1]], output_format="wav")) == lib.wav_bytes(ids[1])
    assert _members(b"".join(sdk.history.download(history_item_ids=ids))) == [lib.audio_bytes(i) for i in ids]
    assert sdk.history.get(ids[2]).model_dump(mode="json") == lib.get(ids[2])

    async def go() -> tuple[bytes, bytes]:
        client = AsyncElevenLabs(api_key=SESSION_KEY, base_url=fake_faults.base_url)
        audio = b"".join([c async for c in client.history.get_audio(ids[1])])
        zipped = b"".join([c async for c in client.history.download(history_item_ids=ids[:2])])
        return audio, zipped

    audio, zipped = run(go())
    assert audio == lib.audio_bytes(ids[1]) and _members(zipped) == [lib.audio_bytes(i) for i in ids[:2]]
