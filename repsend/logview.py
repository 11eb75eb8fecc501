"""`repsend log` and `repsend stats`: the send log as a sales manager reads it, as CSV for a spreadsheet
(Excel), or as JSON Lines for a script. Read-only.

Each attempt is shown with the state of its address now (``sendlog.state_now``: a ``deferred`` attempt
that a later run sent reads as ``sent``), and the counts per campaign and per rep are of addresses by
that state, not of attempts: a person retried three times is one person. A bounce, opt-out or complaint
is shown with the attempt it belongs to (``SendLog.suppressions_by_attempt``); ``stats`` counts them by
the same rule, in the database.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from repsend.sendlog import AddressNow, Attempt, Run, Suppression

FORMATS = ("table", "csv", "json")
COLUMNS = (("when", 16), ("campaign", 12), ("from", 26), ("to", 30), ("state", 8), ("now", 8), ("code", 4))
# The fields of an attempt in --format json and csv, in this order: a contract with scripts (README).
FIELDS = (
    "id", "run_id", "campaign", "contact_id", "address", "rep_id", "rep_email", "subject", "message_id",
    "template", "language", "variant", "state", "smtp_code", "smtp_text", "created_at", "finished_at", "resolved_as",
    "resolved_at", "resolved_by", "resolved_note", "state_now", "suppressed_as", "suppressed_at",
    "suppressed_source", "suppressed_reason",
)
# A suppression kind as a count of ``stats`` (and of the log's summary), and as a person reads it.
KIND_FIELDS = {"bounce": "bounced", "opt_out": "opted_out", "complaint": "complained"}
KIND_WORDS = {"bounce": "bounced", "opt_out": "opted out", "complaint": "complained"}
# The attempt states ``stats`` counts, an ``unknown`` one a person resolved as its answer (sent, not_sent),
# and the holdout group's rows (never mailed).
STATS_STATES = ("sent", "failed", "deferred", "unknown", "not_sent", "sending", "held_out")
# The fields of ``stats``: a group's, and a run's (``--by run``); a contract with scripts (README).
STATS_FIELDS = ("by", "group", "attempts", *STATS_STATES, *KIND_FIELDS.values())
RUN_FIELDS = ("run_id", "campaign", "started_at", "finished_at", "host", "exit_code", "considered", "sent", "failed",
              "deferred", "unknown", "skipped", *KIND_FIELDS.values())


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of ``day`` where the reps are: ``--since`` means their calendar."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def day_end(day: date, zone: ZoneInfo) -> datetime:
    """The first moment after ``day`` where the reps are: ``--until`` takes the whole day."""
    return day_start(day + timedelta(days=1), zone)


@contextmanager
def utf8_out(stream: TextIO) -> Iterator[TextIO]:
    """``stream``'s bytes written as UTF-8, line ends untouched: a CSV for Excel is the same file whatever the
    console's encoding (CP932 on a Japanese Windows) and newline translation (LF to CRLF, which would make
    the CSV's CRLF CRCRLF). A stream without bytes under it (a test's StringIO) is used as it is."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        yield stream
        return
    stream.flush()
    out = io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True)
    try:
        yield out
    finally:
        out.flush()
        out.detach()  # leaves ``buffer`` open for the stream it belongs to


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def record(row: Attempt, now: AddressNow | None, suppressions: list[Suppression] | None = None) -> dict[str, Any]:
    """One attempt as JSON: every column of ``send_attempt``, ``state_now``, the state of its address in its
    campaign now, and the first suppression that belongs to it (``suppressed_*``, null when none). Its keys
    are a contract with scripts (README, "The send log")."""
    first = suppressions[0] if suppressions else None
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
        "variant": row.variant,
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
        "suppressed_as": first.kind if first else None,
        "suppressed_at": first.created_at.isoformat() if first else None,
        "suppressed_source": first.source if first else None,
        "suppressed_reason": (first.reason or None) if first else None,
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


Suppressions = dict[int, list["Suppression"]]


