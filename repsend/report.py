"""What a run prints: a table a person can scan, or JSON Lines a script can count.

Both stream: a row is written as its decision is made, so 100,000 contacts print in constant memory,
and the columns have fixed widths (East Asian wide characters count double) so that a long run stays
aligned in a terminal and in a pager.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from repsend.compose import full_name
from repsend.errors import EXIT_INTERRUPTED, EXIT_SERVICE, EXIT_SOME_FAILED, EXIT_STOPPED, EXIT_USAGE, OutputError
from repsend.models import Action, Decision, Reason
from repsend.selection import Summary


def decision_record(decision: Decision, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON of one decision; its keys are a contract with scripts (README, "JSON output")."""
    d, mail = decision, decision.mail
    contact = d.contact
    record: dict[str, Any] = {
        "type": "decision",
        "contact_id": contact.id,
        "email": contact.email.strip(),
        "action": d.action.value,
        "reason": d.reason.value,
        "rep_id": d.rep.id if d.rep else (contact.owner_id or None),
        "from": str(mail.from_) if mail else None,
        "subject": mail.subject if mail else None,
        "detail": d.detail or None,
        "language": mail.language if mail else None,
        "variant": mail.variant if mail else "",  # the template's variant; "" without variants, and for a skip
    }
    if extra:
        record.update(extra)
    return record


def summary_record(summary: Summary, dry_run: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "summary",
        "considered": summary.considered,
        "send": summary.send,
        "skip": dict(sorted(summary.skip.items())),
        "dry_run": dry_run,
    }
    if extra:
        record.update(extra)
    return record


_json_string = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) writes a str as


class JsonLines:
    """One JSON line per decision (``decision_record``), then the summary.

    A line is written as ``json.dumps(decision_record(...), ensure_ascii=False)`` would write it, the
    same bytes, without building the dict: what a skip's line holds after the address, and each sender's
    From, are encoded once per run (tests/test_cli.py and tests/test_export_cases.py hold the two together)."""

    def __init__(self, out: TextIO, outcome: bool = False) -> None:
        """``outcome``: a real run's lines, where a skip's line ends with ``"outcome": null``."""
        self.out = out
        self.outcome = outcome
        self._skips: dict[tuple[Reason, str | None, str | None], str] = {}  # a skip's line after the address
        self._senders: dict[tuple[str, str, str], str] = {}  # From (display name, user, domain) -> JSON

    def row(self, decision: Decision, extra: Mapping[str, Any] | None = None) -> None:
        line = self._line(decision, extra)
        if line is None:
            if self.outcome and not extra:
                extra = {"outcome": None}
            line = json.dumps(decision_record(decision, extra), ensure_ascii=False) + "\n"
        self.out.write(line)

    def summary(self, summary: Summary, dry_run: bool, extra: Mapping[str, Any] | None = None) -> None:
        self.out.write(json.dumps(summary_record(summary, dry_run, extra), ensure_ascii=False) + "\n")

    def _line(self, d: Decision, extra: Mapping[str, Any] | None = None) -> str | None:
        """The line of ``decision_record(d, extra)``; None when a value is not a plain str, int or None
        (json.dumps writes it)."""
        mail, contact = d.mail, d.contact
        rep_id = d.rep.id if d.rep else (contact.owner_id or None)
        contact_id, email, detail = contact.id, contact.email, d.detail or None
        if (type(contact_id) is not str or type(email) is not str or (rep_id is not None and type(rep_id) is not str)
                or (detail is not None and type(detail) is not str) or type(d.reason) is not Reason):
            return None
        head = (f'{{"type": "decision", "contact_id": {_json_string(contact_id)}, '
                f'"email": {_json_string(email.strip())}, ')
        more = ""
        if extra:  # a real run's outcome of a mail
            more = _json_fields(extra)
            if more is None:
                return None
        if mail is None and not more:
            # A skip's line after the address depends on its reason, rep and detail alone: a few thousand lines.
            key = (d.reason, rep_id, detail)
            tail = self._skips.get(key)
            if tail is None:
                if len(self._skips) >= 65536:
                    self._skips.clear()
                tail = self._skips[key] = (
                    f'"action": "skip", "reason": {_json_string(d.reason.value)}, '
                    f'"rep_id": {"null" if rep_id is None else _json_string(rep_id)}, "from": null, "subject": null, '
                    f'"detail": {"null" if detail is None else _json_string(detail)}, "language": null, '
                    '"variant": ""' + (', "outcome": null}\n' if self.outcome else '}\n'))
            return head + tail
        if mail is None or type(mail.subject) is not str or type(mail.language) is not str or (
                type(mail.variant) is not str):
            return None
        if self.outcome and not more:
            more = ', "outcome": null'
        from_ = mail.from_
        key = (from_.display_name, from_.username, from_.domain)
        sender = self._senders.get(key)
        if sender is None:
            if len(self._senders) >= 4096:
                self._senders.clear()
            sender = self._senders[key] = _json_string(str(from_))
        return (
            f'{head}"action": {_json_string(d.action.value)}, "reason": {_json_string(d.reason.value)}, '
            f'"rep_id": {"null" if rep_id is None else _json_string(rep_id)}, "from": {sender}, '
            f'"subject": {_json_string(mail.subject)}, "detail": {"null" if detail is None else _json_string(detail)}, '
            f'"language": {_json_string(mail.language)}, "variant": {_json_string(mail.variant)}{more}}}\n'
        )


