"""A nightly job always says what went wrong (issue 12): through the CLI, on a real loopback SMTP server and
a real SQLite send log, with real processes where a signal is the point.

Every non-zero exit ends with one line on stderr (what failed, the counts, what to do next); ``--json``
always ends with a summary line; the run row keeps the exit code the process returned; a run killed with
SIGKILL is closed by the next one; SIGTERM with mails unsent is exit 143; ``--wait`` says when it wakes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from typer.testing import CliRunner

from repsend import cli
from repsend.clock import FakeClock
from repsend.sendlog import Run, SendLog
from tests.helpers import contact, write_config, write_export
from tests.smtp_server import SmtpSink

AS_OF = "2026-11-23"
MONDAY_10_TOKYO = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
SUNDAY_21_TOKYO = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
runner = CliRunner()


def configure(tmp_path: Path, count: int, **sections: dict[str, Any]) -> Path:
    export = write_export(tmp_path / "export", [contact(i) for i in range(1, count + 1)], roles=[])
    # A hang is bounded by the SMTP timeout: half a second, not the default 30.
    sections.setdefault("smtp", {}).update({"security": "none", "timeout": 0.5, "helo_name": "mail.acme.example"})
    return write_config(tmp_path, export, **sections)


def dormant(config: Path, *args: str, env: dict[str, str] | None = None, clock: FakeClock | None = None,
            monkeypatch: pytest.MonkeyPatch | None = None) -> Any:
    """``repsend dormant`` through the CLI, in this process, on an injected clock."""
    if clock is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(cli, "make_clock", lambda: clock)
    return runner.invoke(cli.app, ["dormant", "--as-of", AS_OF, "--config", str(config), *args], env=env)


def process(config: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """``repsend dormant`` as a real process (the system clock, real signals)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REPSEND_", "SF_", "SMTP_"))}
    full_env.update(env or {})
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "repsend", "dormant", "--as-of", AS_OF, "--config", str(config),
                             *args], stderr=subprocess.PIPE, text=True, env=full_env, **kwargs)


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def runs(tmp_path: Path) -> list[Run]:
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        return log.runs()


def attempts(tmp_path: Path) -> dict[str, str]:
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        return {row.address: row.state for row in log.rows()}


def last_line(stderr: str) -> str:
    return stderr.rstrip("\n").splitlines()[-1]


# -- the case of the issue: 550, 451, then a server that hangs ----------------------------------------------


