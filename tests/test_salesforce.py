"""SalesforceSource against Salesforce's real answer shapes, served in-process by ``responses``.

Nothing leaves the process: ``responses`` refuses any request it was not told to answer.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from repsend.errors import EXIT_SERVICE, EXIT_USAGE, ConfigError, SFAError
from repsend.models import Contact, Reason, Rep, id15
from repsend.settings import Settings
from repsend.sfa import open_source
from repsend.sfa.salesforce import BULK_WAIT, CONTACT_PARTS, SalesforceSource
from tests.sf_answers import (
    API,
    API_USER_ID,
    API_USERNAME,
    INSTANCE,
    LIMIT_EXCEEDED,
    LOGIN_FAULT,
    SERVER_DOWN,
    SESSION,
    SESSION_EXPIRED,
    SOAP_API,
    FakeOrg,
    SoqlError,
    sfid,
)

USERNAME = "k.sato@acme.example"  # a rep's address
LOGIN = API_USERNAME  # the integration user the org logs in as: FakeOrg's own, whose profile has View All Data
PASSWORD = "Pa55-w0rd!Secret"
TOKEN = "Tok3nXyZ987SeCrEt"
ACCESS = "00D5g000004XYZ!AR8AQAccessTokenSecret"
LOGIN_ENV = {"SF_USERNAME": LOGIN, "SF_PASSWORD": PASSWORD, "SF_SECURITY_TOKEN": TOKEN}
TOKEN_ENV = {"SF_INSTANCE_URL": f"https://{INSTANCE}", "SF_ACCESS_TOKEN": ACCESS}
SECRETS = (PASSWORD, TOKEN, ACCESS, SESSION)
# The calls the visibility check costs before the first read: its one query (an access token adds the
# identity, and saves the login).
CHECK = 1


def make_settings(tmp_path: Path, env: dict[str, str] | None = None, **sections: Any) -> Settings:
    sfa = {"kind": "salesforce", **sections.pop("sfa", {})}
    return Settings(
        company=dict(name="A", postal_address="B", opt_out="C", domain="acme.example"),
        sfa=sfa,
        env=LOGIN_ENV if env is None else env,
        config_path=tmp_path / "repsend.toml",
        **sections,
    )


def source_for(tmp_path: Path, env: dict[str, str] | None = None, **sections: Any) -> SalesforceSource:
    return SalesforceSource.from_settings(make_settings(tmp_path, env, **sections))


def assert_no_secret(message: str) -> None:
    for secret in SECRETS:
        assert secret not in message


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def org(rsps: responses.RequestsMock) -> FakeOrg:
    fake = FakeOrg()
    fake.install(rsps)
    return fake


def add_rep(org: FakeOrg, **fields: Any) -> dict[str, Any]:
    defaults = dict(Name="佐藤 健", FirstName="健", LastName="佐藤", Email=USERNAME, IsActive=True)
    return org.add("User", **{**defaults, **fields})


def add_contact(org: FakeOrg, account: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    n = len(org.tables["Contact"]) + 1
    defaults = dict(
        FirstName="花子",
        LastName=f"山田{n}",
        Email=f"c{n}@example.co.jp",
        HasOptedOutOfEmail=False,
        IsEmailBounced=False,
        CreatedDate="2022-04-08T01:15:00.000+0000",
        AccountId=account["Id"] if account else None,
        OwnerId=sfid("User", 1),
    )
    return org.add("Contact", **{**defaults, **fields})


def add_opp(org: FakeOrg, account: dict[str, Any] | None, closed: bool, **fields: Any) -> dict[str, Any]:
    defaults = dict(
        AccountId=account["Id"] if account else None,
        IsClosed=closed,
        CloseDate="2026-01-29",
        LastModifiedDate="2025-11-10T06:30:00.000+0000",
    )
    return org.add("Opportunity", **{**defaults, **fields})


# -- logging in ------------------------------------------------------------------------------------


def test_username_login_is_lazy_and_uses_soap_then_the_session(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    user = add_rep(org, Title="営業部 課長", Phone="03-1234-5678", Signature="佐藤 健\n株式会社アクメ")
    quiet = add_rep(org, Name="鈴木 一郎", Email="i.suzuki@acme.example", IsActive=False, Signature=None)

    source = open_source(make_settings(tmp_path))
    assert isinstance(source, SalesforceSource)
    assert len(rsps.calls) == 0  # nothing happens until the first question

    reps = source.reps()

    login, check, query = (call.request for call in rsps.calls)
    assert login.method == "POST"
    assert login.url == f"https://login.salesforce.com/services/Soap/u/{SOAP_API}"
    body = login.body.decode() if isinstance(login.body, bytes) else login.body
    assert f"<n1:username>{LOGIN}</n1:username>" in body
    assert f"<n1:password>{PASSWORD}{TOKEN}</n1:password>" in body
    assert "FROM+PermissionSet+WHERE" in check.url  # what the user may see, before anything is read
    assert query.url.startswith(f"https://{INSTANCE}/services/data/v{API}/query/?q=SELECT+Id%2C+Name")
    assert query.headers["Authorization"] == f"Bearer {SESSION}"
    # the API user is a user too (it owns no contacts here)
    assert reps.pop(id15(API_USER_ID)) == Rep(
        id=API_USER_ID, name="Integration User", email=LOGIN, is_active=True, first_name="Integration", last_name="User"
    )
    assert reps == {
        id15(user["Id"]): Rep(
            id=user["Id"],
            name="佐藤 健",
            email=USERNAME,
            is_active=True,
            first_name="健",
            last_name="佐藤",
            title="営業部 課長",
            phone="03-1234-5678",
            signature="佐藤 健\n株式会社アクメ",
        ),
        id15(quiet["Id"]): Rep(
            id=quiet["Id"], name="鈴木 一郎", email="i.suzuki@acme.example", is_active=False,
            first_name="健", last_name="佐藤",
        ),  # fmt: skip
    }
    assert source.api_calls == len(rsps.calls) == 1 + CHECK + 1


@pytest.mark.parametrize(
    ("sf_domain", "login_host"),
    [
        ("acme.my", "acme.my.salesforce.com"),
        ("test", "test.salesforce.com"),
        ("https://acme.my.salesforce.com/", "acme.my.salesforce.com"),
        ("", "login.salesforce.com"),
    ],
)
def test_login_domain(tmp_path: Path, rsps: responses.RequestsMock, sf_domain: str, login_host: str) -> None:
    org = FakeOrg()
    org.install(rsps, login_domain=login_host.removesuffix(".salesforce.com"))
    source = source_for(tmp_path, {**LOGIN_ENV, "SF_DOMAIN": sf_domain})
    assert set(source.reps()) == {id15(API_USER_ID)}
    assert rsps.calls[0].request.url == f"https://{login_host}/services/Soap/u/{SOAP_API}"


@pytest.mark.parametrize("version", ["66.0", "59.0"])
def test_api_version_is_the_rest_ones_the_soap_login_keeps_its_own(
    tmp_path: Path, rsps: responses.RequestsMock, version: str
) -> None:
    # Raising [sfa] api_version past 64.0 used to send the SOAP login to a version without login().
    org = FakeOrg(version=version)
    org.install(rsps)
    source_for(tmp_path, sfa={"api_version": version}).reps()
    assert rsps.calls[0].request.url == "https://login.salesforce.com/services/Soap/u/64.0"
    assert rsps.calls[1].request.url.startswith(f"https://{INSTANCE}/services/data/v{version}/query/")


def test_access_token_skips_the_login(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = FakeOrg()
    org.install(rsps, login_domain=None)
    add_rep(org)
    source = source_for(tmp_path, TOKEN_ENV)
    assert len(source.reps()) == 2
    identity, check, users = (call.request for call in rsps.calls)
    assert identity.url == f"https://{INSTANCE}/services/data/v{API}/"
    assert f"AssigneeId+%3D+%27{API_USER_ID}%27" in check.url and "FROM+User" in users.url
    assert all(r.headers["Authorization"] == f"Bearer {ACCESS}" for r in (identity, check, users))
    assert source.api_calls == 3


# -- contacts --------------------------------------------------------------------------------------


def test_contact_fields_null_account_dates_and_extra_fields(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    acme = org.add("Account", Name="株式会社サンプル", Industry="Manufacturing")
    hanako = add_contact(
        org, acme, Email="h.yamada@example.co.jp", LastActivityDate="2025-03-14",
        CreatedDate="2022-04-08T23:59:59.000+0000", Title="課長", MailingCountry="Japan", Department="情報システム部",
        Region__c="Kanto", HasOptedOutOfEmail=True,
    )  # fmt: skip
    loner = add_contact(org, None, Email="solo@example.com", IsEmailBounced=True)
    source = source_for(
        tmp_path,
        # a configured field may repeat a standard one, in any case: SOQL refuses a field selected twice
        sfa={"contact_fields": ["Department", "account.industry", "Title", "Region__c", "email"]},
        template={"language_field": "MailingCountry"},
    )

    by_id = {c.id: c for c in source.contacts()}

    assert by_id[hanako["Id"]] == Contact(
        id=hanako["Id"],
        email="h.yamada@example.co.jp",
        owner_id=sfid("User", 1),
        first_name="花子",
        last_name=hanako["LastName"],
        account_id=acme["Id"],
        account_name="株式会社サンプル",
        title="課長",
        opted_out=True,
        bounced=False,
        last_activity=date(2025, 3, 14),
        created=date(2022, 4, 8),
        language_value="Japan",
        extra={
            "Department": "情報システム部",
            "account.industry": "Manufacturing",
            "Title": "課長",
            "Region__c": "Kanto",
            "email": "h.yamada@example.co.jp",
        },
        origin=f"Salesforce Contact {hanako['Id']}",
    )
    solo = by_id[loner["Id"]]
    assert (solo.account_id, solo.account_name, solo.bounced, solo.last_activity) == ("", "", True, None)
    assert solo.extra == {
        "Department": "", "account.industry": "", "Title": "", "Region__c": "", "email": "solo@example.com"
    }  # fmt: skip
    assert solo.language_value == ""
    # the answer really held a null Account, not a dict of nulls
    null_part = next(call for call in rsps.calls if "AccountId+%3D+null" in call.request.url)
    assert '"Account": null' in null_part.response.text


def test_paging_follows_next_records_url(tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg) -> None:
    account = org.add("Account", Name="大口")
    for _ in range(4500):
        add_contact(org, account)
    source = source_for(tmp_path)

    ids = [c.id for c in source.contacts()]

    assert len(ids) == len(set(ids)) == 4500
    urls = [call.request.url for call in rsps.calls]
    assert sum("/query/01g" in u for u in urls) == 2  # two more pages after the first of 2,000
    assert any(u.endswith("-2000") for u in urls) and any(u.endswith("-4000") for u in urls)
    assert source.api_calls == len(rsps.calls) == 1 + CHECK + len(CONTACT_PARTS["account"]) + 2


def build_mixed_org(org: FakeOrg) -> tuple[set[str], set[str]]:
    """Contacts with and without accounts and open deals, and the nulls that trip NOT IN.

    Returns the contacts in an open deal for the account scope and for the contact_role scope.
    """
    open_acct, also_open, closed_acct, quiet_acct = (org.add("Account", Name=n) for n in "ABCD")
    open_opp = add_opp(org, open_acct, closed=False)
    add_opp(org, also_open, closed=False)
    add_opp(org, None, closed=False)  # an open deal with no account: a null in the sub-select
    closed_opp = add_opp(org, closed_acct, closed=True)
    contacts = {
        name: add_contact(org, account)
        for name, account in [
            ("a1", open_acct), ("a2", open_acct), ("b1", also_open), ("c1", closed_acct), ("c2", closed_acct),
            ("d1", quiet_acct), ("n1", None), ("n2", None), ("n3", None),
        ]
    }  # fmt: skip
    org.add("OpportunityContactRole", OpportunityId=open_opp["Id"], ContactId=contacts["c1"]["Id"])
    org.add("OpportunityContactRole", OpportunityId=open_opp["Id"], ContactId=contacts["n1"]["Id"])
    org.add("OpportunityContactRole", OpportunityId=closed_opp["Id"], ContactId=contacts["d1"]["Id"])
    org.add("OpportunityContactRole", OpportunityId=open_opp["Id"], ContactId=None)  # a null again
    by_account = {contacts[n]["Id"] for n in ("a1", "a2", "b1")}
    by_role = {contacts[n]["Id"] for n in ("c1", "n1")}
    return by_account, by_role


@pytest.mark.parametrize("null_semantics", ["sql", "lenient"])
@pytest.mark.parametrize("scope", ["account", "contact_role"])
def test_every_contact_exactly_once_open_deals_first(
    tmp_path: Path, rsps: responses.RequestsMock, scope: str, null_semantics: Any
) -> None:
    org = FakeOrg(null_semantics=null_semantics)
    org.install(rsps)
    by_account, by_role = build_mixed_org(org)
    source = source_for(tmp_path, audience={"active_deal_scope": scope})

    ids = [c.id for c in source.contacts()]

    assert sorted(ids) == sorted(org.tables["Contact"])  # all of them, none twice
    first = by_account if scope == "account" else by_role
    assert set(ids[: len(first)]) == first


def test_contacts_follow_the_scope_deals_were_read_with(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    _, by_role = build_mixed_org(org)
    source = source_for(tmp_path)  # the config says account
    source.deals(date(2025, 1, 1), "contact_role")
    ids = [c.id for c in source.contacts()]
    assert set(ids[: len(by_role)]) == by_role


def run_all(
    tmp_path: Path, rsps: responses.RequestsMock, open_share: float, n: int = 5000, **sfa: Any
) -> dict[str, int]:
    """A whole read of an org with ``n`` contacts, 100 an account; HTTP calls counted per step. Each open deal
    names a primary contact and two contact roles (whose addresses blocked_addresses holds)."""
    org = FakeOrg()
    org.install(rsps)
    add_rep(org)
    accounts = [org.add("Account", Name=f"A{i}") for i in range(n // 100)]
    for i, account in enumerate(accounts):
        contacts = [add_contact(org, account) for _ in range(100)]
        if i < len(accounts) * open_share:
            opp = add_opp(org, account, closed=False, ContactId=contacts[0]["Id"])
            for contact in contacts[1:3]:
                org.add("OpportunityContactRole", OpportunityId=opp["Id"], ContactId=contact["Id"])
    source = source_for(tmp_path, sfa=sfa)
    counts = {}
    source.reps()
    counts["login+reps"] = source.api_calls
    deals = source.deals(date(2025, 1, 1), "account")
    counts["deals"] = source.api_calls - sum(counts.values())
    source.blocked_addresses(deals, "account")
    counts["blocked"] = source.api_calls - sum(counts.values())
    assert sum(1 for _ in source.contacts()) == n
    counts["contacts"] = source.api_calls - sum(counts.values())
    assert source.api_calls == len(rsps.calls)
    return counts


def test_http_calls_grow_with_pages_not_with_contacts_nor_open_deals(tmp_path: Path) -> None:
    measured = {}
    for share in (0.0, 0.5):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            measured[share] = run_all(tmp_path, rsps, share)
    pages = math.ceil(5000 / 2000)
    for counts in measured.values():
        assert counts["contacts"] <= pages + len(CONTACT_PARTS["account"]) - 1
        # the handful: login, visibility check, users, deals, roles, opt-outs and bounces, leads' opt-outs, and
        # the last partial pages of two of the three contact parts (the issue allows pages + 10)
        assert counts["login+reps"] == 1 + CHECK + 1 and counts["blocked"] == 2
        assert sum(counts.values()) <= pages + 9
    # The open deals' primary contacts and roles, and their addresses, come in the deal queries' pages.
    assert measured[0.0] == measured[0.5]


def test_the_most_a_run_costs_is_the_pages_and_ten(tmp_path: Path) -> None:
    """The worst case of the handful: a bulk_threshold the org does not reach (its COUNT(), then REST)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        counts = run_all(tmp_path, rsps, 0.5, bulk_threshold=10**6)
    assert counts["contacts"] == 1 + 3 + 2  # COUNT(), the pages, the partial pages of two parts
    assert sum(counts.values()) == math.ceil(5000 / 2000) + 10


