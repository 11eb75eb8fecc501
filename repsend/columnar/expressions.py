"""The values the rules read, as polars expressions that give what the reference's Python gives."""

from __future__ import annotations

from typing import Any

import polars as pl

from repsend.columnar.chunks import Decline
from repsend.sfa.csv_export import _BOOLS, _Columns

# A record's flags, found in pass 1 and read in pass 2: a byte per record is all pass 1 keeps of it.
_IN_DEAL, _RECENT, _ODD_1, _OPTED, _BOUNCED = 1, 2, 4, 8, 16
_CONTROL = "[\x00-\x1f]"

# A record with one of these in a text value is decided by the reference rules whole: Python and polars
# strip different characters below 32, and a control character or a brace makes composing value-dependent.
_ODD = "[\x00-\x1f{}]"

# parse_date's forms with ASCII digits (anything else declines; the reference reads it or says why not).
_DATE = (
    r"^([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})"
    r"(?:[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)

# audience._ADDRESS for an ASCII-printable, stripped, lowercased address.
_ADDRESS = r"^[^@\s\"(),:;<>\[\\\]]+@[^@\s\"(),:;<>\[\\\]]+\.[^@\s\"(),:;<>\[\\\].]{2,}$"

# compose._DOT_ATOM_ADDR_SPEC: a To address that needs no parser.
_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"

_DOT_ATOM = f"^{_ATEXT}(?:\\.{_ATEXT})*@{_ATEXT}(?:\\.{_ATEXT})*$"

_NOT_DOT_ATOM = 1 << 40  # a bit of the shape


def _codes_frame(codes: dict[str, int], key: str, name: str) -> pl.DataFrame:
    return pl.DataFrame({key: list(codes), name: list(codes.values())}, schema={key: pl.String, name: pl.Int64})


def _look_up(c: pl.DataFrame, *infos: pl.DataFrame | None) -> pl.DataFrame:
    """``c`` with the columns of each info frame joined on its first column (codes 0 where absent)."""
    return c.with_columns(
        column.fill_null(0) if column.dtype == pl.Int64 else column
        for info in infos if info is not None
        for column in _joined(c, info).iter_columns()
    )


def _joined(c: pl.DataFrame, info: pl.DataFrame) -> pl.DataFrame:
    """The columns of ``info`` (but its first, the key) for each row of ``c``, null where none: a join
    of the key column alone, so that the chunk's other columns are not copied."""
    key = info.columns[0]
    keys = c.select(key)
    # The info rows of this chunk's keys first (hashing the chunk's keys, not the whole info frame).
    info = info.join(keys, on=key, how="semi")
    return keys.join(info, on=key, how="left", maintain_order="left").drop(key)


# Contact values as the reference reads them, by column; "odd" records carry their cells as written.
_RAW = ("Id", "Email", "OwnerId", "FirstName", "LastName", "AccountId", "Account.Name", "Title",
        "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate", "CreatedDate", "language_value")


_ANOTHER = pl.lit("on another record")


def _series(values: Any) -> pl.Series:
    """A set of strings as the right side of ``is_in`` (one list value: is_in's unambiguous form)."""
    return pl.Series(list(values), dtype=pl.String).implode()


def _json(name: str, escape: bool = True) -> pl.Expr:
    """A string column as JSON. Only a backslash or a quote needs escaping: a control character never
    reaches here (odd records get their lines from report, and composed values have none)."""
    value = pl.col(name)
    if escape:
        value = value.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    return pl.concat_str(pl.lit('"'), value, pl.lit('"')).fill_null(pl.lit("null")).alias(name)


_ESCAPED = ("id", "email", "rep_id", "from_", "subject", "detail")  # values that may hold a quote or backslash


def _json_lines(c: pl.DataFrame) -> pl.Series:
    """report._decision_line of each row: the bytes json.dumps(decision_record) writes. Each value is made
    JSON first (escaped only in a column that holds a quote or a backslash), then one concatenation joins
    them."""
    escape = _needs_escape(c.lazy())
    values = c.select(_json(name, name in escape) for name in (*_ESCAPED, "language"))
    return values.select(pl.concat_str(
        pl.lit('{"type": "decision", "contact_id": '), pl.col("id"), pl.lit(', "email": '), pl.col("email"),
        pl.lit(', "action": "'), c.get_column("action"), pl.lit('", "reason": "'), c.get_column("reason"),
        pl.lit('", "rep_id": '), pl.col("rep_id"), pl.lit(', "from": '), pl.col("from_"), pl.lit(', "subject": '),
        pl.col("subject"), pl.lit(', "detail": '), pl.col("detail"), pl.lit(', "language": '), pl.col("language"),
        pl.lit("}"),
    )).to_series()


def _needs_escape(c: pl.LazyFrame) -> frozenset[str]:
    """The columns of ``_ESCAPED`` with a quote or a backslash in some row (one scan instead of two copies)."""
    found = c.select(pl.col(name).str.contains(r'["\\]').any() for name in _ESCAPED).collect().row(0)
    return frozenset(name for name, hit in zip(_ESCAPED, found, strict=True) if hit)


def _bool(name: str) -> pl.Expr:
    """parse_bool; null for a value it rejects."""
    low = pl.col(name).str.strip_chars().str.to_lowercase()
    return pl.when(low.is_in(["true", "1"])).then(True).when(low.is_in(["false", "0", ""])).then(False)


_TRUE_AS_WRITTEN = [text for text, value in _BOOLS.items() if value]
_FALSE_AS_WRITTEN = [text for text, value in _BOOLS.items() if not value]


def _written_bool(name: str) -> pl.Expr:
    """parse_bool for the spellings exports write, six times cheaper than ``_bool``; null for any other,
    which ``_bool`` then reads."""
    cell = pl.col(name)
    return pl.when(cell.is_in(_TRUE_AS_WRITTEN)).then(True).when(cell.is_in(_FALSE_AS_WRITTEN)).then(False)


def _day(name: str) -> pl.Expr:
    """parse_date for the usual spellings (2025-03-14, or a timestamp that starts so) of a stripped value:
    the first ten characters as a date; null for anything else, which ``_exact_day`` reads."""
    return pl.col(name).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)


