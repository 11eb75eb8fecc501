"""`repsend log` and `repsend resolve` as a sales manager uses them, and what the next run makes of them.

Real runs against the loopback SMTP server into a real SQLite file or the real PostgreSQL (each test runs
on both), read back through the CLI: per-rep and per-campaign counts by state, the server's answer of a
failure, the state of each address now next to its attempts; a refused address skipped as
``previously_failed`` (or mailed again with ``retry_failed``); an ``unknown`` attempt resolved by a person.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import re
import sqlite3
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from typer.testing import CliRunner

from repsend import sendlog
from repsend.cli import app
from repsend.clock import FakeClock
from repsend.logview import FIELDS
from repsend.selection import RunOptions
from repsend.sending import Reporter, RunResult, send_run
from repsend.sendlog import SendLog, alembic_config
from repsend.settings import load_settings
from repsend.sfa import open_source
from repsend.transport import open_transport
from tests.helpers import CARTER, contact, write_config, write_export
from tests.pg import _fresh_schema
from tests.smtp_server import SmtpSink
from tests.test_sendlog import HEAD

AS_OF = date(2026, 11, 23)
MONDAY_10_TOKYO = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
SATO_MAIL, CARTER_MAIL = "k.sato@acme.example", "e.carter@acme.example"
UNKNOWN_USER = "5.1.1 <c3@example.co.jp>: Recipient address rejected: User unknown in virtual mailbox table"
AT_RCPT = " (at RCPT TO)"  # the transport says which command the server refused


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of every command: the config's SQLite file, or a fresh schema on PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"REPSEND_DATABASE_URL": _fresh_schema(request.getfixturevalue("pg_database"))}


def db_url(tmp_path: Path, db: dict[str, str]) -> str:
    return db.get("REPSEND_DATABASE_URL") or f"sqlite:///{tmp_path / 'repsend.db'}"


def configure(tmp_path: Path, rows: list[dict[str, str]], extra: str = "") -> Path:
    export = write_export(tmp_path / "export", rows)
    return write_config(tmp_path, export, extra=extra, smtp={"security": "none"})


def cli(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def dormant(config: Path, sink: SmtpSink, db: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    """A real run through the CLI; its exit code and its JSON lines (decisions, then the summary)."""
    result = cli("dormant", "--json", "--as-of", AS_OF.isoformat(), "--config", str(config), *args,
                 env={**sink.env(), **db})
    assert "Traceback" not in result.output, result.output
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


def reasons(lines: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    """Address -> (the outcome of a send or the reason of a skip, detail) of a run's JSON lines."""
    return {d["email"]: (d.get("outcome") or d["reason"], d["detail"]) for d in lines if d["type"] == "decision"}


def run_with_fake_clock(config: Path, sink: SmtpSink, db: dict[str, str]) -> RunResult:
    """A real run in this process, for a server that answers 4xx: its backoff sleeps on a fake clock."""
    settings = load_settings(config, env={**os.environ, **sink.env(), **db})
    clock = FakeClock(MONDAY_10_TOKYO)

    class Quiet(Reporter):
        """Prints nothing: the test reads the send log."""

    log = SendLog.open(settings.database_url)
    source = open_source(settings)
    try:
        return send_run(settings, source, RunOptions(AS_OF, "dormant", "dormant"), log=log,
                        open_transport=lambda: open_transport(settings, clock), clock=clock, reporter=Quiet())
    finally:
        source.close()
        log.close()


def log_table(config: Path, db: dict[str, str], *args: str) -> dict[str, Any]:
    """`repsend log` as a person reads it: the attempt rows (cells by column name), the counts line, and
    the addresses by state now, per campaign and per rep."""
    result = cli("log", "--config", str(config), *args, env=db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    names = ["when", "campaign", "from", "to", "state", "now", "code", "subject or server's answer"]
    starts = [lines[0].index(name) for name in names]
    assert lines[0].split()[:7] == names[:7], lines[0]
    blank = lines.index("")
    rows = []
    for line in lines[1:blank]:  # the test's values fit their columns: cut at the header's places
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(["when", "campaign", "from", "to", "state", "now", "code", "detail"], cells,
                             strict=True)))
    counts_header = lines[blank + 2].split()
    assert counts_header[:4] == ["addresses", "by", "state", "now"], lines[blank + 2]
    states = counts_header[4:]
    counts = {}
    for line in lines[blank + 3:]:
        kind, name, *numbers = line.split()
        counts[f"{kind} {name}"] = {s: int(n) for s, n in zip(states, numbers, strict=True) if int(n)}
    return {"rows": rows, "total": lines[blank + 1], "counts": counts, "text": result.stdout}


