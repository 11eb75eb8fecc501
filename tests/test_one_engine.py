"""One decision engine, every path: the dry runs, ``preview`` and the real run decide alike.

repsend promises that ``repsend dormant --dry-run`` decides exactly as ``repsend dormant`` will, and that
every output asks the one engine (``Audience.decide``, driven by ``selection.select``). An earlier version
had a second engine for one output: a rule added to one copy changed that output only, and no test
noticed. So here every path runs through the CLI as a user runs it, over the same seeded random exports
(``tests/exports.py``) under many configs, and each test holds two paths to each other or a path to the
raw files:

- the real run (outbox transport, a fresh send log) reports the dry run's decisions, in its own order;
- the table dry run shows, row by row, what the JSON dry run says; ``preview`` says it for one contact;
- what the real run says it did, it did: one .eml per send, one ``sent`` send-log row per send;
- the next dry run reads that send log: nobody mailed is chosen again;
- the non-negotiables (opt-outs, bounces, suppression, open deals, one mail per person, the rep's daily
  cap, clean headers) hold, checked against the raw CSV files by a checker of this file's own, which
  imports no repsend rule: a wrong rule in the one engine cannot pass by agreeing with itself.
"""

from __future__ import annotations

import csv
import email
import json
import random
import re
import sqlite3
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from repsend.cli import app
from repsend.clock import SystemClock
from repsend.report import Table, fit
from repsend.sendlog import SendLog
from tests.exports import AS_OF, CARELESS_SEED, CONFIGS, SEEDS, config_for, history_for, random_export
from tests.helpers import table_summary

# name: (CONFIGS key, seed, contacts, careless values). Each its own export: more cases for the same time.
SCENARIOS: dict[str, tuple[str, int, int, bool]] = {
    "account": ("account", SEEDS[0], 600, False),
    "contact_role": ("contact_role", SEEDS[1], 500, False),
    "rep_cap": ("rep_cap", 101, 800, False),
    "fallback_by_address": ("fallback_by_address", 102, 500, False),
    "fallback_by_id15_and_domains": ("fallback_by_id15_and_domains", 103, 400, False),
    "sender_domains": ("sender_domains", 104, 600, False),
    "suppression": ("suppression", 105, 500, False),
    "contact_fields": ("contact_fields", 106, 400, False),
    "history": ("history", 107, 600, False),
    "kitchen_sink": ("kitchen_sink", 108, 500, False),
    "careless": ("account", CARELESS_SEED, 500, True),
}
CAMPAIGN = "dormant"  # the config's default [campaign] name
ZONE = ZoneInfo("Asia/Tokyo")  # the config's default [rate] timezone: "today" for the daily cap
# The CLI's clock, pinned to the morning of AS_OF: "today" (the daily cap) is the day the runs decide
# for, as in a run without --as-of, whatever day the suite runs, and no two runs straddle a midnight.
NOW = datetime(AS_OF.year, AS_OF.month, AS_OF.day, 10, 0, tzinfo=ZONE)
HISTORY_REP = "0055g00000HiStRAAV"  # in no User.csv: a seeded earlier mail counts for no rep's cap
# The fields every path must agree on for one contact's decision.
DECISION = ("contact_id", "email", "action", "reason", "rep_id", "from", "subject", "detail", "language", "variant")
runner = CliRunner()


