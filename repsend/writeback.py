"""Back to the SFA: each sent mail a completed Task on the contact, owned by the rep; each opt-out or
complaint ``HasOptedOutOfEmail`` on every Contact and Lead with the address.

The send log holds every record on its way (``sfa_write``, migration 0005): a sent mail's Task is inserted
with its ``sent`` (``SendLog.finish``), an opt-out is queued from the suppression table here. Writing to
Salesforce (``write_back``) goes in calls of 200 records; each call's records are marked ``in_flight``
(committed) before it, and settled with Salesforce's Id or refusal after it. A run killed in between leaves
them in flight: the next write-back first looks them up (one SOQL query per 200 Tasks, by contact, subject
and day) and writes only those Salesforce does not have, so nothing is written twice. Opt-outs need no look-up:
setting a flag twice is setting it once. A CSV org gets Data Loader files instead (``export``).

Never in a dry run: only a real run (``sending.send_run``) and ``repsend sync`` call this.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from repsend.errors import UsageError
from repsend.models import id15, normalize_email

if TYPE_CHECKING:
    from repsend.sendlog import SendLog, SfaWrite
    from repsend.settings import Settings
    from repsend.sfa.salesforce import OptedOut

# The Task fields, in Data Loader's header order.
TASK_FIELDS = ("WhoId", "OwnerId", "Subject", "Description", "ActivityDate", "Status", "TaskSubtype")
CONTACT_FIELDS = ("Id", "HasOptedOutOfEmail")
BATCH = 200  # records a composite/sobjects call takes, Ids a look-up query lists (salesforce.WRITE_BATCH)
OPT_OUT_BATCH = 1000  # addresses per claim: their records are found in pages and updated 200 a call
# Task.Subject holds 255 characters, Description 32,000: a longer value would be refused.
SUBJECT_MAX = 255
DESCRIPTION_MAX = 32000


def task_record(contact_id: str, rep_id: str, subject: str, body: str, day: date) -> dict[str, str]:
    """A sent mail as a completed email Task on the contact, owned by the rep who sent it."""
    return {
        "WhoId": contact_id,
        "OwnerId": rep_id,
        "Subject": f"Email: {subject}"[:SUBJECT_MAX],
        "Description": body[:DESCRIPTION_MAX],
        "ActivityDate": day.isoformat(),
        "Status": "Completed",
        "TaskSubtype": "Email",
    }


def task_payload(contact_id: str, rep_id: str, subject: str, body: str, day: date) -> str:
    """The Task record as the send log keeps it until it is written (JSON)."""
    return json.dumps(task_record(contact_id, rep_id, subject, body, day), ensure_ascii=False)


class Org(Protocol):
    """What writing back needs of Salesforce (``sfa.salesforce.SalesforceSource``)."""

    def write_tasks(self, records: Sequence[dict[str, Any]]) -> list[tuple[str | None, str | None]]: ...

    def find_tasks(self, who_ids: Sequence[str], day: date) -> list[tuple[str, str, str]]: ...

    def opt_out(self, addresses: Sequence[str]) -> dict[str, OptedOut]: ...


@dataclass
class Synced:
    """What one write-back did, for a person."""

    tasks: Counter[str] = field(default_factory=Counter)  # written, rejected, found (already in Salesforce)
    opt_outs: Counter[str] = field(default_factory=Counter)  # written, rejected, nothing (no record), cancelled
    records_opted_out: int = 0
    errors: list[str] = field(default_factory=list)  # the first refusals, "address: words"
    exported: dict[str, int] = field(default_factory=dict)  # file name -> records written to it

    @property
    def rejected(self) -> int:
        return self.tasks["rejected"] + self.opt_outs["rejected"]

    def lines(self) -> list[str]:
        """The summary, a line per kind of record."""
        if self.exported:
            return [*(f"{name}: {count} record(s)" for name, count in self.exported.items()),
                    "import them with Data Loader: Task.csv with Insert on Task, Contact.csv with Update on Contact"]
        t, o = self.tasks, self.opt_outs
        out = [f"Tasks: {t['written']} written, {t['found']} found already written, {t['rejected']} rejected"]
        out.append(f"opt-outs: {o['written']} address(es) done ({self.records_opted_out} record(s) set "
                   f"HasOptedOutOfEmail, {o['nothing']} with no Contact or Lead), {o['rejected']} rejected")
        return out

    def note(self, error: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(error)


def _me() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def _payload(row: SfaWrite) -> dict[str, Any]:
    return json.loads(row.payload or "{}")


def write_back(log: SendLog, org: Org, now: datetime, *, retry_rejected: bool = True) -> Synced:
    """Write what is pending to Salesforce: first look up the Tasks a killed write left in flight, then
    create the pending Tasks (and, with ``retry_rejected``, the ones refused before) 200 a call, then the
    opt-outs. An SFA error (exit 3) stops it; what was settled before stays settled, a call under way
    stays in flight for the next write-back to look up."""
    from repsend.sendlog import PENDING, REJECTED, SFA_OPT_OUT, TASK, WRITTEN

    done = Synced()
    host, pid = _me()
    by = f"{host}:{pid}"
    _look_up(log, org, now, host, pid, done)
    states = (PENDING, REJECTED) if retry_rejected else (PENDING,)
    after = 0
    while rows := log.claim_writes(TASK, states, by, now, limit=BATCH, after_id=after):
        after = rows[-1].id or after
        payloads = [_payload(row) for row in rows]
        results = org.write_tasks(payloads)
        outcomes = []
        for row, payload, (sfa_id, error) in zip(rows, payloads, results, strict=True):
            if error is None:
                done.tasks["written"] += 1
                outcomes.append((row.id, WRITTEN, sfa_id, None, _without_body(payload), True))
            else:
                done.tasks["rejected"] += 1
                done.note(f"{row.address}: {error}")
                outcomes.append((row.id, REJECTED, None, error, row.payload, True))
        log.settle(outcomes, now)
    # Opt-outs: setting the flag again does no harm, so one left in flight is simply done again.
    stale = log.stale_in_flight(SFA_OPT_OUT, now, host, pid)
    log.settle([(row.id, PENDING, row.sfa_id, row.error, row.payload, False) for row in stale], now)
    log.queue_opt_outs(now)
    after = 0
    while rows := log.claim_writes(SFA_OPT_OUT, states, by, now, limit=OPT_OUT_BATCH, after_id=after):
        after = rows[-1].id or after
        try:
            found = org.opt_out([row.address for row in rows])
        except BaseException:
            log.settle([(row.id, PENDING, row.sfa_id, row.error, row.payload, False) for row in rows], now)
            raise
        outcomes = []
        for row in rows:
            result = found.get(normalize_email(row.address))
            changed = result.set if result else []
            payload = json.dumps({"set": changed, "already": result.already if result else []})
            done.records_opted_out += len(changed)
            if result and result.errors:
                done.opt_outs["rejected"] += 1
                error = "; ".join(result.errors)[:2000]
                done.note(f"{row.address}: {error}")
                outcomes.append((row.id, REJECTED, " ".join(changed) or None, error, payload, True))
            else:
                done.opt_outs["written" if result and (changed or result.already) else "nothing"] += 1
                outcomes.append((row.id, WRITTEN, " ".join(changed) or None, None, payload, True))
        log.settle(outcomes, now)
    return done


def _without_body(payload: dict[str, Any]) -> str:
    """A written Task's payload without its body: Salesforce keeps it now, the log need not."""
    return json.dumps({k: v for k, v in payload.items() if k != "Description"}, ensure_ascii=False)


