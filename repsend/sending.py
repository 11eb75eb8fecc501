"""`repsend dormant` for real: the chosen mails go out at a human pace, each a send-log row first.

The order of one send is the whole safety story: claim the row (`sending`, committed) -> SMTP -> mark
it `sent`, `failed`, `deferred` or `unknown`. A crash between the first two leaves `sending`, which the
next run turns into `unknown` and never sends again; the unique key on (campaign, address) stops a
second run from claiming what the first one holds.
"""

from __future__ import annotations

import heapq
import os
import signal
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repsend.assignment import variant_of
from repsend.audience import History
from repsend.clock import Clock
from repsend.compose import RepeatedHeaderPolicy, run_policy, to_message
from repsend.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SERVICE,
    EXIT_SOME_FAILED,
    EXIT_STOPPED,
    MailError,
    RepsendError,
)
from repsend.models import Decision, Reason, id15, normalize_email
from repsend.selection import RunOptions, Summary, select
from repsend.settings import Settings
from repsend.sfa.base import Source
from repsend.throttle import SendWindow, Throttle
from repsend.unsubscribe import link_for
from repsend.writeback import task_payload

if TYPE_CHECKING:
    from repsend.sendlog import Run, SendLog
    from repsend.transport import Transport
    from repsend.writeback import Synced

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
    run_id: str  # "" when no run began (an error before it, outside the send window)
    summary: Summary
    outcomes: Counter[str] = field(default_factory=Counter)
    exit_code: int = EXIT_OK  # what the process returns, and the run row records
    stopped: str = ""  # why the run stopped early, for a person
    error: RepsendError | None = None  # the error that stopped it, if one did
    terminated: bool = False  # SIGTERM stopped it
    recovered: int = 0
    closed_runs: list[Run] = field(default_factory=list)  # runs left open by a killed process, closed now
    window_opens: datetime | None = None
    started: bool = False  # the run row was written: mails may have gone out
    synced: Synced | None = None  # what the write-back to the SFA did after the run (None: none was made)
    sync_error: str = ""  # why it stopped, if the SFA failed it: the records wait for `repsend sync`

    def fields(self) -> dict[str, Any]:
        counts = {k: self.outcomes.get(k, 0) for k in (SENT, FAILED, DEFERRED, UNKNOWN, TAKEN, NOT_SENT)}
        return {**counts, "run_id": self.run_id or None, "stopped": self.stopped or None, "recovered": self.recovered,
                "exit_code": self.exit_code,
                "window_opens": self.window_opens.isoformat() if self.window_opens else None}


class Reporter:
    """What the CLI prints: a row per decision (with its outcome for a send), notes for a person, then the
    summary (the last thing a run writes, so that a failure to write it is the run's exit code too)."""

    def variants(self, names: tuple[str, ...]) -> None:
        """The template's variants, once the setup found them and before the first decision."""

    def decision(self, decision: Decision, outcome: Outcome | None) -> None: ...

    def progress(self, done: int, total: int, outcomes: Counter[str]) -> None: ...

    def note(self, text: str) -> None: ...

    def summary(self, result: RunResult) -> None: ...


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


def read_history_readonly(settings: Settings, campaign: str, as_of: date, now: datetime) -> History | None:
    """What the send log knows, read without writing (a dry run, preview, doctor); None without a log."""
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # no log yet: nothing to read, and no reason to load SQLAlchemy to learn that
    from repsend.sendlog import SendLog

    log = SendLog.open_readonly(url)
    if log is None:
        return None
    try:
        return read_history(log, settings, campaign, as_of, now)
    finally:
        log.close()