# -- deals and blocked addresses -------------------------------------------------------------------


def test_deals_open_recent_and_roles(tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg) -> None:
    a_open, a_recent, a_late_close, a_old = (org.add("Account", Name=n) for n in "ABCD")
    primary = add_contact(org, a_open)
    in_role, in_recent_role, in_old_role = (add_contact(org, a_old) for _ in range(3))
    open_opp = add_opp(org, a_open, closed=False, ContactId=primary["Id"])
    recent = add_opp(
        org, a_recent, closed=True, CloseDate="2025-02-01", LastModifiedDate="2025-02-03T01:00:00.000+0000"
    )
    # edited long ago, but closed recently: CloseDate counts
    add_opp(
        org, a_late_close, closed=True, CloseDate="2025-03-01", LastModifiedDate="2024-06-01T01:00:00.000+0000"
    )
    old = add_opp(org, a_old, closed=True, CloseDate="2024-05-01", LastModifiedDate="2024-05-02T01:00:00.000+0000")
    org.add("OpportunityContactRole", OpportunityId=open_opp["Id"], ContactId=in_role["Id"])
    org.add("OpportunityContactRole", OpportunityId=recent["Id"], ContactId=in_recent_role["Id"])
    org.add("OpportunityContactRole", OpportunityId=old["Id"], ContactId=in_old_role["Id"])
    source = source_for(tmp_path)

    index = source.deals(date(2025, 1, 1), "account")

    assert index.open_accounts == {id15(a_open["Id"])}
    assert index.open_contacts == {id15(primary["Id"]), id15(in_role["Id"])}
    assert index.recent_accounts == {id15(a_recent["Id"]), id15(a_late_close["Id"])}
    assert index.recent_contacts == {id15(in_recent_role["Id"])}
    check, opp_soql, role_soql = org.queries
    assert "FROM PermissionSet" in check
    assert "LastModifiedDate >= 2025-01-01T00:00:00Z OR CloseDate >= 2025-01-01" in opp_soql
    assert "Opportunity.LastModifiedDate >= 2025-01-01T00:00:00Z" in role_soql
    assert "ContactId, Contact.Email," in opp_soql and "ContactId, Contact.Email FROM" in role_soql
    assert source.api_calls == 1 + CHECK + 2


