"""A human pace: spacing between mails, global limits, and a send window, all read from a clock.

Mails are spaced evenly rather than sent in bursts that fill a minute's quota in a second: a person
typing notes does not send twenty at once, and providers' rate limits (Exchange Online: 30 a minute)
count the same either way. The per-rep daily cap lives with the audience rules (reason ``rep_cap``),
because it decides who is mailed today, not when.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from repsend.clock import Clock

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_window(text: str) -> tuple[time, time]:
    """'09:00-18:00' -> (09:00, 18:00); a window may run past midnight ('22:00-06:00')."""
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    except ValueError:
        raise ValueError(f"{text!r} is not a window: use HH:MM-HH:MM, e.g. '09:00-18:00'") from None
    if start == end:
        raise ValueError(f"{text!r} is an empty window")
    return start, end


class SendWindow:
    """When mail may go out: a daily time window and weekdays, in one time zone. Empty: always."""

    def __init__(self, window: str, weekdays: list[str], timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.span = parse_window(window) if window else None
        self.days = {WEEKDAYS.index(d) for d in weekdays} if weekdays else set(range(7))
        self.text = " ".join(p for p in (window, ",".join(weekdays), timezone if (window or weekdays) else "") if p)

    @property
    def always(self) -> bool:
        return self.span is None and len(self.days) == 7

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        if self.span is None:
            return local.weekday() in self.days
        start, end = self.span
        t = local.time().replace(tzinfo=None)
        if start < end:
            return local.weekday() in self.days and start <= t < end
        # Past midnight: the part after midnight belongs to the day the window opened.
        if t >= start:
            return local.weekday() in self.days
        return t < end and (local.weekday() - 1) % 7 in self.days

    def next_open(self, now: datetime) -> datetime:
        """``now`` when open, else the moment it next opens."""
        if self.is_open(now):
            return now
        local = now.astimezone(self.zone)
        start = self.span[0] if self.span else time(0, 0)
        for ahead in range(0, 8):
            day = local.date() + timedelta(days=ahead)
            candidate = datetime.combine(day, start, tzinfo=self.zone)
            if candidate > local and candidate.weekday() in self.days:
                return candidate
        raise ValueError("the send window never opens")  # unreachable: settings forbid an empty window

    def day_bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """The local calendar day around ``now``, for 'a day' in per_rep_per_day."""
        local = now.astimezone(self.zone)
        start = datetime.combine(local.date(), time(0, 0), tzinfo=self.zone)
        return start, datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=self.zone)


class Throttle:
    """Holds per_minute and per_hour exactly, in any window, by spacing and by counting."""

    def __init__(self, per_minute: int, per_hour: int, clock: Clock) -> None:
        self.clock = clock
        self.limits = [(n, timedelta(seconds=s)) for n, s in ((per_minute, 60), (per_hour, 3600)) if n > 0]
        gaps = [window / n for n, window in self.limits]
        self.gap = max(gaps) if gaps else timedelta(0)
        self._sent: deque[datetime] = deque()

    def ready(self) -> bool:
        """Whether a mail may go out now without waiting."""
        return not self.limits or self._ready_at(self.clock.now()) <= self.clock.now()

    def _ready_at(self, now: datetime) -> datetime:
        ready = now
        if self._sent:
            ready = max(ready, self._sent[-1] + self.gap)
        for count, window in self.limits:
            if len(self._sent) >= count:
                ready = max(ready, self._sent[-count] + window)
        return ready

    def wait(self) -> None:
        """Sleep (through the clock) until the next mail keeps every limit, then count it as sent."""
        if not self.limits:
            return
        now = self.clock.now()
        ready = self._ready_at(now)
        if ready > now:
            self.clock.sleep((ready - now).total_seconds())
        stamp = max(self.clock.now(), ready)
        self._sent.append(stamp)
        horizon = stamp - max(window for _, window in self.limits)
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()
