"""The send log against a real SQLite file and a real PostgreSQL server: at most once, even when racing.

PostgreSQL: one throwaway database per module (``repsend_test_<random>``, dropped at the end) and one
fresh schema per test, so that runs never collide. Skipped, with the reason, only when the server
cannot be reached (set REPSEND_TEST_POSTGRES to point elsewhere).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from repsend import sendlog
from repsend.errors import ConfigError, ServiceError, UsageError
from repsend.sendlog import SendLog, alembic_config
from tests.pg import ADMIN_URL, _admin_connect, _fresh_schema  # noqa: F401

REPO = Path(__file__).resolve().parent.parent

T0 = datetime(2024, 6, 3, 0, 0, tzinfo=UTC)
REP18 = "0055g00000AbCdEAAV"
REP15 = REP18[:15]
OTHER_REP = "0055g00000AbCdFAAV"
SUBJECT = "ご無沙汰しております"
HEAD = "0007"  # the newest migration: a new one changes this, the pinned schema, and nothing else here


# -- databases ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A brand-new, not yet created send log on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log' / 'repsend.db'}"
    return _fresh_schema(request.getfixturevalue("pg_database"))


@pytest.fixture
def log(url: str) -> Iterator[SendLog]:
    opened = SendLog.open(url)
    yield opened
    opened.close()


def _plain_engine(url: str) -> sa.Engine:
    return sa.create_engine(sendlog._with_installed_driver(sa.make_url(url)))


def claim(
    log: SendLog,
    address: str,
    *,
    campaign: str = "dormant",
    rep_id: str = REP18,
    when: datetime = T0,
    run_id: str = "run1",
) -> int | None:
    return log.claim(
        run_id=run_id,
        campaign=campaign,
        contact_id="0035g0000000001AAA",
        address=address,
        rep_id=rep_id,
        rep_email="k.sato@acme.example",
        subject=SUBJECT,
        message_id=f"<{uuid.uuid4().hex}@acme.example>",
        template="dormant",
        language="ja",
        now=when,
    )


def attempt(log: SendLog, address: str, state: str, **kw: Any) -> int:
    """A claimed send that ended in ``state`` (``sending``: left as a crash would)."""
    row = claim(log, address, **kw)
    assert row is not None
    if state != "sending":
        log.finish(row, state, kw.get("when", T0) + timedelta(seconds=2), 250 if state == "sent" else 550, "x")
    return row


# -- claim, finish, recover --------------------------------------------------------------------------


def test_claim_then_finish_and_the_unique_key(log: SendLog) -> None:
    first = claim(log, "  Hanako@Example.CO.JP ")
    assert isinstance(first, int)
    log.finish(first, "sent", T0 + timedelta(seconds=1), 250, "2.0.0 Ok: queued")
    # Another run, the same campaign and person (another spelling): taken.
    assert claim(log, "hanako@example.co.jp", run_id="run2") is None
    # A deferred row leaves room for a later try, and only one.
    later = attempt(log, "taro@example.com", "deferred")
    retry = claim(log, "taro@example.com", run_id="run2")
    assert retry is not None and retry != later
    assert claim(log, "taro@example.com", run_id="run3") is None
    # A failed (5xx) row leaves room too (whether to try again is the audience's rule), and only once.
    attempt(log, "jiro@example.com", "failed")
    assert claim(log, "jiro@example.com", run_id="run2") is not None
    assert claim(log, "jiro@example.com", run_id="run3") is None
    # Another campaign is not blocked.
    assert claim(log, "hanako@example.co.jp", campaign="spring") is not None

    rows = log.rows("dormant")
    assert [(r.address, r.state) for r in rows] == [
        ("hanako@example.co.jp", "sent"),
        ("taro@example.com", "deferred"),
        ("taro@example.com", "sending"),
        ("jiro@example.com", "failed"),
        ("jiro@example.com", "sending"),
    ]
    sent = rows[0]
    assert (sent.smtp_code, sent.smtp_text, sent.rep_id, sent.subject) == (250, "2.0.0 Ok: queued", REP18, SUBJECT)
    assert sent.created_at == T0 and sent.created_at.tzinfo is not None
    assert sent.finished_at == T0 + timedelta(seconds=1)
    assert len(log.rows()) == 6


def test_a_sent_mail_s_task_is_written_with_its_finish_and_claimed_once(log: SendLog) -> None:
    """The Task rides on the finish's transaction (SQLite on the driver, PostgreSQL through SQLAlchemy); a
    claim marks records in flight, a second claimer gets none of them, and a claim of this process that a
    write left behind is stale."""
    row = claim(log, "hanako@example.co.jp")
    assert row is not None
    log.finish(row, "sent", T0 + timedelta(seconds=1), 250, "ok", task=("hanako@example.co.jp", '{"WhoId": "003"}'))
    other = claim(log, "taro@example.com")
    assert other is not None
    log.finish(other, "failed", T0, 550, "no")  # no Task for a mail that did not go out
    (task,) = log.sfa_writes()
    assert (task.what, task.attempt_id, task.address, task.payload, task.state, task.tries) == (
        "task", row, "hanako@example.co.jp", '{"WhoId": "003"}', "pending", 0)
    me = f"{os.uname().nodename}:{os.getpid()}"
    (got,) = log.claim_writes("task", ["pending"], me, T0, limit=200)
    assert got.state == "in_flight" and got.claimed_by == me
    assert log.claim_writes("task", ["pending"], "elsewhere:1", T0, limit=200) == []
    assert [r.id for r in log.stale_in_flight("task", T0, "another-host", 1)] == []
    assert [r.id for r in log.stale_in_flight("task", T0, os.uname().nodename, os.getpid())] == [got.id]
    assert [r.id for r in log.stale_in_flight("task", T0 + timedelta(hours=2), "another-host", 1)] == [got.id]
    log.settle([(got.id, "written", "00T5g0000000001AAA", None, "{}", True)], T0)
    (done,) = log.sfa_writes()
    assert (done.state, done.sfa_id, done.payload, done.tries, done.claimed_by, done.done_at) == (
        "written", "00T5g0000000001AAA", "{}", 1, None, T0)
    assert log.known_sfa_ids(["00T5g0000000001AAA", "00T5g0000000002AAA"]) == {"00T5g0000000001AAA"}


def test_opt_outs_are_queued_once_and_a_removed_one_is_cancelled(log: SendLog) -> None:
    log.suppress("a@example.com", "opt_out", "optout command", T0)
    log.suppress("b@example.com", "complaint", "inbox", T0)
    log.suppress("c@example.com", "bounce", "inbox", T0)  # a bounce is not an opt-out in the SFA
    assert log.queue_opt_outs(T0) == 2
    assert log.queue_opt_outs(T0) == 0
    log.unsuppress("b@example.com", T0, reason="a mistake")
    log.queue_opt_outs(T0)
    assert {(r.address, r.state) for r in log.sfa_writes("opt_out")} == {
        ("a@example.com", "pending"), ("b@example.com", "cancelled")}


def test_finish_checks_its_arguments(log: SendLog) -> None:
    row = claim(log, "a@example.com")
    assert row is not None
    with pytest.raises(ValueError, match="not a final send state"):
        log.finish(row, "sending", T0, None, None)
    with pytest.raises(ValueError, match="no send attempt"):
        log.finish(row + 1000, "sent", T0, 250, "ok")
    with pytest.raises(ValueError, match="aware"):
        log.finish(row, "sent", T0.replace(tzinfo=None), 250, "ok")


def test_recover_turns_sending_into_unknown_which_blocks_for_good(log: SendLog) -> None:
    attempt(log, "crash@example.com", "sending", when=T0)
    attempt(log, "done@example.com", "sent", when=T0)
    later = T0 + timedelta(hours=5)
    assert log.recover(later) == 1
    assert log.recover(later) == 0
    states = {r.address: (r.state, r.finished_at) for r in log.rows()}
    assert states["crash@example.com"] == ("unknown", later)
    history = log.history("dormant", T0 - timedelta(days=90), T0, T0 + timedelta(days=1))
    assert "crash@example.com" in history.campaign_addresses
    assert history.last_mailed["crash@example.com"] == T0.date()
    assert history.rep_sent_today == {REP15: 2}
    assert claim(log, "crash@example.com", run_id="run2") is None


def test_runs(log: SendLog) -> None:
    log.start_run("r1", "dormant", T0, "host-a", 4242)
    log.finish_run("r1", T0 + timedelta(minutes=3), {"considered": 10, "sent": 7, "skipped": 3}, 0)
    log.start_run("r2", "dormant", T0 + timedelta(hours=1), "host-a", 4243)
    with pytest.raises(ValueError, match="unknown run counts: bogus"):
        log.finish_run("r2", T0, {"bogus": 1}, 0)
    r1, r2 = log.runs()
    assert (r1.id, r1.considered, r1.sent, r1.failed, r1.skipped, r1.exit_code) == ("r1", 10, 7, 0, 3, 0)
    assert r1.finished_at == T0 + timedelta(minutes=3)
    assert (r2.host, r2.pid, r2.finished_at, r2.exit_code, r2.unknown) == ("host-a", 4243, None, None, 0)


# -- history -----------------------------------------------------------------------------------------


def test_history_cooldown_window(log: SendLog) -> None:
    tick = timedelta(microseconds=1)
    attempt(log, "before@example.com", "sent", when=T0 - tick)
    attempt(log, "edge@example.com", "sent", when=T0)
    attempt(log, "edge@example.com", "sent", when=T0 + timedelta(days=2), campaign="spring")  # the latest wins
    attempt(log, "failed@example.com", "failed", when=T0)  # never reached the inbox
    attempt(log, "deferred@example.com", "deferred", when=T0)
    attempt(log, "other@example.com", "unknown", when=T0, campaign="spring")
    attempt(log, "late@example.com", "sent", when=T0 + timedelta(hours=20))

    history = log.history("dormant", T0, T0, T0 + timedelta(days=1))
    assert history.campaign_addresses == {"before@example.com", "edge@example.com", "late@example.com"}
    assert history.campaign_failed == {"failed@example.com": "550 x"}  # refused, never mailed
    assert history.last_mailed == {
        "edge@example.com": (T0 + timedelta(days=2)).date(),
        "other@example.com": T0.date(),
        "late@example.com": T0.date(),
    }

    # The day is taken in the time zone of cooldown_since: 20:00 UTC is the next morning in Tokyo.
    tokyo = timezone(timedelta(hours=9))
    history = log.history("spring", T0.astimezone(tokyo), T0, T0 + timedelta(days=1))
    assert history.last_mailed["late@example.com"] == (T0 + timedelta(days=1)).date()
    assert history.campaign_addresses == {"edge@example.com", "other@example.com"}


def test_history_rep_sent_today(log: SendLog) -> None:
    day_start, day_end = T0, T0 + timedelta(days=1)
    tick = timedelta(microseconds=1)
    attempt(log, "a@example.com", "sent", rep_id=REP18, when=day_start)
    attempt(log, "b@example.com", "sent", rep_id=REP15, when=day_end - tick)  # a 15-character export id
    attempt(log, "c@example.com", "sending", rep_id=REP18, when=day_start + timedelta(hours=1))
    attempt(log, "d@example.com", "unknown", rep_id=REP18, when=day_start + timedelta(hours=2))
    attempt(log, "e@example.com", "failed", rep_id=REP18, when=day_start + timedelta(hours=3))
    attempt(log, "f@example.com", "deferred", rep_id=REP18, when=day_start + timedelta(hours=4))
    attempt(log, "g@example.com", "sent", rep_id=REP18, when=day_end)
    attempt(log, "h@example.com", "sent", rep_id=REP18, when=day_start - tick)
    attempt(log, "i@example.com", "sent", rep_id=OTHER_REP, when=day_start, campaign="spring")

    history = log.history("dormant", T0 - timedelta(days=90), day_start, day_end)
    assert history.rep_sent_today == {REP15: 4, OTHER_REP[:15]: 1}


# -- two processes -----------------------------------------------------------------------------------

WORKER = r"""
import json, sys
from datetime import UTC, datetime
from repsend.sendlog import SendLog

