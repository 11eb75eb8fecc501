"""CSV exports as real orgs write them, through the one engine: seeded random exports with every case the
rules know, careless values, quoting, line ends, encodings and malformed files.

Every test runs ``repsend dormant --dry-run`` as a user would and asserts what the user sees: the reason
each contact gets, the notes, the summary, and for a malformed file the message and exit code. The JSON
and the table dry runs of the same export must agree (one engine: no output decides differently).
"""

from __future__ import annotations

import io
import json
import random
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from repsend.audience import History
from repsend.cli import app
from repsend.errors import RepsendError
from repsend.report import JsonLines, summary_record
from repsend.selection import RunOptions, Summary, select
from repsend.settings import Settings, load_settings
from repsend.sfa.csv_export import CsvExportSource
from tests.exports import (
    AS_OF,
    CARELESS_SEED,
    CONFIGS,
    DORMANT_SINCE,
    EXTRA_REPS,
    MALFORMED,
    ODD_VALID,
    SEEDS,
    config_file,
    csv_text,
    random_export,
    settings_for,
    write_raw,
)
from tests.helpers import (
    CARTER,
    CONTACT_HEADER,
    OPPORTUNITY_HEADER,
    REPO,
    REPS,
    ROLE_HEADER,
    SATO,
    SUZUKI,
    TEMPLATES,
    USER_HEADER,
    _toml,
    contact,
    deal,
    table_summary,
    write_export,
)

DEMO_CONFIG = REPO / "config" / "repsend.toml"
OPTIONS = RunOptions(as_of=AS_OF, campaign="dormant", template="dormant")

Result = tuple[str, dict[str, Any], list[str]]


def dry_run(settings: Settings, options: RunOptions = OPTIONS, history: History | None = None) -> Result:
    """The decision lines, the summary record and the notes of ``repsend dormant --dry-run --json``."""
    source = CsvExportSource.from_settings(settings)
    summary = Summary()
    out = io.StringIO()
    writer = JsonLines(out)
    for decision in select(settings, source, options, history, summary=summary):
        writer.row(decision)
    return out.getvalue(), summary_record(summary, dry_run=True), list(source.notes)


def assert_rejected(settings: Settings, options: RunOptions = OPTIONS) -> str:
    """The export stops the run before any decision: the error's message."""
    with pytest.raises(RepsendError) as raised:
        dry_run(settings, options)
    assert raised.value.exit_code == 2
    return str(raised.value)


def assert_decided(settings: Settings, options: RunOptions = OPTIONS, history: History | None = None) -> Result:
    """The dry run of an export it accepts: one decision line per contact, the summary counting them."""
    text, summary, notes = dry_run(settings, options, history)
    decisions = [json.loads(line) for line in text.splitlines()]
    # The writer makes its lines without json.dumps: every line must be the very one json.dumps writes.
    assert text == "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in decisions)
    assert len(decisions) == summary["considered"]
    assert sum(d["action"] == "send" for d in decisions) == summary["send"]
    for d in decisions:
        assert (d["action"] == "send") == (d["reason"] in ("dormant", "fallback_sender")), d
        assert (d["from"] is not None) == (d["action"] == "send"), d
    return text, summary, notes


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, bool], Path]:
    """One export per (seed, weird), made once for every config."""
    made: dict[tuple[int, bool], Path] = {}
    root = tmp_path_factory.mktemp("random")
    for seed in SEEDS:
        made[(seed, False)] = random_export(root / f"s{seed}", seed)
    made[(CARELESS_SEED, True)] = random_export(root / f"s{CARELESS_SEED}-careless", CARELESS_SEED, weird=True)
    return made


# ---------------------------------------------------------------------------------------------------
# 1. The demo org
# ---------------------------------------------------------------------------------------------------


def test_demo_org_as_its_readme_describes() -> None:
    settings = load_settings(DEMO_CONFIG)
    _, summary, _ = assert_decided(settings)
    # The demo's README: 63 contacts, 23 sends.
    assert summary["considered"] == 63 and summary["send"] == 23


@pytest.mark.parametrize("limit", [1, 5, 23, 24])
def test_demo_org_with_limit_and_cap(tmp_path: Path, limit: int) -> None:
    demo = REPO / "config" / "demo"
    settings = load_settings(config_file(tmp_path, demo, rate={"per_rep_per_day": 2}))
    text, summary, _ = assert_decided(settings, RunOptions(AS_OF, "dormant", "dormant", limit=limit))
    assert summary["send"] == min(limit, 10)  # two a day from each rep with dormant contacts: 10 in all
    last = json.loads(text.splitlines()[-1])
    assert (last["action"] == "send") == (limit <= 10)  # a run with a limit ends at its last send


# ---------------------------------------------------------------------------------------------------
# 2. Random exports under every config
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("seed", SEEDS)
def test_random_export_parity(tmp_path: Path, exports: dict[tuple[int, bool], Path], seed: int, config: str) -> None:
    export = exports[(seed, False)]
    settings, options, history = settings_for(tmp_path, export, config, seed)
    _, summary, _ = assert_decided(settings, options, history)
    assert summary["considered"] > 0 and summary["send"] > 0


@pytest.mark.parametrize("config", ["account", "rep_cap", "fallback_by_address", "contact_fields", "history",
                                    "english_default", "kitchen_sink"])
