"""The send path (compose, send log, SMTP) against a bare smtplib loop, side by side on one sink.

    python bench/bench_send.py [--quick] [--profile] [--variants]

The goal: with rate limits off, against a local sink that accepts everything (``bench/sink.py``, its own
process, so that on a small machine the server does not share the client's interpreter), repsend sends at
least 1.0x the messages per second of a bare ``smtplib`` loop over one persistent connection that builds
each of the same mails as an ``EmailMessage`` and sends it.

A real run streams: ``send_run`` asks ``selection.select`` for the next decision between two mails, so
deciding and composing happen inside its send loop. The goal is the send path alone, so the goal's
repsend side replays decisions made before the clock starts (``select`` as ``sending`` calls it is
replaced, for that side only, by one that yields the list ``selection.select`` made over the same export);
everything after a decision runs as in a real run. The streamed run is printed beside it, not a goal:
goal 3 (bench_realrun.py) measures a real run end to end against the dry run.

What is timed, on each side, for the same N mails (2,000; --quick: 300) to N distinct addresses:

- repsend: ``sending.send_run`` from the moment it opens the transport (at the first mail) to its
  return: for each mail the per-rep queue, the throttle (limits off), a Message-ID and Date,
  ``compose.to_message``, ``SendLog.claim`` (a committed ``sending`` row, fsynced), the SMTP transaction
  (``SmtpTransport``, connecting at the first mail), ``SendLog.finish`` (``sent``), the reporter (one
  that counts); then QUIT and the run's row. The send log is a SQLite file in a temporary folder with
  repsend's settings (WAL, synchronous=FULL), a new file each round; no outbox.
- streamed (reported): the same ``send_run`` with the real ``select``, timed the same way: the CSV
  export's setup comes before the first mail, deciding and composing each mail after it.
- bare: connect, then for each mail an ``EmailMessage`` (``email.policy.SMTP`` with repsend's 998-character
  lines, which gives the same bytes as repsend's policy; the same headers and body:
  From, Reply-To, To, Subject, Date, Message-ID, List-Unsubscribe, List-Unsubscribe-Post, the composed
  text) and ``smtplib.SMTP.send_message`` over the one connection, then QUIT. The mails are those of the
  replayed decisions, composed before the clock starts.

Rounds alternate the sides (bare, repsend, streamed; then repsend, streamed, bare; ...: each starts a
round in turn; 5 rounds, --quick: 3) after an untimed warm-up of each; the figures are the medians, the
ratio is the ratio of the medians. The sink counts what it received: each side must deliver all N, and
the octets per mail are printed for each (the same mails).

The send log's own cost per mail: ``claim`` + ``finish`` pairs on one ``SendLog``, on a SQLite file
(same settings as above) and on PostgreSQL (a throwaway database on 127.0.0.1:5432, dropped after; set
REPSEND_BENCH_POSTGRES to another admin URL), the median of the per-pair times, median of 3 passes.

--variants adds a side that is not the goal's, to show where the rest of the time goes: repsend (replayed)
with its claims not fsynced (SQLite synchronous=NORMAL, which repsend does not do: see
``repsend.sendlog.SQLITE_SYNCHRONOUS``). --profile prints a cProfile of one more replayed repsend run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import smtplib
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sink import Sink  # noqa: E402
from repsend import sendlog  # noqa: E402
from repsend.clock import SystemClock  # noqa: E402
from repsend.models import Decision, Mail  # noqa: E402
from repsend.selection import RunOptions, Summary, select  # noqa: E402
from repsend.sending import Outcome, Reporter, send_run  # noqa: E402
from repsend.sendlog import SendLog  # noqa: E402
from repsend.settings import Settings, load_settings  # noqa: E402
from repsend.sfa import open_source  # noqa: E402
from repsend.throttle import SendWindow  # noqa: E402
from repsend.transport import Transport, open_transport  # noqa: E402
from tests.helpers import CARTER, contact, write_config, write_export  # noqa: E402

TARGET = 1.0
UNSUBSCRIBE = "https://acme.example/unsubscribe?t="
PG_ADMIN = os.environ.get("REPSEND_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# -- the data --------------------------------------------------------------------------------------------


def contacts(n: int) -> list[dict[str, str]]:
    """n dormant contacts at n distinct addresses: two in three Japanese (佐藤's), one in three English (Carter's)."""
    rows = []
    for i in range(1, n + 1):
        if i % 3 == 0:
            rows.append(contact(i, OwnerId=CARTER, MailingCountry="United States", FirstName="John",
                                LastName=f"Miller{i}", Email=f"john.miller{i}@example.com"))
        else:
            rows.append(contact(i))
    return rows


def configure(folder: Path, n: int, sink: Sink) -> Settings:
    export = write_export(folder / "export", contacts(n))
    config = write_config(folder, export, smtp={"security": "none"},
                          mail={"unsubscribe_url": UNSUBSCRIBE + "x" * 40})
    # Each mail's unsubscribe link is signed (i14): the secret is a run's to have, as in production.
    env = {"SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port), "SMTP_SECURITY": "none",
           "REPSEND_UNSUBSCRIBE_SECRET": "bench-unsubscribe-secret-0123456789abcdef"}
    return load_settings(config, env=env)


def with_database(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"env": {**settings.env, "REPSEND_DATABASE_URL": url}})


def today(settings: Settings) -> date:
    return datetime.now(SendWindow("", [], settings.rate.timezone).zone).date()


def options(settings: Settings, campaign: str) -> RunOptions:
    return RunOptions(today(settings), campaign, "dormant")


# -- the two sides ---------------------------------------------------------------------------------------


class _Count(Reporter):
    """A reporter that only counts (the CLI's prints are not the send path)."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def decision(self, decision: Decision, outcome: Outcome | None) -> None:
        if outcome is not None:
            self.outcomes[outcome.state] += 1

    def progress(self, done: int, total: int, outcomes: Any) -> None:
        pass


@contextmanager
def replayed(decisions: list[Decision] | None) -> Iterator[None]:
    """``send_run`` given these decisions, made before, instead of selecting them (None: selecting them)."""
    if decisions is None:
        yield
        return

    def select_again(settings: Settings, source: Any, options: RunOptions, history: Any = None,
                     summary: Summary | None = None) -> Iterator[Decision]:
        for decision in decisions:
            if summary is not None:
                summary.add(decision)
            yield decision

    with mock.patch("repsend.sending.select", select_again):
        yield


def run_repsend(settings: Settings, n: int, folder: Path, decisions: list[Decision] | None,
                profile: cProfile.Profile | None = None) -> dict[str, float]:
    """One send_run over a new SQLite send log, replaying ``decisions`` (or selecting, when None); the
    time up to the first mail and from it to the end apart."""
    url = f"sqlite:///{folder / f'repsend-{uuid.uuid4().hex[:8]}.db'}"
    settings = with_database(settings, url)
    clock = SystemClock()
    log = SendLog.open(url)  # created and migrated before the clock starts
    source = open_source(settings)
    reporter = _Count()
    marks: dict[str, float] = {}

    def opener() -> Transport:
        marks["send"] = time.perf_counter()
        if profile is not None:
            profile.enable()
        return open_transport(settings, clock)

    try:
        with replayed(decisions):
            start = time.perf_counter()
            result = send_run(settings, source, options(settings, "bench"), log=log, open_transport=opener,
                              clock=clock, reporter=reporter)
            end = time.perf_counter()
        if profile is not None:
            profile.disable()
    finally:
        log.close()
        source.close()
    sent = result.outcomes["sent"]
    if sent != n or result.exit_code != 0:
        raise RuntimeError(f"repsend sent {sent} of {n} (exit {result.exit_code}, {dict(result.outcomes)}, "
                           f"{result.stopped})")
    return {"select_s": marks["send"] - start, "send_s": end - marks["send"], "rate": n / (end - marks["send"])}


def decided(settings: Settings) -> tuple[list[Decision], float]:
    """Every decision of the export, made as send_run would make them (the same campaign); the seconds."""
    source = open_source(settings)
    try:
        start = time.perf_counter()
        decisions = list(select(settings, source, options(settings, "bench")))
        return decisions, time.perf_counter() - start
    finally:
        source.close()


# The standard library's own: the bytes repsend's compose.POLICY gives (tests/test_compose.py), without its
# folding each repeated header once. The baseline is what a loop written without repsend would do.
BARE_POLICY = SMTP.clone(max_line_length=998)


def run_bare(settings: Settings, mails: list[Mail]) -> dict[str, float]:
    """Connect, EmailMessage + send_message per mail over one connection, QUIT."""
    zone = SendWindow("", [], settings.rate.timezone).zone
    domain = settings.company.domain
    unsubscribe = f"<{settings.mail.unsubscribe_url}>"
    start = time.perf_counter()
    smtp = smtplib.SMTP(settings.env["SMTP_HOST"], int(settings.env["SMTP_PORT"]), timeout=30)
    for mail in mails:
        msg = EmailMessage(policy=BARE_POLICY)
        msg["From"] = mail.from_
        msg["Reply-To"] = mail.from_
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = format_datetime(datetime.now(zone))
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["List-Unsubscribe"] = unsubscribe
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(mail.body, charset="utf-8")
        smtp.send_message(msg, mail.from_.addr_spec, [mail.to.addr_spec])
    smtp.quit()
    end = time.perf_counter()
    return {"send_s": end - start, "rate": len(mails) / (end - start)}


def delivered(sink: Sink, before: tuple[int, int, int], n: int, side: str) -> float:
    """Check the sink got all n mails since ``before``; the octets per mail."""
    after = sink.stats()
    messages, octets = after[0] - before[0], after[1] - before[1]
    if messages != n:
        raise RuntimeError(f"{side}: the sink received {messages} mails, not {n}")
    return octets / n


def _repsend_unflushed(settings: Settings, n: int, folder: Path, decisions: list[Decision]) -> dict[str, float]:
    """repsend with its claims NOT fsynced (SQLite synchronous=NORMAL): not what repsend does, for comparison."""
    saved = sendlog.SQLITE_SYNCHRONOUS
    sendlog.SQLITE_SYNCHRONOUS = "NORMAL"  # type: ignore[misc]
    try:
        return run_repsend(settings, n, folder, decisions)
    finally:
        sendlog.SQLITE_SYNCHRONOUS = saved  # type: ignore[misc]


SIDES = {
    "bare": "bare smtplib loop",
    "repsend": "repsend send_run",
    "streamed": "repsend, selecting as it goes",
    "unflushed": "repsend, claims not fsynced (synchronous=NORMAL; not what repsend does)",
}


def compare(n: int, rounds: int, sink: Sink, folder: Path, sides: tuple[str, ...]) -> dict[str, Any]:
    """The sides in turn, ``rounds`` times, after an untimed warm-up; their medians."""
    settings = configure(folder, n, sink)
    decisions, select_s = decided(settings)
    mails = [d.mail for d in decisions if d.mail is not None]
    if len(mails) != n:
        raise RuntimeError(f"the selection composed {len(mails)} mails, not {n}")
    warm = max(20, n // 10)
    warm_settings = configure(folder / "warm", warm, sink)
    run_bare(settings, mails[:warm])
    run_repsend(warm_settings, warm, folder, decided(warm_settings)[0])
    run_repsend(warm_settings, warm, folder, None)
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    octets: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # each side starts a round in turn
            before = sink.stats()
            if side == "bare":
                runs[side].append(run_bare(settings, mails))
            elif side == "repsend":
                runs[side].append(run_repsend(settings, n, folder, decisions))
            elif side == "streamed":
                runs[side].append(run_repsend(settings, n, folder, None))
            else:
                runs[side].append(_repsend_unflushed(settings, n, folder, decisions))
            octets[side].append(delivered(sink, before, n, side))
        rates = "   ".join(f"{side} {runs[side][-1]['rate']:6.0f}" for side in sides)
        last = runs["repsend"][-1]
        print(f"  round {r + 1}: {rates} msg/s   (repsend/bare {last['rate'] / runs['bare'][-1]['rate']:.2f};"
              f" streamed: {runs['streamed'][-1]['select_s']:.2f} s to the first mail)", flush=True)
    return {
        "rate": {side: statistics.median(x["rate"] for x in runs[side]) for side in sides},
        "rounds": {side: [x["rate"] for x in runs[side]] for side in sides},
        "select_s": select_s,
        "first_s": statistics.median(x["select_s"] for x in runs["streamed"]),
        "octets": {side: statistics.median(v) for side, v in octets.items()},
    }


def profile_one(n: int, sink: Sink, folder: Path) -> None:
    settings = configure(folder / "profile", n, sink)
    prof = cProfile.Profile()
    run_repsend(settings, n, folder, decided(settings)[0], prof)
    print("\n  cProfile of one more repsend run (the send phase only), top 25 by internal time:")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


# -- the send log's cost ---------------------------------------------------------------------------------


def log_cost(url: str, pairs: int) -> list[float]:
    """Seconds per claim + finish pair, on a fresh send log at url."""
    now = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
    times: list[float] = []
    with SendLog.open(url) as log:
        run_id = uuid.uuid4().hex
        log.start_run(run_id, "bench", now, "bench-host", os.getpid())
        for i in range(pairs):
            stamp = now + timedelta(milliseconds=i)
            t0 = time.perf_counter()
            row = log.claim(run_id=run_id, campaign="bench", contact_id=f"0035g{i:010d}AAA",
                            address=f"c{i}@example.co.jp", rep_id="0055g00000AbCdEAAV",
                            rep_email="k.sato@acme.example", subject="ご無沙汰しております",
                            message_id=f"<{uuid.uuid4().hex}@acme.example>", template="dormant", language="ja",
                            now=stamp)
            assert row is not None
            log.finish(row, "sent", stamp, 250, "2.0.0 Ok: queued as 1")
            times.append(time.perf_counter() - t0)
        log.finish_run(run_id, now, {"sent": pairs}, 0)
    return times


class _Postgres:
    """A throwaway database on the PostgreSQL server, dropped on exit; None as URL when unreachable."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.reason = ""
        self._admin: Any = None
        self._name = f"repsend_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> _Postgres:
        import sqlalchemy as sa

        admin = sa.make_url(PG_ADMIN)
        try:
            import psycopg2

            self._admin = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                                           password=admin.password, dbname=admin.database, connect_timeout=3)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the server: report, skip
            self.reason = f"PostgreSQL not reachable at {admin.render_as_string()}: {str(exc).strip()}"
            return self
        self._admin.autocommit = True
        with self._admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self._name}"')
        self.url = admin.set(database=self._name).render_as_string(hide_password=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._admin is None:
            return
        with self._admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')
        self._admin.close()


def log_costs(pairs: int, passes: int, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"sqlite": [], "postgresql": [], "pg_reason": ""}
    with _Postgres() as pg:
        out["pg_reason"] = pg.reason
        for p in range(passes):
            sqlite_times = log_cost(f"sqlite:///{folder / f'cost-{p}.db'}", pairs)
            out["sqlite"].append(statistics.median(sqlite_times))
            if pg.url is not None:
                # A fresh schema per pass: the same empty table as SQLite's new file.
                out["postgresql"].append(statistics.median(log_cost(_schema(pg.url, p), pairs)))
    return out


def _schema(url: str, p: int) -> str:
    import sqlalchemy as sa

    from repsend import sendlog

    schema = f"pass_{p}"
    engine = sa.create_engine(sendlog._with_installed_driver(sa.make_url(url)))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)


# -- the report ------------------------------------------------------------------------------------------


def _sqlite_settings(folder: Path) -> str:
    with SendLog.open(f"sqlite:///{folder / 'pragma.db'}") as log:
        raw = log._conn.connection.dbapi_connection
        assert raw is not None
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(raw.execute("PRAGMA synchronous").fetchone()[0])
    return f"journal_mode={mode}, synchronous={sync}"


def _print_comparison(cmp: dict[str, Any], rounds: int) -> float:
    for side, rate in cmp["rate"].items():
        each = ", ".join(f"{x:.0f}" for x in cmp["rounds"][side])
        print(f"    {SIDES[side]:<30.30} {rate:7.0f} msg/s  {1000 / rate:6.3f} ms/mail  (median of {rounds}: {each};"
              f" {cmp['octets'][side]:.0f} octets/mail)")
    ratio = cmp["rate"]["repsend"] / cmp["rate"]["bare"]
    print(f"    ratio repsend / bare: {ratio:.3f}   (goal >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})")
    print(f"    ratio streamed / bare: {cmp['rate']['streamed'] / cmp['rate']['bare']:.3f}   (reported: deciding and "
          "composing each mail inside the loop, which the bare side does before its clock)")
    if "unflushed" in cmp["rate"]:
        print(f"    ratio with the claims not fsynced: {cmp['rate']['unflushed'] / cmp['rate']['bare']:.2f}"
              " (repsend without the fsync of each claim: what that fsync costs, beside the other ratios)")
    return ratio


def main(quick: bool, profile: bool = False, variants: bool = False) -> list[dict]:
    n, rounds, pairs, passes = (300, 3, 200, 3) if quick else (2_000, 5, 1_000, 3)
    sides = ("bare", "repsend", "streamed", "unflushed") if variants else ("bare", "repsend", "streamed")
    print(f"The send path against a bare smtplib loop: {n:,} mails to distinct addresses, {rounds} rounds of each,")
    print("alternating, on one local SMTP sink in its own process (bench/sink.py: accepts everything at once), rate")
    print("limits off. Timed: repsend's send_run from the transport's opening to its return, given decisions made")
    print("before (and, reported, selecting them as it goes, as a real run does); the bare loop's connect,")
    print("EmailMessage + send_message per mail, QUIT.")
    with tempfile.TemporaryDirectory(prefix="repsend-bench-send-") as tmp:
        folder = Path(tmp)
        print(f"  send log: SQLite in {tmp} ({_sqlite_settings(folder)}), a new file each round")
        with Sink() as sink:
            cmp = compare(n, rounds, sink, folder, sides)
            if profile:
                profile_one(n, sink, folder)
        print()
        print(f"  the selection replayed (CSV export, audience, composing {n:,} mails): {cmp['select_s']:.2f} s, "
              f"before the clock; streamed, the first mail after {cmp['first_s']:.2f} s (median; not in the rates)")
        print("  on the sink:")
        ratio = _print_comparison(cmp, rounds)
        costs = log_costs(pairs, passes, folder)
    sqlite_ms = statistics.median(costs["sqlite"]) * 1000
    streamed = cmp["rate"]["streamed"] / cmp["rate"]["bare"]
    print()
    print(f"  the send log's cost per mail (claim + finish), median of {pairs:,} pairs, median of {passes} passes:")
    print(f"    SQLite file   : {sqlite_ms:6.3f} ms  (passes: {', '.join(f'{t * 1000:.3f}' for t in costs['sqlite'])})")
    pg_ms: float | None = None
    if costs["postgresql"]:
        pg_ms = statistics.median(costs["postgresql"]) * 1000
        print(f"    PostgreSQL    : {pg_ms:6.3f} ms  (passes: "
              f"{', '.join(f'{t * 1000:.3f}' for t in costs['postgresql'])}; 127.0.0.1, a throwaway database)")
    else:
        print(f"    PostgreSQL    : skipped ({costs['pg_reason']})")
    return [
        {
            "goal": f"5 send path vs bare smtplib loop, {n:,} mails, local sink, limits off",
            "measured": f"{cmp['rate']['repsend']:.0f} vs {cmp['rate']['bare']:.0f} msg/s = {ratio:.3f}x",
            "target": f">= {TARGET}x",
            "met": ratio >= TARGET,
        },
        {
            "goal": f"5 send_run selecting as it goes (a real run's loop) vs bare loop, {n:,} mails",
            "measured": f"{cmp['rate']['streamed']:.0f} vs {cmp['rate']['bare']:.0f} msg/s = {streamed:.3f}x",
            "target": "reported",
            "met": True,
        },
        {
            "goal": "5 send log cost per mail (claim + finish), SQLite file",
            "measured": f"{sqlite_ms:.3f} ms",
            "target": "reported",
            "met": True,
        },
        {
            "goal": "5 send log cost per mail (claim + finish), PostgreSQL",
            "measured": f"{pg_ms:.3f} ms" if pg_ms is not None else "skipped: " + costs["pg_reason"],
            "target": "reported",
            "met": pg_ms is not None,
        },
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 mails, 3 rounds (instead of 2,000, 5)")
    parser.add_argument("--profile", action="store_true", help="then cProfile one more repsend run")
    parser.add_argument("--variants", action="store_true",
                        help="also run repsend with its claims not fsynced (not what repsend does)")
    args = parser.parse_args()
    rows = main(args.quick, args.profile, args.variants)
    sys.exit(0 if all(r["met"] for r in rows) else 1)