def print_log(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO, form: str,
              zone: ZoneInfo, suppressions: Suppressions | None = None) -> None:
    """``rows`` newest first; ``states_now`` for their (campaign, address) pairs (``SendLog.states_now``);
    ``suppressions`` by the id of the attempt they belong to (``SendLog.suppressions_by_attempt``)."""
    suppressions = suppressions or {}
    if form == "json":
        _json(rows, states_now, out, suppressions)
    elif form == "csv":
        _csv(rows, states_now, out, suppressions)
    else:
        _table(rows, states_now, out, zone, suppressions)


def _kinds(rows: list[Attempt], suppressions: Suppressions) -> dict[str, int]:
    """The suppressions of these attempts by kind, in ``KIND_FIELDS``' order, the kinds with none left out."""
    kinds = Counter(s.kind for r in rows for s in suppressions.get(r.id, ()))
    return {kind: kinds[kind] for kind in KIND_FIELDS if kinds[kind]}


def _json(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO,
          suppressions: Suppressions) -> None:
    for row in rows:
        line = record(row, states_now.get((row.campaign, row.address)), suppressions.get(row.id))
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    states = Counter(r.state for r in rows)
    summary = {"type": "summary", "attempts": len(rows), "states": dict(sorted(states.items())),
               **Counts(states_now).json(), "suppressions": _kinds(rows, suppressions)}
    out.write(json.dumps(summary, ensure_ascii=False) + "\n")


def write_csv(out: TextIO, fields: tuple[str, ...], records: list[dict[str, Any]]) -> None:
    """A header and one line per record (null as empty), CRLF line ends, a BOM first: Excel reads a file
    without one in the system's code page (CP932 on a Japanese Windows) and garbles every Japanese name."""
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fields)
    for values in records:
        writer.writerow([excel_safe(values[name]) for name in fields])


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def excel_safe(value: Any) -> Any:
    """A cell Excel shows as text: a text that starts like a formula (``=HYPERLINK(...)`` in an SMTP answer
    or a bounce a stranger wrote) gets a leading ``'``, which Excel hides; null is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO,
         suppressions: Suppressions) -> None:
    """A header and one line per attempt, the JSON fields."""
    write_csv(out, FIELDS, [record(row, states_now.get((row.campaign, row.address)), suppressions.get(row.id))
                            for row in rows])


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


def suppression_line(suppression: Suppression, zone: ZoneInfo) -> str:
    """What came after an attempt, under it: "then bounced 2026-11-24 10:12: 5.1.1 User unknown (inbox: ...)"."""
    when = suppression.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    words = f"then {KIND_WORDS.get(suppression.kind, suppression.kind)} {when}"
    if suppression.reason:
        words += f": {suppression.reason}"
    return " ".join(f"{words} ({suppression.source})".split())


def _table(rows: list[Attempt], states_now: dict[tuple[str, str], AddressNow], out: TextIO,
           zone: ZoneInfo, suppressions: Suppressions) -> None:
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
        for suppression in suppressions.get(r.id, ()):  # under the attempt, from the campaign's column on
            out.write(" " * (COLUMNS[0][1] + 2) + suppression_line(suppression, zone) + "\n")
    states = Counter(r.state for r in rows)
    counts = Counts(states_now)
    addresses = sum(counts.all.values())
    after = _kinds(rows, suppressions)
    then = "; then " + ", ".join(f"{n} {KIND_WORDS[kind]}" for kind, n in after.items()) if after else ""
    out.write(f"\n{len(rows)} attempts for {addresses} addresses: "
              + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + then + "\n")
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


# -- repsend stats -------------------------------------------------------------------------------------


def stats_records(by: str, groups: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One record per group (``SendLog.stats``), in the group's order (days in time order, names A to Z):
    its attempts by state and the suppressions that came after them by kind. Keys: ``STATS_FIELDS``."""
    records = []
    for group in sorted(groups):
        counts = groups[group]
        record_ = {"type": "group", "by": by, "group": group, "attempts": sum(counts.get(s, 0) for s in STATS_STATES)}
        record_.update({state: counts.get(state, 0) for state in STATS_STATES})
        record_.update({field: counts.get(kind, 0) for kind, field in KIND_FIELDS.items()})
        records.append(record_)
    return records


