"""The dry run's JSON over a CSV export as column operations: a million contacts in a few seconds.

The same lines, in the same order, as ``runner.plan`` written by ``report.JsonLines`` (tests/test_columnar.py
holds the two engines to each other). Where this engine cannot vouch for that, ``prepare`` declines before
anything is written and the caller runs the reference path, which also gives the precise message for a
malformed file: a value or row the reference would reject, a template Jinja must render mail by mail, an
encoding whose bytes cannot be split safely, ``--limit``.

How: each file is read in chunks cut at record boundaries and parsed by polars (no memory map, so memory
stays flat). Contact.csv is read twice as in the reference: pass 1 checks every value and collects the
addresses blocked on any record, pass 2 decides. The rules that depend on a record alone (address checks,
opt-outs, blocks, history, deals, dates) are expressions over a chunk; the ones that depend on the order of
records (one mail per address, each rep's daily cap) run in a short Python loop over the rest, sharing
``Audience`` and ``Settle`` with the reference. A record with a control character in a value, or an address
that is not plain ASCII, goes through the reference rules whole (string functions differ at those edges).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import jinja2
import polars as pl

from repsend.audience import Audience, History
from repsend.compose import HeaderInjection, MissingField
from repsend.models import Action, Contact, Decision, Reason, Rep
from repsend.report import decision_line
from repsend.runner import (
    LanguageOf,
    Planned,
    RunOptions,
    Settle,
    Summary,
    add_suppressed,
    company_of,
    find_fallback,
    load_templates,
    rules_of,
)
from repsend.sfa.base import Scope, address_blocks
from repsend.sfa.csv_export import (
    _BOOLS,
    CONTACT_REQUIRED,
    OPPORTUNITY_REQUIRED,
    ROLE_REQUIRED,
    CsvExportSource,
    _Columns,
    parse_bool,
    to_date,
)

if TYPE_CHECKING:
    from repsend.settings import Settings

CHUNK_BYTES = 8 * 1024 * 1024
# Encodings in which a newline or a double quote byte is always that character (never part of another).
_SPLITTABLE = {"utf-8", "utf-8-sig", "cp932", "shift_jis"}
_CONTROL = "[\x00-\x1f]"
# A record with one of these in a text value is decided by the reference rules whole: Python and polars
# strip different characters below 32, and a control character or a brace makes composing value-dependent.
_ODD = "[\x00-\x1f{}]"
_PLAIN_ASCII = "^[\x20-\x7e]*$"
# Every byte but those of _ODD (a newline or CR between records is counted apart, in _Csv.frames).
_PLAIN_BYTES = bytes(b for b in range(256) if b in (10, 13) or (b >= 32 and b not in b"{}"))
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
# The Contact.csv columns behind each contact value a template prints (compose.CONTACT_FIELDS); the
# address is never empty where a mail is composed.
_PRINTED_COLUMNS = {"id": ("Id",), "first_name": ("FirstName",), "last_name": ("LastName",),
                    "name": ("FirstName", "LastName"), "email": (), "account_name": ("Account.Name",),
                    "title": ("Title",)}


class Decline(Exception):
    """The reference path must take this run (the reason is for tests and debugging)."""


def prepare(settings: Settings, source: CsvExportSource, options: RunOptions,
            history: History | None) -> ColumnarRun | None:
    """Everything up to the first decision, as ``runner.plan`` does it; None when this engine declines."""
    if options.limit is not None:
        return None
    try:
        return _prepare(settings, source, options, history)
    except Decline:
        return None


@dataclass
class ColumnarRun:
    source: CsvExportSource
    contacts: _Csv
    audience: Audience
    settle: Settle
    language_of: LanguageOf
    blocks: dict[Reason, pl.Series]  # the addresses blocked by each address-level reason, for is_in
    history: History
    fields: tuple[str, ...]  # extra Contact fields for templates
    language_field: str
    shape_fields: tuple[str, ...]  # the Contact columns whose emptiness decides whether a mail composes

    def write_json(self, out: TextIO, summary: Summary | None = None) -> Summary:
        summary = summary or Summary()
        audience, history = self.audience, self.history
        deals, rules = audience.deals, audience.rules
        in_deal = pl.col("contact_key").is_in(_series(deals.open_contacts))
        recent = pl.col("contact_key").is_in(_series(deals.recent_contacts))
        if rules.scope == "account":
            in_deal = in_deal | pl.col("account_key").is_in(_series(deals.open_accounts))
            recent = recent | pl.col("account_key").is_in(_series(deals.recent_accounts))
        since = rules.dormant_since
        recent = recent | (pl.col("created") >= since) | (pl.col("activity") >= since)
        address = pl.col("address")
        blocks = self.blocks
        cooling = {a: d.isoformat() for a, d in history.last_mailed.items() if d >= rules.cooldown_since}
        # The reference's rules up to cooldown, in its order; null: the rules that follow decide (_in_order).
        rule = (
            pl.when(address == "").then(_pair(Reason.NO_EMAIL))
            .when(~pl.col("valid")).then(_pair(Reason.INVALID_EMAIL, pl.col("email")))
            .when(pl.col("opted")).then(_pair(Reason.OPTED_OUT))
            .when(pl.col("bounced")).then(_pair(Reason.BOUNCED))
            .when(address.is_in(blocks[Reason.OPTED_OUT])).then(_pair(Reason.OPTED_OUT, _ANOTHER))
            .when(address.is_in(blocks[Reason.BOUNCED])).then(_pair(Reason.BOUNCED, _ANOTHER))
            .when(address.is_in(blocks[Reason.SUPPRESSED])).then(_pair(Reason.SUPPRESSED))
            .when(address.is_in(_series(history.campaign_addresses))).then(_pair(Reason.ALREADY_SENT))
            .when(in_deal).then(_pair(Reason.ACTIVE_DEAL))
            .when(address.is_in(blocks[Reason.ACTIVE_DEAL])).then(_pair(Reason.ACTIVE_DEAL, _ANOTHER))
            .when(recent).then(_pair(Reason.RECENT_ACTIVITY))
        )
        if cooling:
            last = address.replace_strict(cooling, default=None, return_dtype=pl.String)
            rule = rule.when(last.is_not_null()).then(_pair(Reason.COOLDOWN, pl.lit("last mailed ") + last))
        outputs = dict(
            action=pl.lit(Action.SKIP.value), rep_id=pl.when(pl.col("owner") != "").then(pl.col("owner")),
            from_=pl.lit(None, pl.String), subject=pl.lit(None, pl.String), language=pl.lit(None, pl.String),
        )
        state = _OrderState()
        for frame, plain in self.contacts.frames():
            values = _contact_values(frame, self.contacts.columns, self.language_field, self.fields,
                                     self.shape_fields, plain)
            c = values.with_columns(rule.alias("rule")).unnest("rule").with_columns(**outputs).collect()
            open_rows = c.get_column("odd") | c.get_column("reason").is_null()
            odd_lines: dict[int, str] = {}
            if open_rows.any():
                c = self._in_order(c, open_rows, state, odd_lines)
            summary.considered += c.height
            for reason, n in c.group_by("reason").len().iter_rows():
                if reason in (Reason.DORMANT.value, Reason.FALLBACK_SENDER.value):
                    summary.send += n
                else:
                    summary.skip[reason] += n
            lines = c.lazy().select(_json_line()).collect().to_series()
            if odd_lines:
                lines = lines.scatter(list(odd_lines), list(odd_lines.values()))
            out.write(lines.str.join("").item())
        return summary

    def _in_order(self, c: pl.DataFrame, open_rows: pl.Series, state: _OrderState,
                  odd_lines: dict[int, str]) -> pl.DataFrame:
        """The records no expression decided, in file order: the reference rules for odd records, and for
        the rest the rules that depend on what came before (duplicate_email, rep_cap). Odd records get
        their JSON line in ``odd_lines`` (by row), the rest their values in the returned frame."""
        index = open_rows.arg_true().to_list()
        rows = c.filter(open_rows)
        raw = {name: rows.get_column(name).to_list() for name in (*_RAW, *self.fields)}
        odd, address, owner, shape = (rows.get_column(n).to_list() for n in ("odd", "address", "owner", "shape"))
        language_of, audience, settle = self.language_of, self.audience, self.settle
        templates, companies, campaign = settle.templates, settle.companies, settle.campaign
        chosen, capped, sender = audience.chosen, audience.capped, audience.sender
        senders, checked, outcomes = state.senders, state.checked, state.outcomes
        skip, send = Action.SKIP.value, Action.SEND
        plain_rows: list[int] = []
        values: list[tuple[Any, ...]] = []
        for j, row in enumerate(index):
            language = language_of(raw["language_value"][j])
            if odd[j]:
                contact = _contact(raw, self.fields, j, parsed=False)
                decision, mail = settle(audience.decide(contact), language)
                odd_lines[row] = decision_line(Planned(decision, mail, language))
                continue
            plain_rows.append(row)
            if chosen(address[j]):
                values.append((skip, _DUPLICATE, owner[j] or None, None, None, None, None))
                continue
            who = senders.get(owner[j])
            if who is None:
                reason, rep, detail = sender(owner[j])
                who = senders[owner[j]] = (reason, rep, detail, (
                    skip, reason.value, rep.id if rep else owner[j] or None, None, None, detail or None, None))
            reason, rep, detail, skipped = who
            if reason not in _SENDS:
                values.append(skipped)
                continue
            if id(rep) in state.capped or capped(rep):
                state.capped.add(id(rep))
                # Whether the mail would compose depends only on which printed values are empty.
                key = (id(rep), language, shape[j])
                outcome = checked.get(key)
                if outcome is None:
                    failed = _check(templates, _contact(raw, self.fields, j), rep, companies[language], language,
                                    campaign)
                    outcome = outcomes.get((id(rep), failed))
                    if outcome is None:
                        outcome = outcomes[(id(rep), failed)] = (
                            (skip, Reason.REP_CAP.value, rep.id, None, None, audience.cap_detail, None)
                            if failed is None else (skip, failed[0].value, rep.id, None, None, failed[1], None)
                        )
                    if not shape[j] & _NOT_DOT_ATOM:  # an address the parser must read is checked each time
                        checked[key] = outcome
                values.append(outcome)
                continue
            decision, mail = settle(Decision(_contact(raw, self.fields, j), send, reason, rep, detail), language)
            if mail is None:
                values.append((skip, decision.reason.value, rep.id, None, None, decision.detail or None, None))
            else:
                text = state.from_text.get(id(mail.from_))
                if text is None:
                    text = state.from_text[id(mail.from_)] = str(mail.from_)
                values.append((send.value, decision.reason.value, rep.id, text, mail.subject, decision.detail or None,
                               mail.language))
        if plain_rows:
            at = pl.Series(plain_rows, dtype=pl.UInt32)
            columns = ("action", "reason", "rep_id", "from_", "subject", "detail", "language")
            c = c.with_columns(
                c.get_column(name).scatter(at, pl.Series(column, dtype=pl.String))
                for name, column in zip(columns, zip(*values, strict=True), strict=True)
            )
        return c


_SENDS = (Reason.DORMANT, Reason.FALLBACK_SENDER)
_DUPLICATE = Reason.DUPLICATE_EMAIL.value


@dataclass
class _OrderState:
    """What the ordered rules keep from chunk to chunk, besides the Audience's own state."""

    senders: dict[str, Any] = field(default_factory=dict)  # owner id -> Audience.sender and its skip values
    checked: dict[tuple[int, str, int], tuple[Any, ...]] = field(default_factory=dict)  # (rep, language, shape)
    outcomes: dict[tuple[int, Any], tuple[Any, ...]] = field(default_factory=dict)  # shared output tuples
    capped: set[int] = field(default_factory=set)  # reps at their daily cap (a count only goes up)
    from_text: dict[int, str] = field(default_factory=dict)


