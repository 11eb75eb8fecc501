"""A Salesforce CSV export (Data Loader or a report) as an SFA source: the embedded default.

Headers are API field names, matched case-insensitively (Data Loader has written them in capitals,
as typed, and in capitals again). Only the columns a rule cannot do without are required; a missing
optional column means its rule has nothing to go on, and ``notes`` says so once. A malformed value
stops the run with ``file:line: what is wrong``, the line as an editor shows it (the header is line 1).
Contact.csv is read twice, both times streaming: once for the addresses that block every record
(opt-outs, bounces, open deals), once for the decisions, so memory does not grow with the export.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from repsend.errors import InputError
from repsend.models import Contact, Reason, Rep, id15
from repsend.sfa.base import Deal, DealIndex, Scope, address_blocks

if TYPE_CHECKING:
    from repsend.settings import Settings

# Salesforce's CSV cells may hold a whole signature; the csv module's default limit is 128 KiB.
csv.field_size_limit(16 * 1024 * 1024)

_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})
_DATE = re.compile(
    r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)

USER_REQUIRED = ("Id", "Name", "Email", "IsActive")
CONTACT_REQUIRED = ("Id", "Email", "OwnerId")
OPPORTUNITY_REQUIRED = ("AccountId", "IsClosed")
ROLE_REQUIRED = ("OpportunityId", "ContactId")

# Optional Contact columns and the rule each one feeds, for the note when one is missing.
CONTACT_OPTIONAL = {
    "HasOptedOutOfEmail": "the opted_out rule",
    "IsEmailBounced": "the bounced rule",
    "LastActivityDate": "recent_activity (last activity)",
    "CreatedDate": "recent_activity (new contacts)",
    "AccountId": "active_deal and recent_activity by account",
}


class _BadValue(ValueError):
    pass


def parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _BadValue(f"{value!r} is not a boolean (expected true/false, TRUE/FALSE or 1/0)")


@lru_cache(maxsize=65536)
def parse_date(value: str) -> date | None:
    """2025-03-14, 2025/03/14, 2025/3/14 or a full timestamp (its date as written)."""
    value = value.strip()
    if not value:
        return None
    match = _DATE.match(value)
    if match is None:
        raise _BadValue(f"{value!r} is not a date (expected 2025-03-14, 2025/03/14 or 2025-03-14T09:30:00.000Z)")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise _BadValue(f"{value!r} is not a date that exists") from None


@dataclass(slots=True)
class _Columns:
    """Column positions in one file, by API name (case-insensitive)."""

    path: Path
    index: dict[str, int]

    def get(self, name: str) -> int | None:
        return self.index.get(name.lower())

    def has(self, name: str) -> bool:
        return name.lower() in self.index


class _Reader:
    """One CSV file, streamed, that knows which editor line each record starts on."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self.encoding = encoding

    def rows(self, required: tuple[str, ...]) -> Iterator[tuple[_Columns, int, list[str]]]:
        try:
            handle = open(self.path, encoding=self.encoding, newline="")  # noqa: SIM115
        except FileNotFoundError:
            raise InputError(f"{self.path}: file not found") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {exc.strerror}") from None
        with handle:
            reader = csv.reader(handle, strict=True)
            try:
                header = next(reader, None)
                if header is None:
                    raise InputError(f"{self.path}:1: the file is empty (expected a header of API field names)")
                columns = _Columns(self.path, {h.strip().lower(): i for i, h in enumerate(header)})
                missing = [name for name in required if not columns.has(name)]
                if missing:
                    raise InputError(
                        f"{self.path}:1: missing required column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)} (the header has: {', '.join(h.strip() for h in header)})"
                    )
                width = len(header)
                line = reader.line_num + 1
                for row in reader:
                    if len(row) != width and row:
                        raise InputError(f"{self.path}:{line}: {len(row)} fields where the header has {width}")
                    if row:
                        yield columns, line, row
                    line = reader.line_num + 1
            except UnicodeDecodeError:
                raise InputError(self._decode_error()) from None
            except csv.Error as exc:
                raise InputError(f"{self.path}:{reader.line_num}: malformed CSV: {exc}") from None

    def _decode_error(self) -> str:
        """The first line that does not decode; only read when decoding already failed."""
        import codecs

        decoder = codecs.getincrementaldecoder(self.encoding)()
        with open(self.path, "rb") as raw:
            for number, chunk in enumerate(raw, start=1):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    hint = " (an export from Japanese Excel is cp932: set [sfa] encoding = \"cp932\")"
                    if self.encoding.lower().replace("_", "-") in ("cp932", "shift-jis", "sjis"):
                        hint = " (set [sfa] encoding to the file's encoding, e.g. \"utf-8\")"
                    return f"{self.path}:{number}: not valid {self._shown_encoding}{hint}"
        return f"{self.path}: not valid {self._shown_encoding}"

    @property
    def _shown_encoding(self) -> str:
        return "utf-8" if self.encoding == "utf-8-sig" else self.encoding