def test_random_export_with_careless_values_parity(tmp_path: Path, exports: dict[tuple[int, bool], Path],
                                                   config: str) -> None:
    """Unicode spaces around addresses and language values, times like 99:99, duplicate users, odd IDs,
    control characters in rep names: all of them are read, and decided."""
    export = exports[(CARELESS_SEED, True)]
    settings, options, history = settings_for(tmp_path, export, config, CARELESS_SEED)
    _, summary, _ = assert_decided(settings, options, history)
    assert summary["send"] > 0 and summary["skip"].get("invalid_header")


def test_the_random_export_has_every_reason(tmp_path: Path, exports: dict[tuple[int, bool], Path]) -> None:
    """The generator is worth its name: between its configs, every reason code comes up."""
    seen: set[str] = set()
    for config in ("account", "fallback_by_address", "history", "sender_domains", "suppression"):
        settings, options, history = settings_for(tmp_path, exports[(SEEDS[0], False)], config, SEEDS[0])
        _, summary, _ = dry_run(settings, options, history)
        seen |= set(summary["skip"])
        if summary["send"]:
            seen.add("send")
    assert seen >= {"no_email", "invalid_email", "unsendable_address", "opted_out", "bounced", "suppressed",
                    "already_sent", "active_deal", "recent_activity", "cooldown", "duplicate_email", "no_owner",
                    "inactive_owner", "sender_domain", "missing_field", "invalid_header", "rep_cap", "send"}


# ---------------------------------------------------------------------------------------------------
# Small exports aimed at one thing each
# ---------------------------------------------------------------------------------------------------


def reasons(text: str) -> dict[str, str]:
    """contact_id -> reason, from decision lines."""
    return {d["contact_id"]: d["reason"] for d in map(json.loads, text.splitlines())}


def small_run(tmp_path: Path, contacts: list[dict[str, str]], deals: list[dict[str, str]] = (),
              roles: list[dict[str, str]] | None = None, history: History | None = None,
              options: RunOptions = OPTIONS, **sections: dict[str, Any]) -> Result:
    export = write_export(tmp_path / "export", contacts, deals, roles)
    settings = load_settings(config_file(tmp_path, export, **sections))
    return assert_decided(settings, options, history)


def test_dates_at_the_boundary_in_every_spelling(tmp_path: Path) -> None:
    days = [DORMANT_SINCE - timedelta(days=1), DORMANT_SINCE, AS_OF, AS_OF + timedelta(days=400)]
    spellings = []
    for day in days:
        y, m, d, iso = day.year, day.month, day.day, day.isoformat()
        spellings += [iso, f"{y}/{m}/{d}", f"{y}/{m:02d}/{d:02d}", f"{y}-{m}-{d}", f"{iso}T00:00:00.000Z",
                      f"{iso}T23:59:59.999Z", f"{iso} 9:05", f"{iso}T23:30:00-10:00", f"{iso}T00:30:00+09:00",
                      f"{iso}T12:00:00+0900", f" {iso} "]
    rows = []
    for n, value in enumerate(spellings):
        rows.append(contact(2 * n + 1, LastActivityDate=value))
        rows.append(contact(2 * n + 2, LastActivityDate="", CreatedDate=value))
    text, summary, _ = small_run(tmp_path, rows)
    assert summary["send"] and summary["skip"]["recent_activity"]


def test_deals_reach_contacts_through_account_primary_contact_and_role(tmp_path: Path) -> None:
    rows = [contact(n) for n in range(1, 9)]
    deals = [
        deal(1, rows[0]["AccountId"][:15]),  # open on the account
        deal(2, "", contact_id=rows[1]["Id"][:15]),  # open, primary contact only
        deal(3, rows[7]["AccountId"], closed=True, changed="2026-06-01", contact_id=""),  # closed recently
        deal(4, "", closed=True, changed=DORMANT_SINCE.isoformat(), contact_id=rows[3]["Id"]),  # closed, boundary
        deal(5, "0015g9999999999AAA"),  # open, reaches rows[2] by role
        deal(6, "0015g9999999998AAA", closed=True, changed="2026-11-01"),  # closed recently, role rows[4]
        deal(7, rows[5]["AccountId"], closed=True, changed="2020-01-01"),  # closed long ago
    ]
    roles = [{"Id": "00K5g0000000001", "OpportunityId": deals[4]["Id"][:15], "ContactId": rows[2]["Id"][:15]},
             {"Id": "00K5g0000000002", "OpportunityId": deals[5]["Id"], "ContactId": rows[4]["Id"]},
             {"Id": "00K5g0000000003", "OpportunityId": deals[4]["Id"], "ContactId": ""}]
    rows.append(contact(20, Email=rows[2]["Email"].upper()))  # the same person as a contact in a deal
    for scope in ("account", "contact_role"):
        text, _, _ = small_run(tmp_path / scope, rows, deals, roles, audience={"active_deal_scope": scope})
        got = reasons(text)
        # A primary contact and a contact role put a person in a deal in either scope, on every record.
        assert got[rows[1]["Id"]] == got[rows[2]["Id"]] == got[rows[-1]["Id"]] == "active_deal"
        assert got[rows[4]["Id"]] == "recent_activity"  # role on a deal closed recently
        assert got[rows[5]["Id"]] == "dormant"  # its account's deal closed long ago
        # An open deal on the account reaches every contact there only in account scope.
        assert got[rows[0]["Id"]] == ("active_deal" if scope == "account" else "dormant")