# Contact values as the reference reads them, by column; "odd" records carry their cells as written.
_RAW = ("Id", "Email", "OwnerId", "FirstName", "LastName", "AccountId", "Account.Name", "Title",
        "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate", "CreatedDate", "language_value")


def _contact(raw: dict[str, list[Any]], fields: tuple[str, ...], j: int, parsed: bool = True) -> Contact:
    """The Contact ``CsvExportSource.contacts`` would have made of this record (its line aside; the dates
    only when ``parsed`` is False: composing never reads them)."""
    opted, bounced = raw["HasOptedOutOfEmail"][j], raw["IsEmailBounced"][j]
    return Contact(
        raw["Id"][j].strip(), raw["Email"][j], raw["OwnerId"][j].strip(), raw["FirstName"][j], raw["LastName"][j],
        raw["AccountId"][j].strip(), raw["Account.Name"][j], raw["Title"][j],
        _BOOLS[opted] if opted in _BOOLS else parse_bool(opted),
        _BOOLS[bounced] if bounced in _BOOLS else parse_bool(bounced),
        None if parsed else to_date(raw["LastActivityDate"][j]),
        None if parsed else to_date(raw["CreatedDate"][j]),
        raw["language_value"][j],
        {name: raw[name][j] for name in fields},
        "Contact.csv",
    )


