"""exporters.plan: what to upload, skip and delete, from the selection and one listing."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from exporters.manifest import Entry
from exporters.plan import make_plan, make_task
from historyfs.layout import Layout
from historyfs.models import HistoryItem


def items(n: int, content_type: str = "audio/mpeg") -> list[HistoryItem]:
    return [HistoryItem.from_json({"history_item_id": f"id{k:02d}xxxxxxxxxxxxxxxx", "date_unix": 1_790_000_000 + k, "content_type": content_type, "voice_id": "v", "voice_name": "V", "text": f"t{k}"}) for k in range(n)]


def tasks(its: list[HistoryItem], fmt: str = "mp3") -> list:
    places = Layout(ZoneInfo("UTC")).place_all(its)
    return [make_task(i, places[i.history_item_id], "by-voice", fmt) for i in its]


def held_for(ts: list, fmt: str = "mp3") -> dict[str, Entry]:
    out = {}
    for t in ts:
        out[t.audio_key] = Entry(t.item.history_item_id, "h", 100, fmt)
        out[t.sidecar_key] = Entry(t.item.history_item_id, "h", len(t.sidecar), "json")
    return out


def test_everything_new_is_uploaded() -> None:
    plan = make_plan(tasks(items(3)), {}, delete=True)
    assert (plan.selected, len(plan.uploads), plan.up_to_date, plan.deletes) == (3, 3, 0, [])


def test_held_items_are_skipped() -> None:
    ts = tasks(items(3))
    plan = make_plan(ts, held_for(ts), delete=False)
    assert (len(plan.uploads), plan.up_to_date) == (0, 3)


def test_missing_sidecar_other_item_or_format_means_upload() -> None:
    ts = tasks(items(3))
    held = held_for(ts)
    del held[ts[0].sidecar_key]
    held[ts[1].audio_key] = Entry("someone-else", "h", 100, "mp3")
    held[ts[2].sidecar_key] = Entry(ts[2].item.history_item_id, "h", 1, "json")  # sidecar changed size
    assert [t.item.history_item_id for t in make_plan(ts, held, delete=False).uploads] == [t.item.history_item_id for t in ts]
    wav = tasks(items(1), "wav")
    assert make_plan(wav, held_for(tasks(items(1))), delete=False).uploads == wav


def test_delete_only_keys_no_longer_wanted() -> None:
    ts = tasks(items(3))
    held = held_for(ts)
    plan = make_plan(ts[:1], held, delete=True)
    assert plan.deletes == sorted(k for t in ts[1:] for k in (t.audio_key, t.sidecar_key))
    assert make_plan(ts[:1], held, delete=False).deletes == []


def test_wav_keys_and_transcoding() -> None:
    (t,) = tasks(items(1), "wav")
    assert t.audio_key.endswith(".wav") and t.transcode and t.format == "wav" and t.cache_key.endswith(".wav")
    (native,) = tasks(items(1, "audio/wav"), "wav")
    assert not native.transcode and native.audio_key.endswith(".wav")
    (mp3,) = tasks(items(1))
    assert mp3.format == "mp3" and mp3.cache_key == f"{mp3.item.history_item_id}.mp3"


def test_dry_run_lines() -> None:
    ts = tasks(items(2))
    plan = make_plan(ts[:1], held_for(ts[1:]), delete=True)
    lines = plan.lines()
    assert lines[0] == f"upload {ts[0].audio_key}  (item {ts[0].item.history_item_id})"
    assert lines[1:3] == [f"delete {k}" for k in sorted((ts[1].audio_key, ts[1].sidecar_key))]
    assert lines[-1] == "plan: 1 selected, 1 to upload, 0 up to date, 2 to delete"