def _json_fields(fields: Mapping[str, Any]) -> str | None:
    """``, "key": value`` for each field, as json.dumps writes them; None for a value not str, int or None."""
    parts = []
    for key, value in fields.items():
        if value is None:
            text = "null"
        elif type(value) is str:
            text = _json_string(value)
        elif type(value) is int:
            text = str(value)
        else:
            return None
        parts.append(f", {_json_string(key)}: {text}")
    return "".join(parts)


_BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")


@functools.cache
def _wide_runs() -> re.Pattern[str]:
    """Runs of the characters below U+10000 that ``east_asian_width`` calls W or F: ``sub`` drops them in
    C, a run of kanji at a time. Made from this Python's own database (which calls an unassigned code point
    F, as the per-character count does) for the first text that is not ASCII: the scan takes about 10 ms."""
    # One code a code point: "Na" is the only code of two letters, and the only one with an "a".
    codes = "".join(map(unicodedata.east_asian_width, map(chr, range(0x10000)))).replace("Na", "n")
    ranges = (f"{re.escape(chr(m.start()))}-{re.escape(chr(m.end() - 1))}" for m in re.finditer("[WF]+", codes))
    return re.compile("[" + "".join(ranges) + "]+")


def width(text: str) -> int:
    """Terminal cells of ``text``: 2 for each East Asian Wide or Fullwidth character, 1 for any other."""
    if text.isascii():
        return len(text)  # no ASCII character is wide
    narrow = _wide_runs().sub("", text)
    if not narrow.isascii() and _BEYOND_BMP.search(narrow):
        # Rare (emoji, 𠮷): counted one by one rather than with a class over all of Unicode (~100 ms to make).
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return 2 * len(text) - len(narrow)


def fit(text: str, columns: int) -> str:
    """``text`` cut (ending in "…") or padded to exactly ``columns`` terminal cells, runs of white space
    as one space."""
    text = " ".join(text.split())
    if text.isascii():
        return text.ljust(columns) if len(text) <= columns else text[:max(columns - 1, 0)] + "…"
    used = width(text)
    if used <= columns:
        return text + " " * (columns - used)
    # Too wide: the longest start that leaves a cell for the "…", found by taking characters back from
    # the end of the text, or of its first ``limit`` characters if it is longer (no more can fit).
    limit = columns - 1
    end = max(limit, 0)
    if end >= len(text):
        end = len(text)
    else:
        used = width(text[:end])
    while used > limit and end:
        end -= 1
        used -= 2 if unicodedata.east_asian_width(text[end]) in "WF" else 1
    return text[:end] + "…" + " " * (limit - used)