def _check(templates: Any, contact: Contact, rep: Rep, company: Any, language: str,
           campaign: str) -> tuple[Reason, str] | None:
    """What ``Settle`` makes of a mail that cannot compose: (reason, detail), or None when it composes."""
    try:
        templates.check(contact, rep, company, language, campaign)
    except MissingField as missing:
        return Reason.MISSING_FIELD, missing.field
    except jinja2.UndefinedError as exc:
        return Reason.MISSING_FIELD, str(exc)
    except HeaderInjection as bad:
        return Reason.INVALID_HEADER, f"control character in {bad.header}"
    return None


_ANOTHER = pl.lit("on another record")


def _pair(reason: Reason, detail: pl.Expr | None = None) -> pl.Expr:
    return pl.struct(reason=pl.lit(reason.value), detail=detail if detail is not None else pl.lit(None, pl.String))


def _series(values: Any) -> pl.Series:
    """A set of strings as the right side of ``is_in`` (one list value: is_in's unambiguous form)."""
    return pl.Series(list(values), dtype=pl.String).implode()


def _json(name: str, escape: bool = True) -> pl.Expr:
    """A string column as JSON. Only a backslash or a quote needs escaping: a control character never
    reaches here (odd records get their lines from report, and composed values have none)."""
    value = pl.col(name)
    if escape:
        value = value.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    return pl.when(pl.col(name).is_null()).then(pl.lit("null")).otherwise(pl.lit('"') + value + pl.lit('"'))


