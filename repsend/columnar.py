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
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import jinja2

# polars' allocator (jemalloc) keeps freed pages for 10 s by default: a run reads chunk after chunk, so
# they would pile up in the peak memory. Half a second keeps the reuse and returns the rest (before the
# first import of polars only; a value the user set stays).
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:500,muzzy_decay_ms:0")

import polars as pl  # noqa: E402

from repsend.audience import Audience, History
from repsend.compose import HeaderInjection, MissingField
from repsend.models import Action, Contact, Decision, Reason, Rep, normalize_email
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
from repsend.sfa.base import DealIndex, Scope, address_blocks
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

# Contact.csv is read in pieces of this size; the deal files, with less work per record, in smaller ones.
CHUNK_BYTES = 8 * 1024 * 1024
DEAL_CHUNK_BYTES = 2 * 1024 * 1024
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
    history: History
    fields: tuple[str, ...]  # extra Contact fields for templates
    language_field: str
    shape_fields: tuple[str, ...]  # the Contact columns whose emptiness decides whether a mail composes
    first: _FirstPass

    def write_json(self, out: TextIO, summary: Summary | None = None) -> Summary:
        summary = summary or Summary()
        history, rules = self.history, self.audience.rules
        address_info = _address_info(self.first.shared, history, rules.cooldown_since)
        flags, code = pl.col("flags"), pl.col("a_code")
        in_deal, recent = (flags & _IN_DEAL) != 0, (flags & _RECENT) != 0
        block = code & 7
        # The reference's rules up to cooldown, in its order; null: the rules that follow decide (_in_order).
        reason = (
            pl.when(pl.col("address") == "").then(pl.lit(Reason.NO_EMAIL.value))
            .when(~pl.col("valid")).then(pl.lit(Reason.INVALID_EMAIL.value))
            .when((flags & _OPTED) != 0).then(pl.lit(Reason.OPTED_OUT.value))
            .when((flags & _BOUNCED) != 0).then(pl.lit(Reason.BOUNCED.value))
            .when(block == _BLOCK_CODES[Reason.OPTED_OUT]).then(pl.lit(Reason.OPTED_OUT.value))
            .when(block == _BLOCK_CODES[Reason.BOUNCED]).then(pl.lit(Reason.BOUNCED.value))
            .when(block == _BLOCK_CODES[Reason.SUPPRESSED]).then(pl.lit(Reason.SUPPRESSED.value))
            .when((code & _ALREADY_SENT) != 0).then(pl.lit(Reason.ALREADY_SENT.value))
            .when(in_deal | (block == _BLOCK_CODES[Reason.ACTIVE_DEAL])).then(pl.lit(Reason.ACTIVE_DEAL.value))
            .when(recent).then(pl.lit(Reason.RECENT_ACTIVITY.value))
            .when(pl.col("last_mailed").is_not_null()).then(pl.lit(Reason.COOLDOWN.value))
        )
        detail = (
            pl.when(pl.col("address") == "").then(None)
            .when(~pl.col("valid")).then(pl.col("email"))
            .when((flags & (_OPTED | _BOUNCED)) != 0).then(None)
            .when(block.is_in([_BLOCK_CODES[Reason.OPTED_OUT], _BLOCK_CODES[Reason.BOUNCED]])).then(_ANOTHER)
            .when((block == _BLOCK_CODES[Reason.SUPPRESSED]) | ((code & _ALREADY_SENT) != 0) | in_deal).then(None)
            .when(block == _BLOCK_CODES[Reason.ACTIVE_DEAL]).then(_ANOTHER)
            .when(recent).then(None)
            .when(pl.col("last_mailed").is_not_null()).then(pl.lit("last mailed ") + pl.col("last_mailed"))
        )
        outputs = dict(
            reason=reason, detail=detail,
            action=pl.lit(Action.SKIP.value), rep_id=pl.when(pl.col("owner") != "").then(pl.col("owner")),
            from_=pl.lit(None, pl.String), subject=pl.lit(None, pl.String), language=pl.lit(None, pl.String),
        )
        state = _OrderState()
        binary = getattr(out, "buffer", None)
        for (frame, plain), chunk_flags in zip(self.contacts.frames(), self.first.flags, strict=True):
            c = _contact_values(frame, self.contacts.columns, self.language_field, self.fields,
                                self.shape_fields, plain, chunk_flags).collect()
            c = _look_up(c, address_info)
            c = c.lazy().with_columns(**outputs).collect()
            open_rows = c.get_column("odd") | c.get_column("reason").is_null()
            odd_lines: dict[int, str] = {}
            if open_rows.any():
                c = self._in_order(c, open_rows, state, odd_lines)
            summary.considered += c.height
            counts = Counter(state.odd_reasons)
            state.odd_reasons.clear()
            counts.update(dict(c.filter(~c.get_column("odd")).group_by("reason").len().iter_rows()))
            for reason_value, n in counts.items():
                if reason_value in (Reason.DORMANT.value, Reason.FALLBACK_SENDER.value):
                    summary.send += n
                else:
                    summary.skip[reason_value] += n
            lines = c.lazy().select(_json_line()).collect().to_series()
            if odd_lines:
                lines = lines.scatter(list(odd_lines), [line.removesuffix("\n") for line in odd_lines.values()])
            if binary is not None:
                # Written by polars itself, a line a record and nothing quoted: no copy of the chunk in Python.
                out.flush()
                lines.to_frame().write_csv(binary, include_header=False, quote_style="never")
            elif lines.len():
                out.write(lines.str.join("\n").item() + "\n")
        return summary

    def _in_order(self, c: pl.DataFrame, open_rows: pl.Series, state: _OrderState,
                  odd_lines: dict[int, str]) -> pl.DataFrame:
        """The records no expression decided, in file order: the reference rules for odd records, and for
        the rest the rules that depend on what came before (duplicate_email, rep_cap). Odd records get
        their JSON line in ``odd_lines`` (by row), the rest their values in the returned frame.

        Only a record that may be sent can change what a later one gets (by taking its address or a place
        in its rep's cap), so only those, and the odd ones, go through a loop one by one. The rest (a rep at
        the cap when the chunk starts, no owner, an inactive owner, ...) are settled as columns, once the
        loop has said which addresses it took and where."""
        audience = self.audience
        rows = c.select("odd", "address", "owner", "shape", *_RAW, *self.fields).with_row_index("row").filter(open_rows)
        languages = {v: self.language_of(v) for v in rows.get_column("language_value").unique().to_list()}
        table = [state.sender_row(owner, audience)
                 for owner in rows.filter(~pl.col("odd")).get_column("owner").unique().to_list()]
        senders = pl.DataFrame(table, schema=_SENDER_SCHEMA, orient="row")
        rows = rows.with_columns(lang=pl.col("language_value").replace_strict(languages, return_dtype=pl.String))
        rows = rows.with_columns(_joined(rows, senders).iter_columns())
        settled = ~pl.col("odd") & (~pl.col("s_sends") | (pl.col("s_capped") & (pl.col("shape") < _NOT_DOT_ATOM)))
        looped = rows.filter(~settled)
        taken = self._loop(looped, state, odd_lines) if looped.height else {}
        plain = looped.filter(~pl.col("odd"))
        columns = ("action", "reason", "rep_id", "from_", "subject", "detail", "language")
        if plain.height:
            at = plain.get_column("row")
            c = c.with_columns(
                c.get_column(name).scatter(at, pl.Series(values, dtype=pl.String))
                for name, values in zip(columns, zip(*state.values, strict=True), strict=True)
            )
        state.values.clear()
        fast = rows.filter(settled)
        if fast.height:
            fast = self._settle(fast, state, taken)
            at = fast.get_column("row")
            c = c.with_columns(c.get_column(name).scatter(at, fast.get_column(name)) for name in columns)
        return c

    def _loop(self, rows: pl.DataFrame, state: _OrderState, odd_lines: dict[int, str]) -> dict[str, int]:
        """Records one by one, as the reference decides them; their values into ``state.values`` (odd ones'
        lines into ``odd_lines``). Returns the addresses sent to, with the row of each."""
        raw = {name: rows.get_column(name).to_list() for name in (*_RAW, *self.fields)}
        index, odd, address, owner, shape, languages = (
            rows.get_column(n).to_list() for n in ("row", "odd", "address", "owner", "shape", "lang"))
        audience, settle = self.audience, self.settle
        templates, companies, campaign = settle.templates, settle.companies, settle.campaign
        chosen, capped = audience.chosen, audience.capped
        values, taken = state.values, {}
        skip, send = Action.SKIP.value, Action.SEND
        for j, row in enumerate(index):
            language = languages[j]
            if odd[j]:
                contact = _contact(raw, self.fields, j, parsed=False)
                decision, mail = settle(audience.decide(contact), language)
                odd_lines[row] = decision_line(Planned(decision, mail, language))
                state.odd_reasons.append(decision.reason.value)
                if mail is not None:
                    taken[normalize_email(contact.email)] = row
                continue
            if chosen(address[j]):
                values.append((skip, _DUPLICATE, owner[j] or None, None, None, None, None))
                continue
            reason, rep, detail, skipped = state.sender(owner[j], audience)
            if reason not in _SENDS:
                values.append(skipped)
                continue
            if capped(rep):
                values.append(state.check(rep, language, shape[j], lambda j=j: _contact(raw, self.fields, j),
                                          templates, companies[language], campaign, audience.cap_detail))
                continue
            decision, mail = settle(Decision(_contact(raw, self.fields, j), send, reason, rep, detail), language)
            if mail is None:
                values.append((skip, decision.reason.value, rep.id, None, None, decision.detail or None, None))
            else:
                taken[address[j]] = row
                text = state.from_text.get(id(mail.from_))
                if text is None:
                    text = state.from_text[id(mail.from_)] = str(mail.from_)
                values.append((send.value, decision.reason.value, rep.id, text, mail.subject, decision.detail or None,
                               mail.language))
        return taken

    def _settle(self, rows: pl.DataFrame, state: _OrderState, taken: dict[str, int]) -> pl.DataFrame:
        """Records whose sender is at the cap or cannot send: duplicate_email when an earlier record took
        the address, else the sender's skip, else what the template check says (rep_cap when it composes)."""
        audience, settle = self.audience, self.settle
        taken_at = pl.DataFrame({"address": list(taken), "taken_at": list(taken.values())},
                                schema={"address": pl.String, "taken_at": pl.UInt32})
        chosen = audience.chosen_addresses
        in_chosen = pl.Series([a in chosen for a in rows.get_column("address").to_list()], dtype=pl.Boolean)
        rows = rows.with_columns(_joined(rows, taken_at).iter_columns()).with_columns(
            dup=in_chosen & (pl.col("taken_at").is_null() | (pl.col("taken_at") < pl.col("row")))
        )
        # A template check per (sender, language, shape) not seen before; the rest are joined in.
        keys = ["s_rep", "lang", "shape"]
        new = (rows.filter(~pl.col("dup") & pl.col("s_sends")).unique(keys, keep="first")
               .join(state.known, on=keys, how="anti"))
        if new.height:
            raw = {name: new.get_column(name).to_list() for name in (*_RAW, *self.fields)}
            outcomes = []
            for j, (rep_index, language, shape) in enumerate(new.select(keys).iter_rows()):
                outcome = state.check(state.reps[rep_index], language, shape, lambda j=j: _contact(raw, self.fields, j),
                                      settle.templates, settle.companies[language], settle.campaign,
                                      audience.cap_detail)
                outcomes.append((rep_index, language, shape, outcome[1], outcome[5]))
            state.known = pl.concat([state.known, pl.DataFrame(outcomes, schema=_KNOWN, orient="row")])
        rows = rows.with_columns(
            rows.select(keys).join(state.known, on=keys, how="left", maintain_order="left")
            .select("k_reason", "k_detail").iter_columns()
        )
        dup, sends = pl.col("dup"), pl.col("s_sends")
        return rows.select(
            "row",
            action=pl.lit(Action.SKIP.value),
            reason=pl.when(dup).then(pl.lit(_DUPLICATE)).when(~sends).then("s_reason").otherwise("k_reason"),
            rep_id=pl.when(dup).then(pl.when(pl.col("owner") != "").then("owner")).otherwise("s_rep_id"),
            from_=pl.lit(None, pl.String),
            subject=pl.lit(None, pl.String),
            detail=pl.when(dup).then(pl.lit(None, pl.String)).when(~sends).then("s_detail").otherwise("k_detail"),
            language=pl.lit(None, pl.String),
        )