# ---------------------------------------------------------------------------------------------------
# One scenario: an export and a config, every path run once through the CLI
# ---------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One export under one config, and what every path printed for it (each path run once)."""

    name: str
    export: Path
    config: Path
    outbox: Path
    database: Path
    seeded: int  # rows in the send log before the run
    sent_today: dict[str, int]  # id15 of a rep -> mails in the send log today before the run (seeded)
    mailed_before: dict[str, str]  # address -> why the seeded send log forbids a mail to it now
    dry: list[dict[str, Any]] = field(default_factory=list)
    dry_summary: dict[str, Any] = field(default_factory=dict)
    table: str = ""
    previews: dict[str, str] = field(default_factory=dict)  # contact_id -> `repsend preview` stdout
    real: list[dict[str, Any]] = field(default_factory=list)
    real_summary: dict[str, Any] = field(default_factory=dict)
    after: list[dict[str, Any]] = field(default_factory=list)
    after_summary: dict[str, Any] = field(default_factory=dict)
    after_table: str = ""
    after_previews: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        """``repsend ARGS --as-of ... --config ...`` as a user runs it: its stdout; it must succeed."""
        result = runner.invoke(app, [*args, "--as-of", AS_OF.isoformat(), "--config", str(self.config)])
        assert result.exit_code == 0, (args, result.exit_code, result.stderr, result.exception)
        return result.stdout

    def json_run(self, *args: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The decision lines and the summary of ``repsend dormant --json ARGS``."""
        # Split on "\n" only: a JSON string may hold U+2028 or U+0085, which str.splitlines() splits on.
        lines = [json.loads(line) for line in self.cli("dormant", "--json", *args).split("\n") if line]
        assert lines and lines[-1]["type"] == "summary" and all(d["type"] == "decision" for d in lines[:-1])
        return lines[:-1], lines[-1]

    @property
    def sends(self) -> list[dict[str, Any]]:
        return [d for d in self.real if d["action"] == "send"]


def build(root: Path, name: str) -> Scenario:
    """Writes the export and config, seeds the send log where the config has a history, then runs the
    JSON and table dry runs, previews of a sample, the real run, and the dry runs again."""
    config_name, seed, contacts, careless = SCENARIOS[name]
    folder = root / name
    export = random_export(folder / "export", seed, contacts=contacts, weird=careless)
    outbox = folder / "outbox"
    config = config_for(folder, export, config_name, seed, mail={"transport": "outbox", "outbox_dir": str(outbox)},
                        rate={"per_minute": 0, "per_hour": 0})  # per_rep_per_day: the config's
    database = Path(tomllib.loads(config.read_text(encoding="utf-8"))["log"]["database"])
    assert not database.exists()
    seeded, sent_today, mailed_before = 0, {}, {}
    if CONFIGS[config_name].get("history"):
        seeded, sent_today, mailed_before = seed_send_log(database, config, export, seed)
    s = Scenario(name, export, config, outbox, database, seeded, sent_today, mailed_before)
    s.dry, s.dry_summary = s.json_run("--dry-run")
    s.table = s.cli("dormant", "--dry-run")
    for contact_id in preview_sample(s, seed):
        s.previews[contact_id] = s.cli("preview", contact_id)
    s.real, s.real_summary = s.json_run()
    s.after, s.after_summary = s.json_run("--dry-run")
    s.after_table = s.cli("dormant", "--dry-run")
    for contact_id in [d["contact_id"] for d in s.sends if d["contact_id"] in s.previews][:2]:
        s.after_previews[contact_id] = s.cli("preview", contact_id)
    return s


def seed_send_log(database: Path, config: Path, export: Path,
                  seed: int) -> tuple[int, dict[str, int], dict[str, str]]:
    """``history_for``'s history as a send log holds it (the CLI reads history only from there): this
    campaign's addresses, other campaigns' recent mails, and reps' mails today. Returns the rows written,
    the reps' mails today and the addresses a mail to now would break a promise (already sent, cooldown)."""
    history = history_for(export, seed)
    audience = tomllib.loads(config.read_text(encoding="utf-8")).get("audience", {})
    cooldown_since = AS_OF - timedelta(days=audience.get("cooldown_days", 90))
    now = NOW.astimezone(UTC)
    log = SendLog.open(f"sqlite:///{database}")
    sent_today: Counter[str] = Counter()
    mailed_before: dict[str, str] = {}
    rows = 0
    try:
        log.start_run("seed", CAMPAIGN, now, "seed", 0)

        def add(campaign: str, address: str, rep_id: str, when: datetime) -> None:
            nonlocal rows
            rows += 1
            row = log.claim(run_id="seed", campaign=campaign, contact_id="", address=address, rep_id=rep_id,
                            rep_email="earlier@acme.example", subject="An earlier note", message_id=make_msgid(),
                            template="dormant", language="ja", now=when)
            assert row is not None
            log.finish(row, "sent", when, 250, "ok")

        for address in sorted(history.campaign_addresses):
            add(CAMPAIGN, address, HISTORY_REP, datetime(2025, 1, 1, 12, tzinfo=ZONE))
            mailed_before[address] = f"already sent: mailed in campaign {CAMPAIGN!r}"
        for address, day in sorted(history.last_mailed.items()):
            add("spring", address, HISTORY_REP, datetime.combine(day, time(9), tzinfo=ZONE))
            if day >= cooldown_since:
                mailed_before.setdefault(address, f"cooldown: mailed on {day}, cooling down since {cooldown_since}")
        for rep_id, count in sorted(history.rep_sent_today.items()):
            for n in range(count):
                add("other", f"today{n}.{rep_id.lower()}@elsewhere.example", rep_id, now)
            sent_today[rep_id.strip()[:15]] += count
        log.finish_run("seed", now, {}, 0)
    finally:
        log.close()
    return rows, dict(sent_today), mailed_before


def preview_sample(s: Scenario, seed: int) -> list[str]:
    """A few sends and a few skips of different reasons, whose contact (and sender) is unambiguous."""
    ids = Counter(key15(d["contact_id"]) for d in s.dry)
    rep_rows = Counter(key15(r["Id"]) for r in read_csv(s.export / "User.csv"))
    rng = random.Random(seed)
    sends = [d for d in s.dry if d["action"] == "send" and ids[key15(d["contact_id"])] == 1
             and rep_rows[key15(d["rep_id"])] == 1]
    by_reason: dict[str, dict[str, Any]] = {}
    for d in s.dry:
        if d["action"] == "skip" and ids[key15(d["contact_id"])] == 1:
            by_reason.setdefault(d["reason"], d)
    with_detail = [d for d in sends if d["detail"]][:1]  # a fallback sender's send says why
    picked = rng.sample(sends, min(2, len(sends))) + with_detail
    picked += rng.sample(sorted(by_reason.values(), key=lambda d: d["reason"]), min(4, len(by_reason)))
    return list(dict.fromkeys(d["contact_id"] for d in picked))


class Scenarios:
    """Each scenario built once, when a test first asks for it (the real run is the slow part)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, Scenario] = {}
        self.failed: dict[str, BaseException] = {}  # a build that failed fails every test of it the same way

    def __getitem__(self, name: str) -> Scenario:
        if name in self.failed:
            raise self.failed[name]
        if name not in self.built:
            try:
                self.built[name] = build(self.root, name)
            except BaseException as exc:
                self.failed[name] = exc
                raise
        return self.built[name]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenarios]:
    """The scenarios of this module, with the CLI's clock at ``NOW`` while they are built."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SystemClock, "now", lambda self: NOW.astimezone(UTC))
        yield Scenarios(tmp_path_factory.mktemp("one-engine"))


# ---------------------------------------------------------------------------------------------------
# Reading what the paths print, and the raw files
# ---------------------------------------------------------------------------------------------------


def decision_of(line: dict[str, Any]) -> tuple[Any, ...]:
    """What a decision line says about one contact, without what only a real run adds (its outcome)."""
    return tuple(line[k] for k in DECISION)


def differences(left: Iterable[tuple[Any, ...]], right: Iterable[tuple[Any, ...]], names: tuple[str, str]) -> str:
    """The decisions only one side has, a few of each: what a failure should show."""
    a, b = Counter(left), Counter(right)
    only_a, only_b = list((a - b).elements()), list((b - a).elements())
    return (f"{len(only_a)} only in {names[0]}, {len(only_b)} only in {names[1]}\n"
            f"{names[0]}: {only_a[:5]}\n{names[1]}: {only_b[:5]}")


def cell_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1  # as a terminal shows it (the table's rule)


def table_rows(text: str, emails: list[str]) -> list[tuple[str, str, str, str]]:
    """(action, reason, detail, subject) of each row of the table, cut at its fixed terminal columns; an
    address wider than its column (``emails``, the rows' addresses) pushes the rest of its row."""
    lines = text.split("\n")
    assert [c.strip() for c in cut(lines[0])[:2]] == ["contact", "company"], lines[0]
    rows = lines[1:lines.index("")]
    assert len(rows) == len(emails)
    return [(cells[4].strip(), cells[5].strip(), cells[6].strip(), cells[7]) for cells in
            (cut(line, push=max(0, sum(map(cell_width, email)) - ADDRESS_COLUMNS)) for line, email in zip(rows, emails,
                                                                                                            strict=True))]


ADDRESS_COLUMNS, DETAIL_COLUMNS = dict(Table.COLUMNS)["address"], dict(Table.COLUMNS)["detail"]


def cut(line: str, push: int = 0) -> list[str]:
    """A table line's cells: each column's characters by where they start on the screen (those after the
    address ``push`` columns further right); then the rest."""
    bounds, start = [], 0
    for name, columns in Table.COLUMNS:
        columns += push if name == "address" else 0
        bounds.append((start, start + columns))
        start += columns + 2
    cells = [""] * (len(bounds) + 1)
    position = 0
    for ch in line:
        index = next((i for i, (lo, hi) in enumerate(bounds) if lo <= position < hi), None)
        if index is not None:
            cells[index] += ch
        elif position >= start:
            cells[-1] += ch
        position += cell_width(ch)
    return cells


def read_csv(path: Path) -> list[dict[str, str]]:
    """A raw export file as csv.DictReader reads it (the BOM dropped, column names stripped)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [{(k or "").strip(): v or "" for k, v in row.items()} for row in csv.DictReader(handle)]


def truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1")  # true, TRUE, True, 1, with spaces around


def key15(value: str | None) -> str:
    return (value or "").strip()[:15]  # Salesforce IDs: the first 15 characters are the ID


def address_of(value: str | None) -> str:
    return (value or "").strip().lower()


def on_the_wire(value: str) -> str:
    """An address as the header and the envelope carry it: its domain in IDNA A-labels."""
    local, _, domain = address_of(value).rpartition("@")
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def headers_of(eml: EmailMessage) -> dict[str, str]:
    """A mail's headers as a person reads them, for a failure's message."""
    return {name: str(value) for name, value in eml.items()}


# ---------------------------------------------------------------------------------------------------
# The non-negotiables, from the raw files: a checker of its own
# ---------------------------------------------------------------------------------------------------

TEMPLATE_MARKS = ("\r", "\n", "{{", "}}", "{%", "%}")


def forbidden_addresses(export: Path, config: Path) -> dict[str, str]:
    """Address -> why no mail may go to it: any record with it opted out or bounced, the suppression
    file, or any record with it in an open deal (as a role or primary contact; in account scope also
    through its account)."""
    audience = tomllib.loads(config.read_text(encoding="utf-8")).get("audience", {})
    account_scope = audience.get("active_deal_scope", "account") == "account"
    deals = read_csv(export / "Opportunity.csv")
    open_deals = {key15(d["Id"]) for d in deals if not truthy(d["IsClosed"])}
    open_accounts = {key15(d["AccountId"]) for d in deals if key15(d["Id"]) in open_deals} - {""}
    in_open_deal = {key15(d["ContactId"]) for d in deals if key15(d["Id"]) in open_deals}
    in_open_deal |= {key15(r["ContactId"]) for r in read_csv(export / "OpportunityContactRole.csv")
                     if key15(r["OpportunityId"]) in open_deals}
    in_open_deal.discard("")
    why: dict[str, str] = {}
    for c in read_csv(export / "Contact.csv"):
        address = address_of(c["Email"])
        if not address:
            continue
        if truthy(c["HasOptedOutOfEmail"]):
            why.setdefault(address, f"opted out: on {c['Id']}")
        elif truthy(c["IsEmailBounced"]):
            why.setdefault(address, f"bounced: on {c['Id']}")
        elif key15(c["Id"]) in in_open_deal:
            why.setdefault(address, f"open deal: {c['Id']} is its role or primary contact")
        elif account_scope and key15(c["AccountId"]) in open_accounts:
            why.setdefault(address, f"open deal of the account: {c['AccountId']} (of {c['Id']})")
    if audience.get("suppression_file"):
        for line in Path(audience["suppression_file"]).read_text(encoding="utf-8-sig").split("\n"):
            address = address_of(line.split("#", 1)[0])
            if address:
                why.setdefault(address, "suppressed: in the suppression file")
    return why


def broken_promises(s: Scenario, sends: list[dict[str, Any]]) -> list[str]:
    """Every send that breaks a non-negotiable, said as a person would report it."""
    cap = tomllib.loads(s.config.read_text(encoding="utf-8"))["rate"]["per_rep_per_day"]
    forbidden = {**forbidden_addresses(s.export, s.config), **s.mailed_before}
    problems = []
    for d in sends:
        address = address_of(d["email"])
        if address in forbidden:
            problems.append(f"{d['contact_id']}: a mail to {address}: {forbidden[address]}")
        for name in ("subject", "from"):
            if any(mark in (d[name] or "") for mark in TEMPLATE_MARKS):
                problems.append(f"{d['contact_id']}: {name} {d[name]!r} holds a line break or a template mark")
    for address, count in Counter(address_of(d["email"]) for d in sends).items():
        if count > 1:
            problems.append(f"{count} mails to {address}")
    if cap:
        for rep, count in Counter(key15(d["rep_id"]) for d in sends).items():
            allowed = max(0, cap - s.sent_today.get(rep, 0))
            if count > allowed:
                problems.append(f"rep {rep}: {count} mails today, {allowed} allowed ({cap} a day)")
    return problems


# ---------------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------------

NAMES = list(SCENARIOS)


@pytest.mark.parametrize("name", NAMES)
def test_the_real_run_makes_the_dry_runs_decisions(scenarios: Scenarios, name: str) -> None:
    """What ``--dry-run`` promised is what the real run did, contact by contact (the real run sends in
    its own order, round-robin across reps), and every send went out."""
    s = scenarios[name]
    assert s.dry_summary["send"] > 0, "a scenario with nothing to send tests nothing"
    assert len(s.real) == len(s.dry) == s.dry_summary["considered"]
    dry, real = [decision_of(d) for d in s.dry], [decision_of(d) for d in s.real]
    assert Counter(real) == Counter(dry), differences(dry, real, ("dry run", "real run"))
    assert {k: s.real_summary[k] for k in ("considered", "send", "skip")} == \
           {k: s.dry_summary[k] for k in ("considered", "send", "skip")}
    assert [d["outcome"] for d in s.sends] == ["sent"] * s.dry_summary["send"]
    assert all(d["outcome"] is None for d in s.real if d["action"] == "skip")
    assert (s.real_summary["sent"], s.real_summary["failed"], s.real_summary["deferred"], s.real_summary["unknown"],
            s.real_summary["taken"], s.real_summary["not_sent"]) == (s.dry_summary["send"], 0, 0, 0, 0, 0)


@pytest.mark.parametrize("name", NAMES)
def test_the_table_dry_run_shows_the_json_dry_runs_decisions(scenarios: Scenarios, name: str) -> None:
    """The table a person reads says, row for row, what ``--json`` says, and counts the same; before the
    real run and after it (when the send log decides)."""
    s = scenarios[name]
    for table, lines, summary in ((s.table, s.dry, s.dry_summary), (s.after_table, s.after, s.after_summary)):
        json_rows = [(d["action"], d["reason"], fit(d["detail"] or "", DETAIL_COLUMNS).strip(),
                      (d["subject"] or "").rstrip()) for d in lines]
        rows = table_rows(table, [d["email"] for d in lines])
        assert len(rows) == len(json_rows)
        mismatches = [(i, r, j) for i, (r, j) in enumerate(zip(rows, json_rows, strict=True)) if r != j]
        assert not mismatches, mismatches[:3]
        assert table_summary(table) == {k: summary[k] for k in ("considered", "send", "skip")}


@pytest.mark.parametrize("name", NAMES)
def test_the_outbox_holds_one_mail_per_send(scenarios: Scenarios, name: str) -> None:
    """Each send is one .eml file: to that contact's address alone, from the rep the run named (their
    address in User.csv), with the subject it printed, and no header a template or a value put there."""
    s = scenarios[name]
    rep_addresses: dict[str, set[str]] = {}
    for rep in read_csv(s.export / "User.csv"):
        rep_addresses.setdefault(key15(rep["Id"]), set()).add(address_of(rep["Email"]))
    files = sorted(s.outbox.iterdir())
    assert [f.suffix for f in files] == [".eml"] * len(files)  # no temporary file left behind
    mails: dict[str, EmailMessage] = {}
    for path in files:
        eml = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(eml, EmailMessage)
        mails[str(eml["Message-ID"]).strip()] = eml
    assert len(mails) == len(files) == len(s.sends)
    for d in s.sends:
        assert d["message_id"] in mails, d
        eml = mails[d["message_id"]]
        to, from_ = eml["To"].addresses, eml["From"].addresses
        # An internationalized domain is in the header as IDNA A-labels; the decision keeps the SFA's spelling.
        assert [address_of(a.addr_spec) for a in to] == [on_the_wire(d["email"])], d
        assert len(from_) == 1 and address_of(from_[0].addr_spec) in rep_addresses[key15(d["rep_id"])], d
        assert str(eml["From"]) == d["from"] and str(eml["Subject"]) == d["subject"], (headers_of(eml), d)
        assert not {"Cc", "Bcc"} & set(eml.keys()), headers_of(eml)
        for value in (str(eml["Subject"]), str(eml["From"])):
            assert not any(mark in value for mark in TEMPLATE_MARKS), value


@pytest.mark.parametrize("name", NAMES)
def test_the_send_log_holds_one_sent_row_per_send(scenarios: Scenarios, name: str) -> None:
    """The log that keeps the next run from mailing anyone twice: one row per mail the run reported,
    ``sent``, for that contact, address and rep."""
    s = scenarios[name]
    db = sqlite3.connect(f"{s.database.as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT contact_id, address, rep_id, message_id, state FROM send_attempt WHERE run_id = ?",
                          (s.real_summary["run_id"],)).fetchall()
        others = db.execute("SELECT count(*) FROM send_attempt WHERE run_id != ?", (s.real_summary["run_id"],))
        assert others.fetchone()[0] == s.seeded  # the seeded history, untouched
    finally:
        db.close()
    expected = Counter((d["contact_id"], address_of(d["email"]), key15(d["rep_id"]), d["message_id"], "sent")
                       for d in s.sends)
    got = Counter((c, a, key15(r), m, state) for c, a, r, m, state in rows)
    assert got == expected, differences(expected.elements(), got.elements(), ("run output", "send log"))
    assert max(Counter(a for _, a, _, _, _ in rows).values()) == 1


@pytest.mark.parametrize("name", NAMES)
def test_preview_says_what_the_dry_run_says(scenarios: Scenarios, name: str) -> None:
    """``repsend preview CONTACT`` for sends and skips of several reasons: the dry run's decision, and
    for a send the dry run's From and Subject; after the real run, a contact mailed is already_sent."""
    s = scenarios[name]
    rep_names = {key15(r["Id"]): r["Name"].strip() for r in read_csv(s.export / "User.csv")}
    by_id = {d["contact_id"]: d for d in s.dry}
    assert {by_id[c]["action"] for c in s.previews} == {"send", "skip"}
    for contact_id, text in s.previews.items():
        d = by_id[contact_id]
        said = f"send from {rep_names[key15(d['rep_id'])]}" if d["action"] == "send" else f"skip: {d['reason']}"
        said += f" ({d['detail']})" if d["detail"] else ""
        head = re.match(rf"# {re.escape(contact_id)} \(Contact\.csv:\d+\): (.*)\n", text)
        assert head is not None and head[1] == said, (text[:300], d)
        if d["action"] == "skip":
            assert text == head[0]
            continue
        headers = dict(line.partition(": ")[::2] for line in text[head.end():].split("\n\n", 1)[0].split("\n"))
        assert (headers["From"], headers["Subject"]) == (d["from"], d["subject"]), (headers, d)
        assert address_of(parseaddr(headers["To"])[1]) == on_the_wire(d["email"]), (headers, d)
    assert s.after_previews, "no sent contact was previewed after the run"
    for contact_id, text in s.after_previews.items():
        assert re.fullmatch(rf"# {re.escape(contact_id)} \(Contact\.csv:\d+\): skip: already_sent\n", text), text