mode, tag, urls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()  # both processes start together
now = datetime.now(UTC)
won = []
if mode == "open":
    for url in urls:
        SendLog.open(url).close()
else:
    log = SendLog.open(urls[0])
    for i in range(200):
        row = log.claim(
            run_id=tag, campaign="race", contact_id=f"003{i}", address=f"c{i}@example.com", rep_id="005",
            rep_email="rep@acme.example", subject="s", message_id=f"<{tag}.{i}@acme.example>", template="t",
            language="ja", now=now,
        )
        if row is not None:
            log.finish(row, "sent", now, 250, "ok")
            won.append(i)
    log.close()
print(json.dumps(won))
"""


def race(mode: str, urls: list[str]) -> list[list[int]]:
    """Run two worker processes that start at the same moment; what each one won."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, mode, tag, json.dumps(urls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for tag in ("a", "b")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                pytest.fail(f"worker did not start: {proc.communicate(timeout=30)[1]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert "locked" not in err
            assert proc.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_two_processes_claim_each_address_exactly_once(url: str) -> None:
    # The database is brand-new: both processes also race to create and migrate it.
    won_a, won_b = race("claim", [url])
    assert not set(won_a) & set(won_b)
    assert sorted(won_a + won_b) == list(range(200))
    with SendLog.open(url) as log:
        rows = log.rows("race")
    assert len(rows) == 200
    assert {r.address for r in rows} == {f"c{i}@example.com" for i in range(200)}
    assert {r.state for r in rows} == {"sent"}


def test_two_processes_open_new_sqlite_files_at_once(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'f{i}' / 'repsend.db'}" for i in range(8)]
    race("open", urls)
    for url in urls:
        with SendLog.open(url) as log:
            assert log.rows() == []
        with _plain_engine(url).connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [HEAD]


# -- SQLite specifics and the read-only log ----------------------------------------------------------


def test_sqlite_runs_in_wal_mode_and_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "repsend.db"
    SendLog.open(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_readonly_never_creates_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "repsend.db"
    assert SendLog.open_readonly(f"sqlite:///{path}") is None
    assert not path.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_open_readonly_reads_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "repsend.db"
    with SendLog.open(f"sqlite:///{path}") as writer:
        attempt(writer, "a@example.com", "sent")
        attempt(writer, "b@example.com", "sending")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    log = SendLog.open_readonly(f"sqlite:///{path}")
    assert log is not None
    history = log.history("dormant", T0 - timedelta(days=1), T0, T0 + timedelta(days=1))
    assert history.campaign_addresses == {"a@example.com", "b@example.com"}
    assert history.rep_sent_today == {REP15: 2}
    with pytest.raises(RuntimeError, match="read-only"):
        log.recover(T0)
    with pytest.raises(RuntimeError, match="read-only"):
        claim(log, "c@example.com")
    log.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_open_readonly_beside_a_running_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'repsend.db'}"
    with SendLog.open(url) as writer:
        attempt(writer, "a@example.com", "sending")
        reader = SendLog.open_readonly(url)
        assert reader is not None
        assert reader.history("dormant", T0, T0, T0).campaign_addresses == {"a@example.com"}
        reader.close()


def test_open_readonly_without_the_schema_is_none(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    assert SendLog.open_readonly(f"sqlite:///{path}") is None


def test_open_readonly_on_postgresql(pg_database: sa.URL) -> None:
    url = _fresh_schema(pg_database)
    assert SendLog.open_readonly(url) is None
    with SendLog.open(url) as writer:
        attempt(writer, "a@example.com", "sent")
    log = SendLog.open_readonly(url)
    assert log is not None
    assert log.history("dormant", T0, T0, T0).campaign_addresses == {"a@example.com"}
    with log._conn.begin(), pytest.raises(sa.exc.InternalError, match="read-only"):  # the server refuses too
        log._conn.exec_driver_sql("DELETE FROM send_attempt")
    log.close()


# -- the schema and its migrations -------------------------------------------------------------------

PINNED_SCHEMA: dict[str, Any] = {
    "alembic_version": {
        "columns": [("version_num", "String", False, None)],
        "pk": ["version_num"],
        "indexes": [],
    },
    "inbox_message": {
        "columns": [
            ("key", "String", False, None),
            ("kind", "String", False, None),
            ("source", "Text", False, None),
            ("address", "String", True, None),
            ("detail", "Text", True, None),
            ("read_at", "DateTime", False, None),
        ],
        "pk": ["key"],
        "indexes": [],
    },
    "run_reason": {
        "columns": [
            ("run_id", "String", False, None),
            ("reason", "String", False, None),
            ("count", "Integer", False, None),
        ],
        "pk": ["run_id", "reason"],
        "indexes": [],
    },
    "run": {
        "columns": [
            ("id", "String", False, None),
            ("campaign", "String", False, None),
            ("started_at", "DateTime", False, None),
            ("finished_at", "DateTime", True, None),
            ("host", "String", False, None),
            ("pid", "Integer", False, None),
            ("considered", "Integer", False, "0"),
            ("sent", "Integer", False, "0"),
            ("failed", "Integer", False, "0"),
            ("deferred", "Integer", False, "0"),
            ("unknown", "Integer", False, "0"),
            ("skipped", "Integer", False, "0"),
            ("exit_code", "Integer", True, None),
        ],
        "pk": ["id"],
        "indexes": [],
    },
    "send_attempt": {
        "columns": [
            ("id", "Integer", False, None),
            ("run_id", "String", False, None),
            ("campaign", "String", False, None),
            ("contact_id", "String", False, None),
            ("address", "String", False, None),
            ("rep_id", "String", False, None),
            ("rep_email", "String", False, None),
            ("subject", "Text", False, None),
            ("message_id", "String", False, None),
            ("template", "String", False, None),
            ("language", "String", False, None),
            ("state", "String", False, None),
            ("smtp_code", "Integer", True, None),
            ("smtp_text", "Text", True, None),
            ("created_at", "DateTime", False, None),
            ("finished_at", "DateTime", True, None),
            ("resolved_as", "String", True, None),
            ("resolved_at", "DateTime", True, None),
            ("resolved_by", "String", True, None),
            ("resolved_note", "Text", True, None),
            ("variant", "String", False, ""),
        ],
        "pk": ["id"],
        "indexes": [
            ("ix_send_attempt_address_created_at", ["address", "created_at"], False, None),
            ("ix_send_attempt_campaign_address", ["campaign", "address"], False, None),
            ("ix_send_attempt_created_at", ["created_at"], False, None),
            ("ix_send_attempt_rep_id_created_at", ["rep_id", "created_at"], False, None),
            ("uq_send_attempt_campaign_address_live", ["campaign", "address"], True,
             "state!='deferred'ANDstate!='failed'ANDresolved_asISNULLORresolved_as!='not_sent'"),
        ],
    },
    "sfa_write": {
        "columns": [
            ("id", "Integer", False, None),
            ("what", "String", False, None),
            ("attempt_id", "Integer", True, None),
            ("suppression_id", "Integer", True, None),
            ("address", "String", False, None),
            ("payload", "Text", True, None),
            ("state", "String", False, None),
            ("sfa_id", "Text", True, None),
            ("error", "Text", True, None),
            ("tries", "Integer", False, "0"),
            ("claimed_by", "String", True, None),
            ("claimed_at", "DateTime", True, None),
            ("created_at", "DateTime", False, None),
            ("done_at", "DateTime", True, None),
        ],
        "pk": ["id"],
        "indexes": [
            ("ix_sfa_write_suppression_id", ["suppression_id"], False, None),
            ("ix_sfa_write_what_state", ["what", "state"], False, None),
        ],
    },
    "suppression": {
        "columns": [
            ("id", "Integer", False, None),
            ("address", "String", False, None),
            ("kind", "String", False, None),
            ("source", "String", False, None),
            ("reason", "Text", False, None),
            ("campaign", "String", True, None),
            ("created_at", "DateTime", False, None),
            ("created_by", "String", False, None),
            ("removed_at", "DateTime", True, None),
            ("removed_by", "String", True, None),
            ("removed_reason", "Text", True, None),
        ],
        "pk": ["id"],
        "indexes": [("ix_suppression_address", ["address"], False, None)],
    },
}


def _kind(column_type: sa.types.TypeEngine[Any], dialect: str) -> str:
    for generic in (sa.Text, sa.String, sa.DateTime, sa.Integer):
        if isinstance(column_type, generic):
            if generic is sa.DateTime and dialect == "postgresql" and not column_type.timezone:  # type: ignore[attr-defined]
                return "DateTime without time zone"
            return generic.__name__
    return repr(column_type)


def _default(value: str | None) -> str | None:
    if value is None or value.startswith("nextval("):  # PostgreSQL's SERIAL
        return None
    return re.sub(r"::[\w ]+$", "", value).strip("'")  # PostgreSQL's ''::text is SQLite's ''"


def _where(index: dict[str, Any]) -> str | None:
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where") or options.get("sqlite_where")
    return None if where is None else re.sub(r"::\w+|[()\s]", "", str(where)).replace("<>", "!=")


def describe(url: str) -> dict[str, Any]:
    """The schema as the database itself reports it, in terms both backends share."""
    engine = _plain_engine(url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        dialect = conn.dialect.name
        schema = {
            table: {
                "columns": [
                    (c["name"], _kind(c["type"], dialect), c["nullable"], _default(c["default"]))
                    for c in inspector.get_columns(table)
                ],
                "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted(
                    (ix["name"], ix["column_names"], bool(ix["unique"]), _where(ix))
                    for ix in inspector.get_indexes(table)
                ),
            }
            for table in sorted(inspector.get_table_names())
        }
    engine.dispose()
    return schema


def test_schema_is_pinned(log: SendLog, url: str) -> None:
    """A change to the tables must come with a new migration, and this literal must change with it."""
    assert describe(url) == PINNED_SCHEMA


def test_the_record_read_back_has_every_column_in_order() -> None:
    """``Attempt`` (what reads return) is written out beside the table model: the two must not drift."""
    import dataclasses

    assert [f.name for f in dataclasses.fields(sendlog.Attempt)] == [c.name for c in sendlog._attempt.c]


def test_models_match_the_migrations(log: SendLog, url: str) -> None:
    engine = _plain_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, sendlog.metadata) == []
        assert context.get_current_revision() == HEAD
    engine.dispose()


def test_rows_written_at_0001_survive_upgrade_to_head(url: str) -> None:
    if url.startswith("sqlite"):
        Path(sa.make_url(url).database or "").parent.mkdir(parents=True)
    engine = _plain_engine(url)
    with engine.connect() as conn:
        with conn.begin():
            command.upgrade(alembic_config(conn), "0001")
        stamp = "2024-06-01 09:00:00.000000" if conn.dialect.name == "sqlite" else "2024-06-01 09:00:00+00"
        with conn.begin():
            conn.execute(
                sa.text(
                    "INSERT INTO send_attempt (run_id, campaign, contact_id, address, rep_id, rep_email, subject,"
                    " message_id, template, language, state, smtp_code, smtp_text, created_at, finished_at)"
                    " VALUES ('old', 'dormant', '003', 'kept@example.com', :rep, 'r@acme.example', 'subject',"
                    " '<m@acme.example>', 'dormant', 'ja', 'sent', 250, 'ok', :stamp, :stamp)"
                ),
                {"rep": REP18, "stamp": stamp},
            )
            conn.execute(
                sa.text("INSERT INTO run (id, campaign, started_at, host, pid) VALUES ('old', 'dormant', :s, 'h', 1)"),
                {"s": stamp},
            )
    engine.dispose()

    with SendLog.open(url) as log:
        (row,) = log.rows()
        assert (row.address, row.state, row.rep_id) == ("kept@example.com", "sent", REP18)
        assert row.created_at == datetime(2024, 6, 1, 9, tzinfo=UTC)
        assert [(r.id, r.sent) for r in log.runs()] == [("old", 0)]
        assert claim(log, "kept@example.com") is None
    with SendLog.open(url) as log:  # opening again at head is a no-op
        assert len(log.rows()) == 1


def test_migrations_go_down_and_up_again(log: SendLog, url: str) -> None:
    log.close()
    engine = _plain_engine(url)
    with engine.connect() as conn:
        with conn.begin():
            command.downgrade(alembic_config(conn), "base")
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()
    with SendLog.open(url) as log:
        assert claim(log, "a@example.com") is not None


def test_a_schema_newer_than_this_repsend_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'repsend.db'}"
    SendLog.open(url).close()
    with sqlite3.connect(tmp_path / "repsend.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(ConfigError, match="revision 9999, newer than this repsend knows"):
        SendLog.open(url)


# -- errors ------------------------------------------------------------------------------------------


def _full_text(exc: BaseException) -> str:
    """What a traceback would show of the error and its chain (not the source lines)."""
    return "".join(line for line in traceback.format_exception(exc) if not line.startswith("  "))


def test_an_unreachable_server_is_a_service_error_without_the_password() -> None:
    with pytest.raises(ServiceError) as caught:
        SendLog.open("postgresql://u:s3cret@127.0.0.1:1/x")
    message = str(caught.value)
    assert "s3cret" not in _full_text(caught.value)
    assert message.startswith("send log postgresql://u:***@127.0.0.1:1/x: cannot open:")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("not a database url", "not a database URL"),
        ("nosuch://u:s3cret@db.example/x", "unknown database type 'nosuch'"),
    ],
)
def test_a_malformed_url_is_a_config_error(bad: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        SendLog.open(bad)
    assert "s3cret" not in _full_text(caught.value)


def test_a_sqlite_path_that_cannot_be_a_database_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "garbage.db").write_bytes(b"not sqlite" * 500)
    with pytest.raises(ConfigError, match="cannot create the folder"):
        SendLog.open(f"sqlite:///{tmp_path / 'file' / 'repsend.db'}")
    with pytest.raises(ConfigError, match="cannot open"):
        SendLog.open(f"sqlite:///{tmp_path}")  # a folder
    for opener in (SendLog.open, SendLog.open_readonly):
        with pytest.raises(ConfigError, match="not a database"):
            opener(f"sqlite:///{tmp_path / 'garbage.db'}")


