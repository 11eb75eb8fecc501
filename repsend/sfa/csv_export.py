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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


# The spellings exports write, answered without stripping and lowering; anything else goes to parse_bool.
_BOOLS = {"true": True, "TRUE": True, "True": True, "1": True, "false": False, "FALSE": False, "False": False,
          "0": False, "": False}


@lru_cache(maxsize=8192)
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


# ``to_date`` answers as parse_date does, faster for the values an export repeats: a date alone is looked up
# as written; a timestamp (nearly every one distinct) by its leading YYYY-MM-DD once that day has parsed, when
# the rest is a time parse_date accepts. Both tables are bounded; a value not in them goes to parse_date.
_DAYS_LIMIT = 65536
_exact_days: dict[str, date | None] = {}
_prefix_days: dict[str, date] = {}
_PREFIX = re.compile(r"\d{4}[-/]\d{2}[-/]\d{2}")
_TIME = re.compile(r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_MISS: Any = object()


_times: set[str] = set()  # time parts (from the eleventh character) that _TIME matched


def _is_time(value: str) -> bool:
    """``_TIME.match(value, 10)``: the same answer, looked up for a time part seen before."""
    rest = value[10:]
    if rest in _times:
        return True
    if _TIME.match(rest) is None:
        return False
    if len(_times) < _DAYS_LIMIT:
        _times.add(rest)
    return True


def to_date(value: str) -> date | None:
    if len(value) > 10:
        day = _prefix_days.get(value[:10])
        if day is not None and _is_time(value):
            return day
    else:
        day = _exact_days.get(value, _MISS)
        if day is not _MISS:
            return day
    result = parse_date(value)
    if len(value) <= 10 and len(_exact_days) < _DAYS_LIMIT:
        _exact_days[value] = result
    if result is not None and len(_prefix_days) < _DAYS_LIMIT and _PREFIX.fullmatch(value, 0, 10) is not None:
        # The regex of parse_date can only have read the date from these ten characters.
        _prefix_days[value[:10]] = result
    return result


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
        """(columns, editor line, row) for each non-empty record: for the small files (User.csv)."""
        with self.records(required) as (columns, reader):
            line = reader.line_num + 1
            for row in reader:
                if len(row) != self.width and row:
                    raise self.width_error(line, row)
                if row:
                    yield columns, line, row
                line = reader.line_num + 1

    @contextmanager
    def records(self, required: tuple[str, ...]) -> Iterator[tuple[_Columns, Any]]:
        """``rows`` for the loops that read every record, without a tuple per record: ``with`` gives
        ``(columns, reader)``, the header read and checked; the caller iterates ``reader`` itself, skips
        empty rows, checks each row's width (``width_error``) and takes the editor line from
        ``reader.line_num`` as ``rows`` does. A decoding or CSV error inside the block becomes the same
        InputError as in ``rows``."""
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
                self.width = len(header)
                yield columns, reader
            except UnicodeDecodeError:
                raise InputError(self._decode_error()) from None
            except csv.Error as exc:
                raise InputError(f"{self.path}:{reader.line_num}: malformed CSV: {exc}") from None

    def width_error(self, line: int, row: list[str]) -> InputError:
        return InputError(f"{self.path}:{line}: {len(row)} fields where the header has {self.width}")

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
        self._columns: _Columns | None = None  # Contact.csv's header, once a pass has read it
        self._stamp: tuple[int, int, int, int] | None = None  # Contact.csv as the first pass read it

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
        return self._deal_index(recent_since, roles_file.is_file())

    def _deal_index(self, recent_since: date, with_roles: bool) -> DealIndex:
        roles = self._roles() if with_roles else ()
        return DealIndex.build(self._deals(), roles, recent_since)

    def _deals(self) -> Iterator[Deal]:
        """Opportunity.csv, each record checked; a missing optional column reads as an empty cell."""
        file = self._file("Opportunity.csv")
        get = None
        for cols, line, row in file.rows(OPPORTUNITY_REQUIRED):
            if get is None:
                get = cols.get
                p_closed, p_account = get("IsClosed"), get("AccountId")
                p_id, p_contact, p_modified, p_close = (
                    get("Id"), get("ContactId"), get("LastModifiedDate"), get("CloseDate")
                )
                self._opportunity_notes(cols)
            closed = _BOOLS.get(row[p_closed])  # type: ignore[index]
            if closed is None:
                try:
                    closed = parse_bool(row[p_closed])  # type: ignore[index]
                except _BadValue as exc:
                    raise self._fail(cols, line, "IsClosed", exc) from None
            try:
                changed = to_date(_cell(row, p_modified))
            except _BadValue as exc:
                raise self._fail(cols, line, "LastModifiedDate", exc) from None
            try:
                value = to_date(_cell(row, p_close))
            except _BadValue as exc:
                raise self._fail(cols, line, "CloseDate", exc) from None
            if value is not None and (changed is None or value > changed):
                changed = value
            yield Deal(_cell(row, p_id), row[p_account], _cell(row, p_contact), closed, changed)  # type: ignore[index]

    def _opportunity_notes(self, cols: _Columns) -> None:
        """What Opportunity.csv lacks, said once, when its first record is read."""
        if not (cols.has("LastModifiedDate") or cols.has("CloseDate")):
            self._note(
                "Opportunity.csv has no LastModifiedDate or CloseDate column: a recently closed "
                "deal cannot make a contact recent"
            )
        if not cols.has("Id"):
            self._note("Opportunity.csv has no Id column: contact roles cannot be matched to deals")

    def _roles(self) -> Iterator[tuple[str, str]]:
        for cols, _line, row in self._file("OpportunityContactRole.csv").rows(ROLE_REQUIRED):
            yield row[cols.get("OpportunityId")], row[cols.get("ContactId")]  # type: ignore[index]

    def blocked_addresses(self, deals: DealIndex, scope: Scope) -> dict[str, Reason]:
        """The first pass over Contact.csv; it also checks every value, so that a malformed file
        stops the run before a single decision is printed.

        ``address_blocks`` over (email, id, account id, opted out, bounced) of every record, without
        building a Contact for each: only the cells that block an address are read."""
        path = self.folder / "Contact.csv"
        stamp = _stamp(path)
        flags = (
            (row[p[1]], row[p[0]], row[p[5]], opted, bounced)
            for p, _line, row, opted, bounced, _activity, _created in self._checked_rows()
        )
        blocks = address_blocks(flags, deals, scope)
        self._stamp = stamp if stamp == _stamp(path) else None
        return blocks

    def contacts(self) -> Iterator[Contact]:
        """The second pass over Contact.csv: every record as a Contact, in file order.

        The records were checked by the first pass (``blocked_addresses``); if the file is no longer the
        one it read, the run stops rather than decide on records nobody checked."""
        self._check_unchanged()
        yield from self._contacts()
        self._check_unchanged()

    def _check_unchanged(self) -> None:
        path = self.folder / "Contact.csv"
        if self._stamp is not None and _stamp(path) != self._stamp:
            raise InputError(f"{path}: changed while it was being read (an export still being written?); run again")

    def _contacts(self) -> Iterator[Contact]:
        extra_fields: list[tuple[str, int]] | None = None
        for p, line, row, opted, bounced, activity, created in self._checked_rows():
            if extra_fields is None:
                columns = self._columns
                extra_fields = [(name, columns.get(name)) for name in self.contact_fields]  # type: ignore[misc]
                extra_fields = [(name, position) for name, position in extra_fields if position is not None]
            yield Contact(
                row[p[0]].strip(),
                row[p[1]],
                row[p[2]].strip(),
                row[p[3]],
                row[p[4]],
                row[p[5]].strip(),
                row[p[6]],
                row[p[7]],
                opted,
                bounced,
                activity,
                created,
                row[p[12]],
                {name: row[position] for name, position in extra_fields} if extra_fields else {},
                f"Contact.csv:{line}",
            )

    def _checked_rows(self) -> Iterator[tuple[tuple[int, ...], int, list[str], bool, bool, date | None, date | None]]:
        """Every Contact.csv record with its checked booleans and dates: (positions, line, row, opted out,
        bounced, last activity, created). Both passes read through here, so both raise the same errors."""
        file = self._file("Contact.csv")
        path = file.path
        exact_days_get, prefix_days_get, is_time, miss = _exact_days.get, _prefix_days.get, _is_time, _MISS
        with file.records(CONTACT_REQUIRED) as (cols, reader):
            self._columns = cols
            width = file.width
            positions = self._contact_positions(cols, width)
            p_opted, p_bounced, p_activity, p_created = positions[8], positions[9], positions[10], positions[11]
            pad = width in positions
            first = True
            line = reader.line_num + 1
            for row in reader:
                if len(row) != width:
                    if row:
                        raise file.width_error(line, row)
                    line = reader.line_num + 1
                    continue
                if first:
                    first = False
                    self._contact_notes(cols)
                if pad:
                    row.append("")
                opted = _BOOLS.get(row[p_opted])
                if opted is None:
                    opted = _bool_at(row, p_opted, path, line, "HasOptedOutOfEmail")
                bounced = _BOOLS.get(row[p_bounced])
                if bounced is None:
                    bounced = _bool_at(row, p_bounced, path, line, "IsEmailBounced")
                # to_date, its lookups inline: a date as written, then a timestamp by its day.
                value = row[p_activity]
                activity = exact_days_get(value, miss)
                if activity is miss:
                    try:
                        activity = to_date(value)
                    except _BadValue as exc:
                        raise InputError(f"{path}:{line}: LastActivityDate: {exc}") from None
                value = row[p_created]
                created = prefix_days_get(value[:10])
                if created is None or not is_time(value):
                    try:
                        created = to_date(value)
                    except _BadValue as exc:
                        raise InputError(f"{path}:{line}: CreatedDate: {exc}") from None
                yield positions, line, row, opted, bounced, activity, created  # type: ignore[misc]
                line = reader.line_num + 1

    def _contact_positions(self, cols: _Columns, pad: int) -> tuple[int, ...]:
        """Where each Contact value is; a missing column at ``pad``, the empty cell appended to each row
        (an empty cell reads as the missing column did: false, no date, empty text)."""
        language = cols.get(self.language_field) if self.language_field else None
        get = cols.get
        positions = (
            get("Id"), get("Email"), get("OwnerId"), get("FirstName"), get("LastName"), get("AccountId"),
            get("Account.Name"), get("Title"), get("HasOptedOutOfEmail"), get("IsEmailBounced"),
            get("LastActivityDate"), get("CreatedDate"), language,
        )
        return tuple(pad if position is None else position for position in positions)

    def _contact_notes(self, cols: _Columns) -> None:
        """What Contact.csv lacks, said once, when its first record is read."""
        for name, rule in CONTACT_OPTIONAL.items():
            if not cols.has(name):
                self._note(f"Contact.csv has no {name} column: {rule} has nothing to go on")
        if self.language_field and cols.get(self.language_field) is None:
            self._note(
                f"Contact.csv has no {self.language_field} column ([template] language_field): "
                "every mail uses the default language"
            )
        for name in self.contact_fields:
            if cols.get(name) is None:
                self._note(
                    f"Contact.csv has no {name} column ([sfa] contact_fields): a template that needs it "
                    "skips the contact with missing_field"
                )

    def close(self) -> None:
        pass


def _stamp(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or written to (0s: it is gone)."""
    try:
        stat = path.stat()
    except OSError:
        return 0, 0, 0, 0
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _bool_at(row: list[str], position: int | None, path: Path, line: int, field: str) -> bool:
    if position is None:
        return False
    try:
        return parse_bool(row[position])
    except _BadValue as exc:
        raise InputError(f"{path}:{line}: {field}: {exc}") from None
