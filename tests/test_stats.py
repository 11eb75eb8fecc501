"""`repsend stats`, and what `repsend log` gained for a sales manager (`--excel`, `--contact`, `--until`, the
bounces and opt-outs after each attempt), through the CLI on a real SQLite file and the real PostgreSQL.

A log of a few hundred attempts (3 reps, 2 campaigns, a week of runs, retries, resolutions, suppressions
of every kind) is written through the send log's own write API at chosen times; every count `stats`
gives is then held to the rows: to the attempts `log` lists and to the log as it was written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from repsend.logview import FIELDS, RUN_FIELDS, STATS_FIELDS
from repsend.sendlog import SendLog
from tests.helpers import CARTER, REPO, SATO, contact, write_config, write_export
from tests.pg import _fresh_schema
from tests.smtp_server import SmtpSink

TOKYO = ZoneInfo("Asia/Tokyo")
TANAKA = "0055g00000AbCdHAAV"
REPS = [(SATO, "k.sato@acme.example"), (CARTER, "e.carter@acme.example"), (TANAKA, "m.tanaka@acme.example")]
DAYS = [date(2026, 11, 20) + timedelta(days=n) for n in range(6)]
KIND_FIELD = {"bounce": "bounced", "opt_out": "opted_out", "complaint": "complained"}
MAILED = ("sent", "sending", "unknown")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of every command: the config's SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"REPSEND_DATABASE_URL": _fresh_schema(request.getfixturevalue("pg_database"))}


def db_url(tmp_path: Path, db: dict[str, str]) -> str:
    return db.get("REPSEND_DATABASE_URL") or f"sqlite:///{tmp_path / 'repsend.db'}"


def cli(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def json_lines(config: Path, db: dict[str, str], *args: str) -> list[dict[str, Any]]:
    result = cli(*args, "--format", "json", "--config", str(config), env=db)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- a log written as runs write it, at chosen times ----------------------------------------------------


@dataclass
class Row:
    id: int
    run_id: str
    campaign: str
    address: str
    contact_id: str
    rep_email: str
    template: str
    created_at: datetime
    state: str
    resolved_as: str | None = None


@dataclass
class Sup:
    address: str
    kind: str
    campaign: str | None
    created_at: datetime
    removed: bool = False


@dataclass
class Written:
    rows: list[Row]
    sups: list[Sup]
    runs: dict[str, dict[str, Any]]  # run id -> campaign, started_at, counts, exit_code (None while open)


def write_log(url: str) -> Written:
    """Runs of two campaigns on six days, at 09:00 Tokyo (one on 11-22 at 23:58, across midnight), by three
    reps; each attempt sent, failed, deferred (retried by a later run) or unknown (some resolved by a
    person); then bounces, opt-outs and complaints after some of the mails, one before any mail, one
    lifted as a mistake, one naming a campaign that never mailed the address; a run left open."""
    rng = random.Random(14)
    rows: list[Row] = []
    sups: list[Sup] = []
    runs: dict[str, dict[str, Any]] = {}
    waiting: dict[str, list[int]] = {"dormant": [], "spring": []}  # people to try again (deferred, not sent)
    done: dict[str, set[int]] = {"dormant": set(), "spring": set()}
    people = iter(range(1, 10_000))
    log = SendLog.open(url)
    try:
        for day in DAYS:
            for campaign in ("dormant", "spring"):
                hour = 23 if (day == DAYS[2] and campaign == "spring") else 9
                start = datetime(day.year, day.month, day.day, hour, 58 if hour == 23 else 0, tzinfo=TOKYO)
                run_id = f"run-{day.isoformat()}-{campaign}"
                log.start_run(run_id, campaign, start, "mail01", 4242)
                counts = Counter[str]()
                retry, waiting[campaign] = waiting[campaign], []
                fresh = [next(people) for _ in range(rng.randint(18, 26))]
                for n, person in enumerate(retry + fresh):
                    at = start + timedelta(minutes=n, seconds=rng.randint(0, 50), microseconds=rng.randint(0, 999_999))
                    rep_id, rep_email = REPS[person % 3]
                    template = "dormant" if campaign == "dormant" else rng.choice(["spring", "dormant"])
                    address = f"p{person}@example.co.jp"
                    contact_id = f"0035g{person:010d}AAA"
                    if campaign == "spring" and person % 17 == 0:  # the holdout group: a row, never a mail
                        assert log.hold_out(run_id=run_id, campaign=campaign, contact_id=contact_id,
                                            address=address, rep_id=rep_id, rep_email=rep_email, template=template,
                                            language="ja", now=at)
                        rows.append(Row(0, run_id, campaign, address, contact_id, rep_email, template, at, "held_out"))
                        done[campaign].add(person)
                        continue
                    row_id = log.claim(run_id=run_id, campaign=campaign, contact_id=contact_id, address=address,
                                       rep_id=rep_id, rep_email=rep_email, subject=f"ご無沙汰しております {person}",
                                       message_id=f"<{campaign}.{person}.{n}@acme.example>", template=template,
                                       language="ja", now=at)
                    assert row_id is not None
                    state = rng.choices(["sent", "failed", "deferred", "unknown"], [70, 10, 10, 10])[0]
                    code = {"sent": 250, "failed": 550, "deferred": 451, "unknown": None}[state]
                    log.finish(row_id, state, at + timedelta(seconds=2), code, f"{code} words")
                    rows.append(Row(row_id, run_id, campaign, address, contact_id, rep_email, template, at, state))
                    counts[state] += 1
                    if state == "deferred":
                        waiting[campaign].append(person)
                    else:
                        done[campaign].add(person)
                skipped = rng.randint(0, 40)
                end = start + timedelta(hours=1)
                log.finish_run(run_id, end, {**counts, "considered": sum(counts.values()) + skipped,
                                             "skipped": skipped}, 1 if counts["failed"] else 0)
                runs[run_id] = {"campaign": campaign, "started_at": start, "finished_at": end, "exit_code":
                                1 if counts["failed"] else 0, "skipped": skipped,
                                "considered": sum(counts.values()) + skipped, **counts}
            # The people of the spring campaign are mailed again by dormant now and then: one address, two
            # campaigns, so that a suppression has to find its own.
            for person in list(done["spring"])[:2]:
                if person not in done["dormant"]:
                    waiting["dormant"].append(person)
        # A person resolves some unknown attempts: mailed after all, or not (the address may be tried again).
        unknown = [r for r in rows if r.state == "unknown"]
        for row, answer in zip(unknown, ["sent", "not_sent", "sent", "not_sent", "sent"], strict=False):
            log.resolve(row.campaign, row.address, answer, now=row.created_at + timedelta(days=1), by="tanaka")
            row.resolved_as = answer
        # A run under way: one mail claimed, not finished, the run open.
        open_at = datetime(2026, 11, 25, 15, 0, tzinfo=TOKYO)
        log.start_run("run-open", "dormant", open_at, "mail01", 4343)
        person = next(people)
        row_id = log.claim(run_id="run-open", campaign="dormant", contact_id=f"0035g{person:010d}AAA",
                           address=f"p{person}@example.co.jp", rep_id=SATO, rep_email=REPS[0][1], subject="s",
                           message_id="<open@acme.example>", template="dormant", language="ja", now=open_at)
        assert row_id is not None
        rows.append(Row(row_id, "run-open", "dormant", f"p{person}@example.co.jp", f"0035g{person:010d}AAA",
                        REPS[0][1], "dormant", open_at, "sending"))
        runs["run-open"] = {"campaign": "dormant", "started_at": open_at, "finished_at": None, "exit_code": None,
                            **dict.fromkeys(("considered", "sent", "failed", "deferred", "unknown", "skipped"), 0)}

        # What came back: after some mails, one kind per address (the log shows an attempt's first).
        addresses = sorted({r.address for r in rows if r.state in ("sent", "unknown")})
        rng.shuffle(addresses)
        for n, address in enumerate(addresses[:45]):
            mail = max((r for r in rows if r.address == address), key=lambda r: r.id)
            kind = ("bounce", "bounce", "opt_out", "complaint")[n % 4]
            campaign = mail.campaign if kind != "opt_out" else None  # the optout command knows no campaign
            at = mail.created_at + timedelta(hours=rng.randint(1, 30))
            assert log.suppress(address, kind, f"test #{n}", at, reason="5.1.1 宛先不明" if kind == "bounce" else "",
                                campaign=campaign)
            sups.append(Sup(address, kind, campaign, at))
        # Before any mail (an opt-out by phone): belongs to no attempt. One lifted: counts nowhere.
        first = min(r.created_at for r in rows)
        log.suppress("p1@example.co.jp", "opt_out", "optout command", first - timedelta(days=3))
        sups.append(Sup("p1@example.co.jp", "opt_out", None, first - timedelta(days=3)))
        lifted = addresses[50]
        log.suppress(lifted, "opt_out", "optout command", datetime(2026, 11, 27, tzinfo=UTC))
        log.unsuppress(lifted, datetime(2026, 11, 28, tzinfo=UTC), reason="wrong person")
        sups.append(Sup(lifted, "opt_out", None, datetime(2026, 11, 27, tzinfo=UTC), removed=True))
        # A bounce naming a campaign that never mailed the address: it belongs to the mail that was sent.
        only_dormant = next(r for r in rows if r.campaign == "dormant" and r.state == "sent"
                            and r.address not in {s.address for s in sups}
                            and not any(o.address == r.address and o.campaign == "spring" for o in rows))
        at = only_dormant.created_at + timedelta(hours=2)
        log.suppress(only_dormant.address, "bounce", "inbox: x.mbox:1 (message 1)", at, campaign="spring")
        sups.append(Sup(only_dormant.address, "bounce", "spring", at))
    finally:
        log.close()
    return Written(rows, sups, runs)


def effective(row: Row) -> str:
    return row.resolved_as if row.state == "unknown" and row.resolved_as else row.state


def owner(sup: Sup, rows: list[Row]) -> Row | None:
    """The test's own reading of the rule: the latest mail (sent, sending, unknown not resolved as not
    sent) to the address at or before the suppression, in its campaign if it has one there, else any."""
    mails = [r for r in rows if r.address == sup.address and r.created_at <= sup.created_at
             and r.state in MAILED and r.resolved_as != "not_sent"]
    same = [r for r in mails if r.campaign == sup.campaign]
    found = same or mails
    return max(found, key=lambda r: r.id) if found else None


def key(row: Row, by: str, zone: ZoneInfo = TOKYO) -> str:
    return {"rep": row.rep_email, "campaign": row.campaign, "template": row.template,
            "day": row.created_at.astimezone(zone).date().isoformat()}[by]


def expected(written: Written, by: str, keep: Any = lambda row: True) -> dict[str, dict[str, int]]:
    """Group -> every count of ``stats``, from the log as it was written."""
    groups: dict[str, Counter[str]] = {}
    for row in written.rows:
        if keep(row):
            groups.setdefault(key(row, by), Counter())[effective(row)] += 1
    for sup in written.sups:
        mail = None if sup.removed else owner(sup, written.rows)
        if mail is not None and keep(mail):
            groups[key(mail, by)][KIND_FIELD[sup.kind]] += 1
    states = ("sent", "failed", "deferred", "unknown", "not_sent", "sending", "held_out")
    return {g: {"attempts": sum(c[s] for s in states), **{f: c[f] for f in (*states, *KIND_FIELD.values())}}
            for g, c in groups.items()}


def counted(lines: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {line["group"]: {k: v for k, v in line.items() if k not in ("type", "by", "group")}
            for line in lines if line["type"] == "group"}


def from_the_log(attempts: list[dict[str, Any]], by: str) -> dict[str, dict[str, int]]:
    """The same counts, from the attempts `repsend log --format json` lists (each with its suppression)."""
    groups: dict[str, Counter[str]] = {}
    for a in attempts:
        group = {"rep": a["rep_email"], "campaign": a["campaign"], "template": a["template"],
                 "day": datetime.fromisoformat(a["created_at"]).astimezone(TOKYO).date().isoformat()}[by]
        c = groups.setdefault(group, Counter())
        c["attempts"] += 1
        c[a["resolved_as"] if a["state"] == "unknown" and a["resolved_as"] else a["state"]] += 1
        if a["suppressed_as"]:
            c[KIND_FIELD[a["suppressed_as"]]] += 1
    fields = STATS_FIELDS[2:]
    return {g: {f: c[f] for f in fields} for g, c in groups.items()}


@pytest.fixture
def written(tmp_path: Path, db: dict[str, str]) -> tuple[Path, Written]:
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]))
    return config, write_log(db_url(tmp_path, db))


# -- stats ----------------------------------------------------------------------------------------------


def test_stats_counts_equal_the_rows(written: tuple[Path, Written], db: dict[str, str]) -> None:
    config, log = written
    assert len(log.rows) > 250 and len({r.address for r in log.rows}) < len(log.rows)  # retries
    attempts = [line for line in json_lines(config, db, "log") if line["type"] == "attempt"]
    assert len(attempts) == len(log.rows)
    for by in ("rep", "campaign", "day", "template"):
        lines = json_lines(config, db, "stats", "--by", by)
        assert [list(line) for line in lines[:-1]] == [["type", *STATS_FIELDS]] * (len(lines) - 1)
        stats = counted(lines)
        assert stats == expected(log, by), by
        assert stats == from_the_log(attempts, by), by  # the log's rows say the same
        summary = lines[-1]
        assert summary["type"] == "summary" and summary["by"] == by and summary["groups"] == len(stats)
        assert summary["attempts"] == len(log.rows)
        assert summary["bounced"] + summary["opted_out"] + summary["complained"] == sum(
            1 for s in log.sups if not s.removed and owner(s, log.rows))
    by_day = counted(json_lines(config, db, "stats", "--by", "day"))
    # The run begun at 23:58 on 11-22 mailed on two days, the reps' days (Tokyo), not UTC's.
    assert list(by_day) == [d.isoformat() for d in DAYS]
    late = [r for r in log.rows if r.run_id == "run-2026-11-22-spring"]
    assert {key(r, "day") for r in late} == {"2026-11-22", "2026-11-23"}
    assert sum(by_day["2026-11-25"].values()) and by_day["2026-11-25"]["sending"] == 1  # the open run
    # Nothing hidden: every kind of count occurs in this log.
    totals = json_lines(config, db, "stats")[-1]
    assert all(totals[f] for f in STATS_FIELDS[3:]), totals

    # --since, --until (whole days in [rate] timezone, both inclusive) and --campaign count what they keep.
    first, last = date(2026, 11, 22), date(2026, 11, 23)

    def keep(row: Row) -> bool:
        return first <= row.created_at.astimezone(TOKYO).date() <= last and row.campaign == "spring"

    narrow = json_lines(config, db, "stats", "--by", "rep", "--since", first.isoformat(), "--until", last.isoformat(),
                        "--campaign", "spring")
    assert counted(narrow) == expected(log, "rep", keep)
    one_day = counted(json_lines(config, db, "stats", "--by", "day", "--since", "2026-11-23", "--until", "2026-11-23"))
    assert one_day == {"2026-11-23": by_day["2026-11-23"]}

    # The table: a line per group and the total, the same numbers.
    result = cli("stats", "--by", "rep", "--config", str(config), env=db)
    assert result.exit_code == 0, result.output
    table = result.stdout.splitlines()
    header = table[0].split()
    assert header[:2] == ["rep", "attempts"] and "bounced" in header and table[-1].startswith("total")
    numbers = {line.split()[0]: line.split()[1:] for line in table[1:]}
    names = table[0]
    for two_words in ("opted out", "not sent", "held out"):
        names = names.replace(two_words, two_words.replace(" ", "_"))
    names = names.split()[1:]
    rep_stats = counted(json_lines(config, db, "stats", "--by", "rep"))
    for rep, values in rep_stats.items():
        assert dict(zip(names, map(int, numbers[rep]), strict=True)) == {n: values[n] for n in names}
    assert int(numbers["total"][0]) == len(log.rows)

    # CSV (and --excel, the same bytes): the JSON fields, a line per group.
    as_csv = cli("stats", "--by", "campaign", "--format", "csv", "--config", str(config), env=db)
    excel = cli("stats", "--by", "campaign", "--excel", "--config", str(config), env=db)
    assert as_csv.exit_code == excel.exit_code == 0 and as_csv.stdout_bytes == excel.stdout_bytes
    assert as_csv.stdout_bytes.startswith(b"\xef\xbb\xbfby,group,attempts,") and b"\r\n" in as_csv.stdout_bytes
    read = list(csv.DictReader(io.StringIO(as_csv.stdout_bytes.decode("utf-8-sig"), newline="")))
    by_campaign = counted(json_lines(config, db, "stats", "--by", "campaign"))
    assert {r["group"]: {k: int(v) for k, v in r.items() if k not in ("by", "group")} for r in read} == by_campaign


def test_stats_by_run_gives_each_runs_own_counts(written: tuple[Path, Written], db: dict[str, str]) -> None:
    config, log = written
    lines = json_lines(config, db, "stats", "--by", "run")
    runs = {line["run_id"]: line for line in lines if line["type"] == "run"}
    assert list(runs) == sorted(log.runs, key=lambda r: log.runs[r]["started_at"])  # oldest first
    assert [list(line) for line in runs.values()] == [["type", *RUN_FIELDS, "reasons"]] * len(runs)
    assert all(line["reasons"] == {} for line in runs.values())  # rows written by hand: no run kept reasons
    after: dict[str, Counter[str]] = {}
    for sup in log.sups:
        mail = None if sup.removed else owner(sup, log.rows)
        if mail is not None:
            after.setdefault(mail.run_id, Counter())[KIND_FIELD[sup.kind]] += 1
    for run_id, run in log.runs.items():
        line = runs[run_id]
        assert line["campaign"] == run["campaign"] and line["exit_code"] == run["exit_code"]
        assert datetime.fromisoformat(line["started_at"]) == run["started_at"]
        assert line["finished_at"] == (run["finished_at"].astimezone(UTC).isoformat() if run["finished_at"] else None)
        assert {k: line[k] for k in ("considered", "sent", "failed", "deferred", "unknown", "skipped")} == {
            k: run.get(k, 0) for k in ("considered", "sent", "failed", "deferred", "unknown", "skipped")}
        assert {k: line[k] for k in KIND_FIELD.values()} == {k: after.get(run_id, Counter())[k]
                                                              for k in KIND_FIELD.values()}
    summary = lines[-1]
    assert summary["runs"] == len(log.runs) and summary["considered"] == sum(r["considered"] for r in log.runs.values())
    assert summary["sent"] == sum(r.state == "sent" for r in log.rows)  # as the runs recorded them
    spring = json_lines(config, db, "stats", "--by", "run", "--campaign", "spring", "--since", "2026-11-25")
    assert [line["run_id"] for line in spring[:-1]] == ["run-2026-11-25-spring"]

    table = cli("stats", "--by", "run", "--config", str(config), env=db)
    assert table.exit_code == 0, table.output
    text = table.stdout.splitlines()
    assert text[0].split()[:5] == ["run", "campaign", "started", "finished", "exit"]
    assert text[1].split()[:4] == ["run-2026", "dormant", "2026-11-20", "09:00"]  # the id's start, Tokyo time
    assert text[-1].startswith(f"{len(log.runs)} runs")
    assert any(line.split()[:1] == ["run-open"] and " - " in line for line in text)  # open: no finish, no exit


def test_stats_and_log_never_write(written: tuple[Path, Written], tmp_path: Path, db: dict[str, str]) -> None:
    config, _ = written
    if db:  # PostgreSQL: the session is read-only; a write would fail the command
        for args in (["stats"], ["stats", "--by", "day"], ["stats", "--by", "run"], ["log", "--contact", "p5@x.jp"]):
            assert cli(*args, "--config", str(config), env=db).exit_code == 0
        return
    path = tmp_path / "repsend.db"
    SendLog.open(f"sqlite:///{path}").close()  # the writer's close checkpoints: everything in the main file
    before = hashlib.sha256(path.read_bytes()).hexdigest(), sorted(p.name for p in tmp_path.iterdir())
    for args in (["stats"], ["stats", "--by", "day", "--excel"], ["stats", "--by", "run"], ["log", "--excel"],
                 ["log", "--contact", "P5@Example.co.jp", "--until", "2026-11-30"]):
        assert cli(*args, "--config", str(config), env=db).exit_code == 0
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), sorted(p.name for p in tmp_path.iterdir())) == before


def test_stats_days_follow_the_reps_time_zone_across_a_dst_change(tmp_path: Path, db: dict[str, str]) -> None:
    """New York leaves daylight time at 2026-11-01 06:00 UTC: a day is 25 hours long, and each attempt
    counts on the calendar day a rep there lived it."""
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]),
                          rate={"timezone": "America/New_York"})
    times = {  # UTC -> the New York day
        datetime(2026, 3, 8, 6, 30, tzinfo=UTC): "2026-03-08",   # 01:30 EST, before the spring change
        datetime(2026, 3, 9, 3, 30, tzinfo=UTC): "2026-03-08",   # 23:30 EDT
        datetime(2026, 11, 1, 3, 30, tzinfo=UTC): "2026-10-31",  # 23:30 EDT
        datetime(2026, 11, 1, 4, 30, tzinfo=UTC): "2026-11-01",  # 00:30 EDT
        datetime(2026, 11, 1, 5, 59, 59, 999999, tzinfo=UTC): "2026-11-01",  # 01:59:59 EDT, the last moment
        datetime(2026, 11, 1, 6, 0, tzinfo=UTC): "2026-11-01",   # 01:00 EST, the hour again
        datetime(2026, 11, 2, 4, 30, tzinfo=UTC): "2026-11-01",  # 23:30 EST
        datetime(2026, 11, 2, 5, 30, tzinfo=UTC): "2026-11-02",  # 00:30 EST
    }
    log = SendLog.open(db_url(tmp_path, db))
    try:
        for n, at in enumerate(times):
            row_id = log.claim(run_id="r", campaign="dormant", contact_id=f"0035g{n:010d}AAA",
                               address=f"p{n}@example.com", rep_id=CARTER, rep_email="e.carter@acme.example",
                               subject="Catching up", message_id=f"<{n}@acme.example>", template="dormant",
                               language="en", now=at)
            assert row_id is not None
            log.finish(row_id, "sent", at, 250, "ok")
    finally:
        log.close()
    by_day = counted(json_lines(config, db, "stats", "--by", "day"))
    assert {day: c["sent"] for day, c in by_day.items()} == dict(sorted(Counter(times.values()).items()))
    # --since and --until are whole days there too: 2026-11-01 is 25 hours, from 04:00 to 05:00 UTC next day.
    one = json_lines(config, db, "log", "--since", "2026-11-01", "--until", "2026-11-01")
    assert sorted(line["address"] for line in one[:-1]) == [f"p{n}@example.com" for n in (3, 4, 5, 6)]
    assert counted(json_lines(config, db, "stats", "--since", "2026-11-01", "--until", "2026-11-01"))[
        "e.carter@acme.example"]["sent"] == 4


def test_stats_refuses_wrong_options_and_reads_no_log_that_is_not_there(tmp_path: Path) -> None:
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]))
    for args, words in [(["stats", "--by", "week"], "'week': use rep, campaign, day, template, run"),
                        (["stats", "--format", "xml"], "'xml': use table, csv, json"),
                        (["stats", "--excel", "--format", "json"], "--excel is --format csv, not json"),
                        (["stats", "--since", "2026-11-31"], "--since"),
                        (["stats", "--since", "2026-11-20", "--until", "2026-11-19"], "before --since 2026-11-20"),
                        (["log", "--until", "11/30/2026"], "--until"),
                        (["log", "--excel", "--json"], "--excel is --format csv, not json"),
                        (["log", "--excel", "--format", "table"], "--excel is --format csv, not table"),
                        (["log", "--contact", "0035g0000"], "give an address or a Contact Id (15 or 18")]:
        result = cli(*args, "--config", str(config), env={})
        assert result.exit_code == 2 and words in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    nothing = cli("stats", "--config", str(config), env={})
    assert nothing.exit_code == 0 and nothing.stdout == "" and "no send log at" in nothing.stderr
    assert not (tmp_path / "repsend.db").exists()
    SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}").close()  # a log with nothing in it
    assert cli("stats", "--config", str(config), env={}).stdout == "no send attempts match\n"
    assert cli("stats", "--by", "run", "--config", str(config), env={}).stdout == "no runs match\n"
    assert json_lines(config, {}, "stats", "--by", "day") == [
        {"type": "summary", "by": "day", "groups": 0, "attempts": 0, "sent": 0, "failed": 0, "deferred": 0,
         "unknown": 0, "not_sent": 0, "sending": 0, "held_out": 0, "bounced": 0, "opted_out": 0, "complained": 0}]


def test_stats_reads_a_log_from_before_resolutions_and_suppressions(tmp_path: Path, db: dict[str, str]) -> None:
    from tests.test_log import _log_at_0002

    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]))
    _log_at_0002(db_url(tmp_path, db))
    assert counted(json_lines(config, db, "stats", "--by", "campaign")) == {"dormant": {
        "attempts": 4, "sent": 1, "failed": 1, "deferred": 1, "unknown": 1, "not_sent": 0, "sending": 0, "held_out": 0,
        "bounced": 0, "opted_out": 0, "complained": 0}}
    assert counted(json_lines(config, db, "stats", "--by", "day")) == {"2026-11-02": counted(
        json_lines(config, db, "stats", "--by", "campaign"))["dormant"]}
    assert [line["suppressed_as"] for line in json_lines(config, db, "log")[:-1]] == [None] * 4


# -- log: the bounces and opt-outs after each attempt, --contact, --until, --excel ----------------------


def test_the_log_shows_what_came_after_each_mail_and_one_persons_attempts(
        tmp_path: Path, smtp_sink: SmtpSink, db: dict[str, str]) -> None:
    smtp_sink.refuse("c3@example.co.jp")
    rows = [contact(1), contact(2), contact(3), contact(4, FirstName="John", LastName="Miller", OwnerId=CARTER,
                                                          MailingCountry="United States")]
    config = write_config(tmp_path, write_export(tmp_path / "export", rows), smtp={"security": "none"})
    run = cli("dormant", "--json", "--as-of", "2026-11-23", "--config", str(config), env={**smtp_sink.env(), **db})
    assert run.exit_code == 1, run.output
    # c1 asks by phone to stop; c2's mail bounces (as `repsend inbox` records it, with the campaign).
    optout = cli("optout", "C1@example.co.jp", "--reason", "電話で依頼（山田様）", "--config", str(config), env=db)
    assert optout.exit_code == 0, optout.output
    log = SendLog.open(db_url(tmp_path, db))
    try:
        assert log.suppress("c2@example.co.jp", "bounce", "inbox: bounces.mbox:12 (message 3)",
                            datetime.now(UTC), reason="5.1.1 <c2@example.co.jp>: User unknown", campaign="dormant")
    finally:
        log.close()

    table = cli("log", "--config", str(config), env=db)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    at = {line.split()[4]: n for n, line in enumerate(lines) if line[:4].isdigit()}  # address -> its line
    assert lines[at["c1@example.co.jp"] + 1].startswith(" " * 18 + "then opted out ")
    assert lines[at["c1@example.co.jp"] + 1].endswith(": 電話で依頼（山田様） (optout command)")
    assert lines[at["c2@example.co.jp"] + 1].strip().startswith("then bounced ")
    assert lines[at["c2@example.co.jp"] + 1].endswith(
        ": 5.1.1 <c2@example.co.jp>: User unknown (inbox: bounces.mbox:12 (message 3))")
    assert lines[at["c3@example.co.jp"] + 1][:4].isdigit()  # refused, nothing after it
    assert "4 attempts for 4 addresses: 1 failed, 3 sent; then 1 bounced, 1 opted out" in lines

    records = {r["address"]: r for r in json_lines(config, db, "log")[:-1]}
    c1, c2 = records["c1@example.co.jp"], records["c2@example.co.jp"]
    assert (c1["suppressed_as"], c1["suppressed_source"], c1["suppressed_reason"]) == (
        "opt_out", "optout command", "電話で依頼（山田様）")
    assert datetime.fromisoformat(c1["suppressed_at"]) >= datetime.fromisoformat(c1["created_at"])
    assert (c2["suppressed_as"], c2["suppressed_source"]) == ("bounce", "inbox: bounces.mbox:12 (message 3)")
    assert records["c3@example.co.jp"]["suppressed_as"] is records["c4@example.co.jp"]["suppressed_at"] is None
    assert json_lines(config, db, "log")[-1]["suppressions"] == {"bounce": 1, "opt_out": 1}
    assert counted(json_lines(config, db, "stats", "--by", "rep")) == {
        "k.sato@acme.example": {"attempts": 3, "sent": 2, "failed": 1, "deferred": 0, "unknown": 0, "not_sent": 0,
                                "sending": 0, "held_out": 0, "bounced": 1, "opted_out": 1, "complained": 0},
        "e.carter@acme.example": {"attempts": 1, "sent": 1, "failed": 0, "deferred": 0, "unknown": 0, "not_sent": 0,
                                  "sending": 0, "held_out": 0, "bounced": 0, "opted_out": 0, "complained": 0}}

    # One person: by address (any case), by Contact Id in 15 or 18 characters.
    c2_id = contact(2)["Id"]
    for who in (" C2@Example.CO.JP ", c2_id, c2_id[:15]):
        one = json_lines(config, db, "log", "--contact", who)
        assert [r["address"] for r in one[:-1]] == ["c2@example.co.jp"], who
    assert json_lines(config, db, "log", "--contact", contact(9)["Id"])[-1]["attempts"] == 0
    # --until: the whole day, in [rate] timezone; a day before the run lists nothing.
    today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    assert json_lines(config, db, "log", "--until", today.isoformat())[-1]["attempts"] == 4
    assert json_lines(config, db, "log", "--until", (today - timedelta(days=1)).isoformat())[-1]["attempts"] == 0

    # --excel: the CSV of --format csv, which Japanese Excel opens as it is (a BOM, CRLF), names intact.
    excel = cli("log", "--excel", "--config", str(config), env=db)
    assert excel.exit_code == 0 and excel.stdout_bytes == cli("log", "--format", "csv", "--config", str(config),
                                                              env=db).stdout_bytes
    data = excel.stdout_bytes
    assert data.startswith(b"\xef\xbb\xbfid,run_id,campaign,")
    assert data.count(b"\r\n") == 5 and data.replace(b"\r\n", b"").count(b"\n") == 0  # header + 4 lines, CRLF only
    read = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert list(read[0]) == list(FIELDS)
    by_address = {r["address"]: r for r in read}
    assert by_address["c1@example.co.jp"]["subject"] == "ご無沙汰しております（株式会社アクメ 佐藤）"
    assert by_address["c1@example.co.jp"]["suppressed_reason"] == "電話で依頼（山田様）"
    assert by_address["c4@example.co.jp"]["suppressed_as"] == ""  # null is empty


def test_excel_csv_is_utf8_with_crlf_whatever_the_console_encoding(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """A Japanese Windows console is CP932: the CSV must still be UTF-8 bytes with a BOM, and its CRLF
    never doubled by newline translation. The real entry point, in a subprocess with a CP932 stdout."""
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]), smtp={"security": "none"})
    assert cli("dormant", "--as-of", "2026-11-23", "--config", str(config), env=smtp_sink.env()).exit_code == 0
    env = {**os.environ, "PYTHONIOENCODING": "cp932", "PYTHONPATH": str(REPO)}
    env.pop("REPSEND_DATABASE_URL", None)
    for args in (["log", "--excel"], ["stats", "--excel"]):
        done = subprocess.run([sys.executable, "-m", "repsend", *args, "--config", str(config)], env=env,
                              capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(b"\xef\xbb\xbf") and b"\r\r\n" not in done.stdout
        text = done.stdout.decode("utf-8-sig")  # would fail on CP932 bytes
        assert text.endswith("\r\n")
        if args[0] == "log":
            assert next(csv.DictReader(io.StringIO(text, newline="")))["subject"] == (
                "ご無沙汰しております（株式会社アクメ 佐藤）")
    # The table is the console's: CP932 there.
    table = subprocess.run([sys.executable, "-m", "repsend", "log", "--config", str(config)], env=env,
                           capture_output=True, timeout=60, check=False)
    assert table.returncode == 0 and "ご無沙汰しております".encode("cp932") in table.stdout
