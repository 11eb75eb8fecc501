"""The command line through Typer's runner and as a real process: output, options, exit codes."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from tests.helpers import CARTER, REPO, contact, deal, write_config, write_export

runner = CliRunner()
DEMO_AS_OF = "2026-11-23"


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    rows = [contact(1), contact(2, HasOptedOutOfEmail="true"), contact(3), contact(4), contact(5)]
    export = write_export(tmp_path / "export", rows, [deal(1, rows[3]["AccountId"])])
    return write_config(tmp_path, export)


def test_dry_run_json_lines_shape(small: Path) -> None:
    result = invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF, "--config", str(small))
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    decisions, summary = lines[:-1], lines[-1]
    assert [d["type"] for d in decisions] == ["decision"] * 5
    first = decisions[0]
    assert {"contact_id", "email", "action", "reason", "rep_id", "from", "subject"} <= set(first)
    assert first["from"] == "佐藤 健 <k.sato@acme.example>"
    assert first["rep_id"] == "0055g00000AbCdEAAV"
    assert first["subject"] == "ご無沙汰しております（株式会社アクメ 佐藤）"
    assert [(d["action"], d["reason"]) for d in decisions] == [
        ("send", "dormant"), ("skip", "opted_out"), ("send", "dormant"), ("skip", "active_deal"), ("send", "dormant"),
    ]
    assert decisions[1]["from"] is None and decisions[1]["subject"] is None
    assert summary == {"type": "summary", "considered": 5, "send": 3, "skip": {"active_deal": 1, "opted_out": 1},
                       "dry_run": True}


def test_dry_run_table_and_summary(small: Path) -> None:
    result = invoke("dormant", "--dry-run", "--as-of", DEMO_AS_OF, "--config", str(small))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["contact", "company", "address", "from", "action", "reason", "detail", "subject"]
    assert "c1@example.co.jp" in lines[1] and "佐藤 健" in lines[1] and "send" in lines[1]
    assert "5 considered: 3 to send, 2 skipped" in result.stdout
    assert "dry run: nothing was sent and nothing was written" in result.stdout


def test_limit_stops_after_n_sends(small: Path) -> None:
    result = invoke("dormant", "--dry-run", "--json", "--limit", "2", "--as-of", DEMO_AS_OF, "--config", str(small))
    summary = json_lines(result.stdout)[-1]
    assert (summary["send"], summary["considered"]) == (2, 3)


def test_as_of_moves_today(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [contact(1, CreatedDate="2026-11-16")])
    config = str(write_config(tmp_path, export))
    now = json_lines(invoke("dormant", "--dry-run", "--json", "--as-of", "2026-11-23", "--config", config).stdout)
    later = json_lines(invoke("dormant", "--dry-run", "--json", "--as-of", "2027-06-01", "--config", config).stdout)
    assert now[0]["reason"] == "recent_activity" and later[0]["reason"] == "dormant"


def test_config_from_the_environment(small: Path) -> None:
    result = invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF, env={"REPSEND_CONFIG": str(small)})
    assert json_lines(result.stdout)[-1]["considered"] == 5


def test_an_unknown_section_suggests_the_nearest(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [contact(1)])
    config = write_config(tmp_path, export, extra="[rat]\nper_minute = 1\n")
    result = invoke("dormant", "--dry-run", "--config", str(config))
    assert result.exit_code == 2 and "[rat]: unknown section (did you mean `[rate]`?)" in result.stderr


def test_a_config_without_a_language_table_has_the_documented_one(tmp_path: Path) -> None:
    """Leaving [template.languages] out must not send US customers the Japanese note."""
    from repsend.settings import load_settings

    export = write_export(tmp_path / "export", [contact(1, MailingCountry="United States", FirstName="Ann"),
                                                contact(2, MailingCountry="日本")])
    config = write_config(tmp_path, export)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.split("[template.languages]")[0], encoding="utf-8")
    assert "[template.languages]" not in config.read_text(encoding="utf-8")
    assert load_settings(config).template.languages["United States"] == "en"
    lines = json_lines(invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF, "--config", str(config)).stdout)
    assert [line.get("language") for line in lines[:2]] == ["en", "ja"]


def test_the_env_file_beside_the_config_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A nightly job's secrets sit beside its config: .env there is read (the working directory's first)."""
    from repsend.settings import load_settings

    export = write_export(tmp_path / "job" / "export", [contact(1)])
    config = write_config(tmp_path / "job", export)
    (tmp_path / "job" / ".env").write_text("SMTP_HOST=mail.from-config-folder.example\nSF_DOMAIN=test\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("SMTP_HOST=mail.from-cwd.example\n")
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config)
    assert settings.env["SMTP_HOST"] == "mail.from-cwd.example" and settings.env["SF_DOMAIN"] == "test"
    assert settings.env_files == ((elsewhere / ".env").resolve(), (tmp_path / "job" / ".env").resolve())
    monkeypatch.setenv("SMTP_HOST", "mail.from-the-environment.example")
    assert load_settings(config).env["SMTP_HOST"] == "mail.from-the-environment.example"


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"repsend {version('repsend')}\n"


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"mail": {"bogus": 1}}, "[mail] bogus: unknown key"),
        ({"mail": {"transprt": "smtp"}}, "[mail] transprt: unknown key (did you mean `transport`?)"),
        ({"rate": {"per_minute": "fast"}}, "[rate] per_minute: expected a whole number, got 'fast'"),
        ({"rate": {"per_minute": "20"}},
         "[rate] per_minute: expected a whole number, got '20' (a string: write it without quotes)"),
        ({"rate": {"per_minute": True}}, "[rate] per_minute: expected a whole number, got true"),
        ({"smtp": {"port": "587"}}, "[smtp] port: expected a whole number, got '587' (a string"),
        ({"audience": {"cooldown_days": 1.5}}, "[audience] cooldown_days: expected a whole number, got 1.5"),
        ({"campaign": {"name": 7}}, "[campaign] name: expected a string in quotes, got 7"),
        ({"mail": {"sender_domains": "acme.example"}}, "[mail] sender_domains: expected a list"),
        ({"audience": {"active_deal_scope": "opportunity"}}, "[audience] active_deal_scope: expected 'account' or"),
        ({"sfa": {"encoding": "sjis2"}}, "[sfa] encoding: unknown encoding 'sjis2'"),
        ({"rate": {"timezone": "Mars/Base"}}, "[rate] timezone: unknown time zone 'Mars/Base'"),
        ({"company": {"opt_out": ""}}, "[company] opt_out: String should have at least 1 character"),
        ({"sfa": {"path": "/nonexistent/export"}}, "[sfa] path: /nonexistent/export is not a folder of CSV files"),
    ],
)
def test_a_bad_config_names_file_key_and_expectation(tmp_path: Path, sections: dict, expected: str) -> None:
    export = write_export(tmp_path / "export", [contact(1)])
    config = write_config(tmp_path, export, **sections)
    result = invoke("dormant", "--dry-run", "--config", str(config))
    assert result.exit_code == 2
    assert str(config) in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_config_that_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "repsend.toml"
    config.write_text("[sfa]\nkind = csv\n", encoding="utf-8")
    result = invoke("dormant", "--dry-run", "--config", str(config))
    assert result.exit_code == 2
    assert f"{config}: not valid TOML: Invalid value (at line 2, column 8)" in result.stderr