@pytest.mark.parametrize("name", NAMES)
def test_after_the_real_run_nobody_mailed_is_chosen_again(scenarios: Scenarios, name: str) -> None:
    """The next dry run the same day reads the send log the real run wrote: every record of an address
    mailed is already_sent, and nobody is mailed (the first run mailed all it could, the cap still holds)."""
    s = scenarios[name]
    mailed = {address_of(d["email"]) for d in s.sends}
    again = [d for d in s.after if address_of(d["email"]) in mailed]
    assert len(again) >= len(mailed) > 0
    assert Counter(d["reason"] for d in again) == {"already_sent": len(again)}, [
        d for d in again if d["reason"] != "already_sent"][:5]
    assert s.after_summary["send"] == 0, [d for d in s.after if d["action"] == "send"][:5]
    assert s.after_summary["considered"] == s.dry_summary["considered"]


@pytest.mark.parametrize("name", NAMES)
def test_the_non_negotiables_hold(scenarios: Scenarios, name: str) -> None:
    """No mail to an opt-out, a bounce, a suppressed address or anyone in an open deal (on any of their
    records), none to one person twice, none past a rep's daily cap, no header with a line break or a
    template mark: checked on the real run's mails and on the dry run's, against the raw files."""
    s = scenarios[name]
    assert broken_promises(s, s.sends) == []
    assert broken_promises(s, [d for d in s.dry if d["action"] == "send"]) == []