def log_json(config: Path, db: dict[str, str], *args: str) -> list[dict[str, Any]]:
    result = cli("log", "--format", "json", "--config", str(config), *args, env=db)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def five_contacts() -> list[dict[str, str]]:
    """c1 to c4 of 佐藤's, c5 an English contact of Carter's."""
    return [*(contact(i) for i in range(1, 5)),
            contact(5, OwnerId=CARTER, MailingCountry="United States", FirstName="John", LastName="Miller")]


def test_the_log_counts_each_rep_by_state_and_shows_what_became_of_each_address(
        tmp_path: Path, smtp_sink: SmtpSink, db: dict[str, str]) -> None:
    smtp_sink.refuse("c3@example.co.jp", text=UNKNOWN_USER)
    smtp_sink.refuse("c4@example.co.jp", code=554, text="5.7.1 Relay access denied")
    smtp_sink.tempfail(times=3, at="RCPT", address="c5@example.co.jp")  # every retry of the first run
    config = configure(tmp_path, five_contacts())
    assert run_with_fake_clock(config, smtp_sink, db).exit_code == 1

    first = log_table(config, db)
    by_address = {r["to"]: r for r in first["rows"]}
    assert first["total"] == "5 attempts for 5 addresses: 1 deferred, 2 failed, 2 sent"
    # Not "2 sent": the rep's failures are counted beside the sends.
    assert first["counts"] == {
        "campaign dormant": {"sent": 2, "failed": 2, "deferred": 1},
        f"rep {SATO_MAIL}": {"sent": 2, "failed": 2},
        f"rep {CARTER_MAIL}": {"deferred": 1},
    }
    # The server's own words for each failure, next to its code.
    c3 = by_address["c3@example.co.jp"]
    assert (c3["state"], c3["now"], c3["code"], c3["detail"]) == ("failed", "failed", "550", UNKNOWN_USER + AT_RCPT)
    assert (by_address["c4@example.co.jp"]["code"], by_address["c4@example.co.jp"]["detail"]) == (
        "554", "5.7.1 Relay access denied" + AT_RCPT)
    assert by_address["c5@example.co.jp"]["detail"].startswith("4.7.1 Try again later")
    assert by_address["c1@example.co.jp"]["detail"] == "ご無沙汰しております（株式会社アクメ 佐藤）"

    # The next run: the deferred contact is mailed, the refused ones are not, and say why.
    code, lines = dormant(config, smtp_sink, db)
    assert code == 0
    assert reasons(lines) == {
        "c1@example.co.jp": ("already_sent", None), "c2@example.co.jp": ("already_sent", None),
        "c3@example.co.jp": ("previously_failed", f"550 {UNKNOWN_USER}{AT_RCPT}"),
        "c4@example.co.jp": ("previously_failed", f"554 5.7.1 Relay access denied{AT_RCPT}"),
        "c5@example.co.jp": ("sent", None),
    }
    assert Counter(m.rcpt_tos[0] for m in smtp_sink.messages) == {
        "c1@example.co.jp": 1, "c2@example.co.jp": 1, "c5@example.co.jp": 1}

    second = log_table(config, db)
    assert second["total"] == "6 attempts for 5 addresses: 1 deferred, 2 failed, 3 sent"
    assert second["counts"] == {
        "campaign dormant": {"sent": 3, "failed": 2},
        f"rep {SATO_MAIL}": {"sent": 2, "failed": 2},
        f"rep {CARTER_MAIL}": {"sent": 1},
    }
    c5 = [r for r in second["rows"] if r["to"] == "c5@example.co.jp"]
    assert [(r["state"], r["now"]) for r in c5] == [("sent", "sent"), ("deferred", "sent")]  # newest first

    # Filtered to the deferred attempts, each still says what became of its address.
    deferred = log_json(config, db, "--state", "deferred")
    assert [(r["address"], r["state"], r["state_now"], r["smtp_code"]) for r in deferred[:-1]] == [
        ("c5@example.co.jp", "deferred", "sent", 451)]
    assert deferred[-1] == {"type": "summary", "attempts": 1, "states": {"deferred": 1}, "addresses": 1,
                            "now": {"sent": 1}, "campaigns": {"dormant": {"sent": 1}},
                            "reps": {CARTER_MAIL: {"sent": 1}}}
    whole = log_json(config, db)
    assert list(whole[0]) == ["type", *FIELDS]
    assert whole[-1]["reps"] == {CARTER_MAIL: {"sent": 1}, SATO_MAIL: {"sent": 2, "failed": 2}}
    per_rep = log_json(config, db, "--rep", SATO_MAIL, "--state", "failed")
    assert [(r["address"], r["smtp_text"]) for r in per_rep[:-1]] == [
        ("c4@example.co.jp", "5.7.1 Relay access denied" + AT_RCPT), ("c3@example.co.jp", UNKNOWN_USER + AT_RCPT)]

    # CSV for a spreadsheet: the same fields, a line per attempt, a BOM for Excel.
    result = cli("log", "--format", "csv", "--config", str(config), env=db)
    assert result.exit_code == 0 and result.stdout.startswith("\ufeffid,run_id,campaign,")
    table = list(csv.DictReader(io.StringIO(result.stdout.removeprefix("\ufeff"))))
    assert len(table) == 6 and list(table[0]) == list(FIELDS)
    assert {(r["address"], r["state"], r["state_now"], r["smtp_code"], r["resolved_as"]) for r in table} >= {
        ("c3@example.co.jp", "failed", "failed", "550", ""), ("c5@example.co.jp", "deferred", "sent", "451", "")}

    # A dry run gives the same answer as the real run (one engine), and writes nothing.
    dry = cli("dormant", "--dry-run", "--json", "--as-of", AS_OF.isoformat(), "--config", str(config), env=db)
    assert reasons([json.loads(line) for line in dry.stdout.splitlines()])["c3@example.co.jp"] == (
        "previously_failed", f"550 {UNKNOWN_USER}{AT_RCPT}")