def test_a_missing_config_file(tmp_path: Path) -> None:
    result = invoke("dormant", "--dry-run", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope.toml'}: config file not found" in result.stderr


def test_a_missing_template_stops_before_any_decision(small: Path) -> None:
    result = invoke("dormant", "--dry-run", "--template", "winback", "--config", str(small))
    assert result.exit_code == 2
    assert "templates/winback/en.txt: template not found" in result.stderr
    assert result.stdout == ""


def test_a_malformed_export_stops_before_any_decision(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [contact(1), contact(2, IsEmailBounced="maybe")])
    result = invoke("dormant", "--dry-run", "--config", str(write_config(tmp_path, export)))
    assert result.exit_code == 2
    assert f"{export / 'Contact.csv'}:3: IsEmailBounced: 'maybe' is not a boolean" in result.stderr
    assert result.stdout == ""


def test_a_bad_as_of_is_a_usage_error(small: Path) -> None:
    result = invoke("dormant", "--dry-run", "--as-of", "23/11/2026", "--config", str(small))
    assert result.exit_code == 2
    assert "is not a date: use YYYY-MM-DD" in result.output + result.stderr


def test_preview_prints_the_whole_mail(small: Path) -> None:
    result = invoke("preview", "0035g0000000001", "--as-of", DEMO_AS_OF, "--config", str(small))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "From: 佐藤 健 <k.sato@acme.example>\n" in out
    assert "Reply-To: 佐藤 健 <k.sato@acme.example>\n" in out
    assert "Subject: ご無沙汰しております（株式会社アクメ 佐藤）\n" in out
    assert "Message-ID: <" in out and "@acme.example>" in out
    assert "山田1様" in out and "optout@acme.example" in out


def test_preview_says_why_a_contact_gets_no_mail(small: Path) -> None:
    result = invoke("preview", "c2@example.co.jp", "--as-of", DEMO_AS_OF, "--config", str(small))
    assert result.exit_code == 0
    assert "skip: opted_out" in result.stdout and "From:" not in result.stdout
    missing = invoke("preview", "nobody@example.com", "--config", str(small))
    assert missing.exit_code == 2 and "no contact 'nobody@example.com'" in missing.stderr


def demo_truth() -> tuple[set[str], set[str]]:
    """From the demo files themselves: addresses that must never get a send."""
    demo = REPO / "config" / "demo"
    with open(demo / "Opportunity.csv", encoding="utf-8-sig", newline="") as f:
        open_accounts = {r["AccountId"][:15] for r in csv.DictReader(f) if r["IsClosed"].lower() == "false"}
    with open(demo / "Contact.csv", encoding="utf-8-sig", newline="") as f:
        contacts = list(csv.DictReader(f))
    never = set()
    for r in contacts:
        if (r["HasOptedOutOfEmail"].lower() == "true" or r["IsEmailBounced"].lower() == "true"
                or r["AccountId"][:15] in open_accounts):
            never.add(r["Email"].strip().lower())
    return never, {r["Id"] for r in contacts}


def test_the_demo_org_never_mails_an_open_deal_an_opt_out_or_a_bounce() -> None:
    never, ids = demo_truth()
    result = invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF)
    assert result.exit_code == 0, result.stderr
    lines = json_lines(result.stdout)
    decisions = [d for d in lines if d["type"] == "decision"]
    assert {d["contact_id"] for d in decisions} == ids
    sent = [d for d in decisions if d["action"] == "send"]
    assert sent and not {d["email"].strip().lower() for d in sent} & never
    assert len({d["email"].strip().lower() for d in sent}) == len(sent)
    reasons = set(lines[-1]["skip"])
    assert {"no_email", "invalid_email", "opted_out", "bounced", "active_deal", "recent_activity",
            "duplicate_email", "no_owner", "inactive_owner", "missing_field"} <= reasons


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REPSEND_", "SF_", "SMTP_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "repsend", *args], capture_output=True, text=True, env=full_env,
                          timeout=60)


