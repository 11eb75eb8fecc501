"""``Audience.decide`` on in-memory records: every reason, which of two wins, and the state one run keeps.

The same rules end to end, over a CSV export and a config, are in ``test_selection.py``. Here every
situation is built by keyword from ``Contact``, ``Rep``, ``DealIndex``, ``Rules`` and ``History``, so that a
failure names the rule and not the CSV reader or the config loader in front of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from repsend.audience import Audience, History, Rules
from repsend.compose import Composer, Templates
from repsend.models import Action, Company, Contact, Decision, Reason, Rep, id15
from repsend.sfa.base import Deal, DealIndex, Scope, address_blocks
from tests.helpers import REPO

DORMANT_SINCE = date(2026, 5, 27)  # touched on or after: not dormant
COOLDOWN_SINCE = date(2026, 8, 25)  # mailed on or after: still cooling down
OLD = date(2023, 4, 1)

SATO = Rep(id="0055g00000AbCdEAAV", name="佐藤 健", email="k.sato@acme.example", is_active=True,
           first_name="健", last_name="佐藤", signature="佐藤 健\n株式会社アクメ 営業部 課長")
CARTER = Rep(id="0055g00000AbCdFAAV", name="Emily Carter", email="e.carter@acme.example", is_active=True,
             first_name="Emily", last_name="Carter")
SUZUKI = Rep(id="0055g00000AbCdGAAV", name="鈴木 一郎", email="i.suzuki@acme.example", is_active=False,
             first_name="一郎", last_name="鈴木")
DESK = Rep(id="0055g00000AbCdHAAV", name="Acme Sales Desk", email="desk@acme-mail.example", is_active=True)
YAMAMOTO = Rep(id="0055g00000AbCdJAAV", name="山本 優", email="山本@acme.example", is_active=True,
               first_name="優", last_name="山本")  # a UTF-8 local part: mailed only with SMTPUTF8
REPS = {id15(rep.id): rep for rep in (SATO, CARTER, SUZUKI, DESK, YAMAMOTO)}  # as a source gives them: by 15-char ID

COMPANIES = {
    "ja": Company(name="株式会社アクメ", postal_address="〒100-0005 東京都千代田区丸の内1-1-1",
                  opt_out="optout@acme.example", domain="acme.example"),
    "en": Company(name="Acme K.K.", postal_address="1-1-1 Marunouchi, Tokyo", opt_out="optout@acme.example",
                  domain="acme.example"),
}
COMPOSER = Composer(Templates(REPO / "templates", "dormant", ["ja", "en"]), COMPANIES, "dormant")

ADDRESS = "h.yamada@example.co.jp"
SAME_PERSON = "  H.Yamada@Example.CO.JP "  # YAMADA's address on another record, as a rep typed it
# The contact every situation is about: dormant, Japanese, owned by 佐藤 (18-character IDs, as the API gives).
YAMADA: Mapping[str, Any] = {
    "id": "0035g00000Q0001AAA", "email": ADDRESS, "owner_id": SATO.id, "first_name": "花子", "last_name": "山田",
    "account_id": "0015g00000A0001AAA", "account_name": "株式会社サンプル", "last_activity": OLD, "created": OLD,
    "language_value": "Japan",
}
RULES: Mapping[str, Any] = {
    "dormant_since": DORMANT_SINCE, "cooldown_since": COOLDOWN_SINCE, "default_language": "ja",
    "languages": {"japan": "ja", "日本": "ja", "united states": "en"},
}


def record(n: int, **fields: Any) -> Contact:
    """Another dormant record of 佐藤's, at its own account, unless fields say otherwise."""
    values = {**YAMADA, "id": f"0035g00000Q{n:04d}AAA", "account_id": f"0015g00000A{n:04d}AAA",
              "email": f"c{n}@example.co.jp", "last_name": f"山田{n}"}
    return Contact(**{**values, **fields})


def open_deal(n: int, *, account_id: str = "", contact_id: str = "") -> Deal:
    return Deal(id=f"0065g00000D{n:04d}AAA", account_id=account_id, contact_id=contact_id, is_closed=False,
                changed=OLD)


def closed_deal(n: int, *, changed: date, account_id: str = "", contact_id: str = "") -> Deal:
    return Deal(id=f"0065g00000D{n:04d}AAA", account_id=account_id, contact_id=contact_id, is_closed=True,
                changed=changed)


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    clash = a.keys() & b.keys()
    assert not clash, f"both situations set {sorted(clash)}: not one contact"
    return {**a, **b}


@dataclass(frozen=True)
class Setup:
    """One situation of YAMADA's and of the run around her; ``a + b`` is a contact to whom both apply."""

    contact: Mapping[str, Any] = field(default_factory=dict)  # her fields that differ from YAMADA's
    rules: Mapping[str, Any] = field(default_factory=dict)  # Rules fields that differ from RULES
    history: Mapping[str, Any] = field(default_factory=dict)  # History fields
    deals: tuple[Deal, ...] = ()
    roles: tuple[tuple[str, str], ...] = ()
    before: tuple[Contact, ...] = ()  # records decided before hers, in this order
    others: tuple[Contact, ...] = ()  # records later in the SFA: only their flags and deals count, as blocks
    suppressed: frozenset[str] = frozenset()

    def __add__(self, other: Setup) -> Setup:
        return Setup(
            contact=_union(self.contact, other.contact), rules=_union(self.rules, other.rules),
            history=_union(self.history, other.history), deals=self.deals + other.deals,
            roles=self.roles + other.roles, before=self.before + other.before, others=self.others + other.others,
            suppressed=self.suppressed | other.suppressed,
        )


