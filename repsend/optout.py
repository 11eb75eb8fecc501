"""Opt-outs a person records: by address, from a file, from a signed unsubscribe token; and the list.

Each goes into the send log's ``suppression`` table, which every run reads (``SendLog.history``), so that
an opt-out holds from the next decision on, in the dry run too. A removal is kept, never deleted.
"""

from __future__ import annotations

import csv
import getpass
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from repsend.audience import is_valid_address
from repsend.errors import UsageError
from repsend.models import normalize_email
from repsend.sendlog import COMPLAINT, OPT_OUT, SendLog, Suppression

FORMATS = ("table", "csv", "json")


def who() -> str:
    """Who recorded it, for the log: the login and the host (a shared server has several people)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Recorded:
    added: list[str]
    already: list[str]


def checked(addresses: Iterable[str], where: str = "") -> list[str]:
    """Normalized addresses; a UsageError naming the first that is not an address."""
    result = []
    for address in addresses:
        normalized = normalize_email(address)
        if not is_valid_address(normalized):
            raise UsageError(f"{where}{address!r} is not an email address")
        result.append(normalized)
    return list(dict.fromkeys(result))


def record(log: SendLog, addresses: Iterable[str], source: str, now: datetime, *, reason: str = "",
           campaign: str | None = None, kind: str = OPT_OUT) -> Recorded:
    recorded = Recorded([], [])
    by = who()
    for address in addresses:
        added = log.suppress(address, kind, source, now, reason=reason, campaign=campaign, by=by)
        (recorded.added if added else recorded.already).append(address)
    return recorded


_COLUMNS = ("address", "kind", "since", "source", "reason", "campaign", "by", "removed", "removed_reason")


def _fields(row: Suppression, zone: ZoneInfo) -> dict[str, str | None]:
    return {
        "address": row.address,
        "kind": row.kind,
        "since": row.created_at.astimezone(zone).isoformat(timespec="seconds"),
        "source": row.source,
        "reason": row.reason,
        "campaign": row.campaign,
        "by": row.created_by,
        "removed": row.removed_at.astimezone(zone).isoformat(timespec="seconds") if row.removed_at else None,
        "removed_reason": row.removed_reason,
    }


def print_list(rows: list[Suppression], out: TextIO, form: str, zone: ZoneInfo) -> None:
    if form == "json":
        for row in rows:
            out.write(json.dumps(_fields(row, zone), ensure_ascii=False) + "\n")
        return
    if form == "csv":
        writer = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(_fields(row, zone))
        return
    if not rows:
        out.write("no suppressed addresses\n")
        return
    width = max(len(row.address) for row in rows)
    for row in rows:
        since = row.created_at.astimezone(zone).strftime("%Y-%m-%d")
        text = f"{row.address:<{width}}  {row.kind:<9}  {since}  {row.source}"
        if row.reason:
            text += f": {row.reason}"
        if row.removed_at:
            text += f"  [removed {row.removed_at.astimezone(zone):%Y-%m-%d}: {row.removed_reason}]"
        out.write(text + "\n")
    kinds = {kind: sum(r.kind == kind and r.removed_at is None for r in rows) for kind in (OPT_OUT, "bounce",
                                                                                           COMPLAINT)}
    out.write(", ".join(f"{n} {kind}" for kind, n in kinds.items()) + "\n")


def import_source(path: Path) -> str:
    return f"import {path.name}"