def _json_line() -> pl.Expr:
    """report._decision_line as an expression: the bytes json.dumps(decision_record) writes."""
    return pl.concat_str(
        pl.lit('{"type": "decision", "contact_id": '), _json("id"), pl.lit(', "email": '), _json("email"),
        pl.lit(', "action": '), _json("action", False), pl.lit(', "reason": '), _json("reason", False),
        pl.lit(', "rep_id": '), _json("rep_id"), pl.lit(', "from": '), _json("from_"),
        pl.lit(', "subject": '), _json("subject"), pl.lit(', "detail": '), _json("detail"),
        pl.lit(', "language": '), _json("language", False), pl.lit("}\n"),
    )


def _bool(name: str) -> pl.Expr:
    low = pl.col(name).str.strip_chars().str.to_lowercase()
    return pl.when(low.is_in(["true", "1"])).then(True).when(low.is_in(["false", "0", ""])).then(False)


def _day(name: str) -> pl.Expr:
    """parse_date for the usual spellings (2025-03-14, or a timestamp that starts so): the first ten
    characters as a date; null for anything else, which ``_exact_day`` reads."""
    return pl.col(name).str.strip_chars().str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)


def _exact_day(name: str) -> pl.Expr:
    """parse_date for every spelling it accepts (with ASCII digits); null for anything else."""
    parts = pl.col(name).str.strip_chars().str.extract_groups(_DATE)
    text = pl.concat_str(parts.struct[0], parts.struct[1].str.zfill(2), parts.struct[2].str.zfill(2), separator="-")
    return text.str.to_date("%Y-%m-%d", strict=False)


