"""Seeded random Salesforce CSV exports with every case the rules know, and the configs to run them under.

Shared by the test modules that run the engine over exports (``test_export_cases``, ``test_one_engine``):
one generator, so that every path is tested on the same kinds of data.
"""

from __future__ import annotations

import csv
import random
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from repsend.audience import History
from repsend.selection import RunOptions
from repsend.settings import Settings, load_settings
from repsend.sfa.csv_export import CsvExportSource
from tests.helpers import (
    CARTER,
    CONTACT_HEADER,
    OPPORTUNITY_HEADER,
    REPS,
    ROLE_HEADER,
    SATO,
    SUZUKI,
    TEMPLATES,
    USER_HEADER,
    write_config,
)

AS_OF = date(2026, 11, 23)
DORMANT_SINCE = AS_OF - timedelta(days=180)  # 2026-05-27: on or after it is recent
COOLDOWN_SINCE = AS_OF - timedelta(days=90)

SEEDS = (20261123, 7)  # the random exports every config runs over
CARELESS_SEED = 424242  # the export with careless values (``random_export(..., weird=True)``)


# ---------------------------------------------------------------------------------------------------
# Writing exports and configs
# ---------------------------------------------------------------------------------------------------


def csv_text(header: list[str], rows: list[dict[str, str]], rng: random.Random | None = None,
             quoting: str = "all", newline: str = "\n") -> str:
    """A CSV file as exports write it: every cell quoted ("all", Data Loader), only where needed
    ("minimal", Excel), or cell by cell at random ("mixed", with quotes left inside unquoted cells, which
    the csv module reads as written)."""
    lines = []
    for values in [header, *([row.get(name, "") for name in header] for row in rows)]:
        cells = []
        for value in values:
            special = any(ch in value for ch in ',"\r\n')
            if quoting == "all" or (special and quoting == "minimal"):
                cells.append('"' + value.replace('"', '""') + '"')
            elif quoting == "mixed" and rng is not None:
                bare_ok = not any(ch in value for ch in ",\r\n") and not value.startswith('"')
                if bare_ok and (not special or rng.random() < 0.5):
                    cells.append(value)
                else:
                    cells.append('"' + value.replace('"', '""') + '"')
            else:
                cells.append(value)
        lines.append(",".join(cells))
    return newline.join(lines) + newline


