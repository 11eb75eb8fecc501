"""The mail as it leaves, through the CLI on a real CSV export and a real SMTP server on 127.0.0.1: the
headers are checked after rendering, and addresses go out as the world writes them (IDNA domains,
UTF-8 local parts with SMTPUTF8 or not at all). The dry run says what the real run then does."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from tests.helpers import REPS, TEMPLATES, contact, write_config, write_export
from tests.smtp_server import SmtpSink

AS_OF = "2026-11-23"
INJECTED = "X\nBcc: someone@example"  # the Account.Name


def invoke(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["dormant", "--as-of", AS_OF, "--config", str(config), *args], env=env)


def decisions(output: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {d["email"]: d for d in lines if d["type"] == "decision"}


def logged(tmp_path: Path) -> dict[str, str]:
    """The send log's rows: address -> state (none when the log was never made)."""
    database = tmp_path / "repsend.db"
    if not database.exists():
        return {}
    with sqlite3.connect(database) as db:
        return dict(db.execute("select address, state from send_attempt"))


def headers(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def setup(tmp_path: Path, rows: list[dict[str, str]], reps: list[dict[str, str]] = REPS,
          subject_prints_the_account: bool = False, **sections: dict[str, Any]) -> Path:
    """An export and a config; the templates copied, the Japanese Subject printing Account.Name if asked."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    if subject_prints_the_account:
        ja = templates / "dormant" / "ja.txt"
        lines = ja.read_text(encoding="utf-8").split("\n")
        lines[0] = ("Subject: {{ contact.account_name }} 様 ご無沙汰しております"
                    "（{{ rep.last_name | default(rep.name) }}）")
        ja.write_text("\n".join(lines), encoding="utf-8")
    export = write_export(tmp_path / "export", rows, reps=reps)
    sections.setdefault("smtp", {}).setdefault("security", "none")
    sections.setdefault("template", {}).update(dir=str(templates))
    return write_config(tmp_path, export, **sections)


# ---- headers are checked after rendering ---------------------------------------------------------------


def test_a_line_feed_a_value_brings_into_the_subject_is_invalid_header_in_the_dry_and_the_real_run(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """The Subject prints Account.Name, which holds ``X\\nBcc: someone@example``: no mail to that contact,
    in the dry run as in the real run; never a subject cut at the line feed with the rest in the body."""
    rows = [contact(1), contact(2, **{"Account.Name": INJECTED}), contact(3)]
    config = setup(tmp_path, rows, subject_prints_the_account=True)

    dry = invoke(config, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    said = decisions(dry.stdout)
    assert (said["c2@example.co.jp"]["reason"], said["c2@example.co.jp"]["detail"]) == (
        "invalid_header", "control character in Subject")
    assert said["c1@example.co.jp"]["subject"] == "株式会社サンプル1 様 ご無沙汰しております（佐藤）"
    table = invoke(config, "--dry-run")
    row = next(line for line in table.stdout.splitlines() if "c2@example.co.jp" in line)
    assert "invalid_header" in row and "control character in Su" in row  # the detail column cut to its width

    real = invoke(config, "--json", env=smtp_sink.env())
    assert real.exit_code == 0, real.output
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == ["c1@example.co.jp", "c3@example.co.jp"]
    assert all(b"someone@example" not in m.data for m in smtp_sink.messages)
    assert decisions(real.stdout)["c2@example.co.jp"]["reason"] == "invalid_header"
    assert logged(tmp_path) == {"c1@example.co.jp": "sent", "c3@example.co.jp": "sent"}


# ---- internationalized domains: IDNA A-labels, whatever the server -------------------------------------


IDN_REP = {**REPS[0], "Email": "k.sato@アクメ.example"}


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_an_internationalized_domain_goes_out_as_a_labels_in_header_and_envelope(
        tmp_path: Path, make_smtp_sink: Any, pipelining: bool) -> None:
    sink = make_smtp_sink(pipelining=pipelining)
    rows = [contact(1, Email="john@例え.example.com"), contact(2)]
    config = setup(tmp_path, rows, reps=[IDN_REP, *REPS[1:]])
    said = decisions(invoke(config, "--dry-run", "--json").stdout)
    assert [d["reason"] for d in said.values()] == ["dormant", "dormant"]

    real = invoke(config, env=sink.env())
    assert real.exit_code == 0, real.output
    first = next(m for m in sink.messages if m.rcpt_tos != ["c2@example.co.jp"])
    assert first.rcpt_tos == ["john@xn--r8jz45g.example.com"]
    assert first.mail_from == "k.sato@xn--cck0a4k.example"
    assert "SMTPUTF8" not in first.mail_options
    head = headers(first.data)
    assert b"@xn--r8jz45g.example.com>" in head and b"<k.sato@xn--cck0a4k.example>" in head
    assert head.isascii()  # the names as encoded words, never one inside an address (RFC 2047 section 5)
    for name in ("To", "From", "Reply-To"):
        line = next(h for h in head.split(b"\r\n") if h.startswith(name.encode() + b":"))
        assert b"@=?" not in line and b"?=." not in line, line
    assert str(first.message["To"]) == "山田1 花子 <john@xn--r8jz45g.example.com>"
    # The send log and the table keep the address as the SFA wrote it: the next run finds it already sent.
    assert logged(tmp_path)["john@例え.example.com"] == "sent"
    again = decisions(invoke(config, "--dry-run", "--json").stdout)
    assert again["john@例え.example.com"]["reason"] == "already_sent"


# ---- UTF-8 local parts: with SMTPUTF8, or a skip of their own -----------------------------------------


UTF8_REP = {**REPS[1], "Email": "エミリー@acme.example"}  # Emily Carter, with a UTF-8 local part


def utf8_rows() -> list[dict[str, str]]:
    return [contact(1, Email="山田@example.jp"), contact(2),
            contact(3, OwnerId=UTF8_REP["Id"], MailingCountry="United States", FirstName="Ann")]


@pytest.mark.parametrize("offered", [False, True], ids=["server-without-SMTPUTF8", "server-with-SMTPUTF8"])
def test_without_smtputf8_a_utf8_local_part_is_unsendable_address_in_the_dry_and_the_real_run(
        tmp_path: Path, make_smtp_sink: Any, offered: bool) -> None:
    """The default ([smtp] smtputf8 = false): never the false invalid_header "control character in To"."""
    sink = make_smtp_sink(smtputf8=offered)
    config = setup(tmp_path, utf8_rows(), reps=[REPS[0], UTF8_REP, *REPS[2:]])
    dry = decisions(invoke(config, "--dry-run", "--json").stdout)
    needs = "a UTF-8 local part needs SMTPUTF8 ([smtp] smtputf8 = true)"
    expected = {
        "山田@example.jp": ("unsendable_address", needs),
        "c2@example.co.jp": ("dormant", None),
        "c3@example.co.jp": ("unsendable_address", f"sender エミリー@acme.example: {needs}"),
    }
    assert {a: (d["reason"], d["detail"]) for a, d in dry.items()} == expected
    real = invoke(config, "--json", env=sink.env())
    assert real.exit_code == 0, real.output
    assert {a: (d["reason"], d["detail"]) for a, d in decisions(real.stdout).items()} == expected
    assert [m.rcpt_tos for m in sink.messages] == [["c2@example.co.jp"]]
    assert logged(tmp_path) == {"c2@example.co.jp": "sent"}


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_with_smtputf8_a_utf8_local_part_is_sent_with_smtputf8(tmp_path: Path, make_smtp_sink: Any,
                                                                pipelining: bool) -> None:
    sink = make_smtp_sink(smtputf8=True, pipelining=pipelining)
    config = setup(tmp_path, utf8_rows(), reps=[REPS[0], UTF8_REP, *REPS[2:]], smtp={"smtputf8": True})
    dry = decisions(invoke(config, "--dry-run", "--json").stdout)
    assert [d["reason"] for d in dry.values()] == ["dormant"] * 3
    real = invoke(config, "--json", env=sink.env())
    assert real.exit_code == 0, real.output
    received = {m.rcpt_tos[0]: m for m in sink.messages}
    assert sorted(received) == ["c2@example.co.jp", "c3@example.co.jp", "山田@example.jp"]

    yamada = received["山田@example.jp"]
    assert (yamada.mail_from, "SMTPUTF8" in yamada.mail_options) == ("k.sato@acme.example", True)
    head = headers(yamada.data)
    assert "To: 山田1 花子 <山田@example.jp>\r\n".encode() in head  # RFC 6532: UTF-8 as it is, no encoded word
    assert b"=?" not in head
    ann = received["c3@example.co.jp"]  # from the rep whose own address needs SMTPUTF8
    assert (ann.mail_from, "SMTPUTF8" in ann.mail_options) == ("エミリー@acme.example", True)
    assert "From: Emily Carter <エミリー@acme.example>\r\n".encode() in headers(ann.data)
    plain = received["c2@example.co.jp"]  # every other mail as ever: ASCII headers, no SMTPUTF8
    assert "SMTPUTF8" not in plain.mail_options and headers(plain.data).isascii()
    assert logged(tmp_path) == {"山田@example.jp": "sent", "c2@example.co.jp": "sent", "c3@example.co.jp": "sent"}


def test_with_smtputf8_a_server_that_does_not_offer_it_stops_the_run_before_any_mail(
        tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """The dry run decided with SMTPUTF8: a real run without it would not be that run. Exit 3, and why."""
    config = setup(tmp_path, utf8_rows(), reps=[REPS[0], UTF8_REP, *REPS[2:]], smtp={"smtputf8": True})
    real = invoke(config, env=smtp_sink.env())
    assert real.exit_code == 3, real.output
    assert f"127.0.0.1:{smtp_sink.port}: the server does not offer SMTPUTF8" in real.stderr
    assert "Traceback" not in real.output + real.stderr
    assert smtp_sink.messages == [] and "MAIL" not in smtp_sink.commands
    assert "sent" not in logged(tmp_path).values()


def test_an_envelope_from_that_cannot_go_out_stops_the_dry_and_the_real_run(tmp_path: Path,
                                                                           smtp_sink: SmtpSink) -> None:
    config = setup(tmp_path, [contact(1)], mail={"envelope_from": "バウンス@acme.example"})
    for args in (("--dry-run",), ()):
        result = invoke(config, *args, env=smtp_sink.env())
        assert result.exit_code == 2, result.output
        assert "[mail] envelope_from: バウンス@acme.example: a UTF-8 local part needs SMTPUTF8" in result.stderr
    assert smtp_sink.connections == 0 and logged(tmp_path) == {}


def test_the_outbox_writes_the_bytes_smtp_would_send(tmp_path: Path) -> None:
    """An .eml file of a UTF-8 local part is the SMTPUTF8 message; an internationalized domain in A-labels."""
    rows = [contact(1, Email="山田@example.jp"), contact(2, Email="john@例え.example.com")]
    outbox = tmp_path / "outbox"
    config = setup(tmp_path, rows, smtp={"smtputf8": True}, mail={"transport": "outbox", "outbox_dir": str(outbox)})
    result = invoke(config)
    assert result.exit_code == 0, result.output
    heads = sorted(headers(path.read_bytes()) for path in outbox.glob("*.eml"))
    assert len(heads) == 2
    utf8 = next(h for h in heads if not h.isascii())
    assert "To: 山田1 花子 <山田@example.jp>\r\n".encode() in utf8
    idna = next(h for h in heads if h.isascii())
    assert b"@xn--r8jz45g.example.com>" in idna and b"@=?" not in idna


@pytest.mark.parametrize(
    ("section", "key", "value"),  # the value as the TOML file holds it: \r\n there is a CR and an LF
    [
        pytest.param("mail", "unsubscribe_url", "https://acme.example/u\\r\\nBcc: x@example", id="unsubscribe_url"),
        pytest.param("mail", "envelope_from", "bounces@acme.example\\n", id="envelope_from"),
        pytest.param("company", "domain", "acme.example\\tBcc: someone@example", id="company-domain"),
    ],
)
def test_a_control_character_in_a_config_value_every_header_gets_stops_the_dry_and_the_real_run(
        tmp_path: Path, smtp_sink: SmtpSink, section: str, key: str, value: str) -> None:
    """Not a dry run that shows sends and a real run that breaks at its first mail: exit 2, naming the key."""
    base = {"company": {"name": "株式会社アクメ", "postal_address": "〒100-0005 東京都千代田区丸の内1-1-1",
                        "opt_out": "optout@acme.example", "domain": "acme.example"}}
    values = {**base.get(section, {}), key: "@VALUE@"}
    config = setup(tmp_path, [contact(1)], **{section: values})
    config.write_text(config.read_text(encoding="utf-8").replace("@VALUE@", value), encoding="utf-8")  # TOML escapes
    for args in (("--dry-run",), ()):
        result = invoke(config, *args, env=smtp_sink.env())
        assert result.exit_code == 2, result.output
        assert f"[{section}] {key}: holds a control character" in result.stderr
    assert smtp_sink.connections == 0 and logged(tmp_path) == {}


def test_an_internationalized_company_domain_makes_message_ids_in_a_labels(tmp_path: Path,
                                                                            smtp_sink: SmtpSink) -> None:
    config = setup(tmp_path, [contact(1)], company={"domain": "アクメ.example"})
    result = invoke(config, env=smtp_sink.env())
    assert result.exit_code == 0, result.output
    assert str(smtp_sink.messages[0].message["Message-ID"]).endswith("@xn--cck0a4k.example>")


def test_preview_raw_shows_the_addresses_as_they_go_over_the_wire(tmp_path: Path) -> None:
    rows = [contact(1, Email="山田@example.jp"), contact(2, Email="john@例え.example.com")]
    config = setup(tmp_path, rows, smtp={"smtputf8": True})
    for address, to in (("山田@example.jp", "To: 山田1 花子 <山田@example.jp>\n"),
                        ("john@例え.example.com", "<john@xn--r8jz45g.example.com>\n")):
        result = CliRunner().invoke(app, ["preview", address, "--raw", "--as-of", AS_OF, "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert to in result.stdout and "@=?" not in result.stdout
