"""What the send log learns from a message that came back (``repsend inbox``): which addresses to
suppress, as what, and why. ``repsend.inbox`` sorts a message; this decides what its sorting means.

- a bounce (5.x.x) suppresses each bounced address as ``bounce``; an address read from a plain-text
  report only when the send log shows repsend mailed it (a report's prose can name a help desk);
- a complaint (ARF) suppresses the complainant as ``complaint``; a redacted one through the returned
  Message-ID;
- an opt-out (to the opt-out address, or a reply asking to stop) suppresses its sender as ``opt_out``;
- a delay, a success report, an automatic reply or anything else is recorded and changes nothing.

Each message is handled once: its key (Message-ID or digest) is remembered in the send log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from repsend.errors import UsageError
from repsend.inbox import ImapMailbox, Incoming, Returned, classify, read_path
from repsend.sendlog import BOUNCE, COMPLAINT, OPT_OUT, SendLog

if TYPE_CHECKING:
    from repsend.settings import Settings

_SUPPRESSES = {"bounce": BOUNCE, "complaint": COMPLAINT, "opt_out": OPT_OUT}


@dataclass(frozen=True)
class Suppress:
    address: str
    kind: str  # a sendlog suppression kind
    reason: str
    campaign: str | None


@dataclass
class Tally:
    """What one reading found: messages by kind, and what changed."""

    kinds: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)  # by suppression kind, new ones only
    already: int = 0  # messages handled by an earlier reading
    malformed: int = 0
    unmatched: int = 0  # bounces and complaints that name nobody repsend mailed


def suppressions_of(returned: Returned, log: SendLog | None) -> list[Suppress]:
    """The suppressions a sorted message means, matched against the send log (read only; None: no log yet,
    as a dry run may find it)."""
    kind = _SUPPRESSES.get(returned.kind)
    if kind is None:
        return []
    if log is None:
        return [Suppress(address, kind, returned.reason[:300], None) for address in returned.addresses
                if not (returned.kind == "bounce" and _from_text(returned, address))]
    matched = log.attempt_of(returned.original_message_id) if returned.original_message_id else None
    campaign = matched[0] if matched else None
    if returned.kind == "bounce":
        found = []
        for recipient in returned.recipients:
            if recipient.kind != "bounce":
                continue
            mailed = log.mailed(recipient.address)
            if recipient.from_text and mailed is None:
                continue
            words = " ".join(part for part in (recipient.status, recipient.diagnostic) if part)
            found.append(Suppress(recipient.address, BOUNCE, words[:300], campaign or mailed))
        if not found and matched:  # a report that names nobody but returns our Message-ID
            found.append(Suppress(matched[1], BOUNCE, returned.reason[:300], campaign))
        return found
    addresses = list(returned.addresses) or ([matched[1]] if matched else [])
    reason = returned.reason if returned.kind == "opt_out" else (returned.feedback_type or "complaint")
    return [Suppress(address, kind, reason[:300], campaign or log.mailed(address)) for address in addresses]


def _from_text(returned: Returned, address: str) -> bool:
    return any(r.address == address and r.from_text for r in returned.recipients)


def apply(returned: Returned, where: str, log: SendLog, now: datetime, tally: Tally) -> list[Suppress]:
    """Record one message once: its suppressions, then its key. Returns the new suppressions."""
    tally.kinds[returned.kind] += 1
    wanted = suppressions_of(returned, log)
    if returned.kind in ("bounce", "complaint") and not wanted:
        tally.unmatched += 1
    added = []
    for item in wanted:
        if log.suppress(item.address, item.kind, f"inbox: {where}", now, reason=item.reason, campaign=item.campaign):
            tally.suppressed[item.kind] += 1
            added.append(item)
    # The key last: a crash before it reads the message again, and suppressing twice changes nothing.
    log.remember_inbox(returned.key, returned.kind, where, now,
                       address=returned.addresses[0] if returned.addresses else None, detail=returned.reason)
    return added


def messages_of(settings: Settings, where: str, *, mark_seen: bool = False) -> Iterator[Incoming]:
    """The messages of a path (mbox, Maildir, .eml folder or file), or of the [inbox] IMAP mailbox: read
    only unless ``mark_seen``."""
    if where != "imap":
        return read_path(Path(where))
    box = settings.inbox
    if not box.host or not box.user:
        raise UsageError(f"{settings.config_path}: [inbox] host and user are needed to read imap")
    password = settings.env.get("REPSEND_IMAP_PASSWORD", "")
    if not password:
        raise UsageError("REPSEND_IMAP_PASSWORD is not set: set it in the environment or .env")
    return ImapMailbox(box.host, box.user, password, port=box.port or None, folder=box.folder, security=box.security,
                       ca_file=settings.resolve(box.ca_file) if box.ca_file else None, mark_seen=mark_seen).messages()


@dataclass(frozen=True)
class Sorted:
    """One message read: where, what it is, and the suppressions it made (or, in a dry run, would make)."""

    where: str
    returned: Returned
    changes: list[Suppress]


def sort_messages(items: Iterable[Incoming], settings: Settings, log: SendLog | None, now: datetime, tally: Tally,
                  *, dry_run: bool, malformed: Callable[[str], None]) -> Iterator[Sorted]:
    """Each message not read before, sorted and (unless ``dry_run``) recorded; ``malformed`` hears of the
    ones that cannot be read, by place."""
    company = settings.company
    for item in items:
        if item.problem or item.message is None:
            tally.malformed += 1
            malformed(f"{item.where}: {item.problem or 'not a message'}; skipped")
            continue
        returned = classify(item.message, opt_out_addresses=[company.opt_out], raw=item.raw,
                            own_domains=[company.domain, *settings.mail.sender_domains])
        if log is not None and log.inbox_seen([returned.key]):
            tally.already += 1
            continue
        if dry_run or log is None:
            tally.kinds[returned.kind] += 1
            changes = suppressions_of(returned, log)
        else:
            changes = apply(returned, item.where, log, now, tally)
        yield Sorted(item.where, returned, changes)
