"""Exports as admins really hand them over, through the CLI: safety data that is missing, Salesforce report
exports (labels as headers, footer lines, CP932 under its other names), and suppression lists as people
write them. What a person sees: the exit code, the message naming the file, line or column, that nobody
who must not be mailed is mailed, and that a run that stopped sent nothing and wrote no attempt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from repsend.sendlog import SendLog
from tests.helpers import CONTACT_HEADER, ROLE_HEADER, contact, deal, write_config, write_csv, write_export
from tests.smtp_server import SmtpSink
from tests.test_cli import DEMO_AS_OF, invoke, json_lines


def dry_run(config: Path, *args: str) -> Any:
    return invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF, "--config", str(config), *args)


def real_run(config: Path, sink: SmtpSink) -> Any:
    return invoke("dormant", "--json", "--as-of", DEMO_AS_OF, "--config", str(config), env=sink.env())


def reasons(output: str) -> dict[str, str]:
    return {d["contact_id"]: d["reason"] for d in json_lines(output) if d["type"] == "decision"}


def attempts(tmp_path: Path) -> list[Any]:
    database = tmp_path / "repsend.db"
    if not database.exists():
        return []
    log = SendLog.open(f"sqlite:///{database}")
    try:
        return log.rows()
    finally:
        log.close()


# ---------------------------------------------------------------------------------------------------
# Missing safety data is an error, not a note
# ---------------------------------------------------------------------------------------------------

# The gap, the scope it matters in, and what the contact it hides would have been.
GAPS = [
    ("HasOptedOutOfEmail", "account", "opted_out"),
    ("IsEmailBounced", "account", "bounced"),
    ("AccountId", "account", "active_deal"),
    ("OpportunityContactRole.csv", "contact_role", "active_deal"),
]


def gap_export(tmp_path: Path, gap: str, scope: str, **sfa: Any) -> tuple[Path, Path]:
    """An export whose second contact only the missing data keeps from a mail; the config for ``scope``.
    Returns the config and the file the message must name."""
    rows = [contact(1), contact(2, HasOptedOutOfEmail="true" if gap == "HasOptedOutOfEmail" else "false",
                                 IsEmailBounced="true" if gap == "IsEmailBounced" else "false"), contact(3)]
    # An open deal on the second contact's account; its contact role is in the file that is missing.
    deals = [deal(1, rows[1]["AccountId"] if gap == "AccountId" else "0015g9999999999AAA")]
    export = write_export(tmp_path / "export", rows, deals)
    named = export / "Contact.csv"
    if gap.endswith(".csv"):
        named = export / gap
    else:
        write_csv(named, [h for h in CONTACT_HEADER if h != gap], rows)
    config = write_config(tmp_path, export, audience={"active_deal_scope": scope},
                          smtp={"security": "none"}, sfa=sfa)
    return config, named


@pytest.mark.parametrize(("gap", "scope", "reason"), GAPS)
def test_each_missing_safety_column_stops_the_dry_run_and_the_real_run(
        tmp_path: Path, smtp_sink: SmtpSink, gap: str, scope: str, reason: str) -> None:
    config, named = gap_export(tmp_path, gap, scope)
    lacks = ": file not found" if gap.endswith(".csv") else f":1: no {gap} column"
    fix = f'export it, or accept the gap with [sfa] allow_missing = ["{gap}"]'
    for result in (dry_run(config), real_run(config, smtp_sink)):
        assert result.exit_code == 2, result.output
        assert f"repsend: {named}{lacks}: " in result.stderr and fix in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not [line for line in result.stdout.splitlines() if '"decision"' in line]
    assert smtp_sink.messages == [] and smtp_sink.connections == 0
    assert attempts(tmp_path) == []


@pytest.mark.parametrize(("gap", "scope", "reason"), GAPS)
def test_allow_missing_lets_the_run_go_on_with_exactly_one_note(
        tmp_path: Path, smtp_sink: SmtpSink, gap: str, scope: str, reason: str) -> None:
    config, named = gap_export(tmp_path, gap, scope, allow_missing=[gap])
    lacks = "is not in the export" if gap.endswith(".csv") else f"has no {gap} column"
    note = f"repsend: note: {named.name} {lacks} ([sfa] allow_missing): "
    result = dry_run(config)
    assert result.exit_code == 0, result.output
    assert result.stderr.count(note) == 1, result.stderr
    # The gap accepted means what it says: the contact only the missing data would have kept is mailed.
    assert reasons(result.stdout)[contact(2)["Id"]] == "dormant"
    sent = real_run(config, smtp_sink)
    assert sent.exit_code == 0, sent.output
    assert sent.stderr.count(note) == 1, sent.stderr
    assert len(smtp_sink.messages) == 3


def test_contact_roles_without_the_deals_ids_are_the_same_gap(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """In the contact_role scope the roles name their deals by Id: an Opportunity.csv without Id stops the
    run as a missing OpportunityContactRole.csv does."""
    from tests.helpers import OPPORTUNITY_HEADER

    config, named = gap_export(tmp_path, "AccountId", "contact_role")
    export = named.parent
    rows = [deal(1, "0015g9999999999AAA")]
    write_csv(export / "Opportunity.csv", [h for h in OPPORTUNITY_HEADER if h != "Id"], rows)
    write_csv(export / "OpportunityContactRole.csv", ROLE_HEADER,
              [{"Id": "00K5g0000000001", "OpportunityId": rows[0]["Id"], "ContactId": contact(2)["Id"]}])
    result = real_run(config, smtp_sink)
    assert result.exit_code == 2, result.output
    assert f"{export / 'Opportunity.csv'}:1: no Id column (the contact roles name their deals by Id): " in result.stderr
    assert 'allow_missing = ["OpportunityContactRole.csv"]' in result.stderr
    assert smtp_sink.messages == [] and attempts(tmp_path) == []


def test_account_id_is_no_gap_in_the_contact_role_scope(tmp_path: Path) -> None:
    config, named = gap_export(tmp_path, "AccountId", "contact_role")
    write_csv(named.parent / "OpportunityContactRole.csv", ROLE_HEADER, [])
    result = dry_run(config)
    assert result.exit_code == 0, result.output
    assert "allow_missing" not in result.stderr


def test_the_rules_that_only_shrink_the_audience_stay_notes(tmp_path: Path) -> None:
    rows = [contact(1), contact(2)]
    export = write_export(tmp_path / "export", rows)
    write_csv(export / "Contact.csv", [h for h in CONTACT_HEADER if h not in ("CreatedDate", "LastActivityDate")],
              rows)
    result = dry_run(write_config(tmp_path, export))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("repsend: note: Contact.csv has no CreatedDate column") == 1
    assert result.stderr.count("repsend: note: Contact.csv has no LastActivityDate column") == 1


@pytest.mark.parametrize(("value", "expected"), [
    ('["IsEmailBounce"]', "'IsEmailBounce' is not a gap repsend knows (did you mean `IsEmailBounced`?)"),
    ('"IsEmailBounced"', 'expected a list, e.g. ["a", "b"]'),
    ("[1]", "expected a string in quotes"),
])
def test_allow_missing_is_checked(tmp_path: Path, value: str, expected: str) -> None:
    export = write_export(tmp_path / "export", [contact(1)])
    config = write_config(tmp_path, export)
    config.write_text(config.read_text(encoding="utf-8").replace("[sfa]\n", f"[sfa]\nallow_missing = {value}\n"),
                      encoding="utf-8")
    result = dry_run(config)
    assert result.exit_code == 2
    assert f"{config}: [sfa] allow_missing" in result.stderr and expected in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------------
# Suppression entries as people write them
# ---------------------------------------------------------------------------------------------------

# Each form of a suppression list, written for the address of contact 2 (c2@example.co.jp), and the encoding.
SUPPRESSION_FORMS = {
    "bare": ("C2@Example.co.jp\n", "utf-8"),
    "bare with a comment": ("# asked at a trade show\n  c2@example.co.jp   # by phone\n", "utf-8"),
    "name and address": ("鈴木 <c2@example.co.jp>\n", "utf-8"),
    "quoted name with a comma": ('"Yamada, Hanako" <c2@example.co.jp>\n', "utf-8"),
    "csv row": ('"c2@example.co.jp",opted out\n', "utf-8"),
    "csv with an email header": ("Name,Email,Note\n山田 花子,c2@example.co.jp,電話で依頼\n", "utf-8"),
    "csv with a Japanese header": ("氏名,メールアドレス\n山田 花子,\"山田 <c2@example.co.jp>\"\n", "utf-8"),
    "utf-8 with a bom": ("\ufeffEmail\r\nc2@example.co.jp\r\n", "utf-8"),
    "typed in full-width": ("ｃ２＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ\n", "utf-8"),
    "a mailto link": ("<mailto:c2@example.co.jp>\n", "utf-8"),
    "cp932 from excel": ("氏名,メールアドレス,備考\r\n髙橋 花子,c2@example.co.jp,①配信停止\r\n", "cp932"),
}


def suppression_config(tmp_path: Path, text: str, encoding: str, count: int = 3) -> Path:
    export = write_export(tmp_path / "export", [contact(n) for n in range(1, count + 1)])
    listing = tmp_path / "suppressed.txt"
    listing.write_bytes(text.encode(encoding))
    return write_config(tmp_path, export, audience={"suppression_file": str(listing)}, smtp={"security": "none"})


@pytest.mark.parametrize("form", list(SUPPRESSION_FORMS))
def test_each_suppression_form_keeps_that_person_from_a_mail(tmp_path: Path, form: str) -> None:
    text, encoding = SUPPRESSION_FORMS[form]
    result = dry_run(suppression_config(tmp_path, text, encoding))
    assert result.exit_code == 0, result.output
    assert list(reasons(result.stdout).values()) == ["dormant", "suppressed", "dormant"]


def test_a_real_run_does_not_mail_anyone_on_the_list(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    text = ("# one of each\nc1@example.co.jp\n鈴木 <c2@example.co.jp>\n\"c3@example.co.jp\",opted out\n"
            "Suzuki, Ichiro <c4@example.co.jp>\n")
    result = real_run(suppression_config(tmp_path, text, "utf-8", count=6), smtp_sink)
    assert result.exit_code == 0, result.output
    assert sorted(to for message in smtp_sink.messages for to in message.rcpt_tos) == [
        "c5@example.co.jp", "c6@example.co.jp"]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("c1@example.co.jp\nopted out\n", 2, "no address in 'opted out'"),
    ("# list\n\n鈴木 一郎\n", 3, "no address in '鈴木 一郎'"),
    ("Email,Note\nc1@example.co.jp,x\n,asked by phone\n", 3, "no address in the 'Email' column"),
])
def test_a_suppression_line_without_an_address_stops_the_run(
        tmp_path: Path, smtp_sink: SmtpSink, text: str, line: int, what: str) -> None:
    config = suppression_config(tmp_path, text, "utf-8")
    for result in (dry_run(config), real_run(config, smtp_sink)):
        assert result.exit_code == 2, result.output
        assert f"repsend: {tmp_path / 'suppressed.txt'}:{line}: {what}" in result.stderr, result.stderr
    assert smtp_sink.messages == [] and attempts(tmp_path) == []


# ---------------------------------------------------------------------------------------------------
# Encodings and a lone CR
# ---------------------------------------------------------------------------------------------------

CP932_ONLY = contact(1, LastName="髙橋", FirstName="①花子", Title="部長～課長")  # not in strict Shift_JIS


@pytest.mark.parametrize("encoding", ["windows-31j", "Windows-31J", "shift_jis", "Shift-JIS", "sjis", "MS932"])
def test_every_name_of_cp932_reads_a_cp932_export(tmp_path: Path, encoding: str) -> None:
    rows = [CP932_ONLY, contact(2, HasOptedOutOfEmail="true")]
    export = write_export(tmp_path / "export", rows, encoding="cp932")
    result = dry_run(write_config(tmp_path, export, sfa={"encoding": encoding}))
    assert result.exit_code == 0, result.output
    decisions = [d for d in json_lines(result.stdout) if d["type"] == "decision"]
    assert [d["reason"] for d in decisions] == ["dormant", "opted_out"]
    assert "髙橋" in json.dumps(decisions[0], ensure_ascii=False) or decisions[0]["subject"]


@pytest.mark.parametrize("encoding", ["utf-8", "cp932", "windows-31j", "shift_jis"])
def test_a_decode_error_suggests_cp932_whatever_was_set(tmp_path: Path, encoding: str) -> None:
    written = "utf-8" if encoding == "utf-8" else "cp932"
    export = write_export(tmp_path / "export", [contact(1), contact(2)], encoding=written)
    path = export / "Contact.csv"
    # A lead byte without its trail byte: neither UTF-8 nor CP932 reads it.
    path.write_bytes(path.read_bytes().replace("山田2".encode(written), b"\x82\xff2"))
    result = dry_run(write_config(tmp_path, export, sfa={"encoding": encoding}))
    assert result.exit_code == 2, result.output
    assert f"{path}:3: not valid {encoding}" in result.stderr and '"cp932"' in result.stderr, result.stderr


@pytest.mark.parametrize("quoting", ["all", "minimal"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_lone_cr_inside_a_quoted_field_is_read_by_both_readers(tmp_path: Path, quoting: str, newline: str) -> None:
    from repsend.sfa.csv_reader import TEXT, CsvFile
    from tests.exports import csv_text, write_raw

    rows = [contact(1, Title="部長\r営業部"), contact(2, HasOptedOutOfEmail="true", **{"Account.Name": "A\rB"}),
            contact(3, Title="\r")]
    export = write_export(tmp_path / "export", rows)
    write_raw(export / "Contact.csv", csv_text(CONTACT_HEADER, rows, quoting=quoting, newline=newline))
    frames = [[row for frame in CsvFile(export / "Contact.csv", "utf-8", fast=fast, chunk_bytes=80).frames(
        {"Id": TEXT, "Title": TEXT, "Account.Name": TEXT, "LastName": TEXT}, lines=True) for row in frame.rows()]
        for fast in (True, False)]
    assert frames[0] == frames[1]
    assert [row[1:4] for row in frames[0]] == [("部長\r営業部", "株式会社サンプル1", "山田1"),
                                               ("", "A\rB", "山田2"), ("\r", "株式会社サンプル3", "山田3")]
    result = dry_run(write_config(tmp_path, export))
    assert result.exit_code == 0, result.output
    assert list(reasons(result.stdout).values()) == ["dormant", "opted_out", "dormant"]


# ---------------------------------------------------------------------------------------------------
# Salesforce report exports as they are
# ---------------------------------------------------------------------------------------------------


def comparable(output: str) -> list[dict[str, Any]]:
    """The decisions and the summary, Ids cut to 15 characters (a report shows those)."""
    lines = json_lines(output)
    for line in lines:
        for key in ("contact_id", "rep_id"):
            if line.get(key):
                line[key] = line[key][:15]
        if line.get("reason") == "no_owner" and line.get("detail"):
            line["detail"] = line["detail"].strip()[:15]  # the owner Id as the file writes it
    return lines


@pytest.fixture(scope="module")
def data_loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.exports import SEEDS, random_export

    return random_export(tmp_path_factory.mktemp("dataloader"), SEEDS[0], contacts=400)


@pytest.mark.parametrize("scope", ["account", "contact_role"])
@pytest.mark.parametrize("language", ["en", "ja"])
def test_a_report_export_decides_as_the_data_loader_export_of_the_same_org(
        tmp_path: Path, data_loader: Path, language: str, scope: str) -> None:
    from tests.exports import config_file, report_export

    report = report_export(data_loader, tmp_path / "report", language)
    assert "Copyright (c) 2000-2026 salesforce.com" in (report / "Contact.csv").read_text(encoding="utf-8")
    sections: dict[str, Any] = {"audience": {"active_deal_scope": scope}, "sfa": {"contact_fields": ["Department"]}}
    expected = dry_run(config_file(tmp_path / "dl", data_loader, **sections))
    got = dry_run(config_file(tmp_path / "rp", report, **sections))
    assert expected.exit_code == 0 and got.exit_code == 0, got.output
    assert comparable(got.stdout) == comparable(expected.stdout)
    summary = json_lines(got.stdout)[-1]
    assert summary["skip"]["opted_out"] and summary["skip"]["bounced"] and summary["skip"]["active_deal"]
    assert "Traceback" not in got.stderr and "allow_missing" not in got.stderr


def test_a_report_export_in_cp932_from_japanese_excel(tmp_path: Path, data_loader: Path) -> None:
    from tests.exports import config_file, report_export

    expected = dry_run(config_file(tmp_path / "dl", data_loader))
    report = report_export(data_loader, tmp_path / "report", "ja", encoding="cp932")
    got = dry_run(config_file(tmp_path / "rp", report, sfa={"encoding": "windows-31j"}))
    assert got.exit_code == 0, got.output
    # cp932 lacks a few characters of the random names (written as "?"): compare the reasons.
    assert [d.get("reason") for d in comparable(got.stdout)] == [d.get("reason") for d in comparable(expected.stdout)]


def report_config(tmp_path: Path, header: list[str], rows: list[dict[str, str]], footer: list[str] | None = None,
                  **sfa: Any) -> tuple[Path, Path]:
    """An export whose Contact.csv is ``header`` and ``rows`` as written (labels), ending with ``footer``."""
    from tests.exports import csv_text, write_raw

    export = write_export(tmp_path / "export", [])
    path = export / "Contact.csv"
    write_raw(path, csv_text(header, rows) + "".join(line + "\n" for line in (footer or [])))
    return write_config(tmp_path, export, sfa=sfa), path


LABELLED = ["Contact ID", "Email", "Email Opt Out", "Email Bounced", "Account ID", "Owner ID", "Last Name"]


def labelled(n: int, **fields: str) -> dict[str, str]:
    row = contact(n, **fields)
    return {"Contact ID": row["Id"][:15], "Email": row["Email"], "Email Opt Out": row["HasOptedOutOfEmail"],
            "Email Bounced": row["IsEmailBounced"], "Account ID": row["AccountId"][:15], "Owner ID": row["OwnerId"],
            "Last Name": row["LastName"], **{k: v for k, v in fields.items() if k in LABELLED}}


def test_a_header_that_no_table_maps_is_named_when_the_column_is_needed(tmp_path: Path) -> None:
    header = [name if name != "Email Opt Out" else "Opt-Out (Email)" for name in LABELLED]
    rows = [labelled(1), {**labelled(2), "Opt-Out (Email)": "1"}]
    for row in rows:
        row.setdefault("Opt-Out (Email)", row.pop("Email Opt Out"))
    config, path = report_config(tmp_path, header, rows)
    result = dry_run(config)
    assert result.exit_code == 2
    assert f"{path}:1: no HasOptedOutOfEmail column" in result.stderr
    assert "headers not mapped to an API name: 'Opt-Out (Email)'" in result.stderr
    assert '"Contact.csv:Opt-Out (Email)" = "HasOptedOutOfEmail"' in result.stderr, result.stderr
    # The config maps it: the opted-out contact is skipped.
    config.write_text(config.read_text(encoding="utf-8") + '\n[sfa.columns]\n"Contact.csv:Opt-Out (Email)" = '
                      '"HasOptedOutOfEmail"\n', encoding="utf-8")
    mapped = dry_run(config)
    assert mapped.exit_code == 0, mapped.output
    assert list(reasons(mapped.stdout).values()) == ["dormant", "opted_out"]


def test_a_required_column_under_an_unknown_label_is_named(tmp_path: Path) -> None:
    header = [name if name != "Owner ID" else "Contact Owner Alias" for name in LABELLED]
    rows = [{**labelled(1), "Contact Owner Alias": "ksato"}]
    config, path = report_config(tmp_path, header, rows)
    result = dry_run(config)
    assert result.exit_code == 2
    assert f"{path}:1: missing required column OwnerId" in result.stderr
    assert "'Contact Owner Alias'" in result.stderr, result.stderr


def test_an_unmapped_header_nobody_needs_is_no_error(tmp_path: Path) -> None:
    rows = [{**labelled(1), "Lead Source": "Web"}]
    config, _ = report_config(tmp_path, [*LABELLED, "Lead Source"], rows)
    result = dry_run(config)
    assert result.exit_code == 0, result.output


def test_a_report_that_names_the_owner_is_matched_to_the_user(tmp_path: Path) -> None:
    from tests.helpers import REPS

    header = [name if name != "Owner ID" else "Contact Owner" for name in LABELLED]
    rows = [{**labelled(n), "Contact Owner": owner} for n, owner in
            enumerate(["佐藤 健", " Emily Carter ", "鈴木 一郎", "Nobody Here", "Twin Name"], start=1)]
    twins = [{**REPS[0], "Id": f"0055g00000TwIn{n}AAV", "Name": "Twin Name", "Email": f"t{n}@acme.example"}
             for n in (1, 2)]
    config, path = report_config(tmp_path, header, rows)
    from tests.helpers import USER_HEADER

    write_csv(path.parent / "User.csv", USER_HEADER, [*REPS, *twins])
    result = dry_run(config)
    assert result.exit_code == 0, result.output
    decisions = [d for d in json_lines(result.stdout) if d["type"] == "decision"]
    assert [(d["reason"], d["from"]) for d in decisions] == [
        ("dormant", "佐藤 健 <k.sato@acme.example>"), ("dormant", "Emily Carter <e.carter@acme.example>"),
        ("inactive_owner", None), ("no_owner", None), ("no_owner", None)]
    assert result.stderr.count("holds names: each is matched to the one user of that name") == 1


FOOTER = ["", '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."',
          '"Confidential Information - Do Not Distribute"']


@pytest.mark.parametrize("footer", [
    FOOTER,
    ["", '"機密情報 - 配布禁止"', '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."'],
    ["", "", '"Dormant, Japan"', *FOOTER[1:], '"Generated By:  Admin User  11/23/2026 9:15 AM"', '"Acme, K.K."', ""],
    FOOTER[1:],  # no blank line before it
    ["", '"機密情報 － 配布禁止"', '"Copyright © 2000–2026 salesforce.com, inc. All rights reserved."'],
])
def test_a_report_footer_is_not_read_as_records(tmp_path: Path, footer: list[str]) -> None:
    rows = [labelled(1), labelled(2, **{"Email Opt Out": "1"}), labelled(3)]
    config, _ = report_config(tmp_path, LABELLED, rows, footer)
    result = dry_run(config)
    assert result.exit_code == 0, result.output
    assert list(reasons(result.stdout).values()) == ["dormant", "opted_out", "dormant"]


def test_a_footer_only_report_has_no_contacts(tmp_path: Path) -> None:
    config, _ = report_config(tmp_path, LABELLED, [], FOOTER)
    result = dry_run(config)
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[-1]["considered"] == 0


def test_lines_that_only_look_like_a_footer_stay_errors(tmp_path: Path) -> None:
    """A single cell at the end that no footer writes is a short record; a footer line inside a quoted
    cell of the last record is that record's value."""
    config, path = report_config(tmp_path, LABELLED, [labelled(1), labelled(2)], ["", '"Total: 2"'])
    result = dry_run(config)
    assert result.exit_code == 2 and f"{path}:5: 1 fields where the header has 7" in result.stderr, result.stderr
    quoted = labelled(2, **{"Last Name": "山田\n\nCopyright (c) 2000-2026 salesforce.com, inc."})
    config, path = report_config(tmp_path / "quoted", LABELLED, [labelled(1), quoted])
    result = dry_run(config)
    assert result.exit_code == 0, result.output
    assert len(reasons(result.stdout)) == 2