@pytest.mark.parametrize("scope", ["account", "contact_role"])
def test_blocked_addresses_hold_for_every_record_of_the_address(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, scope: Any
) -> None:
    acct, quiet = org.add("Account", Name="A"), org.add("Account", Name="Q")
    add_contact(org, acct, Email="Taro@Example.jp", HasOptedOutOfEmail=True)
    add_contact(org, acct, Email="taro@example.jp")  # the same person on another record
    add_contact(org, None, Email="gone@example.jp", IsEmailBounced=True)
    add_contact(org, None, Email="both@example.jp", IsEmailBounced=True)
    add_contact(org, None, Email=" BOTH@example.jp ", HasOptedOutOfEmail=True)
    add_contact(org, acct, Email="fine@example.jp")
    add_contact(org, acct, Email=None, HasOptedOutOfEmail=True)
    # In an open deal through a contact role, or as its primary contact, on no account with an open deal.
    in_role = add_contact(org, None, Email="Role@Example.jp")
    primary = add_contact(org, quiet, Email="primary@example.jp")
    in_closed_role = add_contact(org, None, Email="closed@example.jp")
    opted_in_role = add_contact(org, None, Email="taro@example.jp ")
    no_address = add_contact(org, None, Email=None)
    open_opp = add_opp(org, None, closed=False, ContactId=primary["Id"])
    closed_opp = add_opp(org, quiet, closed=True, ContactId=in_closed_role["Id"])
    for contact in (in_role, opted_in_role, no_address):
        org.add("OpportunityContactRole", OpportunityId=open_opp["Id"], ContactId=contact["Id"])
    org.add("OpportunityContactRole", OpportunityId=closed_opp["Id"], ContactId=in_closed_role["Id"])
    source = source_for(tmp_path)
    index = source.deals(date(2025, 1, 1), scope)
    before = source.api_calls

    blocks = source.blocked_addresses(index, scope)

    assert blocks == {
        "taro@example.jp": Reason.OPTED_OUT,  # the opt-out outranks the open deal of another record
        "gone@example.jp": Reason.BOUNCED,
        "both@example.jp": Reason.OPTED_OUT,
        "role@example.jp": Reason.ACTIVE_DEAL,
        "primary@example.jp": Reason.ACTIVE_DEAL,
    }
    # One query for opt-outs and bounces, one for the leads' opt-outs: the open deals' addresses came with
    # deals() (Contact.Email).
    assert source.api_calls - before == 2


