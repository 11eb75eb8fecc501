"""`repsend inbox`: what came back is read once, bounces, complaints and opt-outs are suppressed in the
send log, and every later run skips those people, saying where it learned it. On an mbox file and on a
real IMAP server (Dovecot on loopback)."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from repsend.sendlog import SendLog
from tests.helpers import contact, write_config, write_export

CORPUS = Path(__file__).parent / "inbox_corpus"
# The corpus messages are about these people: a bounce, an opt-out reply, a complaint, an out-of-office.
PEOPLE = {"tanaka@example.co.jp": "postfix-user-unknown.eml", "kondo@example.co.jp": "reply-stop-japanese.eml",
          "ogawa@mailbox.example": "arf-complaint.eml", "jclark@northwind.example.com": "ooo-english.eml"}
AS_OF = "2026-12-07"


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"REPSEND_CONFIG": "", **(env or {})})


@pytest.fixture
def mailed(tmp_path: Path) -> Path:
    """A config whose org holds the corpus's people, every one of them mailed by a first run."""
    rows = [contact(n, Email=address) for n, address in enumerate(PEOPLE, 1)]
    export = write_export(tmp_path / "export", rows, roles=[])
    config = write_config(tmp_path, export, mail={"transport": "outbox", "outbox_dir": str(tmp_path / "outbox")},
                          )
    first = cli("dormant", "--as-of", AS_OF, "--config", str(config))
    assert first.exit_code == 0, first.output
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 4
    return config


def mbox_of(path: Path, *names: str) -> Path:
    box = mailbox.mbox(str(path))
    for name in names:
        box.add((CORPUS / name).read_bytes())
    box.close()
    return path


def reasons(config: Path, campaign: str = "next") -> dict[str, tuple[str, str]]:
    result = cli("dormant", "--dry-run", "--json", "--as-of", AS_OF, "--campaign", campaign, "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["email"]: (line["reason"], line["detail"]) for line in lines if line.get("type") == "decision"}


def test_what_came_back_is_suppressed_once_and_every_later_run_skips_it(mailed: Path, tmp_path: Path) -> None:
    box = mbox_of(tmp_path / "bounces.mbox", *PEOPLE.values())

    result = cli("inbox", str(box), "--json", "--config", str(mailed))

    assert result.exit_code == 0, result.output
    *messages, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(m["kind"], m["suppressed"]) for m in messages] == [
        ("bounce", [{"address": "tanaka@example.co.jp", "kind": "bounce"}]),
        ("opt_out", [{"address": "kondo@example.co.jp", "kind": "opt_out"}]),
        ("complaint", [{"address": "ogawa@mailbox.example", "kind": "complaint"}]),
        ("auto_reply", []),
    ]
    assert summary["suppressed"] == {"bounce": 1, "complaint": 1, "opt_out": 1}
    seen = reasons(mailed)
    assert seen["tanaka@example.co.jp"][0] == "bounced" and "5.1.1" in seen["tanaka@example.co.jp"][1]
    assert seen["tanaka@example.co.jp"][1].endswith(f"(inbox: {box}:1 (message 1))")
    assert seen["kondo@example.co.jp"][0] == "opted_out"
    assert seen["ogawa@mailbox.example"][0] == "suppressed"
    # An out-of-office changes nothing: the next rule that holds is the cooldown of the first mail.
    assert seen["jclark@northwind.example.com"][0] == "cooldown"

    again = cli("inbox", str(box), "--json", "--config", str(mailed))
    assert json.loads(again.stdout.splitlines()[-1])["already_read"] == 4
    assert json.loads(again.stdout.splitlines()[-1])["suppressed"] == {}


def test_a_dry_run_reads_and_records_nothing(mailed: Path, tmp_path: Path) -> None:
    box = mbox_of(tmp_path / "bounces.mbox", PEOPLE["tanaka@example.co.jp"])
    database = tmp_path / "repsend.db"
    before = database.read_bytes()

    result = cli("inbox", str(box), "--dry-run", "--config", str(mailed))

    assert result.exit_code == 0, result.output
    assert "would suppress tanaka@example.co.jp (bounce)" in result.stdout
    assert database.read_bytes() == before
    assert reasons(mailed)["tanaka@example.co.jp"][0] == "cooldown"  # not bounced: nothing recorded


def test_a_malformed_message_is_named_by_place_and_skipped(mailed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "returned"
    folder.mkdir()
    (folder / "a.eml").write_bytes((CORPUS / PEOPLE["kondo@example.co.jp"]).read_bytes())
    (folder / "b.eml").write_bytes(b"")

    result = cli("inbox", str(folder), "--config", str(mailed))

    assert result.exit_code == 0, result.output
    assert f"{folder / 'b.eml'}" in result.stderr and "skipped" in result.stderr
    assert "1 opt_out; suppressed: 1 opt_out; 0 read before, 1 malformed" in result.stdout


def test_the_imap_mailbox_is_read_read_only_then_marked_seen_when_asked(mailed: Path, imap_server: Any) -> None:
    uids = [imap_server.append((CORPUS / name).read_bytes()) for name in PEOPLE.values()]
    config = mailed
    text = config.read_text(encoding="utf-8")
    config.write_text(text + f'''
[inbox]
host = "{imap_server.host}"
port = {imap_server.port}
user = "{imap_server.user}"
ca_file = "{imap_server.ca_file}"
''', encoding="utf-8")
    env = {"REPSEND_IMAP_PASSWORD": imap_server.password}

    read = cli("inbox", "imap", "--config", str(config), env=env)

    assert read.exit_code == 0, read.output
    assert "suppressed: 1 bounce, 1 complaint, 1 opt_out" in read.stdout
    assert all("\\Seen" not in flags for flags in imap_server.flags().values())  # read-only by default
    assert imap_server.password not in read.output
    with SendLog.open(f"sqlite:///{config.parent / 'repsend.db'}") as log:
        sources = {row.address: row.source for row in log.suppressions()}
    assert sources["kondo@example.co.jp"].startswith("inbox: ")

    marked = cli("inbox", "imap", "--mark-seen", "--config", str(config), env=env)
    assert marked.exit_code == 0, marked.output
    assert "4 read before" in marked.stdout
    assert all("\\Seen" in imap_server.flags()[uid] for uid in uids)


def test_imap_without_its_password_says_which_variable(mailed: Path) -> None:
    config = mailed
    config.write_text(config.read_text(encoding="utf-8") + '\n[inbox]\nhost = "127.0.0.1"\nuser = "u"\n',
                      encoding="utf-8")
    result = cli("inbox", "imap", "--config", str(config), env={"REPSEND_IMAP_PASSWORD": ""})
    assert result.exit_code == 2 and "REPSEND_IMAP_PASSWORD is not set" in result.output
