"""`repsend dormant` for real, against a real SMTP server on 127.0.0.1 and a real send log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from repsend.clock import FakeClock
from repsend.models import Decision
from repsend.selection import RunOptions
from repsend.sending import Outcome, Reporter, RunResult, send_run
from repsend.sendlog import SendLog
from repsend.settings import Settings, load_settings
from repsend.sfa import open_source
from repsend.transport import open_transport
from repsend.unsubscribe import Unsubscribe, read_token
from tests.helpers import CARTER, SATO, contact, deal, write_config, write_export
from tests.smtp_server import SmtpSink

AS_OF = date(2026, 11, 23)
MONDAY_10_TOKYO = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


class Collect(Reporter):
    """A reporter that keeps what a run would print."""

    def __init__(self) -> None:
        self.rows: list[tuple[Decision, Outcome | None]] = []

    def decision(self, decision: Decision, outcome: Outcome | None) -> None:
        self.rows.append((decision, outcome))

    def progress(self, done: int, total: int, outcomes: Any) -> None:
        pass


SECRET = "test-unsubscribe-secret-0123456789"


def configure(tmp_path: Path, sink: SmtpSink | None, rows: list[dict[str, str]], deals=(),
              **sections: dict[str, Any]) -> Settings:
    export = write_export(tmp_path / "export", rows, deals)
    sections.setdefault("smtp", {}).setdefault("security", "none")
    config = write_config(tmp_path, export, **sections)
    env = dict(os.environ)
    if sink is not None:
        env.update(sink.env())
    return load_settings(config, env=env)


def run(settings: Settings, clock: FakeClock | None = None, campaign: str = "dormant", limit: int | None = None,
        wait: bool = False) -> tuple[RunResult, Collect, SendLog]:
    clock = clock or FakeClock(MONDAY_10_TOKYO)
    reporter = Collect()
    log = SendLog.open(settings.database_url)
    source = open_source(settings)
    result = send_run(settings, source, RunOptions(AS_OF, campaign, "dormant", limit), log=log,
                      open_transport=lambda: open_transport(settings, clock), clock=clock, reporter=reporter,
                      wait=wait)
    return result, reporter, log


def states(log: SendLog) -> dict[str, str]:
    return {r.address: r.state for r in log.rows()}


def test_each_chosen_contact_gets_one_mail_and_nobody_else_any(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    rows = [contact(1), contact(2, HasOptedOutOfEmail="true"), contact(3, OwnerId=CARTER,
            MailingCountry="United States", FirstName="John", LastName="Miller"), contact(4), contact(5, Email="")]
    settings = configure(tmp_path, smtp_sink, rows, [deal(1, rows[3]["AccountId"])],
                         mail={"envelope_from": "bounces@acme.example",
                               "unsubscribe_url": "https://acme.example/unsubscribe"})
    settings.env["REPSEND_UNSUBSCRIBE_SECRET"] = SECRET
    result, reporter, log = run(settings)
    assert result.exit_code == 0
    received = {m.rcpt_tos[0]: m for m in smtp_sink.messages}
    assert sorted(received) == ["c1@example.co.jp", "c3@example.co.jp"]
    assert smtp_sink.connections == 1 and smtp_sink.ehlo_count == 1
    ja, en = received["c1@example.co.jp"], received["c3@example.co.jp"]
    assert ja.mail_from == en.mail_from == "bounces@acme.example"
    msg = ja.message
    assert str(msg["From"]) == str(msg["Reply-To"]) == "佐藤 健 <k.sato@acme.example>"
    assert str(en.message["From"]) == "Emily Carter <e.carter@acme.example>"
    assert msg["Message-ID"].endswith("@acme.example>")
    assert msg["Date"].datetime == MONDAY_10_TOKYO
    # Each recipient's own signed link (RFC 8058), and the opt-out address beside it.
    links = {m: str(received[m].message["List-Unsubscribe"]) for m in received}
    for address, link in links.items():
        url, mailto = link.split(", ")
        token = parse_qs(urlsplit(url.strip("<>")).query)["t"][0]
        assert read_token(SECRET.encode(), token) == Unsubscribe(address, "dormant")
        assert mailto == "<mailto:optout@acme.example?subject=unsubscribe>"
    assert links["c1@example.co.jp"] != links["c3@example.co.jp"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Sender" not in msg
    assert "山田1様" in msg.get_content() and "optout@acme.example" in msg.get_content()
    assert en.message.get_content().startswith("Hi John,")
    # Every attempt has its row, with the server's answer and the Message-ID that went out.
    by_address = {r.address: r for r in log.rows()}
    assert set(by_address) == {"c1@example.co.jp", "c3@example.co.jp"}
    row = by_address["c1@example.co.jp"]
    assert (row.state, row.smtp_code, row.rep_id, row.campaign) == ("sent", 250, SATO, "dormant")
    assert row.message_id == msg["Message-ID"] and row.subject == str(msg["Subject"])
    assert row.smtp_text.startswith("2.0.0 OK: queued")
    outcomes = {p.contact.id: (o.state if o else p.reason.value) for p, o in reporter.rows}
    assert outcomes == {rows[0]["Id"]: "sent", rows[1]["Id"]: "opted_out", rows[2]["Id"]: "sent",
                        rows[3]["Id"]: "active_deal", rows[4]["Id"]: "no_email"}


def test_a_second_run_of_the_campaign_sends_nothing(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = configure(tmp_path, smtp_sink, [contact(1), contact(2)])
    run(settings)
    result, reporter, _ = run(settings)
    assert len(smtp_sink.messages) == 2
    assert [p.reason.value for p, _ in reporter.rows] == ["already_sent", "already_sent"]
    # Another campaign waits for the cooldown too.
    result, reporter, _ = run(settings, campaign="spring")
    assert [p.reason.value for p, _ in reporter.rows] == ["cooldown", "cooldown"]
    assert len(smtp_sink.messages) == 2


def test_451_then_250_is_sent_once(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.tempfail(times=1, at="RCPT")
    settings = configure(tmp_path, smtp_sink, [contact(1)])
    clock = FakeClock(MONDAY_10_TOKYO)
    result, _, log = run(settings, clock)
    assert result.exit_code == 0 and len(smtp_sink.messages) == 1
    assert states(log) == {"c1@example.co.jp": "sent"}
    assert clock.slept, "the retry waited on the clock"


def test_550_for_one_recipient_fails_it_and_the_run_goes_on(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse("c2@example.co.jp")
    settings = configure(tmp_path, smtp_sink, [contact(1), contact(2), contact(3)])
    result, _, log = run(settings)
    assert result.exit_code == 1
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["c1@example.co.jp", "c3@example.co.jp"]
    assert states(log) == {"c1@example.co.jp": "sent", "c2@example.co.jp": "failed", "c3@example.co.jp": "sent"}
    failed = next(r for r in log.rows() if r.state == "failed")
    assert failed.smtp_code == 550 and "Mailbox unavailable" in failed.smtp_text
    # A refused address is not tried again in the next run of the campaign.
    run(settings)
    assert len(smtp_sink.messages) == 2


def test_421_and_close_mid_run_reconnects_and_loses_nothing(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.close_with_421(after=2)
    settings = configure(tmp_path, smtp_sink, [contact(i) for i in range(1, 6)])
    result, _, log = run(settings)
    assert result.exit_code == 0
    assert Counter(m.rcpt_tos[0] for m in smtp_sink.messages) == Counter(f"c{i}@example.co.jp" for i in range(1, 6))
    assert smtp_sink.connections == 2
    assert set(states(log).values()) == {"sent"}


def test_a_server_that_refuses_from_the_start_stops_the_run(tmp_path: Path, refused_port: int) -> None:
    settings = configure(tmp_path, None, [contact(1), contact(2)],
                         smtp={"host": "127.0.0.1", "port": refused_port, "security": "none"})
    result, reporter, log = run(settings)
    assert result.exit_code == 3
    assert f"127.0.0.1:{refused_port}: cannot connect" in result.stopped
    # Nobody was tried: no attempt row (the run's row says how it ended), every send is not_sent.
    assert log.rows() == []
    assert [o.state for _, o in reporter.rows if o] == ["not_sent", "not_sent"]
    assert result.outcomes["not_sent"] == 2
    [run_row] = log.runs()
    assert (run_row.exit_code, run_row.sent, run_row.deferred) == (3, 0, 0)


def test_a_drop_after_the_data_is_unknown_and_never_sent_again(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.drop(after=1, at="EOM")
    settings = configure(tmp_path, smtp_sink, [contact(1), contact(2), contact(3)])
    result, _, log = run(settings)
    assert result.exit_code == 1
    assert states(log) == {"c1@example.co.jp": "sent", "c2@example.co.jp": "unknown", "c3@example.co.jp": "sent"}
    run(settings)
    delivered = [m.rcpt_tos[0] for m in smtp_sink.messages + smtp_sink.unanswered]
    assert Counter(delivered)["c2@example.co.jp"] == 1


def test_a_server_that_drops_for_good_after_n_mails(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.drop(after=2, at="MAIL", refuse_connections=True)
    settings = configure(tmp_path, smtp_sink, [contact(i) for i in range(1, 6)])
    result, _, log = run(settings)
    assert result.exit_code == 3
    assert len(smtp_sink.messages) == 2
    assert Counter(states(log).values()) == Counter({"sent": 2, "deferred": 1})
    assert result.outcomes["not_sent"] == 2


def test_consecutive_failures_stop_the_run(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    for i in range(1, 5):
        smtp_sink.refuse(f"c{i}@example.co.jp")
    settings = configure(tmp_path, smtp_sink, [contact(i) for i in range(1, 8)],
                         mail={"max_consecutive_failures": 3})
    result, _, log = run(settings)
    assert result.exit_code == 3
    assert "3 recipients in a row failed" in result.stopped
    assert list(states(log).values()) == ["failed"] * 3
    assert result.outcomes["not_sent"] == 4 and smtp_sink.messages == []


def test_a_deferred_contact_comes_back_in_the_next_run(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.tempfail(times=3, at="RCPT", address="c1@example.co.jp")
    settings = configure(tmp_path, smtp_sink, [contact(1)])
    result, _, log = run(settings)
    assert result.exit_code == 1 and states(log) == {"c1@example.co.jp": "deferred"}
    result, _, log = run(settings)
    assert result.exit_code == 0 and [m.rcpt_tos[0] for m in smtp_sink.messages] == ["c1@example.co.jp"]
    assert sorted(r.state for r in log.rows()) == ["deferred", "sent"]


def test_rate_limits_and_rep_caps_hold_exactly_with_a_fake_clock(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    rows = [contact(i) for i in range(1, 31)] + [contact(i, OwnerId=CARTER) for i in range(31, 41)]
    settings = configure(tmp_path, smtp_sink, rows, rate={"per_minute": 6, "per_hour": 0, "per_rep_per_day": 12})
    clock = FakeClock(MONDAY_10_TOKYO)
    result, reporter, log = run(settings, clock)
    sent = sorted(log.rows(), key=lambda r: r.created_at)
    assert Counter(r.rep_id for r in sent) == {SATO: 12, CARTER: 10}
    reasons = Counter(p.reason.value for p, o in reporter.rows if o is None)
    assert reasons == {"rep_cap": 18}
    stamps = [r.created_at for r in sent]
    assert max(sum(1 for s in stamps if t <= s < t + timedelta(minutes=1)) for t in stamps) == 6
    # Reps interleave: Carter's notes do not wait behind all of Sato's.
    assert [r.rep_id for r in sent[:4]] == [SATO, CARTER, SATO, CARTER]
    # A later run the same day finds the caps full; the next day the rest come back.
    _, reporter, _ = run(settings, FakeClock(clock.now() + timedelta(hours=1)))
    assert Counter(p.reason.value for p, _ in reporter.rows) == {"already_sent": 22, "rep_cap": 18}


def test_outside_the_window_nothing_is_sent_and_wait_sleeps_until_it_opens(tmp_path: Path,
                                                                          smtp_sink: SmtpSink) -> None:
    settings = configure(tmp_path, smtp_sink, [contact(1)], rate={"window": "09:00-18:00", "weekdays": ["mon"]})
    sunday_night = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # Sunday 21:00 in Tokyo
    result, reporter, log = run(settings, FakeClock(sunday_night))
    assert result.window_opens == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert "it opens at 2026-11-23T09:00:00+09:00" in result.stopped
    assert smtp_sink.messages == [] and log.rows() == [] and reporter.rows == []
    clock = FakeClock(sunday_night)
    result, _, log = run(settings, clock, wait=True)
    assert clock.slept == [12 * 3600.0]
    assert len(smtp_sink.messages) == 1 and result.exit_code == 0


def test_outbox_transport_writes_eml_files(tmp_path: Path) -> None:
    settings = configure(tmp_path, None, [contact(1), contact(2)],
                         mail={"transport": "outbox", "outbox_dir": str(tmp_path / "out")})
    result, _, log = run(settings)
    assert result.exit_code == 0
    files = sorted((tmp_path / "out").glob("*.eml"))
    assert len(files) == 2 and set(states(log).values()) == {"sent"}
    assert b"From: =?utf-8?b?" in files[0].read_bytes()


# ---- as a real process: the CLI's exit codes, a kill in the middle, two runs at once -----------------


def cli(config: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REPSEND_", "SF_", "SMTP_"))}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "repsend", "dormant", "--as-of", str(AS_OF), "--config",
                             str(config), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, **kwargs)


def cli_config(tmp_path: Path, count: int) -> Path:
    export = write_export(tmp_path / "export", [contact(i) for i in range(1, count + 1)])
    return write_config(tmp_path, export, smtp={"security": "none"})


def test_cli_sends_and_reports_json(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = cli_config(tmp_path, 3)
    out, err = cli(config, "--json", env=smtp_sink.env()).communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["outcome"] for d in lines[:-1]] == ["sent"] * 3
    assert lines[0]["message_id"].endswith("@acme.example>") and lines[0]["smtp_code"] == 250
    summary = lines[-1]
    assert (summary["type"], summary["sent"], summary["dry_run"]) == ("summary", 3, False)
    assert len(smtp_sink.messages) == 3


def test_cli_refused_login_names_the_user_never_the_password(tmp_path: Path, make_smtp_sink: Any) -> None:
    sink = make_smtp_sink(tls="starttls", auth=("k.sato@acme.example", "right-password"))
    config = cli_config(tmp_path, 2)
    env = sink.env(username="k.sato@acme.example", password="Wr0ng-S3cret!")
    env["SMTP_SECURITY"] = "starttls"
    process = cli(config, env=env)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3
    assert "login refused for user k.sato@acme.example" in err and f"127.0.0.1:{sink.port}" in err
    assert "Wr0ng-S3cret!" not in out + err
    assert b"Wr0ng-S3cret!" not in (tmp_path / "repsend.db").read_bytes()
    assert "Traceback" not in err


def test_dry_run_writes_nothing(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = cli_config(tmp_path, 2)
    out, _ = cli(config, "--dry-run", env=smtp_sink.env()).communicate(timeout=60)
    assert "dry run: nothing was sent and nothing was written" in out
    assert not (tmp_path / "repsend.db").exists() and smtp_sink.messages == []
    assert smtp_sink.connections == 0
    # With a send log already there, the dry run reads it (already_sent) and leaves it as it was.
    cli(config, env=smtp_sink.env()).communicate(timeout=60)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("repsend.db*")}
    out, _ = cli(config, "--dry-run", "--json", env=smtp_sink.env()).communicate(timeout=60)
    assert [json.loads(line).get("reason") for line in out.splitlines()][:2] == ["already_sent"] * 2
    assert {p.name: p.read_bytes() for p in tmp_path.glob("repsend.db*")} == before


def test_killed_mid_send_then_run_again(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    hung = smtp_sink.hang(after=3, at="EOM")
    config = cli_config(tmp_path, 6)
    process = cli(config, env=smtp_sink.env())
    assert hung.wait(timeout=60), "the fourth mail never reached the server"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    again = cli(config, env=smtp_sink.env())
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "1 send(s) were interrupted" in err
    delivered = Counter(m.rcpt_tos[0] for m in smtp_sink.messages + smtp_sink.unanswered)
    assert set(delivered.values()) == {1} and len(delivered) == 6
    log = SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}")
    assert Counter(r.state for r in log.rows()) == {"sent": 5, "unknown": 1}
    [unknown] = [r for r in log.rows() if r.state == "unknown"]
    assert unknown.address == smtp_sink.unanswered[0].rcpt_tos[0]


def concurrent_runs(tmp_path: Path, sink: SmtpSink, env: dict[str, str]) -> tuple[list[int], Counter, Counter]:
    """Two runs of one campaign started at once: (exit codes, mails per address, outcomes in their JSON)."""
    config = cli_config(tmp_path, 40)
    processes = [cli(config, "--json", env={**sink.env(), **env}) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    outcomes = Counter(json.loads(line).get("outcome") for out in outputs for line in out.splitlines())
    return [p.returncode for p in processes], Counter(m.rcpt_tos[0] for m in sink.messages), outcomes


def test_two_runs_at_once_on_sqlite(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    codes, delivered, outcomes = concurrent_runs(tmp_path, smtp_sink, {})
    assert codes == [0, 0]
    assert len(delivered) == 40 and set(delivered.values()) == {1}, "every address exactly once"
    assert outcomes["sent"] == 40


def test_two_runs_at_once_on_postgresql(tmp_path: Path, smtp_sink: SmtpSink, postgres_url: str) -> None:
    codes, delivered, outcomes = concurrent_runs(tmp_path, smtp_sink, {"REPSEND_DATABASE_URL": postgres_url})
    assert codes == [0, 0]
    assert len(delivered) == 40 and set(delivered.values()) == {1}, "every address exactly once"
    assert outcomes["sent"] == 40


def test_the_send_log_as_a_manager_reads_it(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    from typer.testing import CliRunner

    from repsend.cli import app

    smtp_sink.refuse("c2@example.co.jp")
    config = cli_config(tmp_path, 3)
    empty = CliRunner().invoke(app, ["log", "--config", str(config)])
    assert empty.exit_code == 0 and "no send log" in empty.stderr
    assert not (tmp_path / "repsend.db").exists()
    cli(config, env=smtp_sink.env()).communicate(timeout=60)
    table = CliRunner().invoke(app, ["log", "--config", str(config)])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:7] == ["when", "campaign", "from", "to", "state", "now", "code"]
    assert "3 attempts for 3 addresses: 1 failed, 2 sent" in table.stdout
    assert lines[-1].split() == ["rep", "k.sato@acme.example", "2", "1", "0", "0"]  # sent, failed, deferred, unknown
    failed = CliRunner().invoke(app, ["log", "--state", "failed", "--json", "--config", str(config)])
    records = [json.loads(line) for line in failed.stdout.splitlines()]
    assert [(r["address"], r["state"], r["smtp_code"]) for r in records[:-1]] == [("c2@example.co.jp", "failed", 550)]
    assert records[-1] == {"type": "summary", "attempts": 1, "states": {"failed": 1}, "addresses": 1,
                           "now": {"failed": 1}, "campaigns": {"dormant": {"failed": 1}},
                           "reps": {"k.sato@acme.example": {"failed": 1}}}
    later = CliRunner().invoke(app, ["log", "--since", "2099-01-01", "--config", str(config)])
    assert "no send attempts match" in later.stdout


def test_a_malformed_export_stops_a_real_run_before_any_mail(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = cli_config(tmp_path, 3)
    contacts = tmp_path / "export" / "Contact.csv"
    contacts.write_text(contacts.read_text(encoding="utf-8").replace('"false"', '"nein"', 1), encoding="utf-8")
    process = cli(config, env=smtp_sink.env())
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"{contacts}:2: HasOptedOutOfEmail: 'nein' is not a boolean" in err and "Traceback" not in err
    assert smtp_sink.messages == [] and smtp_sink.connections == 0
    log = SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}")
    assert log.rows() == []
    [run_row] = log.runs()
    assert run_row.exit_code == 2 and run_row.finished_at is not None


def test_no_mail_server_configured_is_a_config_error_that_writes_nothing(tmp_path: Path) -> None:
    process = cli(cli_config(tmp_path, 2))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "no SMTP server: set [smtp] host in the config file or SMTP_HOST" in err
    assert not (tmp_path / "repsend.db").exists()


def test_sigterm_ends_the_run_between_two_mails(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """A scheduler stopping the job: the pace's wait ends at once, the rest wait for the next run, and the
    run says it did not finish (exit 143)."""

    class TermOnSecondWait(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if len(self.slept) == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    settings = configure(tmp_path, smtp_sink, [contact(i) for i in range(1, 6)], rate={"per_minute": 60})
    before = signal.getsignal(signal.SIGTERM)
    result, reporter, log = run(settings, TermOnSecondWait(MONDAY_10_TOKYO))
    assert signal.getsignal(signal.SIGTERM) is before, "the handler is put back"
    assert result.stopped == "stopped by SIGTERM" and result.exit_code == 143
    assert len(smtp_sink.messages) == 2  # the third mail's wait was cut short: it did not go out
    assert Counter(states(log).values()) == {"sent": 2}
    assert [o.state for _, o in reporter.rows] == ["sent", "sent", "not_sent", "not_sent", "not_sent"]
    assert log.runs()[0].exit_code == 143
    _, _, log = run(settings)
    assert len(smtp_sink.messages) == 5 and Counter(states(log).values()) == {"sent": 5}


class CountingSource:
    """The export's source, counting the contacts the run has pulled from it so far."""

    def __init__(self, settings: Settings) -> None:
        self.inner = open_source(settings)
        self.notes = self.inner.notes
        self.pulled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def contacts(self) -> Any:
        for contact_ in self.inner.contacts():
            self.pulled += 1
            yield contact_