def test_a_record_met_before_the_open_deal_record_of_its_address_is_not_mailed(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    """Account scope: a contact role on an open deal, on no account with one, comes last in the pull."""
    from repsend.audience import Audience, Rules

    rep = add_rep(org)
    quiet = org.add("Account", Name="Quiet")
    earlier = add_contact(org, quiet, Email="Shared@Example.jp", OwnerId=rep["Id"], LastActivityDate="2023-01-01")
    later = add_contact(org, None, Email="shared@example.jp", OwnerId=rep["Id"])
    deal = add_opp(org, None, closed=False)
    org.add("OpportunityContactRole", OpportunityId=deal["Id"], ContactId=later["Id"])
    source = source_for(tmp_path)
    rules = Rules(scope="account", dormant_since=date(2025, 1, 1))
    deals = source.deals(rules.dormant_since, "account")
    audience = Audience(source.reps(), deals, source.blocked_addresses(deals, "account"), rules)

    decided = [(c.id, audience.decide(c)) for c in source.contacts()]

    assert [(sid, d.reason, d.detail) for sid, d in decided] == [
        (earlier["Id"], Reason.ACTIVE_DEAL, "on another record"),
        (later["Id"], Reason.ACTIVE_DEAL, ""),
    ]


# -- errors ----------------------------------------------------------------------------------------


def test_failed_login_names_the_user_and_the_domain(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    FakeOrg().install(rsps, login_domain=None)
    rsps.add(
        responses.POST,
        f"https://login.salesforce.com/services/Soap/u/{SOAP_API}",
        body=LOGIN_FAULT,
        status=500,
        content_type="text/xml",
    )
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path).reps()
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith(
        f"Salesforce login failed for {LOGIN} at login.salesforce.com: INVALID_LOGIN: Invalid username, "
        "password, security token; or user locked out."
    )
    assert_no_secret(message)


def test_daily_limit_surfaces_mid_stream(tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg) -> None:
    account = org.add("Account", Name="大口")
    for _ in range(4500):
        add_contact(org, account)
    org.failures.append(("-2000", LIMIT_EXCEEDED))  # the second page
    stream = source_for(tmp_path).contacts()
    got = 0
    with pytest.raises(SFAError) as caught:
        for _ in stream:
            got += 1
    assert got == 2000
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert "daily API request limit is used up" in message and "REQUEST_LIMIT_EXCEEDED" in message
    assert "after it resets" in message
    assert_no_secret(message)


def test_expired_access_token(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = FakeOrg()
    org.install(rsps, login_domain=None)
    org.failures.append(("/query/", SESSION_EXPIRED))
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, TOKEN_ENV).reps()
    message = str(caught.value)
    assert "access token is no longer valid" in message and "set a fresh SF_ACCESS_TOKEN" in message
    assert "INVALID_SESSION_ID" in message
    assert_no_secret(message)


def test_expired_session_with_username_logs_in_again(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    add_rep(org)
    org.failures.append(("/query/", SESSION_EXPIRED))
    source = source_for(tmp_path)
    assert len(source.reps()) == 2
    # the check's query is refused, the login made again, then the check and the users
    assert [c.request.method for c in rsps.calls] == ["POST", "GET", "POST", "GET", "GET"]
    assert source.api_calls == 5


def test_unreachable_login_host(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST,
        f"https://acme.my.salesforce.com/services/Soap/u/{SOAP_API}",
        body=requests.ConnectionError("Max retries exceeded (Name or service not known)"),
    )
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, {**LOGIN_ENV, "SF_DOMAIN": "acme.my"}).reps()
    assert str(caught.value).startswith("cannot reach Salesforce at acme.my.salesforce.com")
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (requests.ConnectionError("Connection reset by peer"), f"cannot reach Salesforce at {INSTANCE}"),
        (requests.ReadTimeout("read timed out"), f"Salesforce at {INSTANCE} did not answer within 300 seconds"),
    ],
)
def test_network_failure_during_a_query_names_the_host(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, failure: Exception, expected: str
) -> None:
    org.failures.append(("/query/", failure))
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, TOKEN_ENV).reps()
    assert str(caught.value).startswith(expected)
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    ("sections", "field", "entity", "key"),
    [
        ({"sfa": {"contact_fields": ["Regoin__c"]}}, "Regoin__c", "Contact", "[sfa] contact_fields"),
        ({"sfa": {"contact_fields": ["Account.Industy"]}}, "Industy", "Account", "[sfa] contact_fields"),
        ({"sfa": {"contact_fields": ["Acount.Industry"]}}, "Acount", "Contact", "[sfa] contact_fields"),
        ({"template": {"language_field": "Languge__c"}}, "Languge__c", "Contact", "[template] language_field"),
    ],
)
def test_unknown_field_is_a_config_error(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, sections: Any, field: str, entity: str, key: str
) -> None:
    add_contact(org, None)
    with pytest.raises(ConfigError) as caught:
        list(source_for(tmp_path, **sections).contacts())
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE
    assert message.startswith(f"{tmp_path / 'repsend.toml'}: {key}: ")
    assert f"no field '{field}' on {entity}" in message
    assert_no_secret(message)


