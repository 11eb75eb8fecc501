"""Plain typed records that flow through one run: reps, contacts, deals, decisions."""

from __future__ import annotations

import encodings.idna
from dataclasses import dataclass, field
from datetime import date
from email.headerregistry import Address
from enum import StrEnum


def id15(sfid: str | None) -> str:
    """The key under which a Salesforce ID is compared.

    The API returns 18-character IDs, exports may hold 15; the first 15 characters are the ID itself
    (case-sensitive) and the last 3 only a case checksum, so the two forms match on the first 15.
    """
    return (sfid or "").strip()[:15]


def normalize_email(address: str | None) -> str:
    """How two addresses are compared: trimmed and case-insensitive (one mail per person)."""
    return (address or "").strip().lower()


def wire_domain(domain: str) -> str:
    """A domain as it goes into a header and the SMTP envelope: an internationalized one as IDNA A-labels
    (``例え.example.com`` -> ``xn--r8jz45g.example.com``), never as an RFC 2047 encoded word, which RFC 2047
    forbids inside an address. Raises ValueError for a domain that has no such form, or none that is sure.

    Python's ``idna`` codec (IDNA 2003, RFC 3490) is the one the standard library has. Where it would
    rewrite a label (full-width ``ｅｘａｍｐｌｅ``, half-width kana, ``ß`` -> ``ss``, ``ς``, joiners) the
    address is not mailed: IDNA 2008 rewrites some of them otherwise, and a quietly rewritten address is
    another mailbox, or the same person's other record under another spelling (mailed twice). The same
    for an ideographic full stop (``。``), which the codec would read as a dot only between whole labels."""
    if domain.isascii():
        return domain
    labels = []
    for label in domain.split("."):
        if label.isascii():
            labels.append(label)
            continue
        if "\u3002" in label or encodings.idna.nameprep(label) != label.lower():
            raise ValueError(f"{domain}: the domain has characters IDNA would rewrite (full-width or half-width"
                             " letters, 。, ß, ...): write it as its owner does")
        try:
            labels.append(encodings.idna.ToASCII(label).decode("ascii"))
        except UnicodeError:
            raise ValueError(f"{domain}: the domain has no IDNA form") from None
    return ".".join(labels)


def wire_address(addr_spec: str) -> str:
    """An address with its domain as ``wire_domain`` gives it; the local part as it is."""
    local, at, domain = addr_spec.rpartition("@")
    return f"{local}@{wire_domain(domain)}" if at and not domain.isascii() else addr_spec


@dataclass(slots=True, frozen=True)
class Rep:
    """An SFA user who may send: the From and Reply-To of their contacts' mail."""

    id: str
    name: str
    email: str
    is_active: bool
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    phone: str = ""
    signature: str = ""


@dataclass(slots=True)
class Contact:
    id: str
    email: str
    owner_id: str
    first_name: str = ""
    last_name: str = ""
    account_id: str = ""
    account_name: str = ""
    title: str = ""
    opted_out: bool = False
    bounced: bool = False
    last_activity: date | None = None
    created: date | None = None
    language_value: str = ""
    # Extra Contact fields named in the config, for templates: API name -> value.
    extra: dict[str, str] = field(default_factory=dict)
    # Where the record came from, for messages: "Contact.csv:17" or "Salesforce".
    origin: str = ""


class Action(StrEnum):
    SEND = "send"
    SKIP = "skip"


class Reason(StrEnum):
    """Why a contact was or was not chosen. Written once, here:

    - the order of the members is the order of precedence: the first that applies wins;
    - each member says whether it is a send or a skip (``Reason.X.action``);
    - the values are a contract: scripts count them in ``--json`` output and the send log keeps them.

    A new member needs its action here and its row in the README's reason table
    (``tests/test_reasons.py`` holds the two together).
    """

    action: Action

    def __new__(cls, value: str, action: str) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.action = Action(action)
        return member

    NO_EMAIL = "no_email", "skip"
    INVALID_EMAIL = "invalid_email", "skip"
    UNSENDABLE_ADDRESS = "unsendable_address", "skip"
    OPTED_OUT = "opted_out", "skip"
    BOUNCED = "bounced", "skip"
    SUPPRESSED = "suppressed", "skip"
    ALREADY_SENT = "already_sent", "skip"
    PREVIOUSLY_FAILED = "previously_failed", "skip"
    ACTIVE_DEAL = "active_deal", "skip"
    RECENT_ACTIVITY = "recent_activity", "skip"
    COOLDOWN = "cooldown", "skip"
    DUPLICATE_EMAIL = "duplicate_email", "skip"
    NO_OWNER = "no_owner", "skip"
    INACTIVE_OWNER = "inactive_owner", "skip"
    SENDER_DOMAIN = "sender_domain", "skip"
    MISSING_FIELD = "missing_field", "skip"
    INVALID_HEADER = "invalid_header", "skip"
    HOLDOUT = "holdout", "skip"
    REP_CAP = "rep_cap", "skip"
    # The reason of a send: the contact is dormant, or dormant and sent from the fallback sender.
    DORMANT = "dormant", "send"
    FALLBACK_SENDER = "fallback_sender", "send"

    @property
    def is_send(self) -> bool:
        return self.action is Action.SEND

    @property
    def rank(self) -> int:
        """The place in the order of precedence: a lower rank wins."""
        return _RANKS[self]


_RANKS = {reason: rank for rank, reason in enumerate(Reason)}


@dataclass(frozen=True, slots=True)
class Company:
    """The sender's identity as one language's mails print it, at the foot of every mail."""

    name: str
    postal_address: str
    opt_out: str
    domain: str
    unsubscribe_url: str = ""


@dataclass(frozen=True, slots=True)
class Mail:
    """A composed mail, before it gets its Message-ID and Date at send time."""

    to: Address
    from_: Address
    subject: str
    body: str
    language: str
    template: str
    # The contact's A/B variant of the template (``assignment.variant_of``); "" for a template without variants.
    variant: str = ""


@dataclass(slots=True)
class Decision:
    """One contact's decision: a send (with its mail) or a skip, and the one reason for it."""

    contact: Contact
    reason: Reason
    rep: Rep | None = None  # the sender of a send; for a skip, the owner where known
    # A word more for a person: the missing field's name, the owner that is inactive, ...
    detail: str = ""
    mail: Mail | None = None  # every send has one; a skip never
    language: str = ""  # the template language of the contact

    @property
    def action(self) -> Action:
        return self.reason.action
