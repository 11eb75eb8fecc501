"""What ``repsend outcomes`` counts, read from where it is: the exposures and the opt-outs and bounces
from the send log, replies from a mailbox, deals from the SFA. ``outcomes`` (pure) does the counting.

- a reply is a message whose ``In-Reply-To`` or ``References`` holds a Message-ID repsend sent, or,
  failing that, one from a mailed contact's address; automatic replies and delivery reports are not
  replies; each message once (by its key), the mailbox read only; or, from the SFA, a Task on the
  contact that repsend did not write, or a LastActivityDate on a later day than the mail;
- a deal is an Opportunity created on the contact's account (account scope) or with the contact as its
  primary contact or a contact role (contact_role scope), read in pages from the SFA;
- an opt-out (or a complaint) and a bounce are the send log's suppressions of the address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING

from repsend.inbox import Incoming, classify
from repsend.models import id15, normalize_email
from repsend.outcomes import Exposure, Outcome
from repsend.sendlog import BOUNCE, HELD_OUT, TASK, Attempt, SendLog, Suppression
from repsend.sfa.base import Activity, OpenedDeal, Scope

if TYPE_CHECKING:
    from repsend.settings import Settings

_NOT_REPLIES = frozenset({"bounce", "delayed", "delivered", "complaint", "auto_reply"})


def exposures_of(attempts: Iterable[Attempt]) -> list[Exposure]:
    return [Exposure(campaign=a.campaign, contact_id=id15(a.contact_id), rep=a.rep_email, template=a.template,
                     language=a.language, held_out=a.state == HELD_OUT, at=a.created_at,
                     variant=getattr(a, "variant", "") or "")
            for a in attempts]


def _contacts_by_address(attempts: Iterable[Attempt]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for a in attempts:
        found.setdefault(a.address, set()).add(id15(a.contact_id))
    return found


def suppression_outcomes(rows: Iterable[Suppression], attempts: list[Attempt]) -> Iterator[Outcome]:
    """Opt-outs and complaints as ``opt_out``, hard bounces as ``bounce``, for every contact at the address."""
    by_address = _contacts_by_address(attempts)
    for row in rows:
        kind = "bounce" if row.kind == BOUNCE else "opt_out"
        for contact_id in by_address.get(row.address, ()):
            yield Outcome(kind, contact_id, row.created_at)


def reply_outcomes(items: Iterable[Incoming], attempts: list[Attempt], opt_out_address: str) -> Iterator[Outcome]:
    """The replies among a mailbox's messages; malformed ones are left out (``repsend inbox`` names them)."""
    by_message = {a.message_id: id15(a.contact_id) for a in attempts if a.message_id}
    by_address = _contacts_by_address(a for a in attempts if a.state != HELD_OUT)
    seen: set[str] = set()
    for item in items:
        if item.problem or item.message is None:
            continue
        returned = classify(item.message, opt_out_addresses=[opt_out_address], raw=item.raw)
        if returned.key in seen or returned.kind in _NOT_REPLIES:
            continue
        seen.add(returned.key)
        when = returned.date or None
        if when is None:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        refs = " ".join(str(item.message.get(h) or "") for h in ("In-Reply-To", "References")).split()
        contacts = {by_message[ref] for ref in refs if ref in by_message}
        if not contacts and returned.from_address:
            contacts = by_address.get(normalize_email(returned.from_address), set())
        for contact_id in contacts:
            yield Outcome("reply", contact_id, when)


def activity_outcomes(activities: Iterable[Activity], attempts: list[Attempt],
                      own_tasks: Iterable[str]) -> Iterator[Outcome]:
    """Replies as the SFA logged them: a Task on the contact that repsend did not write, or a
    LastActivityDate on a later day than the mail (the mail's own Task is on its day)."""
    own = {id15(t) for t in own_tasks if t}
    mailed_day = {id15(a.contact_id): a.created_at.date() for a in attempts if a.state != HELD_OUT}
    held_day = {id15(a.contact_id): a.created_at.date() for a in attempts if a.state == HELD_OUT}
    for activity in activities:
        if activity.task_id:
            if activity.task_id not in own:
                yield Outcome("reply", activity.contact_id, activity.at)
            continue
        day = mailed_day.get(activity.contact_id) or held_day.get(activity.contact_id)
        if day is not None and activity.at.date() > day:
            yield Outcome("reply", activity.contact_id, activity.at)


def deal_outcomes(deals: Iterable[OpenedDeal], accounts: dict[str, str], scope: Scope,
                  exposed: Iterable[str]) -> Iterator[Outcome]:
    """Each deal as an outcome of the exposed contacts it reaches: its account's (account scope), or its
    primary contact and contact roles (contact_role scope). A deal's day counts from its start (UTC)."""
    by_account: dict[str, set[str]] = {}
    for contact_id, account_id in accounts.items():
        by_account.setdefault(account_id, set()).add(contact_id)
    exposed_ids = set(exposed)
    for deal in deals:
        reached = set(deal.contact_ids) & exposed_ids
        if scope == "account":
            reached |= by_account.get(deal.account_id, set())
        moment = datetime.combine(deal.created, time(23, 59, 59), tzinfo=UTC)  # after a mail sent that day
        for contact_id in reached:
            yield Outcome("deal", contact_id, moment)


def earliest(attempts: Iterable[Attempt]) -> date | None:
    days = [a.created_at.date() for a in attempts]
    return min(days) if days else None


def gather(settings: Settings, log: SendLog, campaign: str | None, replies: Sequence[str],
           deals: bool) -> tuple[list[Attempt], list[Outcome]]:
    """The exposures of a campaign (or every campaign) and what happened to them: the send log's
    suppressions, replies from each of ``replies`` (a mailbox path, ``imap``, or ``sfa``) and, with
    ``deals``, the deals the SFA opened; the SFA read only if it is asked something."""
    from repsend.returns import messages_of

    attempts = log.exposures(campaign)
    events = list(suppression_outcomes(log.suppressions(), attempts))
    own_tasks = [row.sfa_id or "" for row in log.sfa_writes(TASK)]  # repsend's own Tasks are no replies
    for where in replies:
        if where != "sfa":
            events += reply_outcomes(messages_of(settings, where), attempts, settings.company.opt_out)
    since = earliest(attempts)
    from_sfa = "sfa" in replies
    if since is None or not (deals or from_sfa):
        return attempts, events
    from repsend.sfa import open_source

    source = open_source(settings)
    try:
        contact_ids = [a.contact_id for a in attempts]
        if from_sfa:
            events += activity_outcomes(source.activities(contact_ids, since), attempts, own_tasks)
        if deals:
            scope = settings.audience.active_deal_scope
            accounts = source.account_ids(contact_ids) if scope == "account" else {}
            events += deal_outcomes(source.opened_deals(since), accounts, scope,
                                    [e.contact_id for e in exposures_of(attempts)])
    finally:
        source.close()
    return attempts, events
