"""Plain typed records that flow through one run: reps, contacts, deals, decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
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
    """Why a contact was or was not chosen, in order of precedence (the first that applies wins).

    The values are a contract: scripts count them in ``--json`` output and the send log keeps them.
    """

    NO_EMAIL = "no_email"
    INVALID_EMAIL = "invalid_email"
    OPTED_OUT = "opted_out"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    ALREADY_SENT = "already_sent"
    ACTIVE_DEAL = "active_deal"
    RECENT_ACTIVITY = "recent_activity"
    COOLDOWN = "cooldown"
    DUPLICATE_EMAIL = "duplicate_email"
    NO_OWNER = "no_owner"
    INACTIVE_OWNER = "inactive_owner"
    SENDER_DOMAIN = "sender_domain"
    MISSING_FIELD = "missing_field"
    INVALID_HEADER = "invalid_header"
    REP_CAP = "rep_cap"
    # The reason of a send: the contact is dormant, or dormant and sent from the fallback sender.
    DORMANT = "dormant"
    FALLBACK_SENDER = "fallback_sender"


@dataclass(slots=True)
class Decision:
    contact: Contact
    action: Action
    reason: Reason
    rep: Rep | None = None
    # A word more for a person: the missing field's name, the owner that is inactive, ...
    detail: str = ""
