"""The send log: one row per send attempt, written before the mail leaves. The source of truth.

A send is a row before it is a mail: ``claim`` commits a ``sending`` row before the SMTP transaction
starts, ``finish`` records what the server said. A row left ``sending`` by a crash or a kill becomes
``unknown`` at the next start (``recover``) and is never sent again automatically: at most once,
because a duplicate personal note is worse than a missing one, until a person resolves it
(``resolve``: the row is kept, the answer recorded beside it). A partial unique index on (campaign,
address) over the live rows (``sent``, ``sending``, ``unknown`` not resolved as not sent) stops two
concurrent runs from both sending; a ``failed`` or ``deferred`` row leaves room for a later try, which
``audience`` allows for a failed one only when the campaign says so (``retry_failed``).

SQLite by default (WAL, BEGIN IMMEDIATE, a long busy timeout, so a second process waits instead of
failing), any SQLAlchemy URL otherwise (PostgreSQL is tested). The schema is versioned with Alembic
(``repsend/migrations``) and upgraded to head on ``open``; ``tests/test_sendlog.py`` pins it.
"""

import os
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    URL,
    Connection,
    Date,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from repsend.audience import History
from repsend.errors import ConfigError, ServiceError, UsageError
from repsend.models import Reason, id15, normalize_email

if TYPE_CHECKING:
    from alembic.config import Config

# States of a send attempt.
SENDING: Final = "sending"  # claimed and committed; the SMTP transaction may be under way
SENT: Final = "sent"  # the server accepted the message (2xx after DATA)
FAILED: Final = "failed"  # the server refused it for good (5xx): never retried for this campaign
DEFERRED: Final = "deferred"  # not delivered, safe to try in a later run (4xx after retries, or a drop before DATA)
UNKNOWN: Final = "unknown"  # the outcome is not known (a crash mid-send): never sent again automatically
# In the campaign's holdout group: never mailed, recorded with the rep who would have sent it, so that
# outcomes compare the two groups. Live (it holds the address for the campaign), never "mailed".
HELD_OUT: Final = "held_out"
STATES: Final = frozenset({SENDING, SENT, FAILED, DEFERRED, UNKNOWN, HELD_OUT})
FINAL_STATES: Final = frozenset({SENT, FAILED, DEFERRED, UNKNOWN})
# States that may have put a mail in the inbox: they count for cooldown and for the rep's daily cap
# (an ``unknown`` one unless a person resolved it as not sent).
MAILED_STATES: Final = (SENT, SENDING, UNKNOWN)
# What a person may find out about an ``unknown`` attempt (``resolved_as``): the mail went out, or it did not.
NOT_SENT: Final = "not_sent"
RESOLUTIONS: Final = (SENT, NOT_SENT)
# The state of an address now, in the order a summary lists them (``state_now``).
NOW_STATES: Final = (SENT, FAILED, DEFERRED, UNKNOWN, NOT_SENT, SENDING, HELD_OUT)

RUN_COUNTS: Final = ("considered", "sent", "failed", "deferred", "unknown", "skipped")
# What ``repsend stats`` groups the attempts by (``SendLog.stats``).
STATS_BY: Final = ("rep", "campaign", "day", "template", "run")
# An open run that nothing was heard of for this long is gone, on whatever host it ran (close_dead_runs).
RUN_SILENT_AFTER: Final = timedelta(hours=24)

# A second process waits this long for SQLite's write lock before giving up ("database is locked").
BUSY_TIMEOUT_S: Final = 60.0
# Every SQLite commit is on disk before it returns (WAL mode: the WAL file is fsynced at each commit),
# whatever the build's default, so that a claimed ``sending`` row survives a power loss, not only a crash
# of this process, before its mail leaves. ``finish`` alone relaxes it to NORMAL (see there).
SQLITE_SYNCHRONOUS: Final = "FULL"
# One application-wide key for pg_advisory_xact_lock, so that two runs never migrate at once.
_PG_MIGRATION_LOCK: Final = zlib.crc32(b"repsend.sendlog.migrate")

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive UTC
    (one format, so that string comparison is time comparison) and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"send log times must be aware datetimes, got naive {value!r}")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Base(SQLModel, registry=registry()):
    """The send log's own metadata, apart from ``SQLModel.metadata``, so that migrations see only it."""


metadata = _Base.metadata

# The live rows, which hold the address for the campaign (migration 0003): ``is_live`` says the same in Python.
_LIVE = text("state != 'deferred' AND state != 'failed' AND (resolved_as IS NULL OR resolved_as != 'not_sent')")


def is_live(state: str, resolved_as: str | None) -> bool:
    """Whether an attempt holds its address for its campaign: it went out, may have, or is under way."""
    return state not in (DEFERRED, FAILED) and resolved_as != NOT_SENT


def effective_state(state: str, resolved_as: str | None) -> str:
    """An attempt's state as a person reads it: an ``unknown`` one a person resolved reads as the answer."""
    return resolved_as if state == UNKNOWN and resolved_as else state