_SENDS = (Reason.DORMANT, Reason.FALLBACK_SENDER)
_BLOCK_CODES = {Reason.OPTED_OUT: 1, Reason.BOUNCED: 2, Reason.SUPPRESSED: 3, Reason.ACTIVE_DEAL: 4}
_ALREADY_SENT = 8
_OPEN_DEAL, _RECENT_DEAL = 1, 2


def _address_info(shared: pl.DataFrame, history: History, cooldown_since: date) -> pl.DataFrame:
    """What pass 2 looks up by address: a code (_BLOCK_CODES of a block on another record or the
    suppression list, _ALREADY_SENT) and the day of a mail still cooling down."""
    codes = {reason.value: code for reason, code in _BLOCK_CODES.items()}
    blocks = shared.select("address", a_code=pl.col("block").replace_strict(codes, return_dtype=pl.Int64))
    sent = pl.DataFrame({"address": list(history.campaign_addresses), "a_code": _ALREADY_SENT},
                        schema={"address": pl.String, "a_code": pl.Int64})
    cooling = {a: d.isoformat() for a, d in history.last_mailed.items() if d >= cooldown_since}
    mailed = pl.DataFrame({"address": list(cooling), "a_code": 0, "last_mailed": list(cooling.values())},
                          schema={"address": pl.String, "a_code": pl.Int64, "last_mailed": pl.String})
    return (
        pl.concat([blocks, sent, mailed], how="diagonal")
        .group_by("address").agg(pl.col("a_code").sum(), pl.col("last_mailed").drop_nulls().first())
    )


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
_DUPLICATE = Reason.DUPLICATE_EMAIL.value


