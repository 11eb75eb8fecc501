"""What the Salesforce API user may see, and the opt-outs of leads: both fail closed.

Every query runs under the API user's sharing, so a user without "View All" sees only what is shared with
it: an open deal it cannot see is an open deal repsend cannot see. The source checks the user's permission
sets before the first read; ``FakeOrg`` answers that query (PermissionSet with its ObjectPerms and
Assignments subqueries, the semi-join over PermissionSetAssignment) as Salesforce would, through
simple-salesforce and ``responses``, and refuses what Salesforce refuses (a setup object the user may not
query is INVALID_TYPE).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import responses
from typer.testing import CliRunner

from repsend.audience import Audience, Rules
from repsend.cli import app
from repsend.errors import EXIT_SERVICE, EXIT_USAGE, ConfigError, SFAError
from repsend.models import Reason, id15
from repsend.selection import RunOptions, Summary, select
from repsend.sfa.base import LEAD_DETAIL
from repsend.sfa.salesforce import LEAD_OPT_OUT_SOQL, SOAP_RETIRING
from tests.helpers import TEMPLATES, write_config
from tests.sf_answers import (
    API,
    API_USER_ID,
    API_USERNAME,
    INSTANCE,
    LIMIT_EXCEEDED,
    SERVER_DOWN,
    FakeOrg,
    SoqlError,
)
from tests.test_salesforce import (
    LOGIN,
    LOGIN_ENV,
    TOKEN_ENV,
    add_contact,
    add_opp,
    add_rep,
    assert_no_secret,
    make_settings,
    source_for,
)

ALLOW = {"partial_visibility": "allow"}
GRANT = "grant View All Data, or View All on Contact, Opportunity and Lead, to integration@acme.example"


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def installed(rsps: responses.RequestsMock, login_domain: str | None = "login", **options: Any) -> FakeOrg:
    org = FakeOrg(**options)
    org.install(rsps, login_domain=login_domain)
    return org


@pytest.fixture
def standard(rsps: responses.RequestsMock) -> FakeOrg:
    """An org whose API user's profile reads Contact, Opportunity and Lead but has no View All of any kind."""
    return installed(rsps, view_all_data=False)


def checks(org: FakeOrg) -> list[str]:
    return [q for q in org.queries if "FROM PermissionSet" in q]


# -- who sees everything ---------------------------------------------------------------------------


def view_all_on_profile(*objects: str) -> Callable[[FakeOrg], None]:
    """View All on these objects in the profile's own permission set (Setup > Profiles > Object Settings)."""

    def grant(org: FakeOrg) -> None:
        assert org.profile_set is not None
        for perm in org.tables["ObjectPermissions"].values():
            if perm["ParentId"] == org.profile_set["Id"] and perm["SobjectType"] in objects:
                perm["PermissionsViewAllRecords"] = True

    return grant


def both(*grants: Callable[[FakeOrg], Any]) -> Callable[[FakeOrg], None]:
    def grant(org: FakeOrg) -> None:
        for g in grants:
            g(org)

    return grant


EVERYTHING = ("Contact", "Opportunity", "Lead")

SEES_EVERYTHING = {
    "View All Data, profile": lambda org: org.profile_set.update(PermissionsViewAllData=True),
    "View All Data, permission set": lambda org: org.permission_set("Integration", view_all_data=True),
    "View All Data, permission set group": lambda org: org.permission_set("Sales Ops", view_all_data=True, group=True),
    "View All on each, profile": view_all_on_profile(*EVERYTHING),
    "View All on each, permission set": lambda org: org.permission_set(view_all=EVERYTHING),
    "View All, profile and two permission sets": both(
        view_all_on_profile("Contact"),
        lambda org: org.permission_set("Deals", view_all=("Opportunity",)),
        lambda org: org.permission_set("Leads", view_all=("Lead",)),
    ),
}


