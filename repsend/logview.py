"""`repsend log`: the send log as a sales manager reads it, or as JSON Lines for a script. Read-only."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from repsend.sendlog import SendAttempt

COLUMNS = (("when", 16), ("campaign", 12), ("from", 26), ("to", 30), ("state", 8), ("code", 4))


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of ``day`` where the reps are: ``--since`` means their calendar."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def record(row: SendAttempt) -> dict[str, Any]:
    """One attempt as JSON: its keys are a contract with scripts (README, "The send log")."""
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
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def print_log(rows: list[SendAttempt], out: TextIO, json_lines: bool, zone: ZoneInfo) -> None:
    from repsend.report import fit

    states = Counter(r.state for r in rows)
    if json_lines:
        for row in rows:
            out.write(json.dumps(record(row), ensure_ascii=False) + "\n")
        out.write(json.dumps({"type": "summary", "attempts": len(rows), "states": dict(sorted(states.items()))})
                  + "\n")
        return
    if not rows:
        out.write("no send attempts match\n")
        return
    out.write("  ".join(fit(name, w) for name, w in COLUMNS) + "  subject\n")
    for r in rows:
        when = r.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        cells = [when, r.campaign, r.rep_email, r.address, r.state, str(r.smtp_code or "")]
        out.write("  ".join(fit(c, w) for c, (_, w) in zip(cells, COLUMNS, strict=True)) + "  " + r.subject + "\n")
    out.write(f"\n{len(rows)} attempts: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + "\n")
    per_rep = Counter(r.rep_email for r in rows if r.state == "sent")
    for rep, count in per_rep.most_common():
        out.write(f"  {rep:<32} {count:>6} sent\n")
