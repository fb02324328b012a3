"""Every kind of response the fake sends, checked against the spec's field tables.

The SDK does not validate, so the tables of elevenlabs-history-api.md §2 and §4 are written
here as {field: (types, required)} and checked strictly: no missing required field, no
field of the wrong type, no field the spec does not list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from historyfs.fakeapi import FakeApiServer, Faults, catalog
from tests.fixtures.fake_api import SESSION_KEY, FakeTenant

NONE = type(None)
Table = dict[str, tuple[tuple[type, ...], bool]]

SPEECH_HISTORY_ITEM: Table = {
    "history_item_id": ((str,), True),
    "request_id": ((str, NONE), False),
    "voice_id": ((str, NONE), False),
    "model_id": ((str, NONE), False),
    "voice_name": ((str, NONE), False),
    "voice_category": ((str, NONE), False),
    "text": ((str, NONE), False),
    "date_unix": ((int,), True),
    "character_count_change_from": ((int,), True),
    "character_count_change_to": ((int,), True),
    "content_type": ((str,), True),
    "state": ((str, NONE), True),
    "settings": ((dict, NONE), False),
    "feedback": ((dict, NONE), False),
    "share_link_id": ((str, NONE), False),
    "source": ((str, NONE), False),
    "alignments": ((dict, NONE), False),
    "dialogue": ((list, NONE), False),
    "output_format": ((str, NONE), False),
}
DIALOGUE_LINE: Table = {"text": ((str,), True), "voice_id": ((str,), True), "voice_name": ((str,), True)}
HISTORY_PAGE: Table = {
    "history": ((list,), True),
    "has_more": ((bool,), True),
    "last_history_item_id": ((str, NONE), False),
    "scanned_until": ((int, NONE), False),
}
DELETE_RESPONSE: Table = {"status": ((str,), True)}
APP_ERROR: Table = {"detail": ((dict,), True)}
APP_ERROR_DETAIL: Table = {"status": ((str,), True), "message": ((str,), True)}
VALIDATION_ERROR: Table = {"detail": ((list,), True)}
VALIDATION_ITEM: Table = {"loc": ((list,), True), "msg": ((str,), True), "type": ((str,), True),
                          "input": ((object,), False), "ctx": ((dict,), False)}
BARE_ERROR: Table = {"status": ((str,), True), "message": ((str,), True)}
DOWNLOAD_400: Table = {"error": ((str,), True), "message": ((str,), True), "detail": ((dict,), False)}


def check(doc: Any, table: Table, where: str = "body") -> None:
    """Assert ``doc`` is an object matching ``table`` exactly."""
    assert isinstance(doc, dict), f"{where}: not an object"
    assert not set(doc) - set(table), f"{where}: fields not in the spec: {set(doc) - set(table)}"
    for name, (types, required) in table.items():
        if name not in doc:
            assert not required, f"{where}: required field {name!r} missing"
            continue
        value = doc[name]
        assert not (isinstance(value, bool) and bool not in types), f"{where}.{name}: bool where {types} expected"
        assert isinstance(value, types), f"{where}.{name}: {type(value).__name__} is not one of {types}"


def check_item(item: Any, where: str = "item") -> None:
    check(item, SPEECH_HISTORY_ITEM, where)
    assert item["voice_category"] in (None, "premade", "cloned", "generated", "professional")
    assert item["source"] in (None, *catalog.ALL_SOURCES)
    assert item["state"] in (None, "created", "deleted", "processing")
    for i, line in enumerate(item["dialogue"] or []):
        check(line, DIALOGUE_LINE, f"{where}.dialogue[{i}]")


def check_app_error(doc: Any, status: str) -> None:
    check(doc, APP_ERROR)
    check(doc["detail"], APP_ERROR_DETAIL, "detail")
    assert doc["detail"]["status"] == status


@pytest.fixture(scope="module")
def api(fake_api: FakeApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_api.base_url, headers={"xi-api-key": SESSION_KEY}) as client:
        yield client


def test_the_checker_catches_what_it_should() -> None:
    good = {"history": [], "has_more": False}
    check(good, HISTORY_PAGE)
    for bad in ({"history": []}, {**good, "extra": 1}, {**good, "has_more": 1}, {**good, "scanned_until": True}):
        with pytest.raises(AssertionError):
            check(bad, HISTORY_PAGE)


def test_every_listed_item_and_page_matches(api: httpx.Client) -> None:
    body = api.get("/v1/history", params={"page_size": 1000}).json()
    check(body, HISTORY_PAGE)
    assert len(body["history"]) == 300
    for i, item in enumerate(body["history"]):
        check_item(item, f"history[{i}]")


def test_empty_page_matches(api: httpx.Client) -> None:
    check(api.get("/v1/history", params={"source": "InVPC"}).json(), HISTORY_PAGE)


def test_single_item_matches(api: httpx.Client, fake_api: FakeApiServer) -> None:
    for item in fake_api.library.items()[:: 30]:
        check_item(api.get(f"/v1/history/{item['history_item_id']}").json())


def test_delete_response_matches(fresh_library: FakeTenant) -> None:
    with fresh_library.client() as c:
        check(c.delete(f"/v1/history/{fresh_library.library.items()[0]['history_item_id']}").json(), DELETE_RESPONSE)


def test_error_bodies_match(api: httpx.Client, fake_api: FakeApiServer) -> None:
    check_app_error(api.get("/v1/history/nope").json(), "invalid_id")
    check_app_error(httpx.get(f"{fake_api.base_url}/v1/history").json(), "needs_authorization")
    check_app_error(httpx.get(f"{fake_api.base_url}/v1/history", headers={"xi-api-key": "bad"}).json(), "invalid_api_key")
    validation = api.get("/v1/history", params={"page_size": "x", "sort_direction": "sideways"}).json()
    check(validation, VALIDATION_ERROR)
    assert len(validation["detail"]) == 2
    for item in validation["detail"]:
        check(item, VALIDATION_ITEM, "detail[]")
    item_id = fake_api.library.items()[0]["history_item_id"]
    bad_format = api.post("/v1/history/download", json={"history_item_ids": [item_id], "output_format": "ogg"}).json()
    check(bad_format, DOWNLOAD_400)


def test_injected_error_bodies_match(api: httpx.Client, fake_faults: FakeApiServer) -> None:
    fake_faults.set_faults(Faults(fail_rate=1.0))
    seen = set()
    for _ in range(20):
        r = api.get("/v1/history", params={"page_size": 1})
        seen.add(r.status_code)
        if r.status_code == 500:
            check(r.json(), BARE_ERROR)
        else:
            check_app_error(r.json(), "service_unavailable")
    assert seen == {500, 503}
    fake_faults.set_faults(Faults(rate_limit=1))
    statuses = [api.get("/v1/history", params={"page_size": 1}) for _ in range(5)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited
    check_app_error(limited[0].json(), "rate_limit_exceeded")