def run_records(runs: list[tuple[Run, dict[str, int]]],
                reasons: dict[str, dict[str, int]] | None = None) -> list[dict[str, Any]]:
    """One record per run (``SendLog.run_stats``): its own counts, the suppressions after its mails, and
    (JSON only) its decisions by reason (``SendLog.run_reasons``)."""
    from repsend.sendlog import RUN_COUNTS

    records = []
    for run, kinds in runs:
        record_: dict[str, Any] = {"type": "run", "run_id": run.id, "campaign": run.campaign,
                                   "started_at": run.started_at.isoformat(), "finished_at": _iso(run.finished_at),
                                   "host": run.host, "exit_code": run.exit_code}
        record_.update({name: getattr(run, name) for name in RUN_COUNTS})
        record_.update({field: kinds.get(kind, 0) for kind, field in KIND_FIELDS.items()})
        if reasons is not None:
            record_["reasons"] = reasons.get(run.id, {})
        records.append(record_)
    return records


def _totals(records: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, int]:
    return {name: sum(r[name] for r in records) for name in fields}


_GROUP_COUNTS = STATS_FIELDS[2:]
_RUN_COUNTS = RUN_FIELDS[6:]


def print_stats(by: str, records: list[dict[str, Any]], out: TextIO, form: str, zone: ZoneInfo) -> None:
    """``records`` from ``stats_records`` (or ``run_records`` for ``--by run``) as a table, CSV or JSON Lines."""
    runs = by == "run"
    fields, counts = (RUN_FIELDS, _RUN_COUNTS) if runs else (STATS_FIELDS, _GROUP_COUNTS)
    if form == "json":
        for record_ in records:
            out.write(json.dumps(record_, ensure_ascii=False) + "\n")
        summary = {"type": "summary", "by": by, ("runs" if runs else "groups"): len(records),
                   **_totals(records, counts)}
        out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    elif form == "csv":
        write_csv(out, fields, records)
    elif not records:
        out.write("no runs match\n" if runs else "no send attempts match\n")
    elif runs:
        _runs_table(records, out, zone)
    else:
        _stats_table(by, records, out)


def _grid(out: TextIO, header: list[str], lines: list[list[str]], left: int) -> None:
    """Columns as wide as their widest cell; the first ``left`` padded on the right (names), the rest on
    the left (numbers)."""
    from repsend.report import width

    widths = [max(width(line[i]) for line in [header, *lines]) for i in range(len(header))]
    for line in [header, *lines]:
        cells = [_cell(c, w) if i < left else " " * (w - width(c)) + c
                 for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.write("  ".join(cells).rstrip() + "\n")


def _shown(records: list[dict[str, Any]], fields: tuple[str, ...], rare: tuple[str, ...]) -> list[str]:
    """The count columns of a table: all of them but the ``rare`` ones no record has."""
    return [f for f in fields if f not in rare or any(r[f] for r in records)]


def _stats_table(by: str, records: list[dict[str, Any]], out: TextIO) -> None:
    shown = _shown(records, _GROUP_COUNTS, ("not_sent", "sending", "held_out"))
    total = _totals(records, _GROUP_COUNTS)
    lines = [[r["group"], *(str(r[f]) for f in shown)] for r in records]
    _grid(out, [by, *(f.replace("_", " ") for f in shown)], [*lines, ["total", *(str(total[f]) for f in shown)]], 1)


def _runs_table(records: list[dict[str, Any]], out: TextIO, zone: ZoneInfo) -> None:
    def local(value: str | None) -> str:
        return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else "-"

    lines = [[r["run_id"][:8], r["campaign"], local(r["started_at"]), local(r["finished_at"]),
              "-" if r["exit_code"] is None else str(r["exit_code"]), *(str(r[f]) for f in _RUN_COUNTS)]
             for r in records]
    total = _totals(records, _RUN_COUNTS)
    lines.append([f"{len(records)} runs", "", "", "", "", *(str(total[f]) for f in _RUN_COUNTS)])
    _grid(out, ["run", "campaign", "started", "finished", "exit", *(f.replace("_", " ") for f in _RUN_COUNTS)],
          lines, 4)