def test_the_log_keeps_its_options_and_refuses_wrong_ones(tmp_path: Path, smtp_sink: SmtpSink,
                                                          db: dict[str, str]) -> None:
    config = configure(tmp_path, [contact(1)])
    assert dormant(config, smtp_sink, db)[0] == 0
    as_json = cli("log", "--json", "--config", str(config), env=db)
    assert as_json.exit_code == 0 and as_json.stdout == cli("log", "--format", "json", "--json", "--config",
                                                            str(config), env=db).stdout
    assert json.loads(as_json.stdout.splitlines()[0])["state_now"] == "sent"
    for args, words in [(["--format", "xml"], "'xml': use table, csv, json"),
                        (["--format", "csv", "--json"], "--json is --format json, not csv"),
                        (["--state", "lost"], "'lost': use one of")]:
        wrong = cli("log", *args, "--config", str(config), env=db)
        assert wrong.exit_code == 2 and words in wrong.stderr, wrong.output
    nothing = cli("log", "--campaign", "spring", "--config", str(config), env=db)
    assert nothing.exit_code == 0 and nothing.stdout == "no send attempts match\n"
    empty = log_json(config, db, "--campaign", "spring")
    assert empty == [{"type": "summary", "attempts": 0, "states": {}, "addresses": 0, "now": {}, "campaigns": {},
                      "reps": {}}]


def test_retry_failed_mails_a_refused_address_again(tmp_path: Path, make_smtp_sink: Any,
                                                    db: dict[str, str]) -> None:
    refusing = make_smtp_sink()
    refusing.refuse("c1@example.co.jp")
    config = configure(tmp_path, [contact(1), contact(2)])
    assert dormant(config, refusing, db)[0] == 1
    fixed = make_smtp_sink()  # the mailbox exists now
    assert reasons(dormant(config, fixed, db)[1])["c1@example.co.jp"] == (
        "previously_failed", "550 5.1.1 Mailbox unavailable" + AT_RCPT)
    assert fixed.messages == []

    config = configure(tmp_path, [contact(1), contact(2)], extra="[campaign]\nretry_failed = true\n")
    code, lines = dormant(config, fixed, db)
    assert code == 0 and reasons(lines) == {"c1@example.co.jp": ("sent", None),
                                            "c2@example.co.jp": ("already_sent", None)}
    assert [m.rcpt_tos[0] for m in fixed.messages] == ["c1@example.co.jp"]
    # Once sent, never again, retry_failed or not.
    assert reasons(dormant(config, fixed, db)[1])["c1@example.co.jp"] == ("already_sent", None)
    table = log_table(config, db)
    assert [(r["to"], r["state"], r["now"]) for r in table["rows"] if r["to"] == "c1@example.co.jp"] == [
        ("c1@example.co.jp", "sent", "sent"), ("c1@example.co.jp", "failed", "sent")]
    assert table["counts"][f"rep {SATO_MAIL}"] == {"sent": 2}

    # Strict: a string is not a boolean.
    wrong = configure(tmp_path, [contact(1)], extra='[campaign]\nretry_failed = "yes"\n')
    result = cli("dormant", "--dry-run", "--config", str(wrong), env=db)
    assert result.exit_code == 2 and "retry_failed" in result.stderr and "Traceback" not in result.output


