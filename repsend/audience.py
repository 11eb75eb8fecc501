"""Who is dormant and gets a note, who is skipped and why. Pure: data in, decisions out, no I/O.

Every contact gets exactly one decision with one reason, the first of ``Reason`` (in its order) that
applies, so that a dry run explains itself and a manager can count why people were left out. The
``Audience`` keeps the little state one run needs (addresses already chosen, each rep's count today).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import date

from repsend.models import Action, Contact, Decision, Reason, Rep, id15, normalize_email
from repsend.sfa.base import DealIndex, Scope

# Deliberately plain: one @, no spaces, a dotted domain. RFC 5322 admits far more, but an address a
# rep would not type into a mail client is a data error to fix in the SFA, not a recipient.
_ADDRESS = re.compile(r"^[^@\s\"(),:;<>\[\\\]]+@[^@\s\"(),:;<>\[\\\]]+\.[^@\s\"(),:;<>\[\\\].]{2,}$")


_SENDS = (Reason.DORMANT, Reason.FALLBACK_SENDER)
_ADDRESS_BLOCKS = (Reason.OPTED_OUT, Reason.BOUNCED, Reason.SUPPRESSED)


def is_valid_address(address: str) -> bool:
    return bool(_ADDRESS.match(address)) and ".." not in address and not address.startswith(".")


@dataclass(frozen=True, slots=True)
class Rules:
    """The audience settings of one run, with ``as_of`` already applied."""

    scope: Scope = "account"
    dormant_since: date = date.min  # touched on or after this day: not dormant
    cooldown_since: date = date.min  # mailed by repsend on or after this day: still cooling down
    fallback_sender: Rep | None = None
    sender_domains: frozenset[str] = frozenset()
    per_rep_per_day: int = 0  # 0: no cap


@dataclass(slots=True)
class History:
    """What the send log knows, read before the run (empty in a first run or without a log)."""

    campaign_addresses: Set[str] = frozenset()  # normalized addresses this campaign already mailed
    last_mailed: Mapping[str, date] = field(default_factory=dict)  # address -> last repsend mail, any campaign
    rep_sent_today: Mapping[str, int] = field(default_factory=dict)  # id15 of rep -> mails today


class Audience:
    def __init__(
        self,
        reps: Mapping[str, Rep],
        deals: DealIndex,
        blocks: dict[str, Reason],
        rules: Rules,
        history: History | None = None,
    ) -> None:
        self.reps = reps
        self.deals = deals
        # Address-level reasons (opt-out, bounce, open deal, local suppression list) that hold for
        # every record with the address. Grows while contacts stream past (see ``decide``).
        self.blocks = blocks
        self.rules = rules
        self.history = history or History()
        self._chosen: set[str] = set()
        self._rep_count: dict[str, int] = dict(self.history.rep_sent_today)

    def decide(self, contact: Contact) -> Decision:
        """The decision for one contact; a ``send`` is provisional until ``accept`` (see below)."""
        address = normalize_email(contact.email)
        reason, rep, detail = self._reason(contact, address)
        action = Action.SEND if reason in _SENDS else Action.SKIP
        if reason is Reason.ACTIVE_DEAL:
            # A person in an open deal through one record is in it through all their records.
            self.blocks.setdefault(address, Reason.ACTIVE_DEAL)
        return Decision(contact, action, reason, rep, detail)

    def accept(self, decision: Decision) -> Decision:
        """Take a send decision whose mail composed cleanly: the address is chosen and counts for the rep.

        Kept apart from ``decide`` so that a contact whose mail cannot be composed neither takes the
        address from a later record nor a place in the rep's daily cap.
        """
        if decision.action is not Action.SEND or decision.rep is None:
            return decision
        if not self.take(decision.rep, normalize_email(decision.contact.email)):
            return Decision(decision.contact, Action.SKIP, Reason.REP_CAP, decision.rep, self.cap_detail)
        return decision

    def take(self, rep: Rep, address: str) -> bool:
        """``accept`` of a send from ``rep`` to the normalized ``address``: False, and nothing taken, when the
        rep is at the daily cap."""
        rep_key = id15(rep.id)
        cap = self.rules.per_rep_per_day
        count = self._rep_count.get(rep_key, 0)
        if cap and count >= cap:
            return False
        self._rep_count[rep_key] = count + 1
        self._chosen.add(address)
        return True

    @property
    def cap_detail(self) -> str:
        """The detail of a rep_cap skip."""
        return f"{self.rules.per_rep_per_day} a day"

    def capped(self, rep: Rep) -> bool:
        """Whether ``accept`` would turn a send from ``rep`` into rep_cap: a count only goes up."""
        cap = self.rules.per_rep_per_day
        return bool(cap) and self._rep_count.get(id15(rep.id), 0) >= cap

    def _reason(self, contact: Contact, address: str) -> tuple[Reason, Rep | None, str]:
        if not address:
            return Reason.NO_EMAIL, None, ""
        if not is_valid_address(address):
            return Reason.INVALID_EMAIL, None, contact.email.strip()
        if contact.opted_out:
            return Reason.OPTED_OUT, None, ""
        if contact.bounced:
            return Reason.BOUNCED, None, ""
        blocked = self.blocks.get(address)
        if blocked is not None and blocked in _ADDRESS_BLOCKS:
            return blocked, None, "on another record" if blocked is not Reason.SUPPRESSED else ""
        history = self.history
        if address in history.campaign_addresses:
            return Reason.ALREADY_SENT, None, ""
        rules = self.rules
        contact_key, account_key = id15(contact.id), id15(contact.account_id)
        if self.deals.in_open_deal(contact_key, account_key, rules.scope):
            return Reason.ACTIVE_DEAL, None, ""
        if blocked is Reason.ACTIVE_DEAL:
            return Reason.ACTIVE_DEAL, None, "on another record"
        since = rules.dormant_since
        created, last_activity = contact.created, contact.last_activity
        if (
            (created is not None and created >= since)
            or (last_activity is not None and last_activity >= since)
            or self.deals.deal_changed_recently(contact_key, account_key, rules.scope)
        ):
            return Reason.RECENT_ACTIVITY, None, ""
        last = history.last_mailed.get(address)
        if last is not None and last >= rules.cooldown_since:
            return Reason.COOLDOWN, None, f"last mailed {last.isoformat()}"
        if address in self._chosen:
            return Reason.DUPLICATE_EMAIL, None, ""
        return self.sender(contact.owner_id)

    def chosen(self, address: str) -> bool:
        """Whether a send to the normalized ``address`` was already accepted in this run."""
        return address in self._chosen

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
        if self.rules.sender_domains:
            domain = rep.email.rsplit("@", 1)[-1].strip().lower()
            if domain not in self.rules.sender_domains:
                return Reason.SENDER_DOMAIN, rep, rep.email
        return reason, rep, detail