def _look_up(log: SendLog, org: Org, now: datetime, host: str, pid: int, done: Synced) -> None:
    """Tasks left in flight by a write that is gone: those Salesforce has (the same contact, subject and
    day, an Id no other record of the log holds) are written; the others go back to pending."""
    from repsend.sendlog import PENDING, TASK, WRITTEN

    stale = log.stale_in_flight(TASK, now, host, pid)
    by_day: dict[str, list[tuple[SfaWrite, dict[str, Any]]]] = {}
    for row in stale:
        payload = _payload(row)
        by_day.setdefault(payload.get("ActivityDate", ""), []).append((row, payload))
    for day, rows in by_day.items():
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            who = list(dict.fromkeys(p["WhoId"] for _, p in chunk))
            tasks = org.find_tasks(who, date.fromisoformat(day))
            known = log.known_sfa_ids(t[0] for t in tasks)
            free: dict[tuple[str, str], list[str]] = {}
            for task_id, who_id, subject in tasks:
                if task_id not in known:
                    free.setdefault((id15(who_id), subject), []).append(task_id)
            outcomes = []
            for row, payload in chunk:
                ids = free.get((id15(payload["WhoId"]), payload["Subject"]))
                if ids:
                    done.tasks["found"] += 1
                    outcomes.append((row.id, WRITTEN, ids.pop(0), None, _without_body(payload), False))
                else:
                    outcomes.append((row.id, PENDING, None, row.error, row.payload, False))
            log.settle(outcomes, now)


