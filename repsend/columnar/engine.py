"""The run: setup as ``runner.plan`` does it, pass 1, then pass 2 chunk by chunk into JSON lines."""

from __future__ import annotations

import errno
import queue
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any, TextIO

import polars as pl

from repsend.audience import Audience, History
from repsend.columnar.chunks import Decline, _Csv
from repsend.columnar.deals import _deals
from repsend.columnar.expressions import (
    _ANOTHER,
    _BOUNCED,
    _IN_DEAL,
    _NOT_DOT_ATOM,
    _ODD_1,
    _OPTED,
    _RAW,
    _RECENT,
    _contact_values,
    _joined,
    _json_lines,
    _look_up,
)
from repsend.columnar.first_pass import _first_pass, _FirstPass
from repsend.compose import Mail
from repsend.errors import InputError
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
from repsend.sfa.csv_export import _BOOLS, CONTACT_REQUIRED, CsvExportSource, parse_bool, to_date

if TYPE_CHECKING:
    from repsend.settings import Settings


# The Contact.csv columns behind each contact value a template prints (compose.CONTACT_FIELDS); the
# address is never empty where a mail is composed.
_PRINTED_COLUMNS = {"id": ("Id",), "first_name": ("FirstName",), "last_name": ("LastName",),
                    "name": ("FirstName", "LastName"), "email": (), "account_name": ("Account.Name",),
                    "title": ("Title",)}


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
    """A run whose pass 1 is done: ``write_json`` makes pass 2."""

    contacts: _Csv
    audience: Audience
    settle: Settle
    language_of: LanguageOf
    history: History
    fields: tuple[str, ...]  # extra Contact fields for templates
    language_field: str
    shape_fields: tuple[str, ...]  # the Contact columns whose emptiness decides whether a mail composes
    markable: bool  # no template prints the address: a subject can be learned (_learn)
    first: _FirstPass

    def write_json(self, out: TextIO, summary: Summary | None = None) -> Summary:
        """Pass 2: every decision line. Pass 1 has read every chunk already, so a chunk that cannot be read
        now means the file changed under the run: an InputError, after the lines already written."""
        try:
            return self._write_json(out, summary or Summary())
        except Decline as exc:
            raise InputError(f"{self.contacts.path}: changed while it was being read ({exc}); run again") from None

    def _write_json(self, out: TextIO, summary: Summary) -> Summary:
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
        flags = self.first.flags
        # A chunk with an odd record reads every column: the reference rules decide it whole. Elsewhere
        # the booleans, dates and account, which pass 1's flags carry, are not read again.
        wanted = ("Id", "Email", "OwnerId", "FirstName", "LastName", "Account.Name", "Title", self.language_field,
                  *self.fields)
        whole = [bool((chunk & _ODD_1 != 0).any()) for chunk in flags]

        def decided(frame: pl.DataFrame, plain: bool, k: int) -> pl.DataFrame:
            """The rules that depend on the record alone (in the reading thread: they need nothing before)."""
            if k >= len(flags) or flags[k].len() != frame.height:
                raise Decline("not the records pass 1 read")
            c = _contact_values(frame, self.contacts.columns, self.language_field, self.fields,
                                self.shape_fields, plain, flags[k]).collect()
            return _look_up(c, address_info).lazy().with_columns(**outputs).collect()

        writer = _WriteBehind(lambda item: _write_lines(out, *item))
        try:
            self._decide_chunks(self.contacts.again(wanted, whole, then=decided), state, summary, writer)
        except BaseException:
            writer.stop()
            raise
        writer.close()
        if writer.chunks != len(flags):
            raise Decline("fewer records than pass 1 read")
        return summary

    def _decide_chunks(self, chunks: Iterator[pl.DataFrame], state: _OrderState, summary: Summary,
                       writer: _WriteBehind) -> None:
        for c in chunks:
            open_rows = c.get_column("odd") | c.get_column("reason").is_null()
            odd_lines: dict[int, str] = {}
            if open_rows.any():
                c = self._in_order(c, open_rows, state, odd_lines)
            summary.considered += c.height
            counts = Counter(state.odd_reasons)
            state.odd_reasons.clear()
            counts.update(dict(c.filter(~c.get_column("odd")).group_by("reason").len().iter_rows()))
            for reason_value, n in counts.items():
                summary.count(reason_value, n)
            writer.put((c.select(_LINE_COLUMNS), odd_lines))  # only what a line shows: the rest is freed now

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
        if taken:
            state.chosen = pl.concat([state.chosen, pl.Series(list(taken), dtype=pl.String)])
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
        chosen, capped = audience.chosen, audience.capped
        values, taken, full, checked = state.values, {}, state.full, state.checked
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
            key = (id(rep), language, shape[j])
            if id(rep) in full or capped(rep):
                full.add(id(rep))  # a rep's count only goes up: at the cap, it stays there
                outcome = checked.get(key)
                values.append(outcome if outcome is not None else state.check(
                    rep, language, shape[j], lambda j=j: _contact(raw, self.fields, j), settle, audience.cap_detail))
                continue
            learned = state.learned.get(key)
            if learned is not None and learned is not _COMPOSE_EACH:
                if learned.skip is not None:
                    values.append(learned.skip)
                else:
                    audience.take(rep, address[j])  # not at the cap (above)
                    taken[address[j]] = row
                    subject = learned.subject % tuple(raw[column][j].strip() for column in learned.columns)
                    values.append((send.value, reason.value, rep.id, learned.from_text, subject, detail or None,
                                   language))
                continue
            contact = _contact(raw, self.fields, j)
            decision, mail = settle(Decision(contact, send, reason, rep, detail), language)
            if mail is None:
                values.append((skip, decision.reason.value, rep.id, None, None, decision.detail or None, None))
            else:
                taken[address[j]] = row
                values.append((send.value, decision.reason.value, rep.id, state.from_text(mail, rep), mail.subject,
                               decision.detail or None, mail.language))
            if learned is None and not shape[j] & _NOT_DOT_ATOM:
                state.learned[key] = self._learn(contact, rep, language, values[-1], mail)
        return taken

    def _learn(self, contact: Contact, rep: Rep, language: str, outcome: tuple[Any, ...],
               mail: Mail | None) -> _Learned | object:
        """What every plain record of this sender, language and shape gets, from the first one's outcome.

        Whether a mail composes depends only on the shape (``_OrderState.check``). The subject is learned
        by composing a probe: this contact with a marker for each value, whose subject shows where each
        value goes; it must then give this contact's subject exactly. Where anything is in doubt (a
        template that prints the address, a marker lost), every mail of the key is composed."""
        if mail is None:
            return _Learned(outcome, "", (), "")
        if not self.markable:
            return _COMPOSE_EACH
        columns: list[str] = []

        def mark(value: str, column: str) -> str:
            if not value.strip():
                return value
            columns.append(column)
            return f"\ue000{len(columns) - 1}\ue001"

        probe = replace(
            contact,
            id=mark(contact.id, "Id"), first_name=mark(contact.first_name, "FirstName"),
            last_name=mark(contact.last_name, "LastName"), account_name=mark(contact.account_name, "Account.Name"),
            title=mark(contact.title, "Title"),
            extra={name: mark(value, name) for name, value in contact.extra.items()},
        )
        try:
            pieces = _MARKER.split(self.settle.compose(probe, rep, language).subject)
        except Exception:  # noqa: BLE001 - the probe is only a shortcut: without it, every mail is composed
            return _COMPOSE_EACH
        texts = pieces[::2]
        if any("\ue000" in text or "\ue001" in text for text in texts):
            return _COMPOSE_EACH
        subject = "%s".join(text.replace("%", "%%") for text in texts)
        used = tuple(columns[int(i)] for i in pieces[1::2])
        row = {"Id": contact.id, "FirstName": contact.first_name, "LastName": contact.last_name,
               "Account.Name": contact.account_name, "Title": contact.title, **contact.extra}
        if subject % tuple(row[column].strip() for column in used) != mail.subject:
            return _COMPOSE_EACH
        return _Learned(None, subject, used, outcome[3])

    def _settle(self, rows: pl.DataFrame, state: _OrderState, taken: dict[str, int]) -> pl.DataFrame:
        """Records whose sender is at the cap or cannot send: duplicate_email when an earlier record took
        the address, else the sender's skip, else what the template check says (rep_cap when it composes)."""
        audience, settle = self.audience, self.settle
        taken_at = pl.DataFrame({"address": list(taken), "taken_at": list(taken.values())},
                                schema={"address": pl.String, "taken_at": pl.UInt32})
        in_chosen = rows.get_column("address").is_in(state.chosen.implode())
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
                                      settle, audience.cap_detail)
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