class Table:
    """One line a decision, each cell fitted to its column; the address whole (a longer one pushes the rest
    of its line), the subject last, cut to a terminal's width when the table goes to one. A template with
    variants adds a column before the subject: each send's variant.

    Most cells repeat down a run (a rep's name, an action, a reason, a detail, a common contact name):
    those columns keep their fitted cells by value, for this table only, up to ``CACHE_SIZE`` each (then
    the column starts over). Companies and addresses are nearly all distinct: they are fitted every time."""

    # The reason column holds the longest reason code whole (unsendable_address: 18).
    COLUMNS = (("contact", 16), ("company", 20), ("address", 36), ("from", 18), ("action", 6),
               ("reason", max(len(reason.value) for reason in Reason)), ("detail", 24))
    CACHE_SIZE = 4096

    def __init__(self, out: TextIO, outcome_column: bool = False, terminal_width: int | None = None,
                 variants: Sequence[str] = ()) -> None:
        """``terminal_width``: the table goes to a terminal this wide (None: a file or a pipe, no cut).
        ``variants``: the template's (``selection.Decisions.variants``); none, no variant column."""
        self.out = out
        self.outcome_column = outcome_column
        self._header_written = False
        self._widths = tuple(columns for _, columns in self.COLUMNS)
        self._terminal_width = terminal_width
        self.use_variants(variants)
        self._names: dict[str, str] = {}
        self._senders: dict[str, str] = {}
        self._actions: dict[str, str] = {}
        self._reasons: dict[str, str] = {}
        self._details: dict[str, str] = {}

    def use_variants(self, variants: Sequence[str]) -> None:
        """The variant column for these variants (none: no column); before the first row."""
        assert not self._header_written, "the columns are fixed once the header is out"
        columns = max((len("variant"), *map(width, variants))) if variants else 0
        self._variant_width = columns
        # A variant's cell, made once: a send's variant is one of these, a skip's "".
        self._variant_cells: dict[str, str] | None = {v: fit(v, columns) for v in ("", *variants)} if variants else None
        # What is left of a terminal's line for the subject, after the columns: None, no cut; 0, no room.
        used = sum(self._widths) + 2 * len(self._widths) + (columns + 2 if columns else 0)
        left = None if self._terminal_width is None else self._terminal_width - used
        self._subject_room = None if left is None else max(left, 0) if left >= 8 else 0

    def _header(self) -> None:
        names = [name for name, _ in self.COLUMNS]
        if self.outcome_column:
            names[4] = "result"
        widths = self._widths
        if self._variant_cells is not None:
            names, widths = [*names, "variant"], (*widths, self._variant_width)
        self.out.write(("  ".join(map(fit, names, widths)) + "  " + self._subject("subject")).rstrip() + "\n")

    def _cell(self, cache: dict[str, str], text: str, columns: int) -> str:
        cell = cache.get(text)
        if cell is None:
            if len(cache) >= self.CACHE_SIZE:
                cache.clear()
            cell = cache[text] = fit(text, columns)
        return cell

    def _subject(self, text: str) -> str:
        room = self._subject_room
        if room is None or width(text) <= room:
            return text
        return fit(text, room).rstrip() if room else ""

    def row(self, decision: Decision, outcome: str = "") -> None:
        if not self._header_written:
            self._header_written = True
            self._header()
        d, mail = decision, decision.mail
        c = d.contact
        name_w, company_w, address_w, from_w, action_w, reason_w, detail_w = self._widths
        name = full_name(c.first_name.strip(), c.last_name.strip(), d.language) or c.id
        sender = mail.from_.display_name if mail else (d.rep.name if d.rep else "")
        address = c.email.strip()
        subject = self._subject(mail.subject.rstrip()) if mail else ""
        # The StrEnum members themselves as keys: the same str as their .value, without a property's lookup.
        action = self._cell(self._actions, outcome or d.action, action_w)
        line = (f"{self._cell(self._names, name, name_w)}  {fit(c.account_name, company_w)}  "
                f"{fit(address, address_w) if width(address) <= address_w else address}  "
                f"{self._cell(self._senders, sender, from_w)}  {action}  "
                f"{self._cell(self._reasons, d.reason, reason_w)}  {self._cell(self._details, d.detail, detail_w)}  ")
        cells = self._variant_cells
        if cells is not None:
            variant = mail.variant if mail else ""
            line += (cells.get(variant) or fit(variant, self._variant_width)) + "  "
        self.out.write(line + subject + "\n" if subject else line.rstrip() + "\n")

    def summary(self, summary: Summary, dry_run: bool, notes: list[str] | None = None) -> None:
        out = self.out
        if not summary.considered:
            out.write("no contacts to consider\n")
        out.write(f"\n{summary.considered} considered: {summary.send} to send, {sum(summary.skip.values())} skipped\n")
        for reason, count in sorted(summary.skip.items(), key=lambda kv: (-kv[1], kv[0])):
            out.write(f"  {reason:<18} {count:>7}\n")
        if dry_run:
            out.write("dry run: nothing was sent and nothing was written\n")


def describe(decision: Decision) -> str:
    """One line for a person: 'send from 佐藤 健' or 'skip: active_deal (on another record)'."""
    if decision.action is Action.SEND:
        via = f" ({decision.detail})" if decision.detail else ""
        return f"send from {decision.rep.name if decision.rep else '?'}{via}"
    return f"skip: {decision.reason.value}" + (f" ({decision.detail})" if decision.detail else "")