def test_other_salesforce_errors_say_status_and_code(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    org.failures.append(("FROM+User", SERVER_DOWN))
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path).reps()
    assert str(caught.value) == (
        f"Salesforce at {INSTANCE} answered 503 while reading User: "
        "SERVER_UNAVAILABLE: Server is temporarily unavailable"
    )


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ["SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_PRIVATE_KEY_FILE", "SF_USERNAME", "SF_PASSWORD",
              "SF_INSTANCE_URL", "SF_ACCESS_TOKEN", "Logging in to Salesforce"]),
        ({"SF_USERNAME": USERNAME}, ["SF_PASSWORD is not set"]),
        ({"SF_PASSWORD": PASSWORD, "SF_SECURITY_TOKEN": TOKEN}, ["SF_USERNAME is not set"]),
        ({"SF_INSTANCE_URL": f"https://{INSTANCE}"}, ["SF_ACCESS_TOKEN is not set"]),
        ({"SF_ACCESS_TOKEN": ACCESS}, ["SF_INSTANCE_URL is not set"]),
        ({**LOGIN_ENV, "SF_DOMAIN": "acme.lightning.force.com"}, ["SF_DOMAIN", "acme.my"]),
    ],
)
def test_missing_or_wrong_credentials(tmp_path: Path, env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path, env)
    for name in names:
        assert name in str(caught.value)
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"sfa": {"api_version": "v59.0"}}, "[sfa] api_version: expected a version like '64.0'"),
        ({"sfa": {"api_version": "30.0"}}, "[sfa] api_version: 30.0 is retired"),
        ({"sfa": {"contact_fields": ["Account Name"]}}, "[sfa] contact_fields: 'Account Name' is not"),
        ({"template": {"language_field": "Mailing Country"}}, "[template] language_field: 'Mailing Country'"),
    ],
)
def test_config_mistakes_fail_before_any_request(tmp_path: Path, sections: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        source_for(tmp_path, **sections)
    assert expected in str(caught.value)


# -- the Bulk API 2.0 path -------------------------------------------------------------------------


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """simple-salesforce waits for a bulk job with bulk2.sleep: recorded here, never slept."""
    from simple_salesforce import bulk2

    waits: list[float] = []
    monkeypatch.setattr(bulk2, "sleep", waits.append)
    return waits


def build_varied_org(org: FakeOrg) -> None:
    """Contacts whose values test a CSV: commas, quotes, line breaks, empty lookups, nulls, booleans."""
    build_mixed_org(org)
    add_rep(org)
    acct = org.add("Account", Name='株式会社 "テスト", 東京\n本社', Industry="Manufacturing")
    add_contact(
        org, acct, FirstName="Emily, Jr.", LastName='O"Brien', Title="Head of\nSales", HasOptedOutOfEmail=True,
        LastActivityDate="2024-12-01", MailingCountry="United States", Department="R&D", Region__c="APAC",
    )
    add_contact(org, acct, IsEmailBounced=True, Email=None, FirstName=None, CreatedDate="2021-01-31T23:59:59.000+0000")
    add_contact(org, None, Title="true", LastName="false", MailingCountry="日本")  # text that looks boolean


def pull(
    tmp_path: Path, threshold: int, scope: str = "account", fields: Any = None, **tuning: Any
) -> tuple[SalesforceSource, list[Contact]]:
    """All contacts, with [sfa] bulk_threshold; ``tuning`` sets bulk_page or bulk_wait on the source."""
    extra = ["Department", "Account.Industry", "Region__c"] if fields is None else fields
    sfa = {"bulk_threshold": threshold, "contact_fields": extra}
    source = source_for(tmp_path, sfa=sfa, audience={"active_deal_scope": scope})
    for name, value in tuning.items():
        setattr(source, name, value)
    return source, list(source.contacts())


@pytest.mark.parametrize("scope", ["account", "contact_role"])
def test_bulk_gives_the_same_contacts_as_rest_in_the_same_order(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float], scope: str
) -> None:
    build_varied_org(org)
    rest_source, by_rest = pull(tmp_path, 0, scope)
    bulk_source, by_bulk = pull(tmp_path, 1, scope)

    assert (rest_source.contact_api, bulk_source.contact_api) == ("rest", "bulk2")
    assert len(by_bulk) == len(org.tables["Contact"])
    assert by_bulk == by_rest  # every field, the extra ones too, and the open-deal-first order
    quoted = next(c for c in by_bulk if c.first_name == "Emily, Jr.")
    assert (quoted.last_name, quoted.title, quoted.opted_out) == ('O"Brien', "Head of\nSales", True)
    assert quoted.account_name == '株式会社 "テスト", 東京\n本社'
    assert quoted.extra == {"Department": "R&D", "Account.Industry": "Manufacturing", "Region__c": "APAC"}
    assert any(c.bounced and c.email == "" and c.created == date(2021, 1, 31) for c in by_bulk)
    assert len(slept) == len(CONTACT_PARTS[scope])  # one wait per job, none of it real