def _read_days(frame: pl.DataFrame, days: dict[str, str]) -> pl.DataFrame:
    """``frame`` with each date column (name: its text column) read as parse_date reads it; Decline where
    parse_date would fail."""
    frame = frame.with_columns(**{name: _day(text) for name, text in days.items()})
    for name, text in days.items():
        given = pl.col(text).str.strip_chars() != ""
        if frame.select((given & ~pl.col(text).str.strip_chars().str.contains(_DATE)).any()).item():
            raise Decline(f"{text}: not a date")
        unread = given & pl.col(name).is_null()
        if frame.select(unread.any()).item():
            frame = frame.with_columns(pl.col(name).fill_null(_exact_day(text)))
            if frame.select(unread.any()).item():
                raise Decline(f"{text}: a date that does not exist")
    return frame


def _cells(frame: pl.DataFrame, columns: _Columns, names: tuple[str, ...], language: str = "") -> pl.LazyFrame:
    """Contact.csv's columns by API name (a missing column reads as empty cells)."""
    def cell(name: str) -> pl.Expr:
        position = columns.get(name)
        return pl.col(f"c{position}") if position is not None else pl.lit("")

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
        opted=_bool("HasOptedOutOfEmail"),
        bounced=_bool("IsEmailBounced"),
    )


def _contact_values(frame: pl.DataFrame, columns: _Columns, language: str, fields: tuple[str, ...],
                    shape_fields: tuple[str, ...], plain: bool) -> pl.LazyFrame:
    """A chunk of Contact.csv as the columns pass 2's rules read."""
    values = _cells(frame, columns, (*_RAW[:-1], *fields), language)
    texts = [*_RAW[:8], "language_value", *fields]
    odd = ~pl.col("Email").str.contains(_PLAIN_ASCII)
    if not plain:
        odd = odd | pl.any_horizontal(pl.col(n).str.contains(_ODD) for n in texts)
    email = pl.col("Email").str.strip_chars()
    shape = (~email.str.contains(_DOT_ATOM)).cast(pl.Int64) * _NOT_DOT_ATOM
    for i, n in enumerate(shape_fields):
        shape = shape + (pl.col(n).str.strip_chars() != "").cast(pl.Int64) * (1 << i)
    address = pl.col("address")
    values = values.with_columns(
        **_keys(),
        id=pl.col("Id").str.strip_chars(),
        email=email,
        owner=pl.col("OwnerId").str.strip_chars(),
        activity=_day("LastActivityDate"),
        created=_day("CreatedDate"),
        odd=odd,
        shape=shape,
    ).with_columns(
        valid=address.str.contains(_ADDRESS) & ~address.str.contains("..", literal=True)
        & ~address.str.starts_with("."),
    )
    day_fix = {}
    for name, text in (("activity", "LastActivityDate"), ("created", "CreatedDate")):
        # A spelling the first ten characters do not hold (2025/3/14): read exactly, for this chunk only.
        if frame.height and _cells(frame, columns, (text,), None).select(
            (pl.col(text).str.strip_chars() != "") & _day(text).is_null()
        ).collect().to_series().any():
            day_fix[name] = pl.col(name).fill_null(_exact_day(text))
    return values.with_columns(**day_fix) if day_fix else values


