"""A Salesforce CSV export (Data Loader or a report) as an SFA source: the embedded default.

What the files hold and how their values are written is ``csv_format``; reading them fast, and carefully
where a chunk needs it, is ``csv_reader``; this module turns their records into ``Rep``, ``Deal`` and
``Contact``. Contact.csv is read twice, both times streaming: once for the addresses that block every
record (opt-outs, bounces, open deals) and to check every value, so that a malformed file stops the run
before the first decision; once for the decisions. Memory does not grow with the export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Set
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from repsend.errors import InputError
from repsend.models import Contact, Reason, Rep, id15
from repsend.sfa.base import Activity, Deal, DealIndex, OpenedDeal, Scope, address_blocks
from repsend.sfa.contact_frames import contact_columns, contacts_of, with_origin
from repsend.sfa.csv_format import (
    BOUNCE_EVIDENCE,
    CONTACT_REQUIRED,
    NO_ROLES_NOTE,
    OPPORTUNITY_REQUIRED,
    OWNER_NAME_LABELS,
    ROLE_REQUIRED,
    USER_REQUIRED,
    Columns,
    contact_gaps,
    contact_notes,
    gap_error,
    gap_note,
    label_key,
    labels_for,
    opportunity_notes,
)
from repsend.sfa.csv_reader import BOOL, DATE, NONEMPTY, TEXT, CsvFile, Wanted, rows_of

if TYPE_CHECKING:
    from repsend.settings import Settings

USER_COLUMNS = {"Id": TEXT, "Name": TEXT, "Email": TEXT, "IsActive": BOOL, "FirstName": TEXT, "LastName": TEXT,
                "Title": TEXT, "Phone": TEXT, "Signature": TEXT}
DEAL_COLUMNS = {"Id": TEXT, "AccountId": TEXT, "ContactId": TEXT, "IsClosed": BOOL, "LastModifiedDate": DATE,
                "CloseDate": DATE}
ROLE_COLUMNS = {"OpportunityId": TEXT, "ContactId": TEXT}
# The first pass reads what blocks an address, and every value that could be malformed.
BLOCK_COLUMNS = {"Email": TEXT, "Id": TEXT, "AccountId": TEXT, "HasOptedOutOfEmail": BOOL, "IsEmailBounced": BOOL,
                 "LastActivityDate": DATE, "CreatedDate": DATE}
_PLAIN_ID = r"^[0-9A-Za-z]*$"  # an Id as Salesforce writes it: id15 is its first 15 characters


class CsvExportSource:
    def __init__(
        self,
        folder: Path,
        encoding: str = "utf-8",
        contact_fields: list[str] | None = None,
        language_field: str = "",
        allow_missing: list[str] | None = None,
        columns: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        # utf-8-sig reads UTF-8 with or without the BOM Excel writes.
        self.encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        self.contact_fields = list(dict.fromkeys(contact_fields or []))
        self.language_field = language_field
        self.allow_missing = frozenset(allow_missing or ())
        self.columns = dict(columns or {})  # [sfa.columns]: header label -> API name
        self._owners: dict[str, str] = {}  # a user's name -> their Id ("" for a name two users share)
        self.notes: list[str] = []
        self._contacts: CsvFile | None = None  # Contact.csv, once the first pass has read it

    @classmethod
    def from_settings(cls, settings: Settings) -> CsvExportSource:
        return cls(
            settings.resolve(settings.sfa.path),
            settings.sfa.encoding,
            settings.sfa.contact_fields,
            settings.template.language_field,
            settings.sfa.allow_missing,
            settings.sfa.columns,
        )

    def _note(self, *texts: str) -> None:
        self.notes.extend(text for text in texts if text not in self.notes)

    def _gap(self, path: Path, name: str, columns: Columns | None = None, lacks: str = "") -> None:
        """A safety rule's data the export lacks: stop, unless [sfa] allow_missing accepts it (said once)."""
        wanted = "Id" if lacks else name
        if name not in self.allow_missing:
            hint = columns.unmapped_hint(wanted) if columns is not None else ""
            raise InputError(gap_error(path, name, hint, lacks))
        self._note(gap_note(path, name, lacks))

    def _file(self, name: str, required: tuple[str, ...]) -> CsvFile:
        return CsvFile(self.folder / name, self.encoding, required, labels=labels_for(name, self.columns))

    def _contact_wanted(self, file: CsvFile, wanted: Wanted) -> dict[str, str | tuple[str, str]]:
        """``wanted`` for this Contact.csv: without IsEmailBounced, a bounce is a value left in a column a bounce
        fills (a report exports the reason and the date, not the flag)."""
        wanted = dict(wanted)
        if not file.columns.has("IsEmailBounced"):
            evidence = next((name for name in BOUNCE_EVIDENCE if file.columns.has(name)), None)
            if evidence is not None:
                wanted["IsEmailBounced"] = (evidence, NONEMPTY)
        return wanted

    def _owner_names(self, file: CsvFile, frame: pl.DataFrame) -> pl.DataFrame:
        """A report's owner column holds the user's name: each becomes the Id of the one user of that name in
        User.csv (a name no user or two users have stays as written: no owner)."""
        label = file.columns.label_of("OwnerId")
        if label is None or label_key(label) not in OWNER_NAME_LABELS:
            return frame
        self._note(f"Contact.csv: the owner column {label!r} holds names: each is matched to the one user of that "
                   "name in User.csv")
        names = pl.Series(list(self._owners), dtype=pl.String)
        ids = pl.Series(list(self._owners.values()), dtype=pl.String)
        return frame.with_columns(pl.col("OwnerId").str.strip_chars().replace(names, ids))

    # -- what the run asks ------------------------------------------------------------------------------

    def reps(self) -> dict[str, Rep]:
        reps: dict[str, Rep] = {}
        for frame in self._file("User.csv", USER_REQUIRED).frames(USER_COLUMNS):
            for sfid, name, email, active, first, last, title, phone, signature in rows_of(frame, list(USER_COLUMNS)):
                rep = Rep(id=sfid.strip(), name=name.strip(), email=email.strip(), is_active=active,
                          first_name=first.strip(), last_name=last.strip(), title=title.strip(), phone=phone.strip(),
                          signature=signature.replace("\r\n", "\n").strip())
                reps[id15(rep.id)] = rep
        owners: dict[str, str] = {}
        for rep in reps.values():
            owners[rep.name] = "" if rep.name in owners else rep.id
        self._owners = {name: sfid for name, sfid in owners.items() if name}
        return reps

    def deals(self, recent_since: date, scope: Scope) -> DealIndex:
        deals_file = self.folder / "Opportunity.csv"
        if not deals_file.is_file():
            raise InputError(
                f"{deals_file}: file not found (Opportunity.csv is required: without deal data nobody "
                "can be called dormant)"
            )
        file = self._file("Opportunity.csv", OPPORTUNITY_REQUIRED)
        roles_file = self.folder / "OpportunityContactRole.csv"
        if scope == "contact_role":  # the roles are the deals' only way to their contacts
            if not roles_file.is_file():
                self._gap(roles_file, "OpportunityContactRole.csv")
            elif not file.columns.has("Id"):  # the roles name deals by Id: without it they reach nobody
                self._gap(file.path, "OpportunityContactRole.csv", file.columns, lacks=":1: no Id column (the "
                          "contact roles name their deals by Id)")
        elif not roles_file.is_file():
            self._note(NO_ROLES_NOTE)
        return DealIndex.build(self._deals(file, recent_since), self._roles if roles_file.is_file() else (),
                               recent_since)

    def _deals(self, file: CsvFile, recent_since: date) -> Iterator[Deal]:
        """Opportunity.csv, each record checked; a missing optional column reads as an empty cell. Only the
        deals that may count (open, or changed since ``recent_since``) become Python objects."""
        may_count = ~pl.col("IsClosed") | (pl.col("LastModifiedDate") >= recent_since).fill_null(False) | (
            pl.col("CloseDate") >= recent_since).fill_null(False)
        seen = _Seen(may_count)
        for frame in file.frames(DEAL_COLUMNS, then=seen.filter):
            for sfid, account, contact, closed, modified, closing in rows_of(frame, list(DEAL_COLUMNS)):
                changed = closing if closing is not None and (modified is None or closing > modified) else modified
                yield Deal(id=sfid, account_id=account, contact_id=contact, is_closed=closed, changed=changed)
        if seen.records:  # what the file lacks, said once there is a record it means something for
            self._note(*opportunity_notes(file.columns))

    def opened_deals(self, since: date) -> Iterator[OpenedDeal]:
        """Opportunity.csv's deals created on or after ``since``, with their contact roles; its CreatedDate
        column is needed (an export made for outcomes must include it)."""
        file = self._file("Opportunity.csv", ("AccountId",))
        if not file.columns.has("CreatedDate"):
            raise InputError(f"{file.path}:1: no CreatedDate column: deals opened after a mail cannot be counted "
                             "(export Opportunity.CreatedDate too)")
        wanted = {"Id": TEXT, "AccountId": TEXT, "ContactId": TEXT, "CreatedDate": DATE}
        found: list[tuple[str, str, str, date]] = []
        for frame in file.frames(wanted, then=lambda f: f.filter((pl.col("CreatedDate") >= since).fill_null(False))):
            found.extend(rows_of(frame, list(wanted)))
        roles: dict[str, list[str]] = {}
        if (self.folder / "OpportunityContactRole.csv").is_file() and found:
            for opportunity, contact in self._roles({id15(sfid) for sfid, *_ in found if sfid}):
                roles.setdefault(id15(opportunity), []).append(id15(contact))
        for sfid, account, contact, created in found:
            named = ([id15(contact)] if contact else []) + roles.get(id15(sfid), [])
            contacts = tuple(dict.fromkeys(named))
            yield OpenedDeal(id15(sfid), id15(account), contacts, created)

    def account_ids(self, contact_ids: Iterable[str]) -> dict[str, str]:
        wanted_ids = {id15(c) for c in contact_ids}
        found: dict[str, str] = {}
        file = self._file("Contact.csv", ("Id",))
        for frame in file.frames({"Id": TEXT, "AccountId": TEXT}):
            for sfid, account in rows_of(frame, ["Id", "AccountId"]):
                key = id15(sfid)
                if key in wanted_ids and account:
                    found[key] = id15(account)
        return found

    def activities(self, contact_ids: Iterable[str], since: date) -> Iterator[Activity]:
        """An export holds no Tasks: each contact's LastActivityDate on or after ``since``."""
        wanted_ids = {id15(c) for c in contact_ids}
        file = self._file("Contact.csv", ("Id",))
        for frame in file.frames({"Id": TEXT, "LastActivityDate": DATE}):
            for sfid, last in rows_of(frame, ["Id", "LastActivityDate"]):
                key = id15(sfid)
                if key in wanted_ids and last is not None and last >= since:
                    yield Activity(key, datetime.combine(last, time(0, 0), tzinfo=UTC))

    def _roles(self, counted: Set[str]) -> Iterator[tuple[str, str]]:
        """The contact roles of the deals ``counted`` (15-character Ids), and a few more (see ``_named``)."""
        named = _named(counted)
        for frame in self._file("OpportunityContactRole.csv", ROLE_REQUIRED).frames(
                ROLE_COLUMNS, then=lambda frame: frame.filter(named(frame.get_column("OpportunityId")))):
            yield from rows_of(frame, list(ROLE_COLUMNS))

    def blocked_addresses(self, deals: DealIndex, scope: Scope) -> dict[str, Reason]:
        """The first pass over Contact.csv: ``address_blocks`` over every record, whose values it also
        checks, so that a malformed file stops the run before a single decision is printed.

        Only the records that may block an address reach ``address_blocks`` (which decides): opted out,
        bounced, or with an Id that an open deal names; as SOQL's WHERE would filter them, a superset."""
        file = self._contacts = self._file("Contact.csv", CONTACT_REQUIRED)
        for gap in contact_gaps(file.columns, scope):  # before any record is read
            self._gap(file.path, gap, file.columns)
        named = _named(deals.open_accounts | deals.open_contacts)

        def may_block(frame: pl.DataFrame) -> pl.Series:
            keep = frame.get_column("HasOptedOutOfEmail") | frame.get_column("IsEmailBounced")
            return keep | named(frame.get_column("AccountId")) | named(frame.get_column("Id"))

        names = ["Email", "Id", "AccountId", "HasOptedOutOfEmail", "IsEmailBounced"]

        seen = _Seen(may_block)

        def flags() -> Iterator[tuple[str, str, str, bool, bool]]:
            for frame in file.frames(self._contact_wanted(file, BLOCK_COLUMNS), then=seen.filter):
                yield from rows_of(frame, names)
            if seen.records:
                self._note(*contact_notes(file.columns, self.language_field, self.contact_fields))

        return address_blocks(flags(), deals, scope)

    def contacts(self) -> Iterator[Contact]:
        """The second pass over Contact.csv: every record as a Contact, in file order.

        The records were checked by the first pass (``blocked_addresses``); if the file is no longer the
        one it read, the run stops rather than decide on records nobody checked."""
        file = self._contacts or self._file("Contact.csv", CONTACT_REQUIRED)
        # The template fields the file has (one it lacks is left out of extra: the template says so).
        language = self.language_field
        fields = [name for name in self.contact_fields if file.columns.has(name)]
        first = True
        for frame in file.again(self._contact_wanted(file, contact_columns(language, fields)), lines=True):
            if first and frame.height:
                self._note(*contact_notes(file.columns, language, self.contact_fields))
                first = False
            frame = self._owner_names(file, frame)
            yield from contacts_of(with_origin(frame, "Contact.csv:{}", "_line"), language, fields)

    def close(self) -> None:
        pass


class _Seen:
    """A filter for ``CsvFile.frames(then=...)`` that also counts the records it saw."""

    def __init__(self, keep: pl.Expr | Callable[[pl.DataFrame], pl.Series]) -> None:
        self.keep = keep
        self.records = 0

    def filter(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.records += frame.height
        return frame.filter(self.keep if isinstance(self.keep, pl.Expr) else self.keep(frame))


def _named(ids: Set[str]) -> Callable[[pl.Series], pl.Series]:
    """Which Ids of a column may be among ``ids`` (15 characters each), as a filter a reader applies before
    its records become Python objects: the Ids as hashes in a sorted array, looked up without a set rebuilt
    for every chunk; a hash two Ids share, or an Id not written plainly, only lets a record more through."""
    hashes = pl.Series(sorted(ids), dtype=pl.String).hash(seed=0).sort()

    def named(column: pl.Series) -> pl.Series:
        odd = ~column.str.contains(_PLAIN_ID)
        if not hashes.len():
            return odd
        key = column.str.slice(0, 15).hash(seed=0)
        return odd | (hashes.gather(hashes.search_sorted(key).clip(0, hashes.len() - 1)) == key)

    return named