def test_the_log_never_shows_its_password() -> None:
    assert sendlog.safe_name("postgresql://u:s3cret@db.example/x") == "postgresql://u:***@db.example/x"
    assert "s3cret" not in sendlog.safe_name("postgresql://u:s3cret@db.example:bad/x")


def test_attempts_filter_in_the_database_newest_first(log: SendLog) -> None:
    attempt(log, "a@example.com", "sent", when=T0)
    attempt(log, "b@example.com", "failed", when=T0 + timedelta(days=1))
    attempt(log, "c@example.com", "sent", when=T0 + timedelta(days=2), rep_id=OTHER_REP)
    attempt(log, "d@example.com", "sent", when=T0 + timedelta(days=3), campaign="spring")
    assert [r.address for r in log.attempts()] == ["d@example.com", "c@example.com", "b@example.com", "a@example.com"]
    assert [r.address for r in log.attempts(campaign="dormant", state="sent")] == ["c@example.com", "a@example.com"]
    assert [r.address for r in log.attempts(since=T0 + timedelta(days=1))] == [
        "d@example.com", "c@example.com", "b@example.com",
    ]
    assert [r.address for r in log.attempts(rep=OTHER_REP[:15])] == ["c@example.com"]
    assert len(log.attempts(rep="K.Sato@ACME.example")) == 4  # every row's rep_email is Sato's


