"""Every reason code, and its precedence, end to end: ``selection.select`` over a real CSV export and config.

The rules themselves, on in-memory records, are in ``test_audience.py``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from repsend.audience import History
from repsend.models import Decision
from repsend.selection import RunOptions, select
from repsend.settings import load_settings
from repsend.sfa import open_source
from tests.helpers import CARTER, SATO, SUZUKI, contact, deal, write_config, write_export

AS_OF = date(2026, 11, 23)


def decide(tmp_path: Path, contacts: list[dict[str, str]], deals: list[dict[str, str]] = (), roles=None,
           history: History | None = None, limit: int | None = None, **config: dict[str, Any]) -> dict[str, Decision]:
    export = write_export(tmp_path / "export", contacts, deals, roles)
    settings = load_settings(write_config(tmp_path, export, **config))
    source = open_source(settings)
    options = RunOptions(as_of=AS_OF, campaign="dormant", template="dormant", limit=limit)
    return {d.contact.id: d for d in select(settings, source, options, history)}


def reasons(result: dict[str, Decision]) -> dict[str, str]:
    return {cid: d.reason.value for cid, d in result.items()}


def test_a_dormant_contact_gets_a_note_from_its_own_rep(tmp_path: Path) -> None:
    result = decide(tmp_path, [contact(1)])
    planned = result[contact(1)["Id"]]
    assert planned.action == "send"
    assert planned.reason == "dormant"
    assert planned.mail is not None
    assert planned.mail.from_.addr_spec == "k.sato@acme.example"
    assert planned.mail.from_.display_name == "佐藤 健"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Email": ""}, "no_email"),
        ({"Email": "   "}, "no_email"),
        ({"Email": "yamada@"}, "invalid_email"),
        ({"Email": "tanaka at example.co.jp"}, "invalid_email"),
        ({"Email": "suzuki@@example.jp"}, "invalid_email"),
        ({"Email": "a b@example.jp"}, "invalid_email"),
        ({"HasOptedOutOfEmail": "true"}, "opted_out"),
        ({"IsEmailBounced": "TRUE"}, "bounced"),
        ({"CreatedDate": "2026-11-16T02:00:00.000Z"}, "recent_activity"),
        ({"LastActivityDate": "2026/06/01"}, "recent_activity"),
        ({"LastActivityDate": "2026-05-27"}, "recent_activity"),  # exactly 180 days ago: still recent
        ({"LastActivityDate": "2026-05-26"}, "dormant"),  # 181 days ago: dormant
        ({"OwnerId": ""}, "no_owner"),
        ({"OwnerId": "0055g00000ZZZZZAAA"}, "no_owner"),
        ({"OwnerId": SUZUKI}, "inactive_owner"),
        ({"MailingCountry": "United States", "FirstName": ""}, "missing_field"),
    ],
)
def test_each_reason(tmp_path: Path, fields: dict[str, str], reason: str) -> None:
    row = contact(1, **fields)
    assert reasons(decide(tmp_path, [row]))[row["Id"]] == reason


def test_open_deal_on_the_account_means_active_deal(tmp_path: Path) -> None:
    dormant, busy = contact(1), contact(2)
    # The export's Opportunity.csv holds 15-character IDs, Contact.csv 18: they must match.
    result = decide(tmp_path, [dormant, busy], [deal(1, busy["AccountId"][:15])])
    assert reasons(result) == {dormant["Id"]: "dormant", busy["Id"]: "active_deal"}
    assert result[busy["Id"]].mail is None


def test_a_deal_closed_recently_makes_the_account_recent(tmp_path: Path) -> None:
    row = contact(1)
    result = decide(tmp_path, [row], [deal(1, row["AccountId"], closed=True, changed="2026-10-01")])
    assert reasons(result)[row["Id"]] == "recent_activity"


def test_a_deal_closed_long_ago_leaves_the_contact_dormant(tmp_path: Path) -> None:
    row = contact(1)
    result = decide(tmp_path, [row], [deal(1, row["AccountId"], closed=True, changed="2024-10-01")])
    assert reasons(result)[row["Id"]] == "dormant"


def test_contact_role_scope_limits_active_deal_to_the_deals_a_contact_is_on(tmp_path: Path) -> None:
    on_deal, colleague = contact(1), contact(2, AccountId=contact(1)["AccountId"])
    deals = [deal(1, on_deal["AccountId"][:15])]
    roles = [{"Id": "00K5g00000R0000001", "OpportunityId": deals[0]["Id"][:15], "ContactId": on_deal["Id"][:15],
              "Role": "Decision Maker", "IsPrimary": "true"}]
    by_account = decide(tmp_path / "a", [on_deal, colleague], deals, roles)
    assert reasons(by_account) == {on_deal["Id"]: "active_deal", colleague["Id"]: "active_deal"}
    by_role = decide(tmp_path / "r", [on_deal, colleague], deals, roles,
                     audience={"active_deal_scope": "contact_role"})
    assert reasons(by_role) == {on_deal["Id"]: "active_deal", colleague["Id"]: "dormant"}


def test_precedence_when_several_reasons_apply(tmp_path: Path) -> None:
    rows = [
        contact(1, Email="bad@", HasOptedOutOfEmail="true"),  # invalid_email beats opted_out
        contact(2, HasOptedOutOfEmail="true", IsEmailBounced="true"),  # opted_out beats bounced
        contact(3, IsEmailBounced="true"),  # bounced beats active_deal
        contact(4, CreatedDate="2026-11-20"),  # active_deal beats recent_activity
        contact(5, CreatedDate="2026-11-20", OwnerId=SUZUKI),  # recent_activity beats inactive_owner
    ]
    deals = [deal(i, rows[i - 1]["AccountId"]) for i in (3, 4)]
    assert list(reasons(decide(tmp_path, rows, deals)).values()) == [
        "invalid_email", "opted_out", "bounced", "active_deal", "recent_activity",
    ]


def test_duplicates_differing_in_case_and_spaces_get_one_mail(tmp_path: Path) -> None:
    rows = [contact(1, Email="h.yamada@example.co.jp"), contact(2, Email="  H.Yamada@Example.CO.JP "),
            contact(3, Email="h.yamada@example.co.jp")]
    assert list(reasons(decide(tmp_path, rows)).values()) == ["dormant", "duplicate_email", "duplicate_email"]


def test_a_skipped_record_does_not_take_the_address_from_a_later_one(tmp_path: Path) -> None:
    # The first record cannot be composed (English, no first name); the second can: one mail.
    rows = [contact(1, Email="x@example.jp", MailingCountry="United States", FirstName=""),
            contact(2, Email="X@example.jp")]
    assert list(reasons(decide(tmp_path, rows)).values()) == ["missing_field", "dormant"]


@pytest.mark.parametrize(("flag", "reason"), [("HasOptedOutOfEmail", "opted_out"), ("IsEmailBounced", "bounced")])
def test_an_opt_out_or_bounce_on_any_record_holds_for_every_record(tmp_path: Path, flag: str, reason: str) -> None:
    # The flagged record comes last in the file: the rule must still hold for the first.
    rows = [contact(1, Email="Ito@example.ne.jp"), contact(2, Email=" ito@EXAMPLE.ne.jp", **{flag: "true"})]
    result = decide(tmp_path, rows)
    assert reasons(result) == {rows[0]["Id"]: reason, rows[1]["Id"]: reason}
    assert all(d.mail is None for d in result.values())


def test_an_open_deal_on_any_record_of_an_address_holds_for_every_record(tmp_path: Path) -> None:
    rows = [contact(1, Email="m.brown@example.com"), contact(2, Email="M.Brown@example.com")]
    result = decide(tmp_path, rows, [deal(1, rows[1]["AccountId"])])
    assert reasons(result) == {rows[0]["Id"]: "active_deal", rows[1]["Id"]: "active_deal"}


def test_fallback_sender_sends_for_an_inactive_or_missing_owner_and_says_so(tmp_path: Path) -> None:
    rows = [contact(1, OwnerId=SUZUKI), contact(2, OwnerId="")]
    result = decide(tmp_path, rows, audience={"fallback_sender": "e.carter@acme.example"})
    for row, gone in ((rows[0], "inactive_owner"), (rows[1], "no_owner")):
        planned = result[row["Id"]]
        assert planned.action == "send"
        assert planned.reason == "fallback_sender"
        assert gone in planned.detail
        assert planned.mail is not None and planned.mail.from_.addr_spec == "e.carter@acme.example"
        assert planned.rep is not None and planned.rep.id == CARTER


def test_suppression_list(tmp_path: Path) -> None:
    (tmp_path / "suppressed.txt").write_text("# asked us at a trade show\n C1@Example.co.jp \n", encoding="utf-8")
    result = decide(tmp_path, [contact(1), contact(2)],
                    audience={"suppression_file": str(tmp_path / "suppressed.txt")})
    assert list(reasons(result).values()) == ["suppressed", "dormant"]


def test_history_already_sent_and_cooldown(tmp_path: Path) -> None:
    history = History(
        campaign_addresses={"c1@example.co.jp"},
        last_mailed={"c2@example.co.jp": date(2026, 10, 1), "c3@example.co.jp": date(2026, 1, 1)},
    )
    result = decide(tmp_path, [contact(1), contact(2), contact(3)], history=history)
    assert list(reasons(result).values()) == ["already_sent", "cooldown", "dormant"]


def test_sender_domain(tmp_path: Path) -> None:
    result = decide(tmp_path, [contact(1), contact(2, OwnerId=CARTER)], mail={"sender_domains": ["acme.co.jp"]})
    assert list(reasons(result).values()) == ["sender_domain", "sender_domain"]


def test_a_header_breaking_value_skips_the_contact(tmp_path: Path) -> None:
    rows = [contact(1, FirstName="花子\r\nBcc: victim@example.com", LastName="山田"), contact(2)]
    result = decide(tmp_path, rows)
    assert reasons(result)[rows[0]["Id"]] == "invalid_header"
    assert result[rows[0]["Id"]].mail is None


def test_rep_cap_skips_contacts_over_the_daily_cap(tmp_path: Path) -> None:
    rows = [contact(i) for i in range(1, 6)]
    history = History(rep_sent_today={SATO[:15]: 1})
    result = decide(tmp_path, rows, history=history, rate={"per_rep_per_day": 3})
    assert list(reasons(result).values()) == ["dormant", "dormant", "rep_cap", "rep_cap", "rep_cap"]


def test_limit_stops_after_n_sends(tmp_path: Path) -> None:
    rows = [contact(1), contact(2, Email=""), contact(3), contact(4)]
    result = decide(tmp_path, rows, limit=2)
    assert list(reasons(result).values()) == ["dormant", "no_email", "dormant"]


def test_each_language_prints_the_company_as_configured(tmp_path: Path) -> None:
    rows = [contact(1), contact(2, MailingCountry="United States", FirstName="John", LastName="Miller", OwnerId=CARTER)]
    result = decide(tmp_path, rows, company={"names": {"en": "Acme K.K."},
                                             "postal_addresses": {"en": "1-1-1 Marunouchi, Tokyo"}})
    ja, en = (result[r["Id"]].mail for r in rows)
    assert ja is not None and en is not None
    assert "--\n株式会社アクメ\n〒100-0005 東京都千代田区丸の内1-1-1\n" in ja.body
    assert "--\nAcme K.K., 1-1-1 Marunouchi, Tokyo\n" in en.body
    assert "株式会社アクメ" not in en.body


def test_a_suppressed_address_is_suppressed_even_when_another_record_is_in_an_open_deal(tmp_path: Path) -> None:
    """suppressed comes before active_deal: the suppression list wins over an open deal found on any record."""
    (tmp_path / "suppressed.txt").write_text("c1@example.co.jp\n", encoding="utf-8")
    rows = [contact(1), contact(2, Email="C1@example.co.jp")]
    result = decide(tmp_path, rows, [deal(1, rows[1]["AccountId"])],
                    audience={"suppression_file": str(tmp_path / "suppressed.txt")})
    assert list(reasons(result).values()) == ["suppressed", "suppressed"]


def test_an_opt_out_on_another_record_wins_over_this_records_bounce(tmp_path: Path) -> None:
    rows = [contact(1, IsEmailBounced="true"), contact(2, Email="c1@example.co.jp", HasOptedOutOfEmail="true")]
    result = decide(tmp_path, rows)
    assert [(d.reason.value, d.detail) for d in result.values()] == [("opted_out", "on another record"),
                                                                       ("opted_out", "")]
