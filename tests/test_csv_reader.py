"""The CSV reader's two parsers give the same frames: polars where it is vouched for, the csv module elsewhere.

Every other test of a CSV export goes through whichever parser the reader picks. These hold the fast one to
the careful one (the definition: Python's csv module and ``csv_format``'s rules) on the same bytes, cut into
many small chunks so that chunk boundaries fall everywhere: the same values, the same types, the same editor
lines, or the same error. And they check that an ordinary export really takes the fast parser.
"""

from __future__ import annotations

import random
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from repsend.errors import InputError
from repsend.sfa.csv_format import ISO_DATE_OR_TIME, BadValue, parse_date
from repsend.sfa.csv_reader import BOOL, DATE, TEXT, CsvFile, Wanted
from tests.exports import CARELESS_SEED, SEEDS, csv_text, random_export, write_raw
from tests.helpers import CONTACT_HEADER, contact

CONTACT: Wanted = {"Id": TEXT, "Email": TEXT, "OwnerId": TEXT, "FirstName": TEXT, "LastName": TEXT,
                   "AccountId": TEXT, "Account.Name": TEXT, "Title": TEXT, "HasOptedOutOfEmail": BOOL,
                   "IsEmailBounced": BOOL, "LastActivityDate": DATE, "CreatedDate": DATE,
                   "country": ("MailingCountry", TEXT), "Department": TEXT, "Nowhere": DATE}
WANTED = {
    "Contact.csv": CONTACT,
    "User.csv": {"Id": TEXT, "Name": TEXT, "Email": TEXT, "IsActive": BOOL, "Signature": TEXT},
    "Opportunity.csv": {"Id": TEXT, "AccountId": TEXT, "ContactId": TEXT, "IsClosed": BOOL,
                        "LastModifiedDate": DATE, "CloseDate": DATE},
    "OpportunityContactRole.csv": {"OpportunityId": TEXT, "ContactId": TEXT},
}


def read(path: Path, wanted: Wanted, fast: bool, chunk_bytes: int = 2048,
         encoding: str = "utf-8-sig") -> tuple[pl.DataFrame | str, list[bool]]:
    """All frames of a file as one, or the error's message; and which chunks were read carefully."""
    file = CsvFile(path, encoding, chunk_bytes=chunk_bytes, fast=fast)
    try:
        frames = list(file.frames(wanted, lines=True))
    except InputError as exc:
        return str(exc), []
    return pl.concat(frames), [careful for _, careful in file._cuts or []]


def assert_same(path: Path, wanted: Wanted, encoding: str = "utf-8-sig", chunk_bytes: int = 2048) -> list[bool]:
    fast, cuts = read(path, wanted, True, chunk_bytes, encoding)
    careful, _ = read(path, wanted, False, chunk_bytes, encoding)
    if isinstance(careful, str):
        assert fast == careful
    else:
        assert isinstance(fast, pl.DataFrame), fast
        assert fast.schema == careful.schema
        assert fast.to_dicts() == careful.to_dicts()
    return cuts


