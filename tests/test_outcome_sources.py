"""What outcomes read from the SFA: deals created after a day, with their contact roles, in one query's
pages; the accounts of mailed contacts; from a CSV export the same, or a clear stop without CreatedDate."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import responses

from repsend.errors import InputError
from repsend.models import id15
from repsend.sfa.base import OpenedDeal
from repsend.sfa.csv_export import CsvExportSource
from tests.helpers import OPPORTUNITY_HEADER, contact, deal, write_config, write_csv, write_export
from tests.sf_answers import FakeOrg
from tests.test_salesforce import add_contact, add_opp, add_rep, make_settings, source_for


@pytest.fixture
def org() -> FakeOrg:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeOrg()
        fake.install(rsps)
        yield fake


def test_salesforce_deals_created_since_a_day_with_their_roles(tmp_path: Path, org: FakeOrg) -> None:
    rep = add_rep(org)
    account = org.add("Account", Name="株式会社サンプル")
    buyer = add_contact(org, account, OwnerId=rep["Id"])
    other = add_contact(org, None, OwnerId=rep["Id"])
    old = add_opp(org, account, closed=False, CreatedDate="2026-08-01T00:00:00.000+0000")
    new = add_opp(org, account, closed=False, ContactId=buyer["Id"], CreatedDate="2026-09-10T03:00:00.000+0000")
    org.add("OpportunityContactRole", OpportunityId=new["Id"], ContactId=other["Id"], Role="Decision Maker",
            IsPrimary=False)
    source = source_for(tmp_path)

    found = list(source.opened_deals(date(2026, 9, 1)))

    assert found == [OpenedDeal(id15(new["Id"]), id15(account["Id"]), (id15(buyer["Id"]), id15(other["Id"])),
                                date(2026, 9, 10))]
    assert id15(old["Id"]) not in {d.id for d in found}
    assert len([q for q in org.queries if "FROM Opportunity" in q]) == 1  # one query, roles in a subquery
    assert source.account_ids([buyer["Id"], other["Id"]]) == {id15(buyer["Id"]): id15(account["Id"])}


def test_a_csv_export_reads_created_deals_and_their_roles(tmp_path: Path) -> None:
    rows = [contact(1), contact(2)]
    export = write_export(tmp_path / "export", rows, roles=[{"Id": "00K5g0000000001AAA", "OpportunityId":
                                                             "0065g0000000002AAA", "ContactId": rows[1]["Id"],
                                                             "Role": "", "IsPrimary": "false"}])
    opportunities = [dict(deal(1, rows[0]["AccountId"]), CreatedDate="2026-08-01T00:00:00.000Z"),
                     dict(deal(2, rows[0]["AccountId"]), CreatedDate="2026-09-10T00:00:00.000Z")]
    write_csv(export / "Opportunity.csv", [*OPPORTUNITY_HEADER, "CreatedDate"], opportunities)
    source = CsvExportSource.from_settings(make_settings(tmp_path, sfa={"kind": "csv", "path": str(export)}))

    assert list(source.opened_deals(date(2026, 9, 1))) == [
        OpenedDeal("0065g0000000002", id15(rows[0]["AccountId"]), (id15(rows[1]["Id"]),), date(2026, 9, 10))]
    assert source.account_ids([rows[1]["Id"]]) == {id15(rows[1]["Id"]): id15(rows[1]["AccountId"])}


def test_a_csv_export_without_created_dates_stops_naming_the_column(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", [contact(1)], [deal(1, contact(1)["AccountId"])], roles=[])
    write_config(tmp_path, export)
    source = CsvExportSource.from_settings(make_settings(tmp_path, sfa={"kind": "csv", "path": str(export)}))
    with pytest.raises(InputError, match=r"Opportunity.csv:1: no CreatedDate column"):
        list(source.opened_deals(date(2026, 9, 1)))