def blocks_of(records: Iterable[Contact], deals: DealIndex, scope: Scope,
              suppressed: Iterable[str]) -> dict[str, Reason]:
    """What a source and the suppression list hand the audience: per address, the strongest reason, as
    ``address_blocks`` keeps it. (``selection.audience_of`` adds the suppression list with ``setdefault``,
    which lets a weaker active_deal from another record stand where suppressed comes first.)"""
    flags = [(c.email, c.id, c.account_id, c.opted_out, c.bounced) for c in records]
    blocks = address_blocks(flags=flags, deals=deals, scope=scope)
    for address in suppressed:
        held = blocks.get(address)
        if held is None or Reason.SUPPRESSED.rank < held.rank:
            blocks[address] = Reason.SUPPRESSED
    return blocks


def contact_of(setup: Setup) -> Contact:
    return Contact(**{**YAMADA, **setup.contact})


def audience_of(setup: Setup, composer: Composer | None = COMPOSER) -> Audience:
    rules = Rules(**{**RULES, **setup.rules})
    deals = DealIndex.build(deals=setup.deals, roles=setup.roles, recent_since=rules.dormant_since)
    records = [*setup.before, contact_of(setup), *setup.others]
    return Audience(reps=REPS, deals=deals, blocks=blocks_of(records, deals, rules.scope, setup.suppressed),
                    rules=rules, history=History(**setup.history), composer=composer)


def decide(setup: Setup, composer: Composer | None = COMPOSER) -> Decision:
    """Her decision, after the records of ``setup.before`` had theirs."""
    audience = audience_of(setup, composer)
    for earlier in setup.before:
        audience.decide(earlier)
    return audience.decide(contact_of(setup))


def decide_all(contacts: Iterable[Contact], setup: Setup = Setup(), composer: Composer | None = COMPOSER) -> list[str]:
    """The reasons of records decided in this order by one audience (one run)."""
    audience = audience_of(setup, composer)
    return [audience.decide(c).reason.value for c in contacts]


@dataclass(frozen=True)
class Case:
    reason: Reason
    setup: Setup
    detail: str = ""
    sender: Rep | None = None  # the From of a send


NEEDS_SMTPUTF8 = "a UTF-8 local part needs SMTPUTF8 ([smtp] smtputf8 = true)"
# YAMADA's owner is YAMAMOTO, whose own address has a UTF-8 local part.
SENDER_UNSENDABLE = Setup(contact={"owner_id": YAMAMOTO.id})

# YAMADA is in campaign "winter"'s half held out (assignment's stable hash; pinned in test_assignment).
HELD_OUT = Setup(rules={"holdout": 0.5, "campaign": "winter"})

# One situation per reason, each alone on YAMADA; the pairs below put two of them together.
CASES = [
    Case(Reason.NO_EMAIL, Setup(contact={"email": "   "})),
    Case(Reason.INVALID_EMAIL, Setup(contact={"email": " H.Yamada@example "}), detail="H.Yamada@example"),
    Case(Reason.UNSENDABLE_ADDRESS, Setup(contact={"email": "山田@example.jp"}), detail=NEEDS_SMTPUTF8),
    Case(Reason.OPTED_OUT, Setup(contact={"opted_out": True})),
    Case(Reason.BOUNCED, Setup(contact={"bounced": True})),
    Case(Reason.SUPPRESSED, Setup(suppressed=frozenset({ADDRESS}))),
    Case(Reason.ALREADY_SENT, Setup(history={"campaign_addresses": frozenset({ADDRESS})})),
    Case(Reason.PREVIOUSLY_FAILED, Setup(history={"campaign_failed": {ADDRESS: "550 5.1.1 user unknown"}}),
         detail="550 5.1.1 user unknown"),
    Case(Reason.ACTIVE_DEAL, Setup(deals=(open_deal(1, account_id=YAMADA["account_id"][:15]),))),
    Case(Reason.RECENT_ACTIVITY, Setup(contact={"last_activity": DORMANT_SINCE})),
    Case(Reason.COOLDOWN, Setup(history={"last_mailed": {ADDRESS: COOLDOWN_SINCE}}), detail="last mailed 2026-08-25"),
    Case(Reason.DUPLICATE_EMAIL, Setup(before=(record(2, email=SAME_PERSON, owner_id=CARTER.id),))),
    Case(Reason.NO_OWNER, Setup(contact={"owner_id": ""}), detail="no owner"),
    Case(Reason.INACTIVE_OWNER, Setup(contact={"owner_id": SUZUKI.id}), detail="鈴木 一郎 is inactive"),
    Case(Reason.SENDER_DOMAIN, Setup(rules={"sender_domains": frozenset({"acme.co.jp"})}), detail=SATO.email),
    Case(Reason.MISSING_FIELD, Setup(contact={"language_value": "United States", "first_name": ""}),
         detail="contact.first_name"),
    Case(Reason.INVALID_HEADER, Setup(contact={"last_name": "山田\r\nBcc: victim@example.com"}),
         detail="control character in To"),
    Case(Reason.HOLDOUT, HELD_OUT, detail="50% of winter held out"),
    Case(Reason.REP_CAP, Setup(rules={"per_rep_per_day": 2}, history={"rep_sent_today": {SATO.id[:15]: 2}}),
         detail="2 a day"),
    Case(Reason.DORMANT, Setup(), sender=SATO),
    Case(Reason.FALLBACK_SENDER, Setup(contact={"owner_id": SUZUKI.id}, rules={"fallback_sender": CARTER}),
         detail="inactive_owner: 鈴木 一郎 is inactive", sender=CARTER),
]
ALONE = {case.reason: case for case in CASES}
SENDS = {Reason.DORMANT, Reason.FALLBACK_SENDER}  # written out here, not read from Reason: what users expect
COMPOSED = {Reason.MISSING_FIELD, Reason.INVALID_HEADER}  # the reasons only a Composer can give


