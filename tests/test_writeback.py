"""Back to the SFA: each sent mail a Task, each opt-out HasOptedOutOfEmail, against simple-salesforce with
Salesforce's answers served by ``responses`` (``FakeOrg``), a real SMTP server on loopback and a real send
log; for a CSV org, Data Loader's files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from typer.testing import CliRunner

from repsend import writeback
from repsend.cli import app
from repsend.clock import FakeClock
from repsend.selection import RunOptions
from repsend.sending import RunResult, send_run
from repsend.sendlog import IN_FLIGHT, PENDING, REJECTED, SFA_OPT_OUT, TASK, WRITTEN, SendLog
from repsend.settings import Settings, load_settings
from repsend.sfa import open_source
from repsend.transport import open_transport
from tests.helpers import SATO, contact, write_config, write_export
from tests.sf_answers import INSTANCE, FakeOrg
from tests.smtp_server import SmtpSink
from tests.test_sending import Collect

LOGIN_ENV = {"SF_USERNAME": "integration@acme.example", "SF_PASSWORD": "Pa55-w0rd!Secret",
             "SF_SECURITY_TOKEN": "Tok3nXyZ987SeCrEt"}
AS_OF = date(2026, 11, 24)
# 01:00 on the 24th in Tokyo, still the 23rd in UTC: a Task's ActivityDate is the reps' day.
NIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
COMPOSITE = f"https://{INSTANCE}/services/data/v64.0/composite/sobjects"


@pytest.fixture
def org() -> Iterator[FakeOrg]:
    fake = FakeOrg()
    fake.add("User", Id=SATO, Name="佐藤 健", FirstName="健", LastName="佐藤", Email="k.sato@acme.example",
             IsActive=True, Signature="佐藤 健\n株式会社アクメ")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        fake.rsps = rsps  # type: ignore[attr-defined]
        yield fake


def add_contacts(org: FakeOrg, count: int, **fields: Any) -> list[dict[str, Any]]:
    rows = []
    for _ in range(count):
        n = len(org.tables["Contact"]) + 1
        account = org.add("Account", Name=f"株式会社サンプル{n}")
        rows.append(org.add("Contact", **{
            "FirstName": "花子", "LastName": f"山田{n}", "Email": f"c{n}@example.co.jp", "HasOptedOutOfEmail": False,
            "IsEmailBounced": False, "LastActivityDate": "2023-04-01", "CreatedDate": "2022-01-10T09:30:00.000+0000",
            "AccountId": account["Id"], "OwnerId": SATO, "MailingCountry": "Japan", **fields}))
    return rows


def sf_config(tmp_path: Path, **sfa: Any) -> Path:
    return write_config(tmp_path, sfa={"kind": "salesforce", **sfa}, smtp={"security": "none"})


def sf_settings(tmp_path: Path, sink: SmtpSink | None, **sfa: Any) -> Settings:
    return load_settings(sf_config(tmp_path, **sfa), env={**LOGIN_ENV, **(sink.env() if sink else {})})


def run(settings: Settings, clock: FakeClock | None = None) -> tuple[RunResult, SendLog]:
    clock = clock or FakeClock(NIGHT)
    log = SendLog.open(settings.database_url)
    source = open_source(settings)
    try:
        result = send_run(settings, source, RunOptions(AS_OF, "dormant", "dormant"), log=log,
                          open_transport=lambda: open_transport(settings, clock), clock=clock, reporter=Collect())
    finally:
        source.close()
    return result, log


def cli(config: Path, monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None) -> Any:
    for name, value in (env if env is not None else LOGIN_ENV).items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(app, [*args, "--config", str(config)])


def posts(org: FakeOrg) -> list[list[dict[str, Any]]]:
    return [records for method, records in org.writes if method == "POST"]


def tasks_per_contact(org: FakeOrg) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in org.tables["Task"].values():
        counts[task["WhoId"]] = counts.get(task["WhoId"], 0) + 1
    return counts


# -- a Task for every mail sent ----------------------------------------------------------------------


def test_450_sends_make_3_composite_calls_with_the_task_fields(tmp_path: Path, org: FakeOrg,
                                                               smtp_sink: SmtpSink) -> None:
    people = add_contacts(org, 450)
    result, log = run(sf_settings(tmp_path, smtp_sink))
    assert result.exit_code == 0 and result.outcomes["sent"] == 450 and len(smtp_sink.messages) == 450
    calls = posts(org)
    assert [len(records) for records in calls] == [200, 200, 50]
    assert result.synced is not None and result.synced.tasks["written"] == 450
    first = calls[0][0]
    sent = next(m for m in smtp_sink.messages if m.rcpt_tos[0] == people[0]["Email"]).message
    assert first == {
        "attributes": {"type": "Task"}, "WhoId": people[0]["Id"], "OwnerId": SATO,
        "Subject": f"Email: {sent['Subject']}", "Description": sent.get_content().replace("\r\n", "\n"),
        "ActivityDate": "2026-11-24", "Status": "Completed", "TaskSubtype": "Email",
    }
    assert "山田1様" in first["Description"] and "optout@acme.example" in first["Description"]
    assert tasks_per_contact(org) == {p["Id"]: 1 for p in people}
    # Each Task's Id is kept with its mail; the body is dropped once Salesforce has it.
    rows = log.sfa_writes(TASK)
    attempts = {a.id: a for a in log.rows()}
    assert len(rows) == 450 and {r.state for r in rows} == {WRITTEN}
    for row in rows:
        task = org.tables["Task"][row.sfa_id]
        assert task["WhoId"] == attempts[row.attempt_id].contact_id and row.error is None
        assert "Description" not in json.loads(row.payload)
    # Nothing is left to write: a sync makes no call.
    before = len(org.writes)
    source = open_source(sf_settings(tmp_path, None))
    assert writeback.write_back(log, source, NIGHT).tasks["written"] == 0  # type: ignore[arg-type]
    assert len(org.writes) == before
    source.close()
    log.close()


def test_a_refused_task_keeps_its_error_and_sync_writes_it_once_accepted(
        tmp_path: Path, org: FakeOrg, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    people = add_contacts(org, 3)
    refused = people[1]["Id"]
    org.refuse = lambda method, record: (("FIELD_CUSTOM_VALIDATION_EXCEPTION", "担当者の承認が必要です")
                                         if record.get("WhoId") == refused else None)
    settings = sf_settings(tmp_path, smtp_sink)
    result, log = run(settings)
    assert result.exit_code == 0 and result.synced is not None and result.synced.rejected == 1
    rows = {r.address: r for r in log.sfa_writes(TASK)}
    held = rows[people[1]["Email"]]
    assert held.state == REJECTED and held.error == "FIELD_CUSTOM_VALIDATION_EXCEPTION: 担当者の承認が必要です"
    assert "Description" in json.loads(held.payload)  # the body waits for the retry
    assert tasks_per_contact(org) == {people[0]["Id"]: 1, people[2]["Id"]: 1}
    log.close()
    # Still refused: sync says so, exit 1, and keeps the error.
    out = cli(settings.config_path, monkeypatch, "sync")
    assert out.exit_code == 1, out.output
    assert "担当者の承認が必要です" in out.output and "1 rejected" in out.output
    # Accepted now: written once, the error gone; a second sync sends nothing.
    org.refuse = None
    out = cli(settings.config_path, monkeypatch, "sync")
    assert out.exit_code == 0, out.output
    assert "Tasks: 1 written" in out.output
    assert tasks_per_contact(org) == {p["Id"]: 1 for p in people}
    with SendLog.open(settings.database_url) as log:
        row = next(r for r in log.sfa_writes(TASK) if r.address == people[1]["Email"])
        assert (row.state, row.error, row.tries) == (WRITTEN, None, 3)
    calls = len(org.writes)
    assert cli(settings.config_path, monkeypatch, "sync").exit_code == 0
    assert len(org.writes) == calls


class Killed(BaseException):
    """The process dies (a kill): nothing after this point runs."""


@pytest.mark.parametrize("reached", [True, False], ids=["created-then-killed", "call-lost"])
def test_a_run_killed_halfway_leaves_nothing_written_twice(
        tmp_path: Path, org: FakeOrg, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, reached: bool) -> None:
    """Two records a call: the first call settled, the second made (Salesforce created its Tasks, or the
    call was lost on the way) and then the run died before settling it, the third never made."""
    people = add_contacts(org, 5)
    monkeypatch.setattr(writeback, "BATCH", 2)
    settings = sf_settings(tmp_path, smtp_sink)
    real_settle = SendLog.settle
    calls = []

    def settle(self: SendLog, outcomes: Any, now: datetime) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Killed()
        real_settle(self, outcomes, now)

    if reached:
        monkeypatch.setattr(SendLog, "settle", settle)
    else:
        def arm(method: str, record: dict[str, Any]) -> None:
            """The first call goes through; the one after it is lost on the way."""
            if not org.failures:
                org.failures.append(("composite/sobjects", requests.ConnectionError("connection reset by peer")))

        org.refuse = arm  # type: ignore[assignment]
    if reached:
        with pytest.raises(Killed):
            run(settings)
    else:
        result, log = run(settings)
        assert result.exit_code == 3 and "cannot reach Salesforce" in result.sync_error
        log.close()
        org.refuse = None
    monkeypatch.undo()
    monkeypatch.setattr(writeback, "BATCH", 2)
    with SendLog.open(settings.database_url) as log:
        assert [r.state for r in log.sfa_writes(TASK)] == [WRITTEN, WRITTEN, IN_FLIGHT, IN_FLIGHT, PENDING]
    assert sum(tasks_per_contact(org).values()) == (4 if reached else 2)
    org.queries.clear()
    out = cli(settings.config_path, monkeypatch, "sync")
    assert out.exit_code == 0, out.output
    # Exactly one Task per mail: the ones Salesforce had are looked up (one query), the rest written.
    assert tasks_per_contact(org) == {p["Id"]: 1 for p in people}
    look_ups = [q for q in org.queries if q.startswith("SELECT Id, WhoId, Subject FROM Task")]
    assert look_ups == [
        f"SELECT Id, WhoId, Subject FROM Task WHERE WhoId IN ('{people[2]['Id']}', '{people[3]['Id']}') AND "
        "TaskSubtype = 'Email' AND ActivityDate = 2026-11-24"]
    assert ("2 found already written" if reached else "0 found already written") in out.output
    with SendLog.open(settings.database_url) as log:
        rows = log.sfa_writes(TASK)
        assert [r.state for r in rows] == [WRITTEN] * 5
        assert len({r.sfa_id for r in rows}) == 5


# -- opt-outs -----------------------------------------------------------------------------------------


def test_an_opt_out_sets_every_contact_and_lead_with_the_address(tmp_path: Path, org: FakeOrg,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first, other = add_contacts(org, 2)
    same = add_contacts(org, 1, Email="Hanako.Yamada@Example.co.jp")[0]
    again = add_contacts(org, 1, Email="hanako.YAMADA@example.CO.JP")[0]
    lead = org.add("Lead", LastName="山田", Company="サンプル", Email="HANAKO.YAMADA@example.co.jp",
                   HasOptedOutOfEmail=False, IsConverted=False)
    converted = org.add("Lead", LastName="山田", Company="サンプル", Email="hanako.yamada@example.co.jp",
                        HasOptedOutOfEmail=False, IsConverted=True)
    config = sf_config(tmp_path)
    assert cli(config, monkeypatch, "optout", "hanako.yamada@example.co.jp", first["Email"]).exit_code == 0
    settings = load_settings(config, env=LOGIN_ENV)
    with SendLog.open(settings.database_url) as log:  # a bounce is not an opt-out: nothing for it
        log.suppress(other["Email"], "bounce", "inbox: bounces.mbox#1", NIGHT)
    org.queries.clear()
    out = cli(config, monkeypatch, "sync")
    assert out.exit_code == 0, out.output
    patches = [records for method, records in org.writes if method == "PATCH"]
    assert len(patches) == 1
    assert sorted((r["attributes"]["type"], r["id"]) for r in patches[0]) == sorted(
        [("Contact", first["Id"]), ("Contact", same["Id"]), ("Contact", again["Id"]), ("Lead", lead["Id"])])
    assert all(r["HasOptedOutOfEmail"] is True for r in patches[0])
    assert org.tables["Contact"][other["Id"]]["HasOptedOutOfEmail"] is False
    assert org.tables["Lead"][converted["Id"]]["HasOptedOutOfEmail"] is False
    # Found by Email IN (...) a page of addresses at a time, never one query per address.
    finds = [q for q in org.queries if "WHERE Email IN" in q]
    assert len(finds) == 2 and all("'hanako.yamada@example.co.jp'" in q for q in finds)
    assert "4 record(s) set HasOptedOutOfEmail" in out.output
    with SendLog.open(settings.database_url) as log:
        rows = {r.address: r for r in log.sfa_writes(SFA_OPT_OUT)}
        assert set(rows) == {"hanako.yamada@example.co.jp", first["Email"]}
        assert set(rows["hanako.yamada@example.co.jp"].sfa_id.split()) == {same["Id"], again["Id"], lead["Id"]}
        assert {r.state for r in rows.values()} == {WRITTEN}
    # Done once: a second sync changes nothing.
    assert cli(config, monkeypatch, "sync").exit_code == 0
    assert len([m for m, _ in org.writes if m == "PATCH"]) == 1


# -- the CSV source: Data Loader's files -------------------------------------------------------------


def test_task_csv_parses_back_with_data_loaders_header(tmp_path: Path, smtp_sink: SmtpSink,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [contact(1), contact(2, Email="Taro.Suzuki@example.co.jp", LastName="鈴木"), contact(3)]
    export_dir = write_export(tmp_path / "export", rows)
    config = write_config(tmp_path, export_dir, sfa={"log_activity": True}, smtp={"security": "none"})
    settings = load_settings(config, env=smtp_sink.env())
    result, log = run(settings, FakeClock(NIGHT))
    assert result.outcomes["sent"] == 3 and result.synced is None  # nothing to write to: the files wait
    log.close()
    assert cli(config, monkeypatch, "optout", "taro.suzuki@example.co.jp", env={}).exit_code == 0
    out_dir = tmp_path / "dataloader"
    out = cli(config, monkeypatch, "sync", "--export", str(out_dir), env={})
    assert out.exit_code == 0, out.output
    raw = (out_dir / "Task.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf" + b'"WhoId","OwnerId","Subject","Description","ActivityDate","Status",'
                          b'"TaskSubtype"\r\n')
    tasks = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [t["WhoId"] for t in tasks] == [r["Id"] for r in rows]
    by_address = {m.rcpt_tos[0]: m.message for m in smtp_sink.messages}
    sent = by_address["c1@example.co.jp"]
    assert tasks[0] == {"WhoId": rows[0]["Id"], "OwnerId": SATO, "Subject": f"Email: {sent['Subject']}",
                        "Description": sent.get_content().replace("\r\n", "\n"), "ActivityDate": "2026-11-24",
                        "Status": "Completed", "TaskSubtype": "Email"}
    assert "\n" in tasks[0]["Description"] and "山田1様" in tasks[0]["Description"]
    contacts = list(csv.reader(io.StringIO((out_dir / "Contact.csv").read_text(encoding="utf-8-sig"), newline="")))
    assert contacts == [["Id", "HasOptedOutOfEmail"], [rows[1]["Id"], "true"]]
    # Remembered: a second export writes only what is new (nothing); --all writes everything again.
    assert cli(config, monkeypatch, "sync", "--export", str(out_dir), env={}).exit_code == 0
    assert len(list(csv.reader(io.StringIO((out_dir / "Task.csv").read_text(encoding="utf-8-sig"))))) == 1
    assert cli(config, monkeypatch, "sync", "--export", str(out_dir), "--all", env={}).exit_code == 0
    assert len(list(csv.DictReader(io.StringIO((out_dir / "Task.csv").read_text(encoding="utf-8-sig"),
                                               newline="")))) == 3
    assert len(list(csv.reader(io.StringIO((out_dir / "Contact.csv").read_text(encoding="utf-8-sig"))))) == 2
    # Never over the export repsend reads.
    out = cli(config, monkeypatch, "sync", "--export", str(export_dir), env={})
    assert out.exit_code == 2 and "would be overwritten" in out.output


def test_sync_needs_a_place_to_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export_dir = write_export(tmp_path / "export", [contact(1)])
    off = write_config(tmp_path / "off", export_dir)
    out = cli(off, monkeypatch, "sync", env={})
    assert out.exit_code == 2 and "[sfa] log_activity is false" in out.output
    on = write_config(tmp_path / "on", export_dir, sfa={"log_activity": True})
    out = cli(on, monkeypatch, "sync", env={})
    assert out.exit_code == 2 and "--export DIR" in out.output
    assert cli(on, monkeypatch, "sync", "--all", env={}).exit_code == 2
    wrong = write_config(tmp_path / "wrong", export_dir, sfa={"log_activity": "yes"})
    out = cli(wrong, monkeypatch, "sync", env={})
    assert out.exit_code == 2 and "log_activity" in out.output


def test_log_activity_is_on_for_salesforce_and_off_for_csv(tmp_path: Path) -> None:
    assert sf_settings(tmp_path / "sf", None).sfa.writes_back is True
    assert sf_settings(tmp_path / "sf-off", None, log_activity=False).sfa.writes_back is False
    export_dir = write_export(tmp_path / "export", [contact(1)])
    assert load_settings(write_config(tmp_path / "csv", export_dir)).sfa.writes_back is False


def test_a_dry_run_writes_nothing_to_salesforce(tmp_path: Path, org: FakeOrg, smtp_sink: SmtpSink,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    add_contacts(org, 3)
    settings = sf_settings(tmp_path, smtp_sink)
    with SendLog.open(settings.database_url) as log:  # an opt-out waiting to go to Salesforce
        log.suppress("c1@example.co.jp", "opt_out", "optout command", NIGHT)
    out = cli(settings.config_path, monkeypatch, "dormant", "--dry-run", env={**LOGIN_ENV, **smtp_sink.env()})
    assert out.exit_code == 0, out.output
    posted = [c.request for c in org.rsps.calls  # type: ignore[attr-defined]
              if c.request.method in ("POST", "PATCH") and INSTANCE in (c.request.url or "")]
    assert posted == [] and org.writes == [] and org.tables["Task"] == {}
    assert smtp_sink.messages == []
    with SendLog.open(settings.database_url) as log:
        assert log.sfa_writes() == []


def test_a_run_stopped_by_sigterm_writes_the_tasks_of_what_it_sent(tmp_path: Path, org: FakeOrg,
                                                                    smtp_sink: SmtpSink) -> None:
    import os
    import signal

    add_contacts(org, 4)

    class StopAfterTwo(Collect):
        def decision(self, decision: Any, outcome: Any) -> None:
            super().decision(decision, outcome)
            if sum(1 for _, o in self.rows if o is not None and o.state == "sent") == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # the scheduler stops the job: its handler ends the run

    settings = sf_settings(tmp_path, smtp_sink)
    clock = FakeClock(NIGHT)
    source = open_source(settings)
    with SendLog.open(settings.database_url) as log:
        result = send_run(settings, source, RunOptions(AS_OF, "dormant", "dormant"), log=log,
                          open_transport=lambda: open_transport(settings, clock), clock=clock, reporter=StopAfterTwo())
        assert result.stopped == "stopped by SIGTERM" and result.outcomes["sent"] == 2
        assert [r.state for r in log.sfa_writes(TASK)] == [WRITTEN, WRITTEN]
    source.close()
    assert len(org.tables["Task"]) == 2 and [len(r) for r in posts(org)] == [2]


def test_salesforce_failing_during_sync_is_exit_3_without_a_secret_and_loses_nothing(
        tmp_path: Path, org: FakeOrg, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.sf_answers import LIMIT_EXCEEDED, SESSION

    people = add_contacts(org, 2)
    org.failures.append(("composite/sobjects", LIMIT_EXCEEDED))
    settings = sf_settings(tmp_path, smtp_sink)
    result, log = run(settings)
    log.close()
    assert result.exit_code == 3 and "daily API request limit" in result.sync_error
    assert result.outcomes["sent"] == 2 and org.tables["Task"] == {}
    org.failures.append(("composite/sobjects", LIMIT_EXCEEDED))
    out = cli(settings.config_path, monkeypatch, "sync")
    assert out.exit_code == 3 and "daily API request limit" in out.output
    secrets = (LOGIN_ENV["SF_PASSWORD"], LOGIN_ENV["SF_SECURITY_TOKEN"], SESSION)
    assert all(secret not in out.output for secret in secrets)
    out = cli(settings.config_path, monkeypatch, "sync")
    assert out.exit_code == 0, out.output
    assert tasks_per_contact(org) == {p["Id"]: 1 for p in people}
