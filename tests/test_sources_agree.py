"""One org, three sources: a Data Loader CSV export, the REST API and the Bulk API 2.0 give the same records.

The org is written once, as data in the REST API's shapes (JSON booleans, null, datetimes ending
``+0000``); ``FakeOrg`` serves it over REST and Bulk 2.0, and ``export`` writes it as Data Loader does
(``true``/``false``, empty for null, ``2025-03-14``, ``2025-03-14T09:30:00.000Z``, ``Account.Name``).
Every source must then answer the four questions of ``base.Source`` alike, whatever it read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import responses

from repsend.audience import Audience, Rules
from repsend.models import Contact, Reason, id15, normalize_email
from repsend.sfa.base import DealIndex, Scope, Source
from repsend.sfa.csv_export import CsvExportSource
from repsend.sfa.salesforce import Credentials, SalesforceSource
from tests.helpers import OPPORTUNITY_HEADER, ROLE_HEADER, USER_HEADER, write_csv
from tests.sf_answers import SCHEMA, FakeOrg

SINCE = date(2025, 1, 1)  # a deal closed or changed on or after this day is recent
EXTRA = ["Department", "Account.Industry", "Region__c", "MailingStreet", "CreatedDate"]
LANGUAGE_FIELD = "MailingCountry"
CONTACT_COLUMNS = [
    "Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate",
    "CreatedDate", "AccountId", "Account.Name", "OwnerId", "Title", "MailingCountry", "Department",
    "Account.Industry", "Region__c", "MailingStreet",
]  # fmt: skip
SCOPES: tuple[Scope, ...] = ("account", "contact_role")


def sfid(prefix: str, n: int) -> str:
    """An 18-character ID in mixed case, as the API gives it (the first 15 are the ID, the rest a checksum)."""
    return f"{prefix}5g0000{n:03d}kQw" + "EAY"


def user(n: int) -> str:
    return sfid("005", n)


def account(n: int) -> str:
    return sfid("001", n)


def contact(n: int) -> str:
    return sfid("003", n)


def opp(n: int) -> str:
    return sfid("006", n)


SATO, CARTER, SUZUKI = user(1), user(2), user(3)

USERS: list[dict[str, Any]] = [
    # A signature typed into Salesforce's text area: a browser sends its line breaks as CRLF.
    dict(Id=SATO, Name="佐藤 健", FirstName="健", LastName="佐藤", Email="k.sato@acme.example", IsActive=True,
         Title="営業部 課長", Phone="03-1234-5678",
         Signature="佐藤 健\r\n株式会社アクメ 営業部 課長\r\nTEL 03-1234-5678\r\n"),
    dict(Id=CARTER, Name="Emily Carter", FirstName="Emily", LastName="Carter", Email="e.carter@acme.example",
         IsActive=True, Title="Account Executive", Phone=None, Signature="Emily Carter, Acme K.K."),
    dict(Id=SUZUKI, Name="鈴木 一郎", FirstName="一郎", LastName="鈴木", Email="i.suzuki@acme.example",
         IsActive=False, Title=None, Phone=None, Signature=None),
]  # fmt: skip

ACCOUNTS: list[dict[str, Any]] = [
    dict(Id=account(1), Name="株式会社サンプル商事", Industry="Manufacturing"),  # an open deal
    dict(Id=account(2), Name="Globex K.K.", Industry="Technology"),  # a deal won recently
    dict(Id=account(3), Name="山田工業株式会社", Industry=None),  # deals closed long ago
    dict(Id=account(4), Name="Initech Pte. Ltd.", Industry="Finance"),  # no deal of its own
    dict(Id=account(5), Name="有限会社みなと", Industry="Retail"),  # edited long ago, closed recently
]


def person(n: int, account_n: int | None, **fields: Any) -> dict[str, Any]:
    """A contact as the REST API answers it: 佐藤's, dormant, in Japan, unless fields say otherwise."""
    row: dict[str, Any] = dict(
        Id=contact(n), FirstName="花子", LastName=f"山田{n}", Email=f"c{n}@example.co.jp", HasOptedOutOfEmail=False,
        IsEmailBounced=False, LastActivityDate="2023-04-01", CreatedDate="2022-04-08T01:15:00.000+0000",
        AccountId=account(account_n) if account_n else None, OwnerId=SATO, Title=None, MailingCountry="Japan",
        Department=None, Region__c=None, MailingStreet=None,
    )  # fmt: skip
    row.update(fields)
    return row


