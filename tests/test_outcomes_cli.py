"""`repsend outcomes` through the CLI on a generated org and send log with a planted effect: mailed
contacts open deals at 6%, held-out ones at 3%; replies matched by In-Reply-To; a chart drawn."""

from __future__ import annotations

import json
import mailbox
import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from repsend.sendlog import SENT, SendLog
from tests.helpers import OPPORTUNITY_HEADER, SATO, contact, write_config, write_csv, write_export

MAILED_AT = datetime.now(UTC) - timedelta(days=100)  # the 60-day window has closed
N = 4000


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"REPSEND_CONFIG": ""})


def org_and_log(tmp_path: Path, mailed_rate: float, held_rate: float, seed: int) -> tuple[Path, list[str]]:
    """N contacts at N accounts, half held out; deals created after the mail at the planted rates."""
    rng = random.Random(seed)
    rows = [contact(n) for n in range(1, N + 1)]
    export = write_export(tmp_path / "export", rows, roles=[])
    config = write_config(tmp_path, export, campaign={"name": "winter"})
    deals, message_ids = [], []
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        for n, row in enumerate(rows, 1):
            held = n % 2 == 0
            if held:
                log.hold_out(run_id="r1", campaign="winter", contact_id=row["Id"], address=row["Email"], rep_id=SATO,
                             rep_email="k.sato@acme.example", template="dormant", language="ja", now=MAILED_AT)
            else:
                message_id = f"<m{n}@acme.example>"
                row_id = log.claim(run_id="r1", campaign="winter", contact_id=row["Id"], address=row["Email"],
                                   rep_id=SATO, rep_email="k.sato@acme.example", subject="s", message_id=message_id,
                                   template="dormant", language="ja", now=MAILED_AT)
                assert row_id is not None
                log.finish(row_id, SENT, MAILED_AT, 250, "ok")
                message_ids.append(message_id)
            if rng.random() < (held_rate if held else mailed_rate):
                created = (MAILED_AT + timedelta(days=rng.randint(1, 50))).date().isoformat()
                deals.append({"Id": f"0065g{n:010d}AAA", "AccountId": row["AccountId"], "ContactId": "",
                              "IsClosed": "false", "IsWon": "false", "StageName": "Prospecting",
                              "CloseDate": "2027-03-31", "LastModifiedDate": created + "T00:00:00.000Z",
                              "CreatedDate": created + "T00:00:00.000Z"})
    write_csv(export / "Opportunity.csv", [*OPPORTUNITY_HEADER, "CreatedDate"], deals)
    return config, message_ids