def test_the_first_mail_leaves_before_the_selection_is_done(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """A run at a human pace lasts hours: the first mail must not wait for every contact to be decided."""
    rows = [contact(1, Email=""), contact(2)] + [contact(i) for i in range(3, 61)]
    settings = configure(tmp_path, smtp_sink, rows)
    source = CountingSource(settings)
    pulled_at_first_mail: list[int] = []
    clock = FakeClock(MONDAY_10_TOKYO)
    transport = open_transport(settings, clock)
    real_send = transport.send

    def send(*args: Any) -> Any:
        pulled_at_first_mail.append(source.pulled)
        return real_send(*args)

    transport.send = send  # type: ignore[method-assign]
    log = SendLog.open(settings.database_url)
    result = send_run(settings, source, RunOptions(AS_OF, "dormant", "dormant"), log=log,  # type: ignore[arg-type]
                      open_transport=lambda: transport, clock=clock, reporter=Collect())
    assert result.exit_code == 0 and len(smtp_sink.messages) == 59
    assert pulled_at_first_mail[0] == 2  # the second contact is the first send: it went out at once
    assert pulled_at_first_mail == sorted(pulled_at_first_mail) and pulled_at_first_mail[-1] == 60


def test_mails_wait_in_queues_per_rep_and_only_what_the_pace_holds_back(tmp_path: Path, smtp_sink: SmtpSink,
                                                                         monkeypatch: Any) -> None:
    """Memory grows with the mails the pace holds back (at most the reps' caps), not with the org; and
    while they wait, every rep takes its turn."""
    from repsend import sending

    reps = [SATO, CARTER]
    rows = [contact(i, OwnerId=reps[i % 2], MailingCountry="United States" if i % 2 else "Japan", FirstName="Ann")
            for i in range(1, 201)]
    settings = configure(tmp_path, smtp_sink, rows, rate={"per_minute": 2, "per_hour": 0, "per_rep_per_day": 3})
    longest: list[int] = []
    put = sending.RepQueues.put

    def counting_put(self: Any, decision: Decision) -> None:
        put(self, decision)
        longest.append(len(self))

    monkeypatch.setattr(sending.RepQueues, "put", counting_put)
    result, reporter, log = run(settings)
    assert result.exit_code == 0 and len(smtp_sink.messages) == 6
    assert max(longest) <= 6  # two reps, three a day each: never more than their caps waiting
    sent = sorted(log.rows(), key=lambda r: r.created_at)
    assert [r.rep_id for r in sent] == [CARTER, SATO, CARTER, SATO, CARTER, SATO]
    assert Counter(d.reason.value for d, o in reporter.rows if o is None) == {"rep_cap": 194}


def test_a_real_runs_json_lines_are_what_json_dumps_writes(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """The writer makes a real run's lines without json.dumps where it can (every skip): byte for byte the
    line json.dumps writes, with "outcome": null for a skip and the mail's outcome for a send."""
    rows = [contact(1), contact(2, HasOptedOutOfEmail="true"), contact(3, Email=""), contact(4, OwnerId=""),
            contact(5, LastActivityDate="2026-11-01"), contact(6, FirstName="", MailingCountry="United States")]
    export = write_export(tmp_path / "export", rows)
    config = write_config(tmp_path, export, smtp={"security": "none"})
    out, err = cli(config, "--json", env=smtp_sink.env()).communicate(timeout=60)
    lines = out.splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    assert [r.get("outcome", "summary") for r in records] == ["sent", None, None, None, None, None, "summary"]
    assert [r.get("reason") for r in records[:-1]] == ["dormant", "opted_out", "no_email", "no_owner",
                                                       "recent_activity", "missing_field"]
    assert lines == [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