@pytest.mark.parametrize("seed", [*SEEDS, CARELESS_SEED])
@pytest.mark.parametrize("file", list(WANTED))
def test_random_exports_read_the_same_by_both_parsers(tmp_path: Path, seed: int, file: str) -> None:
    export = random_export(tmp_path, seed, contacts=700, weird=seed == CARELESS_SEED)
    cuts = assert_same(export / file, WANTED[file], chunk_bytes=max(64, (export / file).stat().st_size // 8))
    assert len(cuts) > 3  # many chunks: their boundaries fall everywhere
    if seed != CARELESS_SEED:
        assert not any(cuts), "an ordinary export went to the careful parser"


@pytest.mark.parametrize("chunk_bytes", [64, 300, 1 << 20])
def test_chunk_boundaries_inside_quoted_line_breaks(tmp_path: Path, chunk_bytes: int) -> None:
    rows = [contact(n, FirstName="Ann\nMarie" if n % 3 == 0 else "花子", Title='say "hi",\r\nplease' if n % 4 == 0
                    else "") for n in range(1, 40)]
    path = write_raw(tmp_path / "Contact.csv", csv_text(CONTACT_HEADER, rows, quoting="minimal", newline="\r\n"))
    assert_same(path, CONTACT, chunk_bytes=chunk_bytes)
    frame, _ = read(path, CONTACT, True, chunk_bytes)
    assert isinstance(frame, pl.DataFrame)
    assert frame.get_column("_line").to_list()[:4] == [2, 3, 4, 6]  # the third record's name spans two lines


ODD = {
    "blank_lines": "\n\n",
    "spaces_line": "   \n",
    "lone_cr": "\r",
    "short_record": '"x","y"\n',
    "long_record": ",".join(['"x"'] * 15) + "\n",
    "broken_quote": '"0035g0000000099AAA","Ann"e",' + ",".join(['""'] * 11) + "\n",
    "quote_inside_unquoted": "0035g0000000099AAA,An\"n," + ",".join([""] * 11) + "\n",
    "bad_boolean": ",".join(['"0035g0000000099AAA"', '""', '""', '"x@example.jp"', '"yes"'] + ['""'] * 8) + "\n",
    "bad_date": ",".join(['"0035g0000000099AAA"', '""', '""', '"x@example.jp"', '""', '""', '"2025-02-30"']
                         + ['""'] * 6) + "\n",
    "odd_spellings": ",".join(['" 0035g0000000099AAA "', '""', '""', '"x@example.jp"', '" TRUE "', '"1"',
                               '"2025/3/4"', '"\u30002025-03-04T10:00:00Z"'] + ['""'] * 5) + "\n",
    "unterminated": '"0035g0000000099AAA","Ann',
}


@pytest.mark.parametrize("case", list(ODD))
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_odd_records_read_the_same_or_fail_the_same(tmp_path: Path, case: str, where: str) -> None:
    """Whatever one record does, both parsers agree: the same frame, or the same file:line message."""
    text = csv_text(CONTACT_HEADER, [contact(n) for n in range(1, 30)])
    head, *records = text.splitlines(keepends=True)
    at = {"first": 0, "middle": len(records) // 2, "last": len(records)}[where]
    if case == "unterminated":
        at = len(records)
    records.insert(at, ODD[case])
    path = tmp_path / "Contact.csv"
    path.write_bytes((head + "".join(records)).encode("utf-8"))
    assert_same(path, CONTACT)


def test_cp932_and_shift_jis_read_the_same(tmp_path: Path) -> None:
    rows = [contact(n, LastName="髙橋" if n % 2 else "渡邊", FirstName="①花子", **{"Account.Name": "㈱ｻﾝﾌﾟﾙ～"})
            for n in range(1, 60)]
    for encoding in ("cp932", "shift_jis"):
        path = write_raw(tmp_path / encoding / "Contact.csv", csv_text(CONTACT_HEADER, rows), encoding)
        cuts = assert_same(path, CONTACT, encoding=encoding)
        assert not any(cuts)
    frame, _ = read(tmp_path / "cp932" / "Contact.csv", CONTACT, True, encoding="cp932")
    assert isinstance(frame, pl.DataFrame) and frame.get_column("LastName")[0] == "髙橋"


def test_an_encoding_that_cannot_be_cut_is_read_whole(tmp_path: Path) -> None:
    rows = [contact(n, LastName="Müller") for n in range(1, 20)]
    path = write_raw(tmp_path / "Contact.csv", csv_text(CONTACT_HEADER, rows), "utf-16")
    frame, cuts = read(path, CONTACT, True, encoding="utf-16")
    assert isinstance(frame, pl.DataFrame) and frame.height == 19 and cuts == []
    assert frame.get_column("LastName").to_list() == ["Müller"] * 19
    assert frame.get_column("_line").to_list() == list(range(2, 21))


def test_the_iso_spellings_read_fast_mean_what_parse_date_says() -> None:
    """The fast parser reads a value matching ISO_DATE_OR_TIME by its first ten characters; for every such
    value that is exactly what parse_date gives (polars' regex and Python's agree on which values match)."""
    rng = random.Random(5)
    pieces = ["2025", "-", "03", "-", "14", "T", " ", "9", ":", "30", "00", ".", "123", "Z", "+0900", "+09:00",
              "/", "１", "\n", "\x1c", "-10:00", "2025-02-30", "0"]
    values = ["2025-03-14", "2025-03-14T09:30:00.000Z", "2025-03-14 9:30", "2025-02-30T10:00:00Z", "2025-3-14"]
    values += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 9))) for _ in range(3000)]
    by_polars = pl.Series(values).str.contains(ISO_DATE_OR_TIME).to_list()
    for value, fast in zip(values, by_polars, strict=True):
        assert fast == bool(re.fullmatch(ISO_DATE_OR_TIME.strip("^$"), value)), repr(value)
        if fast:
            try:
                assert parse_date(value) == parse_date(value[:10]), repr(value)
            except BadValue:
                with pytest.raises(BadValue):
                    parse_date(value[:10])
    assert parse_date("2025-03-14T09:30:00.000Z") == date(2025, 3, 14)


@pytest.mark.parametrize("language", ["en", "ja"])
@pytest.mark.parametrize("file", list(WANTED))
@pytest.mark.parametrize("chunk_bytes", [64, 700, 1 << 20])
def test_report_exports_read_the_same_by_both_parsers(tmp_path: Path, language: str, file: str,
                                                      chunk_bytes: int) -> None:
    """A report export (labels, a footer the chunks must stop before, wherever they are cut): the same
    frames from both parsers, the footer in neither, and the fast one taken for an ordinary report."""
    from repsend.sfa.csv_format import labels_for
    from tests.exports import report_export

    export = random_export(tmp_path / "dl", SEEDS[1], contacts=300)
    report = report_export(export, tmp_path / "report", language)
    wanted = dict(WANTED[file])
    if file == "Contact.csv":
        wanted["IsEmailBounced"] = ("EmailBouncedReason", TEXT)
    frames = []
    for fast in (True, False):
        reader = CsvFile(report / file, "utf-8-sig", chunk_bytes=chunk_bytes, fast=fast, labels=labels_for(file))
        frames.append(pl.concat(list(reader.frames(wanted, lines=True))))
        if fast and chunk_bytes > 64:
            assert not any(careful for _, careful in reader._cuts or [])
        again = pl.concat(list(reader.again(wanted, lines=True)))
        assert again.to_dicts() == frames[-1].to_dicts()
    assert frames[0].to_dicts() == frames[1].to_dicts()
    plain = pl.concat(list(CsvFile(export / file, "utf-8-sig").frames({"Id" if file != "OpportunityContactRole.csv"
                                                                         else "OpportunityId": TEXT})))
    assert frames[0].height == plain.height  # every record, and no footer line among them
