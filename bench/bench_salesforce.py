"""Salesforce API calls for a whole selection over 100,000 contacts, REST and Bulk API 2.0.

    python bench/bench_salesforce.py [--quick]      # --quick: 20,000 contacts, two shares (a smoke run)

The org is ``tests.sf_answers.FakeOrg``: it evaluates the SOQL repsend sends and answers in Salesforce's
shapes, through simple-salesforce, in-process with ``responses`` (no socket). The whole selection runs:
``repsend.selection.select`` over a ``SalesforceSource``, every contact decided and every mail composed, at 0%,
15%, 50% and 90% of contacts with an open deal. Every HTTP call is counted (``responses``' calls, which
must equal the source's own count) and sorted by kind from the SOQL the fake answered.

The goal: at most ceil(N / 2,000) + a handful calls, the same whatever the open-deal share. The handful
is 10 (issue 12 allows at most the pages + 10): the login, the check of what the API user may see (one
query: its permission sets with their object permissions), the users, the open and recent deals, their
contact roles (both with the address of the contact they name: the open deals' addresses cost no call of
their own), the contacts' opt-outs and bounces, and the leads' opt-outs (one page each here: each costs
one more call per 2,000 of its own records, never per contact or per address), the last partial page of
each of the two extra parts the contact pull is split into (open deal / none / no account: ceil(a) +
ceil(b) + ceil(c) <= ceil(a + b + c) + 2), and the COUNT() that decides for the Bulk API 2.0 when [sfa]
bulk_threshold is set. An access token instead of the username login costs the same: no login, and one
call to the REST API's root for the identity URL that names its user.

The API user here is an integration user with "View All" on Contact, Opportunity and Lead through a
permission set, its profile having Read only: the check reads both.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import responses  # noqa: E402

from repsend.selection import RunOptions, Summary, select  # noqa: E402
from repsend.settings import Settings  # noqa: E402
from repsend.sfa.salesforce import BULK_PAGE, BULK_WAIT, SalesforceSource  # noqa: E402
from tests.sf_answers import FakeOrg, sfid  # noqa: E402

N = 100_000
QUICK_N = 20_000  # and a bulk_threshold of half of it, so that the Bulk API path still runs
PAGE = 2_000  # records per REST query call
HANDFUL = 10
SHARES = (0.0, 0.15, 0.5, 0.9)
PER_ACCOUNT = 100  # contacts per account; 5% of contacts have no account
REPS = 50
AS_OF = date(2025, 6, 2)
BULK_THRESHOLD = 50_000
KINDS = ("login", "check", "users", "opportunities", "roles", "blocked", "leads", "count", "contacts")
API_USER = "bench@acme.example"
LOGIN_ENV = {"SF_USERNAME": API_USER, "SF_PASSWORD": "bench-password", "SF_SECURITY_TOKEN": "tok"}


def build_org(n: int, open_share: float) -> FakeOrg:
    """n contacts, 100 an account (5% without one); open deals on the accounts of ``open_share`` of them.

    Every account has an old closed deal, one in ten a recently closed one; each deal names one contact
    role. 1% of contacts opted out, 0.5% bounced, a third active recently, the rest dormant. Leads: one
    per 100 contacts, a tenth of them opted out (half of those converted, a third at a contact's address).
    """
    org = FakeOrg(api_user=API_USER, view_all_data=False)
    org.permission_set("Repsend Integration", view_all=("Contact", "Opportunity", "Lead"))
    for r in range(1, REPS + 1):
        org.add(
            "User",
            Id=sfid("User", r),
            Name=f"Rep {r}",
            FirstName="Rep",
            LastName=str(r),
            Email=f"rep{r}@acme.example",
            IsActive=r % 10 != 0,
            Signature=f"Rep {r}\nAcme K.K.",
        )
    with_account = n - n // 20
    accounts = [org.add("Account", Name=f"株式会社サンプル{a}") for a in range(with_account // PER_ACCOUNT)]
    open_accounts = round(open_share * n / PER_ACCOUNT)
    assert open_accounts <= len(accounts), "the open share is of contacts with an account"
    for i in range(n):
        account = accounts[i // PER_ACCOUNT] if i < with_account else None
        org.add(
            "Contact",
            FirstName="花子" if i % 3 else "Emily",
            LastName=f"山田{i}",
            Email=f"c{i}@example.co.jp",
            HasOptedOutOfEmail=i % 100 == 7,
            IsEmailBounced=i % 200 == 11,
            LastActivityDate="2025-05-01" if i % 3 == 0 else "2023-04-01",
            CreatedDate="2021-04-08T01:15:00.000+0000",
            AccountId=account["Id"] if account else None,
            OwnerId=sfid("User", 1 + i % REPS),
            Title="部長" if i % 5 == 0 else None,
            MailingCountry="Japan" if i % 4 else "United States",
        )
    for i in range(n // 100):
        opted_out = i % 10 == 3
        org.add(
            "Lead",
            LastName=f"見込{i}",
            Company=f"見込商事{i}",
            Email=f"c{i * 37 % n}@example.co.jp" if opted_out and i % 3 == 0 else f"lead{i}@example.jp",
            HasOptedOutOfEmail=opted_out,
            IsConverted=opted_out and i % 2 == 0,
        )
    contacts = list(org.tables["Contact"])
    for a, account in enumerate(accounts):
        first_contact = contacts[a * PER_ACCOUNT]
        deals = [dict(IsClosed=True, CloseDate="2023-01-31", LastModifiedDate="2023-02-01T00:00:00.000+0000")]
        if a % 10 == 0:
            deals.append(dict(IsClosed=True, CloseDate="2025-04-30", LastModifiedDate="2025-05-01T00:00:00.000+0000"))
        if a < open_accounts:
            deals.append(dict(IsClosed=False, CloseDate="2025-09-30", LastModifiedDate="2025-05-20T00:00:00.000+0000"))
        for fields in deals:
            opp = org.add("Opportunity", AccountId=account["Id"], **fields)
            org.add("OpportunityContactRole", OpportunityId=opp["Id"], ContactId=first_contact)
    return org


def settings_for(folder: Path, bulk_threshold: int) -> Settings:
    return Settings(
        sfa={"kind": "salesforce", "bulk_threshold": bulk_threshold},
        template={
            "dir": str(ROOT / "templates"),
            "default_language": "ja",
            "language_field": "MailingCountry",
            "languages": {"Japan": "ja", "United States": "en"},
        },
        company={
            "name": "株式会社アクメ",
            "postal_address": "〒100-0005 東京都千代田区丸の内1-1-1",
            "opt_out": "optout@acme.example",
            "domain": "acme.example",
        },
        rate={"per_minute": 0, "per_hour": 0, "per_rep_per_day": 0},
        config_path=folder / "repsend.toml",
        env=LOGIN_ENV,
    )


def kind_of(answered: str, soql: str) -> str:
    if answered == "count":
        return "count"
    if answered.startswith("bulk-"):
        return "contacts"
    # the visibility check, and an access token's user (not in this run: it logs in with a username)
    if answered == "identity" or ") FROM PermissionSet WHERE" in soql:
        return "check"
    sobject = soql.split(" FROM ", 1)[1].split(" ", 1)[0]
    if sobject == "Contact":
        return "blocked" if "HasOptedOutOfEmail = true" in soql else "contacts"
    kinds = {"User": "users", "Opportunity": "opportunities", "OpportunityContactRole": "roles", "Lead": "leads"}
    return kinds[sobject]


def run(org: FakeOrg, folder: Path, bulk_threshold: int) -> dict[str, Any]:
    """One whole selection; its calls by kind, the records each kind read, and a digest of the decisions."""
    org.forget()
    settings = settings_for(folder, bulk_threshold)
    digest = hashlib.sha256()
    summary = Summary()
    waits: list[float] = []
    started = time.perf_counter()
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False) as rsps,
        mock.patch("simple_salesforce.bulk2.sleep", waits.append),  # a job's wait is recorded, not slept
    ):
        org.install(rsps)
        source = SalesforceSource.from_settings(settings)
        options = RunOptions(as_of=AS_OF, campaign="dormant", template="dormant")
        for d in select(settings, source, options, None, summary):
            digest.update(f"{d.contact.id}:{d.action}:{d.reason}\n".encode())
        calls = len(rsps.calls)
        logins = sum(1 for c in rsps.calls if "/services/Soap/u/" in (c.request.url or ""))
        source.close()
    assert calls == source.api_calls, (calls, source.api_calls)
    by_kind = Counter({"login": logins})
    bulk = Counter()
    for answered, soql in org.answered:
        by_kind[kind_of(answered, soql)] += 1
        if answered.startswith("bulk-"):
            bulk[answered.removeprefix("bulk-")] += 1
    assert sum(by_kind.values()) == calls
    records = Counter()
    for soql, size in org.sizes.items():
        if "COUNT()" not in soql:
            records[kind_of("query", soql)] += size
    return {
        "calls": calls,
        "by_kind": by_kind,
        "bulk": bulk,
        "records": records,
        "api": source.contact_api,
        "digest": digest.hexdigest(),
        "considered": summary.considered,
        "send": summary.send,
        "waits": sum(waits),
        "seconds": time.perf_counter() - started,
    }


def per_2000(records: Counter) -> int:
    """Calls if every kind cost one call per 2,000 of its records (an empty read still costs one)."""
    return sum(max(1, math.ceil(n / PAGE)) for n in records.values()) + 1  # + the login


def main(quick: bool) -> list[dict]:
    shares = (0.0, 0.9) if quick else SHARES
    n = QUICK_N if quick else N
    threshold = n // 2 if quick else BULK_THRESHOLD
    goal = math.ceil(n / PAGE) + HANDFUL
    print(f"Salesforce API calls for one whole selection (selection.select) over {n:,} contacts")
    print(f"  goal: ceil({n:,} / {PAGE:,}) + {HANDFUL} = {goal} calls (the handful: login, visibility check, users,")
    print("  deals, roles, blocked addresses, leads' opt-outs, 2 partial pages of the extra contact parts, COUNT()")
    print("  when bulk_threshold is set)")
    print(f"  org: {PER_ACCOUNT} contacts an account, 5% without one, {REPS} reps, 1% opted out, 0.5% bounced;")
    print(f"  {n // 100:,} leads, {n // 1000:,} opted out; the API user has View All through a permission set")
    rows: list[dict] = []
    results: dict[tuple[str, float], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for share in shares:
            org = build_org(n, share)
            results["rest", share] = run(org, Path(tmp), 0)
            results["bulk", share] = run(org, Path(tmp), threshold)
            del org

    widths = {k: max(len(k), 5) for k in KINDS}
    header = f"  {'path':<6} {'open':>5} " + " ".join(f"{k:>{widths[k]}}" for k in KINDS) + f" {'total':>6} {'goal':>5}"
    print()
    print(header)
    for path in ("rest", "bulk"):
        for share in shares:
            r = results[path, share]
            cells = " ".join(f"{r['by_kind'][k]:>{widths[k]}}" for k in KINDS)
            print(f"  {path:<6} {share:>5.0%} {cells} {r['calls']:>6} {goal:>5}")
    print()
    for path in ("rest", "bulk"):
        for share in shares:
            r = results[path, share]
            recs = ", ".join(f"{k} {r['records'][k]:,}" for k in KINDS if k in r["records"])
            extra = ""
            if path == "bulk":
                b = r["bulk"]
                extra = (
                    f"; bulk jobs: {b['create']} created, {b['poll']} polls, {b['results']} results sets"
                    f" of up to {BULK_PAGE:,}; waits {r['waits']:g} s (recorded, not slept)"
                )
            print(
                f"  {path} {share:.0%}: records read: {recs}; one call per 2,000 records of each kind would be "
                f"{per_2000(r['records'])}{extra}; {r['considered']:,} decided, {r['send']:,} to send, "
                f"{r['seconds']:.1f} s"
            )
    print(
        f"  Bulk API 2.0: the fake finishes each job at once, so 1 poll a job; a real job taking t seconds "
        f"costs about 1 + t / {BULK_WAIT:g} polls (simple-salesforce looks every {BULK_WAIT:g} s)."
    )
    print(
        "  opportunities and roles cost one call per 2,000 open or recently changed deals (and roles), whatever "
        "the contacts: here at most 995 of each, one page"
    )

    for path, label in (("rest", "REST API"), ("bulk", "Bulk API 2.0")):
        counts = [results[path, s]["calls"] for s in shares]
        for share, count in zip(shares, counts, strict=True):
            rows.append(
                {
                    "goal": f"5 Salesforce API calls, {label}, {n:,} contacts, {share:.0%} in open deals",
                    "measured": f"{count} calls",
                    "target": f"<= {goal} (ceil({n:,}/{PAGE:,}) + {HANDFUL})",
                    "met": count <= goal,
                }
            )
        spread = max(counts) - min(counts)
        rows.append(
            {
                "goal": f"5 Salesforce API calls, {label}: the same whatever the open-deal share",
                "measured": " / ".join(str(c) for c in counts) + f" calls at {' / '.join(f'{s:.0%}' for s in shares)}",
                "target": "spread <= 2 (the partial last pages of the 3 contact parts)",
                "met": spread <= 2,
            }
        )
    same = all(results["rest", s]["digest"] == results["bulk", s]["digest"] for s in shares)
    used = all(results["bulk", s]["api"] == "bulk2" and results["rest", s]["api"] == "rest" for s in shares)
    rows.append(
        {
            "goal": "5 Bulk API 2.0 path decides every contact exactly as the REST path",
            "measured": "identical decisions" if same else "decisions differ",
            "target": f"identical (bulk_threshold {threshold:,} reached: {'yes' if used else 'no'})",
            "met": same and used,
        }
    )
    print()
    for row in rows:
        print(f"  {'met ' if row['met'] else 'MISS'} {row['goal']}: {row['measured']} (target {row['target']})")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shares (0% and 90%) instead of four")
    args = parser.parse_args()
    results = main(args.quick)
    sys.exit(0 if all(r["met"] for r in results) else 1)