class SendAttempt(_Base, table=True):
    """One attempt to send one mail; ``address`` is normalized (trimmed, lower case)."""

    __tablename__ = "send_attempt"
    __table_args__ = (
        Index("ix_send_attempt_campaign_address", "campaign", "address"),
        Index("ix_send_attempt_address_created_at", "address", "created_at"),
        Index("ix_send_attempt_rep_id_created_at", "rep_id", "created_at"),
        # The cooldown read (``history``) filters on the time alone (migration 0002).
        Index("ix_send_attempt_created_at", "created_at"),
        # At most one live row per campaign and address: the key that makes a send at most once.
        Index(
            "uq_send_attempt_campaign_address_live",
            "campaign",
            "address",
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Integer)
    run_id: str = Field(sa_type=String)
    campaign: str = Field(sa_type=String)
    contact_id: str = Field(sa_type=String)
    address: str = Field(sa_type=String)
    rep_id: str = Field(sa_type=String)
    rep_email: str = Field(sa_type=String)
    subject: str = Field(sa_type=Text)
    message_id: str = Field(sa_type=String)
    template: str = Field(sa_type=String)
    language: str = Field(sa_type=String)
    state: str = Field(sa_type=String)
    smtp_code: int | None = Field(default=None, sa_type=Integer)
    smtp_text: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A person's answer for an ``unknown`` attempt (``repsend resolve``): sent or not_sent, when, who, why.
    resolved_as: str | None = Field(default=None, sa_type=String)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: str | None = Field(default=None, sa_type=String)
    resolved_note: str | None = Field(default=None, sa_type=Text)
    # The template's A/B variant the mail was written in, or a held-out contact would have been (migration
    # 0006); "" for a template without variants, and every row from before variants.
    # (The default as SQL text: Alembic reads a plain "" back from SQLite as a change, every time.)
    variant: str = Field(default="", sa_type=String, sa_column_kwargs={"server_default": text("''")})


@dataclass(slots=True)
class Attempt:
    """A ``send_attempt`` row as read back, for ``repsend log`` and reports: a plain record, because making
    SQLModel objects costs some 0.17 ms a row (17 s for a 100,000-row log), reading them 0.01 ms."""

    id: int
    run_id: str
    campaign: str
    contact_id: str
    address: str
    rep_id: str
    rep_email: str
    subject: str
    message_id: str
    template: str
    language: str
    state: str
    smtp_code: int | None
    smtp_text: str | None
    created_at: datetime
    finished_at: datetime | None
    # Null in a row no person resolved, and in a log read as it is before migration 0003.
    resolved_as: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolved_note: str | None = None
    variant: str = ""  # "" also in a log read as it is before migration 0006


def _count() -> Any:
    return Field(default=0, sa_type=Integer, sa_column_kwargs={"server_default": "0"})


class Run(_Base, table=True):
    """One run of a campaign: who ran it where, and what it counted."""

    __tablename__ = "run"

    id: str = Field(primary_key=True, sa_type=String)
    campaign: str = Field(sa_type=String)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    host: str = Field(sa_type=String)
    pid: int = Field(sa_type=Integer)
    considered: int = _count()
    sent: int = _count()
    failed: int = _count()
    deferred: int = _count()
    unknown: int = _count()
    skipped: int = _count()
    exit_code: int | None = Field(default=None, sa_type=Integer)


# Kinds of suppression (migration 0004) and the reason each gives a contact at that address.
OPT_OUT: Final = "opt_out"
BOUNCE: Final = "bounce"
COMPLAINT: Final = "complaint"
SUPPRESSION_KINDS: Final = (OPT_OUT, BOUNCE, COMPLAINT)
_KIND_REASON: Final = {OPT_OUT: Reason.OPTED_OUT, BOUNCE: Reason.BOUNCED, COMPLAINT: Reason.SUPPRESSED}
_KIND_WORDS: Final = {OPT_OUT: "opted out", BOUNCE: "bounced", COMPLAINT: "complained"}


class Suppression(_Base, table=True):
    """An address no run may mail: an opt-out, a hard bounce or a complaint, kept with where it came
    from; a removal (a mistake corrected) is recorded on the row, never deleted."""

    __tablename__ = "suppression"
    __table_args__ = (Index("ix_suppression_address", "address"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=Integer)
    address: str = Field(sa_type=String)  # normalized
    kind: str = Field(sa_type=String)  # one of SUPPRESSION_KINDS
    source: str = Field(sa_type=String)  # "optout command", "unsubscribe link", "inbox: bounces.mbox#12"...
    reason: str = Field(default="", sa_type=Text)
    campaign: str | None = Field(default=None, sa_type=String)
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: str = Field(default="", sa_type=String)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    removed_by: str | None = Field(default=None, sa_type=String)
    removed_reason: str | None = Field(default=None, sa_type=Text)

    @property
    def detail(self) -> str:
        """The decision's detail for a contact at this address: what, when, where from."""
        words = f"{_KIND_WORDS.get(self.kind, self.kind)} {self.created_at.date().isoformat()}"
        if self.reason:
            words += f": {self.reason}"
        return f"{words} ({self.source})"


class InboxMessage(_Base, table=True):
    """A message ``repsend inbox`` sorted, by its key (Message-ID or digest): each is handled once."""

    __tablename__ = "inbox_message"

    key: str = Field(primary_key=True, sa_type=String)
    kind: str = Field(sa_type=String)
    source: str = Field(sa_type=Text)
    address: str | None = Field(default=None, sa_type=String)
    detail: str | None = Field(default=None, sa_type=Text)
    read_at: datetime = Field(sa_type=UTCDateTime)


# What is written back to the SFA (migration 0005), and the states of each record on its way there.
TASK: Final = "task"  # a completed Task on the contact, owned by the rep, for a sent mail
SFA_OPT_OUT: Final = "opt_out"  # HasOptedOutOfEmail on every Contact and Lead with an opted-out address
PENDING: Final = "pending"
IN_FLIGHT: Final = "in_flight"  # claimed before the call: a run killed then leaves it so (looked up, then written)
WRITTEN: Final = "written"
REJECTED: Final = "rejected"  # Salesforce refused the record: the error is kept, ``repsend sync`` tries again
EXPORTED: Final = "exported"  # written to a Data Loader file (the CSV source)
CANCELLED: Final = "cancelled"  # an opt-out removed (a mistake) before it reached the SFA
# Suppression kinds that are an opt-out in the SFA: a bounce is not one.
SFA_OPT_OUT_KINDS: Final = (OPT_OUT, COMPLAINT)
# No call to the SFA lasts this long (salesforce.TIMEOUT reads for 300 s): a claim older is its dead run's.
STALE_CLAIM: Final = timedelta(hours=1)


class SfaWrite(_Base, table=True):
    """One record on its way back to the SFA: its payload until it is written, then its Id or its error."""

    __tablename__ = "sfa_write"
    __table_args__ = (
        Index("ix_sfa_write_what_state", "what", "state"),
        Index("ix_sfa_write_suppression_id", "suppression_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Integer)
    what: str = Field(sa_type=String)  # TASK or SFA_OPT_OUT
    attempt_id: int | None = Field(default=None, sa_type=Integer)
    suppression_id: int | None = Field(default=None, sa_type=Integer)
    address: str = Field(sa_type=String)
    payload: str | None = Field(default=None, sa_type=Text)  # JSON
    state: str = Field(sa_type=String)
    sfa_id: str | None = Field(default=None, sa_type=Text)  # the Task's Id; the records an opt-out set, space-separated
    error: str | None = Field(default=None, sa_type=Text)
    tries: int = _count()
    claimed_by: str | None = Field(default=None, sa_type=String)  # host:pid
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunReason(_Base, table=True):
    """How many of a real run's decisions had each reason (migration 0007)."""

    __tablename__ = "run_reason"

    run_id: str = Field(primary_key=True, sa_type=String)
    reason: str = Field(primary_key=True, sa_type=String)
    count: int = Field(sa_type=Integer)


_attempt = SendAttempt.__table__  # type: ignore[attr-defined]
_sfa_write = SfaWrite.__table__  # type: ignore[attr-defined]
_run_reason = RunReason.__table__  # type: ignore[attr-defined]
_run = Run.__table__  # type: ignore[attr-defined]
_suppression = Suppression.__table__  # type: ignore[attr-defined]
_inbox = InboxMessage.__table__  # type: ignore[attr-defined]

# The two statements of every mail, built once: executed with a dict of values, they are compiled once
# per connection's dialect and taken from SQLAlchemy's cache after that (a statement built per call costs
# more than the SQLite write itself). The UPDATE's SET clause comes from the keys of its values.
_CLAIM = insert(_attempt)
_FINISH = update(_attempt).where(_attempt.c.id == bindparam("row_id"))
# A sent mail's Task, inserted in the finish's own transaction: no write of its own.
_TASK = insert(_sfa_write)
# The columns migration 0003 added: a log opened read-only at an older revision lacks them (and has no
# resolutions); a writer always has them, having migrated to head.
_RESOLUTION_COLUMNS: Final = ("resolved_as", "resolved_at", "resolved_by", "resolved_note")
# The column migration 0006 added: a log opened read-only before it has none (every row reads as "").
_VARIANT_COLUMN: Final = "variant"
_CLAIM_KEYS: Final = ("run_id", "campaign", "contact_id", "address", "rep_id", "rep_email", "subject", "message_id",
                      "template", "language", "variant", "state", "created_at")
_FINISH_KEYS: Final = ("row_id", "state", "finished_at", "smtp_code", "smtp_text")
_TASK_KEYS: Final = ("what", "attempt_id", "address", "payload", "state", "tries", "created_at")
_DRIVER: Final = {"claim": (_CLAIM, _CLAIM_KEYS), "finish": (_FINISH, _FINISH_KEYS), "task": (_TASK, _TASK_KEYS)}


class _DriverStatement:
    """A statement compiled once by SQLAlchemy for a positional dialect (SQLite), run on the driver.

    The SQL text, the order of its parameters and each parameter's bind processing (``UTCDateTime`` to
    SQLAlchemy's own SQLite datetime text) all come from SQLAlchemy, so the row is the one ``execute``
    would write; only SQLAlchemy's per-call work (cache lookup, execution context, result wrapping, the
    ``begin`` event's own statement), which costs more than the SQLite write itself, is skipped.
    """

    def __init__(self, statement: Any, keys: tuple[str, ...], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        self.sql: str = compiled.string
        names: list[str] = list(compiled.positiontup or ())
        if sorted(names) != sorted(keys):  # pragma: no cover - a dialect that is not positional
            raise RuntimeError(f"cannot run {self.sql!r} on the driver: parameters {names}")
        # dialect_impl: the dialect's own type (SQLite's DATETIME text), as SQLAlchemy's execute uses it.
        self.binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names]

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional parameters; a value the column cannot take raises here, before any transaction."""
        return tuple(values[name] if process is None else process(values[name]) for name, process in self.binds)


def alembic_config(connection: Connection | None = None, url: str | None = None) -> "Config":
    """An Alembic ``Config`` built in code (no alembic.ini): the migrations ship inside the package.

    ``SendLog.open`` passes its connection. A developer adding a revision passes a URL instead::

        from alembic import command
        from repsend.sendlog import alembic_config
        command.revision(alembic_config(url="sqlite:///dev.db"), "add x", autogenerate=True)
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def safe_name(url: str) -> str:
    """The database as it may appear in a message or a log: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):  # ValueError: a port that is no number
        # Not parseable, so the password cannot be found: show the scheme only.
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://..." if scheme and len(scheme) < 40 else "(malformed URL)"


def _reason(exc: BaseException, password: str | None) -> str:
    """The driver's own words, on one line, with the password scrubbed in case a driver echoes it."""
    orig = getattr(exc, "orig", None) or exc
    words = "; ".join(line.strip() for line in str(orig).strip().splitlines() if line.strip())
    if password:
        words = words.replace(password, "***")
    return words or type(orig).__name__


class SendLog:
    """The send log on one long-lived connection: each write is one short transaction."""

    def __init__(self, engine: Engine, connection: Connection, name: str, *, readonly: bool = False,
                 resolutions: bool = True, suppression: bool = True, sfa_write: bool = True,
                 variant: bool = True, run_reason: bool = True) -> None:
        self._engine = engine
        self._conn = connection
        self.name = name  # the URL with the password hidden
        self.readonly = readonly
        self._password = engine.url.password if isinstance(engine.url.password, str) else None
        # SQLite (the default log): claim and finish run on the driver's connection (``_driver_write``).
        self._sqlite = connection.dialect.name == "sqlite"
        self._driver_statements: dict[str, _DriverStatement] = {}
        # False only for a log read as it is at a revision before 0003 (``open_readonly``).
        self._resolutions = resolutions
        # False only for a log read as it is at a revision before 0004: no suppression can be in it yet.
        self._has_suppression = suppression
        # False only for a log read as it is at a revision before 0005: nothing was written back yet.
        self._has_sfa_write = sfa_write
        # False only for a log read as it is at a revision before 0007: no run kept its reasons yet.
        self._has_run_reason = run_reason
        a = _attempt.c
        self._columns = [c for c in _attempt.c if (resolutions or c.name not in _RESOLUTION_COLUMNS)
                         and (variant or c.name != _VARIANT_COLUMN)]
        not_resolved_unsent = or_(a.resolved_as.is_(None), a.resolved_as != NOT_SENT) if resolutions else None
        live = and_(a.state != DEFERRED, a.state != FAILED)
        mailed = a.state.in_(MAILED_STATES)
        # What the unique key holds (``_LIVE``), and what may have reached an inbox (cooldown, caps).
        self._live = live if not_resolved_unsent is None else and_(live, not_resolved_unsent)
        self._mailed = mailed if not_resolved_unsent is None else and_(mailed, not_resolved_unsent)

    def __repr__(self) -> str:
        return f"SendLog({self.name!r}{', readonly' if self.readonly else ''})"

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> "SendLog":
        """Open (creating if needed) and migrate to head; safe when two processes open at once."""
        parsed = _parse(url)
        name = safe_name(url)
        if parsed.get_backend_name() == "sqlite":
            _make_parent(parsed, name)
        engine = _create_engine(parsed, name, readonly=False)
        connection: Connection | None = None
        try:
            connection = engine.connect()
            log = cls(engine, connection, name)
            log._migrate()
        except BaseException as exc:
            if connection is not None:
                connection.close()
            engine.dispose()
            if isinstance(exc, sa_exc.DBAPIError):
                raise _map_error(exc, name, parsed, "cannot open") from None
            raise
        return log

    @classmethod
    def open_readonly(cls, url: str) -> "SendLog | None":
        """Open only to read (``--dry-run`` writes nothing anywhere); None when there is no log yet.

        SQLite: a missing file is never created, the file is opened with ``mode=ro``, nothing is
        migrated. A schema that is missing gives None; an older one is read as it is.
        """
        parsed = _parse(url)
        name = safe_name(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:") or not Path(database).expanduser().is_file():
                return None
        engine = _create_engine(parsed, name, readonly=True)
        connection: Connection | None = None
        try:
            connection = engine.connect()
            with connection.begin():
                inspector = inspect(connection)
                present = inspector.has_table(_attempt.name)
                columns = {c["name"] for c in inspector.get_columns(_attempt.name)} if present else set()
                suppression = inspector.has_table(_suppression.name)
                sfa_write = inspector.has_table(_sfa_write.name)
                run_reason = inspector.has_table(_run_reason.name)
        except BaseException as exc:
            if connection is not None:
                connection.close()
            engine.dispose()
            if isinstance(exc, sa_exc.DBAPIError):
                raise _map_error(exc, name, parsed, "cannot read") from None
            raise
        if not present:
            connection.close()
            engine.dispose()
            return None
        return cls(engine, connection, name, readonly=True, resolutions=set(_RESOLUTION_COLUMNS) <= columns,
                   suppression=suppression, sfa_write=sfa_write, variant=_VARIANT_COLUMN in columns,
                   run_reason=run_reason)

    def _migrate(self) -> None:
        """Upgrade to head inside one write transaction, so that a second process waits, then finds head."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        conn = self._conn
        config = alembic_config(conn)
        script = ScriptDirectory.from_config(config)
        with conn.begin():  # SQLite: BEGIN IMMEDIATE (see _create_engine)
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            current = MigrationContext.configure(conn).get_current_revision()
            if current == script.get_current_head():
                return
            if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
                # A newer repsend migrated this log: never guess at a schema we do not know.
                raise ConfigError(
                    f"send log {self.name}: the schema is at revision {current}, newer than this repsend knows "
                    f"({script.get_current_head()}): upgrade repsend"
                )
            command.upgrade(config, "head")

    def close(self) -> None:
        self._conn.close()
        self._engine.dispose()

    def __enter__(self) -> "SendLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------------

    @contextmanager
    def _write(self, action: str, *, flush: bool = True) -> Iterator[Connection]:
        """One write transaction, on disk when it commits; with ``flush=False`` (``finish`` only) committed,
        but on PostgreSQL left to reach the disk with the next flushed commit (see ``finish``)."""
        if self.readonly:
            raise RuntimeError(f"send log {self.name} is open read-only: cannot {action}")
        try:
            with self._conn.begin():
                if not flush and self._conn.dialect.name == "postgresql":
                    self._conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield self._conn
        except sa_exc.IntegrityError:
            raise
        except sa_exc.DBAPIError as exc:  # the database failed; anything else is a bug and propagates
            raise ServiceError(f"send log {self.name}: cannot {action}: {_reason(exc, self._password)}") from None
        except sa_exc.StatementError as exc:  # a value the column cannot take (a naive datetime): a bug
            raise exc.orig if isinstance(exc.orig, ValueError) else exc from None

    def _dbapi(self) -> sqlite3.Connection:
        dbapi_connection = self._conn.connection.dbapi_connection
        assert dbapi_connection is not None
        return dbapi_connection  # type: ignore[return-value]

    def _driver_statement(self, name: str) -> _DriverStatement:
        statement = self._driver_statements.get(name)
        if statement is None:
            built, keys = _DRIVER[name]
            statement = self._driver_statements[name] = _DriverStatement(built, keys, self._conn.dialect)
        return statement

    def _driver_write(self, action: str, name: str, values: dict[str, Any], *, flush: bool = True,
                      also: tuple[str, dict[str, Any]] | None = None) -> sqlite3.Cursor:
        """SQLite: one write transaction of one statement, as ``_write`` does it, on the driver's connection.

        The same transaction as ``_write``'s: BEGIN IMMEDIATE (waiting up to the busy timeout for another
        process's lock), the statement, COMMIT (on disk when it returns, unless ``flush=False``), a
        ROLLBACK if anything fails; the same errors: ``sqlite3.IntegrityError`` as it is, any other
        database failure a ``ServiceError``. SQLAlchemy's connection is outside any transaction
        meanwhile and finds it so afterwards. ``also``: a second statement in the same transaction (a sent
        mail's Task); the cursor returned is the first one's.
        """
        if self.readonly:
            raise RuntimeError(f"send log {self.name} is open read-only: cannot {action}")
        statement = self._driver_statement(name)
        parameters = statement.parameters(values)
        second = None
        if also is not None:
            extra = self._driver_statement(also[0])
            second = (extra.sql, extra.parameters(also[1]))
        conn = self._dbapi()
        try:
            if not flush:  # a connection setting, set outside the transaction: no lock, no I/O
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cursor = conn.execute(statement.sql, parameters)
                    if second is not None:
                        conn.execute(*second)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):  # the first failure is the one to report
                            conn.execute("ROLLBACK")
                    raise
            finally:
                if not flush:
                    conn.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise ServiceError(f"send log {self.name}: cannot {action}: {_reason(exc, self._password)}") from None
        return cursor

    @contextmanager
    def _read(self, action: str) -> Iterator[Connection]:
        try:
            with self._conn.begin():
                yield self._conn
        except sa_exc.DBAPIError as exc:
            raise ServiceError(f"send log {self.name}: cannot {action}: {_reason(exc, self._password)}") from None
        except sa_exc.StatementError as exc:
            raise exc.orig if isinstance(exc.orig, ValueError) else exc from None

    # -- runs ----------------------------------------------------------------------------------------

    def start_run(self, run_id: str, campaign: str, now: datetime, host: str, pid: int) -> None:
        """Record that a run began, so that rows can be traced to a host and process."""
        with self._write("start the run") as conn:
            conn.execute(insert(_run).values(id=run_id, campaign=campaign, started_at=now, host=host, pid=pid))

    def finish_run(self, run_id: str, now: datetime, counts: dict[str, int], exit_code: int,
                   reasons: Mapping[str, int] | None = None) -> None:
        """Record how a run ended; ``counts`` keys are among ``RUN_COUNTS`` (missing ones stay 0), ``reasons``
        its decisions by reason (kept in ``run_reason``)."""
        unknown_keys = set(counts) - set(RUN_COUNTS)
        if unknown_keys:
            raise ValueError(f"unknown run counts: {', '.join(sorted(unknown_keys))}")
        with self._write("finish the run") as conn:
            conn.execute(update(_run).where(_run.c.id == run_id).values(finished_at=now, exit_code=exit_code, **counts))
            if reasons is not None:
                conn.execute(_run_reason.delete().where(_run_reason.c.run_id == run_id))
                rows = [{"run_id": run_id, "reason": reason, "count": n} for reason, n in sorted(reasons.items()) if n]
                if rows:
                    conn.execute(insert(_run_reason), rows)

    def run_reasons(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Run id -> its decisions by reason (empty for a run before migration 0007, or one that was killed)."""
        wanted = list(dict.fromkeys(run_ids))
        if not wanted or not self._has_run_reason:
            return {}
        found: dict[str, dict[str, int]] = {}
        c = _run_reason.c
        with self._read("read the reasons of the runs in") as conn:
            for start in range(0, len(wanted), 500):
                query = select(c.run_id, c.reason, c.count).where(c.run_id.in_(wanted[start:start + 500]))
                for run_id, reason, n in conn.execute(query):
                    found.setdefault(run_id, {})[reason] = int(n)
        return {run_id: dict(sorted(reasons.items())) for run_id, reasons in found.items()}

    def close_dead_runs(self, now: datetime, host: str | None = None,
                        silent_after: timedelta = RUN_SILENT_AFTER) -> list[Run]:
        """Runs left open by a process that is gone (SIGKILL, the OOM killer, a power cut) are closed with
        what is known; returns them as closed.

        A run is gone when it ran on ``host`` (this machine) and its process no longer exists, or when
        nothing was heard of it (its start, its attempts) for ``silent_after``: a live run writes an
        attempt at least every hour (the pace's longest wait). Its counts of sent, failed, deferred and
        unknown are recounted from its attempts (a ``sending`` one counts as unknown: ``recover`` makes it
        so), ``finished_at`` is the last moment known of it, and ``exit_code`` stays NULL: nobody knows
        what the process would have returned. Should the run be alive after all, its own ``finish_run``
        overwrites all of it.
        """
        a, r = _attempt.c, _run.c
        closed: list[Run] = []
        with self._write("close interrupted runs") as conn:
            open_runs = conn.execute(select(_run).where(r.finished_at.is_(None))).all()
            if not open_runs:
                return closed
            for run in open_runs:
                per_state = conn.execute(
                    select(a.state, func.count(), func.max(a.created_at), func.max(a.finished_at))
                    .where(a.run_id == run.id).group_by(a.state)
                ).all()
                seen = [run.started_at] + [t for row in per_state for t in row[2:] if t is not None]
                last = max(_as_utc(t) for t in seen)
                if not ((run.host == host and not _process_alive(run.pid)) or last < now - silent_after):
                    continue
                counts = {state: 0 for state in (SENT, FAILED, DEFERRED, UNKNOWN)}
                for state, count, _, _ in per_state:
                    key = UNKNOWN if state == SENDING else state
                    if key in counts:
                        counts[key] += int(count)
                conn.execute(update(_run).where(r.id == run.id).values(finished_at=last, **counts))
                closed.append(Run(**{**run._mapping, **counts, "finished_at": last}))
        return closed

    def runs(self) -> list[Run]:
        with self._read("read the runs") as conn:
            return [Run(**row._mapping) for row in conn.execute(select(_run).order_by(_run.c.started_at))]

    # -- attempts ------------------------------------------------------------------------------------

    def recover(self, now: datetime, host: str | None = None, stale_after: timedelta = timedelta(hours=1)) -> int:
        """Rows left ``sending`` by a run that is gone become ``unknown``; returns how many.

        A run is gone when it finished, when it ran on ``host`` (this machine) and its process no longer
        exists, when its row is missing, or when the attempt is older than ``stale_after`` (no SMTP
        transaction lasts that long). A run still under way elsewhere keeps its rows: its own ``finish``
        will record the real outcome. Unknown blocks the address for the campaign until a person says
        otherwise (``resolve``): the mail may have left, and a duplicate personal note is worse than a
        missing one.
        """
        a, r = _attempt.c, _run.c
        with self._write("recover interrupted sends") as conn:
            rows = conn.execute(
                select(a.id, a.created_at, r.host, r.pid, r.finished_at)
                .select_from(_attempt.outerjoin(_run, a.run_id == r.id))
                .where(a.state == SENDING)
            ).all()
            gone = [
                row.id
                for row in rows
                if row.host is None
                or row.finished_at is not None
                or row.created_at < now - stale_after
                or (row.host == host and not _process_alive(row.pid))
            ]
            if gone:
                conn.execute(update(_attempt).where(a.id.in_(gone)).values(state=UNKNOWN, finished_at=now))
            return len(gone)

    def hold_out(self, *, run_id: str, campaign: str, contact_id: str, address: str, rep_id: str, rep_email: str,
                 template: str, language: str, now: datetime, variant: str = "") -> bool:
        """Record a held-out contact (the holdout group), with the rep who would have sent it and the variant
        it would have been mailed in; False when the address already has a live row in the campaign (held out
        or mailed before)."""
        values = {"run_id": run_id, "campaign": campaign, "contact_id": contact_id, "address": normalize_email(address),
                  "rep_id": rep_id, "rep_email": rep_email, "subject": "", "message_id": "", "template": template,
                  "language": language, "variant": variant, "state": HELD_OUT, "created_at": now, "finished_at": now}
        try:
            with self._write("record a held-out contact") as conn:
                conn.execute(insert(_attempt), values)
        except (sa_exc.IntegrityError, sqlite3.IntegrityError):
            return False
        return True

    def claim(
        self,
        *,
        run_id: str,
        campaign: str,
        contact_id: str,
        address: str,
        rep_id: str,
        rep_email: str,
        subject: str,
        message_id: str,
        template: str,
        language: str,
        now: datetime,
        variant: str = "",
    ) -> int | None:
        """Commit a ``sending`` row before the SMTP transaction starts; its id, or None if taken.

        None means a live row of this campaign for this address already exists (``sent``, ``sending``,
        ``unknown`` not resolved as not sent: an earlier run, or a concurrent one that won the race): do not
        send. A ``failed`` or ``deferred`` row leaves room: whether to try again is the audience's rule.
        """
        address = normalize_email(address)
        values = {
            "run_id": run_id,
            "campaign": campaign,
            "contact_id": contact_id,
            "address": address,
            "rep_id": rep_id,
            "rep_email": rep_email,
            "subject": subject,
            "message_id": message_id,
            "template": template,
            "language": language,
            "variant": variant,
            "state": SENDING,
            "created_at": now,
        }
        try:
            if self._sqlite:
                row_id = self._driver_write("claim a send", "claim", values).lastrowid
            else:
                with self._write("claim a send") as conn:
                    row_id = conn.execute(_CLAIM, values).inserted_primary_key[0]
        except (sa_exc.IntegrityError, sqlite3.IntegrityError) as exc:
            # The partial unique key (the expected case) or something else (a bug: say so).
            if self._holder(campaign, address):
                return None
            raise ServiceError(f"send log {self.name}: cannot claim a send: {_reason(exc, self._password)}") from None
        return int(row_id)

    def _holder(self, campaign: str, address: str) -> bool:
        with self._read("claim a send") as conn:
            query = select(_attempt.c.id).where(_attempt.c.campaign == campaign, _attempt.c.address == address,
                                                self._live)
            return conn.execute(query.limit(1)).first() is not None

    def finish(self, row_id: int, state: str, now: datetime, code: int | None, text: str | None, *,
               task: tuple[str, str] | None = None) -> None:
        """Record the outcome of a claimed send (``sent``, ``failed``, ``deferred`` or ``unknown``).

        Updates by id whatever the row's state, so that the real outcome wins even if a concurrent
        run's ``recover`` marked this in-flight row ``unknown`` meanwhile.

        Committed, so that every other connection sees it and a crash or kill of this process cannot undo
        it, but not forced to disk on its own (SQLite: ``synchronous=NORMAL`` for this one transaction;
        PostgreSQL: ``synchronous_commit=off``): it reaches the disk with the next flushed commit, which is
        the next mail's ``claim`` (milliseconds later, or after a throttle wait) or the run's ``finish_run``.
        Both databases write their log in order, so flushing a later commit flushes this one too. A power
        loss or an OS crash in between can only roll the row back to the ``sending`` its claim put on disk,
        which the next run's ``recover`` makes ``unknown``: never sent again, as after a crash mid-send. It
        saves one of the two disk flushes a mail costs, and loses nothing but, on a power cut, the
        difference between the last mail's ``sent`` (or ``failed``/``deferred``) and ``unknown``.

        ``task``: (address, the Task record as JSON) of a sent mail to write back to the SFA (``sfa_write``),
        inserted in the same transaction: a mail is ``sent`` with its Task pending, or neither.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"not a final send state: {state!r} (expected one of {', '.join(sorted(FINAL_STATES))})")
        values = {"row_id": row_id, "state": state, "finished_at": now, "smtp_code": code, "smtp_text": text}
        also = None
        if task is not None:
            also = ("task", {"what": TASK, "attempt_id": row_id, "address": task[0], "payload": task[1],
                             "state": PENDING, "tries": 0, "created_at": now})
        if self._sqlite:
            rowcount = self._driver_write("record a send", "finish", values, flush=False, also=also).rowcount
        else:
            with self._write("record a send", flush=False) as conn:
                rowcount = conn.execute(_FINISH, values).rowcount
                if also is not None:
                    conn.execute(_TASK, also[1])
        if rowcount != 1:
            raise ValueError(f"send log {self.name}: no send attempt {row_id}")

    def history(self, campaign: str, cooldown_since: datetime, day_start: datetime, day_end: datetime) -> History:
        """What the audience needs to know before a run, in four aggregate queries.

        - campaign_addresses: this campaign's addresses with a live row (``sent``, ``sending``, ``unknown``
          not resolved as not sent): the mail went out, may have, or is going;
        - campaign_failed: this campaign's addresses the server refused (``failed``) -> its latest answer
          ("550 5.1.1 ..."); an address in both is already sent (a retry that went through);
        - last_mailed: address -> day of its latest row that may have reached the inbox (any campaign)
          created on or after ``cooldown_since``, the day taken in ``cooldown_since``'s time zone;
        - rep_sent_today: id15 of the rep -> such rows created in [day_start, day_end).
        """
        zone: tzinfo = cooldown_since.tzinfo or UTC
        a = _attempt.c
        with self._read("read the send history") as conn:
            live = conn.execute(select(a.address, a.state).where(a.campaign == campaign, self._live)).all()
            addresses = frozenset(address for address, state in live if state != HELD_OUT)
            held_out = frozenset(address for address, state in live if state == HELD_OUT) - addresses
            refused = conn.execute(
                select(a.address, a.smtp_code, a.smtp_text)
                .where(a.campaign == campaign, a.state == FAILED)
                .order_by(a.created_at, a.id)
            ).all()
            latest = conn.execute(
                select(a.address, func.max(a.created_at))
                .where(self._mailed, a.created_at >= cooldown_since)
                .group_by(a.address)
            ).all()
            per_rep = conn.execute(
                select(a.rep_id, func.count())
                .where(self._mailed, a.created_at >= day_start, a.created_at < day_end)
                .group_by(a.rep_id)
            ).all()
        rep_sent_today: dict[str, int] = {}
        for rep_id, count in per_rep:  # 15- and 18-character forms of one rep add up
            key = id15(rep_id)
            rep_sent_today[key] = rep_sent_today.get(key, 0) + int(count)
        return History(
            campaign_addresses=addresses,
            # Oldest first, so that the latest refusal of an address is the one kept.
            campaign_failed={address: answer(code, words) for address, code, words in refused},
            last_mailed={address: when.astimezone(zone).date() for address, when in latest},
            rep_sent_today=rep_sent_today,
            suppressed=self.suppressed(),
            held_out=held_out,
        )

    def _filters(self, campaign: str | None, since: datetime | None, state: str | None, rep: str | None,
                 until: datetime | None = None, contact: str | None = None) -> list[Any]:
        """``since`` inclusive, ``until`` exclusive; ``contact`` an address (any case) or a Contact Id (15 or 18)."""
        a = _attempt.c
        filters: list[Any] = []
        if campaign is not None:
            filters.append(a.campaign == campaign)
        if since is not None:
            filters.append(a.created_at >= since)
        if until is not None:
            filters.append(a.created_at < until)
        if state is not None:
            filters.append(a.state == state)
        if rep:
            wanted = rep.strip()
            filters.append((func.lower(a.rep_email) == wanted.lower()) | (func.substr(a.rep_id, 1, 15) == id15(wanted)))
        if contact:
            if "@" in contact:
                filters.append(a.address == normalize_email(contact))
            else:
                filters.append(func.substr(a.contact_id, 1, 15) == id15(contact))
        return filters

    def attempts(
        self, campaign: str | None = None, since: datetime | None = None, state: str | None = None,
        rep: str | None = None, *, until: datetime | None = None, contact: str | None = None,
    ) -> list[Attempt]:
        """Attempts newest first, filtered in the database: for ``repsend log``.

        ``rep`` matches the rep's address (any case) or User Id (15 or 18 characters), ``contact`` the
        attempt's address (any case) or Contact Id (15 or 18); ``since`` inclusive, ``until`` exclusive.
        """
        a = _attempt.c
        query = select(*self._columns).where(*self._filters(campaign, since, state, rep, until, contact))
        with self._read("read the send log") as conn:
            rows = conn.execute(query.order_by(a.created_at.desc(), a.id.desc()))
            return [Attempt(**row._mapping) for row in rows]

    def states_now(
        self, campaign: str | None = None, since: datetime | None = None, state: str | None = None,
        rep: str | None = None, *, until: datetime | None = None, contact: str | None = None,
    ) -> dict[tuple[str, str], "AddressNow"]:
        """(campaign, address) -> its state now, for every pair that has an attempt matching the filters,
        judged on all of the pair's attempts (a ``deferred`` one from before ``since`` that a later run
        sent is ``sent``): see ``state_now``."""
        a = _attempt.c
        resolved = a.resolved_as if self._resolutions else None
        query = select(a.campaign, a.address, a.state, a.id, a.rep_email, *(() if resolved is None else (resolved,)))
        if since is None and until is None and state is None and not rep and not contact:
            query = query.where(*self._filters(campaign, None, None, None))  # every attempt of the pairs matches
        else:
            pairs = (select(a.campaign, a.address)
                     .where(*self._filters(campaign, since, state, rep, until, contact)).distinct())
            query = query.where(tuple_(a.campaign, a.address).in_(pairs))
        grouped: dict[tuple[str, str], list[tuple[str, str | None, int, str]]] = {}
        with self._read("read the send log") as conn:
            for campaign_, address, state_, row_id, rep_email, *resolution in conn.execute(query):
                attempt = (state_, resolution[0] if resolution else None, row_id, rep_email)
                attempts = grouped.get((campaign_, address))
                if attempts is None:
                    grouped[(campaign_, address)] = [attempt]
                else:
                    attempts.append(attempt)
        return {pair: state_now(attempts) for pair, attempts in grouped.items()}

    def resolve(self, campaign: str, address: str, resolved_as: str, *, now: datetime, by: str,
                note: str = "") -> Attempt:
        """A person's answer for the ``unknown`` attempt of this campaign and address: the mail went out
        (``sent``: never sent again, it counts as mailed) or it did not (``not_sent``: a later run may try
        again). The row keeps its state; the answer, when, who and the note are recorded beside it. A
        ``UsageError`` (exit 2) names what there is instead when no attempt waits for an answer."""
        if resolved_as not in RESOLUTIONS:
            raise ValueError(f"not a resolution: {resolved_as!r} (expected {' or '.join(RESOLUTIONS)})")
        address = normalize_email(address)
        a = _attempt.c
        with self._write("record a resolution") as conn:
            rows = [Attempt(**row._mapping) for row in conn.execute(
                select(_attempt).where(a.campaign == campaign, a.address == address).order_by(a.created_at, a.id))]
            waiting = [r for r in rows if r.state == UNKNOWN and r.resolved_as is None]
            if not waiting:
                raise UsageError(_nothing_to_resolve(campaign, address, rows))
            row = waiting[-1]  # the live key allows one; the latest, should a pre-0003 log hold more
            values = {"resolved_as": resolved_as, "resolved_at": now, "resolved_by": by, "resolved_note": note or None}
            conn.execute(update(_attempt).where(a.id == row.id, a.resolved_as.is_(None)).values(**values))
        for key, value in values.items():
            setattr(row, key, value)
        return row

    # -- suppression (migration 0004) ------------------------------------------------------------------

    def suppress(self, address: str, kind: str, source: str, now: datetime, *, reason: str = "",
                 campaign: str | None = None, by: str = "") -> bool:
        """Suppress an address; False (and nothing written) when it is already suppressed as ``kind``."""
        if kind not in SUPPRESSION_KINDS:
            raise ValueError(f"not a suppression kind: {kind!r}")
        address = normalize_email(address)
        s = _suppression.c
        with self._write("record a suppression in") as conn:
            held = conn.execute(select(s.id).where(s.address == address, s.kind == kind, s.removed_at.is_(None))
                                .limit(1)).first()
            if held is not None:
                return False
            conn.execute(insert(_suppression).values(address=address, kind=kind, source=source, reason=reason,
                                                     campaign=campaign, created_at=now, created_by=by))
        return True

    def unsuppress(self, address: str, now: datetime, *, reason: str, by: str = "") -> int:
        """Lift every suppression of an address (a mistake); the rows stay, marked removed. How many."""
        s = _suppression.c
        with self._write("remove a suppression in") as conn:
            result = conn.execute(update(_suppression)
                                  .where(s.address == normalize_email(address), s.removed_at.is_(None))
                                  .values(removed_at=now, removed_by=by, removed_reason=reason))
        return int(result.rowcount or 0)

    def suppressions(self, *, removed: bool = False) -> list[Suppression]:
        """Every suppression in force (with ``removed``, the lifted ones too), oldest first."""
        if not self._has_suppression:
            return []
        s = _suppression.c
        query = select(_suppression).order_by(s.created_at, s.id)
        if not removed:
            query = query.where(s.removed_at.is_(None))
        with self._read("read the suppressions of") as conn:
            return [Suppression(**row._mapping) for row in conn.execute(query)]

    def suppressed(self) -> dict[str, tuple[Reason, str]]:
        """Address -> the reason and detail its suppressions give (the first in Reason's order wins)."""
        found: dict[str, tuple[Reason, str]] = {}
        for row in self.suppressions():
            reason = _KIND_REASON[row.kind]
            held = found.get(row.address)
            if held is None or reason.rank < held[0].rank:
                found[row.address] = (reason, row.detail)
        return found

    def inbox_seen(self, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` of messages already sorted."""
        wanted = list(dict.fromkeys(keys))
        if not wanted or not self._has_suppression:
            return set()
        seen: set[str] = set()
        with self._read("read the inbox messages of") as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                seen.update(conn.execute(select(_inbox.c.key).where(_inbox.c.key.in_(chunk))).scalars())
        return seen

    def attempt_of(self, message_id: str) -> tuple[str, str] | None:
        """(campaign, address) of the attempt that sent this Message-ID, as a report returns it; None if none."""
        wanted = message_id.strip()
        if not wanted:
            return None
        if not wanted.startswith("<"):
            wanted = f"<{wanted}>"
        a = _attempt.c
        with self._read("look up a Message-ID in") as conn:
            row = conn.execute(select(a.campaign, a.address).where(a.message_id == wanted)
                               .order_by(a.id.desc()).limit(1)).first()
        return (row[0], row[1]) if row is not None else None

    def mailed(self, address: str) -> str | None:
        """The campaign of the latest attempt to this address, or None if repsend never tried it."""
        a = _attempt.c
        with self._read("look up an address in") as conn:
            row = conn.execute(select(a.campaign).where(a.address == normalize_email(address))
                               .order_by(a.id.desc()).limit(1)).first()
        return row[0] if row is not None else None

    def remember_inbox(self, key: str, kind: str, source: str, now: datetime, *, address: str | None = None,
                       detail: str | None = None) -> bool:
        """Record a sorted message; False when its key was recorded already (another reader got there first)."""
        with self._write("record an inbox message in") as conn:
            if conn.execute(select(_inbox.c.key).where(_inbox.c.key == key)).first() is not None:
                return False
            conn.execute(insert(_inbox).values(key=key, kind=kind, source=source, address=address, detail=detail,
                                               read_at=now))
        return True

    # -- the way back to the SFA (migration 0005) ------------------------------------------------------

    def queue_opt_outs(self, now: datetime) -> int:
        """A pending opt-out for the SFA for every suppression in force that is one there (an opt-out or a
        complaint, not a bounce) and has none yet, whoever recorded it (``optout``, the unsubscribe link,
        ``inbox``); one still pending whose suppression was removed meanwhile is cancelled. How many queued."""
        s, w = _suppression.c, _sfa_write.c
        with self._write("queue opt-outs for the SFA in") as conn:
            queued = select(w.suppression_id).where(w.what == SFA_OPT_OUT, w.suppression_id.is_not(None))
            new = conn.execute(select(s.id, s.address).where(s.kind.in_(SFA_OPT_OUT_KINDS), s.removed_at.is_(None),
                                                             s.id.not_in(queued)).order_by(s.id)).all()
            if new:
                conn.execute(insert(_sfa_write), [{"what": SFA_OPT_OUT, "suppression_id": sid, "address": address,
                                                   "state": PENDING, "created_at": now} for sid, address in new])
            removed = select(s.id).where(s.removed_at.is_not(None))
            conn.execute(update(_sfa_write)
                         .where(w.what == SFA_OPT_OUT, w.state.in_((PENDING, REJECTED)), w.suppression_id.in_(removed))
                         .values(state=CANCELLED, done_at=now))
        return len(new)

    def claim_writes(self, what: str, states: Iterable[str], by: str, now: datetime, *, limit: int,
                     after_id: int = 0) -> list[SfaWrite]:
        """Mark up to ``limit`` records (ids above ``after_id``, oldest first) ``in_flight``, claimed by
        ``by``, committed before any call is made: the ones this process got (a concurrent one may take some)."""
        w = _sfa_write.c
        wanted = tuple(states)
        with self._write("claim writes to the SFA in") as conn:
            ids = list(conn.execute(select(w.id).where(w.what == what, w.state.in_(wanted), w.id > after_id)
                                    .order_by(w.id).limit(limit)).scalars())
            if not ids:
                return []
            conn.execute(update(_sfa_write).where(w.id.in_(ids), w.state.in_(wanted))
                         .values(state=IN_FLIGHT, claimed_by=by, claimed_at=now))
            rows = conn.execute(select(_sfa_write).where(w.id.in_(ids), w.state == IN_FLIGHT, w.claimed_by == by,
                                                         w.claimed_at == now).order_by(w.id)).all()
        return [SfaWrite(**row._mapping) for row in rows]

    def stale_in_flight(self, what: str, now: datetime, host: str, pid: int) -> list[SfaWrite]:
        """Records left ``in_flight`` by a write that is gone: claimed over STALE_CLAIM ago, or on this host by
        a process that no longer exists, or by this one (its writes run one after another)."""
        w = _sfa_write.c
        with self._read("read the writes to the SFA in") as conn:
            rows = [SfaWrite(**row._mapping) for row in
                    conn.execute(select(_sfa_write).where(w.what == what, w.state == IN_FLIGHT).order_by(w.id))]

        def gone(row: SfaWrite) -> bool:
            claimer, _, number = (row.claimed_by or "").rpartition(":")
            claimer_pid = int(number) if number.isdigit() else None
            if row.claimed_at is None or row.claimed_at < now - STALE_CLAIM:
                return True
            return claimer == host and (claimer_pid == pid or not _process_alive(claimer_pid))

        return [row for row in rows if gone(row)]

    def settle(self, outcomes: Iterable[tuple[int, str, str | None, str | None, str | None, bool]],
               now: datetime) -> None:
        """Record what became of claimed records, (id, state, sfa_id, error, payload, tried) each, in one
        transaction; the claim is released, ``tries`` counts the calls that carried the record."""
        w = _sfa_write.c
        values = [{"row_id": row_id, "new_state": state, "new_sfa_id": sfa_id, "new_error": error,
                   "new_payload": payload, "new_done_at": now if state in (WRITTEN, EXPORTED) else None,
                   "tried": 1 if tried else 0}
                  for row_id, state, sfa_id, error, payload, tried in outcomes]
        if not values:
            return
        statement = update(_sfa_write).where(w.id == bindparam("row_id")).values(
            state=bindparam("new_state"), sfa_id=bindparam("new_sfa_id"), error=bindparam("new_error"),
            payload=bindparam("new_payload"), done_at=bindparam("new_done_at"), tries=w.tries + bindparam("tried"),
            claimed_by=None, claimed_at=None)
        with self._write("record the writes to the SFA in") as conn:
            conn.execute(statement, values)

    def known_sfa_ids(self, ids: Iterable[str]) -> set[str]:
        """The ids among ``ids`` that a written record of the log already holds."""
        wanted = list(dict.fromkeys(ids))
        w = _sfa_write.c
        known: set[str] = set()
        with self._read("read the writes to the SFA in") as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                known.update(conn.execute(select(w.sfa_id).where(w.what == TASK, w.sfa_id.in_(chunk))).scalars())
        return known

    def sfa_writes(self, what: str | None = None, states: Iterable[str] | None = None) -> list[SfaWrite]:
        """The records for the SFA (of one kind, in some states), oldest first."""
        if not self._has_sfa_write:
            return []
        w = _sfa_write.c
        query = select(_sfa_write).order_by(w.id)
        if what is not None:
            query = query.where(w.what == what)
        if states is not None:
            query = query.where(w.state.in_(tuple(states)))
        with self._read("read the writes to the SFA in") as conn:
            return [SfaWrite(**row._mapping) for row in conn.execute(query)]

    def exposures(self, campaign: str | None = None) -> list[Attempt]:
        """What outcomes compare: each address's first ``sent`` or ``held_out`` attempt of a campaign (or of
        every campaign), oldest first."""
        a = _attempt.c
        query = select(*self._columns).where(a.state.in_((SENT, HELD_OUT))).order_by(a.id)
        if campaign is not None:
            query = query.where(a.campaign == campaign)
        first: dict[tuple[str, str], Attempt] = {}
        with self._read("read the exposures of") as conn:
            for row in conn.execute(query):
                attempt = Attempt(**row._mapping)
                first.setdefault((attempt.campaign, attempt.address), attempt)
        return list(first.values())

    def rows(self, campaign: str | None = None) -> list[Attempt]:
        """Every attempt (of one campaign), oldest first: for reports and tests."""
        query = select(*self._columns).order_by(_attempt.c.id)
        if campaign is not None:
            query = query.where(_attempt.c.campaign == campaign)
        with self._read("read the send log") as conn:
            return [Attempt(**row._mapping) for row in conn.execute(query)]

    # -- what became of the mails: repsend log, repsend stats (read-only, aggregated in the database) ---

    def _effective_state(self) -> Any:
        """``effective_state`` in SQL: an ``unknown`` attempt a person resolved counts as the answer."""
        a = _attempt.c
        if not self._resolutions:
            return a.state
        return case((and_(a.state == UNKNOWN, a.resolved_as.is_not(None)), a.resolved_as), else_=a.state)

    def _owned_suppressions(self) -> Any:
        """The suppressions in force, each with ``attempt_id``: the attempt it belongs to, the one rule that
        ``repsend log`` shows and ``repsend stats`` counts. That is the latest attempt to its address that
        went out or may have (sent, sending, unknown not resolved as not sent) created at or before it: in
        its campaign when it names one that has such an attempt, else in any campaign. NULL when repsend
        had not mailed the address before (an opt-out by phone, a list imported up front)."""
        s = _suppression.c

        def latest(same_campaign: bool) -> Any:
            o = _attempt.alias().c  # a fresh alias per subquery: each correlates to ``suppression`` alone
            mailed = o.state.in_(MAILED_STATES)
            if self._resolutions:
                mailed = and_(mailed, or_(o.resolved_as.is_(None), o.resolved_as != NOT_SENT))
            where = [o.address == s.address, o.created_at <= s.created_at, mailed]
            if same_campaign:
                where.append(o.campaign == s.campaign)
            return select(func.max(o.id)).where(*where).scalar_subquery()

        owner = func.coalesce(latest(True), latest(False)).label("attempt_id")
        return select(*_suppression.c, owner).where(s.removed_at.is_(None)).subquery("owned")

    def suppressions_by_attempt(self) -> dict[int, list[Suppression]]:
        """Attempt id -> the suppressions in force that belong to it (``_owned_suppressions``), oldest first."""
        if not self._has_suppression:
            return {}
        owned = self._owned_suppressions()
        query = select(owned).where(owned.c.attempt_id.is_not(None)).order_by(owned.c.created_at, owned.c.id)
        found: dict[int, list[Suppression]] = {}
        with self._read("read the suppressions of") as conn:
            for row in conn.execute(query):
                values = dict(row._mapping)
                found.setdefault(int(values.pop("attempt_id")), []).append(Suppression(**values))
        return found

    def stats(self, by: str, zone: tzinfo, *, campaign: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> dict[str, dict[str, int]]:
        """Group -> attempts counted by state (``effective_state``) and suppressions by kind, of the attempts
        matching the filters; ``by`` is one of ``STATS_BY``, ``day`` the calendar day in ``zone``. Two
        GROUP BY queries: nothing is counted in Python but the rows they return."""
        if by not in STATS_BY:
            raise ValueError(f"not a grouping: {by!r}")
        a = _attempt.c
        filters = self._filters(campaign, since, None, None, until)
        counts: dict[str, dict[str, int]] = {}
        with self._read("count the send log") as conn:
            key = self._group_key(conn, by, zone, filters)
            # Grouped on a subquery's columns: PostgreSQL would not take GROUP BY timezone($2, ...) for the
            # SELECT's timezone($1, ...) once parameters are bound by the server.
            per_state = select(key.label("g"), self._effective_state().label("k")).where(*filters).subquery()
            queries = [per_state]
            if self._has_suppression:
                owned = self._owned_suppressions()
                queries.append(select(key.label("g"), owned.c.kind.label("k"))
                               .select_from(owned.join(_attempt, a.id == owned.c.attempt_id)).where(*filters)
                               .subquery())
            for sub in queries:
                for group, kind, n in conn.execute(select(sub.c.g, sub.c.k, func.count()).group_by(sub.c.g, sub.c.k)):
                    counts.setdefault(str(group), {})[kind] = int(n)
        return counts

    def _group_key(self, conn: Connection, by: str, zone: tzinfo, filters: list[Any]) -> Any:
        a = _attempt.c
        if by != "day":
            return {"rep": a.rep_email, "campaign": a.campaign, "template": a.template, "run": a.run_id}[by]
        if conn.dialect.name == "postgresql":
            name = getattr(zone, "key", None) or str(zone)
            return cast(func.timezone(name, a.created_at), Date)
        # SQLite keeps naive UTC and knows no time zones: shift by the zone's offset, one offset per span
        # between its transitions (DST) within the attempts' span; a CASE of a few branches, still SQL.
        first, last = conn.execute(select(func.min(a.created_at), func.max(a.created_at)).where(*filters)).one()
        if first is None:
            return func.date(a.created_at)
        spans = utc_offsets(zone, _as_utc(first), _as_utc(last))
        shifted = [(until, func.date(a.created_at, f"{minutes:+d} minutes")) for until, minutes in spans]
        if len(shifted) == 1:
            return shifted[0][1]
        return case(*((a.created_at < until, day) for until, day in shifted[:-1]), else_=shifted[-1][1])

    def run_stats(self, *, campaign: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[tuple[Run, dict[str, int]]]:
        """The runs started in [since, until) (of one campaign), oldest first, each with its suppressions by
        kind (of its attempts, ``_owned_suppressions``): its own counts are the ones the run recorded."""
        r, a = _run.c, _attempt.c
        where: list[Any] = []
        if campaign is not None:
            where.append(r.campaign == campaign)
        if since is not None:
            where.append(r.started_at >= since)
        if until is not None:
            where.append(r.started_at < until)
        per_run: dict[str, dict[str, int]] = {}
        with self._read("read the runs of") as conn:
            runs = [Run(**row._mapping) for row in conn.execute(select(_run).where(*where)
                                                                 .order_by(r.started_at, r.id))]
            if self._has_suppression and runs:
                owned = self._owned_suppressions()
                query = (select(a.run_id, owned.c.kind, func.count())
                         .select_from(owned.join(_attempt, a.id == owned.c.attempt_id))
                         .where(a.run_id.in_(select(r.id).where(*where))).group_by(a.run_id, owned.c.kind))
                for run_id, kind, n in conn.execute(query):
                    per_run.setdefault(run_id, {})[kind] = int(n)
        return [(run, per_run.get(run.id, {})) for run in runs]


def utc_offsets(zone: tzinfo, first: datetime, last: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offsets in minutes over [first, last], as (the end of its span, minutes): every span
    but the last ends at a transition; the last one's end is ``last``. Found by stepping a day at a time
    and bisecting to the second where the offset changes (transitions are whole seconds, days apart)."""

    def minutes(at: datetime) -> int:
        offset = at.astimezone(zone).utcoffset() or timedelta(0)
        return int(offset.total_seconds() // 60)

    spans: list[tuple[datetime, int]] = []
    at, current = first, minutes(first)
    while at < last:
        step = min(at + timedelta(days=1), last)
        if minutes(step) != current:
            low, high = at, step  # the offset changes in (low, high]
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if minutes(middle) == current else (low, middle)
            change = low.replace(microsecond=0) + timedelta(seconds=1)  # the whole second after low
            spans.append((change, current))
            at, current = change, minutes(change)
        else:
            at = step
    spans.append((last, current))
    return spans


@dataclass(frozen=True, slots=True)
class AddressNow:
    """What became of one address in one campaign, all its attempts taken together."""

    state: str  # one of NOW_STATES
    attempt_id: int  # the attempt that says so
    rep_email: str  # its rep: the one a summary counts it for
    attempts: int


def state_now(attempts: list[tuple[str, str | None, int, str]]) -> AddressNow:
    """The state of an address now from its attempts in one campaign, (state, resolved_as, id, rep_email)
    each: the live attempt's (the unique key allows one: sent, sending, or unknown, or sent as a person
    resolved it), else the latest attempt's (failed, deferred, or not_sent as resolved). Latest is the
    highest id: rows are claimed in time order, and the id needs no date parsing."""
    if len(attempts) == 1:
        (state, resolved_as, attempt_id, rep_email), = attempts
        return AddressNow(effective_state(state, resolved_as), attempt_id, rep_email, 1)
    live = [t for t in attempts if is_live(t[0], t[1])]
    state, resolved_as, attempt_id, rep_email = max(live or attempts, key=lambda t: t[2])
    return AddressNow(effective_state(state, resolved_as), attempt_id, rep_email, len(attempts))


def answer(code: int | None, words: str | None) -> str:
    """The server's answer on one line, as a person reads it: "550 5.1.1 user unknown"."""
    text = " ".join((words or "").split())
    return f"{code} {text}".strip() if code is not None else text


def _nothing_to_resolve(campaign: str, address: str, rows: list[Attempt]) -> str:
    """Why there is nothing to resolve, with what there is instead."""
    head = f"no unknown attempt to resolve for {address} in campaign {campaign!r}"
    if not rows:
        return f"{head}: the send log has no attempt for it (check the address and --campaign)"
    last = rows[-1]
    if last.resolved_as:
        when = last.resolved_at.isoformat(timespec="seconds") if last.resolved_at else "?"
        return f"{head}: already resolved as {last.resolved_as} by {last.resolved_by} at {when}"
    if last.state == SENDING:
        return (f"{head}: its attempt is still 'sending' (a run under way, or one that died: the next run "
                "marks it unknown)")
    return f"{head}: its latest attempt is {last.state}"


# -- engines -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaState:
    """What ``repsend doctor`` says of the send log, learned without writing to it."""

    name: str  # the URL without its password
    exists: bool
    writable: bool
    writable_at: str = ""  # what was checked: the file, its folder, the table privilege
    current: str | None = None
    pending: tuple[str, ...] = ()  # the migrations the next run would apply, oldest first


def schema_state(url: str) -> SchemaState:
    """Whether the log is there, writable by this user, and at which migration; never creates or migrates."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    parsed = _parse(url)
    name = safe_name(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    script = ScriptDirectory.from_config(alembic_config())
    if sqlite:
        path = Path(parsed.database or "").expanduser()
        if not path.is_file():
            parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), path.parent)
            return SchemaState(name, False, os.access(parent, os.W_OK), str(parent))
        # SQLite writes the file and, for its journal, the folder beside it.
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        where = str(path if not os.access(path, os.W_OK) else path.parent)
    log = SendLog.open_readonly(url)
    if log is None:
        if sqlite:
            return SchemaState(name, False, writable, where)
        return SchemaState(name, False, True, "the database (the first run creates the tables)")
    try:
        with log._read("read the schema of") as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            if not sqlite:
                writable = bool(conn.execute(
                    text("SELECT has_table_privilege(current_user, 'send_attempt', 'INSERT')")
                ).scalar())
                where = "INSERT on send_attempt"
    finally:
        log.close()
    known = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    pending = tuple(known[known.index(current) + 1:] if current in known else known if current is None else ())
    return SchemaState(name, True, writable, where, current, pending)


def _as_utc(value: datetime) -> datetime:
    """A time read with ``func.max`` is the database's raw value (SQLite: text, or a naive datetime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (sa_exc.ArgumentError, ValueError):  # ValueError: a port that is no number
        raise ConfigError(
            f"send log {safe_name(url)}: not a database URL (expected e.g. sqlite:///path/repsend.db "
            "or postgresql://user:password@host/db)"
        ) from None


def _make_parent(url: URL, name: str) -> None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    parent = Path(database).expanduser().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"send log {name}: cannot create the folder {parent}: {exc.strerror}") from None


def _create_engine(url: URL, name: str, *, readonly: bool) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url, readonly=readonly)
        engine = create_engine(_with_installed_driver(url))
    except ImportError as exc:
        raise ConfigError(
            f"send log {name}: the database driver is not installed ({exc.name or exc}); "
            "for PostgreSQL: pip install 'repsend[postgres]'"
        ) from None
    except sa_exc.NoSuchModuleError:
        raise ConfigError(f"send log {name}: unknown database type {url.drivername!r}") from None
    except sa_exc.ArgumentError as exc:
        password = url.password if isinstance(url.password, str) else None
        raise ConfigError(f"send log {name}: {_reason(exc, password)}") from None
    if readonly and engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_connection.commit()

    return engine


def _with_installed_driver(url: URL) -> URL:
    """``postgresql://`` means psycopg2 to SQLAlchemy 2.0 and psycopg (3) to 2.1: use whichever is here."""
    if url.drivername != "postgresql":
        return url
    import importlib.util

    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return url.set(drivername=f"postgresql+{driver}")
    return url


def _sqlite_engine(url: URL, *, readonly: bool) -> Engine:
    """SQLAlchemy's pysqlite recipe: the driver's own transaction handling off, our BEGIN on.

    Writers use BEGIN IMMEDIATE: the write lock is taken at the start (waiting up to the busy timeout
    for another process) rather than on the first write, where SQLite cannot wait and says "database
    is locked". Read-only connections open the file with ``mode=ro`` and use a plain BEGIN.
    """
    if readonly:
        path = Path(url.database or "").expanduser().resolve()

        def connect() -> sqlite3.Connection:
            # A WAL database opened with mode=ro still creates (and leaves) -wal and -shm files when no
            # writer has them open. No -wal file means no writer is open: the main file holds
            # everything, so read it as immutable (no locks, no files). A writer that opens meanwhile
            # writes to its WAL and leaves the main file alone until a checkpoint (1,000 pages or its
            # close), so a dry run's few quick reads still see a consistent file.
            # https://www.sqlite.org/wal.html#read_only_databases
            query = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
            return sqlite3.connect(f"{path.as_uri()}?{query}", uri=True, timeout=BUSY_TIMEOUT_S)

        engine = create_engine("sqlite://", creator=connect)
    else:
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by the sqlite3 module
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.close()
        if not readonly:
            _enable_wal(dbapi_connection)
            # Why FULL and not NORMAL for the claim. In WAL mode a commit appends the transaction to the
            # -wal file; with NORMAL it is written (to the OS) but fsynced only at checkpoints, with FULL
            # it is fsynced before COMMIT returns. Either way a committed ``sending`` row survives a
            # crash or kill of this process (the OS holds the write and readers see it), so NORMAL would
            # keep the claim through a process crash before SMTP starts. It would not through a power
            # loss or an OS crash: the row could vanish after its mail left, and the next run would send
            # that mail again. The claim is the whole at-most-once story, so it pays the fsync
            # (~0.1-0.5 ms on a local disk, far below one SMTP transaction to a real server).
            dbapi_connection.execute(f"PRAGMA synchronous = {SQLITE_SYNCHRONOUS}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _enable_wal(dbapi_connection: sqlite3.Connection) -> None:
    """WAL mode (readers never block the writer, nor it them), also when two processes create the file.

    Switching a new file to WAL upgrades a read lock to a write lock, where SQLite does not call the
    busy handler (it could deadlock) and fails at once with "database is locked" if another process is
    doing the same. So on that error wait for the other process the way SQLite does wait, with the
    busy handler of a fresh BEGIN IMMEDIATE, and look again: by then the file is usually WAL already.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                dbapi_connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        dbapi_connection.execute("BEGIN IMMEDIATE")
        dbapi_connection.execute("ROLLBACK")


def _map_error(exc: sa_exc.DBAPIError, name: str, url: URL, action: str) -> Exception:
    """Exit 2 for a path or URL to fix, exit 3 for a server that refuses or a lock never released."""
    password = url.password if isinstance(url.password, str) else None
    reason = _reason(exc, password)
    if url.get_backend_name() == "sqlite":
        busy = "locked" in reason or "busy" in reason
        error: type[Exception] = ServiceError if busy else ConfigError
        if busy:
            reason += f" (another process held the lock for over {BUSY_TIMEOUT_S:.0f} s)"
        return error(f"send log {name}: {action}: {reason}")
    return ServiceError(f"send log {name}: {action}: {reason}")
