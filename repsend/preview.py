"""`repsend preview`: one contact's mail exactly as a run would compose it, or why there is none."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from repsend.audience import History
from repsend.compose import to_message
from repsend.errors import UsageError
from repsend.models import id15, normalize_email
from repsend.report import describe
from repsend.selection import RunOptions, select
from repsend.settings import Settings
from repsend.sfa.base import Source
from repsend.unsubscribe import link_for


def render_preview(settings: Settings, source: Source, options: RunOptions, wanted: str, raw: bool = False,
                   history: History | None = None) -> str:
    """Runs the whole selection (a duplicate is only a duplicate of an earlier record) and shows one."""
    by_address = "@" in wanted
    key = normalize_email(wanted) if by_address else id15(wanted)
    found = []
    for item in select(settings, source, options, history):
        contact = item.contact
        if (normalize_email(contact.email) if by_address else id15(contact.id)) == key:
            found.append(item)
    if not found:
        raise UsageError(f"no contact {wanted!r} in the SFA ({'address' if by_address else 'Contact Id'})")
    parts = []
    for item in found:
        d = item
        variant = f"; variant {d.mail.variant}" if d.mail is not None and d.mail.variant else ""
        head = f"# {d.contact.id} ({d.contact.origin}): {describe(d)}{variant}\n"
        if item.mail is None:
            parts.append(head)
            continue
        msg = to_message(
            item.mail,
            message_id=make_msgid(domain=settings.company.domain),
            date=format_datetime(datetime.now(ZoneInfo(settings.rate.timezone))),  # as a run dates it
            unsubscribe_url=link_for(settings, normalize_email(item.mail.to.addr_spec), options.campaign),
            unsubscribe_mailto=settings.company.opt_out,
        )
        if raw:
            # The message's own policy: one made for SMTPUTF8 keeps its UTF-8 addresses (RFC 6532).
            parts.append(head + msg.as_bytes(policy=msg.policy.clone(linesep="\n")).decode("utf-8", "replace"))
        else:
            headers = "".join(f"{name}: {value}\n" for name, value in msg.items())
            parts.append(head + headers + "\n" + msg.get_content())
    return "\n".join(parts)