def test_every_reason_has_exactly_one_case() -> None:
    """A new Reason member fails here until it has its case in CASES."""
    assert sorted(case.reason for case in CASES) == sorted(Reason)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.reason.value) for case in CASES])
def test_each_reason(case: Case) -> None:
    decision = decide(case.setup)
    assert (decision.reason, decision.detail) == (case.reason, case.detail)
    assert decision.action is (Action.SEND if case.reason in SENDS else Action.SKIP)
    if case.sender is None:
        assert decision.mail is None, "a skip never carries a mail"
    else:
        assert decision.mail is not None and decision.rep == case.sender
        assert (decision.mail.from_.display_name, decision.mail.from_.addr_spec) == (case.sender.name,
                                                                                      case.sender.email)
        assert str(decision.mail.to) == f"山田 花子 <{ADDRESS}>"


@pytest.mark.parametrize("case", [pytest.param(case, id=case.reason.value) for case in CASES
                                  if case.reason not in COMPOSED])
def test_without_a_composer_every_other_reason_decides_the_same_and_no_mail_is_made(case: Case) -> None:
    decision = decide(case.setup, composer=None)
    assert (decision.reason, decision.detail, decision.mail) == (case.reason, case.detail, None)


@pytest.mark.parametrize("reason", sorted(COMPOSED))
def test_without_a_composer_a_mail_that_would_fail_is_not_checked(reason: Reason) -> None:
    """``composer=None`` decides as the rules before missing_field leave it: a dry run without templates."""
    decision = decide(ALONE[reason].setup, composer=None)
    assert (decision.reason, decision.rep, decision.mail) == (Reason.DORMANT, SATO, None)


# Another record of YAMADA's (same address, other account) that carries an address-level reason.
OPTED_OUT_ELSEWHERE = Setup(others=(record(9, email=SAME_PERSON, opted_out=True),))
BOUNCED_ELSEWHERE = Setup(others=(record(9, email=SAME_PERSON, bounced=True),))
DEAL_ELSEWHERE = Setup(others=(record(9, email=SAME_PERSON),), deals=(open_deal(9, account_id=record(9).account_id),))


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(OPTED_OUT_ELSEWHERE, Reason.OPTED_OUT, id="opted_out"),
        pytest.param(BOUNCED_ELSEWHERE, Reason.BOUNCED, id="bounced"),
        pytest.param(DEAL_ELSEWHERE, Reason.ACTIVE_DEAL, id="active_deal"),
    ],
)
def test_an_address_level_reason_on_another_record_holds_for_this_one(setup: Setup, reason: Reason) -> None:
    """One person, several records: the flag on the record that comes later still stops this one's mail."""
    decision = decide(setup)
    assert (decision.reason, decision.detail, decision.mail) == (reason, "on another record", None)


@dataclass(frozen=True)
class Pair:
    """Both apply to one contact; ``earlier`` (first in Reason) must win. The setups default to CASES'."""

    earlier: Reason
    later: Reason
    first: Setup | None = None
    second: Setup | None = None
    detail: str | None = None  # default: the earlier reason's detail in CASES
    note: str = ""
    bug: str = ""

    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.bug)] if self.bug else []
        name = f"{self.earlier.value}>{self.later.value}" + (f"({self.note})" if self.note else "")
        return pytest.param(self, id=name, marks=marks)


