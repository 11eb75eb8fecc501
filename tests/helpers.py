"""Builders for the tests: a Salesforce CSV export and a config file in a temporary folder."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"

USER_HEADER = ["Id", "Name", "FirstName", "LastName", "Email", "IsActive", "Title", "Phone", "Signature"]
CONTACT_HEADER = [
    "Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate",
    "CreatedDate", "AccountId", "Account.Name", "OwnerId", "Title", "MailingCountry",
]
OPPORTUNITY_HEADER = ["Id", "AccountId", "ContactId", "IsClosed", "IsWon", "StageName", "CloseDate", "LastModifiedDate"]
ROLE_HEADER = ["Id", "OpportunityId", "ContactId", "Role", "IsPrimary"]

SATO = "0055g00000AbCdEAAV"
CARTER = "0055g00000AbCdFAAV"
SUZUKI = "0055g00000AbCdGAAV"  # inactive

REPS = [
    {"Id": SATO, "Name": "佐藤 健", "FirstName": "健", "LastName": "佐藤", "Email": "k.sato@acme.example",
     "IsActive": "true", "Title": "営業部 課長", "Phone": "03-1234-5678",
     "Signature": "佐藤 健\n株式会社アクメ 営業部 課長\n03-1234-5678"},
    {"Id": CARTER, "Name": "Emily Carter", "FirstName": "Emily", "LastName": "Carter",
     "Email": "e.carter@acme.example", "IsActive": "true", "Title": "Account Executive", "Phone": "",
     "Signature": "Emily Carter\nAccount Executive, Acme K.K."},
    {"Id": SUZUKI, "Name": "鈴木 一郎", "FirstName": "一郎", "LastName": "鈴木", "Email": "i.suzuki@acme.example",
     "IsActive": "false", "Title": "", "Phone": "", "Signature": ""},
]

OLD = "2023-04-01"


def contact(n: int, **fields: Any) -> dict[str, str]:
    """A dormant Japanese contact owned by 佐藤, at account n, unless fields say otherwise."""
    row = {
        "Id": f"0035g{n:010d}AAA",
        "FirstName": "花子",
        "LastName": f"山田{n}",
        "Email": f"c{n}@example.co.jp",
        "HasOptedOutOfEmail": "false",
        "IsEmailBounced": "false",
        "LastActivityDate": OLD,
        "CreatedDate": "2022-01-10T09:30:00.000Z",
        "AccountId": f"0015g{n:010d}AAA",
        "Account.Name": f"株式会社サンプル{n}",
        "OwnerId": SATO,
        "Title": "",
        "MailingCountry": "Japan",
    }
    row.update({k: str(v) for k, v in fields.items()})
    return row


def deal(n: int, account_id: str, closed: bool = False, changed: str = OLD, contact_id: str = "") -> dict[str, str]:
    return {
        "Id": f"0065g{n:010d}AAA",
        "AccountId": account_id,
        "ContactId": contact_id,
        "IsClosed": "true" if closed else "false",
        "IsWon": "false",
        "StageName": "Closed Lost" if closed else "Prospecting",
        "CloseDate": changed,
        "LastModifiedDate": changed + "T00:00:00.000Z",
    }


def write_csv(path: Path, header: list[str], rows: Iterable[Mapping[str, str]], encoding: str = "utf-8",
              bom: bool = False) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, quoting=csv.QUOTE_ALL, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    data = buffer.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def write_export(
    folder: Path,
    contacts: Iterable[Mapping[str, str]],
    deals: Iterable[Mapping[str, str]] = (),
    roles: Iterable[Mapping[str, str]] | None = None,
    reps: Iterable[Mapping[str, str]] = REPS,
    encoding: str = "utf-8",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "User.csv", USER_HEADER, reps, encoding)
    write_csv(folder / "Contact.csv", CONTACT_HEADER, contacts, encoding)
    write_csv(folder / "Opportunity.csv", OPPORTUNITY_HEADER, deals, encoding)
    if roles is not None:
        write_csv(folder / "OpportunityContactRole.csv", ROLE_HEADER, roles, encoding)
    return folder


def write_config(folder: Path, export: Path | None = None, extra: str = "",
                 languages: Mapping[str, str] | None = None, **sections: dict[str, Any]) -> Path:
    """A config file for an export: the bundled templates, a company, limits off unless given, and
    ``languages`` as [template.languages] (default: Japan/日本 ja, United States/Singapore en)."""
    base: dict[str, dict[str, Any]] = {
        "sfa": {"kind": "csv", "path": str(export or folder / "export")},
        "template": {"dir": str(TEMPLATES), "default_language": "ja",
                     "language_field": "MailingCountry"},
        "company": {"name": "株式会社アクメ", "postal_address": "〒100-0005 東京都千代田区丸の内1-1-1",
                    "opt_out": "optout@acme.example", "domain": "acme.example"},
        "rate": {"per_minute": 0, "per_hour": 0, "per_rep_per_day": 0},
        "log": {"database": str(folder / "repsend.db")},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
        lines.append("")
    languages = languages or {"Japan": "ja", "日本": "ja", "United States": "en", "Singapore": "en"}
    lines.append("[template.languages]")
    lines.extend(f"{_toml(key)} = {_toml(value)}" for key, value in languages.items())
    lines.append("")
    lines.append(extra)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "repsend.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def table_summary(text: str) -> dict[str, Any]:
    """The table dry run's summary as the JSON summary counts it: considered, send, skip by reason."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if re.match(r"\d+ considered: \d+ to send, \d+ skipped$", line))
    considered, send, _ = map(int, re.findall(r"\d+", lines[head]))
    skip = {}
    for line in lines[head + 1:]:
        found = re.match(r"  (\w+) +(\d+)$", line)
        if found:
            skip[found[1]] = int(found[2])
    return {"considered": considered, "send": send, "skip": dict(sorted(skip.items()))}