@pytest.mark.parametrize("grant", list(SEES_EVERYTHING.values()), ids=list(SEES_EVERYTHING))
def test_a_user_who_sees_everything_is_checked_once_and_reads_on(
    tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg, grant: Callable[[FakeOrg], Any]
) -> None:
    grant(standard)
    rep = add_rep(standard)
    add_contact(standard, None, OwnerId=rep["Id"])
    source = source_for(tmp_path)

    source.reps()
    deals = source.deals(date(2025, 1, 1), "account")
    source.blocked_addresses(deals, "account")
    assert len(list(source.contacts())) == 1

    (check,) = checks(standard)  # once, before the first read, whatever is asked after it
    assert standard.queries[0] == check
    assert "Assignee.Username = 'integration@acme.example'" in check
    assert "SobjectType IN ('Contact', 'Opportunity', 'Lead')" in check
    assert source.notes == [SOAP_RETIRING]  # the username login says it is being retired, nothing else


SEES_TOO_LITTLE = {
    "Read only": (lambda org: None, "Contact, Opportunity (nor its contact roles) and Lead", "it has neither"),
    "View All on Contact and Lead": (
        lambda org: org.permission_set(view_all=("Contact", "Lead")),
        "Opportunity (nor its contact roles)",
        "it has View All on Contact and Lead only",
    ),
    "View All on Contact and Opportunity": (
        view_all_on_profile("Contact", "Opportunity"),
        "Lead",
        "it has View All on Contact and Opportunity only",
    ),
    "View All Data, session-based": (
        lambda org: org.permission_set("Break Glass", view_all_data=True, session_based=True),
        "Contact, Opportunity (nor its contact roles) and Lead",
        "it has neither",
    ),
    "View All Data, another user's": (
        lambda org: org.permission_set("Admins", view_all_data=True, assignee=add_rep(org)["Id"]),
        "Contact, Opportunity (nor its contact roles) and Lead",
        "it has neither",
    ),
    "Modify All, not View All": (
        lambda org: org.add("ObjectPermissions", ParentId=org.permission_set("Edit")["Id"], SobjectType="Opportunity",
                            PermissionsRead=True, PermissionsViewAllRecords=False, PermissionsModifyAllRecords=False),
        "Contact, Opportunity (nor its contact roles) and Lead",
        "it has neither",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("grant", "unseen", "has"), list(SEES_TOO_LITTLE.values()), ids=list(SEES_TOO_LITTLE))
def test_a_user_who_may_miss_records_stops_the_run_before_anything_is_read(
    tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg, grant: Callable[[FakeOrg], Any], unseen: str,
    has: str,
) -> None:
    grant(standard)
    add_contact(standard, None)
    source = source_for(tmp_path)

    with pytest.raises(ConfigError) as caught:
        source.reps()

    message = str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE
    assert message.startswith(f"Salesforce: the API user {API_USERNAME} may not see every {unseen}, ")
    assert f"{GRANT} through its profile or a permission set ({has}); " in message
    assert message.endswith('or set [sfa] partial_visibility = "allow" to run on what it sees')
    assert standard.queries == checks(standard)  # no user, deal or contact was read
    assert_no_secret(message)


def test_without_lead_opt_outs_view_all_on_contact_and_opportunity_is_enough(
    tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg
) -> None:
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path, sfa={"lead_opt_outs": False}).reps()
    assert str(caught.value) == (
        "Salesforce: the API user integration@acme.example may not see every Contact and Opportunity (nor its "
        "contact roles), and what it cannot see would stop no mail: grant View All Data, or View All on Contact "
        "and Opportunity, to integration@acme.example through its profile or a permission set (it has neither); "
        'or set [sfa] partial_visibility = "allow" to run on what it sees'
    )
    assert "SobjectType IN ('Contact', 'Opportunity')" in checks(standard)[0]

    view_all_on_profile("Contact", "Opportunity")(standard)
    standard.forget()
    source = source_for(tmp_path, sfa={"lead_opt_outs": False})
    source.blocked_addresses(source.deals(date(2025, 1, 1), "account"), "account")
    assert len(checks(standard)) == 1 and not any("FROM Lead" in q for q in standard.queries)


