"""A synthetic Salesforce CSV export for the benchmarks: deterministic, realistic, any size.

    python bench/gen_export.py --contacts 1000000 [--seed 20260601] [--out DIR]
    from bench.gen_export import ensure_export; folder = ensure_export(1_000_000)

The four files carry the columns of a Data Loader export (see tests/helpers.py). Sizes scale with the
number of contacts as in the issue: 1,000,000 contacts, 400,000 accounts, 2,000 reps, 300,000
opportunities (and about as many contact roles). The mix:

- names: 60% Japanese (family name first, 山田 花子), 40% English; MailingCountry Japan / 日本 / JP /
  United States / Singapore / UK / Canada, or empty (the default language);
- addresses: ~2% empty, ~0.5% malformed, ~4% duplicates of an earlier contact's address (other case,
  stray spaces, another account: the same person twice in the SFA);
- ~3% opted out, ~1.5% bounced;
- open deals on ~15% of accounts (one open opportunity each), the other opportunities closed, ~10% of
  them recently (within dormant_after_days of ``AS_OF``); ~30% of opportunities name a primary contact;
- recent activity: ~25% of contacts have a LastActivityDate within 180 days of ``AS_OF``, ~4% were
  created within it; CreatedDate is a full timestamp (nearly every one distinct, as in a real org);
- reps: ~8% inactive, ~1% of contacts owned by a user not in User.csv, signatures of 2-4 lines
  (some empty); IDs 18 characters in User.csv and Contact.csv, 15 in Opportunity.csv (a report export);
- values with commas, quotes and line breaks in quoted cells; Contact.csv starts with a UTF-8 BOM.

Generated folders go under bench/data/ (git-ignored), named by size, seed and generator version, and
are reused while they are complete.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

GENERATOR_VERSION = 1
DEFAULT_SEED = 20260601
DATA_DIR = Path(__file__).resolve().parent / "data"
AS_OF = date(2026, 6, 1)  # the benchmark's --as-of; "recent" below means within 180 days of it
RECENT_DAYS = 180

USER_HEADER = ["Id", "Name", "FirstName", "LastName", "Email", "IsActive", "Title", "Phone", "Signature"]
CONTACT_HEADER = [
    "Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate",
    "CreatedDate", "AccountId", "Account.Name", "OwnerId", "Title", "MailingCountry",
]
OPPORTUNITY_HEADER = [
    "Id", "Name", "AccountId", "ContactId", "IsClosed", "IsWon", "StageName", "CloseDate", "LastModifiedDate",
    "OwnerId",
]
ROLE_HEADER = ["Id", "OpportunityId", "ContactId", "Role", "IsPrimary"]

JA_FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木",
             "山口", "松本", "井上", "木村", "林", "斎藤", "清水", "山崎", "森", "池田", "橋本", "阿部", "石川"]
JA_GIVEN = ["花子", "太郎", "健", "大輔", "陽子", "恵", "翔太", "美咲", "一郎", "直樹", "由美", "拓也", "さくら",
            "誠", "愛", "隆", "裕子", "亮", "真由美", "和也"]
JA_ROMAJI = ["sato", "suzuki", "takahashi", "tanaka", "ito", "watanabe", "yamamoto", "nakamura", "kobayashi",
             "kato", "yoshida", "yamada", "sasaki", "yamaguchi", "matsumoto", "inoue", "kimura", "hayashi"]
EN_FIRST = ["Emily", "James", "Olivia", "Michael", "Sophia", "David", "Emma", "Daniel", "Ava", "Matthew",
            "Chloe", "Ryan", "Grace", "Andrew", "Hannah", "Thomas", "Lily", "Joshua", "Mia", "Benjamin"]
EN_LAST = ["Carter", "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Anderson", "Thomas",
           "Jackson", "White", "Harris", "Martin", "Thompson", "Garcia", "Clark", "Lewis", "O'Brien", "Walker"]
JA_COMPANY = ["サンプル", "山本工業", "ミライ", "アオバ", "ひかり", "東都", "北斗", "さくら", "大和", "青葉", "富士",
              "日の出", "みなと", "中央", "光洋"]
JA_FORM = ["株式会社{}", "{}株式会社", "合同会社{}", "有限会社{}"]
EN_COMPANY = ["Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Acme Retail",
              "Blue Harbor", "Red Cedar", "Silverline"]
EN_FORM = ["{} Inc.", "{}, Ltd.", "{} Pte. Ltd.", "{} LLC", "{} \"Holdings\""]
JA_TITLE = ["", "", "部長", "課長", "情報システム部 課長", "経営企画部 部長", "営業部", "代表取締役"]
EN_TITLE = ["", "", "CTO", "Head of IT", "Procurement Manager", "VP, Operations", "Director"]
JA_COUNTRY = ["Japan"] * 6 + ["日本"] * 2 + ["JP", ""]
EN_COUNTRY = ["United States"] * 4 + ["Singapore", "UK", "Canada", "USA", ""]
DOMAINS_JA = ["example.co.jp", "example.jp", "sample.co.jp", "mirai.example.jp"]
DOMAINS_EN = ["example.com", "example.org", "northwind.example", "contoso.example"]
STAGES_OPEN = ["Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review"]
ROLES = ["Decision Maker", "Economic Buyer", "Technical Buyer", "Evaluator", "Influencer"]


def _sfid(prefix: str, n: int, length: int = 18) -> str:
    """A Salesforce-shaped ID: 3-char key prefix, pod, a serial; 18 characters with the case suffix."""
    core = f"{prefix}5g{n:010d}"
    return core if length == 15 else core + "AAA"


def _day(rng: random.Random, recent: bool) -> date:
    if recent:
        return AS_OF - timedelta(days=rng.randrange(0, RECENT_DAYS - 1))
    return AS_OF - timedelta(days=rng.randrange(RECENT_DAYS + 5, 365 * 6))


def _timestamp(rng: random.Random, day: date) -> str:
    return f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.000Z"


def sizes(contacts: int) -> dict[str, int]:
    """The issue's proportions: 1,000,000 contacts : 400,000 accounts : 2,000 reps : 300,000 deals."""
    return {
        "contacts": contacts,
        "accounts": max(1, contacts * 2 // 5),
        "reps": max(10, contacts // 500),
        "opportunities": max(1, contacts * 3 // 10),
    }


def folder_for(contacts: int, seed: int = DEFAULT_SEED) -> Path:
    return DATA_DIR / f"export-{contacts}-s{seed}-v{GENERATOR_VERSION}"


def ensure_export(contacts: int, seed: int = DEFAULT_SEED, quiet: bool = False) -> Path:
    """The export folder for this size and seed, generated once and reused."""
    folder = folder_for(contacts, seed)
    if not (folder / ".complete").is_file():
        started = time.perf_counter()
        if not quiet:
            print(f"generating {contacts:,} contacts into {folder} ...", file=sys.stderr, flush=True)
        generate(folder, contacts, seed)
        if not quiet:
            print(f"  generated in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    return folder


def generate(folder: Path, contacts: int, seed: int = DEFAULT_SEED) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    n = sizes(contacts)
    rep_ids = _write_users(folder / "User.csv", rng, n["reps"])
    account_names = _account_names(rng, n["accounts"])
    _write_contacts(folder / "Contact.csv", rng, n["contacts"], account_names, rep_ids)
    _write_deals(folder, rng, n["opportunities"], n["accounts"], n["contacts"], rep_ids)
    (folder / ".complete").write_text(f"{contacts} {seed} v{GENERATOR_VERSION}\n", encoding="utf-8")
    return folder


def _writer(handle) -> csv.writer:  # type: ignore[no-untyped-def, valid-type]
    return csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")


def _write_users(path: Path, rng: random.Random, count: int) -> list[str]:
    ids = []
    with open(path, "w", encoding="utf-8", newline="") as handle:
        out = _writer(handle)
        out.writerow(USER_HEADER)
        for i in range(count):
            uid = _sfid("005", i + 1)
            ids.append(uid)
            active = rng.random() >= 0.08
            phone = f"03-{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}" if rng.random() < 0.8 else ""
            if rng.random() < 0.6:
                last, first = rng.choice(JA_FAMILY), rng.choice(JA_GIVEN)
                name = f"{last} {first}"
                title = rng.choice(["営業部 課長", "営業部", "第二営業部 主任", "インサイドセールス"])
                lines = [name, f"株式会社アクメ {title}", f"TEL: {phone}" if phone else "", f"u{i}@acme.example"]
            else:
                first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
                name = f"{first} {last}"
                title = rng.choice(["Account Executive", "Sales Manager", "Customer Success"])
                lines = [name, f"{title}, Acme K.K.", f"Tel: +81 {phone[1:]}" if phone else ""]
            signature = "\n".join(line for line in lines if line) if rng.random() < 0.93 else ""
            if signature and rng.random() < 0.1:
                signature = signature.replace("\n", "\r\n")  # an export written on Windows
            out.writerow([uid, name, first, last, f"u{i}@acme.example", "true" if active else "false", title,
                          phone, signature])
    return ids


def _account_names(rng: random.Random, count: int) -> list[str]:
    names = []
    for i in range(count):
        if rng.random() < 0.6:
            names.append(rng.choice(JA_FORM).format(f"{rng.choice(JA_COMPANY)}{i}"))
        else:
            names.append(rng.choice(EN_FORM).format(f"{rng.choice(EN_COMPANY)} {i}"))
    return names


def _write_contacts(path: Path, rng: random.Random, count: int, accounts: list[str], reps: list[str]) -> None:
    random_ = rng.random
    randrange = rng.randrange
    choice = rng.choice
    n_accounts, n_reps = len(accounts), len(reps)
    seen: list[str] = []  # a sample of earlier addresses, for duplicates
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        out = _writer(handle)
        out.writerow(CONTACT_HEADER)
        for i in range(count):
            account = randrange(n_accounts)
            japanese = random_() < 0.6
            if japanese:
                last, first = choice(JA_FAMILY), choice(JA_GIVEN)
                local = f"{choice(JA_ROMAJI)}.{i}"
                domain = choice(DOMAINS_JA)
                title, country = choice(JA_TITLE), choice(JA_COUNTRY)
            else:
                first, last = choice(EN_FIRST), choice(EN_LAST)
                local = f"{first.lower()}.{last.lower().replace(chr(39), '')}{i}"
                domain = choice(DOMAINS_EN)
                title, country = choice(EN_TITLE), choice(EN_COUNTRY)
            if random_() < 0.03:
                first = ""  # only a family name on the card
            email = f"{local}@{domain}"
            roll = random_()
            if roll < 0.02:
                email = ""
            elif roll < 0.025:
                email = choice([f"{local}@localhost", f"{local} at {domain}", f"{local}@@{domain}", f".{local}@x.y"])
            elif roll < 0.065 and seen:
                email = choice(seen)
                email = choice([email, email.upper(), f" {email} ", email.capitalize()])
            elif len(seen) < 50_000:
                seen.append(email)
            elif random_() < 0.01:
                seen[randrange(len(seen))] = email
            if random_() < 0.01:
                owner = _sfid("005", n_reps + 1 + randrange(50))  # a user not in User.csv
            else:
                owner = reps[(account * 7919 + (i & 3)) % n_reps]
            activity = "" if random_() < 0.2 else _day(rng, random_() < 0.31).isoformat()
            created = _timestamp(rng, _day(rng, random_() < 0.04))
            out.writerow([
                _sfid("003", i + 1),
                first,
                last,
                email,
                "true" if random_() < 0.03 else "false",
                "true" if random_() < 0.015 else "false",
                activity,
                created,
                _sfid("001", account + 1),
                accounts[account],
                owner,
                title,
                country,
            ])


def _write_deals(folder: Path, rng: random.Random, count: int, accounts: int, contacts: int, reps: list[str]) -> None:
    open_accounts = rng.sample(range(accounts), min(count, accounts * 15 // 100))
    with open(folder / "Opportunity.csv", "w", encoding="utf-8", newline="") as deals_handle, \
         open(folder / "OpportunityContactRole.csv", "w", encoding="utf-8", newline="") as roles_handle:
        deals = _writer(deals_handle)
        roles = _writer(roles_handle)
        deals.writerow(OPPORTUNITY_HEADER)
        roles.writerow(ROLE_HEADER)
        role_serial = 0
        for i in range(count):
            is_open = i < len(open_accounts)
            account = open_accounts[i] if is_open else rng.randrange(accounts)
            contact_id = _sfid("003", rng.randrange(contacts) + 1, 15) if rng.random() < 0.3 else ""
            if is_open:
                close = AS_OF + timedelta(days=rng.randrange(10, 200))
                changed = _day(rng, rng.random() < 0.7)
                stage, won = rng.choice(STAGES_OPEN), False
            else:
                close = _day(rng, rng.random() < 0.1)
                changed = close + timedelta(days=rng.randrange(0, 4))
                won = rng.random() < 0.4
                stage = "Closed Won" if won else "Closed Lost"
            opp_id = _sfid("006", i + 1, 15)
            deals.writerow([
                opp_id,
                f"商談 {i}" if rng.random() < 0.6 else f"Deal {i}, renewal",
                _sfid("001", account + 1, 15),
                contact_id,
                "FALSE" if is_open else "TRUE",
                "TRUE" if won else "FALSE",
                stage,
                close.isoformat(),
                _timestamp(rng, changed),
                reps[i % len(reps)][:15],
            ])
            for _ in range(rng.choice((0, 1, 1, 2))):
                role_serial += 1
                roles.writerow([
                    _sfid("00K", role_serial, 15),
                    opp_id,
                    _sfid("003", rng.randrange(contacts) + 1, 15),
                    rng.choice(ROLES),
                    "true" if rng.random() < 0.3 else "false",
                ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, help="the folder (default: bench/data/export-<contacts>-s<seed>-v<N>)")
    args = parser.parse_args(argv)
    if args.out is not None:
        generate(args.out, args.contacts, args.seed)
        print(args.out)
    else:
        print(ensure_export(args.contacts, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
