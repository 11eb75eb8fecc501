"""Who gets a mail in one campaign run: the setup the rules need, then one decision per contact.

``select`` is the one way in for every path: the table and JSON dry runs, ``preview``, the real run.
Everything that can stop a run (config, templates, the SFA's first answers) fails in its setup, before
the first decision, so a run never stops halfway through its own output for a reason it could have seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from repsend.audience import Audience, History, Rules, address_problem
from repsend.compose import Composer, Templates
from repsend.errors import ConfigError, InputError
from repsend.models import Company, Decision, Reason, Rep, id15, normalize_email
from repsend.settings import Settings
from repsend.sfa.base import Blocks, Source
from repsend.unsubscribe import secret_of


class Summary:
    """The count of decisions by reason: considered, sent, and each skip reason."""

    def __init__(self) -> None:
        self._reasons: dict[Reason, int] = {}

    def add(self, decision: Decision) -> None:
        reasons = self._reasons
        reasons[decision.reason] = reasons.get(decision.reason, 0) + 1

    @property
    def considered(self) -> int:
        return sum(self._reasons.values())

    @property
    def send(self) -> int:
        return sum(n for reason, n in self._reasons.items() if reason.is_send)

    @property
    def skip(self) -> Counter[str]:
        return Counter({reason.value: n for reason, n in self._reasons.items() if not reason.is_send})

    @property
    def by_reason(self) -> dict[str, int]:
        """Every reason's count, sends included, in Reason's order."""
        return {reason.value: self._reasons[reason] for reason in Reason if reason in self._reasons}


@dataclass(frozen=True, slots=True)
class RunOptions:
    as_of: date
    campaign: str
    template: str
    limit: int | None = None


def company_of(settings: Settings, language: str) -> Company:
    """The sender's identity as mails in ``language`` print it ([company] names / postal_addresses)."""
    c = settings.company
    return Company(
        name=c.names.get(language, c.name),
        postal_address=c.postal_addresses.get(language, c.postal_address),
        opt_out=c.opt_out,
        domain=c.domain,
        unsubscribe_url=settings.mail.unsubscribe_url,
    )


def load_templates(settings: Settings, name: str) -> Templates:
    languages = {settings.template.default_language, *settings.template.languages.values()}
    return Templates(settings.resolve(settings.template.dir), name, languages, settings.sfa.contact_fields)


# Header names of the address column in a suppression list saved as CSV (compared without case, spaces,
# "-" or "_"): what people and their tools call it, in English and in Japanese.
SUPPRESSION_EMAIL_HEADERS = frozenset({
    "email", "emailaddress", "e-mail", "mail", "mailaddress", "address", "emailaddresses", "to",
    "メール", "メールアドレス", "eメール", "eメールアドレス", "電子メール", "電子メールアドレス", "アドレス", "宛先",
})


def read_suppression_list(path: Path) -> set[str]:
    """The addresses of a local suppression list, normalized, as people write one: one per line, bare or
    as ``Name <address>``, with ``#`` comments; or a CSV, with a header naming its email column or rows such
    as ``"hanako@example.jp",opted out``. UTF-8 (with or without a BOM) or CP932. A line that holds no
    address stops the run (InputError, naming the file and the line): a list that is not read as its
    author meant would let someone be mailed who asked not to be."""
    text = _suppression_text(path)
    lines = text.splitlines()
    first = next((n for n, line in enumerate(lines) if _uncommented(line).strip()), None)
    if first is None:
        return set()
    header = _csv_row(_uncommented(lines[first]))
    column = next((i for i, cell in enumerate(header) if _header_key(cell) in SUPPRESSION_EMAIL_HEADERS), None)
    if column is not None and "@" not in lines[first]:
        return _suppression_csv(path, text, first, column, header[column].strip())
    addresses = set()
    for number, line in enumerate(lines, start=1):
        entry = _uncommented(line).strip()
        if not entry:
            continue
        found = _addresses_in([entry, *_csv_row(entry)])
        if "@" in entry and (not found or not any(ch.isspace() or ch in '<>",:' for ch in entry)):
            found.add(normalize_email(entry))  # an address as written, even one no parser takes
        if not found:
            raise InputError(f"{path}:{number}: no address in {entry!r} (write one address per line, "
                             "e.g. hanako@example.jp or 山田 花子 <hanako@example.jp>)")
        addresses |= found
    return addresses


