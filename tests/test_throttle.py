"""Pace with a fake clock: the per-minute and per-hour figures hold exactly, and the window is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from repsend.clock import FakeClock
from repsend.throttle import SendWindow, Throttle, parse_window

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo, a Monday


def sends(per_minute: int, per_hour: int, count: int) -> list[datetime]:
    clock = FakeClock(START)
    throttle = Throttle(per_minute, per_hour, clock)
    stamps = []
    for _ in range(count):
        throttle.wait()
        stamps.append(clock.now())
    return stamps


def most_in_any(stamps: list[datetime], window: timedelta) -> int:
    """The most sends in any half-open window [t, t + window) that starts at a send."""
    return max(sum(1 for s in stamps if start <= s < start + window) for start in stamps)


@pytest.mark.parametrize(("per_minute", "per_hour"), [(20, 0), (30, 300), (0, 120), (60, 100)])
def test_limits_hold_exactly_in_every_window(per_minute: int, per_hour: int) -> None:
    stamps = sends(per_minute, per_hour, 400)
    if per_minute:
        assert most_in_any(stamps, timedelta(minutes=1)) <= per_minute
    if per_hour:
        assert most_in_any(stamps, timedelta(hours=1)) == per_hour
    # Evenly spaced, as a person sends, rather than a burst followed by a long wait.
    gaps = {round((b - a).total_seconds(), 6) for a, b in zip(stamps, stamps[1:], strict=False)}
    assert len(gaps) == 1


def test_thirty_a_minute_is_exactly_thirty_in_a_minute() -> None:
    stamps = sends(30, 0, 91)
    assert most_in_any(stamps, timedelta(minutes=1)) == 30
    assert stamps[-1] - stamps[0] == timedelta(minutes=3)


def test_no_limits_never_sleeps() -> None:
    clock = FakeClock(START)
    throttle = Throttle(0, 0, clock)
    for _ in range(1000):
        throttle.wait()
    assert clock.slept == [] and clock.now() == START


def test_window_and_weekdays_in_a_time_zone() -> None:
    window = SendWindow("09:00-18:00", ["mon", "tue", "wed", "thu", "fri"], "Asia/Tokyo")
    monday_0859_tokyo = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    assert not window.is_open(monday_0859_tokyo)
    assert window.next_open(monday_0859_tokyo) == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert window.is_open(datetime(2026, 11, 23, 0, 0, tzinfo=UTC))
    assert not window.is_open(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))  # 18:00 Tokyo: closed
    friday_evening = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # Friday 19:00 Tokyo
    assert window.next_open(friday_evening) == datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday 09:00


def test_a_window_past_midnight() -> None:
    window = SendWindow("22:00-02:00", ["mon"], "UTC")
    assert window.is_open(datetime(2026, 11, 23, 23, 0, tzinfo=UTC))  # Monday 23:00
    assert window.is_open(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))  # Tuesday 01:00, Monday's window
    assert not window.is_open(datetime(2026, 11, 24, 23, 0, tzinfo=UTC))  # Tuesday 23:00


@pytest.mark.parametrize("text", ["9-18", "09:00", "09:00-09:00", "25:00-26:00"])
def test_a_malformed_window(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


def test_the_default_pace_is_the_one_the_readme_states() -> None:
    """per_minute = 20 and per_hour = 300 space mails 12 s apart (3600 s / 300), not 3 s (60 s / 20): the
    longer spacing wins, and the README says so."""
    from repsend.settings import RateSettings
    from tests.helpers import REPO

    defaults = RateSettings()
    assert (defaults.per_minute, defaults.per_hour) == (20, 300)
    stamps = sends(defaults.per_minute, defaults.per_hour, 301)
    gaps = {(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)}
    assert gaps == {12.0}
    assert most_in_any(stamps, timedelta(minutes=1)) == 5 and most_in_any(stamps, timedelta(hours=1)) == 300
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "space mails **12 s apart** (3600 s / 300): 5 a minute, 300 an hour" in readme
    assert "one every 3 s" not in readme