@pytest.mark.parametrize("where", ["opportunity", "role"])
def test_a_control_character_around_a_deal_key_is_stripped(tmp_path: Path, where: str) -> None:
    """\\x1c-\\x1f around a key are stripped with the spaces (as Python's str.strip does, which a faster
    parser may not): the deal still reaches its contact."""
    rows = [contact(n) for n in range(1, 5)]
    if where == "opportunity":
        deals = [deal(1, "\x1f" + rows[0]["AccountId"]), deal(2, "", contact_id="\x1d" + rows[1]["Id"])]
        roles = None
    else:
        deals = [deal(1, "0015g9999999999AAA")]
        roles = [{"Id": "00K5g0000000001", "OpportunityId": "\x1e" + deals[0]["Id"], "ContactId": rows[0]["Id"]},
                 {"Id": "00K5g0000000002", "OpportunityId": deals[0]["Id"], "ContactId": "\x1c" + rows[1]["Id"]}]
    text, _, _ = small_run(tmp_path, rows, deals, roles)
    got = reasons(text)
    assert [got[row["Id"]] for row in rows] == ["active_deal", "active_deal", "dormant", "dormant"]


def test_an_export_without_contacts_or_optional_files(tmp_path: Path) -> None:
    """Header only: no contacts, hence no notes about Contact.csv columns (they are said at the first
    record); no OpportunityContactRole.csv: its note."""
    text, summary, notes = small_run(tmp_path, [])
    assert text == "" and summary["considered"] == 0
    assert any("OpportunityContactRole.csv is not in the export" in note for note in notes)
    assert not any("Contact.csv has no" in note for note in notes)