# -- refusals, unknowns and a person's resolution ----------------------------------------------------


def test_resolve_an_unknown_attempt_as_sent_holds_the_address_for_good(log: SendLog) -> None:
    attempt(log, "maybe@example.com", "unknown", when=T0)
    row = log.resolve("dormant", " Maybe@Example.com", "sent", now=T0 + timedelta(days=1), by="tanaka",
                      note="the customer replied to it")
    assert (row.state, row.resolved_as, row.resolved_by, row.resolved_note) == (
        "unknown", "sent", "tanaka", "the customer replied to it")
    (kept,) = log.rows()
    assert (kept.state, kept.smtp_code, kept.resolved_as, kept.resolved_at) == ("unknown", 550, "sent",
                                                                                T0 + timedelta(days=1))
    assert claim(log, "maybe@example.com", run_id="run2") is None
    history = log.history("dormant", T0 - timedelta(days=90), T0, T0 + timedelta(days=1))
    assert history.campaign_addresses == {"maybe@example.com"}
    assert history.last_mailed == {"maybe@example.com": T0.date()} and history.rep_sent_today == {REP15: 1}
    assert log.states_now()[("dormant", "maybe@example.com")].state == "sent"
    with pytest.raises(UsageError, match=r"already resolved as sent by tanaka at 2024-06-04T00:00:00\+00:00"):
        log.resolve("dormant", "maybe@example.com", "not_sent", now=T0, by="suzuki")


