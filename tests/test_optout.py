"""Opt-outs recorded by a person (an address, a file, a signed token) or by the one-click endpoint, kept in
the send log and honoured by every later run; a mistaken one is lifted, and the removal is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from repsend.sendlog import SendLog
from repsend.unsubscribe import make_token, unsubscribe_url
from tests.helpers import contact, write_config, write_export

SECRET = "test-unsubscribe-secret-0123456789"
ENV = {"REPSEND_CONFIG": "", "REPSEND_UNSUBSCRIBE_SECRET": SECRET}


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={**ENV, **(env or {})})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    export = write_export(tmp_path / "export", [contact(1), contact(2), contact(3)], roles=[])
    return write_config(tmp_path, export, mail={"transport": "outbox", "outbox_dir": str(tmp_path / "outbox")})


def decisions(config: Path) -> dict[str, dict[str, Any]]:
    result = cli("dormant", "--dry-run", "--json", "--as-of", "2026-12-06", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["email"]: line for line in lines if "email" in line}


def test_an_opt_out_holds_from_the_next_run_with_where_it_came_from(config: Path, tmp_path: Path) -> None:
    result = cli("optout", "C1@Example.co.jp", "--reason", "電話で依頼", "--config", str(config))

    assert result.exit_code == 0, result.output
    assert result.stdout == "opted out: c1@example.co.jp\n"
    seen = decisions(config)
    assert seen["c1@example.co.jp"]["reason"] == "opted_out"
    assert seen["c1@example.co.jp"]["detail"].endswith(": 電話で依頼 (optout command)")
    assert seen["c1@example.co.jp"]["detail"].startswith("opted out 20")
    assert seen["c2@example.co.jp"]["reason"] == "dormant"

    sent = cli("dormant", "--as-of", "2026-12-06", "--config", str(config))
    assert sent.exit_code == 0, sent.output
    mailed = sorted(p.read_text(encoding="utf-8").split("\nTo: ", 1)[1].split("\n", 1)[0]
                    for p in (tmp_path / "outbox").glob("*.eml"))
    assert mailed == ["=?utf-8?b?5bGx55SwMiDoirHlrZA=?= <c2@example.co.jp>",
                      "=?utf-8?b?5bGx55SwMyDoirHlrZA=?= <c3@example.co.jp>"]

    again = cli("optout", "c1@example.co.jp", "--config", str(config))
    assert again.stdout == "already opted out: c1@example.co.jp\n"


def test_an_import_file_opts_out_each_address(config: Path, tmp_path: Path) -> None:
    listed = tmp_path / "optouts.txt"
    listed.write_text("# from the web form\nc2@example.co.jp\nC3@example.co.jp\n", encoding="utf-8")

    result = cli("optout", "--import", str(listed), "--config", str(config))

    assert result.exit_code == 0, result.output
    seen = decisions(config)
    assert [seen[f"c{n}@example.co.jp"]["reason"] for n in (1, 2, 3)] == ["dormant", "opted_out", "opted_out"]
    assert seen["c2@example.co.jp"]["detail"].endswith("(import optouts.txt)")


def test_a_list_for_a_person_and_for_a_script(config: Path) -> None:
    cli("optout", "c1@example.co.jp", "c2@example.co.jp", "--reason", "request", "--config", str(config))

    table = cli("optout", "--list", "--config", str(config))
    as_json = cli("optout", "--list", "--format", "json", "--config", str(config))
    as_csv = cli("optout", "--list", "--format", "csv", "--config", str(config))

    assert table.exit_code == as_json.exit_code == as_csv.exit_code == 0
    assert table.stdout.splitlines()[-1] == "2 opt_out, 0 bounce, 0 complaint"
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(r["address"], r["kind"], r["source"], r["reason"]) for r in rows] == [
        ("c1@example.co.jp", "opt_out", "optout command", "request"),
        ("c2@example.co.jp", "opt_out", "optout command", "request"),
    ]
    assert as_csv.stdout.splitlines()[0] == "address,kind,since,source,reason,campaign,by,removed,removed_reason"


def test_a_mistake_is_lifted_with_its_reason_and_the_removal_is_kept(config: Path) -> None:
    cli("optout", "c1@example.co.jp", "--config", str(config))

    refused = cli("optout", "--remove", "c1@example.co.jp", "--config", str(config))
    assert refused.exit_code == 2 and "add --reason" in refused.output

    lifted = cli("optout", "--remove", "c1@example.co.jp", "--reason", "wrong person", "--config", str(config))
    assert lifted.exit_code == 0, lifted.output
    assert decisions(config)["c1@example.co.jp"]["reason"] == "dormant"
    history = cli("optout", "--list", "--removed", "--format", "json", "--config", str(config))
    (row,) = [json.loads(line) for line in history.stdout.splitlines()]
    assert row["removed_reason"] == "wrong person" and row["removed"] is not None
    assert cli("optout", "--remove", "c1@example.co.jp", "--reason", "x", "--config", str(config)).exit_code == 2


def test_a_token_from_a_web_form_is_recorded_and_a_forged_one_is_not(config: Path, tmp_path: Path) -> None:
    token = make_token(SECRET.encode(), "c3@example.co.jp", "dormant")
    forged = make_token(b"another-secret-0123456789", "c2@example.co.jp", "dormant")

    bad = cli("optout", "--token", forged, "--config", str(config))
    assert bad.exit_code == 2 and "the token is not valid" in bad.output
    assert not (tmp_path / "repsend.db").exists()  # nothing recorded, not even a log created

    good = cli("optout", "--token", token, "--config", str(config))
    assert good.exit_code == 0 and good.stdout == "opted out: c3@example.co.jp\n"
    assert decisions(config)["c3@example.co.jp"]["detail"].endswith("(unsubscribe token)")


def test_a_malformed_address_stops_and_writes_nothing(config: Path, tmp_path: Path) -> None:
    result = cli("optout", "c1@example.co.jp", "not-an-address", "--config", str(config))
    assert result.exit_code == 2
    assert "'not-an-address' is not an email address" in result.output
    assert not (tmp_path / "repsend.db").exists()


def test_the_one_click_endpoint_over_http_records_into_the_send_log(config: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPSEND_", "SMTP_"))}
    env.update(REPSEND_UNSUBSCRIBE_SECRET=SECRET)
    server = subprocess.Popen([sys.executable, "-m", "repsend", "unsubscribe-endpoint", "--port", "0",
                               "--config", str(config)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # printed once the socket listens
        assert "unsubscribe endpoint listening on http://127.0.0.1:" in line, line
        base = line.split("listening on ", 1)[1].split(" ", 1)[0]
        url = unsubscribe_url(base, make_token(SECRET.encode(), "c2@example.co.jp", "dormant"))
        request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        server.terminate()
        server.wait(10)
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        (row,) = log.suppressions()
    assert (row.address, row.kind, row.source, row.campaign) == ("c2@example.co.jp", "opt_out", "unsubscribe link",
                                                                 "dormant")
    assert decisions(config)["c2@example.co.jp"]["reason"] == "opted_out"


def test_an_unsubscribe_url_without_its_secret_stops_the_dry_run_too(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [contact(1)], roles=[])
    config = write_config(tmp_path, export, mail={"transport": "outbox", "unsubscribe_url": "https://acme.example/u"})

    result = cli("dormant", "--dry-run", "--config", str(config), env={"REPSEND_UNSUBSCRIBE_SECRET": ""})

    assert result.exit_code == 2
    assert "REPSEND_UNSUBSCRIBE_SECRET is not set" in result.output
    assert result.stdout == ""
