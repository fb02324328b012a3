"""exporters.progress: counters, ETA, the rendered line, and the throttled TTY bar."""

from __future__ import annotations

import io

from exporters.progress import Progress, ProgressBar, Snapshot, human_bytes, human_seconds, render, wants_bar


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_counters_and_callback() -> None:
    clock, seen = Clock(), []
    p = Progress(4, seen.append, clock)
    clock.t += 2
    p.add_bytes(2048)
    p.item_done(True)
    p.item_done(False)
    assert seen[-1] == Snapshot(1, 4, 1, 2048, 2.0)
    assert seen[-1].rate == 1024 and seen[-1].eta == 2.0


def test_eta_unknown_before_any_item() -> None:
    assert Snapshot(0, 5, 0, 10, 1.0).eta is None
    assert human_seconds(None) == "--:--" and human_seconds(61) == "01:01" and human_seconds(3723) == "1:02:03"


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 1024**3)] == ["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]


def test_render_line() -> None:
    line = render(Snapshot(5, 10, 1, 3 * 1024 * 1024, 3.0), width=10)
    assert line == "[######----] 6/10 items, 1 failed  3.0 MiB  1.0 MiB/s  ETA 00:02"


def test_bar_redraws_at_most_at_its_rate_but_always_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(out, clock)
    bar(Snapshot(1, 3, 0, 1, 1.0))
    bar(Snapshot(2, 3, 0, 2, 1.0))  # same instant: throttled
    clock.t += 0.01
    bar(Snapshot(3, 3, 0, 3, 1.0))  # final: always drawn
    bar.finish()
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 2 and frames[-1].startswith("[########################] 3/3") and out.getvalue().endswith("\n")


def test_bar_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_bar(Tty(), quiet=False) and not wants_bar(Tty(), quiet=True) and not wants_bar(io.StringIO(), quiet=False)