PAIRS = [
    Pair(Reason.NO_EMAIL, Reason.OPTED_OUT),
    Pair(Reason.INVALID_EMAIL, Reason.OPTED_OUT),
    Pair(Reason.UNSENDABLE_ADDRESS, Reason.OPTED_OUT),
    Pair(Reason.UNSENDABLE_ADDRESS, Reason.OPTED_OUT, first=SENDER_UNSENDABLE,
         detail=f"sender 山本@acme.example: {NEEDS_SMTPUTF8}", note="the sender's address"),
    Pair(Reason.UNSENDABLE_ADDRESS, Reason.ACTIVE_DEAL, first=SENDER_UNSENDABLE,
         detail=f"sender 山本@acme.example: {NEEDS_SMTPUTF8}", note="the sender's address"),
    Pair(Reason.OPTED_OUT, Reason.BOUNCED),
    Pair(Reason.OPTED_OUT, Reason.BOUNCED, first=OPTED_OUT_ELSEWHERE, detail="on another record",
         note="on another record"),
    Pair(Reason.BOUNCED, Reason.SUPPRESSED),
    Pair(Reason.OPTED_OUT, Reason.SUPPRESSED, first=OPTED_OUT_ELSEWHERE, detail="on another record",
         note="on another record"),
    Pair(Reason.BOUNCED, Reason.SUPPRESSED, first=BOUNCED_ELSEWHERE, detail="on another record",
         note="on another record"),
    Pair(Reason.SUPPRESSED, Reason.ALREADY_SENT),
    Pair(Reason.BOUNCED, Reason.ALREADY_SENT, first=BOUNCED_ELSEWHERE, detail="on another record",
         note="on another record"),
    Pair(Reason.SUPPRESSED, Reason.ACTIVE_DEAL, second=DEAL_ELSEWHERE, note="deal on another record"),
    Pair(Reason.SUPPRESSED, Reason.PREVIOUSLY_FAILED),
    Pair(Reason.ALREADY_SENT, Reason.PREVIOUSLY_FAILED, note="refused, then sent by a retry"),
    Pair(Reason.PREVIOUSLY_FAILED, Reason.ACTIVE_DEAL),
    Pair(Reason.PREVIOUSLY_FAILED, Reason.ACTIVE_DEAL, second=DEAL_ELSEWHERE, note="deal on another record"),
    Pair(Reason.ALREADY_SENT, Reason.ACTIVE_DEAL),
    Pair(Reason.ALREADY_SENT, Reason.ACTIVE_DEAL, second=DEAL_ELSEWHERE, note="deal on another record"),
    Pair(Reason.ACTIVE_DEAL, Reason.RECENT_ACTIVITY),
    Pair(Reason.ACTIVE_DEAL, Reason.RECENT_ACTIVITY, first=DEAL_ELSEWHERE, detail="on another record",
         note="on another record"),
    Pair(Reason.RECENT_ACTIVITY, Reason.COOLDOWN),
    # cooldown and duplicate_email never meet: both are about the address, and a cooling-down address is
    # mailed by no record, so none takes it first. The next reason cooldown meets is the owner's.
    Pair(Reason.COOLDOWN, Reason.NO_OWNER),
    Pair(Reason.RECENT_ACTIVITY, Reason.DUPLICATE_EMAIL),
    Pair(Reason.DUPLICATE_EMAIL, Reason.NO_OWNER),
    Pair(Reason.DUPLICATE_EMAIL, Reason.INACTIVE_OWNER),
    Pair(Reason.NO_OWNER, Reason.SENDER_DOMAIN),
    Pair(Reason.INACTIVE_OWNER, Reason.SENDER_DOMAIN),  # the inactive owner is in a domain that is not allowed
    Pair(Reason.SENDER_DOMAIN, Reason.MISSING_FIELD),
    # An English mail: the template stops at the missing first name before the To header is made.
    Pair(Reason.MISSING_FIELD, Reason.INVALID_HEADER),
    Pair(Reason.MISSING_FIELD, Reason.REP_CAP),
    Pair(Reason.INVALID_HEADER, Reason.REP_CAP),
    # A held-out contact's mail must be one that could go out: otherwise the groups would not compare.
    Pair(Reason.MISSING_FIELD, Reason.HOLDOUT),
    Pair(Reason.INVALID_HEADER, Reason.HOLDOUT),
    # Held out whatever the rep's cap: the group does not depend on the day's count.
    Pair(Reason.HOLDOUT, Reason.REP_CAP),
    Pair(Reason.SENDER_DOMAIN, Reason.HOLDOUT),
]


@pytest.mark.parametrize("pair", [pair.param() for pair in PAIRS])
def test_the_earlier_reason_wins(pair: Pair) -> None:
    assert pair.earlier.rank < pair.later.rank, "a pair is written in Reason's order"
    first = pair.first or ALONE[pair.earlier].setup
    second = pair.second or ALONE[pair.later].setup
    assert decide(second).reason is pair.later, "the later reason applies to this contact on its own"
    both = decide(first + second)
    expected = ALONE[pair.earlier].detail if pair.detail is None else pair.detail
    assert (both.reason, both.detail, both.mail) == (pair.earlier, expected, None)


REFUSED = {"campaign_failed": {ADDRESS: "550 5.1.1 user unknown"}}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(Setup(history=REFUSED), Reason.DORMANT, id="dormant"),
        pytest.param(Setup(history=REFUSED) + ALONE[Reason.ACTIVE_DEAL].setup, Reason.ACTIVE_DEAL, id="active_deal"),
        pytest.param(Setup(history=REFUSED) + ALONE[Reason.COOLDOWN].setup, Reason.COOLDOWN, id="cooldown"),
        pytest.param(Setup(history={**REFUSED, "campaign_addresses": frozenset({ADDRESS})}), Reason.ALREADY_SENT,
                     id="already_sent"),
    ],
)
def test_retry_failed_lets_a_refused_address_through_to_the_other_rules(setup: Setup, reason: Reason) -> None:
    """``[campaign] retry_failed = true``: the refusal no longer counts; every other rule still does."""
    decision = decide(setup + Setup(rules={"retry_failed": True}))
    assert decision.reason is reason
    assert (decision.mail is not None) is (reason is Reason.DORMANT)