# -- the CSV source: files for Data Loader -------------------------------------------------------------


def export(log: SendLog, settings: Settings, folder: Path, now: datetime, *, everything: bool = False) -> Synced:
    """Task.csv (every Task not exported yet; ``everything``: every one) and Contact.csv (Id and
    HasOptedOutOfEmail for every contact of the export whose address opted out) in ``folder``, for Data
    Loader to insert and update; what was written is remembered as exported."""
    from repsend.sendlog import CANCELLED, EXPORTED, PENDING, REJECTED, SFA_OPT_OUT, TASK

    source = settings.resolve(settings.sfa.path)
    folder = folder.expanduser().resolve()
    if folder == source:
        raise UsageError(f"--export {folder}: that is the export repsend reads ([sfa] path); its Contact.csv would "
                         "be overwritten: give another folder")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--export {folder}: not a folder")
    log.queue_opt_outs(now)
    states = (PENDING, REJECTED, EXPORTED) if everything else (PENDING, REJECTED)
    tasks = log.sfa_writes(TASK, states)
    opt_outs = [row for row in log.sfa_writes(SFA_OPT_OUT) if row.state != CANCELLED and row.state in states]
    ids = _contacts_at(settings, {normalize_email(row.address) for row in opt_outs})
    contacts: list[str] = []
    for row in opt_outs:
        contacts.extend(i for i in ids.get(normalize_email(row.address), []) if i not in contacts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(folder / "Task.csv", TASK_FIELDS, ([_payload(row).get(f, "") for f in TASK_FIELDS] for row in tasks))
        _write_csv(folder / "Contact.csv", CONTACT_FIELDS, ([i, "true"] for i in contacts))
    except OSError as exc:
        raise UsageError(f"--export {folder}: cannot write there: {exc.strerror or exc}") from None
    outcomes = [(row.id, EXPORTED, row.sfa_id, None, row.payload, False) for row in tasks]
    outcomes += [(row.id, EXPORTED, " ".join(ids.get(normalize_email(row.address), [])) or None, None, row.payload,
                  False) for row in opt_outs]
    log.settle(outcomes, now)
    done = Synced(exported={str(folder / "Task.csv"): len(tasks), str(folder / "Contact.csv"): len(contacts)})
    done.tasks["exported"] = len(tasks)
    done.opt_outs["exported"] = len(opt_outs)
    return done


def _contacts_at(settings: Settings, addresses: set[str]) -> dict[str, list[str]]:
    """Normalized address -> the Ids of the export's contacts with it, read from its Contact.csv by the
    export's own reader."""
    if not addresses:
        return {}
    from repsend.sfa.csv_export import CsvExportSource
    from repsend.sfa.csv_format import CONTACT_REQUIRED
    from repsend.sfa.csv_reader import TEXT, CsvFile, rows_of

    source = CsvExportSource.from_settings(settings)  # its folder, and its encoding as the reader wants it
    found: dict[str, list[str]] = {}
    contacts = CsvFile(source.folder / "Contact.csv", source.encoding, CONTACT_REQUIRED)
    for frame in contacts.frames({"Id": TEXT, "Email": TEXT}):
        for sid, email in rows_of(frame, ["Id", "Email"]):
            address = normalize_email(email)
            if address in addresses and sid.strip():
                found.setdefault(address, []).append(sid.strip())
    return found


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A CSV as Data Loader writes one: UTF-8 with a BOM, every value quoted, CRLF; in place at once (a
    temporary file renamed), so that a reader never sees half of it."""
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
            writer.writerow(header)
            writer.writerows(rows)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
