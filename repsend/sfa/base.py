"""What every SFA source provides, and the deal index the audience rules read."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, NamedTuple, Protocol

from repsend.models import Contact, Reason, Rep, id15, normalize_email

Scope = Literal["account", "contact_role"]


class Deal(NamedTuple):
    """One Opportunity, reduced to what decides dormancy (a tuple: there are hundreds of thousands)."""

    id: str
    account_id: str
    contact_id: str  # the primary contact (Opportunity.ContactId), often empty
    is_closed: bool
    changed: date | None  # the later of LastModifiedDate and, for a closed deal, CloseDate


@dataclass(slots=True)
class DealIndex:
    """Who is in an open deal, and who had a deal close or change recently, keyed by 15-char ID.

    Its size grows with open and recently changed deals, never with contacts.
    """

    open_accounts: set[str] = field(default_factory=set)
    open_contacts: set[str] = field(default_factory=set)
    recent_accounts: set[str] = field(default_factory=set)
    recent_contacts: set[str] = field(default_factory=set)

    @classmethod
    def build(
        cls,
        deals: Iterable[Deal],
        roles: Iterable[tuple[str, str]] | Callable[[Set[str]], Iterable[tuple[str, str]]],
        recent_since: date,
    ) -> DealIndex:
        """``roles`` are (OpportunityId, ContactId) pairs from OpportunityContactRole; or a function of the
        Ids (15 characters) of the deals that count, open or changed recently, that gives at least their
        pairs: a reader may leave the others out before they become Python objects."""
        index = cls()
        open_opps: set[str] = set()
        recent_opps: set[str] = set()
        for deal in deals:
            account, contact = id15(deal.account_id), id15(deal.contact_id)
            if not deal.is_closed:
                open_opps.add(id15(deal.id))
                if account:
                    index.open_accounts.add(account)
                if contact:
                    index.open_contacts.add(contact)
            elif deal.changed is not None and deal.changed >= recent_since:
                recent_opps.add(id15(deal.id))
                if account:
                    index.recent_accounts.add(account)
                if contact:
                    index.recent_contacts.add(contact)
        pairs = roles(open_opps | recent_opps) if callable(roles) else roles
        for opp_id, contact_id in pairs:
            opp, contact = id15(opp_id), id15(contact_id)
            if not contact:
                continue
            if opp in open_opps:
                index.open_contacts.add(contact)
            elif opp in recent_opps:
                index.recent_contacts.add(contact)
        return index

    def reach(self, scope: Scope) -> DealReach:
        """Who the deals reach in ``scope`` (in contact_role scope, no one through an account), as the
        two lookups the audience makes for every contact."""
        return DealReach(_flags(self.open_accounts, self.recent_accounts) if scope != "contact_role" else {},
                         _flags(self.open_contacts, self.recent_contacts))

    # Keys are IDs already cut to 15 characters (``id15``).
    def in_open_deal(self, contact_key: str, account_key: str, scope: Scope) -> bool:
        return bool(self.reach(scope).of(contact_key, account_key) & OPEN)

    def deal_changed_recently(self, contact_key: str, account_key: str, scope: Scope) -> bool:
        return bool(self.reach(scope).of(contact_key, account_key) & RECENT)


# What deals do to the contacts they reach, as bits: an open one puts them in a deal, a recently closed or
# changed one makes them recent.
OPEN, RECENT = 1, 2


def _flags(open_keys: Set[str], recent_keys: Set[str]) -> dict[str, int]:
    flags = dict.fromkeys(recent_keys, RECENT)
    for key in open_keys:
        flags[key] = flags.get(key, 0) | OPEN
    return flags


@dataclass(frozen=True, slots=True)
class DealReach:
    """The deal index in one scope: account and contact keys (15-char IDs) -> OPEN and RECENT bits."""

    accounts: Mapping[str, int]
    contacts: Mapping[str, int]

    def of(self, contact_key: str, account_key: str) -> int:
        """The bits of what reaches the contact through its account or itself (0: no deal that counts)."""
        return self.accounts.get(account_key, 0) | self.contacts.get(contact_key, 0)


class Blocks(dict[str, Reason]):
    """Normalized address -> the reason no record with it may be mailed, and, in ``details``, where a block
    that no contact holds came from ("on a lead"): the decision's detail, so that a person knows where to look."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.details: dict[str, str] = {}


