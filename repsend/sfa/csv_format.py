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
from collections.abc import Iterable
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
    return [name for name in wanted if not columns.has(name)]


def gap_error(path: Path, name: str) -> str:
    """The message of a run stopped by a gap: the file, what it lacks, what that would do, the two ways out."""
    lacks = ": file not found" if name.endswith(".csv") else f":1: no {name} column"
    return f'{path}{lacks}: {SAFETY_GAPS[name]}; export it, or accept the gap with [sfa] allow_missing = ["{name}"]'


def gap_note(path: Path, name: str) -> str:
    """The note of a gap the config accepts."""
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


class Columns:
    """Column positions in one file, by API name (case-insensitive, spaces around a name ignored; a name
    written twice: the last one counts, as a dict of the header would have it)."""

    __slots__ = ("path", "names", "_index")

    def __init__(self, path: Path, names: Iterable[str]) -> None:
        self.path = path
        self.names = tuple(names)  # the header as written
        self._index = {name.strip().lower(): position for position, name in enumerate(self.names)}

    def get(self, name: str) -> int | None:
        return self._index.get(name.strip().lower())

    def has(self, name: str) -> bool:
        return name.strip().lower() in self._index

    def missing(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if not self.has(name)]


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