def test_resolve_an_unknown_attempt_as_not_sent_lets_a_later_run_try_again(log: SendLog) -> None:
    first = attempt(log, "lost@example.com", "unknown", when=T0)
    log.resolve("dormant", "lost@example.com", "not_sent", now=T0 + timedelta(hours=1), by="tanaka")
    history = log.history("dormant", T0 - timedelta(days=90), T0, T0 + timedelta(days=1))
    assert history.campaign_addresses == set() and history.campaign_failed == {}
    assert history.last_mailed == {} and history.rep_sent_today == {}, "it never reached an inbox"
    assert log.states_now()[("dormant", "lost@example.com")].state == "not_sent"
    again = claim(log, "lost@example.com", run_id="run2", when=T0 + timedelta(days=1))
    assert again is not None and again != first
    log.finish(again, "sent", T0 + timedelta(days=1), 250, "ok")
    assert claim(log, "lost@example.com", run_id="run3") is None
    now = log.states_now()[("dormant", "lost@example.com")]
    assert (now.state, now.attempt_id, now.attempts) == ("sent", again, 2)
    assert [(r.state, r.resolved_as) for r in log.rows()] == [("unknown", "not_sent"), ("sent", None)]


def test_resolve_with_nothing_to_resolve_says_what_there_is(log: SendLog) -> None:
    attempt(log, "sent@example.com", "sent")
    attempt(log, "busy@example.com", "sending")
    attempt(log, "other@example.com", "unknown", campaign="spring")
    for address, words in [
        ("sent@example.com", "its latest attempt is sent"),
        ("busy@example.com", "still 'sending'"),
        ("other@example.com", "the send log has no attempt for it"),
        ("nobody@example.com", "the send log has no attempt for it"),
    ]:
        with pytest.raises(UsageError, match=re.escape(words)) as caught:
            log.resolve("dormant", address, "sent", now=T0, by="tanaka")
        assert str(caught.value).startswith(f"no unknown attempt to resolve for {address} in campaign 'dormant'")
    assert all(r.resolved_as is None for r in log.rows())
    with pytest.raises(ValueError, match="not a resolution"):
        log.resolve("spring", "other@example.com", "maybe", now=T0, by="tanaka")


