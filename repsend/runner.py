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
    return _stream(source, audience, templates, companies, settings, options, summary or Summary())


def _stream(
    source: Source,
    audience: Audience,
    templates: Templates,
    companies: dict[str, Company],
    settings: Settings,
    options: RunOptions,
    summary: Summary,
) -> Iterator[Planned]:
    languages = language_table(settings)
    default_language = settings.template.default_language
    # The language of each language field value as written (a handful of values, looked up once each).
    language_of: dict[str, str] = {}
    send = Action.SEND
    decide, accept, capped = audience.decide, audience.accept, audience.capped
    compose, check = templates.compose, templates.check
    limit, campaign = options.limit, options.campaign
    for contact in source.contacts():
        decision = decide(contact)
        mail = None
        value = contact.language_value
        language = language_of.get(value)
        if language is None:
            language = languages.get(value.strip().casefold(), default_language)
            if len(language_of) < 1024:
                language_of[value] = language
        if decision.action is send:
            assert decision.rep is not None
            try:
                if capped(decision.rep):
                    # accept() will say rep_cap and drop the mail: only whether it composes counts.
                    check(contact, decision.rep, companies[language], language, campaign)
                else:
                    mail = compose(contact, decision.rep, companies[language], language, campaign)
            except MissingField as missing:
                decision = _skip(decision, Reason.MISSING_FIELD, missing.field)
            except jinja2.UndefinedError as exc:
                decision = _skip(decision, Reason.MISSING_FIELD, str(exc))
            except HeaderInjection as bad:
                decision = _skip(decision, Reason.INVALID_HEADER, f"control character in {bad.header}")
            decision = accept(decision)
            if decision.action is not send:
                mail = None
        summary.add(decision)
        yield Planned(decision, mail, language)
        if limit is not None and decision.action is send and summary.send >= limit:
            return


def _skip(decision: Decision, reason: Reason, detail: str) -> Decision:
    return Decision(decision.contact, Action.SKIP, reason, decision.rep, detail)