def test_every_way_in_checks_first(tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg) -> None:
    """Whichever question comes first (a test, a tool, preview), nothing is read before the check."""
    asks: list[Callable[[Any], Any]] = [
        lambda s: s.reps(),
        lambda s: s.deals(date(2025, 1, 1), "account"),
        lambda s: s.blocked_addresses(s.deals(date(2025, 1, 1), "account"), "account"),
        lambda s: next(iter(s.contacts())),
    ]
    for ask in asks:
        standard.forget()
        with pytest.raises(ConfigError, match="may not see every"):
            ask(source_for(tmp_path))
        assert standard.queries == checks(standard)


def test_partial_visibility_allow_runs_on_what_it_sees_and_says_so_once(
    tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg
) -> None:
    standard.permission_set(view_all=("Contact",))
    rep = add_rep(standard)
    add_contact(standard, None, OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    settings = make_settings(tmp_path, sfa=ALLOW, template={"dir": str(TEMPLATES)})
    source = source_for(tmp_path, sfa=ALLOW)
    summary = Summary()

    decisions = list(select(settings, source, RunOptions(date(2026, 6, 1), "dormant", "dormant"), None, summary))

    assert [d.reason for d in decisions] == [Reason.DORMANT]
    assert source.notes == [
        SOAP_RETIRING,
        "Salesforce: the API user integration@acme.example has neither View All Data nor View All on Opportunity "
        "and Lead: it may not see every Opportunity (nor its contact roles) and Lead, and what it cannot see stops "
        'no mail ([sfa] partial_visibility = "allow")'
    ]
    assert len(checks(standard)) == 1


def test_partial_visibility_allow_says_nothing_when_there_is_nothing_to_say(
    tmp_path: Path, rsps: responses.RequestsMock
) -> None:
    installed(rsps)
    source = source_for(tmp_path, sfa=ALLOW)
    source.reps()
    assert source.notes == [SOAP_RETIRING]  # the username login says it is being retired, nothing else


# -- who the API user is ---------------------------------------------------------------------------


def test_an_access_token_user_is_found_through_the_identity_url(
    tmp_path: Path, rsps: responses.RequestsMock
) -> None:
    """No login to say who it is: the REST API's root lists the identity URL, which ends in the user's Id;
    the check then names the user by the Username its assignments give."""
    org = installed(rsps, login_domain=None, view_all_data=False)
    source = source_for(tmp_path, TOKEN_ENV)
    with pytest.raises(ConfigError) as caught:
        source.reps()
    identity, check = (call for call in rsps.calls)
    assert identity.request.url == f"https://{INSTANCE}/services/data/v{API}/"
    assert identity.response.json()["identity"] == f"https://{INSTANCE}/id/00D5g000004XYZ/{API_USER_ID}"
    assert f"AssigneeId = '{API_USER_ID}'" in checks(org)[0]
    assert f"{GRANT} through its profile" in str(caught.value)
    assert_no_secret(str(caught.value))


def test_the_user_is_named_by_its_own_assignment_not_anothers(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    """A permission set is assigned to many users: only the API user's assignment names it."""
    org = installed(rsps, login_domain=None, api_user=None)
    other = add_rep(org, Username="k.sato@acme.example")
    me = add_rep(org, Username=API_USERNAME, Email=API_USERNAME)
    org.api_user_id = me["Id"]
    shared = org.permission_set("Sales", view_all=("Contact",), assignee=other["Id"])  # the other's comes first
    org.add("PermissionSetAssignment", AssigneeId=me["Id"], PermissionSetId=shared["Id"])
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path, TOKEN_ENV).reps()
    assert f"{GRANT} through its profile or a permission set (it has View All on Contact only)" in str(caught.value)
    assert "k.sato" not in str(caught.value)


def test_an_access_token_user_who_sees_everything(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = installed(rsps, login_domain=None)
    add_rep(org)
    source = source_for(tmp_path, TOKEN_ENV)
    assert len(source.reps()) == 2 and source.api_calls == 3  # identity, check, users


def test_an_access_token_whose_user_cannot_be_named_fails_closed(
    tmp_path: Path, rsps: responses.RequestsMock
) -> None:
    org = installed(rsps, login_domain=None)
    org.identity = ""  # a root without an identity URL: a proxy's, or a changed API
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path, TOKEN_ENV).reps()
    assert str(caught.value) == (
        f"Salesforce: cannot check what the API user of SF_ACCESS_TOKEN sees: Salesforce at {INSTANCE} did not "
        f"name it (no identity URL in /services/data/v{API}/); check SF_INSTANCE_URL; or set [sfa] "
        'partial_visibility = "allow" to run on what it sees'
    )
    assert org.queries == []


def test_a_username_with_a_quote_is_a_soql_string(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = installed(rsps, api_user="o'brien\\ops@acme.example")
    env = {**LOGIN_ENV, "SF_USERNAME": "O'Brien\\ops@acme.example"}  # SOQL compares text case-insensitively
    source_for(tmp_path, env).reps()
    assert "Assignee.Username = 'O\\'Brien\\\\ops@acme.example'" in checks(org)[0]


# -- when the check cannot be made -----------------------------------------------------------------


def test_a_user_who_may_not_read_its_permission_sets_fails_closed(
    tmp_path: Path, rsps: responses.RequestsMock
) -> None:
    """PermissionSetAssignment needs "View Setup and Configuration": without it Salesforce says the object
    does not exist, and the run cannot know what the user sees."""
    org = installed(rsps)
    org.hidden.add("PermissionSetAssignment")
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path).reps()
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value) == (
        "Salesforce: cannot check what the API user integration@acme.example sees: Salesforce refused to read its "
        "permission sets (INVALID_TYPE: sObject type 'PermissionSetAssignment' is not supported.); give it \"View "
        'Setup and Configuration" so that repsend can check (reading PermissionSetAssignment needs it, or "Assign '
        'Permission Sets" or "Manage Users"); or set [sfa] partial_visibility = "allow" to run on what it sees'
    )
    assert org.queries == checks(org)


