"""[smtp] helo_name: the name repsend gives in EHLO, as a real aiosmtpd server on 127.0.0.1 receives it."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from repsend.clock import FakeClock
from repsend.settings import load_settings
from repsend.transport import SmtpTransport, helo_name
from tests.helpers import contact, write_config, write_export
from tests.test_cli import DEMO_AS_OF, invoke
from tests.test_transport import ENVELOPE_FROM, message, rcpt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))


def send_one(sink, config: Path, clock: FakeClock) -> SmtpTransport:
    settings = load_settings(config, env=sink.env())
    transport = SmtpTransport.from_settings(settings, clock)
    try:
        transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    finally:
        transport.close()
    return transport


@pytest.mark.parametrize("tls", [None, "starttls"])
def test_the_configured_name_is_the_ehlo_name(make_smtp_sink, tmp_path: Path, clock: FakeClock,
                                              tls: str | None) -> None:
    sink = make_smtp_sink(tls=tls)
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]),
                          smtp={"helo_name": "mail.acme.example"})
    transport = send_one(sink, config, clock)
    # Once before STARTTLS and once after it (RFC 3207): the same name both times.
    assert sink.ehlo_names == ["mail.acme.example"] * (2 if tls else 1)
    assert transport.notes == []
    assert len(sink.messages) == 1


def test_by_default_the_machine_s_fully_qualified_name(make_smtp_sink, tmp_path: Path, clock: FakeClock,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "batch01.acme.example")
    sink = make_smtp_sink()
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]))
    transport = send_one(sink, config, clock)
    assert sink.ehlo_names == ["batch01.acme.example"]
    assert transport.notes == []


@pytest.mark.parametrize(("fqdn", "sent"), [("vm", "[127.0.0.1]"), ("localhost", "[127.0.0.1]"),
                                            ("localhost.localdomain", "localhost.localdomain")])
def test_a_machine_without_a_proper_name_is_said_and_smtplib_s_choice_kept(
        make_smtp_sink, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, fqdn: str,
        sent: str) -> None:
    """What smtplib would give (a bare name becomes the connection's address literal), and a note."""
    monkeypatch.setattr(socket, "getfqdn", lambda name="": fqdn)
    sink = make_smtp_sink()
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]))
    transport = send_one(sink, config, clock)
    assert sink.ehlo_names == [sent]
    assert len(transport.notes) == 1 and "set [smtp] helo_name" in transport.notes[0]
    assert repr(fqdn) in transport.notes[0]


def test_a_real_run_says_so_on_stderr(make_smtp_sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "vm")
    sink = make_smtp_sink()
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]))
    result = invoke("dormant", "--as-of", DEMO_AS_OF, "--config", str(config), env=sink.env())
    assert result.exit_code == 0, result.stderr
    assert "repsend: note: this machine's name 'vm' is not a fully qualified domain name" in result.stderr
    assert sink.ehlo_names == ["[127.0.0.1]"] and len(sink.messages) == 1


@pytest.mark.parametrize("bad", ["mail acme.example", "mail.acme.example\tMAIL FROM:<x@y>", "-mail.example",
                                 "mail..example", "[not an address]"])
def test_a_name_that_is_not_one_is_a_config_error(tmp_path: Path, bad: str) -> None:
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)]), smtp={"helo_name": bad})
    result = invoke("dormant", "--dry-run", "--config", str(config))
    assert result.exit_code == 2
    assert f"{config}: [smtp] helo_name: expected a host name" in result.stderr


def test_a_line_break_cannot_reach_the_smtp_command() -> None:
    from pydantic import ValidationError

    from repsend.settings import SmtpSettings

    with pytest.raises(ValidationError):
        SmtpSettings(helo_name="mail.acme.example\r\nMAIL FROM:<x@y>")


@pytest.mark.parametrize("name", ["mail.acme.example", "batch01", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
def test_names_and_address_literals_are_taken_as_written(name: str) -> None:
    assert helo_name(name) == (name, None)