def test_a_refusal_in_the_history_is_per_address_after_trimming_and_case() -> None:
    rows = [record(1, email=SAME_PERSON), record(2)]
    assert decide_all(rows, Setup(history=REFUSED)) == ["previously_failed", "dormant"]


def test_one_mail_per_address_after_trimming_and_case() -> None:
    rows = [record(1, email=ADDRESS), record(2, email=SAME_PERSON), record(3, email="h.yamada@EXAMPLE.co.jp"),
            record(4)]
    assert decide_all(rows) == ["dormant", "duplicate_email", "duplicate_email", "dormant"]


def test_a_skipped_send_takes_neither_the_address_nor_a_place_in_the_cap() -> None:
    """The first record's mail cannot be made (English, no first name): the next record of the same person
    still gets the one mail, and the rep's single place today is still free for it."""
    rows = [record(1, email=ADDRESS, language_value="United States", first_name=""), record(2, email=SAME_PERSON),
            record(3)]
    assert decide_all(rows, Setup(rules={"per_rep_per_day": 1})) == ["missing_field", "dormant", "rep_cap"]


def test_a_capped_record_leaves_the_address_to_another_reps_record() -> None:
    """rep_cap is "come back on a later run", not a mail: another record of the person may still get one."""
    setup = Setup(rules={"per_rep_per_day": 1}, history={"rep_sent_today": {SATO.id[:15]: 1}})
    rows = [record(1, email=ADDRESS), record(2, email=SAME_PERSON, owner_id=CARTER.id)]
    assert decide_all(rows, setup) == ["rep_cap", "dormant"]


def test_rep_cap_counts_todays_mails_by_15_char_id() -> None:
    """The send log keys a rep by 15 characters; owners come as 15 or 18: all three are the same 佐藤."""
    setup = Setup(rules={"per_rep_per_day": 3}, history={"rep_sent_today": {SATO.id[:15]: 1}})
    rows = [record(1, owner_id=SATO.id), record(2, owner_id=SATO.id[:15]), record(3, owner_id=f" {SATO.id} "),
            record(4, owner_id=CARTER.id)]
    audience = audience_of(setup)
    decisions = [audience.decide(row) for row in rows]
    assert [d.reason.value for d in decisions] == ["dormant", "dormant", "rep_cap", "dormant"]
    assert (decisions[2].detail, decisions[2].rep, decisions[2].mail) == ("3 a day", SATO, None)


def test_the_cap_counts_the_sender_not_the_owner() -> None:
    """A fallback send is the fallback sender's mail today, and fills the fallback's cap."""
    setup = Setup(rules={"per_rep_per_day": 1, "fallback_sender": CARTER})
    rows = [record(1, owner_id=SUZUKI.id), record(2, owner_id=CARTER.id), record(3, owner_id=SATO.id)]
    assert decide_all(rows, setup) == ["fallback_sender", "rep_cap", "dormant"]


def test_an_open_deal_found_on_one_record_holds_for_the_later_records_of_the_address() -> None:
    """Even when the blocks did not know it (a source without address_blocks), the run remembers it."""
    deals = DealIndex.build(deals=[open_deal(1, account_id=record(1).account_id)], roles=[],
                            recent_since=DORMANT_SINCE)
    audience = Audience(reps=REPS, deals=deals, blocks={}, rules=Rules(**RULES), composer=COMPOSER)
    first, second = (audience.decide(row) for row in (record(1, email=ADDRESS), record(2, email=SAME_PERSON)))
    assert (first.reason, first.detail) == (Reason.ACTIVE_DEAL, "")
    assert (second.reason, second.detail, second.mail) == (Reason.ACTIVE_DEAL, "on another record", None)


@pytest.mark.parametrize(
    ("leads", "contact_flags", "reason", "detail"),
    [
        pytest.param([SAME_PERSON], (False, False), Reason.OPTED_OUT, "on a lead", id="a lead's opt-out"),
        pytest.param([SAME_PERSON], (False, True), Reason.OPTED_OUT, "on a lead", id="over a bounce"),
        pytest.param([SAME_PERSON], (True, False), Reason.OPTED_OUT, "on another record", id="a contact's first"),
        pytest.param(["", "  ", "other@example.jp"], (False, False), Reason.DORMANT, "", id="not her address"),
    ],
)
def test_a_lead_that_opted_out_blocks_the_contacts_of_its_address(
    leads: list[str], contact_flags: tuple[bool, bool], reason: Reason, detail: str
) -> None:
    """A person who opted out as a lead has opted out: her contact is not mailed, and the detail says where
    to look, unless another contact's own opt-out says it already (the contact's record is named first)."""
    deals = DealIndex.build(deals=[], roles=[], recent_since=DORMANT_SINCE)
    opted_out, bounced = contact_flags
    flags = [(SAME_PERSON, record(2).id, record(2).account_id, opted_out, bounced)]
    blocks = address_blocks(flags, deals, "account", lead_opt_outs=leads)
    audience = Audience(reps=REPS, deals=deals, blocks=blocks, rules=Rules(**RULES), composer=COMPOSER)
    decision = audience.decide(contact_of(Setup()))
    assert (decision.reason, decision.detail) == (reason, detail)
    assert (decision.mail is None) == (reason is not Reason.DORMANT)