def _cell(row: list[str], position: int | None) -> str:
    return row[position] if position is not None else ""


class CsvExportSource:
    def __init__(
        self,
        folder: Path,
        encoding: str = "utf-8",
        contact_fields: list[str] | None = None,
        language_field: str = "",
    ) -> None:
        self.folder = folder
        # utf-8-sig reads UTF-8 with or without the BOM Excel writes.
        self.encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        self.contact_fields = list(dict.fromkeys(contact_fields or []))
        self.language_field = language_field
        self.notes: list[str] = []
        self._noted: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> CsvExportSource:
        return cls(
            settings.resolve(settings.sfa.path),
            settings.sfa.encoding,
            settings.sfa.contact_fields,
            settings.template.language_field,
        )

    def _note(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self.notes.append(text)

    def _file(self, name: str) -> _Reader:
        return _Reader(self.folder / name, self.encoding)

    def _fail(self, columns: _Columns, line: int, field: str, exc: Exception) -> InputError:
        return InputError(f"{columns.path}:{line}: {field}: {exc}")

    def reps(self) -> dict[str, Rep]:
        reps: dict[str, Rep] = {}
        for cols, line, row in self._file("User.csv").rows(USER_REQUIRED):
            get = cols.get
            try:
                active = parse_bool(row[get("IsActive")])  # type: ignore[index]
            except _BadValue as exc:
                raise self._fail(cols, line, "IsActive", exc) from None
            rep = Rep(
                id=row[get("Id")].strip(),  # type: ignore[index]
                name=row[get("Name")].strip(),  # type: ignore[index]
                email=row[get("Email")].strip(),  # type: ignore[index]
                is_active=active,
                first_name=_cell(row, get("FirstName")).strip(),
                last_name=_cell(row, get("LastName")).strip(),
                title=_cell(row, get("Title")).strip(),
                phone=_cell(row, get("Phone")).strip(),
                signature=_cell(row, get("Signature")).replace("\r\n", "\n").strip(),
            )
            reps[id15(rep.id)] = rep
        return reps

    def deals(self, recent_since: date, scope: Scope) -> DealIndex:
        deals_file = self.folder / "Opportunity.csv"
        if not deals_file.is_file():
            raise InputError(
                f"{deals_file}: file not found (Opportunity.csv is required: without deal data nobody "
                "can be called dormant)"
            )
        roles_file = self.folder / "OpportunityContactRole.csv"
        if not roles_file.is_file():
            self._note(
                "OpportunityContactRole.csv is not in the export: deals reach contacts only through their "
                "account and Opportunity.ContactId"
            )
        return DealIndex.build(
            self._deals(),
            self._roles() if roles_file.is_file() else (),
            recent_since,
        )

    def _deals(self) -> Iterator[Deal]:
        first = True
        for cols, line, row in self._file("Opportunity.csv").rows(OPPORTUNITY_REQUIRED):
            get = cols.get
            if first:
                first = False
                if not (cols.has("LastModifiedDate") or cols.has("CloseDate")):
                    self._note(
                        "Opportunity.csv has no LastModifiedDate or CloseDate column: a recently closed "
                        "deal cannot make a contact recent"
                    )
                if not cols.has("Id"):
                    self._note("Opportunity.csv has no Id column: contact roles cannot be matched to deals")
            try:
                closed = parse_bool(row[get("IsClosed")])  # type: ignore[index]
            except _BadValue as exc:
                raise self._fail(cols, line, "IsClosed", exc) from None
            changed = None
            for name in ("LastModifiedDate", "CloseDate"):
                try:
                    value = parse_date(_cell(row, get(name)))
                except _BadValue as exc:
                    raise self._fail(cols, line, name, exc) from None
                if value is not None and (changed is None or value > changed):
                    changed = value
            yield Deal(
                id=_cell(row, get("Id")),
                account_id=row[get("AccountId")],  # type: ignore[index]
                contact_id=_cell(row, get("ContactId")),
                is_closed=closed,
                changed=changed,
            )

    def _roles(self) -> Iterator[tuple[str, str]]:
        for cols, _line, row in self._file("OpportunityContactRole.csv").rows(ROLE_REQUIRED):
            yield row[cols.get("OpportunityId")], row[cols.get("ContactId")]  # type: ignore[index]

    def blocked_addresses(self, deals: DealIndex, scope: Scope) -> dict[str, Reason]:
        """The first pass over Contact.csv; it also checks every value, so that a malformed file
        stops the run before a single decision is printed."""
        flags = ((c.email, c.id, c.account_id, c.opted_out, c.bounced) for c in self._contacts(check_only=True))
        return address_blocks(flags, deals, scope)

    def contacts(self) -> Iterator[Contact]:
        return self._contacts(check_only=False)

    def _contacts(self, check_only: bool) -> Iterator[Contact]:
        path = self.folder / "Contact.csv"
        positions = None
        for cols, line, row in self._file("Contact.csv").rows(CONTACT_REQUIRED):
            if positions is None:
                positions = self._contact_positions(cols)
                (
                    p_id, p_email, p_owner, p_first, p_last, p_account, p_account_name, p_title,
                    p_opted, p_bounced, p_activity, p_created, p_language, p_extra,
                ) = positions
            opted = _bool_at(row, p_opted, path, line, "HasOptedOutOfEmail")
            bounced = _bool_at(row, p_bounced, path, line, "IsEmailBounced")
            try:
                activity = parse_date(row[p_activity]) if p_activity is not None else None
            except _BadValue as exc:
                raise InputError(f"{path}:{line}: LastActivityDate: {exc}") from None
            try:
                created = parse_date(row[p_created]) if p_created is not None else None
            except _BadValue as exc:
                raise InputError(f"{path}:{line}: CreatedDate: {exc}") from None
            yield Contact(
                id=row[p_id].strip(),
                email=row[p_email],
                owner_id=row[p_owner].strip(),
                first_name="" if check_only else _cell(row, p_first),
                last_name="" if check_only else _cell(row, p_last),
                account_id=_cell(row, p_account).strip(),
                account_name="" if check_only else _cell(row, p_account_name),
                title="" if check_only else _cell(row, p_title),
                opted_out=opted,
                bounced=bounced,
                last_activity=activity,
                created=created,
                language_value="" if check_only else _cell(row, p_language),
                extra={} if check_only else {name: row[p] for name, p in p_extra if p is not None},
                origin=f"Contact.csv:{line}",
            )

    def _contact_positions(self, cols: _Columns) -> tuple:
        for name, rule in CONTACT_OPTIONAL.items():
            if not cols.has(name):
                self._note(f"Contact.csv has no {name} column: {rule} has nothing to go on")
        language = None
        if self.language_field:
            language = cols.get(self.language_field)
            if language is None:
                self._note(
                    f"Contact.csv has no {self.language_field} column ([template] language_field): "
                    "every mail uses the default language"
                )
        extra = [(name, cols.get(name)) for name in self.contact_fields]
        for name, position in extra:
            if position is None:
                self._note(
                    f"Contact.csv has no {name} column ([sfa] contact_fields): a template that needs it "
                    "skips the contact with missing_field"
                )
        get = cols.get
        return (
            get("Id"), get("Email"), get("OwnerId"), get("FirstName"), get("LastName"), get("AccountId"),
            get("Account.Name"), get("Title"), get("HasOptedOutOfEmail"), get("IsEmailBounced"),
            get("LastActivityDate"), get("CreatedDate"), language, extra,
        )

    def close(self) -> None:
        pass


def _bool_at(row: list[str], position: int | None, path: Path, line: int, field: str) -> bool:
    if position is None:
        return False
    try:
        return parse_bool(row[position])
    except _BadValue as exc:
        raise InputError(f"{path}:{line}: {field}: {exc}") from None