class _Csv:
    """One CSV file as polars frames of all-string columns c0, c1, ... (cells as written, none null)."""

    def __init__(self, path: Path, encoding: str, required: tuple[str, ...]) -> None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise Decline(f"unknown encoding {encoding}") from None
        if codec not in _SPLITTABLE:
            raise Decline(f"{codec} is not split safely")
        self.path, self.codec = path, codec
        self.utf8 = codec.startswith("utf-8")
        try:
            with open(path, "rb") as handle:
                first = handle.readline()
        except OSError:
            raise Decline(f"{path}: cannot read") from None
        if self.utf8:
            first = first.removeprefix(codecs.BOM_UTF8)
        if not first.strip() or first.count(b'"') % 2:
            raise Decline(f"{path}: empty, or a header over several lines")
        self.header_bytes = len(first)
        header = next(csv.reader(io.StringIO(self._text(first), newline="")))
        self.columns = _Columns(path, {h.strip().lower(): i for i, h in enumerate(header)})
        if any(not self.columns.has(name) for name in required):
            raise Decline(f"{path}: a required column is missing")
        self.width = len(header)

    def _text(self, data: bytes) -> str:
        try:
            return data.decode(self.codec)
        except UnicodeDecodeError:
            raise Decline(f"{self.path}: not {self.codec}") from None

    def frames(self, check: bool = False) -> Iterator[tuple[pl.DataFrame, bool]]:
        """Each chunk as (frame, plain): ``plain`` when no cell holds a control character or a brace.
        ``check``: also prove that every record has the header's number of fields."""
        names = [f"c{i}" for i in range(self.width)]
        last = names[-1]
        for data in self._chunks():
            if not self.utf8:
                data = self._text(data).encode("utf-8")
            try:  # polars refuses a byte that is not UTF-8 as the reference's decoding does
                frame = pl.read_csv(data, has_header=False, new_columns=names, infer_schema=False, quote_char='"')
            except (pl.exceptions.PolarsError, ValueError) as exc:
                raise Decline(f"{self.path}: {exc}") from None
            if check and frame.get_column(last).null_count():
                # A short record is padded with nulls, and a blank line is a row of them (a longer record is
                # refused by polars; with every cell quoted, as Data Loader writes, there is no null at
                # all). The commas outside quoted cells tell, as the reference's csv module counts fields.
                inside = frame.select(
                    pl.sum_horizontal(pl.col(n).str.count_matches(",", literal=True).sum() for n in names)
                ).item()
                if data.count(b",") != frame.height * (self.width - 1) + (inside or 0):
                    raise Decline(f"{self.path}: a record does not have {self.width} fields, or a blank line")
            newlines = data.count(b"\n")
            plain = (
                newlines == frame.height and data.count(b"\r") in (0, newlines)
                and not data.translate(None, _PLAIN_BYTES)
            )
            yield frame.with_columns(pl.all().fill_null("")), plain

    def _chunks(self) -> Iterator[bytes]:
        """The file after its header in pieces of about CHUNK_BYTES, each cut after a newline outside quotes."""
        with open(self.path, "rb") as handle:
            handle.seek(self.header_bytes + (3 if self.utf8 and handle.read(3) == codecs.BOM_UTF8 else 0))
            rest = b""
            while True:
                data = handle.read(CHUNK_BYTES)
                if not data:
                    if rest.strip():
                        if rest.count(b'"') % 2:
                            raise Decline(f"{self.path}: a quoted cell is not closed")
                        yield rest
                    return
                data = rest + data
                end, cut = len(data), -1
                while cut < 0:
                    newline = data.rfind(b"\n", 0, end)
                    if newline < 0:
                        break
                    if data.count(b'"', 0, newline) % 2 == 0:  # doubled quotes inside a cell count twice
                        cut = newline + 1
                    end = newline
                if cut < 0:
                    rest = data
                    continue
                rest = data[cut:]
                yield data[:cut]


