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
from repsend.models import Action, Decision, Reason, Rep, id15, normalize_email
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


@dataclass(frozen=True, slots=True)
class RunOptions:
    as_of: date
    campaign: str
    template: str
    limit: int | None = None


def company_of(settings: Settings) -> Company:
    c = settings.company
    return Company(c.name, c.postal_address, c.opt_out, c.domain, settings.mail.unsubscribe_url)


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
    company = company_of(settings)
    audience_settings = settings.audience
    reps = source.reps()
    fallback = find_fallback(settings, reps)
    scope = audience_settings.active_deal_scope
    dormant_since = options.as_of - timedelta(days=audience_settings.dormant_after_days)
    deals = source.deals(dormant_since, scope)
    blocks = source.blocked_addresses(deals, scope)
    if audience_settings.suppression_file is not None:
        for address in read_suppression_list(settings.resolve(audience_settings.suppression_file)):
            blocks.setdefault(address, Reason.SUPPRESSED)
    rules = Rules(
        scope=scope,
        dormant_since=dormant_since,
        cooldown_since=options.as_of - timedelta(days=audience_settings.cooldown_days),
        fallback_sender=fallback,
        sender_domains=frozenset(d.strip().lower() for d in settings.mail.sender_domains),
        per_rep_per_day=settings.rate.per_rep_per_day,
    )
    audience = Audience(reps, deals, blocks, rules, history)
    return _stream(source, audience, templates, company, settings, options, summary or Summary())


def _stream(
    source: Source,
    audience: Audience,
    templates: Templates,
    company: Company,
    settings: Settings,
    options: RunOptions,
    summary: Summary,
) -> Iterator[Planned]:
    languages = language_table(settings)
    default_language = settings.template.default_language
    for contact in source.contacts():
        decision = audience.decide(contact)
        mail = None
        language = languages.get(contact.language_value.strip().casefold(), default_language)
        if decision.action is Action.SEND:
            assert decision.rep is not None
            try:
                mail = templates.compose(contact, decision.rep, company, language, options.campaign)
            except MissingField as missing:
                decision = _skip(decision, Reason.MISSING_FIELD, missing.field)
            except jinja2.UndefinedError as exc:
                decision = _skip(decision, Reason.MISSING_FIELD, str(exc))
            except HeaderInjection as bad:
                decision = _skip(decision, Reason.INVALID_HEADER, f"control character in {bad.header}")
            decision = audience.accept(decision)
            if decision.action is not Action.SEND:
                mail = None
        summary.add(decision)
        yield Planned(decision, mail, language)
        if options.limit is not None and decision.action is Action.SEND and summary.send >= options.limit:
            return


def _skip(decision: Decision, reason: Reason, detail: str) -> Decision:
    return Decision(decision.contact, Action.SKIP, reason, decision.rep, detail)
