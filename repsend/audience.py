"""Who is dormant and gets a note, who is skipped and why: the one decision engine. Pure: no I/O.

Every contact gets exactly one ``Decision`` with one reason, the first of ``Reason`` (in its order)
that applies, so that a dry run explains itself and a manager can count why people were left out.
Every path (the dry runs, ``preview``, the real run; CSV exports, the REST and the Bulk API) asks
``Audience.decide``; nothing else decides. The rules that need the mail itself (``missing_field``,
``invalid_header``) ask a ``Composer``, and ``rep_cap`` comes last, once the mail is known to be
good. The ``Audience`` keeps the little state one run needs: addresses chosen, each rep's count today.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from repsend.assignment import is_held_out
from repsend.models import Contact, Decision, Mail, Reason, Rep, id15, normalize_email, wire_domain
from repsend.sfa.base import OPEN, RECENT, Blocks, DealIndex, Scope

# Deliberately plain: one @, no spaces, a dotted domain. RFC 5322 admits far more, but an address a
# rep would not type into a mail client is a data error to fix in the SFA, not a recipient.
_ADDRESS = re.compile(r"^[^@\s\"(),:;<>\[\\\]]+@[^@\s\"(),:;<>\[\\\]]+\.[^@\s\"(),:;<>\[\\\].]{2,}$")

_SENDS = frozenset(reason for reason in Reason if reason.is_send)


def is_valid_address(address: str) -> bool:
    return (bool(_ADDRESS.match(address)) and ".." not in address and not address.startswith(".")
            and ".@" not in address and "@." not in address)  # no dot at either end of a part (RFC 5322)


def address_problem(address: str, smtputf8: bool) -> str:
    """Why mail to or from ``address`` (valid, trimmed) cannot go out as this run sends it; "" when it can.

    An internationalized domain goes out as IDNA A-labels (``models.wire_domain``), which every server
    takes. A local part outside ASCII (``山田@example.jp``) can only travel with SMTPUTF8 (RFC 6531), which
    ``[smtp] smtputf8`` says the run uses: the dry run cannot ask the server, so the config says it."""
    if address.isascii():
        return ""
    local, _, domain = address.rpartition("@")
    if not local.isascii() and not smtputf8:
        return "a UTF-8 local part needs SMTPUTF8 ([smtp] smtputf8 = true)"
    try:
        wire_domain(domain)
    except ValueError as exc:
        return str(exc)
    return ""


class Uncomposable(Exception):
    """A mail that must not go out as composed; ``reason`` and ``detail`` are the skip a person reads."""

    reason: Reason = Reason.MISSING_FIELD

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Composer(Protocol):
    """Makes the mail of a send (``compose.Composer``); raises ``Uncomposable`` for a contact to skip."""

    def compose(self, contact: Contact, rep: Rep, language: str) -> Mail: ...

    def check(self, contact: Contact, rep: Rep, language: str) -> None:
        """Raises what ``compose`` would raise, without making the mail."""
        ...


@dataclass(frozen=True, slots=True)
class Rules:
    """The audience settings of one run, with ``as_of`` already applied."""

    scope: Scope = "account"
    dormant_since: date = date.min  # touched on or after this day: not dormant
    cooldown_since: date = date.min  # mailed by repsend on or after this day: still cooling down
    fallback_sender: Rep | None = None
    sender_domains: frozenset[str] = frozenset()
    per_rep_per_day: int = 0  # 0: no cap
    retry_failed: bool = False  # [campaign] retry_failed: mail again an address the server refused (5xx)
    # The contact's language field value (stripped, casefolded) -> template language; else the default.
    languages: Mapping[str, str] = field(default_factory=dict)
    default_language: str = "ja"
    smtputf8: bool = False  # [smtp] smtputf8: a UTF-8 local part (a contact's or a sender's) may be mailed
    # [campaign] holdout: the share of would-be sends kept unmailed, chosen by a stable hash (``assignment``).
    holdout: float = 0.0
    campaign: str = ""


@dataclass(slots=True)
class History:
    """What the send log knows, read before the run (empty in a first run or without a log)."""

    # Normalized addresses this campaign mailed, or may have (sent, sending, unknown not resolved as not sent).
    campaign_addresses: Set[str] = frozenset()
    # Addresses the server refused for good (5xx) in this campaign -> its answer ("550 5.1.1 ..."), for detail.
    campaign_failed: Mapping[str, str] = field(default_factory=dict)
    last_mailed: Mapping[str, date] = field(default_factory=dict)  # address -> last repsend mail, any campaign
    rep_sent_today: Mapping[str, int] = field(default_factory=dict)  # id15 of rep -> mails today
    # Addresses suppressed in the send log (opt-outs, bounces, complaints) -> the reason and its detail.
    suppressed: Mapping[str, tuple[Reason, str]] = field(default_factory=dict)
    # Addresses this campaign held out (``held_out`` rows): they stay held out, whatever the share says now.
    held_out: Set[str] = frozenset()


class Audience:
    def __init__(
        self,
        reps: Mapping[str, Rep],
        deals: DealIndex,
        blocks: dict[str, Reason],
        rules: Rules,
        history: History | None = None,
        composer: Composer | None = None,
    ) -> None:
        """``blocks``: normalized address -> the address-level reason that holds for every record with it
        (``sfa.base.address_blocks`` and the suppression list). ``composer``: None decides without mails
        (every send is final as the rules before ``missing_field`` leave it)."""
        self.reps = reps
        self.deals = deals
        reach = deals.reach(rules.scope)
        self._deal_accounts, self._deal_contacts = reach.accounts, reach.contacts
        # Grows while contacts stream past: an open deal found on one record holds for the next.
        self.blocks = blocks
        # Where a block that no contact holds came from ("on a lead", the send log's "opted out 2026-12-06
        # (unsubscribe link)"); else it is "on another record".
        self._block_details: Mapping[str, str] = blocks.details if isinstance(blocks, Blocks) else {}
        self.rules = rules
        self.history = history or History()
        self.composer = composer
        self._chosen: set[str] = set()
        self._cap = rules.per_rep_per_day
        self._cap_detail = f"{self._cap} a day"  # the detail of every rep_cap
        self._holdout_detail = f"{rules.holdout:.0%} of {rules.campaign} held out" if rules.holdout else "held out"
        # Mails today by rep.Id (one Rep per user in a run), from the history's count by id15 at the first.
        self._sent_today: dict[str, int] = {}
        self._languages: dict[str, str] = {}  # language field value as written -> language, for this run
        self._senders: dict[str, tuple[Reason, Rep | None, str]] = {}  # owner Id as written -> sender()
        # Whether a sender's own address may be unsendable (see _reason): almost never, and then the
        # sender is looked up before the address rules.
        fallback = rules.fallback_sender
        self._odd_senders = (any(not rep.email.isascii() for rep in reps.values())
                             or (fallback is not None and not fallback.email.isascii()))

    def decide(self, contact: Contact) -> Decision:
        """The decision for one contact, final: a send carries its mail and counts for its rep."""
        address = normalize_email(contact.email)
        language = self._languages.get(contact.language_value) or self.language(contact.language_value)
        reason, rep, detail = self._reason(contact, address)
        if reason is Reason.ACTIVE_DEAL or (reason is Reason.UNSENDABLE_ADDRESS and rep is not None
                                            and self._deals(contact) & OPEN):
            # A person in an open deal through one record is in it through all their records (also when
            # this record's sender, not the deal, stopped its mail: another record may have another sender).
            self.blocks.setdefault(address, Reason.ACTIVE_DEAL)
        if reason not in _SENDS:
            return Decision(contact=contact, reason=reason, rep=rep, detail=detail, language=language)
        assert rep is not None
        return self._send(contact, address, reason, rep, detail, language)

    def language(self, value: str) -> str:
        """The template language of a language field value ([template] languages, else the default)."""
        language = self._languages.get(value)
        if language is None:
            rules = self.rules
            language = rules.languages.get(value.strip().casefold(), rules.default_language)
            if len(self._languages) < 1024:  # a handful of values in a real org, each looked up once
                self._languages[value] = language
        return language

    def _send(self, contact: Contact, address: str, reason: Reason, rep: Rep, detail: str,
              language: str) -> Decision:
        """The last rules of a send: the mail composes (else missing_field or invalid_header), then the
        rep's daily cap (else rep_cap); only then are the address and a place in the cap taken, so that a
        contact whose mail fails neither takes the address from a later record nor the cap's place."""
        composer = self.composer
        mail = None
        held = self._held_out(contact, address)
        capped = not held and self._capped(rep)
        if composer is not None:
            try:
                if capped or held:
                    composer.check(contact, rep, language)  # thrown away anyway: only whether it would compose
                else:
                    mail = composer.compose(contact, rep, language)
            except Uncomposable as why:
                return Decision(contact=contact, reason=why.reason, rep=rep, detail=why.detail, language=language)
        if held:
            # Kept unmailed for the comparison, and the person with it: a later record of the address too.
            self._chosen.add(address)
            return Decision(contact=contact, reason=Reason.HOLDOUT, rep=rep, detail=self._holdout_detail,
                            language=language)
        if capped:
            return Decision(contact=contact, reason=Reason.REP_CAP, rep=rep, detail=self._cap_detail, language=language)
        self._sent_today[rep.id] = self._sent(rep) + 1
        self._chosen.add(address)
        return Decision(contact=contact, reason=reason, rep=rep, detail=detail, mail=mail, language=language)

    def _held_out(self, contact: Contact, address: str) -> bool:
        """In the campaign's holdout group: held out before (the send log), or chosen by the stable hash."""
        if address in self.history.held_out:
            return True
        share = self.rules.holdout
        return bool(share) and is_held_out(self.rules.campaign, contact.id, share)

    def _capped(self, rep: Rep) -> bool:
        cap = self._cap
        return bool(cap) and self._sent(rep) >= cap

    def _sent(self, rep: Rep) -> int:
        """The rep's mails today: the history's, then this run's."""
        sent = self._sent_today.get(rep.id)
        if sent is None:
            sent = self._sent_today[rep.id] = self.history.rep_sent_today.get(id15(rep.id), 0)
        return sent

    def _reason(self, contact: Contact, address: str) -> tuple[Reason, Rep | None, str]:
        """The first reason up to the sender's, in ``Reason``'s order."""
        if not address:
            return Reason.NO_EMAIL, None, ""
        if not is_valid_address(address):
            return Reason.INVALID_EMAIL, None, contact.email.strip()
        if not address.isascii():
            problem = address_problem(contact.email.strip(), self.rules.smtputf8)
            if problem:
                return Reason.UNSENDABLE_ADDRESS, None, problem
        if self._odd_senders:
            # The sender, known from the owner alone: a sender whose own address cannot go out is as
            # unsendable as the contact's (in Reason's order); the sender's other reasons come in their turn.
            sender = self._sender_of(contact.owner_id)
            if sender[0] is Reason.UNSENDABLE_ADDRESS:
                return sender
        # An opt-out or bounce holds for the person (every record of the address), in Reason's order: an
        # opt-out on another record wins over this record's own bounce.
        blocked = self.blocks.get(address)
        if contact.opted_out:
            return Reason.OPTED_OUT, None, ""
        if blocked is Reason.OPTED_OUT:
            return Reason.OPTED_OUT, None, self._block_details.get(address, "on another record")
        if contact.bounced:
            return Reason.BOUNCED, None, ""
        if blocked is Reason.BOUNCED:
            return Reason.BOUNCED, None, self._block_details.get(address, "on another record")
        if blocked is Reason.SUPPRESSED:
            return Reason.SUPPRESSED, None, self._block_details.get(address, "")
        history = self.history
        if address in history.campaign_addresses:
            return Reason.ALREADY_SENT, None, ""
        rules = self.rules
        # Refused for good, never mailed: not already_sent, and not mailed again unless the campaign says so.
        refused = history.campaign_failed.get(address)
        if refused is not None and not rules.retry_failed:
            return Reason.PREVIOUSLY_FAILED, None, refused
        contact_key, account_key = id15(contact.id), id15(contact.account_id)
        deals = self._deal_accounts.get(account_key, 0) | self._deal_contacts.get(contact_key, 0)
        if deals & OPEN:
            return Reason.ACTIVE_DEAL, None, ""
        if blocked is Reason.ACTIVE_DEAL:
            return Reason.ACTIVE_DEAL, None, "on another record"
        since = rules.dormant_since
        created, last_activity = contact.created, contact.last_activity
        if (
            (created is not None and created >= since)
            or (last_activity is not None and last_activity >= since)
            or deals & RECENT
        ):
            return Reason.RECENT_ACTIVITY, None, ""
        last = history.last_mailed.get(address)
        if last is not None and last >= rules.cooldown_since:
            return Reason.COOLDOWN, None, f"last mailed {last.isoformat()}"
        if address in self._chosen:
            return Reason.DUPLICATE_EMAIL, None, ""
        sender = self._senders.get(contact.owner_id)  # _sender_of, inline: every contact that gets this far
        return sender if sender is not None else self._sender_of(contact.owner_id)

    def _sender_of(self, owner_id: str) -> tuple[Reason, Rep | None, str]:
        """``sender(owner_id)``, once per owner Id as written."""
        sender = self._senders.get(owner_id)
        if sender is None:
            if len(self._senders) >= 65536:
                self._senders.clear()
            sender = self._senders[owner_id] = self.sender(owner_id)
        return sender

    def _deals(self, contact: Contact) -> int:
        """The deal flags (OPEN, RECENT) that reach this contact in the run's scope (as ``_reason`` reads them)."""
        return self._deal_accounts.get(id15(contact.account_id), 0) | self._deal_contacts.get(id15(contact.id), 0)

    def sender(self, owner_id: str) -> tuple[Reason, Rep | None, str]:
        """Who sends to a contact owned by ``owner_id`` (stripped): the send reason, or why nobody can."""
        owner = self.reps.get(id15(owner_id)) if owner_id else None
        if owner is not None and owner.is_active:
            rep, reason, detail = owner, Reason.DORMANT, ""
        else:
            fallback = self.rules.fallback_sender
            missing = Reason.NO_OWNER if owner is None else Reason.INACTIVE_OWNER
            gone = owner_id or "no owner" if owner is None else f"{owner.name} is inactive"
            if fallback is None:
                return missing, owner, gone
            rep, reason, detail = fallback, Reason.FALLBACK_SENDER, f"{missing.value}: {gone}"
        email = rep.email.strip()
        if not email.isascii():
            problem = address_problem(email, self.rules.smtputf8)
            if problem:
                return Reason.UNSENDABLE_ADDRESS, rep, f"sender {email}: {problem}"
        if self.rules.sender_domains:
            domain = rep.email.rsplit("@", 1)[-1].strip().lower()
            if domain not in self.rules.sender_domains:
                return Reason.SENDER_DOMAIN, rep, rep.email
        return reason, rep, detail
