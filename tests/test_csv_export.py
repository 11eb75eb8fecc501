"""The CSV export source: encodings, BOMs, header case, ID forms, value formats and broken files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from repsend.errors import InputError
from repsend.models import Reason
from repsend.sfa.csv_export import CsvExportSource
from tests.helpers import CONTACT_HEADER, REPS, USER_HEADER, contact, deal, write_csv, write_export


def source(folder: Path, encoding: str = "utf-8") -> CsvExportSource:
    return CsvExportSource(folder, encoding=encoding, language_field="MailingCountry")


def test_cp932_export_from_japanese_excel(tmp_path: Path) -> None:
    row = contact(1, LastName="髙橋", FirstName="①花子", **{"Account.Name": "株式会社ｻﾝﾌﾟﾙ"})
    folder = write_export(tmp_path, [row], encoding="cp932")
    [c] = source(folder, "cp932").contacts()
    assert (c.last_name, c.first_name, c.account_name) == ("髙橋", "①花子", "株式会社ｻﾝﾌﾟﾙ")
    assert source(folder, "cp932").reps()[REPS[0]["Id"][:15]].name == "佐藤 健"


def test_cp932_read_as_utf8_names_the_line_and_the_fix(tmp_path: Path) -> None:
    ascii_only = {"FirstName": "Hanako", "Account.Name": "Sample K.K."}
    rows = [contact(1, LastName="Smith", **ascii_only), contact(2, LastName="Jones", **ascii_only), contact(3)]
    folder = write_export(tmp_path, rows, encoding="cp932")
    with pytest.raises(InputError) as err:
        list(source(folder).contacts())
    assert str(err.value).startswith(f"{folder / 'Contact.csv'}:4: not valid utf-8")
    assert 'encoding = "cp932"' in str(err.value)


def test_utf8_with_and_without_bom(tmp_path: Path) -> None:
    for bom in (True, False):
        folder = write_export(tmp_path / str(bom), [contact(1)])
        write_csv(folder / "Contact.csv", CONTACT_HEADER, [contact(1)], bom=bom)
        [c] = source(folder).contacts()
        assert c.id == contact(1)["Id"], f"bom={bom}"


def test_headers_match_case_insensitively(tmp_path: Path) -> None:
    folder = write_export(tmp_path, [])
    upper = [h.upper() for h in CONTACT_HEADER]
    row = {h.upper(): v for h, v in contact(1, HasOptedOutOfEmail="TRUE").items()}
    write_csv(folder / "Contact.csv", upper, [row])
    [c] = source(folder).contacts()
    assert c.opted_out is True and c.email == "c1@example.co.jp" and c.account_name == "株式会社サンプル1"


@pytest.mark.parametrize(("text", "value"), [("true", True), ("TRUE", True), ("1", True), ("false", False),
                                             ("FALSE", False), ("0", False), ("", False)])
def test_booleans_as_exports_write_them(tmp_path: Path, text: str, value: bool) -> None:
    folder = write_export(tmp_path, [contact(1, IsEmailBounced=text)])
    [c] = source(folder).contacts()
    assert c.bounced is value


@pytest.mark.parametrize("text", ["2025-03-14", "2025/03/14", "2025/3/14", "2025-03-14T09:30:00.000Z",
                                  "2025-03-14T09:30:00.000+0000", "2025-03-14 09:30:00"])
def test_dates_as_exports_write_them(tmp_path: Path, text: str) -> None:
    folder = write_export(tmp_path, [contact(1, LastActivityDate=text)])
    [c] = source(folder).contacts()
    assert c.last_activity == date(2025, 3, 14)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"IsEmailBounced": "yes"}, "IsEmailBounced: 'yes' is not a boolean"),
        ({"HasOptedOutOfEmail": "N"}, "HasOptedOutOfEmail: 'N' is not a boolean"),
        ({"LastActivityDate": "14/03/2025"}, "LastActivityDate: '14/03/2025' is not a date"),
        ({"CreatedDate": "2025-02-30"}, "CreatedDate: '2025-02-30' is not a date that exists"),
    ],
)
def test_a_bad_value_names_file_line_and_field(tmp_path: Path, fields: dict[str, str], expected: str) -> None:
    # A quoted multi-line value before the bad row: the line number must be the editor's line.
    rows = [contact(1, Title="部長\n(営業本部)"), contact(2), contact(3, **fields)]
    folder = write_export(tmp_path, rows)
    with pytest.raises(InputError) as err:
        source(folder).blocked_addresses(source(folder).deals(date(2026, 1, 1), "account"), "account")
    assert str(err.value) == f"{folder / 'Contact.csv'}:5: {expected}" + str(err.value).split(expected, 1)[1]


def test_missing_required_column(tmp_path: Path) -> None:
    folder = write_export(tmp_path, [])
    write_csv(folder / "Contact.csv", [h for h in CONTACT_HEADER if h != "OwnerId"], [contact(1)])
    with pytest.raises(InputError, match=r"Contact\.csv:1: missing required column OwnerId"):
        list(source(folder).contacts())
    write_csv(folder / "User.csv", [h for h in USER_HEADER if h not in ("IsActive", "Email")], REPS)
    with pytest.raises(InputError, match=r"User\.csv:1: missing required columns Email, IsActive"):
        source(folder).reps()


def test_opportunity_csv_is_required(tmp_path: Path) -> None:
    folder = write_export(tmp_path, [contact(1)])
    (folder / "Opportunity.csv").unlink()
    with pytest.raises(InputError, match="Opportunity.csv is required: without deal data nobody can be called"):
        source(folder).deals(date(2026, 1, 1), "account")


def test_a_row_with_the_wrong_number_of_fields(tmp_path: Path) -> None:
    folder = write_export(tmp_path, [contact(1)])
    with open(folder / "Contact.csv", "a", encoding="utf-8") as f:
        f.write('"0035g0000000002AAA","x"\n')
    with pytest.raises(InputError, match=r"Contact\.csv:3: 2 fields where the header has 13"):
        list(source(folder).contacts())


def test_missing_optional_columns_are_noted_once(tmp_path: Path) -> None:
    """A column that only makes the audience smaller is a note; one a safety rule needs, accepted by
    allow_missing, is a note too; each said once however often the file is read."""
    folder = write_export(tmp_path, [])
    header = [h for h in CONTACT_HEADER if h not in ("HasOptedOutOfEmail", "LastActivityDate")]
    write_csv(folder / "Contact.csv", header, [contact(1), contact(2)])
    src = CsvExportSource(folder, language_field="MailingCountry", allow_missing=["HasOptedOutOfEmail"])
    src.blocked_addresses(src.deals(date(2026, 1, 1), "account"), "account")
    contacts = list(src.contacts()) + list(src.contacts())
    assert len(contacts) == 4 and not any(c.opted_out for c in contacts)
    assert src.notes == [
        "OpportunityContactRole.csv is not in the export: deals reach contacts only through their account and "
        "Opportunity.ContactId",
        "Contact.csv has no HasOptedOutOfEmail column ([sfa] allow_missing): a contact who opted out would be "
        "mailed (opted_out)",
        "Contact.csv has no LastActivityDate column: recent_activity (last activity) has nothing to go on",
    ]


def test_fifteen_and_eighteen_character_ids_match(tmp_path: Path) -> None:
    rows = [contact(1), contact(2)]
    deals = [deal(1, rows[0]["AccountId"][:15]), deal(2, "", contact_id=rows[1]["Id"][:15])]
    folder = write_export(tmp_path, rows, deals)
    src = source(folder)
    index = src.deals(date(2026, 1, 1), "account")
    assert src.blocked_addresses(index, "account") == {
        "c1@example.co.jp": Reason.ACTIVE_DEAL, "c2@example.co.jp": Reason.ACTIVE_DEAL,
    }


def test_the_demo_org_reads_cleanly() -> None:
    demo = Path(__file__).resolve().parent.parent / "config" / "demo"
    src = source(demo)
    assert len(src.reps()) == 6
    contacts = list(src.contacts())
    assert 50 <= len(contacts) <= 80
    assert src.notes == []