@pytest.mark.parametrize(
    "failure",
    [
        (400, [{"errorCode": "INVALID_FIELD", "message": "\nSELECT Id, PermissionsViewAllData\n^\nERROR at Row:1:"
                "Column:12\nNo such column 'HasActivationRequired' on entity 'PermissionSet'. If you are attempting "
                "to use a custom field, be sure to append the '__c' after the custom field name."}]),
        (403, [{"errorCode": "INSUFFICIENT_ACCESS", "message": "insufficient access rights on object id"}]),
    ],
    ids=["INVALID_FIELD", "INSUFFICIENT_ACCESS"],
)  # fmt: skip
def test_any_refusal_of_the_check_fails_closed_and_allow_runs_saying_why(
    tmp_path: Path, rsps: responses.RequestsMock, failure: Any
) -> None:
    org = installed(rsps)
    code = failure[1][0]["errorCode"]
    org.failures.append(("FROM+PermissionSet", failure))
    with pytest.raises(ConfigError) as caught:
        source_for(tmp_path).reps()
    message = str(caught.value)
    assert f"cannot check what the API user integration@acme.example sees: Salesforce refused to read its " \
           f"permission sets ({code}: " in message  # fmt: skip
    assert "SELECT" not in message and "__c" not in message  # the SOQL echo and the custom-field advice
    # a refusal to read the setup objects asks for the permission that reads them; a field, not
    assert ('"View Setup and Configuration"' in message) == (code == "INSUFFICIENT_ACCESS")

    org.failures.append(("FROM+PermissionSet", failure))
    source = source_for(tmp_path, sfa=ALLOW)
    assert len(source.reps()) == 1
    (soap, note) = source.notes
    assert soap == SOAP_RETIRING
    assert note.startswith(f"Salesforce: cannot check what the API user {LOGIN} sees: Salesforce refused")
    assert note.endswith(
        "; it may not see every Contact, Opportunity (nor its contact roles) and Lead, and what it cannot see "
        'stops no mail ([sfa] partial_visibility = "allow")'
    )