def _exact_day(name: str) -> pl.Expr:
    """parse_date for every spelling it accepts (with ASCII digits); null for anything else."""
    parts = pl.col(name).str.strip_chars().str.extract_groups(_DATE)
    text = pl.concat_str(parts.struct[0], parts.struct[1].str.zfill(2), parts.struct[2].str.zfill(2), separator="-")
    return text.str.to_date("%Y-%m-%d", strict=False)


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its strings copied out: a filtered string column still holds the buffers of the whole
    chunk it came from, and what pass 1 keeps must not keep every chunk alive."""
    return frame.select(pl.concat_str(pl.col(name), pl.lit("")) if dtype == pl.String else pl.col(name)
                        for name, dtype in frame.schema.items())


def _read_days(frame: pl.DataFrame, days: dict[str, str]) -> pl.DataFrame:
    """``frame`` with each date column (name: its text column) read as parse_date reads it; Decline where
    parse_date would fail."""
    frame = frame.with_columns(pl.col(text).str.strip_chars() for text in days.values())
    frame = frame.with_columns(**{name: _day(text) for name, text in days.items()})
    for name, text in days.items():
        given = pl.col(text) != ""
        if frame.select((given & ~pl.col(text).str.contains(_DATE)).any()).item():
            raise Decline(f"{text}: not a date")
        unread = given & pl.col(name).is_null()
        if frame.select(unread.any()).item():
            frame = frame.with_columns(pl.col(name).fill_null(_exact_day(text)))
            if frame.select(unread.any()).item():
                raise Decline(f"{text}: a date that does not exist")
    return frame


def _cells(frame: pl.DataFrame, columns: _Columns, names: tuple[str, ...], language: str = "") -> pl.LazyFrame:
    """Contact.csv's columns by API name (a column missing from the file or not read reads as empty cells)."""
    def cell(name: str) -> pl.Expr:
        position = columns.get(name)
        return pl.col(f"c{position}") if position is not None and f"c{position}" in read else pl.lit("")

    read = set(frame.columns)

    raw = [cell(name).alias(name) for name in names]
    if language is not None:
        raw.append((cell(language) if language else pl.lit("")).alias("language_value"))
    return frame.lazy().select(*raw)


def _keys() -> dict[str, pl.Expr]:
    email = pl.col("Email").str.strip_chars()
    return dict(
        address=email.str.to_lowercase(),
        contact_key=pl.col("Id").str.strip_chars().str.slice(0, 15),
        account_key=pl.col("AccountId").str.strip_chars().str.slice(0, 15),
        opted=_written_bool("HasOptedOutOfEmail"),
        bounced=_written_bool("IsEmailBounced"),
    )


def _contact_values(frame: pl.DataFrame, columns: _Columns, language: str, fields: tuple[str, ...],
                    shape_fields: tuple[str, ...], plain: bool, flags: pl.Series) -> pl.LazyFrame:
    """A chunk of Contact.csv as the columns pass 2's rules read, with pass 1's flags of its records."""
    values = _cells(frame, columns, (*_RAW[:-1], *fields), language).with_columns(flags=pl.lit(flags))
    texts = [*_RAW[:8], "language_value", *fields]
    odd = (pl.col("flags") & _ODD_1) != 0  # pass 1's: a control character in its columns, an address not ASCII
    if not plain:
        odd = odd | pl.any_horizontal(pl.col(n).str.contains(_ODD) for n in texts)
    email = pl.col("Email").str.strip_chars()
    shape = (~email.str.contains(_DOT_ATOM)).cast(pl.Int64) * _NOT_DOT_ATOM
    for i, n in enumerate(shape_fields):
        shape = shape + (pl.col(n).str.strip_chars() != "").cast(pl.Int64) * (1 << i)
    address = pl.col("address")
    return values.with_columns(
        id=pl.col("Id").str.strip_chars(),
        email=email,
        address=email.str.to_lowercase(),
        owner=pl.col("OwnerId").str.strip_chars(),
        odd=odd,
        shape=shape,
    ).with_columns(
        valid=address.str.contains(_ADDRESS) & ~address.str.contains("..", literal=True)
        & ~address.str.starts_with("."),
    )