def test_real_process_help_lists_the_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "dormant" in result.stdout and "preview" in result.stdout
    assert "Exit codes" in result.stdout


def test_real_process_demo_dry_run() -> None:
    result = run("dormant", "--dry-run", "--as-of", DEMO_AS_OF)
    assert result.returncode == 0, result.stderr
    assert "佐藤 健" in result.stdout
    assert "dry run: nothing was sent and nothing was written" in result.stdout


def test_real_process_user_error_has_no_traceback(tmp_path: Path) -> None:
    result = run("dormant", "--dry-run", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("repsend: ")


def test_real_process_unknown_option_is_exit_2() -> None:
    result = run("dormant", "--bogus")
    assert result.returncode == 2
    assert "No such option" in result.stderr


@pytest.mark.parametrize("command", ["dormant", "preview", "log", "stats", "resolve", "init", "doctor", "optout",
                                     "unsubscribe-endpoint", "inbox", "outcomes", "sync"])
def test_the_readme_documents_every_option(command: str) -> None:
    """Docs that cannot drift: each option in --help is in the README, and each command has an example."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    help_text = invoke(command, "--help").stdout
    options = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    assert options, help_text
    missing = sorted(option for option in options if option not in readme)
    assert not missing, f"README lacks {missing} of `repsend {command}`"
    assert "Example:" in help_text and f"repsend {command}" in readme


@pytest.mark.parametrize("template", ["dormant", "dormant_ab"])
def test_the_fast_json_line_is_exactly_json_dumps(tmp_path: Path, template: str) -> None:
    """report.JsonLines writes decision lines without json.dumps for speed; they must never drift from it,
    the first time a sender is seen or any time after, with a template's variants or without, in a dry run's
    lines and in a real run's (with its outcome)."""
    import io

    from repsend.report import JsonLines, decision_record
    from repsend.selection import RunOptions, select
    from repsend.settings import load_settings
    from repsend.sfa import open_source

    rows = [contact(1), contact(2, Email=' "q"\\x@ex.jp ', LastName="山\t田"), contact(3, HasOptedOutOfEmail="1"),
            contact(4, OwnerId=""), contact(5, MailingCountry="United States", FirstName=""),
            contact(6, **{"Account.Name": 'A "quoted" \\ name\u2028'}), contact(7, FirstName="Ann", OwnerId=CARTER,
                                                                          MailingCountry="United States")]
    settings = load_settings(write_config(tmp_path, write_export(tmp_path / "export", rows)))
    decisions = list(select(settings, open_source(settings), RunOptions(date(2026, 11, 23), "dormant", template)))
    assert len(decisions) == 7 and sum(d.mail is not None for d in decisions) == 3
    variants = {d.mail.variant for d in decisions if d.mail is not None}
    assert variants == ({""} if template == "dormant" else {"a", "b"})
    out = io.StringIO()
    writer = JsonLines(out)
    for decision in decisions * 2:  # the second time round, with what the writer remembers
        writer.row(decision)
    assert out.getvalue() == "".join(json.dumps(decision_record(d), ensure_ascii=False) + "\n" for d in decisions * 2)
    real = io.StringIO()
    writer = JsonLines(real, outcome=True)
    extra = {"outcome": "sent", "message_id": "<1@acme.example>", "smtp_code": 250, "smtp_text": None}
    for decision in decisions * 2:
        writer.row(decision, extra if decision.mail is not None else None)
    assert real.getvalue() == "".join(
        json.dumps(decision_record(d, extra if d.mail is not None else {"outcome": None}), ensure_ascii=False) + "\n"
        for d in decisions * 2)


def test_dormant_help_lists_the_reason_codes_in_their_order() -> None:
    """--help names every reason, the skips in their order of precedence, then the sends (models.Reason)."""
    from repsend.models import Reason

    help_text = " ".join(invoke("dormant", "--help").stdout.split())
    listed = re.search(r"Reasons, the first that applies: ([\w, ]+); a send is (\w+) or (\w+)", help_text)
    assert listed, help_text
    skips = listed[1].split(", ")
    assert skips == [r.value for r in Reason if not r.is_send]
    assert [listed[2], listed[3]] == [r.value for r in Reason if r.is_send]


@pytest.mark.parametrize("json_out", [False, True])
def test_only_and_summary_cut_the_output_not_the_decisions(small: Path, json_out: bool) -> None:
    base = ["dormant", "--dry-run", *(["--json"] if json_out else []), "--as-of", DEMO_AS_OF, "--config", str(small)]
    everything = invoke(*base).stdout
    sends, skips, summary = (invoke(*base, *extra).stdout for extra in (["--only", "send"], ["--only", "skip"],
                                                                          ["--summary"]))
    if json_out:
        rows = json_lines(everything)
        assert json_lines(sends) == [r for r in rows if r.get("action") != "skip"]
        assert json_lines(skips) == [r for r in rows if r.get("action") != "send"]
        assert json_lines(summary) == rows[-1:]
    else:
        body = everything.split("\n\n")[0].splitlines()
        assert sends.split("\n\n")[0].splitlines() == [body[0]] + [line for line in body[1:] if "  send  " in line]
        assert skips.split("\n\n")[0].splitlines() == [body[0]] + [line for line in body[1:] if "  skip  " in line]
        assert summary.lstrip("\n") == everything[everything.index("\n\n"):].lstrip("\n")
        assert "no contacts to consider" not in summary
    assert invoke(*base, "--only", "sends").exit_code == 2


def test_the_table_fits_a_terminal_by_cutting_the_subject_first() -> None:
    import io
    from email.headerregistry import Address

    from repsend.models import Contact, Decision, Mail, Reason, Rep
    from repsend.report import Table, width

    rep = Rep(id="0055g00000AbCdEAAV", name="佐藤 健", email="k.sato@acme.example", is_active=True)
    who = Contact(id="0035g00000Q0000001", email="h.yamada@example.co.jp", owner_id=rep.id, last_name="山田")
    mail = Mail(to=Address("山田", "h.yamada", "example.co.jp"), from_=Address("佐藤 健", "k.sato", "acme.example"),
                subject="ご無沙汰しております（株式会社アクメ 佐藤）" * 3, body="", language="ja", template="dormant")
    fixed = sum(columns + 2 for _, columns in Table.COLUMNS)
    for terminal, room in ((fixed + 40, 40), (fixed + 5, 0), (None, None)):
        out = io.StringIO()
        table = Table(out, terminal_width=terminal)
        table.row(Decision(contact=who, reason=Reason.DORMANT, rep=rep, mail=mail, language="ja"))
        line = out.getvalue().splitlines()[1]
        if room is None:
            assert line.endswith(mail.subject)  # a file or a pipe gets the whole subject
        else:
            assert width(line) <= terminal
            assert (line.rstrip().endswith("…") and width(line) > fixed) if room else width(line) <= fixed


def test_the_dry_run_says_which_env_files_it_read(small: Path, tmp_path: Path) -> None:
    (Path.cwd() / ".env").write_text("SMTP_HOST=mail.example\n", encoding="utf-8")
    result = invoke("dormant", "--dry-run", "--summary", "--as-of", DEMO_AS_OF, "--config", str(small))
    assert result.exit_code == 0
    assert f"repsend: note: .env read: {(Path.cwd() / '.env').resolve()}" in result.stderr
    assert "mail.example" not in result.stderr  # which file, never what it holds