def _suppression_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("cp932")  # a list saved by Japanese Excel
    except UnicodeDecodeError:
        line = data[: utf8_error.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: neither UTF-8 nor CP932: save the list as UTF-8") from None


def _uncommented(line: str) -> str:
    """The line without its comment: ``#`` at the start or after a space (an address may hold a ``#``)."""
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return ""
    cut = min((i for i in (line.find(" #"), line.find("\t#")) if i >= 0), default=-1)
    return line if cut < 0 else line[:cut]


def _csv_row(line: str) -> list[str]:
    import csv

    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return []


def _header_key(cell: str) -> str:
    return "".join(cell.split()).replace("_", "").replace("-", "").casefold().replace("e-mail", "email")


def _addresses_in(texts: list[str]) -> set[str]:
    """Every address in ``texts`` (whole lines, cells): ``Name <address>``, bare, several with commas."""
    import unicodedata
    from email.utils import getaddresses

    # An address typed in full-width (ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ) is the ASCII one too (kept as typed
    # as well); "mailto:" is no part of it.
    texts = [t for text in texts for t in dict.fromkeys((text, unicodedata.normalize("NFKC", text)))]
    found = set()
    for _, address in getaddresses(texts):
        address = address.removeprefix("mailto:").removeprefix("MAILTO:")
        local, at, domain = address.rpartition("@")
        if at and local and domain and not any(ch.isspace() for ch in address):
            found.add(normalize_email(address))
    return found


def _suppression_csv(path: Path, text: str, header_line: int, column: int, name: str) -> set[str]:
    """A suppression list saved as CSV, its header on line ``header_line + 1`` (0-based ``header_line``)."""
    import csv
    import io

    addresses = set()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        start = reader.line_num
        for row in reader:
            number, start = start + 1, reader.line_num
            if number <= header_line + 1 or not any(cell.strip() for cell in row) or (
                    row and row[0].lstrip().startswith("#")):
                continue
            found = _addresses_in([row[column]]) if column < len(row) else set()
            if not found:
                raise InputError(f"{path}:{number}: no address in the {name!r} column")
            addresses |= found
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    return addresses


def find_fallback(settings: Settings, reps: dict[str, Rep]) -> Rep | None:
    wanted = settings.audience.fallback_sender.strip()
    if not wanted:
        return None
    rep = reps.get(id15(wanted)) or next(
        (r for r in reps.values() if normalize_email(r.email) == normalize_email(wanted)), None
    )
    where = f"{settings.config_path}: [audience] fallback_sender"
    if rep is None:
        raise ConfigError(f"{where}: {wanted!r} is not a user in the SFA (give a User Id or address)")
    if not rep.is_active:
        raise ConfigError(f"{where}: {rep.name} <{rep.email}> is inactive")
    return rep


def rules_of(settings: Settings, options: RunOptions, fallback: Rep | None) -> Rules:
    audience = settings.audience
    return Rules(
        scope=audience.active_deal_scope,
        dormant_since=options.as_of - timedelta(days=audience.dormant_after_days),
        cooldown_since=options.as_of - timedelta(days=audience.cooldown_days),
        fallback_sender=fallback,
        sender_domains=frozenset(d.strip().lower() for d in settings.mail.sender_domains),
        per_rep_per_day=settings.rate.per_rep_per_day,
        retry_failed=settings.campaign.retry_failed,
        languages={key.strip().casefold(): lang for key, lang in settings.template.languages.items()},
        default_language=settings.template.default_language,
        smtputf8=settings.smtp.smtputf8,
        holdout=settings.campaign.holdout,
        campaign=options.campaign,
    )


def check_envelope_from(settings: Settings) -> None:
    """The bounce address goes into every envelope: one that cannot go out stops the run before it starts."""
    envelope_from = settings.mail.envelope_from.strip()
    problem = address_problem(envelope_from, settings.smtp.smtputf8) if envelope_from else ""
    if problem:
        raise ConfigError(f"{settings.config_path}: [mail] envelope_from: {envelope_from}: {problem}")


def audience_of(settings: Settings, source: Source, options: RunOptions, history: History | None = None) -> Audience:
    """The run's setup: templates, reps, deals and the addresses blocked on any record, read and checked."""
    check_envelope_from(settings)
    templates = load_templates(settings, options.template)
    if settings.mail.unsubscribe_url:
        secret_of(settings.env)  # every mail's link is signed: without the secret, stop before any decision
    companies = {language: company_of(settings, language) for language in templates.languages}
    reps = source.reps()
    rules = rules_of(settings, options, find_fallback(settings, reps))
    deals = source.deals(rules.dormant_since, rules.scope)
    blocks = source.blocked_addresses(deals, rules.scope)
    if settings.audience.suppression_file is not None:
        # The local suppression list, where no earlier address-level reason (an opt-out, a bounce) holds.
        for address in read_suppression_list(settings.resolve(settings.audience.suppression_file)):
            held = blocks.get(address)
            if held is None or Reason.SUPPRESSED.rank < held.rank:
                blocks[address] = Reason.SUPPRESSED
    # What came back and is in the send log (opt-outs, bounces, complaints), with where it came from.
    for address, (reason, detail) in (history.suppressed if history is not None else {}).items():
        held = blocks.get(address)
        if held is None or reason.rank < held.rank:
            blocks[address] = reason
            if isinstance(blocks, Blocks):
                blocks.details[address] = detail
    return Audience(reps, deals, blocks, rules, history, Composer(templates, companies, options.campaign))


class Decisions:
    """The decisions of one run as they are made (an iterator), with what its setup found that the output
    needs before the first of them: the template's variants (sorted; () without)."""

    __slots__ = ("variants", "_stream")

    def __init__(self, stream: Iterator[Decision], variants: tuple[str, ...]) -> None:
        self.variants = variants
        self._stream = stream

    def __iter__(self) -> Iterator[Decision]:
        return self._stream  # the generator itself: a loop pays nothing for the wrapper

    def __next__(self) -> Decision:
        return next(self._stream)


def select(
    settings: Settings,
    source: Source,
    options: RunOptions,
    history: History | None = None,
    summary: Summary | None = None,
) -> Decisions:
    """Every contact's decision, in the source's order; a send carries its mail. ``summary`` counts them.

    The setup (``audience_of``) runs now, before the first decision is asked for, so that a bad template
    or a malformed export stops the run before any output.
    """
    audience = audience_of(settings, source, options, history)
    composer = audience.composer
    variants = composer.variants if isinstance(composer, Composer) else ()
    return Decisions(_decisions(source, audience, options.limit, summary if summary is not None else Summary()),
                     variants)


def _decisions(source: Source, audience: Audience, limit: int | None, summary: Summary) -> Iterator[Decision]:
    decide, add = audience.decide, summary.add
    sends = 0
    for contact in source.contacts():
        decision = decide(contact)
        add(decision)
        yield decision
        if limit is not None and decision.mail is not None:
            sends += 1
            if sends >= limit:
                return
