"""One campaign run as functions the CLI, a nightly job and the tests all call: select, then send.

``plan`` streams one ``Planned`` per contact considered: the decision and, for a send, the composed
mail. Everything that can stop a run (config, templates, the SFA's first answers) fails before the
first decision, so a run never stops halfway through its own output for a reason it could have seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import jinja2

from repsend.audience import Audience, History, Rules
from repsend.compose import Company, HeaderInjection, Mail, MissingField, Templates
from repsend.errors import ConfigError
from repsend.models import Action, Contact, Decision, Reason, Rep, id15, normalize_email
from repsend.settings import Settings
from repsend.sfa.base import Source


@dataclass(slots=True)
class Planned:
    decision: Decision
    mail: Mail | None = None
    language: str = ""


@dataclass(slots=True)
class Summary:
    considered: int = 0
    send: int = 0
    skip: Counter[str] = field(default_factory=Counter)

    def add(self, decision: Decision) -> None:
        self.considered += 1
        if decision.action is Action.SEND:
            self.send += 1
        else:
            self.skip[decision.reason.value] += 1

    def count(self, reason: str, n: int) -> None:
        """``n`` decisions with ``reason`` (a send reason counts as a send), already counted in ``considered``."""
        if reason in _SEND_REASONS:
            self.send += n
        else:
            self.skip[reason] += n


_SEND_REASONS = (Reason.DORMANT.value, Reason.FALLBACK_SENDER.value)


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
        c.names.get(language, c.name),
        c.postal_addresses.get(language, c.postal_address),
        c.opt_out,
        c.domain,
        settings.mail.unsubscribe_url,
    )


def load_templates(settings: Settings, name: str) -> Templates:
    languages = {settings.template.default_language, *settings.template.languages.values()}
    return Templates(settings.resolve(settings.template.dir), name, languages, settings.sfa.contact_fields)


def language_table(settings: Settings) -> dict[str, str]:
    return {key.strip().casefold(): lang for key, lang in settings.template.languages.items()}


def read_suppression_list(path: Path) -> set[str]:
    addresses = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.split("#", 1)[0]
        if line.strip():
            addresses.add(normalize_email(line))
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


def plan(
    settings: Settings,
    source: Source,
    options: RunOptions,
    history: History | None = None,
    summary: Summary | None = None,
) -> Iterator[Planned]:
    """Every contact's decision, in the source's order, with the mail for each send.

    Setup (templates, reps, deals, blocked addresses) runs now, before the first decision is asked
    for, so that a bad template or a malformed export stops the run before any output.
    """
    templates = load_templates(settings, options.template)
    companies = {language: company_of(settings, language) for language in templates.languages}
    reps = source.reps()
    rules = rules_of(settings, options, find_fallback(settings, reps))
    deals = source.deals(rules.dormant_since, rules.scope)
    blocks = source.blocked_addresses(deals, rules.scope)
    add_suppressed(settings, blocks)
    audience = Audience(reps, deals, blocks, rules, history)
    return _stream(source, audience, templates, companies, settings, options, summary or Summary())


def rules_of(settings: Settings, options: RunOptions, fallback: Rep | None) -> Rules:
    audience = settings.audience
    return Rules(
        scope=audience.active_deal_scope,
        dormant_since=options.as_of - timedelta(days=audience.dormant_after_days),
        cooldown_since=options.as_of - timedelta(days=audience.cooldown_days),
        fallback_sender=fallback,
        sender_domains=frozenset(d.strip().lower() for d in settings.mail.sender_domains),
        per_rep_per_day=settings.rate.per_rep_per_day,
    )


def add_suppressed(settings: Settings, blocks: dict[str, Reason]) -> None:
    """The local suppression list, where no stronger address-level reason holds already."""
    if settings.audience.suppression_file is not None:
        for address in read_suppression_list(settings.resolve(settings.audience.suppression_file)):
            blocks.setdefault(address, Reason.SUPPRESSED)


def _stream(
    source: Source,
    audience: Audience,
    templates: Templates,
    companies: dict[str, Company],
    settings: Settings,
    options: RunOptions,
    summary: Summary,
) -> Iterator[Planned]:
    language_of = LanguageOf(settings)
    settle = Settle(audience, templates, companies, options.campaign)
    decide, send, limit = audience.decide, Action.SEND, options.limit
    for contact in source.contacts():
        language = language_of(contact.language_value)
        decision, mail = settle(decide(contact), language)
        summary.add(decision)
        yield Planned(decision, mail, language)
        if limit is not None and decision.action is send and summary.send >= limit:
            return


class LanguageOf:
    """The template language of a contact's language field value, as written ([template] languages)."""

    def __init__(self, settings: Settings) -> None:
        self.languages = language_table(settings)
        self.default = settings.template.default_language
        self.known: dict[str, str] = {}  # a handful of values, each looked up once

    def __call__(self, value: str) -> str:
        language = self.known.get(value)
        if language is None:
            language = self.languages.get(value.strip().casefold(), self.default)
            if len(self.known) < 1024:
                self.known[value] = language
        return language


class Settle:
    """A decision made final: a send composes (or becomes missing_field / invalid_header) and is then
    accepted by the audience (or becomes rep_cap). Returns the decision and, for a send, its mail."""

    def __init__(self, audience: Audience, templates: Templates, companies: dict[str, Company], campaign: str):
        self.audience = audience
        self.templates = templates
        self.companies = companies
        self.campaign = campaign

    def __call__(self, decision: Decision, language: str) -> tuple[Decision, Mail | None]:
        if decision.action is not Action.SEND:
            return decision, None
        assert decision.rep is not None
        contact, rep = decision.contact, decision.rep
        mail = None
        try:
            if self.audience.capped(rep):
                # accept() will say rep_cap and drop the mail: only whether it composes counts.
                self.templates.check(contact, rep, self.companies[language], language, self.campaign)
            else:
                mail = self.compose(contact, rep, language)
        except _NOT_COMPOSED as exc:
            decision = _skip(decision, *_why_not(exc))
        decision = self.audience.accept(decision)
        return decision, mail if decision.action is Action.SEND else None

    def compose(self, contact: Contact, rep: Rep, language: str) -> Mail:
        """The mail from ``rep`` to ``contact``, nothing decided or counted; raises what ``Templates.compose``
        raises."""
        return self.templates.compose(contact, rep, self.companies[language], language, self.campaign)

    def check(self, contact: Contact, rep: Rep, language: str) -> tuple[Reason, str] | None:
        """Why a mail from ``rep`` to ``contact`` would not compose, as ``__call__`` says it (reason,
        detail); None when it composes."""
        try:
            self.templates.check(contact, rep, self.companies[language], language, self.campaign)
        except _NOT_COMPOSED as exc:
            return _why_not(exc)
        return None


_NOT_COMPOSED = (MissingField, jinja2.UndefinedError, HeaderInjection)


def _why_not(exc: Exception) -> tuple[Reason, str]:
    """A compose error as the skip a person reads: missing_field (which field) or invalid_header."""
    if isinstance(exc, HeaderInjection):
        return Reason.INVALID_HEADER, f"control character in {exc.header}"
    return Reason.MISSING_FIELD, exc.field if isinstance(exc, MissingField) else str(exc)


def _skip(decision: Decision, reason: Reason, detail: str) -> Decision:
    return Decision(decision.contact, Action.SKIP, reason, decision.rep, detail)