_KNOWN = {"s_rep": pl.Int64, "lang": pl.String, "shape": pl.Int64, "k_reason": pl.String, "k_detail": pl.String}
_SENDER_SCHEMA = {"owner": pl.String, "s_sends": pl.Boolean, "s_capped": pl.Boolean, "s_reason": pl.String,
                  "s_rep_id": pl.String, "s_detail": pl.String, "s_rep": pl.Int64}


@dataclass
class _OrderState:
    """What the ordered rules keep from chunk to chunk, besides the Audience's own state."""

    senders: dict[str, Any] = field(default_factory=dict)  # owner id -> Audience.sender and its skip values
    checked: dict[tuple[int, str, int], tuple[Any, ...]] = field(default_factory=dict)  # (rep, language, shape)
    reps: list[Rep] = field(default_factory=list)  # senders by number, for columns
    rep_numbers: dict[int, int] = field(default_factory=dict)
    from_text: dict[int, str] = field(default_factory=dict)
    values: list[tuple[Any, ...]] = field(default_factory=list)  # the loop's output values, one chunk's
    odd_reasons: list[str] = field(default_factory=list)  # the reasons of one chunk's odd records
    known: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_KNOWN))  # checks, as columns

    def sender(self, owner: str, audience: Audience) -> tuple[Any, ...]:
        """``Audience.sender`` of an owner id, with the values of its skip."""
        who = self.senders.get(owner)
        if who is None:
            reason, rep, detail = audience.sender(owner)
            who = self.senders[owner] = (reason, rep, detail, (
                Action.SKIP.value, reason.value, rep.id if rep else owner or None, None, None, detail or None, None))
        return who

    def sender_row(self, owner: str, audience: Audience) -> tuple[Any, ...]:
        reason, rep, detail, skipped = self.sender(owner, audience)
        sends = reason in _SENDS
        number = None
        if rep is not None:
            number = self.rep_numbers.get(id(rep))
            if number is None:
                number = self.rep_numbers[id(rep)] = len(self.reps)
                self.reps.append(rep)
        return owner, sends, sends and audience.capped(rep), skipped[1], skipped[2], skipped[5], number

    def check(self, rep: Rep, language: str, shape: int, contact: Callable[[], Contact], templates: Any,
              company: Any, campaign: str, cap_detail: str) -> tuple[Any, ...]:
        """The values of a record whose rep is at the cap: rep_cap when its mail would compose, else why
        not. That depends only on which printed values are empty (the shape) of a plain record; one with
        an address the parser must read is checked every time."""
        key = (id(rep), language, shape)
        outcome = self.checked.get(key)
        if outcome is None:
            failed = _check(templates, contact(), rep, company, language, campaign)
            outcome = ((Action.SKIP.value, Reason.REP_CAP.value, rep.id, None, None, cap_detail, None)
                       if failed is None else (Action.SKIP.value, failed[0].value, rep.id, None, None, failed[1], None))
            if not shape & _NOT_DOT_ATOM:
                self.checked[key] = outcome
        return outcome


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
        pl.lit(', "language": '), _json("language", False), pl.lit("}"),
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


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its strings copied out: a filtered string column still holds the buffers of the whole
    chunk it came from, and what pass 1 keeps must not keep every chunk alive."""
    return pl.DataFrame({name: frame.get_column(name).to_list() for name in frame.columns}, schema=frame.schema)


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
                    shape_fields: tuple[str, ...], plain: bool, flags: pl.Series) -> pl.LazyFrame:
    """A chunk of Contact.csv as the columns pass 2's rules read, with pass 1's flags of its records."""
    values = _cells(frame, columns, (*_RAW[:-1], *fields), language).with_columns(flags=pl.lit(flags))
    texts = [*_RAW[:8], "language_value", *fields]
    odd = ((pl.col("flags") & _ODD_1) != 0) | ~pl.col("Email").str.contains(_PLAIN_ASCII)
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


class _Csv:
    """One CSV file as polars frames of all-string columns c0, c1, ... (cells as written, none null)."""

    def __init__(self, path: Path, encoding: str, required: tuple[str, ...], chunk_bytes: int = 0) -> None:
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
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
        if not first.strip() or first.count(b'"') % 2 or b"\r" in first.rstrip(b"\r\n"):
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
        """``_frames``, the next chunk read in a thread while the caller works on this one (polars parses
        without the GIL, so the two cores share the work)."""
        return _read_ahead(self._frames(check))

    def _frames(self, check: bool) -> Iterator[tuple[pl.DataFrame, bool]]:
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
            newlines, returns = data.count(b"\n"), data.count(b"\r")
            if returns and returns != data.count(b"\r\n"):
                # The csv module ends a record at a lone CR (old Mac line ends); polars does not.
                raise Decline(f"{self.path}: a CR that is not part of a CRLF")
            plain = (
                newlines == frame.height and returns in (0, newlines)
                and not data.translate(None, _PLAIN_BYTES)
            )
            yield frame.with_columns(pl.all().fill_null("")), plain

    def _chunks(self) -> Iterator[bytes]:
        """The file after its header in pieces of about ``chunk_bytes``, each cut after a newline outside quotes
        (read into one reused buffer: a piece is the only copy)."""
        with open(self.path, "rb") as handle:
            handle.seek(self.header_bytes + (3 if self.utf8 and handle.read(3) == codecs.BOM_UTF8 else 0))
            buffer = bytearray(self.chunk_bytes)
            filled = 0
            while True:
                with memoryview(buffer) as view:
                    read = handle.readinto(view[filled:])
                end = filled + read
                if not read:
                    if buffer[:end].strip():
                        if buffer.count(b'"', 0, end) % 2:
                            raise Decline(f"{self.path}: a quoted cell is not closed")
                        yield bytes(buffer[:end])
                    return
                cut, stop = -1, end
                while cut < 0:
                    newline = buffer.rfind(b"\n", 0, stop)
                    if newline < 0:
                        break
                    if buffer.count(b'"', 0, newline) % 2 == 0:  # doubled quotes inside a cell count twice
                        cut = newline + 1
                    stop = newline
                if cut < 0:  # one record longer than the buffer
                    if end == len(buffer):
                        buffer.extend(bytes(len(buffer)))
                    filled = end
                    continue
                yield bytes(buffer[:cut])
                buffer[: end - cut] = buffer[cut:end]
                filled = end - cut


def _read_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """``items``, each produced in a thread while the caller holds the one before (at most one ahead).
    An exception in the thread is raised here, where the item would have been; closing this generator
    early (a Decline) stops the thread."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            slots.put((False, exc))

    worker = threading.Thread(target=produce, name="repsend-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            more, item = slots.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()


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
    first = _first_pass(contacts, deals, rules.scope, rules.dormant_since)
    if first.seen:
        source._contact_notes(contacts.columns)
    suppressed: dict[str, Reason] = {}
    add_suppressed(settings, suppressed)
    if suppressed:
        extra = pl.DataFrame({"address": list(suppressed), "block": Reason.SUPPRESSED.value},
                             schema={"address": pl.String, "block": pl.String})
        extra = extra.join(first.blocked, on="address", how="anti")  # setdefault: a stronger reason stays
        first.blocked = pl.concat([first.blocked, extra])
        first.shared = pl.concat([first.shared, extra])
    history = history or History()
    audience = Audience(reps, deals, _BlocksOnDemand(first.blocked), rules, history)
    return ColumnarRun(source, contacts, audience, Settle(audience, templates, companies, options.campaign),
                       LanguageOf(settings), history, fields, source.language_field, shape_fields, first)


class _BlocksOnDemand(dict):  # type: ignore[type-arg]
    """``Audience.blocks`` for the records the reference rules decide here (odd ones): made from pass 1's
    frame when one first asks, as most exports never do."""

    def __init__(self, blocked: pl.DataFrame) -> None:
        super().__init__()
        self._blocked: pl.DataFrame | None = blocked

    def _fill(self) -> None:
        if self._blocked is not None:
            blocked, self._blocked = self._blocked, None
            addresses, reasons = blocked.get_column("address").to_list(), blocked.get_column("block").to_list()
            self.update(zip(addresses, map(Reason, reasons), strict=True))

    def get(self, key: Any, default: Any = None) -> Any:
        self._fill()
        return super().get(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._fill()
        return super().setdefault(key, default)


_PASS1 = ("Email", "Id", "AccountId", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate", "CreatedDate")


# A record's flags, found in pass 1 and read in pass 2: a byte per record is all pass 1 keeps of it.
_IN_DEAL, _RECENT, _ODD_1, _OPTED, _BOUNCED = 1, 2, 4, 8, 16


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
    unknown = pl.col("opted").is_null() | pl.col("bounced").is_null()  # not a date or boolean at all
    for name in ("LastActivityDate", "CreatedDate"):
        text = pl.col(name).str.strip_chars()
        unread = unread | ((text != "") & _day(name).is_null())
        unknown = unknown | ((text != "") & ~text.str.contains(_DATE))
    ascii_odd = ~pl.col("Email").str.contains(_PLAIN_ASCII)
    control_odd = ascii_odd | pl.any_horizontal(pl.col(n).str.contains(_CONTROL) for n in _PASS1)
    parts, hashes, odd_addresses, chunk_flags, seen = [], [], set(), [], False
    for frame, plain in contacts.frames(check=True):
        seen = seen or frame.height > 0
        c = (
            _cells(frame, contacts.columns, _PASS1, None).with_columns(
                odd=ascii_odd if plain else control_odd, **_keys(),
                activity=_day("LastActivityDate"), created=_day("CreatedDate"))
            .with_columns(unknown=unknown, unread=unread)
            .collect()
        )
        plain = ~c.get_column("odd")
        if (c.get_column("unknown") & plain).any():
            raise Decline("Contact.csv: a value the reference path rejects")
        if (c.get_column("unread") & plain).any():
            # A spelling the first ten characters do not hold (2025/3/14): read exactly.
            c = c.with_columns(activity=pl.col("activity").fill_null(_exact_day("LastActivityDate")),
                               created=pl.col("created").fill_null(_exact_day("CreatedDate")))
            if c.select(plain & pl.any_horizontal(
                (pl.col(text).str.strip_chars() != "") & pl.col(name).is_null()
                for name, text in (("activity", "LastActivityDate"), ("created", "CreatedDate"))
            )).to_series().any():
                raise Decline("Contact.csv: a date that does not exist")
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
    deals_csv = _Csv(folder / "Opportunity.csv", source.encoding, OPPORTUNITY_REQUIRED, DEAL_CHUNK_BYTES)
    cols = deals_csv.columns

    def cell(name: str) -> pl.Expr:
        position = cols.get(name)
        return pl.col(f"c{position}") if position is not None else pl.lit("")

    index = DealIndex()
    open_opps: set[str] = set()
    recent_opps: set[str] = set()
    seen = False
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
        if not (cols.has("LastModifiedDate") or cols.has("CloseDate")):
            source._note(
                "Opportunity.csv has no LastModifiedDate or CloseDate column: a recently closed "
                "deal cannot make a contact recent"
            )
        if not cols.has("Id"):
            source._note("Opportunity.csv has no Id column: contact roles cannot be matched to deals")
    if with_roles:
        roles_csv = _Csv(roles_file, source.encoding, ROLE_REQUIRED, DEAL_CHUNK_BYTES)
        p_opp, p_contact = roles_csv.columns.get("OpportunityId"), roles_csv.columns.get("ContactId")
        open_ids, recent_ids = _series(open_opps), _series(recent_opps)
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