@pytest.mark.parametrize("subject", [
    "100% for {{ contact.name }} ({{ contact.id }}) at {{ contact.account_name }}, {{ contact.title | default('-') }}",
    "{{ contact.first_name }}",  # the subject is the value alone: stripping it must not differ
    "For {{ contact.email }}",  # an address in the subject: every mail is composed
])
def test_subjects_made_without_composing_are_those_composing_makes(tmp_path: Path, subject: str) -> None:
    """The engine composes the first mail of each sender, language and shape, and makes the rest from
    the subject it learned there; the values (with %, %s, spaces and other scripts) land where Jinja
    puts them, and the mails after the first read their own values."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    for language in ("ja", "en"):
        path = templates / "dormant" / f"{language}.txt"
        body = path.read_text(encoding="utf-8").split("\n", 1)[1]
        path.write_text(f"Subject: {subject}\n{body}", encoding="utf-8")
    names = ["花子", "50%", "%s", "  Anne Marie ", "O'Brien \"Jr\"", "Zoë", "a%%b", "%(x)s"]
    rows = [contact(n, FirstName=name, Title="部長" if n % 2 else "", MailingCountry="Japan" if n % 3 else "USA")
            for n, name in enumerate(names * 2, start=1)]
    text, summary, _ = small_run(tmp_path, rows, template={"dir": str(templates)})
    subjects = {d["contact_id"]: d["subject"] for d in map(json.loads, text.splitlines()) if d["action"] == "send"}
    assert summary["send"] == len(rows) == len(subjects)
    for row in rows:
        got = subjects[row["Id"]]
        if "contact.email" in subject:
            assert got == f"For {row['Email']}"
        else:
            assert row["FirstName"].strip() in got
            if "contact.id" in subject:
                assert row["Id"] in got and got.startswith("100% for ")


def test_addresses_not_in_ascii_in_an_otherwise_plain_export(tmp_path: Path) -> None:
    """A record whose address is not ASCII, in an export that is otherwise plain: its opt-out, bounce and
    dates still count."""
    recent = (AS_OF - timedelta(days=3)).isoformat()
    rows = [contact(1, Email="hanako@例え.jp", HasOptedOutOfEmail="true"),
            contact(2, Email="taro@例え.jp", LastActivityDate=recent),
            contact(3, Email="jiro@例え.jp", IsEmailBounced="TRUE"),
            contact(4, Email="saburo@例え.jp"),
            contact(5), contact(6, HasOptedOutOfEmail="1")]
    text, _, _ = small_run(tmp_path, rows)
    got = reasons(text)
    assert [got[row["Id"]] for row in rows] == ["opted_out", "recent_activity", "bounced", "dormant", "dormant",
                                                "opted_out"]


def test_notes_for_missing_optional_columns(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [contact(1), contact(2, Email="")], [deal(1, "0015g0000000001")])
    header = ["ID", "EMAIL ", " OwnerId", "LastName", "FirstName"]
    rows = [{"ID": c["Id"], "EMAIL ": c["Email"], " OwnerId": c["OwnerId"], "LastName": c["LastName"],
             "FirstName": c["FirstName"]} for c in (contact(1), contact(2, Email=""), contact(3, OwnerId=CARTER))]
    write_raw(export / "Contact.csv", csv_text(header, rows))
    opp = [{"AccountId": "0015g0000000001", "IsClosed": "false"}]
    write_raw(export / "Opportunity.csv", csv_text(["AccountId", "IsClosed"], opp))
    gaps = ["HasOptedOutOfEmail", "IsEmailBounced", "AccountId"]
    settings = load_settings(config_file(tmp_path, export, sfa={"contact_fields": ["Department", "Department"],
                                                                "allow_missing": gaps}))
    _, _, notes = assert_decided(settings)
    assert len(notes) >= 6
    assert [note.split(" (", 1)[0] for note in notes if "allow_missing" in note] == [
        f"Contact.csv has no {gap} column" for gap in gaps]


def test_duplicate_and_reordered_columns(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [])
    header = ["Email", "Id", "email", "OwnerId", "LastName", "MAILINGCOUNTRY", "Extra"]
    rows = [{"Email": "first@example.jp", "Id": "0035g0000000001AAA", "email": "Second@Example.jp",
             "OwnerId": SATO, "LastName": "山田", "MAILINGCOUNTRY": "united states", "Extra": "x"},
            {"Email": "", "Id": "0035g0000000002AAA", "email": "", "OwnerId": CARTER, "LastName": "Smith",
             "MAILINGCOUNTRY": "", "Extra": ""}]
    write_raw(export / "Contact.csv", csv_text(header, rows))
    allow = {"allow_missing": ["HasOptedOutOfEmail", "IsEmailBounced", "AccountId"]}
    settings = load_settings(config_file(tmp_path, export, sfa=allow))
    text, _, _ = assert_decided(settings)
    assert "second@example.jp".casefold() in text.casefold()


@pytest.mark.parametrize(("quoting", "newline", "bom"), [("all", "\r\n", True), ("minimal", "\r\n", False),
                                                       ("minimal", "\n", True)])
def test_quoting_line_endings_and_bom(tmp_path: Path, quoting: str, newline: str, bom: bool) -> None:
    """Data Loader quotes every cell, Excel only where needed; CRLF; a BOM on every file; a cell with a
    line break, a comma, quotes: the same decisions, and nothing here to decline."""
    export = write_export(tmp_path / "export", [])
    rows = [contact(1, LastName='O"Neil', Title='say "hi"'), contact(2, **{"Account.Name": "A, Inc."}),
            contact(3, FirstName="Ann\nMarie", MailingCountry="USA"), contact(4, Email=" c1@EXAMPLE.co.jp "),
            contact(5, Title="", FirstName="", MailingCountry="")]
    write_raw(export / "Contact.csv", csv_text(CONTACT_HEADER, rows, quoting=quoting, newline=newline), bom=bom)
    write_raw(export / "User.csv", csv_text(USER_HEADER, REPS, quoting=quoting, newline=newline), bom=bom)
    deals = [deal(1, rows[1]["AccountId"], closed=True, changed="2026-10-10"), deal(2, rows[3]["AccountId"])]
    write_raw(export / "Opportunity.csv", csv_text(OPPORTUNITY_HEADER, deals, quoting=quoting, newline=newline),
              bom=bom)
    assert_decided(load_settings(config_file(tmp_path, export)))


@pytest.mark.parametrize("newline", ["\r", "\r\r\n", "\n\r\n"])
@pytest.mark.parametrize("file", ["Contact.csv", "User.csv", "Opportunity.csv", "OpportunityContactRole.csv"])
def test_old_mac_line_endings(tmp_path: Path, file: str, newline: str) -> None:
    """A file whose lines end in CR alone (Excel for Mac's "CSV (Macintosh)"), or with a stray CR: the csv
    module reads each CR as a line end (and skips the blank line it leaves). Open deals and sends must
    come out the same, or the engine must decline."""
    rows = [contact(1), contact(2, OwnerId=CARTER), contact(3), contact(4, Email="C1@example.co.jp"), contact(5)]
    deals = [deal(1, rows[1]["AccountId"][:15]), deal(2, "", contact_id=rows[2]["Id"][:15]), deal(3, "x")]
    roles = [{"Id": "00K5g0000000001", "OpportunityId": deals[2]["Id"][:15], "ContactId": rows[3]["Id"][:15]}]
    export = write_export(tmp_path / "export", rows, deals, roles)
    headers = {"Contact.csv": CONTACT_HEADER, "User.csv": USER_HEADER, "Opportunity.csv": OPPORTUNITY_HEADER,
               "OpportunityContactRole.csv": ROLE_HEADER}
    records = {"Contact.csv": rows, "User.csv": REPS, "Opportunity.csv": deals, "OpportunityContactRole.csv": roles}
    write_raw(export / file, csv_text(headers[file], records[file], newline=newline))
    expected = assert_decided(load_settings(config_file(tmp_path, export)))
    assert expected[1] == {"type": "summary", "considered": 5, "send": 1, "skip": {"active_deal": 4},
                           "dry_run": True}


@pytest.mark.parametrize("case", ["blank_lines", "trailing_blank_lines", "quotes_in_unquoted_cells"])
def test_careless_csv_is_read_the_same_or_declined(tmp_path: Path, case: str) -> None:
    """Blank lines between and after records, quotes inside unquoted cells: the csv module reads them
    (blank lines are no records, such a quote is a character); the engine agrees or declines."""
    export = write_export(tmp_path / "export", [])
    rows = [contact(1, LastName='O"Neil', Title='say "hi"', FirstName='A "B" C'), contact(2),
            contact(3, FirstName="Ann\nMarie"), contact(4, Email=" c1@EXAMPLE.co.jp ")]
    if case == "quotes_in_unquoted_cells":
        text = csv_text(CONTACT_HEADER, rows, random.Random(3), quoting="mixed")
    else:
        head, *records = csv_text(CONTACT_HEADER, rows, quoting="minimal").split("\n")
        text = "\n".join([head, "", *records[:2], "", "", *records[2:]]) if case == "blank_lines" else \
            "\n".join([head, *records]) + "\n\n"
    write_raw(export / "Contact.csv", text)
    assert_decided(load_settings(config_file(tmp_path, export)))


def test_reps_and_from_headers(tmp_path: Path) -> None:
    """From as email.headerregistry writes it: quoted names with commas, quotes, dots and parentheses."""
    reps = [*REPS, *EXTRA_REPS,
            {"Id": "0055g00000DoTsXAAV", "Name": "Dr. J. R. Smith", "FirstName": "J", "LastName": "Smith",
             "Email": "j.smith@acme.example", "IsActive": "true", "Signature": ""},
            {"Id": "0055g00000BsLsXAAV", "Name": "back\\slash \"q\"", "FirstName": "", "LastName": "",
             "Email": '"quoted local"@acme.example', "IsActive": "true", "Signature": "s"},
            {"Id": "0055g00000UnIcXAAV", "Name": "Émile  Zola", "FirstName": "Émile", "LastName": "Zola",
             "Email": "émile@acme.example", "IsActive": "true", "Signature": "É"},
            {"Id": "0055g00000IdNaXAAV", "Name": "ｱｲｳ 太郎", "FirstName": "太郎", "LastName": "ｱｲｳ",
             "Email": "aiu@ACME.EXAMPLE", "IsActive": "true", "Signature": ""}]
    rows = []
    for n, rep in enumerate(reps):
        rows.append(contact(2 * n + 1, OwnerId=rep["Id"]))
        rows.append(contact(2 * n + 2, OwnerId=rep["Id"], MailingCountry="United States", FirstName="Ann"))
    export = write_export(tmp_path / "export", rows, reps=reps)
    for fallback in ("", "s.lee@acme.example"):
        settings = load_settings(config_file(tmp_path / (fallback or "none"), export,
                                             audience={"fallback_sender": fallback}))
        assert_decided(settings)


def test_emails_that_pass_the_address_rule_but_not_the_header(tmp_path: Path) -> None:
    odd = [*ODD_VALID, *MALFORMED, "a\x7f@example.jp", "ok@example.jp\u3000", "\xa0ok2@example.jp",
           "ok3@example.jp\x1f", "tab@\texample.jp", "Ünïcödé@Example.JP", "İ@example.jp", "ΣΑΣ@example.gr"]
    rows = [contact(n + 1, Email=address) for n, address in enumerate(odd)]
    rows += [contact(100 + n, Email=address.upper(), OwnerId=CARTER) for n, address in enumerate(odd)]
    # The cap makes the later ones only checked, not composed: the same skips must come out.
    text, summary, _ = small_run(tmp_path, rows, rate={"per_rep_per_day": 3})
    got = reasons(text)
    assert summary["send"] <= 6  # two reps, three a day each: the cap holds for odd records too
    assert got[rows[odd.index("tab@\texample.jp")]["Id"]] == "invalid_email"  # a tab inside an address


def test_language_values(tmp_path: Path) -> None:
    values = ["Japan", "japan ", "\tJAPAN", "日本", "JP", "jp", "USA", "usa", " us ", "US", "Us", "United States",
              "UNITED STATES", "Straße", "STRASSE", "strasse", "France", "", " ", "ＪＡＰＡＮ", "japan\u3000"]
    rows = [contact(n + 1, MailingCountry=value, FirstName="Ann" if n % 2 else "") for n, value in enumerate(values)]
    for default in ("ja", "en"):
        text, _, _ = small_run(tmp_path / default, rows, template={"default_language": default})
        sent = {d["contact_id"]: d["language"] for d in map(json.loads, text.splitlines()) if d["action"] == "send"}
        assert sent[rows[1]["Id"]] == "ja"  # "japan " matches "Japan": case and spaces do not count
        assert sent[rows[17]["Id"]] == default  # an empty value: the default language


def test_braces_and_percent_in_values(tmp_path: Path) -> None:
    rows = [contact(1, LastName="{{ rep.name }}"), contact(2, **{"Account.Name": "{% raw %}"}),
            contact(3, MailingCountry="United States", FirstName="{{x}}"), contact(4, LastName="100%s"),
            contact(5, **{"Account.Name": "%(name)s 50%"}), contact(6, Title="}}"),
            contact(7, MailingCountry="United States", FirstName="%d%%")]
    text, _, _ = small_run(tmp_path, rows)
    lines = {d["contact_id"]: d for d in map(json.loads, text.splitlines())}
    assert lines[rows[0]["Id"]]["reason"] == "missing_field"  # a value that reads as a placeholder is never sent
    assert lines[rows[3]["Id"]]["action"] == "send"  # a % in a value is only text


# ---------------------------------------------------------------------------------------------------
# 3. Encodings
# ---------------------------------------------------------------------------------------------------


def test_cp932_export(tmp_path: Path) -> None:
    rows = [contact(1, LastName="髙橋", FirstName="①花子", **{"Account.Name": "株式会社ｻﾝﾌﾟﾙ～"}),
            contact(2, LastName="渡邊", FirstName="太郎", MailingCountry="日本", Title="部長－代理"),
            contact(3, LastName="Smith", FirstName="John", MailingCountry="United States", OwnerId=CARTER),
            contact(4, LastName="斎藤", Email="C1@Example.co.jp ", **{"Account.Name": "㈱テスト∥"}),
            contact(5, LastName="﨑田", OwnerId=SUZUKI), contact(6, HasOptedOutOfEmail="TRUE")]
    export = write_export(tmp_path / "export", rows, [deal(1, rows[5]["AccountId"], closed=True, changed="2026-09-09")],
                          encoding="cp932")
    settings = load_settings(config_file(tmp_path, export, sfa={"encoding": "cp932"}))
    text, summary, _ = assert_decided(settings)
    got = {d["contact_id"]: d for d in map(json.loads, text.splitlines())}
    assert [got[row["Id"]]["reason"] for row in rows] == ["dormant", "dormant", "dormant", "duplicate_email",
                                                          "inactive_owner", "opted_out"]
    assert summary["send"] == 3


def test_random_cp932_export(tmp_path: Path) -> None:
    export = random_export(tmp_path / "export", 99, contacts=800, encoding="cp932")
    for name in ("account", "contact_fields", "kitchen_sink"):
        settings, options, history = settings_for(tmp_path, export, name, 99, encoding="cp932")
        assert_decided(settings, options, history)


@pytest.mark.parametrize("encoding", ["shift_jis", "utf-16", "latin-1", "UTF8", "utf_8"])
def test_other_encodings(tmp_path: Path, encoding: str) -> None:
    latin = encoding == "latin-1"
    rows = [contact(1, LastName="Müller" if latin else "髙橋"), contact(2, FirstName="Zoë", MailingCountry="USA"),
            contact(3, Email=" C1@example.co.jp"), contact(4, LastName="～①", **{"Account.Name": "ｻﾝﾌﾟﾙ"})]
    python_encoding = "utf-8" if encoding.lower().replace("_", "-") in ("utf8", "utf-8") else encoding
    export = tmp_path / "export"
    write_raw(export / "User.csv", csv_text(USER_HEADER, REPS), python_encoding)
    write_raw(export / "Contact.csv", csv_text(CONTACT_HEADER, rows), python_encoding)
    write_raw(export / "Opportunity.csv", csv_text(OPPORTUNITY_HEADER, [deal(1, rows[3]["AccountId"])]),
              python_encoding)
    settings = load_settings(config_file(tmp_path, export, sfa={"encoding": encoding}))
    text, summary, _ = assert_decided(settings)
    assert summary["considered"] == 4 and summary["send"] == 2
    assert summary["skip"] == {"active_deal": 1, "duplicate_email": 1}  # c1 is contact 1 again
    names = {d["contact_id"]: d for d in map(json.loads, text.splitlines())}
    assert names[rows[2]["Id"]]["email"] == "C1@example.co.jp"


# ---------------------------------------------------------------------------------------------------
# 4. Exports the engine rejects: the CLI says what is wrong and where, exit 2, nothing on stdout
# ---------------------------------------------------------------------------------------------------

runner = CliRunner()


def dormant(config: Path, *extra: str, json_lines: bool = True):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["dormant", "--dry-run", *(["--json"] if json_lines else []), "--as-of",
                               AS_OF.isoformat(), "--config", str(config), *extra])


def assert_cli_paths_agree(config: Path, *extra: str) -> Any:
    """``dormant --dry-run --json`` and the table dry run of the same export: the same exit code, the
    same message, and the same counts (one engine decides both); the JSON run is returned."""
    as_json = dormant(config, *extra)
    as_table = dormant(config, *extra, json_lines=False)
    assert (as_table.exit_code, as_table.stderr) == (as_json.exit_code, as_json.stderr)
    if as_json.exit_code == 0:
        summary = json.loads(as_json.stdout.splitlines()[-1])
        assert table_summary(as_table.stdout) == {k: summary[k] for k in ("considered", "send", "skip")}
    else:
        assert as_table.stdout == ""
    return as_json


BAD_CONTACTS = {
    "bad_boolean": ("contact", {"HasOptedOutOfEmail": "yes"}),
    "bad_bounce": ("contact", {"IsEmailBounced": "maybe"}),
    "bad_activity_date": ("contact", {"LastActivityDate": "14/03/2025"}),
    "date_that_does_not_exist": ("contact", {"CreatedDate": "2025-02-30T10:00:00.000Z"}),
    "bad_created_time": ("contact", {"CreatedDate": "2025-02-03T10:00:00.000+09"}),
    "bad_deal_boolean": ("deal", {"IsClosed": "open"}),
    "bad_close_date": ("deal", {"CloseDate": "next week"}),
    "bad_modified_date": ("deal", {"LastModifiedDate": "2026-13-01"}),
    "bad_user_boolean": ("user", {"IsActive": "Y"}),
}
# Where each is: the file and its editor line (the header is line 1).
BAD_AT = {"contact": "Contact.csv:7", "deal": "Opportunity.csv:3", "user": "User.csv:7"}  # signatures span lines


def _broken_export(tmp_path: Path) -> tuple[Path, list[dict[str, str]], list[dict[str, str]]]:
    rows = [contact(n) for n in range(1, 8)]
    deals = [deal(1, rows[0]["AccountId"]), deal(2, rows[1]["AccountId"], closed=True)]
    return write_export(tmp_path / "export", rows, deals), rows, deals


@pytest.mark.parametrize("case", list(BAD_CONTACTS))
def test_a_malformed_value_stops_the_run_naming_file_line_and_field(tmp_path: Path, case: str) -> None:
    which, fields = BAD_CONTACTS[case]
    export, rows, deals = _broken_export(tmp_path)
    if which == "contact":
        rows[5].update(fields)  # near the end: the first decisions would already be out
        write_export(export, rows, deals)
    elif which == "deal":
        deals[1].update(fields)
        write_export(export, rows, deals)
    else:
        reps = [dict(r) for r in REPS]
        reps[2].update(fields)
        write_export(export, rows, deals, reps=reps)
    config = config_file(tmp_path, export)
    message = assert_rejected(load_settings(config))
    (field, value), = fields.items()
    assert f"{BAD_AT[which]}: {field}: {value!r}" in message
    result = assert_cli_paths_agree(config)
    assert result.exit_code == 2 and result.stdout == "" and message in result.stderr


def _edit(path: Path, line: int, edit: Any) -> None:
    """Line ``line`` (1: the header; -1: the last) of a file replaced by ``edit(line)``."""
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    if not lines[-1]:
        lines.pop()
    lines[line - 1 if line > 0 else line] = edit(lines[line - 1 if line > 0 else line])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fewer(line: str) -> str:
    return line.rsplit(",", 1)[0]


def _more(line: str) -> str:
    return line + ',"x"'


STRUCTURAL: dict[str, list[tuple[str, int, Any]]] = {
    # Each: edits (file, line, how). The header is line 1; every record here is one line.
    "too_few_fields": [("Contact.csv", 5, _fewer)],
    "too_many_fields": [("Contact.csv", 6, _more)],
    "two_fields_too_many": [("Contact.csv", 6, lambda line: _more(_more(line)))],  # pass 1 reads some columns
    "too_few_on_the_last_line": [("Contact.csv", -1, _fewer)],
    "one_short_one_long": [("Contact.csv", 3, _fewer), ("Contact.csv", 4, _more)],  # the commas add up
    "broken_quote": [("Contact.csv", 4, lambda line: line.replace('"山田3"', '"山田"3"'))],
    "unterminated_quote": [("Contact.csv", -1, lambda line: line.replace('"Japan"', '"Japan'))],
    "single_empty_cell": [("Contact.csv", 3, lambda line: '""')],
    "spaces_only_line": [("Contact.csv", 3, lambda line: "   ")],
    "unquoted_carriage_return": [("Contact.csv", 3, lambda line: line.replace('"花子"', "花\r子"))],
    "user_too_many_fields": [("User.csv", -1, _more)],
    "deal_too_few_fields": [("Opportunity.csv", 2, _fewer)],
    "deal_too_many_fields": [("Opportunity.csv", -1, _more)],
    "deal_broken_quote": [("Opportunity.csv", 2, lambda line: line.replace('"Prospecting"', '"Pros"pecting"'))],
    "role_too_many_fields": [("OpportunityContactRole.csv", 2, _more)],
    "role_carriage_return": [("OpportunityContactRole.csv", 2, lambda line: line.replace('"true"', "tr\rue"))],
}


@pytest.mark.parametrize("case", list(STRUCTURAL))
def test_a_malformed_row_stops_the_run_naming_file_and_line(tmp_path: Path, case: str) -> None:
    export, rows, deals = _broken_export(tmp_path)
    write_export(export, rows, deals, roles=[{"Id": "00K5g0000000001", "OpportunityId": deals[0]["Id"][:15],
                                              "ContactId": rows[0]["Id"][:15], "IsPrimary": "true"}])
    for name, line, edit in STRUCTURAL[case]:
        _edit(export / name, line, edit)
    config = config_file(tmp_path, export)
    message = assert_rejected(load_settings(config))
    name, line, _ = STRUCTURAL[case][0]
    if line < 0:
        line = len((export / name).read_text(encoding="utf-8-sig").splitlines()) + 1 + line
    line += case == "role_carriage_return"  # a lone CR ends a line: its last cell and the rest are the next
    assert message.startswith(f"{export / name}:{line}: "), message
    result = assert_cli_paths_agree(config)
    assert result.exit_code == 2 and result.stdout == "" and message in result.stderr


@pytest.mark.parametrize("case", ["invalid_utf8", "missing_column", "no_opportunity_file", "empty_contact_file",
                                  "cp932_read_as_utf8", "limit_before_the_bad_row"])
def test_other_rejected_exports_stop_the_run_with_a_message(tmp_path: Path, case: str) -> None:
    export, rows, deals = _broken_export(tmp_path)
    extra: tuple[str, ...] = ()
    if case == "invalid_utf8":
        path = export / "Contact.csv"
        path.write_bytes(path.read_bytes().replace("山田5".encode(), b"\xff\xfe5"))
    elif case == "missing_column":
        write_raw(export / "Contact.csv", csv_text(["Id", "LastName", "OwnerId"], rows))
    elif case == "no_opportunity_file":
        (export / "Opportunity.csv").unlink()
    elif case == "empty_contact_file":
        (export / "Contact.csv").write_bytes(b"")
    elif case == "cp932_read_as_utf8":
        write_export(export, [*rows, contact(9, LastName="髙橋")], deals, encoding="cp932")
    else:
        rows[6]["IsEmailBounced"] = "yes please"
        write_export(export, rows, deals)
        extra = ("--limit", "1")
    config = config_file(tmp_path, export)
    settings = load_settings(config)
    message = assert_rejected(settings, RunOptions(AS_OF, "dormant", "dormant", limit=1))
    assert OTHER_REJECTED[case] in message
    result = assert_cli_paths_agree(config, *extra)
    assert result.exit_code == 2 and result.stdout == "" and message in result.stderr


OTHER_REJECTED = {
    "invalid_utf8": "Contact.csv:6: not valid utf-8",
    "missing_column": "Contact.csv:1: missing required column Email",
    "no_opportunity_file": "Opportunity.csv: file not found",
    "empty_contact_file": "Contact.csv:1: the file is empty",
    "cp932_read_as_utf8": "not valid utf-8 (an export from Japanese Excel is cp932",
    "limit_before_the_bad_row": "Contact.csv:8: IsEmailBounced: 'yes please'",
}


@pytest.mark.parametrize("sections", [
    {"audience": {"fallback_sender": "nobody@acme.example"}},
    {"audience": {"fallback_sender": SUZUKI}},
])
def test_a_config_error_found_in_the_export_stops_the_run(tmp_path: Path, sections: dict[str, Any]) -> None:
    export, _, _ = _broken_export(tmp_path)
    result = assert_cli_paths_agree(config_file(tmp_path, export, **sections))
    assert result.exit_code == 2 and "[audience] fallback_sender" in result.stderr and result.stdout == ""


def test_a_template_error_stops_the_run(tmp_path: Path) -> None:
    export, _, _ = _broken_export(tmp_path)
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "dormant" / "en.txt").write_text("Subject: {{ contact.nickname }}\n\nHi\n", encoding="utf-8")
    result = assert_cli_paths_agree(config_file(tmp_path, export, template={"dir": str(templates)}))
    assert result.exit_code == 2 and "en.txt:1: unknown variable 'contact.nickname'" in result.stderr


# ---------------------------------------------------------------------------------------------------
# 5. The CLI: the JSON and the table dry runs agree
# ---------------------------------------------------------------------------------------------------


def test_cli_demo_org_json_and_table_agree() -> None:
    result = assert_cli_paths_agree(DEMO_CONFIG)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["considered"] == 63


@pytest.mark.parametrize("extra", [(), ("--limit", "7"), ("--campaign", "winter", "--limit", "300")])
def test_cli_random_export_json_and_table_agree(
        tmp_path: Path, exports: dict[tuple[int, bool], Path], extra: tuple[str, ...]) -> None:
    export = exports[(SEEDS[1], False)]
    config = config_file(tmp_path, export, rate={"per_rep_per_day": 6},
                         audience={"fallback_sender": CARTER, "suppression_file": str(_suppression(tmp_path))})
    result = assert_cli_paths_agree(config, *extra)
    assert result.exit_code == 0 and result.stdout.count("\n") > 2
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["send"] == 7 if "7" in extra else summary["send"] > 7


def _suppression(tmp_path: Path) -> Path:
    path = tmp_path / "suppressed.txt"
    path.write_text("# none of these\nC1.YAMADA@EXAMPLE.JP\n c2.smith@example.com # note\n", encoding="utf-8")
    return path


def test_cli_cp932_json_and_table_agree(tmp_path: Path) -> None:
    rows = [contact(1, LastName="髙橋"), contact(2, FirstName="①", MailingCountry="日本"), contact(3, OwnerId="")]
    export = write_export(tmp_path / "export", rows, encoding="cp932")
    result = assert_cli_paths_agree(config_file(tmp_path, export, sfa={"encoding": "cp932"}))
    assert result.exit_code == 0
    assert [json.loads(line)["reason"] for line in result.stdout.splitlines()[:3]] == ["dormant", "dormant",
                                                                                        "no_owner"]


def test_cli_after_a_real_run_reads_the_send_log_the_same_way(tmp_path: Path) -> None:
    """A real run (outbox transport) fills the send log; the next dry run's already_sent, cooldown and
    rep_cap come from it, in the JSON and the table dry runs alike."""
    rows = [contact(n, OwnerId=[SATO, CARTER][n % 2], MailingCountry=["Japan", "USA"][n % 2], FirstName="Ann")
            for n in range(1, 41)]
    rows += [contact(100 + n, Email=f" C{n}@EXAMPLE.co.jp") for n in range(1, 11)]  # the same people again
    export = write_export(tmp_path / "export", rows)
    config = config_file(tmp_path, export, mail={"transport": "outbox", "outbox_dir": str(tmp_path / "out")},
                         rate={"per_rep_per_day": 8})
    sent = runner.invoke(app, ["dormant", "--as-of", AS_OF.isoformat(), "--config", str(config), "--limit", "12"])
    assert sent.exit_code == 0, sent.stderr
    assert (tmp_path / "repsend.db").exists()
    result = assert_cli_paths_agree(config)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["skip"].get("already_sent") and summary["skip"].get("rep_cap")


@pytest.mark.parametrize("json_lines", [True, False])
def test_a_reader_that_stops_early_ends_the_run_quietly(tmp_path: Path, json_lines: bool) -> None:
    """`repsend dormant --dry-run --json | head` (or the table): exit 0 and no traceback."""
    import os
    import subprocess
    import sys

    export = write_export(tmp_path / "export", [contact(n) for n in range(1, 1201)])  # ~400 KB of lines
    config = tmp_path / "repsend.toml"
    config.write_text(
        f'[sfa]\nkind = "csv"\npath = {_toml(str(export))}\n[template]\ndir = {_toml(str(TEMPLATES))}\n'
        'default_language = "ja"\n[company]\nname = "株式会社アクメ"\npostal_address = "東京都"\n'
        'opt_out = "optout@acme.example"\ndomain = "acme.example"\n[rate]\nper_rep_per_day = 0\n'
        f'[log]\ndatabase = {_toml(str(tmp_path / "none.db"))}\n',
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "repsend", "dormant", "--dry-run", *(["--json"] if json_lines else []), "--as-of",
         AS_OF.isoformat(), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.read(200)
    process.stdout.close()  # the reader goes away with most of the output unread
    errors = process.stderr.read().decode("utf-8", "replace")
    assert process.wait(timeout=60) == 0, errors
    assert first.startswith(b'{"type": "decision"' if json_lines else b"contact ")
    assert "Traceback" not in errors


def test_an_export_that_changes_between_the_passes_is_an_input_error(tmp_path: Path) -> None:
    """The first pass read and checked the file whole; if it is not that file when the second pass
    reads it, say so (no traceback, and no decision made on records nobody checked)."""
    export = write_export(tmp_path / "export", [contact(n) for n in range(1, 4)])
    settings = load_settings(config_file(tmp_path, export))
    source = CsvExportSource.from_settings(settings)
    planned = select(settings, source, OPTIONS)  # setup, the first pass included, runs now
    (export / "Contact.csv").write_text('"Id","Email","OwnerId"\n"1","a@example.com","x"\n', encoding="utf-8")
    with pytest.raises(RepsendError) as raised:
        list(planned)
    assert "Contact.csv: changed while it was being read" in str(raised.value)
    assert raised.value.exit_code == 2