def test_states_now_judge_every_attempt_of_an_address_whatever_the_filter(log: SendLog) -> None:
    attempt(log, "later@example.com", "deferred", when=T0)
    attempt(log, "later@example.com", "sent", when=T0 + timedelta(days=1))
    attempt(log, "refused@example.com", "failed", when=T0)
    attempt(log, "waiting@example.com", "deferred", when=T0)
    attempt(log, "waiting@example.com", "deferred", when=T0 + timedelta(days=1))
    attempt(log, "later@example.com", "unknown", when=T0, campaign="spring")
    now = log.states_now(state="deferred")
    assert {pair: n.state for pair, n in now.items()} == {
        ("dormant", "later@example.com"): "sent",
        ("dormant", "waiting@example.com"): "deferred",
    }
    assert now[("dormant", "waiting@example.com")].attempts == 2
    assert {pair: n.state for pair, n in log.states_now(since=T0 + timedelta(hours=1)).items()} == {
        ("dormant", "later@example.com"): "sent", ("dormant", "waiting@example.com"): "deferred"}
    assert log.states_now(campaign="spring") == {
        ("spring", "later@example.com"): sendlog.AddressNow("unknown", 6, "k.sato@acme.example", 1)}
    assert log.states_now()[("dormant", "refused@example.com")].state == "failed"