LEAD_DETAIL = "on a lead"


def address_blocks(
    flags: Iterable[tuple[str, str, str, bool, bool]],
    deals: DealIndex,
    scope: Scope,
    lead_opt_outs: Iterable[str] = (),
) -> Blocks:
    """Addresses that no record may be mailed at, from (email, contact id, account id, opted out, bounced),
    and the addresses of leads that opted out.

    An opt-out, a bounce or an open deal on any record of an address holds for every record with that
    address: it is one person, and the strongest reason wins. A person who opted out as a lead has opted
    out: their contacts are not mailed either.
    """
    blocks = Blocks()
    reach = deals.reach(scope)
    accounts, contacts = reach.accounts, reach.contacts
    for email, contact_id, account_id, opted_out, bounced in flags:
        if opted_out:
            reason = Reason.OPTED_OUT
        elif bounced:
            reason = Reason.BOUNCED
        elif (accounts.get(id15(account_id), 0) | contacts.get(id15(contact_id), 0)) & OPEN:
            reason = Reason.ACTIVE_DEAL
        else:
            continue  # most records: nothing to block, and no address to normalize
        address = normalize_email(email)
        if not address:
            continue
        held = blocks.get(address)
        if held is None or reason.rank < held.rank:
            blocks[address] = reason
    for email in lead_opt_outs:
        address = normalize_email(email)
        held = blocks.get(address)
        if address and (held is None or Reason.OPTED_OUT.rank < held.rank):
            blocks[address] = Reason.OPTED_OUT
            blocks.details[address] = LEAD_DETAIL  # a contact's own opt-out, if any, stays the one named
    return blocks


class OpenedDeal(NamedTuple):
    """An Opportunity as outcomes count it: created on this day, at this account, with these contacts
    (its primary contact and its contact roles), all 15-character IDs."""

    id: str
    account_id: str
    contact_ids: tuple[str, ...]
    created: date


class Activity(NamedTuple):
    """Something logged on a contact: a Task (``task_id`` set, ``at`` its creation) or the contact's
    LastActivityDate (``task_id`` empty, ``at`` that day at 00:00 UTC)."""

    contact_id: str  # 15 characters
    at: datetime
    task_id: str = ""


class Source(Protocol):
    """An SFA: reps, deals and contacts. Contacts are streamed; nothing else grows with them."""

    #: Things the run should say once (a missing optional column, a rule with nothing to go on).
    notes: list[str]

    def reps(self) -> dict[str, Rep]:
        """Every user who owns contacts, keyed by 15-character ID."""
        ...

    def deals(self, recent_since: date, scope: Scope) -> DealIndex: ...

    def blocked_addresses(self, deals: DealIndex, scope: Scope) -> dict[str, Reason]:
        """Normalized address -> the reason no record with it may be mailed (see ``address_blocks``)."""
        ...

    def contacts(self) -> Iterator[Contact]: ...

    def opened_deals(self, since: date) -> Iterator[OpenedDeal]:
        """Every Opportunity created on or after ``since`` (outcomes: deals after the mail), in pages."""
        ...

    def account_ids(self, contact_ids: Iterable[str]) -> dict[str, str]:
        """15-character Contact Id -> its 15-character Account Id, for these contacts."""
        ...

    def activities(self, contact_ids: Iterable[str], since: date) -> Iterator[Activity]:
        """What the SFA logged on these contacts since ``since``: each Task (with its Id, so that repsend's own
        can be told apart) and each contact's LastActivityDate."""
        ...

    def close(self) -> None: ...
