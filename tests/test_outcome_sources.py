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


def test_replies_from_the_sfa_leave_out_repsend_s_own_tasks(tmp_path: Path, org: FakeOrg) -> None:
    from datetime import UTC, datetime

    from repsend.outcome_sources import activity_outcomes
    from repsend.sendlog import SENT, Attempt

    rep = add_rep(org)
    called = add_contact(org, None, OwnerId=rep["Id"], LastActivityDate="2026-09-01")
    quiet = add_contact(org, None, OwnerId=rep["Id"], LastActivityDate="2026-09-01")
    ours = org.add("Task", WhoId=quiet["Id"], OwnerId=rep["Id"], Subject="Email: ご無沙汰しております",
                   TaskSubtype="Email", CreatedDate="2026-09-01T01:00:05.000+0000")
    org.add("Task", WhoId=called["Id"], OwnerId=rep["Id"], Subject="Call", TaskSubtype="Call",
            CreatedDate="2026-09-04T05:00:00.000+0000")
    mailed = datetime(2026, 9, 1, 1, 0, tzinfo=UTC)
    attempts = [Attempt(id=n, run_id="r", campaign="c", contact_id=c["Id"], address=c["Email"], rep_id=rep["Id"],
                        rep_email=rep["Email"], subject="s", message_id=f"<{n}@x>", template="dormant", language="ja",
                        state=SENT, smtp_code=250, smtp_text="ok", created_at=mailed, finished_at=mailed)
                for n, c in enumerate((called, quiet), 1)]
    source = source_for(tmp_path)

    found = list(activity_outcomes(source.activities([called["Id"], quiet["Id"]], date(2026, 9, 1)), attempts,
                                   own_tasks=[ours["Id"]]))

    # The call on the 4th is a reply; repsend's own Task and a LastActivityDate of the mail's day are not.
    assert [(o.kind, o.contact_id, o.at) for o in found] == [
        ("reply", id15(called["Id"]), datetime(2026, 9, 4, 5, 0, tzinfo=UTC))]