def test_an_unknown_attempt_resolved_by_a_person(tmp_path: Path, smtp_sink: SmtpSink, db: dict[str, str]) -> None:
    # The connection breaks after the first and the third message, before the server's answer.
    smtp_sink.drop(after=0, at="EOM")
    smtp_sink.drop(after=1, at="EOM")
    config = configure(tmp_path, [contact(1), contact(2), contact(3)])
    code, lines = dormant(config, smtp_sink, db)
    assert code == 1 and reasons(lines) == {"c1@example.co.jp": ("unknown", None), "c2@example.co.jp": ("sent", None),
                                            "c3@example.co.jp": ("unknown", None)}
    assert reasons(dormant(config, smtp_sink, db)[1])["c1@example.co.jp"] == ("already_sent", None)

    # c1 never arrived (the server's log says so): it may go out again. c3 did: never again.
    env = {**db}
    done = cli("resolve", "C1@Example.co.jp", "--not-sent", "--campaign", "dormant", "--note",
               "not in the mail server's log", "--config", str(config), env=env)
    assert done.exit_code == 0, done.output
    assert re.fullmatch(r"resolved: c1@example\.co\.jp in campaign 'dormant' \(\S+, attempt \d+\) as not_sent by "
                        rf"{re.escape(getpass.getuser())}: a later run of the campaign may send it\n", done.stdout)
    assert cli("resolve", "c3@example.co.jp", "--sent", "--campaign", "dormant", "--config", str(config),
               env=env).exit_code == 0

    code, lines = dormant(config, smtp_sink, db)
    assert code == 0 and reasons(lines) == {"c1@example.co.jp": ("sent", None),
                                            "c2@example.co.jp": ("already_sent", None),
                                            "c3@example.co.jp": ("already_sent", None)}
    delivered = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert delivered == {"c1@example.co.jp": 1, "c2@example.co.jp": 1}  # c3 only the one the server took unanswered

    table = log_table(config, db)
    assert table["total"] == "4 attempts for 3 addresses: 2 sent, 2 unknown"
    rows = {(r["to"], r["state"]): r for r in table["rows"]}
    c1 = rows[("c1@example.co.jp", "unknown")]
    assert c1["now"] == "sent"
    assert re.fullmatch(rf"resolved as not_sent by {re.escape(getpass.getuser())} on \d{{4}}-\d\d-\d\d: "
                        "not in the mail server's log", c1["detail"]), c1
    assert rows[("c3@example.co.jp", "unknown")]["now"] == "sent"
    assert table["counts"] == {"campaign dormant": {"sent": 3}, f"rep {SATO_MAIL}": {"sent": 3}}
    records = {(r["address"], r["state"]): r for r in log_json(config, db)[:-1]}
    resolved = records[("c1@example.co.jp", "unknown")]
    assert (resolved["resolved_as"], resolved["resolved_by"], resolved["resolved_note"]) == (
        "not_sent", getpass.getuser(), "not in the mail server's log")
    assert datetime.fromisoformat(resolved["resolved_at"]).tzinfo is not None
    assert records[("c3@example.co.jp", "unknown")]["resolved_as"] == "sent"
    assert records[("c3@example.co.jp", "unknown")]["resolved_note"] is None

    # Nothing to resolve: exit 2, saying what there is instead; nothing written.
    before = [(r["address"], r["resolved_as"]) for r in log_json(config, db)[:-1]]
    for args, words in [
        (["c3@example.co.jp", "--not-sent"], "already resolved as sent by"),
        (["c2@example.co.jp", "--sent"], "its latest attempt is sent"),
        (["nobody@example.co.jp", "--sent"], "the send log has no attempt for it"),
        (["c3@example.co.jp", "--sent", "--campaign", "spring"], "in campaign 'spring'"),
        (["c3@example.co.jp"], "give exactly one of --sent (it went out) and --not-sent (it did not)"),
        (["c3@example.co.jp", "--sent", "--not-sent"], "give exactly one of --sent"),
    ]:
        campaign = [] if "--campaign" in args else ["--campaign", "dormant"]
        result = cli("resolve", *args, *campaign, "--config", str(config), env=env)
        assert result.exit_code == 2 and words in result.stderr, (args, result.output)
        assert result.stderr.startswith("repsend: ") and "Traceback" not in result.output
    assert [(r["address"], r["resolved_as"]) for r in log_json(config, db)[:-1]] == before
    no_campaign = cli("resolve", "c3@example.co.jp", "--sent", "--config", str(config), env=env)
    assert no_campaign.exit_code == 2 and "--campaign" in no_campaign.stderr