CONTACTS: list[dict[str, Any]] = [
    person(1, 1, FirstName="花子", LastName="山田", Email="h.yamada@example.co.jp", Title="課長",
           LastActivityDate="2024-11-05", MailingCountry="日本", Department="情報システム部", Region__c="Kanto",
           MailingStreet="丸の内1-1-1\r\n東京ビル 12F"),
    person(2, 1, FirstName="Taro", LastName="Suzuki", Email="Taro.Suzuki@Example.jp", HasOptedOutOfEmail=True),
    person(3, 2, FirstName="Wei", LastName="Lim", Email="w.lim@globex.example", IsEmailBounced=True,
           MailingCountry="Singapore", OwnerId=CARTER, Title="true", Department="false"),  # text that looks boolean
    person(4, None, FirstName="次郎", LastName="高橋", Email="j.takahashi@example.jp", Department="経理部",
           CreatedDate="2021-01-31T23:59:59.000+0000"),  # no account: the lookup is null
    person(5, 4, FirstName="Priya", LastName="Nair", Email="p.nair@initech.example", MailingCountry="Singapore",
           OwnerId=CARTER),  # a contact role on the open deal of another account
    person(6, 3, FirstName="三郎", LastName="中村", Email="s.nakamura@yamada-kogyo.example", OwnerId=SUZUKI,
           LastActivityDate=None),
    person(7, 4, FirstName="Ken", LastName="Ito", Email="Shared@Example.jp"),  # one person, two records:
    person(8, None, FirstName="健", LastName="伊藤", Email=" shared@example.jp"),  # this one in the open deal
    person(9, None, FirstName="名無し", LastName="権兵衛", Email=None, MailingCountry=None),
    person(10, 5, FirstName="Anna", LastName="Berg", Email="a.berg@minato.example",
           CreatedDate="2025-05-20T23:59:59.000+0000", MailingCountry="United States", OwnerId=CARTER),
    person(11, 3, FirstName="美咲", LastName="小林", Email="m.kobayashi@yamada-kogyo.example", Title="部長",
           LastActivityDate="2022-12-01", Region__c="Kansai"),
]  # fmt: skip

OPPORTUNITIES: list[dict[str, Any]] = [
    dict(Id=opp(1), Name="基幹システム更新", AccountId=account(1), ContactId=None, IsClosed=False, IsWon=False,
         StageName="Negotiation/Review", CloseDate="2025-09-30", OwnerId=SATO,
         LastModifiedDate="2025-05-12T02:03:04.000+0000"),
    dict(Id=opp(2), Name="Globex renewal", AccountId=account(2), ContactId=contact(3), IsClosed=True, IsWon=True,
         StageName="Closed Won", CloseDate="2025-02-14", OwnerId=CARTER,
         LastModifiedDate="2025-02-15T08:00:00.000+0000"),
    dict(Id=opp(3), Name="工場設備", AccountId=account(3), ContactId=None, IsClosed=True, IsWon=False,
         StageName="Closed Lost", CloseDate="2023-06-30", OwnerId=SATO,
         LastModifiedDate="2023-07-01T00:00:00.000+0000"),
    dict(Id=opp(4), Name="個人案件", AccountId=None, ContactId=contact(4), IsClosed=False, IsWon=False,
         StageName="Prospecting", CloseDate="2025-12-15", OwnerId=SATO,
         LastModifiedDate="2024-10-01T10:00:00.000+0000"),
    dict(Id=opp(5), Name="店舗POS", AccountId=account(5), ContactId=None, IsClosed=True, IsWon=True,
         StageName="Closed Won", CloseDate="2025-03-01", OwnerId=CARTER,
         LastModifiedDate="2024-06-01T09:00:00.000+0000"),
    dict(Id=opp(6), Name="年末案件", AccountId=account(3), ContactId=contact(11), IsClosed=True, IsWon=False,
         StageName="Closed Lost", CloseDate="2024-12-31", OwnerId=SATO,
         LastModifiedDate="2024-12-31T23:59:59.000+0000"),  # the day before SINCE: not recent
]  # fmt: skip

