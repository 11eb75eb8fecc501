"""`repsend doctor`: a checklist of what a nightly run needs, each line ok, warn or fail with its fix, made
against real things (aiosmtpd with STARTTLS and AUTH, a CSV export, SQLite and PostgreSQL, simple-salesforce
answered by ``responses``), and never a mail sent or a row written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import responses
import sqlalchemy as sa
from typer.testing import CliRunner

from repsend import sendlog
from repsend.cli import app
from repsend.clock import FakeClock
from repsend.doctor import diagnose
from repsend.selection import RunOptions
from repsend.sendlog import SendLog, alembic_config
from tests.helpers import CARTER, REPS, contact, write_config, write_export
from tests.sf_answers import FakeOrg
from tests.test_salesforce import LOGIN_ENV, add_contact, add_rep

USER, PASSWORD = "repsend", "s3cret-pass"


def doctor(config: Path, env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["doctor", "--config", str(config), *args], env={**env, "REPSEND_CONFIG": ""})


def lines(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(status + " ")]


@pytest.fixture
def org(tmp_path: Path) -> Path:
    """An export: a Japanese contact of 佐藤 and a US contact of Carter, both dormant."""
    return write_export(tmp_path / "export", [contact(1), contact(2, OwnerId=CARTER, MailingCountry="United States",
                                                                  FirstName="Ann", LastName="Lee")], roles=[])


def working(tmp_path: Path, export: Path, **sections: Any) -> Path:
    mail = {"sender_domains": ["acme.example"], "envelope_from": "bounces@acme.example"}
    smtp = {"helo_name": "mail.acme.example"}  # this machine's own name may be "localhost"
    return write_config(tmp_path, export, mail={**mail, **sections.pop("mail", {})},
                        smtp={**smtp, **sections.pop("smtp", {})}, **sections)


def test_a_working_setup_is_all_ok_and_nothing_is_sent_or_written(tmp_path: Path, org: Path, make_smtp_sink) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    config = working(tmp_path, org)

    result = doctor(config, sink.env(USER, PASSWORD))

    assert result.exit_code == 0, result.output
    assert lines(result.output, "fail") == [] and lines(result.output, "warn") == []
    assert (f"127.0.0.1:{sink.port}: connected, STARTTLS, certificate verified, logged in as {USER}, "
            "EHLO mail.acme.example") in result.output
    assert "2 contacts read, 3 users; 2 would be mailed today" in result.output
    assert "every rep who would send has an address in acme.example" in result.output
    assert "dormant: en, ja render for a sample contact" in result.output
    assert "not there yet; the first real run creates it" in result.output
    assert result.output.splitlines()[-1].startswith("0 failed, 0 warning(s), ")
    # A session, never a mail: no MAIL FROM, and the send log was not created.
    assert sink.messages == [] and not any(c.startswith("MAIL") for c in sink.commands)
    assert "QUIT" in sink.commands
    assert not (tmp_path / "repsend.db").exists()
    assert PASSWORD not in result.output


def test_json_is_one_document_for_scripts(tmp_path: Path, org: Path, make_smtp_sink) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    result = doctor(working(tmp_path, org), sink.env(USER, "wrong"), "--json")

    document = json.loads(result.stdout)
    assert result.exit_code == 1
    assert document["ok"] is False and document["failed"] == 1
    smtp = [c for c in document["checks"] if c["area"] == "smtp"]
    assert smtp[0]["status"] == "fail" and "login refused for user repsend: 535" in smtp[0]["text"]
    assert smtp[0]["fix"] == "check SMTP_USERNAME / [smtp] username and SMTP_PASSWORD"
    assert {c["status"] for c in document["checks"] if c["area"] != "smtp"} == {"ok"}


def test_a_wrong_smtp_password_fails_its_line_only(tmp_path: Path, org: Path, make_smtp_sink) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    result = doctor(working(tmp_path, org), sink.env(USER, "wrong-" + PASSWORD))

    assert result.exit_code == 1
    assert [line.split()[1] for line in lines(result.output, "fail")] == ["smtp"]
    assert "login refused for user repsend" in result.output
    assert "fix: check SMTP_USERNAME / [smtp] username and SMTP_PASSWORD" in result.output
    assert "wrong-" + PASSWORD not in result.output
    assert sink.messages == []


def test_an_untrusted_certificate_fails_naming_ca_file(tmp_path: Path, org: Path, make_smtp_sink) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    env = sink.env(USER, PASSWORD)
    del env["SMTP_CA_FILE"]  # the server's private CA is not trusted

    result = doctor(working(tmp_path, org), env)

    assert result.exit_code == 1
    assert "TLS certificate verification failed" in lines(result.output, "fail")[0]
    assert "fix: for a private CA set [smtp] ca_file (or SMTP_CA_FILE)" in result.output
    assert not any(c.startswith("AUTH") for c in sink.commands)  # no password sent over an untrusted channel


def test_a_missing_template_language_fails_and_the_pass_waits_for_it(
    tmp_path: Path, org: Path, make_smtp_sink
) -> None:
    sink = make_smtp_sink()
    config = working(tmp_path, org, languages={"Japan": "ja", "France": "fr"})

    result = doctor(config, sink.env())

    assert result.exit_code == 1
    failed = lines(result.output, "fail")
    assert len(failed) == 1 and "dormant/fr.txt: template not found" in failed[0]
    assert "warn  sfa        not checked: the templates must load first" in result.output


def test_every_variant_of_a_template_is_rendered(tmp_path: Path, org: Path, make_smtp_sink) -> None:
    import shutil

    from tests.helpers import TEMPLATES

    sink = make_smtp_sink()
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    config = working(tmp_path, org, template={"dir": str(templates)})
    result = doctor(config, sink.env(), "--template", "dormant_ab")
    assert result.exit_code == 0, result.output
    assert "dormant_ab: en, ja (variants a, b) render for a sample contact" in result.output

    broken = templates / "dormant_ab" / "ja.b.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + '{{ "{{" }}\n', encoding="utf-8")
    result = doctor(config, sink.env(), "--template", "dormant_ab")
    assert result.exit_code == 1
    failed = lines(result.output, "fail")
    assert len(failed) == 1 and f"{broken}: a sample contact's mail cannot be composed" in failed[0], failed


def test_a_rep_outside_the_sender_domains_who_would_send_fails_by_name(tmp_path: Path, make_smtp_sink) -> None:
    reps = [dict(rep, Email="e.carter@gmail.example") if rep["Id"] == CARTER else rep for rep in REPS]
    export = write_export(tmp_path / "export", [contact(1), contact(2, OwnerId=CARTER)], roles=[], reps=reps)
    sink = make_smtp_sink()

    result = doctor(working(tmp_path, export), sink.env())

    assert result.exit_code == 1
    assert lines(result.output, "fail") == [
        "fail  reps       Emily Carter <e.carter@gmail.example> would send 1 mail(s) but is outside [mail] "
        "sender_domains (acme.example)"
    ]


@pytest.mark.parametrize("offered", [False, True])
def test_smtputf8_on_needs_a_server_that_offers_it(tmp_path: Path, org: Path, make_smtp_sink, offered: bool) -> None:
    """The run would stop at its connection (exit 3) where the server does not offer it: doctor says so first."""
    sink = make_smtp_sink(smtputf8=offered)
    result = doctor(working(tmp_path, org, smtp={"smtputf8": True}), sink.env())

    smtp = [line for line in result.output.splitlines() if line.split()[1:2] == ["smtp"]]
    if offered:
        assert result.exit_code == 0 and "offers 8BITMIME, SMTPUTF8" in smtp[0], result.output  # a warn: no TLS
    else:
        assert result.exit_code == 1 and smtp[0].startswith("fail "), result.output
        assert "does not offer SMTPUTF8, which [smtp] smtputf8 = true needs" in result.output
        assert "fix: use a server that offers SMTPUTF8, or set [smtp] smtputf8 = false" in result.output
    assert sink.messages == []


def test_an_empty_envelope_from_warns_that_bounces_reach_the_reps(tmp_path: Path, org: Path, smtp_sink) -> None:
    result = doctor(working(tmp_path, org, mail={"envelope_from": ""}), smtp_sink.env())

    assert result.exit_code == 0  # a warning, not a failure
    assert "warn  bounces    [mail] envelope_from is empty: bounces go to each rep's own inbox" in result.output


def test_an_older_send_log_says_which_migrations_the_run_would_apply(tmp_path: Path, org: Path, smtp_sink) -> None:
    from alembic import command

    database = tmp_path / "repsend.db"
    command.upgrade(alembic_config(url=f"sqlite:///{database}"), "0001")
    before = database.read_bytes()

    result = doctor(working(tmp_path, org), smtp_sink.env())

    assert result.exit_code == 0, result.output
    assert f"ok    send log   sqlite:///{database}: writable; the next run applies migration(s) 0002" in result.output
    assert database.read_bytes() == before


@pytest.fixture
def read_only_pg(postgres_url: str) -> Iterator[str]:
    """A migrated send log on the real PostgreSQL, and a URL for a role that may only read it."""
    SendLog.open(postgres_url).close()
    url = sa.make_url(postgres_url)
    schema = url.query["options"].removeprefix("-csearch_path=")
    role = f"repsend_ro_{uuid.uuid4().hex[:8]}"
    owner = sa.create_engine(sendlog._with_installed_driver(url.set(query={})), isolation_level="AUTOCOMMIT")
    grants = [f'CONNECT ON DATABASE "{url.database}"', f'USAGE ON SCHEMA "{schema}"',
              f'SELECT ON ALL TABLES IN SCHEMA "{schema}"']
    with owner.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        for grant in grants:
            conn.exec_driver_sql(f"GRANT {grant} TO {role}")
    yield url.set(username=role).render_as_string(hide_password=False)
    with owner.connect() as conn:
        for grant in grants:
            conn.exec_driver_sql(f"REVOKE {grant.replace(' TO ', ' ')} FROM {role}")
        conn.exec_driver_sql(f"DROP ROLE {role}")
    owner.dispose()


def test_a_read_only_send_log_fails(tmp_path: Path, org: Path, smtp_sink, read_only_pg: str) -> None:
    result = doctor(working(tmp_path, org), {**smtp_sink.env(), "REPSEND_DATABASE_URL": read_only_pg})

    assert result.exit_code == 1
    failed = lines(result.output, "fail")
    assert len(failed) == 1 and "send log" in failed[0]
    assert "read-only for this user (INSERT on send_attempt)" in failed[0]


def test_a_writable_postgres_log_is_ok(tmp_path: Path, org: Path, smtp_sink, postgres_url: str) -> None:
    SendLog.open(postgres_url).close()
    result = doctor(working(tmp_path, org), {**smtp_sink.env(), "REPSEND_DATABASE_URL": postgres_url})

    assert result.exit_code == 0, result.output
    assert "writable, schema current" in result.output


def test_the_window_says_when_it_next_opens(tmp_path: Path, org: Path) -> None:
    config = working(tmp_path, org, rate={"window": "09:00-18:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                                          "timezone": "Asia/Tokyo", "per_minute": 20, "per_hour": 300},
                     mail={"transport": "outbox"})
    saturday_noon = FakeClock(datetime(2026, 12, 5, 3, 0, tzinfo=UTC))

    checks = list(diagnose(config, saturday_noon, lambda s: RunOptions(
        as_of=saturday_noon.now().date(), campaign="c", template="dormant")))

    window = [c for c in checks if c.area == "window"]
    assert window[0].status == "ok"
    assert window[0].text.startswith("closed now; opens 2026-12-07 09:00 JST")
    assert "at most one mail every 12 s, 0 per rep a day" not in window[0].text
    assert "at most one mail every 12 s" in window[0].text


# -- Salesforce ---------------------------------------------------------------------------------------


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def salesforce_org(rsps: responses.RequestsMock, view_all_data: bool) -> FakeOrg:
    fake = FakeOrg(view_all_data=view_all_data)
    fake.install(rsps)
    rep = add_rep(fake, Email="k.sato@acme.example")
    add_contact(fake, None, OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    return fake


def test_salesforce_with_view_all_reports_the_login_fields_and_calls_left(
    tmp_path: Path, rsps: responses.RequestsMock, smtp_sink
) -> None:
    fake = salesforce_org(rsps, view_all_data=True)
    config = working(tmp_path, None, sfa={"kind": "salesforce"})

    result = doctor(config, {**LOGIN_ENV, **smtp_sink.env()})

    assert result.exit_code == 0, result.output  # warnings (the SOAP login) do not fail
    assert "ok    sfa        Salesforce, the username/password (SOAP) login: logged in as" in result.output
    assert "warn  sfa        the username/password login is SOAP login(), which Salesforce retires" in result.output
    assert "the API user sees every Contact, Opportunity and contact role and Lead" in result.output
    assert "every configured Contact field is readable: Id, FirstName" in result.output
    assert f"{fake.api_requests_max - 1:,} of {fake.api_requests_max:,} API calls left today" in result.output
    # No contact pulled beyond the one record that proves the fields readable.
    assert [q for q in fake.queries if "FROM Contact" in q and "LIMIT 1" not in q] == []


def test_salesforce_without_view_all_fails_naming_the_permission(
    tmp_path: Path, rsps: responses.RequestsMock, smtp_sink
) -> None:
    fake = salesforce_org(rsps, view_all_data=False)
    config = working(tmp_path, None, sfa={"kind": "salesforce"})

    result = doctor(config, {**LOGIN_ENV, **smtp_sink.env()})

    assert result.exit_code == 1
    failed = lines(result.output, "fail")
    assert len(failed) == 1 and failed[0].startswith("fail  sfa ")
    assert "grant View All Data, or View All on Contact, Opportunity and Lead" in failed[0]
    assert not any("FROM Contact" in q for q in fake.queries)
    assert LOGIN_ENV["SF_PASSWORD"] not in result.output


def test_salesforce_by_client_credentials_is_the_login_for_a_nightly_job(
    tmp_path: Path, rsps: responses.RequestsMock, smtp_sink
) -> None:
    from tests.sf_answers import INSTANCE
    from tests.test_salesforce_login import CC_ENV

    fake = FakeOrg(view_all_data=True)
    fake.install(rsps, login_domain=None, oauth_host=INSTANCE)
    config = working(tmp_path, None, sfa={"kind": "salesforce"})

    result = doctor(config, {**CC_ENV, **smtp_sink.env()})

    assert result.exit_code == 0, result.output
    assert "ok    sfa        Salesforce, the OAuth client credentials login: logged in as" in result.output
    assert [line for line in lines(result.output, "warn") if line.split()[1] == "sfa"] == []  # no login warning
    assert CC_ENV["SF_CLIENT_SECRET"] not in result.output


def test_a_config_as_init_wrote_it_fails_until_filled_in(tmp_path: Path, smtp_sink) -> None:
    assert cli_init(tmp_path / "org").exit_code == 0
    result = doctor(tmp_path / "org" / "repsend.toml", smtp_sink.env())

    assert result.exit_code == 1
    assert ("still as `repsend init` wrote it: [company] name, [company] postal_address, [company] domain, "
            "[company] opt_out, [mail] sender_domains") in result.output
    assert "fix: fill in the lines marked FILL IN" in result.output


def test_the_bundled_demo_config_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./repsend.toml here
    result = CliRunner().invoke(app, ["doctor"], env={"REPSEND_CONFIG": ""})
    assert "warn  config     this is the bundled demo config, not your org's" in result.output


def test_a_machine_without_a_proper_name_is_told_to_set_helo_name(tmp_path: Path, org: Path, smtp_sink,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.setattr(socket, "getfqdn", lambda *a: "localhost")
    result = doctor(working(tmp_path, org, smtp={"helo_name": ""}), smtp_sink.env())
    smtp = [line for line in lines(result.output, "warn") if line.split()[1] == "smtp"]
    assert smtp and "helo_name" in smtp[0]


def cli_init(folder: Path) -> Any:
    return CliRunner().invoke(app, ["init", str(folder)], env={"REPSEND_CONFIG": ""})


def test_a_demo_copy_made_by_init_is_accepted_by_doctor_and_the_dry_run(tmp_path: Path, smtp_sink) -> None:
    made = CliRunner().invoke(app, ["init", str(tmp_path / "org"), "--demo"], env={"REPSEND_CONFIG": ""})
    assert made.exit_code == 0, made.output
    config = tmp_path / "org" / "repsend.toml"

    checked = doctor(config, {**smtp_sink.env(), "REPSEND_UNSUBSCRIBE_SECRET": "x" * 32})
    dry = CliRunner().invoke(app, ["dormant", "--dry-run", "--config", str(config)], env={"REPSEND_CONFIG": ""})

    assert checked.exit_code == 0, checked.output
    assert lines(checked.output, "fail") == []
    assert dry.exit_code == 0, dry.output
    assert smtp_sink.messages == [] and not (tmp_path / "org" / "repsend.db").exists()


def test_salesforce_names_an_active_user_outside_the_sender_domains(
    tmp_path: Path, rsps: responses.RequestsMock, smtp_sink
) -> None:
    fake = salesforce_org(rsps, view_all_data=True)
    add_rep(fake, Name="Emily Carter", Email="e.carter@gmail.example")
    config = working(tmp_path, None, sfa={"kind": "salesforce"})

    result = doctor(config, {**LOGIN_ENV, **smtp_sink.env()})

    assert result.exit_code == 0, result.output  # a warning: whether she owns mailable contacts is not read
    assert ("warn  reps       Emily Carter <e.carter@gmail.example> is active but outside [mail] sender_domains"
            in result.output)