@pytest.mark.parametrize(
    ("failure", "expected"),
    [(LIMIT_EXCEEDED, "daily API request limit is used up"), (SERVER_DOWN, "answered 503 while reading PermissionSet")],
)
def test_a_service_failure_during_the_check_stays_a_service_error(
    tmp_path: Path, rsps: responses.RequestsMock, failure: Any, expected: str
) -> None:
    """Not a refusal to check: "allow" accepts a user who may see less, never an org that did not answer."""
    org = installed(rsps)
    org.failures.append(("FROM+PermissionSet", failure))
    with pytest.raises(SFAError) as caught:
        source_for(tmp_path, sfa=ALLOW).reps()
    assert caught.value.exit_code == EXIT_SERVICE and expected in str(caught.value)


# -- the opt-outs of leads -------------------------------------------------------------------------


def test_a_lead_that_opted_out_blocks_the_contacts_with_its_address(
    tmp_path: Path, rsps: responses.RequestsMock
) -> None:
    org = installed(rsps)
    rep = add_rep(org)
    hanako = add_contact(org, None, Email="h.yamada@example.co.jp", OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    converted = add_contact(org, None, Email="k.ito@example.jp", OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    still = add_contact(org, None, Email="s.mori@example.jp", OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    org.add("Lead", LastName="山田", Company="サンプル", Email=" H.Yamada@Example.co.jp", HasOptedOutOfEmail=True,
            IsConverted=False)
    # converted into a contact that does not carry the opt-out: the lead's flag is the only record of it
    org.add("Lead", LastName="伊藤", Company="伊藤商店", Email="k.ito@example.jp", HasOptedOutOfEmail=True,
            IsConverted=True, ConvertedContactId=converted["Id"])
    org.add("Lead", LastName="森", Company="森", Email="s.mori@example.jp", HasOptedOutOfEmail=False, IsConverted=False)
    org.add("Lead", LastName="無", Company="無", Email=None, HasOptedOutOfEmail=True, IsConverted=False)
    source = source_for(tmp_path)
    rules = Rules(scope="account", dormant_since=date(2025, 1, 1))
    deals = source.deals(rules.dormant_since, "account")
    before = source.api_calls

    blocks = source.blocked_addresses(deals, "account")

    assert blocks == {"h.yamada@example.co.jp": Reason.OPTED_OUT, "k.ito@example.jp": Reason.OPTED_OUT}
    assert source.api_calls - before == 2  # the contacts' opt-outs and bounces, and the leads'
    assert LEAD_OPT_OUT_SOQL in org.queries
    audience = Audience(source.reps(), deals, blocks, rules)
    decided = {c.id: audience.decide(c) for c in source.contacts()}
    assert (decided[hanako["Id"]].reason, decided[hanako["Id"]].detail) == (Reason.OPTED_OUT, LEAD_DETAIL)
    assert (decided[converted["Id"]].reason, decided[converted["Id"]].detail) == (Reason.OPTED_OUT, LEAD_DETAIL)
    assert decided[still["Id"]].reason is Reason.DORMANT


def test_lead_opt_outs_off_reads_no_lead(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = installed(rsps)
    add_contact(org, None, Email="h.yamada@example.co.jp")
    org.add("Lead", LastName="山田", Email="h.yamada@example.co.jp", HasOptedOutOfEmail=True, IsConverted=False)
    org.hidden.add("Lead")  # would fail if it were read
    source = source_for(tmp_path, sfa={"lead_opt_outs": False})
    assert source.blocked_addresses(source.deals(date(2025, 1, 1), "account"), "account") == {}
    assert not any("Lead" in q for q in org.queries if "FROM PermissionSet" not in q)


def test_lead_opt_outs_come_in_pages_never_per_address(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    org = installed(rsps)
    for n in range(4500):
        org.add("Lead", LastName=f"L{n}", Email=f"lead{n}@example.jp", HasOptedOutOfEmail=True, IsConverted=n % 2 == 0)
    source = source_for(tmp_path)
    deals = source.deals(date(2025, 1, 1), "account")
    before = source.api_calls
    blocks = source.blocked_addresses(deals, "account")
    assert len(blocks) == 4500 and set(blocks.details.values()) == {LEAD_DETAIL}
    assert source.api_calls - before == 1 + 3  # the contacts' one page, the leads' three


@pytest.mark.parametrize(
    ("hide", "failure", "said"),
    [
        ("Lead", None, "INVALID_TYPE: sObject type 'Lead' is not supported."),
        (None, (400, [{"errorCode": "INVALID_FIELD", "message": "\nSELECT Email FROM Lead\n^\nERROR at Row:1:Column:"
                       "27\nNo such column 'HasOptedOutOfEmail' on entity 'Lead'. If you are attempting to use a "
                       "custom field, be sure to append the '__c' after the custom field name."}]),
         "INVALID_FIELD: No such column 'HasOptedOutOfEmail' on entity 'Lead'."),
    ],
    ids=["no Read on Lead", "Email Opt Out hidden"],
)  # fmt: skip
def test_leads_the_user_may_not_read_stop_the_run(
    tmp_path: Path, rsps: responses.RequestsMock, hide: str | None, failure: Any, said: str
) -> None:
    org = installed(rsps)
    if hide:
        org.hidden.add(hide)
    if failure:
        org.failures.append(("FROM+Lead", failure))
    source = source_for(tmp_path, sfa=ALLOW)  # "allow" is about records the user may miss, not a whole object
    with pytest.raises(ConfigError) as caught:
        source.blocked_addresses(source.deals(date(2025, 1, 1), "account"), "account")
    assert str(caught.value) == (
        f"Salesforce: the API user {LOGIN} cannot read the opt-outs of leads ({said}): give it Read on Lead and on "
        "its Email and Email Opt Out fields, or set [sfa] lead_opt_outs = false to not read them"
    )


# -- what a person sees ----------------------------------------------------------------------------


def run_cli(config: Path, *args: str) -> Any:
    # CliRunner sets the environment for the call: the Salesforce login, no REPSEND_CONFIG.
    return CliRunner().invoke(app, ["dormant", *args, "--as-of", "2026-06-01", "--config", str(config)],
                              env={**LOGIN_ENV, "REPSEND_CONFIG": ""})  # fmt: skip


def test_the_dry_run_of_a_user_without_view_all_exits_2_and_decides_nobody(
    tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg
) -> None:
    rep = add_rep(standard)
    add_contact(standard, None, OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    config = write_config(tmp_path, sfa={"kind": "salesforce"})

    result = run_cli(config, "--dry-run", "--json")

    assert result.exit_code == EXIT_USAGE
    assert result.stdout == ""
    assert "may not see every Contact, Opportunity (nor its contact roles) and Lead" in result.stderr
    assert f"{GRANT} through its profile or a permission set (it has neither)" in result.stderr
    assert "Traceback" not in result.stderr
    assert standard.queries == checks(standard)


def test_the_dry_run_with_partial_visibility_allowed_says_it_once(
    tmp_path: Path, rsps: responses.RequestsMock, standard: FakeOrg
) -> None:
    view_all_on_profile("Contact", "Lead")(standard)
    rep = add_rep(standard)
    add_contact(standard, None, OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    open_account = standard.add("Account", Name="商談中")
    add_contact(standard, open_account, OwnerId=rep["Id"], LastActivityDate="2020-01-01")
    add_opp(standard, open_account, closed=False)
    config = write_config(tmp_path, sfa={"kind": "salesforce", "partial_visibility": "allow"})

    result = run_cli(config, "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    assert result.stdout.count('"type": "decision"') == 2
    note = (
        "repsend: note: Salesforce: the API user integration@acme.example has neither View All Data nor View All "
        "on Opportunity: it may not see every Opportunity (nor its contact roles), and what it cannot see stops no "
        'mail ([sfa] partial_visibility = "allow")'
    )
    assert result.stderr.splitlines().count(note) == 1, result.stderr
    assert len(checks(standard)) == 1


# -- the test double -------------------------------------------------------------------------------


def test_the_fake_answers_the_setup_objects_in_salesforces_shapes() -> None:
    org = FakeOrg()
    (profile,) = org.run(
        "SELECT Id, Label, IsOwnedByProfile, Profile.Name, PermissionsViewAllData,"
        " (SELECT SobjectType FROM ObjectPerms), (SELECT Assignee.Username FROM Assignments)"
        f" FROM PermissionSet WHERE Id IN (SELECT PermissionSetId FROM PermissionSetAssignment WHERE AssigneeId = "
        f"'{API_USER_ID}')"
    )
    assert profile["IsOwnedByProfile"] is True and profile["Profile"]["Name"] == "System Administrator"
    assert profile["ObjectPerms"] is None  # no child record: null, not an empty list
    user = {"type": "User", "url": f"/services/data/v{API}/sobjects/User/{API_USER_ID}"}
    assert profile["Assignments"] == {
        "totalSize": 1, "done": True,
        "records": [{"attributes": profile["Assignments"]["records"][0]["attributes"],
                     "Assignee": {"attributes": user, "Username": API_USERNAME}}],
    }  # fmt: skip
    assert profile["Assignments"]["records"][0]["attributes"]["type"] == "PermissionSetAssignment"
    ps = org.permission_set(view_all=("Contact",), read=("Lead",))
    rows = org.run(f"SELECT SobjectType FROM ObjectPermissions WHERE ParentId = '{ps['Id']}' "
                   "AND SobjectType IN ('contact', 'Opportunity')")  # fmt: skip
    assert [r["SobjectType"] for r in rows] == ["Contact"]  # text compares case-insensitively
    assert len(org.run("SELECT Id FROM ObjectPermissions WHERE SobjectType NOT IN ('Contact')")) == 1


def test_the_fake_refuses_what_salesforce_refuses_about_setup_objects() -> None:
    org = FakeOrg()
    with pytest.raises(SoqlError, match="Didn't understand relationship 'ObjectPermissions' in FROM part"):
        org.run("SELECT Id, (SELECT SobjectType FROM ObjectPermissions) FROM PermissionSet")
    with pytest.raises(SoqlError, match="No such column 'PermissionsViewAll' on entity 'ObjectPermissions'"):
        org.run("SELECT Id, (SELECT PermissionsViewAll FROM ObjectPerms) FROM PermissionSet")
    with pytest.raises(SoqlError, match="duplicate field"):
        org.run("SELECT Id, (SELECT Id FROM ObjectPerms), (SELECT Id FROM objectperms) FROM PermissionSet")
    org.hidden.add("PermissionSetAssignment")
    for soql in (
        "SELECT Id FROM PermissionSetAssignment",
        "SELECT Id FROM PermissionSet WHERE Id IN (SELECT PermissionSetId FROM PermissionSetAssignment)",
        "SELECT Id, (SELECT Id FROM Assignments) FROM PermissionSet",
    ):
        with pytest.raises(SoqlError, match="sObject type 'PermissionSetAssignment' is not supported") as caught:
            org.run(soql)
        assert caught.value.code == "INVALID_TYPE"


def test_the_fake_numbers_a_tests_rows_from_one_whatever_the_org_came_with() -> None:
    org = FakeOrg()
    assert add_rep(org)["Id"] == "0055g0000000001AAA"
    assert org.permission_set()["Id"] == "0PS5g0000000001AAA" != org.profile_set["Id"]
    assert {id15(API_USER_ID), id15(add_rep(org)["Id"])} < {id15(i) for i in org.tables["User"]}
