"""The SMTP transport against a real aiosmtpd server on 127.0.0.1, and the outbox, with a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from repsend.clock import FakeClock
from repsend.compose import POLICY, to_message
from repsend.errors import ConfigError, MailError
from repsend.models import Mail
from repsend.settings import CompanySettings, MailSettings, Settings, SmtpSettings
from repsend.transport import (
    Delivered,
    DeliveryUnknown,
    OutboxTransport,
    RecipientRefused,
    SmtpTransport,
    TemporaryFailure,
    Transport,
    open_transport,
)

if TYPE_CHECKING:
    from tests.smtp_server import SmtpSink

# The fixtures smtp_sink, make_smtp_sink, refused_port (harmless once tests/conftest.py loads it too).

SATO = Address(display_name="佐藤 健", addr_spec="k.sato@acme.example")
ENVELOPE_FROM = "bounces@mail.acme.example"
USER = "k.sato@acme.example"
PASSWORD = "s3cret-Pa55word!"
DATE = "Mon, 23 Nov 2026 10:00:00 +0900"
BODY = (
    "山田 花子 様\n\nご無沙汰しております。株式会社アクメの佐藤です。\n"
    ".で始まる行も、\n.\nただの点だけの行も、そのまま届きます。\n\n"
    "佐藤 健\n株式会社アクメ 営業部 課長\n\n--\n株式会社アクメ\n〒100-0005 東京都千代田区丸の内1-1-1\n"
)



@pytest.fixture(params=[False, True], ids=["one-step", "pipelined"])
def smtp_sink(request: pytest.FixtureRequest, make_smtp_sink: Any) -> Any:
    """Every test here runs against a server that offers PIPELINING and one that does not."""
    return make_smtp_sink(pipelining=request.param)


def message(n: int, message_id: str | None = None) -> EmailMessage:
    mail = Mail(
        to=Address(display_name=f"山田{n} 花子", addr_spec=f"c{n}@example.co.jp"),
        from_=SATO,
        subject=f"ご無沙汰しております（株式会社アクメ 佐藤）{n}",
        body=BODY,
        language="ja",
        template="dormant",
    )
    return to_message(mail, message_id=message_id or f"<{n}.run1@acme.example>", date=DATE)


def rcpt(n: int) -> str:
    return f"c{n}@example.co.jp"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))


@pytest.fixture
def connect(clock: FakeClock) -> Iterator[Callable[..., SmtpTransport]]:
    """An SmtpTransport to a sink (closed after the test); keyword arguments override its settings."""
    opened: list[SmtpTransport] = []

    def make(sink: SmtpSink, **options: Any) -> SmtpTransport:
        values: dict[str, Any] = {
            "host": sink.host, "port": sink.port, "security": sink.tls or "none", "username": "",
            "password": "", "timeout": 5.0, "ca_file": sink.ca_file, "clock": clock,
            "local_hostname": "repsend.test",
        }
        values.update(options)
        transport = SmtpTransport(**values)
        opened.append(transport)
        return transport

    yield make
    for transport in opened:
        transport.close()


def ids(sink: SmtpSink) -> list[str]:
    return [r.message["Message-ID"] for r in sink.messages]


def send_all(transport: SmtpTransport, numbers: range) -> list[Delivered]:
    return [transport.send(message(n), ENVELOPE_FROM, rcpt(n)) for n in numbers]


# -- the message and the connection -------------------------------------------------------------


def test_many_mails_over_one_connection_arrive_intact(smtp_sink: SmtpSink, connect, clock: FakeClock) -> None:
    transport = connect(smtp_sink)
    results = send_all(transport, range(1, 6))
    transport.close()

    assert [r.code for r in results] == [250] * 5
    assert results[0].text.startswith("2.0.0 OK")
    assert smtp_sink.connections == 1
    assert smtp_sink.commands == ["EHLO"] + ["MAIL", "RCPT", "DATA"] * 5 + ["QUIT"]
    assert clock.slept == []
    assert len(smtp_sink.messages) == 5
    for n, received in enumerate(smtp_sink.messages, start=1):
        assert received.mail_from == ENVELOPE_FROM  # the bounce address, not the From
        assert received.rcpt_tos == [rcpt(n)]
        assert "BODY=8BITMIME" in received.mail_options
        msg = received.message
        assert msg["From"].addresses[0].display_name == "佐藤 健"
        assert msg["From"].addresses[0].addr_spec == "k.sato@acme.example"
        assert str(msg["Reply-To"]) == "佐藤 健 <k.sato@acme.example>"
        assert str(msg["To"]) == f"山田{n} 花子 <{rcpt(n)}>"
        assert str(msg["Subject"]) == f"ご無沙汰しております（株式会社アクメ 佐藤）{n}"
        assert msg["Message-ID"] == f"<{n}.run1@acme.example>"
        assert msg["Date"].datetime == datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
        assert "Sender" not in msg
        assert msg.get_content_type() == "text/plain"
        assert msg.get_content_charset() == "utf-8"
        assert msg.get_content().replace("\r\n", "\n") == BODY  # dot-stuffed lines come back as they were
    raw = smtp_sink.messages[0].data
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only


def test_a_server_without_8bitmime_gets_a_7bit_message(make_smtp_sink, connect) -> None:
    sink = make_smtp_sink(eight_bit_mime=False)
    connect(sink).send(message(1), ENVELOPE_FROM, rcpt(1))
    received = sink.messages[0]
    assert received.data.isascii()
    assert not any("BODY" in option for option in received.mail_options)
    assert received.message.get_content().replace("\r\n", "\n") == BODY


def test_nothing_connects_before_the_first_send_and_close_is_idempotent(smtp_sink: SmtpSink, connect) -> None:
    transport = connect(smtp_sink)
    transport.close()
    assert smtp_sink.connections == 0
    transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    transport.close()
    transport.close()
    transport.send(message(2), ENVELOPE_FROM, rcpt(2))  # a new connection after close
    assert smtp_sink.connections == 2
    assert transport.connections == 2


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA", "EOM"])
def test_451_is_retried_after_a_wait_and_delivered_once(smtp_sink: SmtpSink, connect, clock: FakeClock,
                                                        stage: str) -> None:
    smtp_sink.tempfail(times=1, at=stage)  # type: ignore[arg-type]
    result = connect(smtp_sink).send(message(1), ENVELOPE_FROM, rcpt(1))
    assert result.code == 250
    assert ids(smtp_sink) == ["<1.run1@acme.example>"]
    assert clock.slept == [5]
    assert smtp_sink.connections == 1
    assert "RSET" in smtp_sink.commands


def test_4xx_that_outlasts_the_retries_is_a_temporary_failure(smtp_sink: SmtpSink, connect,
                                                             clock: FakeClock) -> None:
    smtp_sink.tempfail(times=3, at="RCPT", code=452, text="4.2.2 Mailbox full")
    transport = connect(smtp_sink)
    with pytest.raises(TemporaryFailure) as failure:
        transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    assert failure.value.code == 452
    assert "Mailbox full" in failure.value.text
    assert clock.slept == [5, 10]
    transport.send(message(2), ENVELOPE_FROM, rcpt(2))  # the same connection goes on
    assert ids(smtp_sink) == ["<2.run1@acme.example>"]
    assert smtp_sink.connections == 1


@pytest.mark.parametrize(("stage", "code"), [("RCPT", 550), ("EOM", 554)])
def test_5xx_refuses_one_recipient_and_the_next_goes_out_on_the_same_connection(
        smtp_sink: SmtpSink, connect, clock: FakeClock, stage: str, code: int) -> None:
    smtp_sink.refuse(rcpt(2), at=stage, code=code)  # type: ignore[arg-type]
    transport = connect(smtp_sink)
    transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    with pytest.raises(RecipientRefused) as refused:
        transport.send(message(2), ENVELOPE_FROM, rcpt(2))
    transport.send(message(3), ENVELOPE_FROM, rcpt(3))
    assert refused.value.code == code
    assert "Mailbox unavailable" in str(refused.value)
    assert [r.rcpt_tos for r in smtp_sink.messages] == [[rcpt(1)], [rcpt(3)]]
    assert smtp_sink.connections == 1
    assert clock.slept == []  # a 5xx is never retried
    assert smtp_sink.commands.count("RSET") == 1


def test_421_and_close_mid_run_reconnects_and_delivers_each_mail_once(smtp_sink: SmtpSink, connect,
                                                                      clock: FakeClock) -> None:
    smtp_sink.close_with_421(after=2, at="MAIL")
    send_all(connect(smtp_sink), range(1, 6))
    assert ids(smtp_sink) == [f"<{n}.run1@acme.example>" for n in range(1, 6)]
    assert [r.connection for r in smtp_sink.messages] == [1, 1, 2, 2, 2]
    assert smtp_sink.ehlo_count == 2
    assert clock.slept == []  # a kept-open connection closed by the server: a new one at once


def test_421_in_the_middle_of_a_transaction_reconnects_after_a_wait(smtp_sink: SmtpSink, connect,
                                                                    clock: FakeClock) -> None:
    smtp_sink.close_with_421(after=1, at="RCPT")
    send_all(connect(smtp_sink), range(1, 4))
    assert ids(smtp_sink) == [f"<{n}.run1@acme.example>" for n in range(1, 4)]
    assert smtp_sink.connections == 2
    assert clock.slept == [5]


@pytest.mark.parametrize(("stage", "slept"), [("MAIL", []), ("RCPT", [5]), ("DATA", [5])])
def test_a_drop_before_the_data_is_retried_on_a_new_connection(smtp_sink: SmtpSink, connect, clock: FakeClock,
                                                               stage: str, slept: list[float]) -> None:
    smtp_sink.drop(after=2, at=stage)  # type: ignore[arg-type]
    send_all(connect(smtp_sink), range(1, 5))
    assert ids(smtp_sink) == [f"<{n}.run1@acme.example>" for n in range(1, 5)]
    assert [r.connection for r in smtp_sink.messages] == [1, 1, 2, 2]
    assert smtp_sink.unanswered == []
    assert clock.slept == slept


def test_a_drop_after_the_data_is_delivery_unknown_and_never_resent(smtp_sink: SmtpSink, connect,
                                                                    clock: FakeClock) -> None:
    smtp_sink.drop(after=1, at="EOM")
    transport = connect(smtp_sink)
    transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    with pytest.raises(DeliveryUnknown) as unknown:
        transport.send(message(2), ENVELOPE_FROM, rcpt(2))
    assert f"127.0.0.1:{smtp_sink.port}" in str(unknown.value)
    assert "may have been delivered" in str(unknown.value)
    transport.send(message(3), ENVELOPE_FROM, rcpt(3))
    assert ids(smtp_sink) == ["<1.run1@acme.example>", "<3.run1@acme.example>"]
    assert [r.message["Message-ID"] for r in smtp_sink.unanswered] == ["<2.run1@acme.example>"]
    assert smtp_sink.commands.count("DATA") == 3  # message 2 went over the wire exactly once
    assert clock.slept == []
    assert smtp_sink.connections == 2


def test_connection_refused_from_the_start_stops_the_run(refused_port: int, clock: FakeClock) -> None:
    transport = SmtpTransport("127.0.0.1", refused_port, "none", "", "", 5.0, None, clock)
    with pytest.raises(MailError) as error:
        transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    assert str(error.value) == f"127.0.0.1:{refused_port}: cannot connect: Connection refused"
    assert error.value.exit_code == 3
    assert clock.slept == [2, 4]


def test_the_server_gone_mid_run_stops_the_run(smtp_sink: SmtpSink, connect, clock: FakeClock) -> None:
    smtp_sink.drop(after=1, at="MAIL", refuse_connections=True)
    transport = connect(smtp_sink)
    transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    with pytest.raises(MailError, match=f"127.0.0.1:{smtp_sink.port}: cannot connect: Connection refused"):
        transport.send(message(2), ENVELOPE_FROM, rcpt(2))
    assert ids(smtp_sink) == ["<1.run1@acme.example>"]
    assert clock.slept == [2, 4]


# -- TLS and login --------------------------------------------------------------------------------


def test_starttls_with_a_private_ca(make_smtp_sink, connect) -> None:
    sink = make_smtp_sink(tls="starttls")
    transport = connect(sink, security="starttls", ca_file=sink.ca_file)
    send_all(transport, range(1, 3))
    assert all(r.tls for r in sink.messages)
    assert sink.commands == ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA"]


def test_implicit_tls(make_smtp_sink, connect) -> None:
    sink = make_smtp_sink(tls="ssl")
    connect(sink, security="ssl").send(message(1), ENVELOPE_FROM, rcpt(1))
    assert sink.messages[0].tls
    assert sink.commands == ["EHLO", "MAIL", "RCPT", "DATA"]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_certificate_from_an_unknown_ca_stops_the_run(make_smtp_sink, connect, clock: FakeClock,
                                                        tmp_path: Path, security: str) -> None:
    sink = make_smtp_sink(tls=security)
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    for ca_file in (other_ca, None):  # a wrong CA file, and the system's CAs
        with pytest.raises(MailError) as error:
            connect(sink, security=security, ca_file=ca_file).send(message(1), ENVELOPE_FROM, rcpt(1))
        assert str(error.value).startswith(f"127.0.0.1:{sink.port}: TLS certificate verification failed")
    assert sink.messages == []
    assert "MAIL" not in sink.commands
    assert clock.slept == []  # a certificate does not get better by waiting


def test_starttls_missing_from_the_server_is_never_a_plain_text_fallback(smtp_sink: SmtpSink, connect) -> None:
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        connect(smtp_sink, security="starttls", ca_file=None).send(message(1), ENVELOPE_FROM, rcpt(1))
    assert smtp_sink.commands == ["EHLO"]


def test_login(make_smtp_sink, connect) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    connect(sink, security="starttls", username=USER, password=PASSWORD).send(message(1), ENVELOPE_FROM, rcpt(1))
    assert sink.messages[0].user == USER
    assert sink.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA"]


def test_a_refused_login_names_the_user_and_never_the_password(make_smtp_sink, connect, clock: FakeClock) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, "the-right-one"))
    transport = connect(sink, security="starttls", username=USER, password=PASSWORD)
    with pytest.raises(MailError) as error:
        transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    assert str(error.value) == (
        f"127.0.0.1:{sink.port}: login refused for user {USER}: 535 5.7.8 Authentication credentials invalid"
    )
    chain: list[BaseException] = []
    exc: BaseException | None = error.value
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for exc in chain:
        assert PASSWORD not in str(exc) and PASSWORD not in repr(exc)
        assert all(PASSWORD not in repr(arg) for arg in exc.args)
    assert PASSWORD not in repr(transport)
    assert clock.slept == []
    assert sink.messages == []


def test_a_server_that_requires_login_refuses_mail_without_it(make_smtp_sink, connect) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    with pytest.raises(RecipientRefused) as refused:
        connect(sink, security="starttls").send(message(1), ENVELOPE_FROM, rcpt(1))
    assert refused.value.code == 530


# -- the outbox -----------------------------------------------------------------------------------


def test_outbox_files_parse_back_to_the_same_message(tmp_path: Path, clock: FakeClock) -> None:
    folder = tmp_path / "out" / "box"
    outbox = OutboxTransport(folder, clock)
    sent = [message(1), message(2), message(3, message_id="<1.run1@acme.example>")]
    results = [outbox.send(m, ENVELOPE_FROM, rcpt(n)) for n, m in enumerate(sent, start=1)]
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [
        "20261123T010000Z-1.run1@acme.example-2.eml",
        "20261123T010000Z-1.run1@acme.example.eml",
        "20261123T010000Z-2.run1@acme.example.eml",
    ]
    assert all(r.code == 250 and r.text.startswith(f"written to {folder}") for r in results)
    by_path = {Path(r.text.removeprefix("written to ")): m for r, m in zip(results, sent, strict=True)}
    for path, original in by_path.items():
        raw = path.read_bytes()
        assert raw == original.as_bytes(policy=POLICY.clone(linesep="\r\n"))
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        for header in ("From", "Reply-To", "To", "Subject", "Message-ID", "Date"):
            assert str(parsed[header]) == str(original[header])
        assert parsed.get_content().replace("\r\n", "\n") == original.get_content() == BODY
    assert isinstance(outbox, Transport)


def test_outbox_names_a_message_without_id_or_date_by_the_clock(tmp_path: Path, clock: FakeClock) -> None:
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = "x"
    msg.set_content("本文\n")
    result = OutboxTransport(tmp_path, clock).send(msg, ENVELOPE_FROM, "a@example.jp")
    path = Path(result.text.removeprefix("written to "))
    assert path.name.startswith("20261123T010000Z-") and path.suffix == ".eml"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


# -- settings -------------------------------------------------------------------------------------


def settings(tmp_path: Path, env: dict[str, str] | None = None, **smtp: Any) -> Settings:
    return Settings(
        company=CompanySettings(name="株式会社アクメ", postal_address="東京都", opt_out="optout@acme.example",
                                domain="acme.example"),
        smtp=SmtpSettings(**smtp),
        mail=MailSettings(outbox_dir=Path("outbox")),
        config_path=tmp_path / "repsend.toml",
        env=env or {},
    )


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25)])
def test_port_0_is_the_default_of_the_security(tmp_path: Path, clock: FakeClock, security: str, port: int) -> None:
    transport = SmtpTransport.from_settings(settings(tmp_path, host="smtp.acme.example", security=security), clock)
    assert (transport.host, transport.port, transport.security) == ("smtp.acme.example", port, security)
    assert transport.where == f"smtp.acme.example:{port}"


def test_the_environment_overrides_the_config(tmp_path: Path, clock: FakeClock) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    env = {"SMTP_HOST": "relay.acme.example", "SMTP_PORT": "2525", "SMTP_SECURITY": "SSL",
           "SMTP_USERNAME": USER, "SMTP_PASSWORD": PASSWORD, "SMTP_CA_FILE": str(ca)}
    transport = SmtpTransport.from_settings(
        settings(tmp_path, env, host="smtp.acme.example", port=587, username="other", timeout=12), clock)
    assert (transport.host, transport.port, transport.security) == ("relay.acme.example", 2525, "ssl")
    assert (transport.username, transport.timeout, transport.ca_file) == (USER, 12, ca)
    assert PASSWORD not in repr(transport)
    assert transport.connections == 0  # nothing connects before the first send


def test_the_ca_file_of_the_config_is_relative_to_the_config(tmp_path: Path, clock: FakeClock) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    transport = SmtpTransport.from_settings(settings(tmp_path, host="h.example", ca_file=Path("ca.pem")), clock)
    assert transport.ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(("env", "smtp", "expected"), [
    ({}, {}, "set [smtp] host in the config file or SMTP_HOST"),
    ({"SMTP_PORT": "smtp"}, {"host": "h.example"}, "SMTP_PORT: expected a port number"),
    ({"SMTP_PORT": "70000"}, {"host": "h.example"}, "SMTP_PORT: expected a port number"),
    ({"SMTP_SECURITY": "tls"}, {"host": "h.example"}, "SMTP_SECURITY: expected starttls, ssl or none, got 'tls'"),
    ({"SMTP_USERNAME": USER}, {"host": "h.example"}, "no password: set SMTP_PASSWORD"),
    ({"SMTP_CA_FILE": "/nonexistent/ca.pem"}, {"host": "h.example"}, "SMTP_CA_FILE: /nonexistent/ca.pem does not"),
])
def test_config_errors(tmp_path: Path, clock: FakeClock, env: dict[str, str], smtp: dict[str, Any],
                       expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        SmtpTransport.from_settings(settings(tmp_path, env, **smtp), clock)
    assert expected in str(error.value)
    assert error.value.exit_code == 2


def test_open_transport_chooses_by_the_config(tmp_path: Path, clock: FakeClock) -> None:
    smtp = open_transport(settings(tmp_path, host="smtp.acme.example"), clock)
    assert isinstance(smtp, SmtpTransport) and smtp.where == "smtp.acme.example:587"
    outbox_settings = settings(tmp_path).model_copy(update={"mail": MailSettings(transport="outbox")})
    outbox = open_transport(outbox_settings, clock)
    assert isinstance(outbox, OutboxTransport) and outbox.folder == tmp_path / "outbox"


def test_a_ca_file_that_is_not_a_certificate_is_a_config_error(tmp_path: Path, clock: FakeClock) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot load it"):
        SmtpTransport.from_settings(settings(tmp_path, {"SMTP_CA_FILE": str(bad)}, host="h.example"), clock)


def test_a_run_configured_by_the_environment_reaches_the_server(make_smtp_sink, tmp_path: Path,
                                                                clock: FakeClock) -> None:
    sink = make_smtp_sink(tls="starttls", auth=(USER, PASSWORD))
    transport = open_transport(settings(tmp_path, sink.env(USER, PASSWORD), host="smtp.acme.example"), clock)
    try:
        transport.send(message(1), ENVELOPE_FROM, rcpt(1))
    finally:
        transport.close()
    assert sink.messages[0].user == USER and sink.messages[0].tls
    assert sink.commands[-1] == "QUIT"