ROLES: list[dict[str, Any]] = [
    dict(Id=sfid("00K", 1), OpportunityId=opp(1), ContactId=contact(5), Role="Evaluator", IsPrimary=False),
    dict(Id=sfid("00K", 2), OpportunityId=opp(1), ContactId=contact(8), Role="Decision Maker", IsPrimary=True),
    dict(Id=sfid("00K", 3), OpportunityId=opp(2), ContactId=contact(6), Role="Influencer", IsPrimary=False),
    dict(Id=sfid("00K", 4), OpportunityId=opp(3), ContactId=contact(7), Role="Technical Buyer", IsPrimary=False),
]


# -- the org, twice ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _mailing_street(monkeypatch: pytest.MonkeyPatch) -> None:
    """Contact.MailingStreet, a real text area, for a multi-line value that every reader must keep."""
    monkeypatch.setitem(SCHEMA, "Contact", (*SCHEMA["Contact"], "MailingStreet"))


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """simple-salesforce waits for a Bulk job with bulk2.sleep: recorded, never slept."""
    from simple_salesforce import bulk2

    waits: list[float] = []
    monkeypatch.setattr(bulk2, "sleep", waits.append)
    return waits


@pytest.fixture
def org() -> Iterator[FakeOrg]:
    fake = FakeOrg(api_user=None)  # 佐藤 is the API user, an admin: the org's users are the export's
    for sobject, rows in (("User", USERS), ("Account", ACCOUNTS), ("Contact", CONTACTS),
                          ("Opportunity", OPPORTUNITIES), ("OpportunityContactRole", ROLES)):  # fmt: skip
        for row in rows:
            fake.add(sobject, **row)
    fake.set_api_user(SATO, username="k.sato@acme.example")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        yield fake


_UTC = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\+0000")