def _prepare(settings: Settings, source: CsvExportSource, options: RunOptions,
             history: History | None) -> ColumnarRun:
    templates = load_templates(settings, options.template)
    printed = templates.printed_contact_fields()
    if printed is None:
        raise Decline("a template does more than print fields")
    companies = {language: company_of(settings, language) for language in templates.languages}
    reps = source.reps()
    rules = rules_of(settings, options, find_fallback(settings, reps))
    deals = _deals(source, rules.dormant_since)
    contacts = _Csv(source.folder / "Contact.csv", source.encoding, CONTACT_REQUIRED)
    fields = tuple(name for name in source.contact_fields if contacts.columns.has(name))
    shape_fields = tuple(dict.fromkeys(
        column for key in sorted(printed) for column in _PRINTED_COLUMNS.get(key, (key,) if key in fields else ())
    ))
    blocks, seen = _blocks(contacts, deals, rules.scope)
    if seen:
        source._contact_notes(contacts.columns)
    add_suppressed(settings, blocks)
    by_reason = {reason: [] for reason in (Reason.OPTED_OUT, Reason.BOUNCED, Reason.SUPPRESSED, Reason.ACTIVE_DEAL)}
    for address, reason in blocks.items():
        by_reason[reason].append(address)
    history = history or History()
    audience = Audience(reps, deals, blocks, rules, history)
    return ColumnarRun(source, contacts, audience, Settle(audience, templates, companies, options.campaign),
                       LanguageOf(settings), {r: _series(a) for r, a in by_reason.items()}, history, fields,
                       source.language_field, shape_fields)