def outcome(lines: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(line for line in lines if line.get("outcome") == kind and line["type"] == "outcome")


def test_a_planted_lift_in_deals_is_found_through_the_cli(tmp_path: Path) -> None:
    config, _ = org_and_log(tmp_path, 0.06, 0.03, seed=11)

    result = cli("outcomes", "--format", "json", "--config", str(config))

    assert result.exit_code == 0, result.output
    deal = outcome([json.loads(line) for line in result.stdout.splitlines()], "deal")
    assert deal["mailed"]["n"] == deal["held_out"]["n"] == N // 2
    assert deal["lift"]["low"] > 0 and deal["lift"]["low"] < 0.03 < deal["lift"]["high"]
    assert deal["verdict"] == "higher than the holdout"


def test_no_planted_effect_shows_no_difference(tmp_path: Path) -> None:
    config, _ = org_and_log(tmp_path, 0.04, 0.04, seed=12)
    result = cli("outcomes", "--format", "json", "--config", str(config))
    deal = outcome([json.loads(line) for line in result.stdout.splitlines()], "deal")
    assert deal["lift"]["low"] < 0 < deal["lift"]["high"]
    assert deal["verdict"] == "no difference the data can show"


def reply(n: int, in_reply_to: str = "", auto: bool = False, references: str = "", days: int = 3) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"c{n}@example.co.jp"
    msg["To"] = "k.sato@acme.example"
    msg["Subject"] = "自動応答: 不在" if auto else "Re: ご無沙汰しております"
    msg["Date"] = (MAILED_AT + timedelta(days=days)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = f"<reply{n}@example.co.jp>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    if auto:
        msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("ありがとうございます。来週お電話します。")
    return bytes(msg)


def test_replies_are_matched_by_in_reply_to_and_automatic_ones_do_not_count(tmp_path: Path) -> None:
    config, message_ids = org_and_log(tmp_path, 0.0, 0.0, seed=13)
    box = mailbox.mbox(str(tmp_path / "replies.mbox"))
    for i, message_id in enumerate(message_ids[:30]):
        n = int(message_id.strip("<>").split("@")[0][1:])
        box.add(reply(n, message_id, auto=i >= 20))  # 20 replies, 10 out-of-office
    box.close()

    result = cli("outcomes", "--format", "json", "--replies", str(tmp_path / "replies.mbox"), "--no-deals",
                 "--config", str(config))

    assert result.exit_code == 0, result.output
    replied = outcome([json.loads(line) for line in result.stdout.splitlines()], "reply")
    assert (replied["mailed"]["hits"], replied["held_out"]["hits"]) == (20, 0)


def test_the_table_and_a_chart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs the [chart] extra (matplotlib)")
    config, _ = org_and_log(tmp_path, 0.06, 0.03, seed=14)

    result = cli("outcomes", "--by", "rep", "--chart", str(tmp_path / "rates.svg"), "--config", str(config))

    assert result.exit_code == 0, result.output
    assert "outcomes by rep, within 60 days of the mail" in result.stdout
    assert "k.sato@acme.example  deal" in result.stdout
    svg = (tmp_path / "rates.svg").read_text(encoding="utf-8")
    assert svg.startswith("<?xml") and "商談化" in svg and "k.sato@acme.example" in svg


def test_a_window_still_open_is_said_in_words(tmp_path: Path) -> None:
    config, _ = org_and_log(tmp_path, 0.06, 0.03, seed=15)
    result = cli("outcomes", "--window", "365", "--no-deals", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "window still open" in result.stdout


def test_replies_over_imap_by_in_reply_to_references_or_address_within_the_window(tmp_path: Path,
                                                                                 imap_server: Any) -> None:
    config, message_ids = org_and_log(tmp_path, 0.0, 0.0, seed=16)
    number = [int(m.strip("<>").split("@")[0][1:]) for m in message_ids[:5]]
    imap_server.append(reply(number[0], in_reply_to=message_ids[0]))
    imap_server.append(reply(number[1], references=f"<other@x.example> {message_ids[1]}"))
    imap_server.append(reply(number[2]))  # from the contact, neither header
    imap_server.append(reply(number[3], in_reply_to=message_ids[3], auto=True))  # out of office: no reply
    imap_server.append(reply(number[4], in_reply_to=message_ids[4], days=80))  # after the 60-day window
    config.write_text(config.read_text(encoding="utf-8") + f"""
[inbox]
host = "{imap_server.host}"
port = {imap_server.port}
user = "{imap_server.user}"
ca_file = "{imap_server.ca_file}"
""", encoding="utf-8")
    before = imap_server.flags()

    result = CliRunner().invoke(app, ["outcomes", "--format", "json", "--replies", "imap", "--no-deals", "--config",
                                      str(config)], env={"REPSEND_CONFIG": "",
                                                         "REPSEND_IMAP_PASSWORD": imap_server.password})

    assert result.exit_code == 0, result.output
    replied = outcome([json.loads(line) for line in result.stdout.splitlines()], "reply")
    assert (replied["mailed"]["hits"], replied["held_out"]["hits"]) == (3, 0)
    assert imap_server.flags() == before  # read only
    assert imap_server.password not in result.output