ROW_0002 = (
    "INSERT INTO send_attempt (run_id, campaign, contact_id, address, rep_id, rep_email, subject, message_id,"
    " template, language, state, smtp_code, smtp_text, created_at, finished_at) VALUES ('old', 'dormant', '003',"
    " :address, :rep, 'k.sato@acme.example', 'subject', :mid, 'dormant', 'ja', :state, :code, :words, :stamp,"
    " :stamp)"
)


def _log_at_0002(url: str) -> None:
    """A send log as repsend left it before 0003, with an attempt in every final state."""
    if url.startswith("sqlite"):
        Path(sa.make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = _plain_engine(url)
    with engine.connect() as conn:
        with conn.begin():
            command.upgrade(alembic_config(conn), "0002")
        stamp = "2024-06-01 09:00:00.000000" if conn.dialect.name == "sqlite" else "2024-06-01 09:00:00+00"
        with conn.begin():
            for state, code, words in [("sent", 250, "ok"), ("failed", 550, "5.1.1 <x>: user unknown"),
                                       ("deferred", 451, "try later"), ("unknown", None, "connection lost")]:
                conn.execute(sa.text(ROW_0002), {"address": f"{state}@example.com", "rep": REP18, "state": state,
                                                 "code": code, "words": words, "stamp": stamp,
                                                 "mid": f"<{state}@acme.example>"})
    engine.dispose()


def test_a_0002_log_with_rows_upgrades_to_head(url: str) -> None:
    """0003 on a log in use: the rows stay as they were; a refused address may now be claimed again, a sent
    or unknown one still may not, and the unknown one can be resolved."""
    _log_at_0002(url)
    with SendLog.open(url) as log:
        assert [(r.address, r.state, r.resolved_as) for r in log.rows()] == [
            ("sent@example.com", "sent", None), ("failed@example.com", "failed", None),
            ("deferred@example.com", "deferred", None), ("unknown@example.com", "unknown", None)]
        history = log.history("dormant", T0 - timedelta(days=30), T0, T0 + timedelta(days=1))
        assert history.campaign_addresses == {"sent@example.com", "unknown@example.com"}
        assert history.campaign_failed == {"failed@example.com": "550 5.1.1 <x>: user unknown"}
        assert claim(log, "sent@example.com") is None
        assert claim(log, "unknown@example.com") is None
        assert claim(log, "failed@example.com") is not None
        assert claim(log, "failed@example.com") is None, "the retry holds the address in turn"
        log.resolve("dormant", "unknown@example.com", "not_sent", now=T0, by="tanaka")
        assert claim(log, "unknown@example.com") is not None
    engine = _plain_engine(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD
    engine.dispose()


def test_a_0002_log_read_only_is_read_as_it_is(tmp_path: Path) -> None:
    """A dry run or `repsend log` never migrates: a log at 0002 is read without the resolution columns, and
    its refusals already read as refusals."""
    url = f"sqlite:///{tmp_path / 'repsend.db'}"
    _log_at_0002(url)
    log = SendLog.open_readonly(url)
    assert log is not None
    try:
        history = log.history("dormant", T0 - timedelta(days=30), T0, T0 + timedelta(days=1))
        assert history.campaign_addresses == {"sent@example.com", "unknown@example.com"}
        assert set(history.campaign_failed) == {"failed@example.com"}
        assert [(r.state, r.resolved_as) for r in log.attempts()][0] == ("unknown", None)
        assert log.states_now()[("dormant", "deferred@example.com")].state == "deferred"
    finally:
        log.close()
    with sqlite3.connect(tmp_path / "repsend.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0002",)
