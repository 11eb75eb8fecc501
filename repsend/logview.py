"""`repsend log`: the send log as a sales manager reads it, as CSV for a spreadsheet, or as JSON Lines for a
script. Read-only.

Each attempt is shown with the state of its address now (``sendlog.state_now``: a ``deferred`` attempt
that a later run sent reads as ``sent``), and the counts per campaign and per rep are of addresses by
that state, not of attempts: a person retried three times is one person.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from repsend.sendlog import AddressNow, Attempt

FORMATS = ("table", "csv", "json")
COLUMNS = (("when", 16), ("campaign", 12), ("from", 26), ("to", 30), ("state", 8), ("now", 8), ("code", 4))
# The fields of an attempt in --format json and csv, in this order: a contract with scripts (README).
FIELDS = (
    "id", "run_id", "campaign", "contact_id", "address", "rep_id", "rep_email", "subject", "message_id",
    "template", "language", "state", "smtp_code", "smtp_text", "created_at", "finished_at", "resolved_as",
    "resolved_at", "resolved_by", "resolved_note", "state_now",
)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of ``day`` where the reps are: ``--since`` means their calendar."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def record(row: Attempt, now: AddressNow | None) -> dict[str, Any]:
    """One attempt as JSON: every column of ``send_attempt``, and ``state_now``, the state of its address
    in its campaign now. Its keys are a contract with scripts (README, "The send log")."""
    return {
        "type": "attempt",
        "id": row.id,
        "run_id": row.run_id,
        "campaign": row.campaign,
        "contact_id": row.contact_id,
        "address": row.address,
        "rep_id": row.rep_id,
        "rep_email": row.rep_email,
        "subject": row.subject,
        "message_id": row.message_id,
        "template": row.template,
        "language": row.language,
        "state": row.state,
        "smtp_code": row.smtp_code,
        "smtp_text": row.smtp_text,
        "created_at": row.created_at.isoformat(),
        "finished_at": _iso(row.finished_at),
        "resolved_as": row.resolved_as,
        "resolved_at": _iso(row.resolved_at),
        "resolved_by": row.resolved_by,
        "resolved_note": row.resolved_note,
        "state_now": now.state if now else row.state,
    }


class Counts:
    """Addresses by their state now, per campaign and per rep (the rep of the attempt that says so)."""

    def __init__(self, states_now: dict[tuple[str, str], AddressNow]) -> None:
        self.all: Counter[str] = Counter()
        self.campaigns: dict[str, Counter[str]] = {}
        self.reps: dict[str, Counter[str]] = {}
        for (campaign, _), now in states_now.items():
            self.all[now.state] += 1
            self.campaigns.setdefault(campaign, Counter())[now.state] += 1
            self.reps.setdefault(now.rep_email, Counter())[now.state] += 1

    def json(self) -> dict[str, Any]:
        def ordered(counts: Counter[str]) -> dict[str, int]:
            from repsend.sendlog import NOW_STATES

            return {state: counts[state] for state in NOW_STATES if counts[state]}

        return {
            "addresses": sum(self.all.values()),
            "now": ordered(self.all),
            "campaigns": {name: ordered(c) for name, c in sorted(self.campaigns.items())},
            "reps": {rep: ordered(c) for rep, c in sorted(self.reps.items())},
        }


def print_log(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO, form: str,
              zone: ZoneInfo) -> None:
    """``rows`` newest first; ``states_now`` for their (campaign, address) pairs (``SendLog.states_now``)."""
    if form == "json":
        _json(rows, states_now, out)
    elif form == "csv":
        _csv(rows, states_now, out)
    else:
        _table(rows, states_now, out, zone)


def _json(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(record(row, states_now.get((row.campaign, row.address))), ensure_ascii=False) + "\n")
    states = Counter(r.state for r in rows)
    summary = {"type": "summary", "attempts": len(rows), "states": dict(sorted(states.items())),
               **Counts(states_now).json()}
    out.write(json.dumps(summary, ensure_ascii=False) + "\n")


def _csv(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO) -> None:
    """A header and one line per attempt, the JSON fields; a BOM first, so that Excel reads it as UTF-8 (it
    takes a file without one for the system's code page: CP932 on a Japanese Windows)."""
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    for row in rows:
        values = record(row, states_now.get((row.campaign, row.address)))
        writer.writerow(["" if values[name] is None else values[name] for name in FIELDS])


def _cell(text: str, columns: int) -> str:
    """``text`` padded to ``columns`` cells, never cut: a longer one pushes the rest of its row."""
    from repsend.report import width

    text = " ".join(text.split())
    return text + " " * max(columns - width(text), 0)


def detail(row: Attempt, zone: ZoneInfo) -> str:
    """The last column: what the server answered (or why there was no answer) for an attempt that did not
    go out as sent, a person's resolution of an unknown one; the subject of a mail that went out."""
    from repsend.sendlog import SENDING, SENT

    if row.resolved_as:
        when = row.resolved_at.astimezone(zone).strftime("%Y-%m-%d") if row.resolved_at else "?"
        resolved = f"resolved as {row.resolved_as} by {row.resolved_by} on {when}"
        text = resolved + (f": {row.resolved_note}" if row.resolved_note else "")
    elif row.state in (SENT, SENDING):
        text = row.subject
    else:
        text = row.smtp_text or ""
    return " ".join(text.split())  # one line, whatever a server or a person wrote


def _table(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO,
           zone: ZoneInfo) -> None:
    if not rows:
        out.write("no send attempts match\n")
        return
    out.write("  ".join(_cell(name, w) for name, w in COLUMNS) + "  subject or server's answer\n")
    for r in rows:
        when = r.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        now = states_now.get((r.campaign, r.address))
        cells = [when, r.campaign, r.rep_email, r.address, r.state, now.state if now else r.state,
                 str(r.smtp_code or "")]
        line = "  ".join(_cell(c, w) for c, (_, w) in zip(cells, COLUMNS, strict=True))
        out.write(line + "  " + detail(r, zone) + "\n")
    states = Counter(r.state for r in rows)
    counts = Counts(states_now)
    addresses = sum(counts.all.values())
    out.write(f"\n{len(rows)} attempts for {addresses} addresses: "
              + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + "\n")
    _counts_table(out, counts)


def _counts_table(out: TextIO, counts: Counts) -> None:
    """Addresses by their state now, a line per campaign then per rep; the states that never occur are left
    out, but for the four a manager looks for."""
    from repsend.sendlog import DEFERRED, FAILED, NOW_STATES, SENT, UNKNOWN

    shown = [s for s in NOW_STATES if s in (SENT, FAILED, DEFERRED, UNKNOWN) or counts.all[s]]
    lines = [(f"campaign {name}", c) for name, c in sorted(counts.campaigns.items())]
    lines += [(f"rep {rep}", c) for rep, c in sorted(counts.reps.items(), key=lambda item: (-item[1][SENT], item[0]))]
    from repsend.report import width

    label = max(len("addresses by state now") - 2, *(width(name) for name, _ in lines))
    out.write(_cell("addresses by state now", label + 2) + "".join(f"  {s:>8}" for s in shown) + "\n")
    for name, c in lines:
        out.write("  " + _cell(name, label) + "".join(f"  {c[s]:>8}" for s in shown) + "\n")