def test_bulk_calls_count_and_shapes(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float]
) -> None:
    open_acct, quiet_acct = org.add("Account", Name="Open"), org.add("Account", Name="Quiet")
    add_opp(org, open_acct, closed=False)
    for account, n in ((open_acct, 30), (quiet_acct, 120), (None, 0)):
        for _ in range(n):
            add_contact(org, account)
    source, contacts = pull(tmp_path, 100, bulk_page=50)

    assert len(contacts) == 150
    sizes = (30, 120, 0)  # open deals, no open deal, no account
    sets = [max(1, math.ceil(n / 50)) for n in sizes]  # an empty result is still one results call
    assert source.contact_count == 150
    assert source.api_calls == len(rsps.calls) == 1 + CHECK + 1 + sum(2 + k for k in sets)  # login, COUNT(), jobs
    kinds = [kind for kind, _ in org.answered]
    assert kinds == ["query", "count"] + sum((["bulk-create", "bulk-poll"] + ["bulk-results"] * k for k in sets), [])
    creates = [c.request for c in rsps.calls if c.request.method == "POST" and "/jobs/query" in c.request.url]
    assert [json.loads(r.body)["operation"] for r in creates] == ["query"] * 3
    assert all(r.headers["Authorization"] == f"Bearer {SESSION}" for r in creates)
    results = [c for c in rsps.calls if "/results" in c.request.url]
    assert all("maxRecords=50" in c.request.url for c in results)
    assert [c.response.headers["Sforce-Locator"] != "null" for c in results] == [False, True, True, False, False]
    assert [c.response.headers["Sforce-NumberOfRecords"] for c in results] == ["30", "50", "50", "20", "0"]
    assert "locator=" in results[2].request.url and "locator=" not in results[1].request.url
    assert slept == [BULK_WAIT] * 3


