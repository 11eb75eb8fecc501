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

from repsend.audience import Audience, History, Rules, address_problem
from repsend.compose import Composer, Templates
from repsend.errors import ConfigError
from repsend.models import Company, Decision, Reason, Rep, id15, normalize_email
from repsend.settings import Settings
from repsend.sfa.base import Blocks, Source
from repsend.suppression_list import read_suppression_list
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