@pytest.mark.parametrize(
    ("contact_id", "account_id", "owner_id"),
    [
        pytest.param("0035g00000Q0001AAA", "0015g00000A0001AAA", SATO.id, id="18-char"),
        pytest.param("0035g00000Q0001", "0015g00000A0001", SATO.id[:15], id="15-char"),
    ],
)
def test_15_and_18_char_ids_are_the_same_record(contact_id: str, account_id: str, owner_id: str) -> None:
    """Exports hold 15-character IDs, the API 18: a deal, a contact role and an owner match either way."""
    on_account = (open_deal(1, account_id="0015g00000A0001IAR"),)  # the other checksum: still the account
    fields = {"id": contact_id, "account_id": account_id, "owner_id": owner_id}
    assert decide(Setup(contact=fields, deals=on_account)).reason is Reason.ACTIVE_DEAL
    elsewhere = (open_deal(2, account_id="0015g00000Z9999"),)  # on another account: only the role counts
    as_role = Setup(contact=fields, rules={"scope": "contact_role"}, deals=elsewhere,
                    roles=(("0065g00000D0002AAA", "0035g00000Q0001"),))
    assert decide(as_role).reason is Reason.ACTIVE_DEAL
    sent = decide(Setup(contact=fields))
    assert (sent.reason, sent.rep) == (Reason.DORMANT, SATO)


def test_contact_role_scope_limits_active_deal_to_the_contacts_on_the_deal() -> None:
    colleague = record(2, account_id=YAMADA["account_id"])
    deals = (open_deal(1, account_id=YAMADA["account_id"]),)
    roles = (("0065g00000D0001", YAMADA["id"]),)
    rows = [Contact(**YAMADA), colleague]
    assert decide_all(rows, Setup(deals=deals, roles=roles)) == ["active_deal", "active_deal"]
    assert decide_all(rows, Setup(deals=deals, roles=roles, rules={"scope": "contact_role"})) == [
        "active_deal", "dormant"]


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        pytest.param(Setup(contact={"last_activity": DORMANT_SINCE - timedelta(days=1)}), Reason.DORMANT,
                     id="activity-the-day-before"),
        pytest.param(Setup(contact={"last_activity": None, "created": DORMANT_SINCE}), Reason.RECENT_ACTIVITY,
                     id="created-on-the-day"),
        pytest.param(Setup(contact={"last_activity": None, "created": None}), Reason.DORMANT, id="no-dates"),
        pytest.param(Setup(deals=(closed_deal(1, changed=DORMANT_SINCE, account_id=YAMADA["account_id"]),)),
                     Reason.RECENT_ACTIVITY, id="deal-closed-on-the-day"),
        pytest.param(Setup(deals=(closed_deal(1, changed=DORMANT_SINCE - timedelta(days=1),
                                              account_id=YAMADA["account_id"]),)),
                     Reason.DORMANT, id="deal-closed-the-day-before"),
        pytest.param(Setup(history={"last_mailed": {ADDRESS: COOLDOWN_SINCE - timedelta(days=1)}}), Reason.DORMANT,
                     id="mailed-the-day-before-cooldown"),
    ],
)
def test_the_day_that_makes_a_contact_dormant(setup: Setup, reason: Reason) -> None:
    """``dormant_since`` and ``cooldown_since`` are the first day that still counts as recent."""
    assert decide(setup).reason is reason


@pytest.mark.parametrize(
    ("owner_id", "detail"),
    [
        pytest.param(SUZUKI.id, "inactive_owner: 鈴木 一郎 is inactive", id="inactive"),
        pytest.param("", "no_owner: no owner", id="empty"),
        pytest.param("0055g00000ZZZZZAAA", "no_owner: 0055g00000ZZZZZAAA", id="not-a-user"),
    ],
)
def test_the_fallback_sender_sends_and_says_why(owner_id: str, detail: str) -> None:
    decision = decide(Setup(contact={"owner_id": owner_id}, rules={"fallback_sender": CARTER}))
    assert (decision.reason, decision.detail, decision.rep) == (Reason.FALLBACK_SENDER, detail, CARTER)
    assert decision.mail is not None and str(decision.mail.from_) == "Emily Carter <e.carter@acme.example>"