def test_bulk_polls_until_the_job_completes_without_sleeping(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float]
) -> None:
    add_contact(org, None)
    org.bulk_polls_in_progress = 2
    source, contacts = pull(tmp_path, 1, bulk_wait=0.5)
    assert len(contacts) == 1
    polls = [kind for kind, _ in org.answered].count("bulk-poll")
    assert polls == 3 * len(CONTACT_PARTS["account"])
    # simple-salesforce: sleep(wait) first, then wait + e**n/1000 while that stays under 2 seconds
    assert slept[:3] == pytest.approx([0.5, 0.501, 0.5 + math.e / 1000])


def test_below_the_threshold_costs_one_count_then_rest(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg
) -> None:
    for _ in range(3):
        add_contact(org, None)
    source, contacts = pull(tmp_path, 4)
    assert (len(contacts), source.contact_count, source.contact_api) == (3, 3, "rest")
    assert org.queries[CHECK] == "SELECT COUNT() FROM Contact"
    assert not org.jobs
    assert source.api_calls == 1 + CHECK + 1 + len(CONTACT_PARTS["account"])


def test_no_threshold_no_count(tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg) -> None:
    add_contact(org, None)
    source, _ = pull(tmp_path, 0)
    assert source.contact_count is None and not any("COUNT()" in q for q in org.queries)


def test_failed_bulk_job_is_a_service_error(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float]
) -> None:
    add_contact(org, None)
    org.bulk_failure = "InvalidBatch : Failed to process query: UNKNOWN_EXCEPTION: An unexpected error occurred"
    with pytest.raises(SFAError) as caught:
        pull(tmp_path, 1)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith(f"Salesforce at {INSTANCE}: the Bulk API 2.0 job reading Contact failed: InvalidBatch")
    assert "UNKNOWN_EXCEPTION" in message and "bulk_threshold = 0" in message
    assert_no_secret(message)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (LIMIT_EXCEEDED, "daily API request limit is used up"),
        ((400, [{"errorCode": "ExceededQuota", "message": "Query job limit exceeded"}]), "Bulk API 2.0 allowance"),
        (SESSION_EXPIRED, "refused the session during the Bulk API 2.0 pull of Contact"),
    ],
)
def test_bulk_refusals_are_service_errors(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float], failure: Any, expected: str
) -> None:
    add_contact(org, None)
    org.failures.append(("/jobs/query", failure))
    with pytest.raises(SFAError) as caught:
        pull(tmp_path, 1)
    assert caught.value.exit_code == EXIT_SERVICE
    assert expected in str(caught.value)
    assert_no_secret(str(caught.value))


def test_bulk_answer_in_an_unexpected_shape_is_a_service_error(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float]
) -> None:
    add_contact(org, None)
    org.failures.append(("/results", (200, "<html>a proxy's page</html>")))  # no Sforce-NumberOfRecords
    with pytest.raises(SFAError) as caught:
        pull(tmp_path, 1)
    assert "answered the Bulk API 2.0 in an unexpected shape while reading Contact (KeyError" in str(caught.value)


