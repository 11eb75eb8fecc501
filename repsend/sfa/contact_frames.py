"""Contacts from frames of typed columns: one definition for a CSV export and a Bulk API 2.0 results set.

Both are CSV with API field names as headers, read by ``csv_reader`` under ``csv_format``'s rules, so
a record means the same ``Contact`` whichever of the two it came from; only where it came from (the
``origin`` column the caller adds) differs. The REST API's JSON records are built in ``salesforce``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import polars as pl

from repsend.models import Contact
from repsend.sfa.csv_reader import BOOL, DATE, TEXT, Wanted, rows_of

# The Contact fields every source reads, by API name, and the kind each is read as.
CONTACT_COLUMNS: dict[str, str] = {
    "Id": TEXT, "Email": TEXT, "OwnerId": TEXT, "FirstName": TEXT, "LastName": TEXT, "AccountId": TEXT,
    "Account.Name": TEXT, "Title": TEXT, "HasOptedOutOfEmail": BOOL, "IsEmailBounced": BOOL,
    "LastActivityDate": DATE, "CreatedDate": DATE,
}  # fmt: skip


def contact_columns(language_field: str, fields: Sequence[str]) -> Wanted:
    """What ``contacts_of`` needs read: the standard fields, the language field and the template ``fields``,
    the last two as the text a template prints (a field may be read twice: CreatedDate as a date and as text)."""
    wanted: dict[str, str | tuple[str, str]] = {**CONTACT_COLUMNS, "language": (language_field or "Id", TEXT)}
    wanted.update({f"field:{name}": (name, TEXT) for name in fields})
    return wanted


def with_origin(frame: pl.DataFrame, template: str, column: str) -> pl.DataFrame:
    """The frame with its ``origin`` column: ``template`` with ``{}`` replaced by each record's ``column``."""
    return frame.with_columns(origin=pl.format(template, pl.col(column)))


def contacts_of(frame: pl.DataFrame, language_field: str, fields: Sequence[str]) -> Iterator[Contact]:
    """The records of a frame of ``contact_columns(language_field, fields)`` and ``origin``, as Contacts.

    Ids are stripped (an export may pad them); an address is kept as written, for the rules to normalize.
    ``extra`` holds exactly ``fields``: a caller leaves out what its source lacks, and a template that needs
    it then skips the contact rather than print an empty value."""
    names = [*CONTACT_COLUMNS, "language", "origin", *(f"field:{name}" for name in fields)]
    for (sfid, email, owner, first_name, last_name, account, account_name, title, opted, bounced, activity,
         created, language_value, origin, *values) in rows_of(frame, names):
        yield Contact(
            id=sfid.strip(), email=email, owner_id=owner.strip(), first_name=first_name, last_name=last_name,
            account_id=account.strip(), account_name=account_name, title=title, opted_out=opted, bounced=bounced,
            last_activity=activity, created=created, language_value=language_value if language_field else "",
            extra=dict(zip(fields, values, strict=True)) if fields else {}, origin=origin,
        )
