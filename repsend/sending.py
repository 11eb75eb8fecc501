"""`repsend dormant` for real: the chosen mails go out at a human pace, each a send-log row first.

The order of one send is the whole safety story: claim the row (`sending`, committed) -> SMTP -> mark
it `sent`, `failed`, `deferred` or `unknown`. A crash between the first two leaves `sending`, which the
next run turns into `unknown` and never sends again; the unique key on (campaign, address) stops a
second run from claiming what the first one holds.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from repsend.audience import History
from repsend.clock import Clock
from repsend.compose import RepeatedHeaderPolicy, run_policy, to_message
from repsend.errors import EXIT_OK, EXIT_SERVICE, EXIT_SOME_FAILED, MailError, RepsendError
from repsend.models import Decision, Reason, id15, normalize_email
from repsend.selection import RunOptions, Summary, select
from repsend.settings import Settings
from repsend.sfa.base import Source
from repsend.throttle import SendWindow, Throttle

if TYPE_CHECKING:
    from repsend.sendlog import SendLog
    from repsend.transport import Transport

# What became of one chosen contact in this run (the JSON field "outcome").
SENT, FAILED, DEFERRED, UNKNOWN, TAKEN, NOT_SENT = "sent", "failed", "deferred", "unknown", "taken", "not_sent"


@dataclass(slots=True)
class Outcome:
    state: str
    code: int | None = None
    text: str = ""
    message_id: str = ""

    def fields(self) -> dict[str, Any]:
        return {"outcome": self.state, "message_id": self.message_id or None, "smtp_code": self.code,
                "smtp_text": self.text or None}


@dataclass(slots=True)
class RunResult:
    run_id: str
    summary: Summary
    outcomes: Counter[str] = field(default_factory=Counter)
    exit_code: int = EXIT_OK
    stopped: str = ""  # why the run stopped early, for a person
    recovered: int = 0
    window_opens: datetime | None = None

    def fields(self) -> dict[str, Any]:
        counts = {k: self.outcomes.get(k, 0) for k in (SENT, FAILED, DEFERRED, UNKNOWN, TAKEN, NOT_SENT)}
        return {**counts, "run_id": self.run_id, "stopped": self.stopped or None, "recovered": self.recovered}


class Reporter:
    """What the CLI prints: a row per decision (with its outcome for a send), then the summary."""

    def decision(self, decision: Decision, outcome: Outcome | None) -> None: ...

    def progress(self, done: int, total: int, outcomes: Counter[str]) -> None: ...


def history_window(settings: Settings, as_of: date, now: datetime) -> tuple[datetime, datetime, datetime]:
    """(cooldown since, start and end of today), days in the rate time zone.

    ``since`` stays in that zone: the send log gives each mail's day in the zone of ``since``, and the
    audience compares those days with ``as_of``'s, so both must be the reps' calendar.
    """
    window = SendWindow("", [], settings.rate.timezone)
    day_start, day_end = window.day_bounds(now)
    since = datetime.combine(as_of - timedelta(days=settings.audience.cooldown_days), time(0, 0),
                             tzinfo=window.zone)
    return since, day_start.astimezone(UTC), day_end.astimezone(UTC)


def read_history(log: SendLog | None, settings: Settings, campaign: str, as_of: date, now: datetime) -> History:
    if log is None:
        return History()
    since, day_start, day_end = history_window(settings, as_of, now)
    return log.history(campaign, since, day_start, day_end)


def interleave(sends: list[Decision]) -> Iterator[Decision]:
    """Round-robin across reps, so that one rep's long list does not hold back the others."""
    queues: dict[str, deque[Decision]] = {}
    for item in sends:
        rep = item.rep
        queues.setdefault(id15(rep.id) if rep else "", deque()).append(item)
    while queues:
        for key in list(queues):
            queue = queues[key]
            yield queue.popleft()
            if not queue:
                del queues[key]