def test_bulk_unknown_field_is_a_config_error(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float]
) -> None:
    add_contact(org, None)
    with pytest.raises(ConfigError) as caught:
        pull(tmp_path, 1, fields=["Regoin__c"])
    assert "[sfa] contact_fields: Salesforce has no field 'Regoin__c' on Contact" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Job failure. Response content: OrderedDict([('id', '7505g0000000001AAA'), ('state', 'Aborted')])",
            "job reading Contact was aborted",
        ),
        ("Job failure. Response content: {'id': '750', 'state': 'Aborted'}", "job reading Contact was aborted"),
        ("Job timeout. Job status: InProgress", "did not finish within a day (state InProgress)"),
    ],
)
def test_bulk_job_ends_in_words(tmp_path: Path, text: str, expected: str) -> None:
    from simple_salesforce.exceptions import SalesforceOperationError

    error = source_for(tmp_path)._explain(SalesforceOperationError(text), "Contact", bulk=True)
    assert isinstance(error, SFAError) and expected in str(error) and "OrderedDict" not in str(error)


def test_bulk_results_sets_are_read_as_an_export_is(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float]
) -> None:
    """Headers in capitals after a BOM (as Data Loader writes them) and a NUL, which simple-salesforce drops."""
    build_varied_org(org)
    add_contact(org, None, FirstName="Nul")
    _, by_rest = pull(tmp_path, 0)

    def edit(text: str) -> str:
        header, _, records = text.partition("\n")
        return "\ufeff" + header.upper() + "\n" + records.replace('"Nul"', '"N\x00ul"')

    org.bulk_results_edit = edit
    source, by_bulk = pull(tmp_path, 1)

    assert source.contact_api == "bulk2"
    assert by_bulk == by_rest
    assert any(c.first_name == "Nul" for c in by_bulk)
    bodies = [c.response.content for c in rsps.calls if "/results" in c.request.url]
    assert any(b"N\x00ul" in body and b'"ACCOUNT.NAME"' in body for body in bodies)


@pytest.mark.parametrize("body", ["", "\r\n"])
def test_a_bulk_results_set_of_no_records_may_have_no_header(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float], body: str
) -> None:
    """Contacts without accounts only: the first two parts hold none, and their sets say so as they like."""
    alone = add_contact(org, None)
    org.bulk_results_edit = lambda text: text if text.count("\n") > 1 else body
    source, contacts = pull(tmp_path, 1)
    assert [c.id for c in contacts] == [alone["Id"]]
    sets = [c.response.text for c in rsps.calls if "/results" in c.request.url]
    assert sets[:2] == [body, body] and alone["Id"] in sets[2]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda text: text.replace('"solo@example.com"', '"solo@example.com","x"'),
         ":2: 16 fields where the header has 15"),
        (lambda text: text.replace('"true"', '"yes"', 1), ":2: IsEmailBounced: 'yes' is not a boolean"),
        (lambda text: text.replace('"2022-04-08T01:15:00.000Z"', '"2022-04-31T01:15:00.000Z"'),
         ":2: CreatedDate: '2022-04-31T01:15:00.000Z' is not a date that exists"),
        (lambda text: text.replace('"solo@example.com"', '"solo@"example.com"'), ":2: malformed CSV"),
        (lambda text: text.replace('"Title"', '"Titel"'), ":1: missing required column Title"),
    ],
    ids=["a field too many", "a boolean", "a date", "a stray quote", "a field missing"],
)
def test_malformed_bulk_results_set_is_a_service_error(
    tmp_path: Path, rsps: responses.RequestsMock, org: FakeOrg, slept: list[float], edit: Any, expected: str
) -> None:
    add_contact(org, None, Email="solo@example.com", IsEmailBounced=True)
    org.bulk_results_edit = edit
    with pytest.raises(SFAError) as caught:
        pull(tmp_path, 1, fields=["Department", "Region__c"])
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_SERVICE
    assert message.startswith(
        f"Salesforce at {INSTANCE} answered the Bulk API 2.0 in an unexpected shape while reading Contact "
        f"(Bulk API 2.0 results set 1{expected}"
    )
    assert message.endswith("set [sfa] bulk_threshold = 0 to read contacts through the REST API instead")
    assert_no_secret(message)


# -- the test double and the import ----------------------------------------------------------------


def test_the_fake_refuses_what_salesforce_refuses() -> None:
    org = FakeOrg()
    sub = "(SELECT ContactId FROM OpportunityContactRole)"
    with pytest.raises(SoqlError, match="not allowed with the 'OR' operator"):
        org.run(f"SELECT Id FROM Contact WHERE AccountId = null OR Id IN {sub}")
    with pytest.raises(SoqlError, match="Maximum 2"):
        org.run(f"SELECT Id FROM Contact WHERE Id IN {sub} AND Id IN {sub} AND Id IN {sub}")
    with pytest.raises(SoqlError, match="duplicate field"):
        org.run("SELECT Id, id FROM Contact")


def test_importing_the_module_loads_neither_simple_salesforce_nor_requests() -> None:
    code = (
        "import sys, repsend.sfa.salesforce; "
        "print(sorted(m for m in ('simple_salesforce', 'requests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
