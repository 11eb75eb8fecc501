"""The Salesforce CSV export format: which columns each file has, and how booleans and dates are written.

Data Loader, a report export and a file saved by Excel all write the same API field names as headers
(matched case-insensitively: they have been seen in capitals, as typed, and in capitals again) but spell
values their own ways. This module says what is accepted, once: ``parse_bool`` and ``parse_date`` are the
definition, and the notes say what a missing optional column means for the rules. Both the CSV export
and the CSV that the Bulk API 2.0 returns are read by these rules (``csv_reader``).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

USER_REQUIRED = ("Id", "Name", "Email", "IsActive")
USER_OPTIONAL = ("FirstName", "LastName", "Title", "Phone", "Signature")
CONTACT_REQUIRED = ("Id", "Email", "OwnerId")
OPPORTUNITY_REQUIRED = ("AccountId", "IsClosed")
OPPORTUNITY_OPTIONAL = ("Id", "ContactId", "CloseDate", "LastModifiedDate")
ROLE_REQUIRED = ("OpportunityId", "ContactId")

# What a safety rule loses when the export lacks its data: the run stops, naming the file and the column,
# unless ``[sfa] allow_missing`` names the gap (then it is said once). Keys are the names allow_missing takes.
SAFETY_GAPS = {
    "HasOptedOutOfEmail": "a contact who opted out would be mailed (opted_out)",
    "IsEmailBounced": "a contact whose address bounced would be mailed (bounced)",
    "AccountId": "a contact whose account is in an open deal would be mailed (active_deal, account scope)",
    "OpportunityContactRole.csv": "a contact role on an open deal would be mailed (active_deal, contact_role scope)",
}

# Optional Contact columns that only make the audience smaller, and the rule each one feeds, for the note
# when one is missing.
CONTACT_OPTIONAL = {
    "LastActivityDate": "recent_activity (last activity)",
    "CreatedDate": "recent_activity (new contacts)",
}
# Contact columns read as text when present: names, the account's name, the title.
CONTACT_TEXT = ("FirstName", "LastName", "Account.Name", "Title")


def contact_gaps(columns: Columns, scope: str) -> list[str]:
    """The safety data (``SAFETY_GAPS`` keys) Contact.csv lacks under ``scope``: AccountId carries deals
    only in the account scope."""
    wanted = ["HasOptedOutOfEmail", "IsEmailBounced"] + (["AccountId"] if scope == "account" else [])
    return [name for name in wanted if not columns.has(name)
            and not (name == "IsEmailBounced" and any(columns.has(e) for e in BOUNCE_EVIDENCE))]


def gap_error(path: Path, name: str, hint: str = "", lacks: str = "") -> str:
    """The message of a run stopped by a gap: the file, what it lacks (``lacks``, or the file or the column
    ``name``), what that would do, the two ways out (and ``hint``: the headers that may be the column under
    a label no table maps)."""
    lacks = lacks or (": file not found" if name.endswith(".csv") else f":1: no {name} column")
    return (f"{path}{lacks}: {SAFETY_GAPS[name]}; export it, or accept the gap with "
            f'[sfa] allow_missing = ["{name}"]{hint}')


def gap_note(path: Path, name: str, lacks: str = "") -> str:
    """The note of a gap the config accepts."""
    if lacks:
        lacks = "has" + lacks.removeprefix(":1:")
    else:
        lacks = "is not in the export" if name.endswith(".csv") else f"has no {name} column"
    return f"{path.name} {lacks} ([sfa] allow_missing): {SAFETY_GAPS[name]}"


NO_ROLES_NOTE = (
    "OpportunityContactRole.csv is not in the export: deals reach contacts only through their account and "
    "Opportunity.ContactId"
)


# -- encodings -----------------------------------------------------------------------------------------

# Names that mean CP932 in an export: Windows-31J is its IANA name (Java, Salesforce), and a file Windows or
# Salesforce's Japanese locale calls Shift_JIS holds CP932's characters (①, 髙, ～) that strict Shift_JIS
# lacks. Compared without case, "-", "_" or spaces.
CP932_NAMES = frozenset({"cp932", "ms932", "windows31j", "cswindows31j", "shiftjis", "sjis", "xsjis", "csshiftjis",
                         "mskanji"})


def export_codec(encoding: str) -> str:
    """The codec (its Python name) that reads an export said to be in ``encoding``; LookupError if none."""
    if re.sub(r"[-_\s]", "", encoding).casefold() in CP932_NAMES:
        return "cp932"
    return codecs.lookup(encoding).name


class BadValue(ValueError):
    """A value that is not what its column holds; the message says what was expected."""


# -- booleans ------------------------------------------------------------------------------------------

TRUE_TEXTS = frozenset({"true", "1"})
FALSE_TEXTS = frozenset({"false", "0", ""})


def parse_bool(value: str) -> bool:
    """true/false, TRUE/FALSE, True/False or 1/0, with spaces around; empty is false."""
    low = value.strip().lower()
    if low in TRUE_TEXTS:
        return True
    if low in FALSE_TEXTS:
        return False
    raise BadValue(f"{value!r} is not a boolean (expected true/false, TRUE/FALSE or 1/0)")


# -- dates ---------------------------------------------------------------------------------------------

_DAY = r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})"
_TIME = r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
_DATE = re.compile(f"{_DAY}(?:{_TIME})?")

# The spellings a reader may take without calling parse_date for every value: an ISO day, alone or
# followed by an ISO time, in ASCII digits. For each of them parse_date(value) is the day of its first
# ten characters (a subset of _DATE with no space to strip), so a reader parses each distinct day once.
ISO_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
ISO_TIME = r"[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
ISO_DATE_OR_TIME = f"^{ISO_DAY}(?:{ISO_TIME})?$"


def parse_date(value: str) -> date | None:
    """2025-03-14, 2025/03/14, 2025/3/14 or a full timestamp (its date as written); empty is no date."""
    value = value.strip()
    if not value:
        return None
    match = _DATE.fullmatch(value)
    if match is None:
        raise BadValue(f"{value!r} is not a date (expected 2025-03-14, 2025/03/14 or 2025-03-14T09:30:00.000Z)")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise BadValue(f"{value!r} is not a date that exists") from None


class Dates:
    """``parse_date`` for the values of one read, each distinct value parsed once (exports repeat days)."""

    def __init__(self) -> None:
        self._known: dict[str, date | None] = {}

    def __call__(self, value: str) -> date | None:
        day = self._known.get(value, _UNKNOWN)
        if day is _UNKNOWN:
            day = parse_date(value)  # raises BadValue: nothing is remembered for a bad value
            if len(self._known) < 65536:
                self._known[value] = day
        return day  # type: ignore[return-value]


_UNKNOWN = object()


# -- headers -------------------------------------------------------------------------------------------


# A Salesforce report exported as CSV ("Details Only") writes each field's label, not its API name, in
# the user's language; Data Loader writes API names. Each file's table maps the labels of the fields
# repsend reads to their API names (compared by ``label_key``: no case, no spaces, full-width as
# half-width). English labels are the Salesforce field reference's and the report builder's; Japanese ones
# those of the Japanese UI. An org that renamed a field, or a label missing here, is mapped in the config:
# ``[sfa.columns] "Label" = "ApiName"`` (every file) or ``"Contact.csv:Label" = "ApiName"`` (one file).
CONTACT_LABELS = {
    "Contact ID": "Id", "取引先責任者 ID": "Id",
    "Email": "Email", "メール": "Email",
    "Owner ID": "OwnerId", "Contact Owner ID": "OwnerId", "所有者 ID": "OwnerId", "取引先責任者 所有者 ID": "OwnerId",
    # The owner as a report shows it: the user's name, matched to User.csv's Name (``OWNER_NAME_LABELS``).
    "Contact Owner": "OwnerId", "取引先責任者 所有者": "OwnerId", "所有者": "OwnerId",
    "First Name": "FirstName", "名": "FirstName",
    "Last Name": "LastName", "姓": "LastName",
    "Email Opt Out": "HasOptedOutOfEmail", "メール送信除外": "HasOptedOutOfEmail",
    "Is Email Bounced": "IsEmailBounced", "Email Bounced": "IsEmailBounced", "メール不達": "IsEmailBounced",
    "Email Bounced Reason": "EmailBouncedReason", "メール不達の理由": "EmailBouncedReason",
    "Email Bounced Date": "EmailBouncedDate", "メール不達の日付": "EmailBouncedDate",
    "Last Activity": "LastActivityDate", "Last Activity Date": "LastActivityDate", "最終活動日": "LastActivityDate",
    "Created Date": "CreatedDate", "作成日": "CreatedDate",
    "Account ID": "AccountId", "取引先 ID": "AccountId",
    "Account Name": "Account.Name", "取引先名": "Account.Name",
    "Title": "Title", "役職": "Title",
    "Mailing Country": "MailingCountry", "郵送先国": "MailingCountry", "郵送先(国)": "MailingCountry",
    "Department": "Department", "部署": "Department",
}  # fmt: skip
OPPORTUNITY_LABELS = {
    "Opportunity ID": "Id", "商談 ID": "Id",
    "Account ID": "AccountId", "取引先 ID": "AccountId",
    "Contact ID": "ContactId", "取引先責任者 ID": "ContactId",
    "Closed": "IsClosed", "完了": "IsClosed",
    "Won": "IsWon", "成立": "IsWon",
    "Stage": "StageName", "フェーズ": "StageName",
    "Close Date": "CloseDate", "完了予定日": "CloseDate",
    "Last Modified Date": "LastModifiedDate", "最終更新日": "LastModifiedDate",
}  # fmt: skip
ROLE_LABELS = {
    "Contact Role ID": "Id", "取引先責任者の役割 ID": "Id",
    "Opportunity ID": "OpportunityId", "商談 ID": "OpportunityId",
    "Contact ID": "ContactId", "取引先責任者 ID": "ContactId",
    "Role": "Role", "役割": "Role",
    "Primary": "IsPrimary", "主": "IsPrimary",
}  # fmt: skip
USER_LABELS = {
    "User ID": "Id", "ユーザ ID": "Id", "ユーザー ID": "Id",
    "Full Name": "Name", "氏名": "Name", "名前": "Name",
    "Email": "Email", "メール": "Email",
    "Active": "IsActive", "有効": "IsActive",
    "First Name": "FirstName", "名": "FirstName",
    "Last Name": "LastName", "姓": "LastName",
    "Title": "Title", "役職": "Title",
    "Phone": "Phone", "電話": "Phone",
    "Email Signature": "Signature", "Signature": "Signature", "メールの署名": "Signature", "署名": "Signature",
}  # fmt: skip
LABELS = {"Contact.csv": CONTACT_LABELS, "Opportunity.csv": OPPORTUNITY_LABELS,
          "OpportunityContactRole.csv": ROLE_LABELS, "User.csv": USER_LABELS}
# Contact.csv labels whose column holds the owner's name, not a User Id.
OWNER_NAME_LABELS = frozenset({"contactowner", "取引先責任者所有者", "所有者"})
# Contact.csv columns a bounce leaves a value in: where IsEmailBounced is not exported, a value in one of
# them is a bounce (Salesforce clears them with the flag).
BOUNCE_EVIDENCE = ("EmailBouncedReason", "EmailBouncedDate")

# A line only the footer of a report export holds (its other lines, the report's and the org's name and
# "Generated By", are any text), in English and as a Japanese org exports it.
FOOTER_LINE = re.compile(
    r"^\s*(?:copyright\s*(?:\(c\)|©)\s*\d{4}(?:\s*[-–]\s*\d{4})?\s*salesforce\.com|"
    r"confidential information\s*[-–]\s*do not distribute|機密情報\s*[-－ー–—]\s*配布禁止)", re.IGNORECASE)

_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")


def label_key(text: str) -> str:
    """How a header label is compared: NFKC (full-width as half-width), no spaces, no case."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def labels_for(file: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The label table of ``file`` (e.g. "Contact.csv"), with the config's ``[sfa.columns]`` over it: a key
    "Label" for every file, "File.csv:Label" for that file alone."""
    table = dict(LABELS.get(file, {}))
    for key, name in (extra or {}).items():
        where, colon, label = key.partition(":")
        if colon and where.strip().lower().endswith(".csv"):
            if where.strip().casefold() == file.casefold():
                table[label] = name
        else:
            table[key] = name
    return table


class Columns:
    """Column positions in one file, by API name (case-insensitive, spaces around a name ignored; a name
    written twice: the last one counts, as a dict of the header would have it). With ``labels`` (label ->
    API name), a header label stands for its API name where the header does not write that name itself."""

    __slots__ = ("path", "names", "_index", "labelled", "unmapped")

    def __init__(self, path: Path, names: Iterable[str], labels: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.names = tuple(names)  # the header as written
        self._index = {name.strip().lower(): position for position, name in enumerate(self.names)}
        self.labelled: dict[str, str] = {}  # API name (lower case) -> the label it was read from
        unmapped: list[str] = []
        if labels is not None:
            table = {label_key(label): name for label, name in labels.items()}
            written = {name.strip().lower() for name in self.names if _API_NAME.fullmatch(name.strip())}
            for position, name in enumerate(self.names):
                api = table.get(label_key(name))
                if api is None:
                    if name.strip() and not _API_NAME.fullmatch(name.strip()):
                        unmapped.append(name.strip())
                    continue
                key = api.strip().lower()
                if key not in written and key not in self.labelled:  # an API name in the header wins
                    self._index[key] = position
                    self.labelled[key] = name.strip()
        self.unmapped = tuple(unmapped)  # labels no table maps: named when a column is missing

    def get(self, name: str) -> int | None:
        return self._index.get(name.strip().lower())

    def has(self, name: str) -> bool:
        return name.strip().lower() in self._index

    def missing(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if not self.has(name)]

    def label_of(self, name: str) -> str | None:
        """The label a column was read from (None: its API name is in the header)."""
        return self.labelled.get(name.strip().lower())

    def unmapped_hint(self, wanted: str) -> str:
        """What to say about the headers no table maps, when ``wanted`` is missing: they may be it."""
        if not self.unmapped:
            return ""
        shown = ", ".join(repr(name) for name in self.unmapped[:8]) + (" ..." if len(self.unmapped) > 8 else "")
        return (f"; headers not mapped to an API name: {shown} (if one of them is {wanted}, map it in "
                f'[sfa.columns], e.g. "{self.path.name}:{self.unmapped[0]}" = "{wanted}")')


# -- notes ---------------------------------------------------------------------------------------------


def contact_notes(columns: Columns, language_field: str, contact_fields: Iterable[str]) -> list[str]:
    """What Contact.csv lacks, and what each gap means for the rules (said once, at the first record)."""
    notes = [f"Contact.csv has no {name} column: {rule} has nothing to go on"
             for name, rule in CONTACT_OPTIONAL.items() if not columns.has(name)]
    if language_field and not columns.has(language_field):
        notes.append(f"Contact.csv has no {language_field} column ([template] language_field): "
                     "every mail uses the default language")
    notes += [f"Contact.csv has no {name} column ([sfa] contact_fields): a template that needs it skips the "
              "contact with missing_field" for name in contact_fields if not columns.has(name)]
    return notes


def opportunity_notes(columns: Columns) -> list[str]:
    """What Opportunity.csv lacks (said once, at its first record)."""
    notes = []
    if not (columns.has("LastModifiedDate") or columns.has("CloseDate")):
        notes.append("Opportunity.csv has no LastModifiedDate or CloseDate column: a recently closed deal cannot "
                     "make a contact recent")
    if not columns.has("Id"):
        notes.append("Opportunity.csv has no Id column: contact roles cannot be matched to deals")
    return notes