class RepQueues:
    """The mails decided and not yet sent, one queue per rep, taken in turn: the rep served longest ago
    (or never) goes next, so that one rep's long list does not hold back the others. It holds only what
    the pace has not let out yet: memory grows with the sends waiting, never with the org."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Decision]] = {}
        self._turns: list[tuple[int, int, str]] = []  # (last served, first seen, rep) of reps with mail waiting
        self._served: dict[str, int] = {}
        self._seen = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, decision: Decision) -> None:
        rep = id15(decision.rep.id) if decision.rep else ""
        queue = self._queues.get(rep)
        if queue is None:
            queue = self._queues[rep] = deque()
        if not queue:
            self._seen += 1
            heapq.heappush(self._turns, (self._served.get(rep, -1), self._seen, rep))
        queue.append(decision)
        self._count += 1

    def take(self) -> Decision:
        """The next mail to send (the queue must not be empty)."""
        served, seen, rep = heapq.heappop(self._turns)
        queue = self._queues[rep]
        decision = queue.popleft()
        self._count -= 1
        self._seen += 1
        self._served[rep] = self._seen
        if queue:
            heapq.heappush(self._turns, (self._seen, seen, rep))
        else:
            del self._queues[rep]
        return decision

    def drain(self) -> Iterator[Decision]:
        while self._count:
            yield self.take()


class _Terminated(Exception):
    """SIGTERM during a wait, where nothing is half done: the wait ends at once."""


class _Waiting:
    """The context of ``_StopRequested.waiting``: made once a run, entered at each mail (cheaply)."""

    __slots__ = ("stop",)

    def __init__(self, stop: _StopRequested) -> None:
        self.stop = stop

    def __enter__(self) -> None:
        if self.stop.requested:
            raise _Terminated
        self.stop._waiting = True

    def __exit__(self, *exc: object) -> None:
        self.stop._waiting = False


class _StopRequested:
    """SIGTERM (systemd stop, a scheduler's timeout) ends the run between two mails, never inside one; a
    wait (the pace's, the send window's) it ends at once, so that the scheduler need not kill the run."""

    def __init__(self) -> None:
        self.requested = False
        self._waiting = False
        self._previous: Any = None
        self._wait = _Waiting(self)

    def __enter__(self) -> _StopRequested:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (a test runner): no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._waiting:
            self._waiting = False
            raise _Terminated

    def waiting(self) -> _Waiting:
        """``with stop.waiting():`` around a block that only waits: a SIGTERM before or inside it raises
        ``_Terminated``."""
        return self._wait

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
    """One real run: the send window, then the selection streamed into the delivery, each decision
    reported as it is made (a skip) or sent (a send), then the summary.

    Once the run row is written, every way the run ends is recorded in it with the exit code the process
    returns: an error (a ``RepsendError``: in ``result.error``, not raised), SIGTERM, Ctrl-C, a full disk.
    Only a bug propagates (its row says 1, Python's code for it)."""
    result = RunResult("", Summary())
    host = socket.gethostname()
    now = clock.now()
    result.closed_runs = log.close_dead_runs(now, host)
    result.recovered = log.recover(now, host)
    window = SendWindow(settings.rate.window, settings.rate.weekdays, settings.rate.timezone)
    for run in result.closed_runs:
        reporter.note(_closed_note(run, window.zone))
    if result.recovered:
        reporter.note(f"{result.recovered} send(s) were interrupted by a crash or kill and are now 'unknown' "
                      "in the send log: they will not be sent again automatically")
    with _StopRequested() as stop:
        if not _window_open(window, clock, wait, result, stop, reporter):
            reporter.summary(result)
            return result
        now = clock.now()
        history = read_history(log, settings, options.campaign, options.as_of, now)
        result.run_id = uuid.uuid4().hex
        log.start_run(result.run_id, options.campaign, now, host, os.getpid())
        result.started = True
        delivery = _Delivery(settings, options, log, open_transport, clock, window, reporter, result, stop)
        try:
            try:
                # The setup (a bad template, a malformed export, an SFA that refuses) fails here, before any mail.
                decisions = select(settings, source, options, history, result.summary)
                reporter.variants(decisions.variants)
                delivery.variants = decisions.variants
                delivery.run(decisions)
            finally:
                delivery.close()
        except RepsendError as exc:
            # What went out is in the send log; a failure after it (an SFA error while paging contacts, an
            # export changed under the run, a full disk) still says how the run ended.
            _stopped_by(result, exc)
        except KeyboardInterrupt:
            result.stopped = "interrupted (Ctrl-C)"
            result.exit_code = EXIT_INTERRUPTED
        except BaseException:
            with suppress(RepsendError):  # the bug is what to show, not a send log that fails too
                log.finish_run(result.run_id, clock.now(), _run_counts(result), EXIT_SOME_FAILED)
            raise
        if result.exit_code != EXIT_INTERRUPTED:
            # After the run, and after one that stopped (SIGTERM, the window, failures, an error): its Tasks.
            _write_back(settings, source, log, clock, result, reporter)
        result.exit_code = _exit_code(result)
        try:
            reporter.summary(result)
        except RepsendError as exc:  # the output failed at its last line
            if result.error is None:
                _stopped_by(result, exc)
        log.finish_run(result.run_id, clock.now(), _run_counts(result), result.exit_code,
                       reasons=result.summary.by_reason)
    return result


def _write_back(settings: Settings, source: Source, log: SendLog, clock: Clock, result: RunResult,
                reporter: Reporter) -> None:
    """The run's Tasks (and any opt-out not yet there) to Salesforce, when ``[sfa] log_activity`` says so;
    a CSV org's wait for ``repsend sync --export``. Refused records keep their error for ``repsend sync`` (a
    note, not the exit code); an SFA that fails makes the exit code 3, and what is not written waits."""
    if not settings.sfa.writes_back:
        return
    if settings.sfa.kind != "salesforce":
        if result.outcomes[SENT]:
            reporter.note(f"{result.outcomes[SENT]} Task(s) kept for Data Loader: `repsend sync --export DIR` "
                          "writes Task.csv and Contact.csv")
        return
    from repsend.writeback import write_back

    try:
        # Nothing pending costs no call: the write-back asks Salesforce only about what it holds.
        done = result.synced = write_back(log, source, clock.now(), retry_rejected=False)  # type: ignore[arg-type]
    except RepsendError as exc:
        result.sync_error = str(exc)
        reporter.note(f"writing back to Salesforce stopped: {exc}; what is not written waits for `repsend sync`")
        if result.error is None:
            result.error = exc
            result.exit_code = exc.exit_code
        return
    if done.tasks["written"] or done.tasks["found"] or done.rejected or done.records_opted_out:
        for line in done.lines():
            reporter.note(f"Salesforce: {line}")
    for error in done.errors:
        reporter.note(f"Salesforce refused: {error}")
    if done.rejected:
        reporter.note("the refused records keep their error in the send log; `repsend sync` tries them again")


def _stopped_by(result: RunResult, exc: RepsendError) -> None:
    if result.error is None:
        result.error = exc
        result.stopped = str(exc)
    result.exit_code = exc.exit_code


def _exit_code(result: RunResult) -> int:
    """An error's code first; then SIGTERM, when it left mails unsent; then 1 when a mail did not go out."""
    if result.exit_code != EXIT_OK:
        return result.exit_code
    if result.terminated and result.outcomes[NOT_SENT]:
        return EXIT_STOPPED
    if any(result.outcomes[k] for k in (FAILED, DEFERRED, UNKNOWN)):
        return EXIT_SOME_FAILED
    return EXIT_OK


def _closed_note(run: Run, zone: tzinfo) -> str:
    started = run.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return (f"run {run.id} (started {started} {zone}, pid {run.pid} on {run.host}) ended without finishing "
            f"(killed?); closed in the send log with what its attempts show: {run.sent} sent, {run.failed} failed, "
            f"{run.deferred} deferred, {run.unknown} unknown")


def _window_open(window: SendWindow, clock: Clock, wait: bool, result: RunResult, stop: _StopRequested,
                 reporter: Reporter) -> bool:
    """Whether mail may go out now; with ``wait``, after sleeping until the window opens (False when a
    SIGTERM ends the wait)."""
    now = clock.now()
    while not window.is_open(now):
        opens = window.next_open(now)
        local = opens.astimezone(window.zone).strftime("%a %Y-%m-%d %H:%M")
        if not wait:
            result.window_opens = opens
            result.stopped = f"outside the send window ({window.text}); it opens at {opens.isoformat()}"
            return False
        seconds = (opens - now).total_seconds()
        reporter.note(f"outside the send window ({window.text}): waiting until {local} {window.zone} "
                      f"(in {_duration(seconds)})")
        try:
            with stop.waiting():
                clock.sleep(seconds)
        except _Terminated:
            result.terminated = True
            result.stopped = f"stopped by SIGTERM while waiting for the send window (it opens {local} {window.zone})"
            result.exit_code = EXIT_STOPPED
        except KeyboardInterrupt:
            result.stopped = f"interrupted (Ctrl-C) while waiting for the send window (it opens {local} {window.zone})"
            result.exit_code = EXIT_INTERRUPTED
        if result.exit_code != EXIT_OK:
            result.window_opens = opens
            return False
        now = clock.now()
    return True


def _duration(seconds: float) -> str:
    minutes = max(round(seconds / 60), 0)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class _Delivery:
    """The delivery loop: sends join their rep's queue as they are decided, and go out as soon as the
    pace allows, while the selection goes on; what is left when it ends goes out at the pace. So the first
    mail leaves right after the first send is decided, and memory holds only the mails waiting."""

    def __init__(self, settings: Settings, options: RunOptions, log: SendLog, open_transport: Callable[[], Transport],
                 clock: Clock, window: SendWindow, reporter: Reporter, result: RunResult,
                 stop: _StopRequested) -> None:
        self.settings, self.options, self.log, self.clock = settings, options, log, clock
        self.window, self.reporter, self.result = window, reporter, result
        self.open_transport = open_transport
        self.transport: Transport | None = None
        self.throttle = Throttle(settings.rate.per_minute, settings.rate.per_hour, clock)
        self.policy = run_policy()  # remembers the headers that repeat from mail to mail, for this run
        self.queue = RepQueues()
        self.decided = 0  # sends decided so far: the progress line's total
        self.consecutive = 0
        self.stop = stop
        self.variants: tuple[str, ...] = ()  # the template's (selection.Decisions.variants), for the held-out rows

    def run(self, decisions: Iterator[Decision]) -> None:
        try:
            for decision in decisions:
                if decision.mail is None:
                    if decision.reason is Reason.HOLDOUT and not self.result.stopped:
                        self._hold_out(decision)
                    self.reporter.decision(decision, None)
                    continue
                self.decided += 1
                if self.result.stopped:
                    self._not_sent(decision)
                    continue
                self.queue.put(decision)
                while self.queue and not self.result.stopped and self.throttle.ready():
                    self._send_next()
            while self.queue and not self.result.stopped:
                self._send_next()
        finally:
            for decision in self.queue.drain():
                self._not_sent(decision)

    def _hold_out(self, decision: Decision) -> None:
        """A held-out contact's row (``held_out``), so that outcomes can compare it with the mailed ones: with
        the rep who would have sent it and the variant it would have had (the one Composer gives it), so
        that each variant's mailed contacts have their own held-out ones to be compared with."""
        rep = decision.rep
        assert rep is not None
        campaign, contact = self.options.campaign, decision.contact
        variant = variant_of(campaign, contact.id, self.variants) if self.variants else ""
        self.log.hold_out(run_id=self.result.run_id, campaign=campaign, contact_id=contact.id,
                          address=contact.email, rep_id=rep.id, rep_email=rep.email,
                          template=self.options.template, language=decision.language, variant=variant,
                          now=self.clock.now())

    def _send_next(self) -> None:
        """The next mail in turn, after the pace's wait; or none, and the run stops, when it must."""
        result = self.result
        if self.stop.requested:
            result.stopped, result.terminated = "stopped by SIGTERM", True
            return
        if not self.window.always and not self.window.is_open(self.clock.now()):
            result.stopped = f"the send window closed ({self.window.text})"
            return
        try:
            with self.stop.waiting():
                self.throttle.wait()
        except _Terminated:
            result.stopped, result.terminated = "stopped by SIGTERM", True
            return
        if self.transport is None:
            # Built at the first mail (a missing host is a config error, exit 2).
            self.transport = self.open_transport()
        try:
            # Connected before the row is claimed: a server that cannot be reached, a certificate that
            # fails, a refused login leave no row for a contact never tried (it stays "not_sent").
            self.transport.connect()
        except MailError as exc:
            result.stopped = str(exc)
            result.exit_code = EXIT_SERVICE
            result.error = exc
            return
        decision = self.queue.take()
        try:
            outcome = _send_one(decision, self.settings, self.log, self.transport, self.clock, result.run_id,
                                self.options, self.window.zone, self.policy)
        except MailError as exc:
            # The server failed the run: this mail is deferred (its row says so), the rest wait.
            result.stopped = str(exc)
            result.exit_code = EXIT_SERVICE
            result.error = exc
            result.outcomes[DEFERRED] += 1
            self.reporter.decision(decision, Outcome(DEFERRED, text=str(exc)))
            return
        result.outcomes[outcome.state] += 1
        self.reporter.decision(decision if outcome.state != TAKEN else _taken(decision), outcome)
        self.reporter.progress(result.outcomes[SENT] + result.outcomes[FAILED] + result.outcomes[DEFERRED]
                               + result.outcomes[UNKNOWN] + result.outcomes[TAKEN], self.decided, result.outcomes)
        if outcome.state == SENT:
            self.consecutive = 0
        elif outcome.state in (FAILED, DEFERRED, UNKNOWN):
            self.consecutive += 1
            if self.consecutive >= self.settings.mail.max_consecutive_failures:
                result.stopped = (f"{self.consecutive} recipients in a row failed (last: "
                                  f"{outcome.code or ''} {outcome.text}): stopped")
                result.exit_code = EXIT_SERVICE

    def _not_sent(self, decision: Decision) -> None:
        self.result.outcomes[NOT_SENT] += 1
        self.reporter.decision(decision, Outcome(NOT_SENT, text=self.result.stopped))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


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
    return Decision(contact=decision.contact, reason=Reason.ALREADY_SENT, rep=decision.rep, detail="by another run",
                    language=decision.language)


def _send_one(decision: Decision, settings: Settings, log: SendLog, transport: Transport, clock: Clock, run_id: str,
              options: RunOptions, zone: tzinfo, policy: RepeatedHeaderPolicy) -> Outcome:
    from repsend.transport import DeliveryUnknown, RecipientRefused, TemporaryFailure

    mail = decision.mail
    assert mail is not None and decision.rep is not None
    now = clock.now()
    message_id = make_msgid(domain=settings.company.domain)
    address = normalize_email(mail.to.addr_spec)
    msg = to_message(
        mail,
        message_id=message_id,
        date=format_datetime(now.astimezone(zone)),  # the Date in the rate time zone
        unsubscribe_url=link_for(settings, address, options.campaign),
        unsubscribe_mailto=settings.company.opt_out,
        policy=policy,
    )
    row = log.claim(
        run_id=run_id, campaign=options.campaign, contact_id=decision.contact.id, address=address,
        rep_id=decision.rep.id, rep_email=mail.from_.addr_spec, subject=mail.subject, message_id=message_id,
        template=mail.template, language=mail.language, variant=mail.variant, now=now,
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
    task = None
    if outcome.state == SENT and settings.sfa.writes_back:
        # The Task rides on the finish's own transaction: the body is kept until Salesforce has it.
        task = (address, task_payload(decision.contact.id, decision.rep.id, mail.subject, mail.body,
                                      now.astimezone(zone).date()))
    log.finish(row, outcome.state, clock.now(), outcome.code, outcome.text, task=task)
    return outcome
