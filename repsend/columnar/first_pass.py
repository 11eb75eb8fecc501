"""Pass 1 over Contact.csv: every value checked, the addresses blocked on any record, a flag byte a record."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import polars as pl

from repsend.columnar.chunks import Decline, _Csv
from repsend.columnar.deals import _OPEN_DEAL, _RECENT_DEAL, _deal_codes
from repsend.columnar.expressions import (
    _BOUNCED,
    _CONTROL,
    _DATE,
    _IN_DEAL,
    _ODD_1,
    _OPTED,
    _RECENT,
    _bool,
    _cells,
    _codes_frame,
    _compact,
    _day,
    _exact_day,
    _keys,
    _look_up,
    _series,
)
from repsend.models import Reason, normalize_email
from repsend.sfa.base import DealIndex, Scope, address_blocks
from repsend.sfa.csv_export import parse_bool, to_date

_PASS1 = ("Email", "Id", "AccountId", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate", "CreatedDate")




@dataclass
class _FirstPass:
    blocked: pl.DataFrame  # address, block: the strongest address-level reason of each blocked address
    shared: pl.DataFrame  # the same for addresses on more than one record: only those can block another
    flags: list[pl.Series]  # per chunk, per record: _IN_DEAL | _RECENT | _ODD_1 | _OPTED | _BOUNCED
    seen: bool  # a record was read


def _first_pass(contacts: _Csv, deals: DealIndex, scope: Scope, dormant_since: date) -> _FirstPass:
    """Pass 1: every value checked (else Decline), ``sfa.base.address_blocks``, and each record's flags."""
    ranks = {reason.value: rank for rank, reason in enumerate(Reason)}
    schema = {"address": pl.String, "block": pl.String}
    contacts_codes, accounts_codes = _deal_codes(deals, scope)
    contact_info, account_info = _codes_frame(contacts_codes, "contact_key", "c_code"), (
        _codes_frame(accounts_codes, "account_key", "k_code") if accounts_codes else None)
    in_deal = (pl.col("c_code") & _OPEN_DEAL) != 0
    recent = ((pl.col("c_code") & _RECENT_DEAL) != 0) | (pl.col("activity") >= dormant_since) | (
        pl.col("created") >= dormant_since)
    if accounts_codes:
        in_deal = in_deal | ((pl.col("k_code") & _OPEN_DEAL) != 0)
        recent = recent | ((pl.col("k_code") & _RECENT_DEAL) != 0)
    block = (
        pl.when(pl.col("opted")).then(pl.lit(Reason.OPTED_OUT.value))
        .when(pl.col("bounced")).then(pl.lit(Reason.BOUNCED.value))
        .when(in_deal).then(pl.lit(Reason.ACTIVE_DEAL.value))
    )
    flags = (
        in_deal.cast(pl.UInt8) * _IN_DEAL + recent.fill_null(False).cast(pl.UInt8) * _RECENT
        + pl.col("odd").cast(pl.UInt8) * _ODD_1 + pl.col("opted").fill_null(False).cast(pl.UInt8) * _OPTED
        + pl.col("bounced").fill_null(False).cast(pl.UInt8) * _BOUNCED
    )
    unread = pl.lit(False)  # a date value the usual spellings do not hold
    unknown = pl.lit(False)  # not a date at all
    texts = {"activity": "LastActivityDate", "created": "CreatedDate"}
    for name in texts:
        text = pl.col(f"{name}_text")
        unread = unread | ((text != "") & pl.col(name).is_null())
        unknown = unknown | ((text != "") & ~text.str.contains(_DATE))
    # A plain chunk has no control character (chunks._Csv.frames): only DEL or a non-ASCII one is left.
    ascii_odd = (pl.col("Email").str.len_bytes() != pl.col("Email").str.len_chars()) | pl.col("Email").str.contains(
        "\x7f", literal=True)
    control_odd = ascii_odd | pl.any_horizontal(pl.col(n).str.contains(_CONTROL) for n in _PASS1)
    parts, hashes, odd_addresses, chunk_flags, seen = [], [], set(), [], False

    def checked(frame: pl.DataFrame, plain: bool) -> pl.DataFrame:
        """A chunk's values, each checked (in the reading thread: they need nothing before)."""
        c = (
            _cells(frame, contacts.columns, _PASS1, None)
            .with_columns(odd=ascii_odd if plain else control_odd, **_keys(),
                          **{f"{name}_text": pl.col(column).str.strip_chars() for name, column in texts.items()})
            .with_columns(**{name: _day(f"{name}_text") for name in texts})
            .with_columns(unknown=unknown, unread=unread)
            .collect()
        )
        if c.get_column("opted").null_count() or c.get_column("bounced").null_count():
            # A spelling other than those exports write (" Yes", "t"): as the reference reads it, or null.
            c = c.with_columns(opted=pl.col("opted").fill_null(_bool("HasOptedOutOfEmail")),
                               bounced=pl.col("bounced").fill_null(_bool("IsEmailBounced")))
            c = c.with_columns(unknown=pl.col("unknown") | pl.col("opted").is_null() | pl.col("bounced").is_null())
        usual = ~c.get_column("odd")  # the rest the reference rules read whole
        if (c.get_column("unknown") & usual).any():
            raise Decline("Contact.csv: a value the reference path rejects")
        if (c.get_column("unread") & usual).any():
            # A spelling the first ten characters do not hold (2025/3/14): read exactly.
            c = c.with_columns(activity=pl.col("activity").fill_null(_exact_day("LastActivityDate")),
                               created=pl.col("created").fill_null(_exact_day("CreatedDate")))
            if c.select(usual & pl.any_horizontal(
                (pl.col(text).str.strip_chars() != "") & pl.col(name).is_null()
                for name, text in (("activity", "LastActivityDate"), ("created", "CreatedDate"))
            )).to_series().any():
                raise Decline("Contact.csv: a date that does not exist")
        return c

    for c in contacts.frames(check=True, only=_PASS1, then=checked):
        seen = seen or c.height > 0
        plain = ~c.get_column("odd")
        c = _look_up(c, contact_info, account_info).with_columns(block=block, flags=flags)
        chunk_flags.append(c.get_column("flags"))
        mine = c.filter(plain & (c.get_column("address") != ""))
        hashes.append(mine.get_column("address").hash(seed=0))
        parts.append(_compact(mine.filter(pl.col("block").is_not_null()).select("address", "block")))
        odd_rows = c.filter(~plain)
        if odd_rows.height:
            held = address_blocks(_odd_flags(odd_rows), deals, scope)
            parts.append(pl.DataFrame({"address": list(held), "block": [r.value for r in held.values()]},
                                      schema=schema))
            odd_addresses.update(normalize_email(email) for email in odd_rows.get_column("Email").to_list())
    blocked = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    blocked = (
        blocked.with_columns(rank=pl.col("block").replace_strict(ranks, return_dtype=pl.Int64))
        .sort("rank", maintain_order=True).unique("address", keep="first", maintain_order=True)
        .select("address", "block")
    )
    # Addresses on more than one record, by hash (a hash shared by two addresses only adds a lookup):
    # neighbours in the sorted hashes, which takes far less memory than counting them in a table.
    every = (pl.concat(hashes) if hashes else pl.Series(dtype=pl.UInt64)).sort()
    repeated = every.filter(every == every.shift(1)).unique()
    del every, hashes
    shared = blocked.filter(
        pl.col("address").hash(seed=0).is_in(repeated.implode()) | pl.col("address").is_in(_series(odd_addresses))
    )
    return _FirstPass(blocked, shared, chunk_flags, seen)


def _odd_flags(odd: pl.DataFrame) -> Iterator[tuple[str, str, str, bool, bool]]:
    """(email, id, account id, opted out, bounced) of odd records, read as the reference reads them."""
    for email, sfid, account, opted, bounced, activity, created in odd.select(
        "Email", "Id", "AccountId", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate", "CreatedDate"
    ).iter_rows():
        try:
            to_date(activity)
            to_date(created)
            yield email, sfid, account, parse_bool(opted), parse_bool(bounced)
        except ValueError:
            raise Decline("Contact.csv: a value the reference rejects") from None