@pytest.mark.parametrize(
    ("setup", "reason", "detail", "rep"),
    [
        pytest.param(Setup(rules={"sender_domains": frozenset({"acme.example"})}), Reason.DORMANT, "", SATO,
                     id="allowed"),
        pytest.param(Setup(contact={"owner_id": DESK.id}, rules={"sender_domains": frozenset({"acme.example"})}),
                     Reason.SENDER_DOMAIN, DESK.email, DESK, id="owner-elsewhere"),
        pytest.param(Setup(contact={"owner_id": SUZUKI.id},
                           rules={"sender_domains": frozenset({"acme.example"}), "fallback_sender": DESK}),
                     Reason.SENDER_DOMAIN, DESK.email, DESK, id="fallback-elsewhere"),
        pytest.param(Setup(contact={"owner_id": ""},
                           rules={"sender_domains": frozenset({"acme.example"}), "fallback_sender": CARTER}),
                     Reason.FALLBACK_SENDER, "no_owner: no owner", CARTER, id="fallback-allowed"),
    ],
)
def test_sender_domains_check_whoever_sends(setup: Setup, reason: Reason, detail: str, rep: Rep) -> None:
    """DMARC cares about the From: the fallback sender is checked like an owner, and an owner the
    fallback replaces is not checked at all."""
    decision = decide(setup)
    assert (decision.reason, decision.detail, decision.rep) == (reason, detail, rep)


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        pytest.param(" K.Sato@ACME.Example ", Reason.DORMANT, id="trimmed-case-insensitive"),
        pytest.param("k.sato@tokyo.acme.example", Reason.SENDER_DOMAIN, id="subdomain-not-listed"),
        pytest.param("k.sato@acme.example.jp", Reason.SENDER_DOMAIN, id="longer-domain"),
    ],
)
def test_a_senders_domain_must_be_one_listed(email: str, reason: Reason) -> None:
    """The domain is compared as a whole, trimmed and case-insensitive: each From domain is listed."""
    sender = Rep(id="0055g00000AbCdJAAV", name="佐藤 健", email=email, is_active=True)
    audience = Audience(reps={id15(sender.id): sender}, deals=DealIndex(), blocks={},
                        rules=Rules(**RULES, sender_domains=frozenset({"acme.example"})))
    decision = audience.decide(record(1, owner_id=sender.id))
    assert (decision.reason, decision.rep) == (reason, sender)


@pytest.mark.parametrize(
    ("value", "default", "language"),
    [
        pytest.param("Japan", "ja", "ja", id="mapped-ja"),
        pytest.param("  UNITED States ", "ja", "en", id="stripped-casefolded"),
        pytest.param("日本", "en", "ja", id="mapped-over-default"),
        pytest.param("Deutschland", "ja", "ja", id="unknown-default-ja"),
        pytest.param("Deutschland", "en", "en", id="unknown-default-en"),
        pytest.param("", "en", "en", id="empty-default"),
    ],
)
def test_the_language_field_chooses_the_template(value: str, default: str, language: str) -> None:
    setup = Setup(contact={"language_value": value}, rules={"default_language": default})
    decision = decide(setup)
    assert decision.language == language
    assert decision.mail is not None and decision.mail.language == language
    subject = {"ja": "ご無沙汰しております（株式会社アクメ 佐藤）", "en": "Catching up, 花子"}[language]
    assert decision.mail.subject == subject
    opted_out = decide(setup + Setup(contact={"opted_out": True}))
    assert opted_out.language == language, "a skip says its language too (dry run, preview)"


@pytest.mark.parametrize(
    ("setup", "rep"),
    [
        pytest.param(ALONE[Reason.NO_OWNER].setup, None, id="no_owner"),
        pytest.param(ALONE[Reason.INACTIVE_OWNER].setup, SUZUKI, id="inactive_owner"),
        pytest.param(SENDER_UNSENDABLE, YAMAMOTO, id="unsendable_address-of-the-sender"),
        pytest.param(ALONE[Reason.SENDER_DOMAIN].setup, SATO, id="sender_domain"),
        pytest.param(ALONE[Reason.MISSING_FIELD].setup, SATO, id="missing_field"),
        pytest.param(ALONE[Reason.INVALID_HEADER].setup, SATO, id="invalid_header"),
        pytest.param(ALONE[Reason.REP_CAP].setup, SATO, id="rep_cap"),
        pytest.param(ALONE[Reason.FALLBACK_SENDER].setup + Setup(rules={"per_rep_per_day": 1},
                                                                   history={"rep_sent_today": {CARTER.id[:15]: 1}}),
                     CARTER, id="rep_cap-of-the-fallback"),
    ],
)
def test_a_skip_past_the_address_rules_names_the_rep_it_is_about(setup: Setup, rep: Rep | None) -> None:
    """The owner that is inactive, the sender whose domain or cap stopped the mail: who to talk to."""
    assert decide(setup).rep == rep


def test_a_line_feed_in_a_value_the_subject_prints_is_invalid_header() -> None:
    odd = Rep(id="0055g00000AbCdKAAV", name="佐藤 健", email="k.sato@acme.example", is_active=True,
              last_name="佐藤\nBcc: victim@example.com")
    audience = Audience(reps={id15(odd.id): odd}, deals=DealIndex(), blocks={}, rules=Rules(**RULES),
                        composer=COMPOSER)
    decision = audience.decide(record(1, owner_id=odd.id))
    assert (decision.reason, decision.detail, decision.mail) == (Reason.INVALID_HEADER, "control character in Subject",
                                                                None)


@pytest.mark.parametrize("address", ["h.yamada.@example.co.jp", "h.yamada@.example.co.jp"])
def test_an_address_the_mail_cannot_be_sent_to_is_invalid_email(address: str) -> None:
    """Not invalid_header with 'control character in To' (the email parser refusing it), though it holds none."""
    decision = decide(Setup(contact={"email": address}))
    assert (decision.reason, decision.detail) == (Reason.INVALID_EMAIL, address)