@pytest.mark.parametrize("name", ["account", "contact_role", "suppression", "history", "careless"])
def test_the_checker_catches_a_mail_it_must(scenarios: Scenarios, name: str) -> None:
    """The checker is only worth its silence if it speaks: a mail to each kind of forbidden address in
    this export, a second mail to one person, mails past the cap and a header with a mark are reported."""
    s = scenarios[name]
    template = s.sends[0]
    assert broken_promises(s, [template]) == []
    why = {**forbidden_addresses(s.export, s.config), **s.mailed_before}
    kinds = {"opted out", "bounced", "open deal"}
    kinds |= {"open deal of the account"} if name != "contact_role" else set()
    kinds |= {"suppressed"} if name == "suppression" else set()
    kinds |= {"already sent", "cooldown"} if s.mailed_before else set()
    caught = set()
    for address, reason in why.items():
        kind = reason.split(":", 1)[0]
        if kind in kinds - caught:
            assert broken_promises(s, [{**template, "email": f" {address.upper()} "}]), (address, reason)
            caught.add(kind)
    assert caught == kinds
    assert len(broken_promises(s, [template, {**template, "email": template["email"].upper() + " "}])) == 1
    assert broken_promises(s, [{**template, "subject": template["subject"] + " {{ contact.name }}"}])
    assert broken_promises(s, [{**template, "from": template["from"] + "\r\nBcc: x@example.com"}])
    cap = tomllib.loads(s.config.read_text(encoding="utf-8"))["rate"]["per_rep_per_day"]
    if cap:
        many = [{**template, "email": f"n{n}@example.org"} for n in range(cap + 1)]
        assert broken_promises(s, many)
