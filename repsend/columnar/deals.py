"""Opportunity.csv and OpportunityContactRole.csv as ``CsvExportSource.deals`` reads them: a DealIndex."""

from __future__ import annotations

from datetime import date

import polars as pl

from repsend.columnar.chunks import DEAL_CHUNK_BYTES, Decline, _Csv
from repsend.columnar.expressions import _CONTROL, _bool, _read_days, _series, _written_bool
from repsend.sfa.base import DealIndex, Scope
from repsend.sfa.csv_export import OPPORTUNITY_REQUIRED, ROLE_REQUIRED, CsvExportSource

_OPEN_DEAL, _RECENT_DEAL = 1, 2


def _deal_codes(deals: DealIndex, scope: Scope) -> tuple[dict[str, int], dict[str, int]]:
    """Contact and account keys with _OPEN_DEAL and _RECENT_DEAL bits (no accounts in contact_role scope)."""
    contacts = dict.fromkeys(deals.recent_contacts, _RECENT_DEAL)
    for key in deals.open_contacts:
        contacts[key] = contacts.get(key, 0) | _OPEN_DEAL
    accounts: dict[str, int] = {}
    if scope == "account":
        accounts = dict.fromkeys(deals.recent_accounts, _RECENT_DEAL)
        for key in deals.open_accounts:
            accounts[key] = accounts.get(key, 0) | _OPEN_DEAL
    return contacts, accounts


def _any_control(frame: pl.DataFrame) -> bool:
    """Whether a cell holds a control character (which only a chunk that is not plain can)."""
    return bool(frame.select(pl.any_horizontal(pl.col(n).str.contains(_CONTROL) for n in frame.columns).any()).item())


def _deals(source: CsvExportSource, recent_since: date) -> DealIndex:
    """``source.deals`` with the deals read as columns: the same DealIndex, notes and declines."""
    from repsend.sfa.base import DealIndex

    folder = source.folder
    if not (folder / "Opportunity.csv").is_file():
        raise Decline("no Opportunity.csv")
    roles_file = folder / "OpportunityContactRole.csv"
    with_roles = roles_file.is_file()
    if not with_roles:
        source._note(
            "OpportunityContactRole.csv is not in the export: deals reach contacts only through their "
            "account and Opportunity.ContactId"
        )
    deals_csv = _Csv(folder / "Opportunity.csv", source.encoding, OPPORTUNITY_REQUIRED, DEAL_CHUNK_BYTES)
    cols = deals_csv.columns

    def cell(name: str) -> pl.Expr:
        position = cols.get(name)
        return pl.col(f"c{position}") if position is not None else pl.lit("")

    index = DealIndex()
    open_opps: set[str] = set()
    recent_opps: set[str] = set()
    seen = False
    read = ("Id", "AccountId", "ContactId", "IsClosed", "LastModifiedDate", "CloseDate")
    for frame, plain in deals_csv.frames(check=True, only=read):
        seen = seen or frame.height > 0
        d = frame.select(
            id=cell("Id"), account=cell("AccountId"), contact=cell("ContactId"), closed_text=cell("IsClosed"),
            modified_text=cell("LastModifiedDate"), close_text=cell("CloseDate"),
        )
        if not plain and _any_control(d):
            raise Decline("Opportunity.csv: a control character")
        days = {"modified": "modified_text", "close": "close_text"}
        d = _read_days(d.with_columns(closed=_written_bool("closed_text")), days)
        if d.get_column("closed").null_count():
            d = d.with_columns(pl.col("closed").fill_null(_bool("closed_text")))
            if d.get_column("closed").null_count():
                raise Decline("Opportunity.csv: IsClosed is not a boolean")
        d = d.select(
            id=pl.col("id").str.strip_chars().str.slice(0, 15),
            account=pl.col("account").str.strip_chars().str.slice(0, 15),
            contact=pl.col("contact").str.strip_chars().str.slice(0, 15),
            closed="closed",
            changed=pl.max_horizontal("modified", "close"),
        )
        # DealIndex.build, a chunk at a time: only the keys of open and recent deals are kept.
        for part, opps, accounts, contacts in (
            (d.filter(~pl.col("closed")), open_opps, index.open_accounts, index.open_contacts),
            (d.filter(pl.col("closed") & (pl.col("changed") >= recent_since)), recent_opps, index.recent_accounts,
             index.recent_contacts),
        ):
            opps.update(part.get_column("id").to_list())
            accounts.update(part.get_column("account").filter(part.get_column("account") != "").to_list())
            contacts.update(part.get_column("contact").filter(part.get_column("contact") != "").to_list())
    if seen:
        source._opportunity_notes(cols)
    if with_roles:
        roles_csv = _Csv(roles_file, source.encoding, ROLE_REQUIRED, DEAL_CHUNK_BYTES)
        p_opp, p_contact = roles_csv.columns.get("OpportunityId"), roles_csv.columns.get("ContactId")
        open_ids, recent_ids = _series(open_opps), _series(recent_opps)
        for frame, plain in roles_csv.frames(check=True, only=("OpportunityId", "ContactId")):
            r = frame.select(opp=pl.col(f"c{p_opp}"), contact=pl.col(f"c{p_contact}"))
            if not plain and _any_control(r):
                raise Decline("OpportunityContactRole.csv: a control character")
            r = r.select(pl.all().str.strip_chars().str.slice(0, 15)).filter(pl.col("contact") != "")
            index.open_contacts.update(r.filter(pl.col("opp").is_in(open_ids)).get_column("contact").to_list())
            index.recent_contacts.update(
                r.filter(~pl.col("opp").is_in(open_ids) & pl.col("opp").is_in(recent_ids))
                .get_column("contact").to_list()
            )
    return index