def test_an_address_that_is_invalid_and_unsendable_is_invalid_email() -> None:
    decision = decide(Setup(contact={"email": " 山田@example "}))
    assert (decision.reason, decision.detail) == (Reason.INVALID_EMAIL, "山田@example")


@pytest.mark.parametrize(
    ("setup", "detail"),
    [
        pytest.param(ALONE[Reason.UNSENDABLE_ADDRESS].setup, NEEDS_SMTPUTF8, id="the contact's"),
        pytest.param(SENDER_UNSENDABLE, f"sender 山本@acme.example: {NEEDS_SMTPUTF8}", id="the owner's"),
        pytest.param(Setup(contact={"owner_id": SUZUKI.id}, rules={"fallback_sender": YAMAMOTO}),
                     f"sender 山本@acme.example: {NEEDS_SMTPUTF8}", id="the fallback sender's"),
    ],
)
def test_a_utf8_local_part_is_unsendable_without_smtputf8_and_a_send_with_it(setup: Setup, detail: str) -> None:
    """Never the false invalid_header "control character in To": the address holds none. With
    [smtp] smtputf8 = true the mail is composed with the local part as it is."""
    decision = decide(setup)
    assert (decision.reason, decision.detail, decision.mail) == (Reason.UNSENDABLE_ADDRESS, detail, None)
    sent = decide(setup + Setup(rules={"smtputf8": True}))
    assert sent.reason in SENDS and sent.mail is not None
    assert not (sent.mail.to.username + sent.mail.from_.username).isascii()


def test_an_internationalized_domain_is_a_send_whatever_smtputf8_says() -> None:
    """IDNA A-labels carry it in the header and the envelope: every server takes them."""
    for smtputf8 in (False, True):
        decision = decide(Setup(contact={"email": "john@例え.example.com"}, rules={"smtputf8": smtputf8}))
        assert decision.reason is Reason.DORMANT and decision.mail is not None
        assert (decision.mail.to.username, decision.mail.to.domain) == ("john", "例え.example.com")


def test_a_domain_without_an_idna_form_is_unsendable() -> None:
    too_long = "例" * 64 + ".jp"
    decision = decide(Setup(contact={"email": f"john@{too_long}"}))
    assert (decision.reason, decision.detail) == (Reason.UNSENDABLE_ADDRESS, f"{too_long}: the domain has no IDNA form")


def test_an_open_deal_behind_an_unsendable_sender_still_holds_for_the_persons_other_records() -> None:
    """Her record owned by YAMAMOTO stops at his address before its deal is looked at; the deal must still
    stop her record owned by SATO (a source that does not know the blocks beforehand)."""
    deals = DealIndex.build(deals=[open_deal(1, account_id=record(1).account_id)], roles=[],
                            recent_since=DORMANT_SINCE)
    audience = Audience(reps=REPS, deals=deals, blocks={}, rules=Rules(**RULES), composer=COMPOSER)
    first = audience.decide(record(1, email=ADDRESS, owner_id=YAMAMOTO.id))
    second = audience.decide(record(2, email=SAME_PERSON))
    assert first.reason is Reason.UNSENDABLE_ADDRESS
    assert (second.reason, second.detail, second.mail) == (Reason.ACTIVE_DEAL, "on another record", None)


@pytest.mark.parametrize("domain", ["ｅｘａｍｐｌｅ.co.jp", "例え。example.jp", "ｱｸﾒ.example", "straße.de"])
def test_a_domain_idna_would_rewrite_is_unsendable_never_mailed_under_another_spelling(domain: str) -> None:
    """Full-width letters, half-width kana, 。 or ß: the codec would send to a domain the SFA does not hold
    (and IDNA 2008 to another one again), or to the mailbox of another record of the person: one mail
    too many. Stopped, saying why."""
    decision = decide(Setup(contact={"email": f"h.yamada@{domain}"}, rules={"smtputf8": True}))
    assert decision.reason is Reason.UNSENDABLE_ADDRESS and decision.mail is None
    assert decision.detail == f"{domain}: the domain has characters IDNA would rewrite (full-width or half-width" \
                              " letters, 。, ß, ...): write it as its owner does"


def test_a_held_out_contact_stays_held_out_and_takes_no_place_in_the_cap() -> None:
    """In the send log as held out: held out again whatever the share says now; the person's other record
    is a duplicate, not a mail; and the rep's cap is left to the mailed ones."""
    again = decide(Setup(history={"held_out": frozenset({ADDRESS})}))
    assert (again.reason, again.mail) == (Reason.HOLDOUT, None)
    setup = HELD_OUT + Setup(rules={"per_rep_per_day": 1})
    # YAMADA held out, her other record a duplicate, record 5 mailed (the only place in the cap), 8 capped.
    assert decide_all([contact_of(setup), record(2, email=SAME_PERSON), record(5), record(8)], setup) == [
        "holdout", "duplicate_email", "dormant", "rep_cap"]


def test_the_holdout_share_is_the_share_of_would_be_sends() -> None:
    setup = Setup(rules={"holdout": 0.2, "campaign": "dormant-2026-12"})
    reasons = decide_all([record(n) for n in range(1, 2001)], setup)
    assert 330 < reasons.count("holdout") < 470  # 20% of 2,000; the standard deviation is 18
    assert set(reasons) == {"holdout", "dormant"}