def write_raw(path: Path, text: str, encoding: str = "utf-8", bom: bool = False) -> Path:
    """``text`` written as an export tool writes it: in ``encoding``, with a UTF-8 BOM if ``bom``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A character the encoding lacks becomes "?", as Excel writes it.
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding, errors="replace"))
    return path


LANGUAGES = {"Japan": "ja", "日本": "ja", "JP": "ja", "United States": "en", "USA": "en", " us ": "en",
             "Singapore": "en", "United Kingdom": "en", "Straße": "en"}


def config_file(folder: Path, export: Path, languages: dict[str, str] | None = None,
                **sections: dict[str, Any]) -> Path:
    """helpers.write_config with this file's language table and the company's English name and address."""
    company = {"names": {"en": "Acme K.K."},
               "postal_addresses": {"en": "1-1-1 Marunouchi, Chiyoda-ku, Tokyo 100-0005, Japan"},
               **sections.pop("company", {})}
    return write_config(folder, export, languages=languages or LANGUAGES, company=company, **sections)


# ---------------------------------------------------------------------------------------------------
# A seeded random export with every case in it
# ---------------------------------------------------------------------------------------------------

PARTNER = "0055g00000PaRtNAAV"
NONAME = "0055g00000NoNmEAAV"
COMMA = "0055g00000CoMmAAAV"
SHORT = "0055g00000ShOrT"  # a 15-character Id in User.csv
BRACES = "0055g00000BrAcEAAV"
BLANK = "0055g00000BlAnKAAV"  # inactive, no name at all
CRLF = "0055g00000CrLfZAAV"
UNKNOWN_OWNER = "0055g00000XqZ9PAAV"

EXTRA_REPS = [
    {"Id": PARTNER, "Name": "Tom Baker", "FirstName": "Tom", "LastName": "Baker", "Email": "t.baker@partner.example",
     "IsActive": "TRUE", "Title": "Reseller", "Phone": "", "Signature": "Tom Baker\nPartner Co."},
    {"Id": NONAME, "Name": "田中 美咲", "FirstName": "", "LastName": "", "Email": "M.Tanaka@ACME.example",
     "IsActive": "1", "Title": "", "Phone": "", "Signature": ""},
    {"Id": COMMA, "Name": "Carter, Emily (Sales)", "FirstName": "Emily", "LastName": "Carter",
     "Email": "e.carter2@acme.example", "IsActive": "True", "Title": 'VP, "Growth"', "Phone": "",
     "Signature": 'Emily "EC" Carter\n100% reachable'},
    {"Id": SHORT, "Name": "David Kim", "FirstName": "David", "LastName": "Kim", "Email": " d.kim@acme.example ",
     "IsActive": " true ", "Title": "", "Phone": "", "Signature": "David Kim"},
    {"Id": BRACES, "Name": "Sarah Lee", "FirstName": "Sarah", "LastName": "Lee", "Email": "s.lee@acme.example",
     "IsActive": "true", "Title": "", "Phone": "", "Signature": "Sarah Lee {{ rep.phone }}"},
    {"Id": BLANK, "Name": "", "FirstName": "", "LastName": "", "Email": "gone@acme.example",
     "IsActive": "false", "Title": "", "Phone": "", "Signature": ""},
    {"Id": CRLF, "Name": "山口 Ｋ", "FirstName": "Ｋ", "LastName": "山口", "Email": "k.yamaguchi@acme.example",
     "IsActive": "true", "Title": "", "Phone": "", "Signature": "山口\r\nTEL 03-0000-0000\r\n"},
]
ACTIVE_OWNERS = [SATO, CARTER, PARTNER, NONAME, COMMA, SHORT, BRACES, CRLF]

JA_FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "髙橋"]
JA_GIVEN = ["花子", "太郎", "健", "大輔", "陽子", "恵", "翔太", "美咲", "さくら", "ｻﾁｺ"]
EN_FIRST = ["Emily", "James", "Olivia", "Michael", "Zoë", "David", "José", "Ann-Marie", "Chloé"]
EN_LAST = ["Carter", "Smith", "O'Brien", "Brown", "Taylor", "Müller", "van der Berg", "Nguyễn"]
JA_COMPANY = ["株式会社サンプル", "山本工業株式会社", "合同会社ミライ", "有限会社たけのこ食品", "株式会社ひかり"]
EN_COMPANY = ["Northwind Traders Inc.", "Redwood Health Systems, Inc.", 'Contoso "Holdings"', "Globex LLC",
              "100% Juice Co."]
JA_COUNTRY = ["Japan", "Japan", "日本", "JP", "", "japan", " JAPAN ", "jp"]
EN_COUNTRY = ["United States", "USA", "Singapore", "united states ", "UNITED KINGDOM", " us ", "US", "STRASSE"]
OTHER_COUNTRY = ["France", "Deutschland", "-", "N/A"]
DOMAINS = ["example.co.jp", "example.jp", "example.com", "Example.Org", "例え.jp"]
MALFORMED = ["yamada@", "tanaka at example.co.jp", "suzuki@@example.jp", "a b@example.jp", "a..b@example.jp",
             ".a@example.jp", "a@example", "a@example.j", "<a@example.jp>", "a@ex,ample.jp", "@example.jp"]
ODD_VALID = ["a.@example.jp", "山田@example.co.jp", "user@例え.jp", "a+tag@example.jp", "o'brien@example.com",
             "x{{y}}@example.jp", "UPPER@EXAMPLE.JP", "a%b@example.jp", "a/b=c@example.jp"]
TRUE = ["true", "TRUE", "True", "1", " true "]
FALSE = ["false", "FALSE", "False", "0", "", " false "]
# Unicode whitespace that str.strip() removes: around an address or a language value it must not count.
ODD_SPACE = ["\u3000", "\xa0", "\x1f", "\x1c", "\x85", "\u2003", "\x0b", "\x0c"]


def _spell(rng: random.Random, day: date, weird: bool) -> str:
    """One of the spellings an export may use for a day (all accepted)."""
    y, m, d = day.year, day.month, day.day
    h, mi, s = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    iso = day.isoformat()
    spellings = [
        iso, iso, f"{y}/{m}/{d}", f"{y}/{m:02d}/{d:02d}", f"{y}-{m}-{d}",
        f"{iso}T{h:02d}:{mi:02d}:{s:02d}.000Z", f"{iso}T{h:02d}:{mi:02d}:{s:02d}.000Z",
        f"{iso} {h:02d}:{mi:02d}:{s:02d}", f"{iso}T{h}:{mi:02d}", f"{iso}T23:{mi:02d}:{s:02d}-10:00",
        f"{iso}T00:{mi:02d}:{s:02d}+09:00", f"{iso}T{h:02d}:{mi:02d}:{s:02d}.123456+0900",
        f"{y}/{m}/{d} {h}:{mi:02d}", f"{iso}T{h:02d}:{mi:02d}:{s:02d}Z", f" {iso} ",
    ]
    if weird:
        spellings += [f"{y}-{m:02d}/{d:02d}", f"{iso}T99:99:99", f"{iso}T{h:02d}:{mi:02d}:{s:02d}.1234567890123Z",
                      f"{y}/{m}/{d}T{h}:{mi:02d}+0000", f"\t{iso}\t"]
    return rng.choice(spellings)


def _day(rng: random.Random, recent: bool) -> date:
    if recent:
        return rng.choice([DORMANT_SINCE, AS_OF, AS_OF + timedelta(days=rng.randrange(1, 90)),
                           DORMANT_SINCE + timedelta(days=rng.randrange(180))])
    return rng.choice([DORMANT_SINCE - timedelta(days=1), date(2019, 1, 1),
                       DORMANT_SINCE - timedelta(days=rng.randrange(2, 2000))])


def _email(rng: random.Random, i: int, seen: list[str], weird: bool) -> str:
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(["", "", "   "])
    if roll < 0.06:
        return rng.choice(MALFORMED)
    if roll < 0.08:
        return rng.choice(ODD_VALID)
    if roll < 0.16 and seen:
        # The same person again: other case, stray spaces.
        address = rng.choice(seen)
        change = rng.randrange(5)
        if change == 0:
            address = address.upper()
        elif change == 1:
            address = f"  {address.title()} "
        elif change == 2:
            address = address + "\t"
        elif change == 3 and weird:
            address = rng.choice(ODD_SPACE) + address + rng.choice(ODD_SPACE)
        return address
    address = f"c{i}.{rng.choice(['yamada', 'smith', 'ito'])}@{rng.choice(DOMAINS)}"
    if rng.random() < 0.1:
        address = address.capitalize()
    seen.append(address)
    return address


def _name(rng: random.Random, japanese: bool, weird: bool) -> tuple[str, str]:
    if japanese:
        first, last = rng.choice(JA_GIVEN), rng.choice(JA_FAMILY)
    else:
        first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
    roll = rng.random()
    if roll < 0.05:
        first = ""
    elif roll < 0.08:
        last = ""
    elif roll < 0.10:
        # A control character in a name: the To header (and an English subject) would carry it.
        bad = rng.choice(["\x01", "\n", "\r\nBcc: victim@example.com", "\x1b[31m"])
        first, last = (first + bad, last) if rng.random() < 0.5 else (first, last + bad)
    elif roll < 0.12:
        first, last = (first + " {{ rep.name }}", last) if rng.random() < 0.5 else (first, last + "{%")
    elif roll < 0.14:
        first, last = f" {first}\t", f"{last} "  # stray spaces and a tab (not a control character here)
    elif weird and roll < 0.17:
        first = first + rng.choice(["\x7f", "\u2028", "\\", '"', "%s", "%(x)s"])
    return first, last


def random_export(folder: Path, seed: int, contacts: int = 1500, weird: bool = False,
                  encoding: str = "utf-8") -> Path:
    """Reps, contacts, deals and contact roles with every case the rules know, and (``weird``) values
    only a careless export would hold but that are still read."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    quoting = rng.choice(["all", "minimal"])  # quotes inside unquoted cells: see test_careless_csv_...
    newline = rng.choice(["\n", "\r\n"])

    reps = [dict(r) for r in REPS] + [dict(r) for r in EXTRA_REPS]
    if weird:
        reps.append({**EXTRA_REPS[0], "Id": PARTNER[:15], "IsActive": "false"})  # the same user again, 15 chars
        reps.append({"Id": "0055g00000CtRlXAAV", "Name": "Bad\x01Name", "FirstName": "", "LastName": "Bad",
                     "Email": "bad@acme.example", "IsActive": "true", "Title": "", "Phone": "", "Signature": "x"})
        reps.append({"Id": "0055g00000NoAtXAAV", "Name": "No At", "FirstName": "", "LastName": "At",
                     "Email": "nobody", "IsActive": "true", "Title": "", "Phone": "", "Signature": "x"})
    owners = ACTIVE_OWNERS + [r["Id"] for r in reps[len(REPS) + len(EXTRA_REPS):]]

    n_accounts = max(1, contacts // 3)
    accounts = [f"0015g{n:010d}AAA" for n in range(n_accounts)]
    account_names = [rng.choice(JA_COMPANY + EN_COMPANY) + f" {n}" for n in range(n_accounts)]
    contact_rows: list[dict[str, str]] = []
    seen: list[str] = []
    for i in range(contacts):
        japanese = rng.random() < 0.6
        first, last = _name(rng, japanese, weird)
        a = rng.randrange(n_accounts)
        account_name = account_names[a]
        roll = rng.random()
        if roll < 0.04:
            account_name = ""
        elif roll < 0.05:
            account_name = account_name + " {{ company.name }}"
        elif roll < 0.06:
            account_name = account_name + "\nAnnex"  # a line break inside a quoted cell
        owner_roll = rng.random()
        if owner_roll < 0.05:
            owner = ""
        elif owner_roll < 0.08:
            owner = UNKNOWN_OWNER
        elif owner_roll < 0.14:
            owner = SUZUKI if rng.random() < 0.7 else BLANK
        elif owner_roll < 0.20:
            owner = rng.choice(owners)[:15]
        elif owner_roll < 0.22:
            owner = f" {rng.choice(owners)} "
        else:
            owner = rng.choice(owners)
        country = rng.choice(JA_COUNTRY if japanese else EN_COUNTRY)
        if rng.random() < 0.05:
            country = rng.choice(OTHER_COUNTRY)
        if weird and rng.random() < 0.03:
            country = rng.choice(ODD_SPACE) + rng.choice(["Japan", "USA"]) + rng.choice(ODD_SPACE)
        if weird and rng.random() < 0.02:
            country = rng.choice(["ＪＡＰＡＮ", "İSTANBUL", "ΣΑΣ", "straße"])
        contact_id = f"0035g{i:010d}AAA"
        if rng.random() < 0.05:
            contact_id = contact_id[:15]
        if weird and rng.random() < 0.02:
            contact_id = f" {contact_id} "
        account_id = accounts[a] if rng.random() > 0.03 else ""
        if rng.random() < 0.1:
            account_id = account_id[:15]
        row = {
            "Id": contact_id,
            "FirstName": first,
            "LastName": last,
            "Email": _email(rng, i, seen, weird),
            "HasOptedOutOfEmail": rng.choice(TRUE) if rng.random() < 0.04 else rng.choice(FALSE),
            "IsEmailBounced": rng.choice(TRUE) if rng.random() < 0.03 else rng.choice(FALSE),
            "LastActivityDate": "" if rng.random() < 0.2 else _spell(rng, _day(rng, rng.random() < 0.25), weird),
            "CreatedDate": "" if rng.random() < 0.02 else _spell(rng, _day(rng, rng.random() < 0.06), weird),
            "AccountId": account_id,
            "Account.Name": account_name,
            "OwnerId": owner,
            "Title": rng.choice(["", "", "部長", "Head of IT", 'Director, "Special Projects"', "{{ x }}"]),
            "MailingCountry": country,
            "Department": rng.choice(["", "営業部", "IT", " Sales ", "{{ d }}"]),
            "Account.Industry": rng.choice(["", "Manufacturing", "小売"]),
        }
        contact_rows.append(row)

    deals, roles = [], []
    for n in range(max(1, contacts // 6)):
        a = rng.randrange(n_accounts)
        kind = rng.random()
        closed = kind >= 0.3
        changed = _day(rng, kind > 0.8)
        close_date = _spell(rng, changed, False) if rng.random() < 0.8 else ""
        modified = _spell(rng, _day(rng, rng.random() < 0.1), False) if rng.random() < 0.8 else ""
        opp_id = f"0065g{n:010d}" + ("AAA" if rng.random() < 0.3 else "")
        with_contact = rng.random() < 0.3 and contact_rows
        contact_id = rng.choice(contact_rows)["Id"].strip()[:15] if with_contact else ""
        account_id = accounts[a][:15] if rng.random() < 0.7 else accounts[a]
        if rng.random() < 0.05:
            account_id = ""
        deals.append({
            "Id": opp_id, "AccountId": account_id, "ContactId": contact_id,
            "IsClosed": rng.choice(TRUE) if closed else rng.choice(FALSE[:4]),
            "IsWon": "false", "StageName": "Closed Lost" if closed else "Prospecting",
            "CloseDate": close_date, "LastModifiedDate": modified,
        })
        for _ in range(rng.choice([0, 0, 1, 2])):
            role_opp = opp_id[:15] if rng.random() < 0.8 else opp_id
            roles.append({"Id": f"00K5g{len(roles):010d}", "OpportunityId": role_opp,
                          "ContactId": rng.choice(contact_rows)["Id"].strip()[:15] if rng.random() > 0.05 else "",
                          "Role": "Decision Maker", "IsPrimary": rng.choice(["true", "false"])})

    contact_header = [*CONTACT_HEADER, "Department", "Account.Industry"]
    rng.shuffle(contact_header)
    write_raw(folder / "User.csv", csv_text(USER_HEADER, reps, rng, quoting, newline), encoding)
    write_raw(folder / "Contact.csv", csv_text(contact_header, contact_rows, rng, quoting, newline), encoding,
              bom=encoding == "utf-8" and rng.random() < 0.5)
    write_raw(folder / "Opportunity.csv", csv_text(OPPORTUNITY_HEADER, deals, rng, quoting, newline), encoding)
    write_raw(folder / "OpportunityContactRole.csv", csv_text(ROLE_HEADER, roles, rng, quoting, newline), encoding)
    return folder


def fields_templates(folder: Path) -> Path:
    """The bundled templates, each also printing extra Contact fields, ``campaign`` and ``language``."""
    target = folder / "templates"
    if target.exists():
        return target
    shutil.copytree(TEMPLATES, target)
    ja = target / "dormant" / "ja.txt"
    ja.write_text(ja.read_text(encoding="utf-8").replace(
        "{{ contact.last_name }}様\n",
        "{% if contact.Department is defined %}{{ contact.Department }}\n{% endif %}"
        "{{ contact.last_name }}様（{{ contact[\"Account.Industry\"] | default(\"-\") }}、"
        "{{ campaign }}/{{ language }}）\n",
    ), encoding="utf-8")
    en = target / "dormant" / "en.txt"
    en.write_text(en.read_text(encoding="utf-8").replace(
        "Hi {{ contact.first_name }},", "Hi {{ contact.first_name }} ({{ contact.Department }}),"), encoding="utf-8")
    return target


# Each config: settings sections, options, history. A history is rebuilt per export.
CONFIGS: dict[str, dict[str, Any]] = {
    "account": {},
    "contact_role": {"sections": {"audience": {"active_deal_scope": "contact_role"}}},
    "rep_cap": {"sections": {"rate": {"per_rep_per_day": 3}}},
    "fallback_by_address": {"sections": {"audience": {"fallback_sender": " E.Carter@ACME.example "}}},
    "fallback_by_id15_and_domains": {"sections": {
        "audience": {"fallback_sender": SATO[:15], "active_deal_scope": "contact_role"},
        "mail": {"sender_domains": [" ACME.example", "example.org"]}}},
    "sender_domains": {"sections": {"mail": {"sender_domains": ["acme.example"]},
                                    "rate": {"per_rep_per_day": 7}}},
    "suppression": {"suppression": True},
    "contact_fields": {"sections": {"sfa": {"contact_fields": ["Department", "Account.Industry", "Fax"]}},
                       "templates": True},
    "history": {"history": True, "sections": {"rate": {"per_rep_per_day": 4}}},
    "limit": {"limit": 40, "sections": {"rate": {"per_rep_per_day": 2}}},
    "english_default": {"sections": {"template": {"default_language": "en"},
                                     "audience": {"dormant_after_days": 0, "cooldown_days": 0}},
                        "history": True},
    "no_language_field": {"sections": {"template": {"language_field": ""}}},
    "kitchen_sink": {"sections": {
        "audience": {"fallback_sender": "d.kim@acme.example", "active_deal_scope": "contact_role",
                     "dormant_after_days": 365, "cooldown_days": 30},
        "mail": {"sender_domains": ["acme.example", "partner.example"]},
        "rate": {"per_rep_per_day": 5},
        "sfa": {"contact_fields": ["Department", "Account.Industry"]}},
        "suppression": True, "history": True, "templates": True},
}


def history_for(export: Path, seed: int, encoding: str = "utf-8") -> History:
    """Already sent and cooled-down addresses taken from the export itself, and reps with mails today."""
    rng = random.Random(seed + 1)
    source = CsvExportSource(export, encoding, language_field="MailingCountry")
    addresses = sorted({c.email.strip().lower() for c in source.contacts() if "@" in c.email})
    sample = rng.sample(addresses, min(len(addresses), 200))
    mailed_days = [COOLDOWN_SINCE - timedelta(days=1), COOLDOWN_SINCE, AS_OF, date(2025, 1, 1),
                   AS_OF - timedelta(days=29), AS_OF - timedelta(days=30), AS_OF - timedelta(days=31)]
    return History(
        campaign_addresses=set(sample[:60]),
        last_mailed={address: rng.choice(mailed_days) for address in sample[40:]},
        rep_sent_today={SATO[:15]: 2, CARTER[:15]: 9, SHORT: 1, COMMA: 3},  # COMMA: an 18-char key never matches
    )


def config_for(tmp: Path, export: Path, name: str, seed: int, encoding: str = "utf-8",
               **extra: dict[str, Any]) -> Path:
    """The config file of ``CONFIGS[name]`` for an export (in ``tmp / name``), ``extra`` sections added on
    top: the suppression list and the templates it asks for are written next to it."""
    spec = CONFIGS[name]
    sections = {key: dict(value) for key, value in spec.get("sections", {}).items()}
    sections.setdefault("sfa", {})["encoding"] = encoding
    if spec.get("suppression"):
        listing = tmp / "suppressed.txt"
        rng = random.Random(seed + 2)
        picks = rng.sample([c["Email"] for c in _contacts_of(export, encoding) if "@" in c["Email"]], 40)
        lines = ["# asked us at a trade show", ""] + [
            f"  {a.upper()}  # by phone" if k % 3 == 0 else a.strip() for k, a in enumerate(picks)]
        listing.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
        sections.setdefault("audience", {})["suppression_file"] = str(listing)
    if spec.get("templates"):
        sections.setdefault("template", {})["dir"] = str(fields_templates(tmp))
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    return config_file(tmp / name, export, **sections)


def settings_for(tmp: Path, export: Path, name: str, seed: int,
                 encoding: str = "utf-8") -> tuple[Settings, RunOptions, History | None]:
    """``CONFIGS[name]`` for an export as the engine takes it: settings, options, and the history (if any)."""
    spec = CONFIGS[name]
    settings = load_settings(config_for(tmp, export, name, seed, encoding))
    options = RunOptions(as_of=AS_OF, campaign="dormant", template="dormant", limit=spec.get("limit"))
    history = history_for(export, seed, encoding) if spec.get("history") else None
    return settings, options, history


def _contacts_of(export: Path, encoding: str = "utf-8") -> list[dict[str, str]]:
    """Contact.csv as csv.DictReader reads it, column names stripped (for picks made from the raw file)."""
    with open(export / "Contact.csv", encoding="utf-8-sig" if encoding == "utf-8" else encoding,
              newline="") as handle:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(handle)]


# ---------------------------------------------------------------------------------------------------
# The same org as a Salesforce report export: labels as headers, 15-character Ids, a footer
# ---------------------------------------------------------------------------------------------------

# API name -> (English label, Japanese label), per file, as a report export writes its headers.
REPORT_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "Contact.csv": {
        "Id": ("Contact ID", "取引先責任者 ID"), "FirstName": ("First Name", "名"), "LastName": ("Last Name", "姓"),
        "Email": ("Email", "メール"), "HasOptedOutOfEmail": ("Email Opt Out", "メール送信除外"),
        "IsEmailBounced": ("Email Bounced Reason", "メール不達の理由"),
        "LastActivityDate": ("Last Activity", "最終活動日"),
        "CreatedDate": ("Created Date", "作成日"), "AccountId": ("Account ID", "取引先 ID"),
        "Account.Name": ("Account Name", "取引先名"), "OwnerId": ("Owner ID", "所有者 ID"), "Title": ("Title", "役職"),
        "MailingCountry": ("Mailing Country", "郵送先国"), "Department": ("Department", "部署"),
    },
    "Opportunity.csv": {
        "Id": ("Opportunity ID", "商談 ID"), "AccountId": ("Account ID", "取引先 ID"),
        "ContactId": ("Contact ID", "取引先責任者 ID"), "IsClosed": ("Closed", "完了"), "IsWon": ("Won", "成立"),
        "StageName": ("Stage", "フェーズ"), "CloseDate": ("Close Date", "完了予定日"),
        "LastModifiedDate": ("Last Modified Date", "最終更新日"),
    },
    "OpportunityContactRole.csv": {
        "Id": ("Contact Role ID", "取引先責任者の役割 ID"), "OpportunityId": ("Opportunity ID", "商談 ID"),
        "ContactId": ("Contact ID", "取引先責任者 ID"), "Role": ("Role", "役割"), "IsPrimary": ("Primary", "主"),
    },
    "User.csv": {
        "Id": ("User ID", "ユーザ ID"), "Name": ("Full Name", "氏名"), "FirstName": ("First Name", "名"),
        "LastName": ("Last Name", "姓"), "Email": ("Email", "メール"), "IsActive": ("Active", "有効"),
        "Title": ("Title", "役職"), "Phone": ("Phone", "電話"), "Signature": ("Email Signature", "メールの署名"),
    },
}
REPORT_FOOTERS = {
    "en": ["", '"Dormant contacts"', '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."',
           '"Confidential Information - Do Not Distribute"', '"Generated By:  Admin User  11/23/2026 9:15 AM"',
           '"Acme K.K."'],
    "ja": ["", '"休眠顧客"', '"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."',
           '"機密情報 - 配布禁止"', '"作成者:  管理者 ユーザ  2026/11/23 9:15"', '"株式会社アクメ"'],
}
_ID_COLUMNS = {"Id", "AccountId", "ContactId", "OwnerId", "OpportunityId"}


def report_export(source: Path, folder: Path, language: str, encoding: str = "utf-8") -> Path:
    """The Data Loader export in ``source`` as a report exports the same records: each header the field's
    label in ``language`` ("en" or "ja"), Ids cut to the 15 characters a report shows, checkboxes as 1/0,
    IsEmailBounced as the bounce reason (reports offer the reason, not the flag), and the report's footer
    after a blank line. A column the table has no label for keeps its API name."""
    folder.mkdir(parents=True, exist_ok=True)
    which = 0 if language == "en" else 1
    for name, labels in REPORT_LABELS.items():
        path = source / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = list(reader)
        keys = [h.strip() for h in header]
        out_rows = []
        for row in rows:
            record = dict(zip(keys, row, strict=True))
            for key, value in record.items():
                if key in _ID_COLUMNS and len(value.strip()) == 18:
                    record[key] = value.strip()[:15]
                if key in ("HasOptedOutOfEmail", "IsActive", "IsClosed", "IsWon", "IsPrimary"):
                    low = value.strip().lower()
                    record[key] = "1" if low in ("true", "1") else "0" if low in ("false", "0", "") else value
                if key == "IsEmailBounced":
                    record[key] = "550 5.1.1 user unknown" if value.strip().lower() in ("true", "1") else ""
            out_rows.append({labels.get(k, (k, k))[which]: v for k, v in record.items()})
        out_header = [labels.get(k, (k, k))[which] for k in keys]
        text = csv_text(out_header, out_rows, quoting="all", newline="\r\n")
        write_raw(folder / name, text + "\r\n".join(REPORT_FOOTERS[language]) + "\r\n", encoding=encoding)
    return folder