def loader_value(value: Any) -> str:
    """A value as Data Loader writes it: true/false, empty for null, a datetime in UTC ending in Z."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _UTC.sub(r"\1Z", str(value))


def loader_rows(rows: list[dict[str, Any]], id_length: int = 18) -> list[dict[str, str]]:
    """Rows as an export holds them, every ID cut to ``id_length`` (a report export writes 15)."""
    out = []
    for row in rows:
        cells = {}
        for name, value in row.items():
            text = loader_value(value)
            if name.endswith("Id") and len(text) == 18:
                text = text[:id_length]
            cells[name] = text
        out.append(cells)
    return out


def export(folder: Path, opportunity_id_length: int = 18) -> Path:
    """The org as a Data Loader export: User, Contact (Account.Name and Account.Industry through the
    lookup, empty where there is none), Opportunity and OpportunityContactRole."""
    accounts = {a["Id"]: a for a in ACCOUNTS}
    contacts = []
    for row in CONTACTS:
        parent = accounts.get(row["AccountId"], {})
        contacts.append({**row, "Account.Name": parent.get("Name"), "Account.Industry": parent.get("Industry")})
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "User.csv", USER_HEADER, loader_rows(USERS))
    write_csv(folder / "Contact.csv", CONTACT_COLUMNS, loader_rows(contacts))
    write_csv(folder / "Opportunity.csv", OPPORTUNITY_HEADER, loader_rows(OPPORTUNITIES, opportunity_id_length))
    write_csv(folder / "OpportunityContactRole.csv", ROLE_HEADER, loader_rows(ROLES))
    return folder


def csv_source(tmp_path: Path, opportunity_id_length: int = 18) -> CsvExportSource:
    folder = export(tmp_path / f"export{opportunity_id_length}", opportunity_id_length)
    return CsvExportSource(folder, contact_fields=EXTRA, language_field=LANGUAGE_FIELD)


def sf_source(api: str) -> SalesforceSource:
    """The org over REST, or with contacts through the Bulk API 2.0 (any org of 1 contact or more)."""
    return SalesforceSource(
        Credentials(username="k.sato@acme.example", password="Pa55-w0rd!", security_token="Tok3n"),
        contact_fields=EXTRA,
        language_field=LANGUAGE_FIELD,
        bulk_threshold=1 if api == "bulk2" else 0,
        bulk_wait=0.0,
    )


APIS = ("rest", "bulk2")


def without_origin(contacts: Iterable[Contact]) -> dict[str, Contact]:
    """Contacts by Id, ``origin`` blanked (it says where a record came from, so it must differ)."""
    by_id: dict[str, Contact] = {}
    for c in contacts:
        assert c.id not in by_id, f"{c.id} twice"
        by_id[c.id] = dataclasses.replace(c, origin="")
    return by_id


# -- the four questions --------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_reps_agree(tmp_path: Path, org: FakeOrg, api: str) -> None:
    from_file = csv_source(tmp_path).reps()
    from_org = sf_source(api).reps()

    assert from_org == from_file
    assert set(from_file) == {id15(u["Id"]) for u in USERS}
    sato = from_file[id15(SATO)]
    assert sato.signature == "佐藤 健\n株式会社アクメ 営業部 課長\nTEL 03-1234-5678"  # one line break form
    assert (sato.id, sato.name, sato.is_active) == (SATO, "佐藤 健", True)
    assert from_file[id15(CARTER)].phone == "" and from_file[id15(SUZUKI)].is_active is False


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("api", APIS)
def test_deal_index_agrees(tmp_path: Path, org: FakeOrg, api: str, scope: Scope) -> None:
    from_file = csv_source(tmp_path).deals(SINCE, scope)
    from_org = sf_source(api).deals(SINCE, scope)

    assert from_org == from_file
    assert from_file == DealIndex(
        open_accounts={id15(account(1))},
        open_contacts={id15(contact(4)), id15(contact(5)), id15(contact(8))},
        recent_accounts={id15(account(2)), id15(account(5))},
        recent_contacts={id15(contact(3)), id15(contact(6))},
    )


@pytest.mark.parametrize("scope", SCOPES)
def test_deal_index_from_15_character_ids_agrees(tmp_path: Path, org: FakeOrg, scope: Scope) -> None:
    """Opportunity.csv with 15-character Id, AccountId and ContactId (OpportunityContactRole.csv keeps 18)."""
    short = csv_source(tmp_path, opportunity_id_length=15)
    opportunities = (short.folder / "Opportunity.csv").read_text(encoding="utf-8")
    assert f'"{account(1)[:15]}"' in opportunities and account(1) not in opportunities

    assert short.deals(SINCE, scope) == csv_source(tmp_path).deals(SINCE, scope) == sf_source("rest").deals(
        SINCE, scope
    )


def opted_out_and_bounced(blocks: Mapping[str, Reason]) -> dict[str, Reason]:
    return {address: r for address, r in blocks.items() if r in (Reason.OPTED_OUT, Reason.BOUNCED)}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("api", APIS)
def test_opt_outs_and_bounces_block_alike(tmp_path: Path, org: FakeOrg, api: str, scope: Scope) -> None:
    file_source, org_source = csv_source(tmp_path), sf_source(api)
    from_file = file_source.blocked_addresses(file_source.deals(SINCE, scope), scope)
    from_org = org_source.blocked_addresses(org_source.deals(SINCE, scope), scope)

    assert opted_out_and_bounced(from_org) == opted_out_and_bounced(from_file) == {
        "taro.suzuki@example.jp": Reason.OPTED_OUT,
        "w.lim@globex.example": Reason.BOUNCED,
    }


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("api", APIS)
def test_blocked_addresses_agree(tmp_path: Path, org: FakeOrg, api: str, scope: Scope) -> None:
    """Every address the export blocks, the org blocks before any record with it is decided: up front, or
    (in account scope, through an account with an open deal) by yielding that account's contacts first.
    Reading their addresses up front would cost a call per 2,000 of them; the export must read them all."""
    file_source, org_source = csv_source(tmp_path), sf_source(api)
    from_file = file_source.blocked_addresses(file_source.deals(SINCE, scope), scope)
    deals = org_source.deals(SINCE, scope)
    from_org = org_source.blocked_addresses(deals, scope)

    assert from_file["shared@example.jp"] is Reason.ACTIVE_DEAL  # a contact role only, in both scopes
    assert from_file["j.takahashi@example.jp"] is Reason.ACTIVE_DEAL  # only the primary contact of an open deal
    first = learned_first(org_source.contacts(), deals, scope)
    assert {**first, **from_org} == from_file
    if scope == "account":
        assert first == {"h.yamada@example.co.jp": Reason.ACTIVE_DEAL, "taro.suzuki@example.jp": Reason.ACTIVE_DEAL}
        assert "h.yamada@example.co.jp" not in from_org  # account-reached only: left to the order
    else:
        assert first == {} and from_org == from_file


def learned_first(contacts: Iterable[Contact], deals: DealIndex, scope: Scope) -> dict[str, Reason]:
    """The addresses of the records an open deal reaches through their account (account scope), checked to
    come before every other record: the audience learns them as ACTIVE_DEAL before it meets any other."""
    if scope != "account":
        return {}
    learned: dict[str, Reason] = {}
    others = False
    for c in contacts:
        if id15(c.account_id) in deals.open_accounts:
            assert not others, f"{c.id}, in an open deal's account, came after a record that is not"
            if normalize_email(c.email):
                learned[normalize_email(c.email)] = Reason.ACTIVE_DEAL
        else:
            others = True
    return learned


@pytest.mark.parametrize("api", APIS)
def test_contacts_agree(tmp_path: Path, org: FakeOrg, api: str) -> None:
    file_source, org_source = csv_source(tmp_path), sf_source(api)
    from_file = list(file_source.contacts())
    from_org = list(org_source.contacts())

    assert org_source.contact_api == api
    assert without_origin(from_org) == without_origin(from_file)
    assert len(from_file) == len(CONTACTS)
    assert [c.origin for c in from_file] == [f"Contact.csv:{line}" for line in _record_lines(file_source.folder)]
    assert {c.origin for c in from_org} == {f"Salesforce Contact {c.id}" for c in from_file}
    assert file_source.notes == []  # every column was there: nothing read as missing

    by_id = without_origin(from_file)
    hanako = by_id[contact(1)]
    assert hanako == Contact(
        id=contact(1), email="h.yamada@example.co.jp", owner_id=SATO, first_name="花子", last_name="山田",
        account_id=account(1), account_name="株式会社サンプル商事", title="課長", opted_out=False, bounced=False,
        last_activity=date(2024, 11, 5), created=date(2022, 4, 8), language_value="日本",
        extra={"Department": "情報システム部", "Account.Industry": "Manufacturing", "Region__c": "Kanto",
               "MailingStreet": "丸の内1-1-1\r\n東京ビル 12F", "CreatedDate": "2022-04-08T01:15:00.000Z"},
    )  # fmt: skip
    alone = by_id[contact(4)]
    assert (alone.account_id, alone.account_name, alone.extra["Account.Industry"]) == ("", "", "")
    assert alone.created == date(2021, 1, 31)  # the UTC day, as written
    assert (by_id[contact(3)].title, by_id[contact(3)].extra["Department"]) == ("true", "false")
    assert by_id[contact(9)].email == "" and by_id[contact(9)].language_value == ""
    assert by_id[contact(6)].last_activity is None and by_id[contact(6)].account_id == account(3)


def _record_lines(folder: Path) -> list[int]:
    """The editor line each record of Contact.csv starts on (a quoted line break spans two)."""
    lines, line = [], 2
    for row in loader_rows(CONTACTS):
        lines.append(line)
        line += 1 + sum(value.count("\n") for value in row.values())
    return lines


# -- what a run makes of them ----------------------------------------------------------------------------


def decisions(source: Source, scope: Scope) -> dict[str, tuple[Reason, str, str, str]]:
    """Every contact's decision through the one engine: contact id -> (reason, detail, rep id, language)."""
    reps = source.reps()
    deals = source.deals(SINCE, scope)
    blocks = source.blocked_addresses(deals, scope)
    rules = Rules(scope=scope, dormant_since=SINCE, languages={"japan": "ja", "日本": "ja", "singapore": "en",
                                                                "united states": "en"})  # fmt: skip
    audience = Audience(reps, deals, blocks, rules)
    out = {}
    for c in source.contacts():
        d = audience.decide(c)
        out[c.id] = (d.reason, d.detail, d.rep.id if d.rep else "", d.language)
    return out


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("api", APIS)
def test_decisions_agree(tmp_path: Path, org: FakeOrg, api: str, scope: Scope) -> None:
    """Contact 7 (Initech, no open deal of its own) comes from Salesforce before contact 8 (no account, a
    contact role on an open deal) with the same address: active_deal from both, as the role's address is
    blocked up front."""
    from_file = decisions(csv_source(tmp_path), scope)
    assert from_file[contact(7)] == (Reason.ACTIVE_DEAL, "on another record", "", "ja")
    assert decisions(sf_source(api), scope) == from_file