_PASS1 = ("Email", "Id", "AccountId", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate", "CreatedDate")


def _blocks(contacts: _Csv, deals: Any, scope: Scope) -> tuple[dict[str, Reason], bool]:
    """Pass 1: every value checked (else Decline), and ``sfa.base.address_blocks``."""
    ranks = {reason.value: rank for rank, reason in enumerate(Reason)}
    schema = {"address": pl.String, "block": pl.String}
    in_deal = pl.col("contact_key").is_in(_series(deals.open_contacts))
    if scope == "account":
        in_deal = in_deal | pl.col("account_key").is_in(_series(deals.open_accounts))
    block = (
        pl.when(pl.col("opted")).then(pl.lit(Reason.OPTED_OUT.value))
        .when(pl.col("bounced")).then(pl.lit(Reason.BOUNCED.value))
        .when(in_deal).then(pl.lit(Reason.ACTIVE_DEAL.value))
    )
    unread = pl.lit(False)  # a date value the usual spellings do not hold
    unknown = pl.col("opted").is_null() | pl.col("bounced").is_null()  # not a date or boolean at all
    for name in ("LastActivityDate", "CreatedDate"):
        text = pl.col(name).str.strip_chars()
        unread = unread | ((text != "") & _day(name).is_null())
        unknown = unknown | ((text != "") & ~text.str.contains(_DATE))
    ascii_odd = ~pl.col("Email").str.contains(_PLAIN_ASCII)
    control_odd = ascii_odd | pl.any_horizontal(pl.col(n).str.contains(_CONTROL) for n in _PASS1)
    parts, seen = [], False
    for frame, plain in contacts.frames(check=True):
        seen = seen or frame.height > 0
        c = (
            _cells(frame, contacts.columns, _PASS1, None).with_columns(
                odd=ascii_odd if plain else control_odd, **_keys())
            .select("odd", "address", block.alias("block"), unknown.alias("unknown"), unread.alias("unread"),
                    *_PASS1)
            .collect()
        )
        plain = ~c.get_column("odd")
        if (c.get_column("unknown") & plain).any():
            raise Decline("Contact.csv: a value the reference path rejects")
        unread_rows = c.filter(c.get_column("unread") & plain)
        if unread_rows.height and unread_rows.select(pl.any_horizontal(
            (pl.col(n).str.strip_chars() != "") & _exact_day(n).is_null() for n in ("LastActivityDate", "CreatedDate")
        ).any()).item():
            raise Decline("Contact.csv: a date that does not exist")
        parts.append(c.filter(plain & c.get_column("block").is_not_null() & (c.get_column("address") != ""))
                     .select("address", "block"))
        odd_rows = c.filter(~plain)
        if odd_rows.height:
            held = address_blocks(_odd_flags(odd_rows), deals, scope)
            parts.append(pl.DataFrame({"address": list(held), "block": [r.value for r in held.values()]},
                                      schema=schema))
    blocked = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    blocked = (
        blocked.with_columns(rank=pl.col("block").replace_strict(ranks, return_dtype=pl.Int64))
        .sort("rank", maintain_order=True).unique("address", keep="first", maintain_order=True)
    )
    addresses, reasons = blocked.get_column("address").to_list(), blocked.get_column("block").to_list()
    return dict(zip(addresses, map(Reason, reasons), strict=True)), seen


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


def _deals(source: CsvExportSource, recent_since: date) -> Any:
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
    deals_csv = _Csv(folder / "Opportunity.csv", source.encoding, OPPORTUNITY_REQUIRED)
    cols = deals_csv.columns

    def cell(name: str) -> pl.Expr:
        position = cols.get(name)
        return pl.col(f"c{position}") if position is not None else pl.lit("")

    parts, seen = [], False
    for frame, _plain in deals_csv.frames(check=True):
        seen = seen or frame.height > 0
        d = frame.select(
            id=cell("Id"), account=cell("AccountId"), contact=cell("ContactId"), closed_text=cell("IsClosed"),
            modified_text=cell("LastModifiedDate"), close_text=cell("CloseDate"),
        )
        if d.select(pl.any_horizontal(pl.col(n).str.contains(_CONTROL) for n in d.columns).any()).item():
            raise Decline("Opportunity.csv: a control character")
        days = {"modified": "modified_text", "close": "close_text"}
        d = _read_days(d.with_columns(closed=_bool("closed_text")), days)
        if d.get_column("closed").is_null().any():
            raise Decline("Opportunity.csv: IsClosed is not a boolean")
        parts.append(d.select(
            id=pl.col("id").str.strip_chars().str.slice(0, 15),
            account=pl.col("account").str.strip_chars().str.slice(0, 15),
            contact=pl.col("contact").str.strip_chars().str.slice(0, 15),
            closed="closed",
            changed=pl.max_horizontal("modified", "close"),
        ))
    if seen:
        if not (cols.has("LastModifiedDate") or cols.has("CloseDate")):
            source._note(
                "Opportunity.csv has no LastModifiedDate or CloseDate column: a recently closed "
                "deal cannot make a contact recent"
            )
        if not cols.has("Id"):
            source._note("Opportunity.csv has no Id column: contact roles cannot be matched to deals")
    schema = {"id": pl.String, "account": pl.String, "contact": pl.String, "closed": pl.Boolean, "changed": pl.Date}
    deals = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    open_deals = deals.filter(~pl.col("closed"))
    recent = deals.filter(pl.col("closed") & (pl.col("changed") >= recent_since))
    index = DealIndex()

    def keys(frame: pl.DataFrame, column: str) -> set[str]:
        return set(frame.get_column(column).filter(frame.get_column(column) != "").to_list())

    index.open_accounts, index.open_contacts = keys(open_deals, "account"), keys(open_deals, "contact")
    index.recent_accounts, index.recent_contacts = keys(recent, "account"), keys(recent, "contact")
    if with_roles:
        roles_csv = _Csv(roles_file, source.encoding, ROLE_REQUIRED)
        p_opp, p_contact = roles_csv.columns.get("OpportunityId"), roles_csv.columns.get("ContactId")
        open_ids, recent_ids = _series(keys(open_deals, "id")), _series(keys(recent, "id"))
        for frame, _plain in roles_csv.frames(check=True):
            r = frame.select(opp=pl.col(f"c{p_opp}"), contact=pl.col(f"c{p_contact}"))
            if r.select(pl.any_horizontal(pl.col(n).str.contains(_CONTROL) for n in r.columns).any()).item():
                raise Decline("OpportunityContactRole.csv: a control character")
            r = r.select(pl.all().str.strip_chars().str.slice(0, 15)).filter(pl.col("contact") != "")
            index.open_contacts.update(r.filter(pl.col("opp").is_in(open_ids)).get_column("contact").to_list())
            index.recent_contacts.update(
                r.filter(~pl.col("opp").is_in(open_ids) & pl.col("opp").is_in(recent_ids))
                .get_column("contact").to_list()
            )
    return index