class _StopRequested:
    """SIGTERM (systemd stop, a scheduler's timeout) ends the run between two mails, never inside one."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopRequested:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (a test runner): no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def send_run(
    settings: Settings,
    source: Source,
    options: RunOptions,
    *,
    log: SendLog,
    open_transport: Callable[[], Transport],
    clock: Clock,
    reporter: Reporter,
    wait: bool = False,
) -> RunResult:
    run_id = uuid.uuid4().hex
    result = RunResult(run_id, Summary())
    now = clock.now()
    result.recovered = log.recover(now, socket.gethostname())
    window = SendWindow(settings.rate.window, settings.rate.weekdays, settings.rate.timezone)
    if not window.is_open(now):
        opens = window.next_open(now)
        if not wait:
            result.window_opens = opens
            result.stopped = f"outside the send window ({window.text}); it opens at {opens.isoformat()}"
            return result
        clock.sleep((opens - now).total_seconds())
        now = clock.now()

    history = read_history(log, settings, options.campaign, options.as_of, now)
    log.start_run(run_id, options.campaign, now, socket.gethostname(), os.getpid())
    sends: list[Decision] = []
    try:
        for item in select(settings, source, options, history, result.summary):
            if item.mail is None:
                reporter.decision(item, None)
            else:
                sends.append(item)
    except RepsendError as exc:
        # A bad template, a malformed export or an SFA failure: nothing was sent; the run says how it ended.
        log.finish_run(run_id, clock.now(), _run_counts(result), exc.exit_code)
        raise

    throttle = Throttle(settings.rate.per_minute, settings.rate.per_hour, clock)
    policy = run_policy()
    # Built before the first mail (a missing host is a config error, exit 2); it connects lazily.
    transport = open_transport() if sends else None
    consecutive = 0
    limit = settings.mail.max_consecutive_failures
    queue = interleave(sends)
    current: Decision | None = None
    try:
        with _StopRequested() as stop:
            for done, current in enumerate(queue):
                if stop.requested:
                    result.stopped = "stopped by SIGTERM"
                elif not window.is_open(clock.now()):
                    result.stopped = f"the send window closed ({window.text})"
                if result.stopped:
                    _not_sent(current, queue, result, reporter)
                    break
                throttle.wait()
                assert transport is not None
                outcome = _send_one(current, settings, log, transport, clock, run_id, options, window.zone, policy)
                result.outcomes[outcome.state] += 1
                shown = current if outcome.state != TAKEN else _taken(current)
                reporter.decision(shown, outcome)
                reporter.progress(done + 1, len(sends), result.outcomes)
                if outcome.state == SENT:
                    consecutive = 0
                elif outcome.state in (FAILED, DEFERRED, UNKNOWN):
                    consecutive += 1
                    if consecutive >= limit:
                        result.stopped = (f"{consecutive} recipients in a row failed (last: "
                                          f"{outcome.code or ''} {outcome.text}): stopped")
                        result.exit_code = EXIT_SERVICE
                        _not_sent(None, queue, result, reporter)
                        break
    except MailError as exc:
        # The server failed the run: this mail is deferred (its row says so), the rest wait.
        result.stopped = str(exc)
        result.exit_code = EXIT_SERVICE
        if current is not None:
            result.outcomes[DEFERRED] += 1
            reporter.decision(current, Outcome(DEFERRED, text=str(exc)))
        _not_sent(None, queue, result, reporter)
    finally:
        if transport is not None:
            transport.close()
        if result.exit_code == EXIT_OK and any(result.outcomes[k] for k in (FAILED, DEFERRED, UNKNOWN)):
            result.exit_code = EXIT_SOME_FAILED
        log.finish_run(run_id, clock.now(), _run_counts(result), result.exit_code)
    return result


def _run_counts(result: RunResult) -> dict[str, int]:
    return {
        "considered": result.summary.considered,
        "sent": result.outcomes[SENT],
        "failed": result.outcomes[FAILED],
        "deferred": result.outcomes[DEFERRED],
        "unknown": result.outcomes[UNKNOWN],
        "skipped": sum(result.summary.skip.values()),
    }


def _taken(decision: Decision) -> Decision:
    return Decision(decision.contact, Reason.ALREADY_SENT, decision.rep, "by another run", language=decision.language)


def _not_sent(first: Decision | None, rest: Iterator[Decision], result: RunResult, reporter: Reporter) -> None:
    for item in ([first] if first else []) + list(rest):
        result.outcomes[NOT_SENT] += 1
        reporter.decision(item, Outcome(NOT_SENT, text=result.stopped))


def _send_one(decision: Decision, settings: Settings, log: SendLog, transport: Transport, clock: Clock, run_id: str,
              options: RunOptions, zone: tzinfo, policy: RepeatedHeaderPolicy) -> Outcome:
    from repsend.transport import DeliveryUnknown, RecipientRefused, TemporaryFailure

    mail = decision.mail
    assert mail is not None and decision.rep is not None
    now = clock.now()
    message_id = make_msgid(domain=settings.company.domain)
    msg = to_message(
        mail,
        message_id=message_id,
        date=format_datetime(now.astimezone(zone)),  # the Date in the rate time zone
        unsubscribe_url=settings.mail.unsubscribe_url,
        policy=policy,
    )
    address = normalize_email(mail.to.addr_spec)
    row = log.claim(
        run_id=run_id, campaign=options.campaign, contact_id=decision.contact.id, address=address,
        rep_id=decision.rep.id, rep_email=mail.from_.addr_spec, subject=mail.subject, message_id=message_id,
        template=mail.template, language=mail.language, now=now,
    )
    if row is None:
        return Outcome(TAKEN, text="another run holds this address for the campaign")
    envelope_from = settings.mail.envelope_from or mail.from_.addr_spec
    try:
        delivered = transport.send(msg, envelope_from, mail.to.addr_spec)
    except RecipientRefused as exc:
        outcome = Outcome(FAILED, exc.code, exc.text, message_id)
    except TemporaryFailure as exc:
        outcome = Outcome(DEFERRED, exc.code, exc.text, message_id)
    except DeliveryUnknown as exc:
        outcome = Outcome(UNKNOWN, None, exc.text, message_id)
    except MailError as exc:
        # The server could not be reached or refused the session: nothing of this message went out,
        # so a later run may try it again.
        log.finish(row, DEFERRED, clock.now(), None, str(exc))
        raise
    except BaseException:
        # Interrupted inside the SMTP transaction: it may have gone out. Never again automatically.
        log.finish(row, UNKNOWN, clock.now(), None, "interrupted during the SMTP transaction")
        raise
    else:
        outcome = Outcome(SENT, delivered.code, delivered.text, message_id)
    log.finish(row, outcome.state, clock.now(), outcome.code, outcome.text)
    return outcome