def test_550_451_and_a_hang_exit_1_with_a_line_that_says_what_happened(tmp_path: Path, smtp_sink: SmtpSink,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    smtp_sink.refuse("c2@example.co.jp")
    smtp_sink.tempfail(times=3, at="RCPT", address="c3@example.co.jp")  # every retry of the run
    smtp_sink.hang(at="EOM", address="c4@example.co.jp")  # the message is in, the reply never comes
    config = configure(tmp_path, 4)
    result = dormant(config, "--json", env=smtp_sink.env(), clock=FakeClock(MONDAY_10_TOKYO), monkeypatch=monkeypatch)
    assert result.exit_code == 1, result.output
    assert last_line(result.stderr) == (
        "repsend: exit 1: some recipients were not mailed; 1 sent, 1 failed, 1 deferred, 1 unknown; "
        "next: the 1 deferred go out with the next run; "
        "the 1 failed were refused for good: repsend log --state failed; "
        "the 1 unknown may have arrived and are never sent again automatically: repsend log --state unknown")
    assert len(result.stderr.splitlines()) == 1
    lines = records(result.stdout)
    assert [line.get("outcome") for line in lines[:-1]] == ["sent", "failed", "deferred", "unknown"]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["exit_code"] == 1
    assert [summary[k] for k in ("sent", "failed", "deferred", "unknown", "not_sent")] == [1, 1, 1, 1, 0]
    [run] = runs(tmp_path)
    assert (run.exit_code, run.sent, run.failed, run.deferred, run.unknown) == (1, 1, 1, 1, 1)
    assert run.finished_at is not None and run.id == summary["run_id"]


# -- --json always ends with a summary ------------------------------------------------------------------------


def test_outside_the_window_json_still_ends_with_a_summary(tmp_path: Path, smtp_sink: SmtpSink,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = configure(tmp_path, 2, rate={"window": "09:00-18:00", "weekdays": ["mon"]})
    result = dormant(config, "--json", env=smtp_sink.env(), clock=FakeClock(SUNDAY_21_TOKYO), monkeypatch=monkeypatch)
    assert result.exit_code == 0
    [summary] = records(result.stdout)
    assert summary["type"] == "summary" and summary["exit_code"] == 0 and summary["sent"] == 0
    assert summary["window_opens"] == "2026-11-23T09:00:00+09:00" and summary["run_id"] is None
    assert "outside the send window" in summary["stopped"]
    assert "repsend: nothing sent: outside the send window" in result.stderr
    assert smtp_sink.connections == 0 and runs(tmp_path) == []


def test_nothing_to_send_ends_with_a_summary_and_a_run_row(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    export = write_export(tmp_path / "export", [contact(1, HasOptedOutOfEmail="true")], roles=[])
    config = write_config(tmp_path, export, smtp={"security": "none", "helo_name": "mail.acme.example"})
    result = dormant(config, "--json", env=smtp_sink.env())
    assert result.exit_code == 0 and result.stderr == ""
    decision, summary = records(result.stdout)
    assert decision["reason"] == "opted_out"
    assert (summary["type"], summary["considered"], summary["sent"], summary["exit_code"]) == ("summary", 1, 0, 0)
    [run] = runs(tmp_path)
    assert (run.exit_code, run.considered, run.skipped) == (0, 1, 1)


def test_an_error_inside_the_run_ends_json_with_a_summary_and_is_the_run_rows_code(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = configure(tmp_path, 2)
    result = dormant(config, "--json", "--template", "nope", env=smtp_sink.env())
    assert result.exit_code == 2
    error, exit_line = result.stderr.splitlines()
    assert error.startswith("repsend: ") and "nope" in error
    assert exit_line == ("repsend: exit 2: the run stopped on the error above; 0 sent, 0 failed, 0 deferred, "
                         "0 unknown; next: fix what the error names and run again")
    [summary] = records(result.stdout)
    assert summary["exit_code"] == 2 and "nope" in summary["stopped"] and summary["run_id"]
    [run] = runs(tmp_path)
    assert run.exit_code == 2 and run.finished_at is not None
    assert smtp_sink.connections == 0


def test_an_error_before_the_run_ends_json_with_a_summary(tmp_path: Path) -> None:
    config = configure(tmp_path, 2)  # no SMTP host anywhere
    result = dormant(config, "--json")
    assert result.exit_code == 2
    error, exit_line = result.stderr.splitlines()
    assert "no SMTP server" in error
    assert exit_line == ("repsend: exit 2: the run did not start: the error above; 0 sent, 0 failed, 0 deferred, "
                         "0 unknown; next: fix what the error names and run again")
    [summary] = records(result.stdout)
    assert (summary["type"], summary["exit_code"], summary["run_id"], summary["sent"]) == ("summary", 2, None, 0)
    assert "no SMTP server" in summary["stopped"]
    assert not (tmp_path / "repsend.db").exists()


# -- a run that fails before its first mail leaves writes no attempt --------------------------------------


@pytest.fixture
def unreachable(request: pytest.FixtureRequest, make_smtp_sink: Any, refused_port: int) -> tuple[dict[str, str], str]:
    """SMTP settings of a server the run cannot use, and the words the error has for it."""
    if request.param == "refused":
        env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(refused_port), "SMTP_SECURITY": "none"}
        return env, f"127.0.0.1:{refused_port}: cannot connect"
    if request.param == "unknown CA":
        sink = make_smtp_sink(tls="starttls", ca=trustme.CA())  # its certificate is from a CA nobody trusts
        env = sink.env()
        del env["SMTP_CA_FILE"]
        return env, "TLS certificate verification failed"
    sink = make_smtp_sink(tls="starttls", auth=("k.sato@acme.example", "right-password"))
    return sink.env(username="k.sato@acme.example", password="wrong-password"), "login refused for user k.sato"


@pytest.mark.parametrize("unreachable", ["refused", "unknown CA", "wrong password"], indirect=True)
def test_a_run_that_cannot_use_its_server_writes_no_attempt(tmp_path: Path, unreachable: tuple[dict[str, str], str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env, words = unreachable
    config = configure(tmp_path, 2)
    result = dormant(config, "--json", env=env, clock=FakeClock(MONDAY_10_TOKYO), monkeypatch=monkeypatch)
    assert result.exit_code == 3
    error, exit_line = result.stderr.splitlines()
    assert words in error and "wrong-password" not in result.stderr + result.stdout
    assert exit_line == ("repsend: exit 3: the run stopped on the error above; 0 sent, 0 failed, 0 deferred, "
                         "0 unknown, 2 not sent; next: fix what the error names (or wait until that service is back) "
                         "and run again; the 2 not sent go out with the next run")
    assert [line.get("outcome") for line in records(result.stdout)] == ["not_sent", "not_sent", None]
    assert attempts(tmp_path) == {}, "no row for a contact never tried"
    [run] = runs(tmp_path)
    assert (run.exit_code, run.sent, run.deferred) == (3, 0, 0)


# -- a full disk ---------------------------------------------------------------------------------------------


def test_a_full_disk_stops_the_run_with_exit_3_in_the_run_row(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = configure(tmp_path, 3)
    with open("/dev/full", "w") as full:  # every write: ENOSPC
        proc = process(config, "--json", env=smtp_sink.env(), stdout=full)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "Exception ignored" not in err
    error, exit_line = err.splitlines()
    assert error == ("repsend: cannot write the output (stdout): No space left on device; "
                     "what was sent is in the send log")
    assert exit_line.startswith("repsend: exit 3: the run stopped on the error above; 1 sent, 0 failed")
    assert len(smtp_sink.messages) == 1  # the first mail's line could not be written: nothing more went out
    [run] = runs(tmp_path)
    assert (run.exit_code, run.sent) == (3, 1)


# -- SIGKILL: the next run closes what it left open ------------------------------------------------------------


def test_a_run_killed_with_sigkill_is_closed_by_the_next_and_said_once(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    hung = smtp_sink.hang(after=2, at="EOM")
    config = configure(tmp_path, 4, smtp={"timeout": 30.0})  # the hang lasts until the kill
    killed = process(config, env=smtp_sink.env())
    assert hung.wait(timeout=60), "the third mail never reached the server"
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    [open_run] = runs(tmp_path)
    assert open_run.finished_at is None and open_run.pid == killed.pid
    again = dormant(config, env=smtp_sink.env())  # the next run, here: only the killed one needs a process
    assert again.exit_code == 0, again.output
    [closed_note] = [line for line in again.stderr.splitlines() if "ended without finishing" in line]
    assert closed_note.startswith(f"repsend: note: run {open_run.id} (started ")
    assert f"pid {killed.pid} on {socket.gethostname()}" in closed_note
    assert closed_note.endswith("closed in the send log with what its attempts show: 2 sent, 0 failed, "
                                "0 deferred, 1 unknown")
    first, second = sorted(runs(tmp_path), key=lambda r: r.started_at)
    assert (first.sent, first.unknown, first.exit_code) == (2, 1, None)
    assert first.finished_at is not None and first.started_at <= first.finished_at <= second.started_at
    assert (second.sent, second.exit_code) == (1, 0)
    assert "ended without finishing" not in dormant(config, env=smtp_sink.env()).stderr, "said once"


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres_url")


def test_open_runs_are_closed_only_when_their_process_is_gone(log_url: str) -> None:
    t0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    here = socket.gethostname()
    with SendLog.open(log_url) as log:
        log.start_run("alive-here", "dormant", t0, here, os.getpid())
        log.start_run("alive-elsewhere", "dormant", t0, "other-host", 1)
        log.start_run("silent-elsewhere", "dormant", t0 - timedelta(hours=30), "other-host", 1)
        log.start_run("finished", "dormant", t0, here, 999_999_999)
        log.finish_run("finished", t0, {"sent": 1}, 0)
        row = log.claim(run_id="silent-elsewhere", campaign="dormant", contact_id="c1", address="a@example.jp",
                        rep_id="r", rep_email="r@acme.example", subject="s", message_id="<m>", template="t",
                        language="ja", now=t0 - timedelta(hours=29))
        assert row is not None
        log.finish(row, "sent", t0 - timedelta(hours=29), 250, "ok")
        [closed] = log.close_dead_runs(t0, here)
        assert (closed.id, closed.sent, closed.exit_code) == ("silent-elsewhere", 1, None)
        assert closed.finished_at == t0 - timedelta(hours=29)  # the last thing known of it
        assert {r.id: r.finished_at is None for r in log.runs()} == {
            "alive-here": True, "alive-elsewhere": True, "silent-elsewhere": False, "finished": False}
        assert log.close_dead_runs(t0, here) == []


# -- SIGTERM: exit 143 when mails are left ---------------------------------------------------------------------


def test_sigterm_with_mails_unsent_exits_143_and_says_so(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = configure(tmp_path, 4, rate={"per_minute": 6})  # 10 s between mails: the kill lands in a wait
    proc = process(config, "--json", env=smtp_sink.env())
    assert smtp_sink.wait_for_messages(1, timeout=60)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=5)  # the wait ends at once, not after its 10 s
    assert proc.returncode == 143, err
    assert last_line(err) == ("repsend: exit 143: stopped by SIGTERM; 1 sent, 0 failed, 0 deferred, 0 unknown, "
                              "3 not sent; next: run again; the 3 not sent go out with the next run")
    lines = records(out)
    assert [line["outcome"] for line in lines[:-1]] == ["sent", "not_sent", "not_sent", "not_sent"]
    assert lines[-1]["exit_code"] == 143 and lines[-1]["stopped"] == "stopped by SIGTERM"
    [run] = runs(tmp_path)
    assert (run.exit_code, run.sent) == (143, 1)
    assert len(smtp_sink.messages) == 1


# -- --wait -------------------------------------------------------------------------------------------------------


def test_wait_says_when_it_wakes_in_the_rate_time_zone(tmp_path: Path, smtp_sink: SmtpSink,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = configure(tmp_path, 1, rate={"window": "09:00-18:00", "weekdays": ["mon"]})
    clock = FakeClock(SUNDAY_21_TOKYO)
    result = dormant(config, "--wait", env=smtp_sink.env(), clock=clock, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.stderr == ("repsend: note: outside the send window (09:00-18:00 mon Asia/Tokyo): waiting until "
                             "Mon 2026-11-23 09:00 Asia/Tokyo (in 12 h 00 min)\n")
    assert clock.slept == [12 * 3600.0] and len(smtp_sink.messages) == 1


def test_sigterm_during_the_wait_exits_143_with_a_line(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    tokyo_today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    later = (tokyo_today + timedelta(days=2)).strftime("%a").lower()  # not today, even past midnight
    config = configure(tmp_path, 2, rate={"weekdays": [later]})
    proc = process(config, "--json", "--wait", env=smtp_sink.env())
    assert proc.stderr is not None
    waiting = proc.stderr.readline()
    assert waiting.startswith("repsend: note: outside the send window") and "waiting until" in waiting
    opens = date.fromisoformat(waiting.split("waiting until ")[1].split()[1])
    assert opens == tokyo_today + timedelta(days=2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143
    assert err.splitlines() == [
        f"repsend: exit 143: stopped by SIGTERM while waiting for the send window (it opens {opens:%a %Y-%m-%d} "
        "00:00 Asia/Tokyo); 0 sent, 0 failed, 0 deferred, 0 unknown; next: run again"]
    [summary] = records(out)
    assert summary["exit_code"] == 143 and summary["run_id"] is None and summary["sent"] == 0
    assert smtp_sink.connections == 0 and runs(tmp_path) == []


def test_failures_in_a_row_stop_the_run_with_their_own_line_then_the_exit_line(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    for i in (1, 2):
        smtp_sink.refuse(f"c{i}@example.co.jp")
    config = configure(tmp_path, 4, mail={"max_consecutive_failures": 2})
    result = dormant(config, env=smtp_sink.env())
    assert result.exit_code == 3
    detail, exit_line = result.stderr.splitlines()
    assert detail.startswith("repsend: 2 recipients in a row failed (last: 550 5.1.1 Mailbox unavailable")
    assert exit_line == ("repsend: exit 3: the run stopped on the error above; 0 sent, 2 failed, 0 deferred, "
                         "0 unknown, 2 not sent; next: fix what the error names (or wait until that service is "
                         "back) and run again; the 2 not sent go out with the next run; the 2 failed were refused "
                         "for good: repsend log --state failed")
    assert f"run {runs(tmp_path)[0].id}: 0 sent, 2 failed, 2 not_sent" in result.stdout  # the table's last line
    assert runs(tmp_path)[0].exit_code == 3


def test_ctrl_c_is_exit_130_in_the_run_row_and_on_stderr(tmp_path: Path, smtp_sink: SmtpSink,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    class CtrlCInTheWait(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    config = configure(tmp_path, 3, rate={"per_minute": 6})
    result = dormant(config, "--json", env=smtp_sink.env(), clock=CtrlCInTheWait(MONDAY_10_TOKYO),
                     monkeypatch=monkeypatch)
    assert result.exit_code == 130
    assert last_line(result.stderr) == ("repsend: exit 130: interrupted (Ctrl-C); 1 sent, 0 failed, 0 deferred, "
                                        "0 unknown, 2 not sent; next: run again; the 2 not sent go out with the "
                                        "next run")
    assert records(result.stdout)[-1]["exit_code"] == 130
    assert (runs(tmp_path)[0].exit_code, attempts(tmp_path)) == (130, {"c1@example.co.jp": "sent"})