class RunPrinter:
    """Prints a real run as it goes: the table or JSON Lines on stdout, a progress line on a terminal, notes
    on ``notes`` (stderr).

    Output that cannot be written (a full disk, a closed pipe) is an ``OutputError`` once, which stops
    the run (exit 3); after it the printer writes nothing more, so that the run can still end cleanly."""

    def __init__(self, out: TextIO, json_lines: bool, progress: TextIO | None = None, shown: str = "all",
                 terminal_width: int | None = None, notes: TextIO | None = None) -> None:
        """``shown``: the rows printed, all, send, skip or none (the summary counts every contact)."""
        self.json = JsonLines(out, outcome=True) if json_lines else None
        self.table = None if json_lines else Table(out, outcome_column=True, terminal_width=terminal_width)
        self.shown = shown
        self.out = out
        self.notes = notes
        self.progress_stream = None if json_lines else progress
        self._progress_shown = False
        self.broken = False  # stdout failed: nothing more is written to it

    def variants(self, names: Sequence[str]) -> None:
        """The run's template has these variants (the setup found them): the table shows each send's."""
        if self.table is not None:
            self.table.use_variants(names)

    def decision(self, decision: Decision, outcome: Any) -> None:
        if self.broken or (self.shown != "all" and self.shown != decision.reason.action):
            return
        self._clear_progress()
        try:
            if self.json is not None:
                self.json.row(decision, outcome.fields() if outcome is not None else None)
            else:
                assert self.table is not None
                self.table.row(decision, outcome.state if outcome is not None else "")
            if outcome is not None:
                # Each mail's line is out as the mail is (a run at a human pace lasts hours); skips come in
                # bursts between them and are flushed with the next.
                self.out.flush()
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.broken = True
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"cannot write the output (stdout): {reason}; what was sent is in the send log") from None

    def note(self, text: str) -> None:
        if self.notes is None:
            return
        self._clear_progress()
        try:
            self.notes.write(f"repsend: note: {text}\n")
            self.notes.flush()
        except OSError:
            pass  # stderr itself is gone: nothing left to tell anyone

    def progress(self, done: int, total: int, outcomes: Mapping[str, int]) -> None:
        if self.progress_stream is None:
            return
        width_ = 30
        filled = width_ * done // max(total, 1)
        bar = "#" * filled + "-" * (width_ - filled)
        others = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "sent" and v)
        self.progress_stream.write(f"\r[{bar}] {done}/{total} sent {outcomes.get('sent', 0)}"
                                   + (f", {others}" if others else ""))
        self.progress_stream.flush()
        self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown and self.progress_stream is not None:
            self.progress_stream.write("\r\033[K")
            self._progress_shown = False

    def summary(self, result: Any) -> None:
        """The last line(s) on stdout, also when nothing was sent: JSON Lines always end with a summary."""
        if self.broken:
            return
        self._clear_progress()
        try:
            if self.json is not None:
                self.json.summary(result.summary, dry_run=False, extra=result.fields())
            else:
                assert self.table is not None
                if result.started:
                    self.table.summary(result.summary, dry_run=False)
                    counts = result.fields()
                    done = ", ".join(f"{counts[k]} {k}" for k in
                                     ("sent", "failed", "deferred", "unknown", "taken", "not_sent")
                                     if counts[k] or k == "sent")
                    self.out.write(f"run {result.run_id}: {done}\n")
            self.out.flush()
        except OSError as exc:
            self._failed(exc)


def exit_line(result: Any) -> str:
    """The one line on stderr that every non-zero exit of a real run ends with: what failed, what became of
    the mails, and what to do next (a nightly job's log holds this and nothing else)."""
    code, counts = result.exit_code, result.fields()
    sent, failed, deferred, unknown = (counts[k] for k in ("sent", "failed", "deferred", "unknown"))
    not_sent, taken = counts["not_sent"], counts["taken"]
    if result.terminated or code == EXIT_INTERRUPTED:
        what = result.stopped
    elif code == EXIT_SOME_FAILED:
        what = "some recipients were not mailed" + (f" ({result.stopped})" if result.stopped else "")
    elif result.started:
        what = "the run stopped on the error above"
    else:
        what = "the run did not start: the error above"
    tally = f"{sent} sent, {failed} failed, {deferred} deferred, {unknown} unknown"
    if not_sent:
        tally += f", {not_sent} not sent"
    if taken:
        tally += f", {taken} taken by another run"
    steps = []
    if code == EXIT_USAGE:
        steps.append("fix what the error names and run again")
    elif code == EXIT_SERVICE:
        steps.append("fix what the error names (or wait until that service is back) and run again")
    elif code in (EXIT_STOPPED, EXIT_INTERRUPTED):
        steps.append("run again")
    waiting = " and ".join(f"the {n} {what}" for n, what in ((not_sent, "not sent"), (deferred, "deferred")) if n)
    if waiting:
        steps.append(f"{waiting} go out with the next run")
    if failed:
        steps.append(f"the {failed} failed were refused for good: repsend log --state failed")
    if unknown:
        steps.append(f"the {unknown} unknown may have arrived and are never sent again automatically: "
                     "repsend log --state unknown")
    if not steps:
        steps.append("run again")
    return f"repsend: exit {code}: {what}; {tally}; next: {'; '.join(steps)}"