def _write_lines(out: TextIO, c: pl.DataFrame, odd_lines: dict[int, str]) -> None:
    """A chunk's decision lines, to ``out``."""
    lines = _json_lines(c)
    if odd_lines:
        lines = lines.scatter(list(odd_lines), [line.removesuffix("\n") for line in odd_lines.values()])
    binary = getattr(out, "buffer", None)
    if binary is None:
        if lines.len():
            out.write(lines.str.join("\n").item() + "\n")
        return
    # Written by polars itself, a line a record and nothing quoted: no copy of the chunk in Python.
    out.flush()
    try:
        lines.to_frame().write_csv(binary, include_header=False, quote_style="never")
    except OSError as exc:
        if exc.errno == errno.EPIPE or "os error 32" in str(exc):  # polars' words for EPIPE
            raise BrokenPipeError(errno.EPIPE, "the reader of the output went away") from None
        raise


class _WriteBehind:
    """``write(item)`` for each item put, in order, in a thread: a chunk's lines are made and written while
    the next chunk is decided (polars does both without the GIL). At most one item waits. An error there
    is raised by the next ``put`` or by ``close``, which waits for the rest; items after an error are
    dropped. ``stop`` (the run failed) writes what was put and raises nothing."""

    _DONE = object()

    def __init__(self, write: Callable[[Any], None]) -> None:
        self._write = write
        self._slots: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self.chunks = 0  # items put
        self._thread = threading.Thread(target=self._run, name="repsend-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._slots.get()) is not self._DONE:
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self.chunks += 1
        self._slots.put(item)

    def close(self) -> None:
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._slots.put(self._DONE)
            self._thread.join()


_LINE_COLUMNS = ("id", "email", "action", "reason", "rep_id", "from_", "subject", "detail", "language")

_SENDS = (Reason.DORMANT, Reason.FALLBACK_SENDER)

_BLOCK_CODES = {Reason.OPTED_OUT: 1, Reason.BOUNCED: 2, Reason.SUPPRESSED: 3, Reason.ACTIVE_DEAL: 4}

_ALREADY_SENT = 8


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


_DUPLICATE = Reason.DUPLICATE_EMAIL.value

_MARKER = re.compile("\ue000([0-9]+)\ue001")


@dataclass(frozen=True, slots=True)
class _Learned:
    """The outcome of every plain record of one (sender, language, shape) that its sender can still send."""

    skip: tuple[Any, ...] | None  # the values of a mail that does not compose; else a send:
    subject: str  # the subject, with %s for each value of
    columns: tuple[str, ...]  # these Contact.csv columns (stripped)
    from_text: str


_COMPOSE_EACH = object()  # a key whose mails are composed one by one

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
    learned: dict[tuple[int, str, int], Any] = field(default_factory=dict)  # (rep, language, shape): _learn's
    full: set[int] = field(default_factory=set)  # ids of the reps seen at the cap
    from_texts: dict[int, str] = field(default_factory=dict)  # by id of the rep (alive all run: reps lists it)
    values: list[tuple[Any, ...]] = field(default_factory=list)  # the loop's output values, one chunk's
    odd_reasons: list[str] = field(default_factory=list)  # the reasons of one chunk's odd records
    known: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_KNOWN))  # checks, as columns
    # The addresses sent to so far (the Audience's chosen addresses, as a column for is_in).
    chosen: pl.Series = field(default_factory=lambda: pl.Series(dtype=pl.String))

    def sender(self, owner: str, audience: Audience) -> tuple[Any, ...]:
        """``Audience.sender`` of an owner id, with the values of its skip."""
        who = self.senders.get(owner)
        if who is None:
            reason, rep, detail = audience.sender(owner)
            who = self.senders[owner] = (reason, rep, detail, (
                Action.SKIP.value, reason.value, rep.id if rep else owner or None, None, None, detail or None, None))
        return who

    def from_text(self, mail: Mail, rep: Rep) -> str:
        """The From of a mail from ``rep``, as the JSON line writes it (made once a rep)."""
        text = self.from_texts.get(id(rep))
        if text is None:
            text = self.from_texts[id(rep)] = str(mail.from_)
        return text

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

    def check(self, rep: Rep, language: str, shape: int, contact: Callable[[], Contact], settle: Settle,
              cap_detail: str) -> tuple[Any, ...]:
        """The values of a record whose rep is at the cap: rep_cap when its mail would compose, else why
        not. That depends only on which printed values are empty (the shape) of a plain record; one with
        an address the parser must read is checked every time."""
        key = (id(rep), language, shape)
        outcome = self.checked.get(key)
        if outcome is None:
            failed = settle.check(contact(), rep, language)
            outcome = ((Action.SKIP.value, Reason.REP_CAP.value, rep.id, None, None, cap_detail, None)
                       if failed is None else (Action.SKIP.value, failed[0].value, rep.id, None, None, failed[1], None))
            if not shape & _NOT_DOT_ATOM:
                self.checked[key] = outcome
        return outcome


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
    return ColumnarRun(contacts, audience, Settle(audience, templates, companies, options.campaign),
                       LanguageOf(settings), history, fields, source.language_field, shape_fields,
                       "email" not in printed, first)


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