def test_resolve_without_a_send_log_creates_none(tmp_path: Path) -> None:
    config = configure(tmp_path, [contact(1)])
    result = cli("resolve", "c1@example.co.jp", "--sent", "--campaign", "dormant", "--config", str(config), env={})
    assert result.exit_code == 2 and "no send log at" in result.stderr
    assert not (tmp_path / "repsend.db").exists()


def _log_at_0002(url: str) -> None:
    """A send log in use before 0003: c1 sent, c2 refused, c3 unknown, c4 deferred."""
    engine = sa.create_engine(sendlog._with_installed_driver(sa.make_url(url)))
    with engine.connect() as conn:
        with conn.begin():
            command.upgrade(alembic_config(conn), "0002")
        stamp = "2026-11-02 01:00:00.000000" if conn.dialect.name == "sqlite" else "2026-11-02 01:00:00+00"
        with conn.begin():
            for n, state, code, words in [(1, "sent", 250, "2.0.0 Ok"), (2, "failed", 550, "5.1.1 User unknown"),
                                          (3, "unknown", None, "connection lost"), (4, "deferred", 451, "later")]:
                conn.execute(sa.text(
                    "INSERT INTO send_attempt (run_id, campaign, contact_id, address, rep_id, rep_email, subject,"
                    " message_id, template, language, state, smtp_code, smtp_text, created_at, finished_at)"
                    " VALUES ('old', 'dormant', :contact, :address, '0055g00000AbCdEAAV', :rep, 'subject', :mid,"
                    " 'dormant', 'ja', :state, :code, :words, :stamp, :stamp)"),
                    {"contact": contact(n)["Id"], "address": f"c{n}@example.co.jp", "rep": SATO_MAIL,
                     "mid": f"<old{n}@acme.example>", "state": state, "code": code, "words": words, "stamp": stamp})
    engine.dispose()


def _revision(url: str) -> str:
    engine = sa.create_engine(sendlog._with_installed_driver(sa.make_url(url)))
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    return revision


def test_a_0002_send_log_in_use_is_read_as_it_is_then_upgraded_by_the_next_run(
        tmp_path: Path, smtp_sink: SmtpSink, db: dict[str, str]) -> None:
    config = configure(tmp_path, [contact(n) for n in range(1, 5)])
    url = db_url(tmp_path, db)
    _log_at_0002(url)

    # Read only (the log and the dry run never migrate): the refusal already reads as one.
    old = log_table(config, db)
    assert old["total"] == "4 attempts for 4 addresses: 1 deferred, 1 failed, 1 sent, 1 unknown"
    assert [r["resolved_as"] for r in log_json(config, db)[:-1]] == [None] * 4
    dry = cli("dormant", "--dry-run", "--json", "--as-of", AS_OF.isoformat(), "--config", str(config), env=db)
    assert reasons([json.loads(line) for line in dry.stdout.splitlines()]) == {
        "c1@example.co.jp": ("already_sent", None), "c2@example.co.jp": ("previously_failed", "550 5.1.1 User unknown"),
        "c3@example.co.jp": ("already_sent", None), "c4@example.co.jp": ("dormant", None)}
    assert _revision(url) == "0002"

    code, lines = dormant(config, smtp_sink, db)
    assert code == 0 and [m.rcpt_tos[0] for m in smtp_sink.messages] == ["c4@example.co.jp"]
    assert reasons(lines)["c2@example.co.jp"] == ("previously_failed", "550 5.1.1 User unknown")
    assert _revision(url) == HEAD  # upgraded to the newest

    # The old unknown row can be resolved, and its address is mailed by the next run.
    assert cli("resolve", "c3@example.co.jp", "--not-sent", "--campaign", "dormant", "--config", str(config),
               env=db).exit_code == 0
    assert reasons(dormant(config, smtp_sink, db)[1])["c3@example.co.jp"] == ("sent", None)
    assert log_table(config, db)["counts"] == {"campaign dormant": {"sent": 3, "failed": 1},
                                               f"rep {SATO_MAIL}": {"sent": 3, "failed": 1}}
    if not db:
        with sqlite3.connect(tmp_path / "repsend.db") as conn:
            assert conn.execute("SELECT count(*) FROM send_attempt WHERE resolved_as = 'not_sent'").fetchone() == (1,)
