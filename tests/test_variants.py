"""A/B variants through the CLI, on a real export: each contact's variant (a stable hash of the campaign
and Contact Id) is the same in the dry run, the real run, the mail that went out, the send log and
``repsend log``; the split is about even; a template folder that does not say one clear set of variants
stops the run (exit 2) naming the file, before anything is sent or written."""

from __future__ import annotations

import csv
import io
import json
import shutil
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from repsend.assignment import variant_of
from repsend.cli import app
from repsend.sendlog import SendLog
from tests.helpers import CARTER, TEMPLATES, contact, write_config, write_export

AS_OF = "2026-12-07"
CAMPAIGN = "spring"
# The first words of each subject of the bundled sample (templates/dormant_ab), by language and variant.
SUBJECTS = {("ja", "a"): "ご無沙汰しております", ("ja", "b"): "その後いかがでしょうか",
            ("en", "a"): "Catching up, ", ("en", "b"): "How are things at "}


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"REPSEND_CONFIG": ""})


def configure(tmp_path: Path, contacts: int = 200, template_dir: Path = TEMPLATES, **campaign: Any) -> Path:
    """``contacts`` dormant contacts, every other one in English (Emily Carter's); the sample template."""
    rows = [contact(n) if n % 2 else contact(n, MailingCountry="United States", FirstName="Ann", OwnerId=CARTER)
            for n in range(1, contacts + 1)]
    export = write_export(tmp_path / "export", rows, roles=[])
    return write_config(tmp_path, export, campaign={"name": CAMPAIGN, "template": "dormant_ab", **campaign},
                        template={"dir": str(template_dir)},
                        mail={"transport": "outbox", "outbox_dir": str(tmp_path / "outbox")})


def decisions(config: Path, *args: str) -> dict[str, dict[str, Any]]:
    result = cli("dormant", "--json", "--as-of", AS_OF, "--config", str(config), *args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["type"] == "summary"
    return {line["contact_id"]: line for line in lines[:-1]}


def test_each_contact_has_one_variant_from_the_dry_run_to_the_send_log(tmp_path: Path) -> None:
    config = configure(tmp_path)

    planned = decisions(config, "--dry-run")
    assert len(planned) == 200 and {d["action"] for d in planned.values()} == {"send"}
    for contact_id, d in planned.items():
        assert d["variant"] == variant_of(CAMPAIGN, contact_id, ("a", "b"))
        assert d["subject"].startswith(SUBJECTS[(d["language"], d["variant"])]), d
    split = [d["variant"] for d in planned.values()]
    assert 70 <= split.count("a") <= 130, split.count("a")  # about half: 100 +- 30 is over 4 standard deviations
    assert {(d["language"], d["variant"]) for d in planned.values()} == set(SUBJECTS)

    table = cli("dormant", "--dry-run", "--as-of", AS_OF, "--config", str(config))
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split()[-2:] == ["variant", "subject"]
    for d in planned.values():  # the variant's cell (as wide as its title), then the subject
        assert sum(f"  {d['variant']:<7}  {d['subject']}" in row and f" {d['email']} " in row for row in rows) == 1, d

    done = decisions(config, "--limit", "150")  # a first batch as JSON Lines, the rest as a table
    assert {cid: (d["variant"], d["subject"], d["outcome"]) for cid, d in done.items()} == {
        cid: (planned[cid]["variant"], planned[cid]["subject"], "sent") for cid in done}
    assert len(done) == 150
    real_table = cli("dormant", "--as-of", AS_OF, "--config", str(config))
    assert real_table.exit_code == 0, real_table.output
    header, *rows = real_table.stdout.splitlines()
    assert header.split()[-2:] == ["variant", "subject"] and header.split()[4] == "result"
    for cid, d in planned.items():
        if cid not in done:
            assert sum(f"  {d['variant']:<7}  {d['subject']}" in row and f" {d['email']} " in row
                       and " sent " in row for row in rows) == 1, d
    by_address = {d["email"]: d for d in planned.values()}
    for eml in (tmp_path / "outbox").glob("*.eml"):  # the mail that went out is its variant's
        msg = message_from_bytes(eml.read_bytes(), policy=default)
        assert str(msg["Subject"]) == by_address[msg["To"].addresses[0].addr_spec]["subject"]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 200

    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        rows_ = log.rows(CAMPAIGN)
    assert {r.contact_id: r.variant for r in rows_} == {cid: d["variant"] for cid, d in planned.items()}

    logged = cli("log", "--format", "json", "--config", str(config))
    assert logged.exit_code == 0, logged.output
    attempts = [json.loads(line) for line in logged.stdout.splitlines()][:-1]
    assert {a["contact_id"]: a["variant"] for a in attempts} == {cid: d["variant"] for cid, d in planned.items()}
    as_csv = cli("log", "--format", "csv", "--config", str(config))
    table_rows = list(csv.DictReader(io.StringIO(as_csv.stdout.lstrip("\ufeff"))))
    assert {r["contact_id"]: r["variant"] for r in table_rows} == {a["contact_id"]: a["variant"] for a in attempts}

    again = decisions(config, "--dry-run")  # mailed: skips now, with no variant
    assert {(d["reason"], d["variant"]) for d in again.values()} == {("already_sent", "")}


def test_preview_shows_the_variant_the_dry_run_gives(tmp_path: Path) -> None:
    config = configure(tmp_path, contacts=12)
    planned = decisions(config, "--dry-run")
    for contact_id, d in planned.items():
        shown = cli("preview", contact_id, "--as-of", AS_OF, "--config", str(config))
        assert shown.exit_code == 0, shown.output
        head, _, rest = shown.stdout.partition("\n")
        assert head.endswith(f": send from {d['from'].split(' <')[0]}; variant {d['variant']}"), head
        assert f"\nSubject: {d['subject']}\n" in rest


def test_the_variants_split_the_mailed_and_the_held_out_alike(tmp_path: Path) -> None:
    """The holdout's hash and the variants' are independent: whoever is held out, the mailed split evenly;
    a held-out contact's decision has no variant (no mail), its send log row the one it would have had, so
    that each variant's mailed contacts have held-out ones to be compared with."""
    config = configure(tmp_path, holdout=0.5)
    done = decisions(config)
    held = {cid for cid, d in done.items() if d["reason"] == "holdout"}
    mailed = [d["variant"] for d in done.values() if d["reason"] == "dormant"]
    assert 60 <= len(held) <= 140 and len(mailed) == 200 - len(held)
    assert {done[cid]["variant"] for cid in held} == {""}
    assert 0.3 <= mailed.count("a") / len(mailed) <= 0.7
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        rows = log.rows(CAMPAIGN)
    assert {r.contact_id: r.variant for r in rows if r.state == "held_out"} == {
        cid: variant_of(CAMPAIGN, cid, ("a", "b")) for cid in held}
    assert {r.variant for r in rows if r.state == "held_out"} == {"a", "b"}
    assert {r.contact_id: r.variant for r in rows if r.state == "sent"} == {
        cid: d["variant"] for cid, d in done.items() if d["reason"] == "dormant"}


def test_a_template_without_variants_says_variant_empty_and_has_no_column(tmp_path: Path) -> None:
    config = configure(tmp_path, contacts=6, template="dormant")
    assert {d["variant"] for d in decisions(config, "--dry-run").values()} == {""}
    table = cli("dormant", "--dry-run", "--as-of", AS_OF, "--config", str(config))
    assert "variant" not in table.stdout.splitlines()[0]
    decisions(config)
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        assert {r.variant for r in log.rows(CAMPAIGN)} == {""}


def _templates(tmp_path: Path, files: list[str]) -> Path:
    """A templates folder with the legal footers and ``dormant_ab/<file>`` for each file (the bundled text)."""
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES / "_legal", folder / "_legal")
    (folder / "dormant_ab").mkdir()
    for name in files:
        language = name.split(".", 1)[0]
        (folder / "dormant_ab" / name).write_bytes((TEMPLATES / "dormant" / f"{language}.txt").read_bytes())
    return folder


@pytest.mark.parametrize(("files", "named", "words"), [
    (["ja.txt", "ja.a.txt", "ja.b.txt", "en.a.txt", "en.b.txt"], "ja.txt and {dir}/ja.a.txt, {dir}/ja.b.txt",
     "a template has either ja.txt or its variants ja.<variant>.txt, not both"),
    (["ja.a.txt", "ja.b.txt", "en.a.txt"], "en.b.txt", "template not found (template 'dormant_ab' has the"
     " variants a, b: every language it is sent in needs each of them)"),
    (["ja.a.txt", "ja.b.txt", "en.txt"], "en.a.txt", "template not found"),
    (["ja.a.txt", "ja.B.txt", "en.a.txt"], "ja.B.txt", "'B' is no variant name"),
    (["ja.a.txt", "ja.a.b.txt", "en.a.txt"], "ja.a.b.txt", "'a.b' is no variant name"),
    (["ja.a.txt", f"ja.{'x' * 21}.txt", "en.a.txt"], f"ja.{'x' * 21}.txt", "is no variant name"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_folder_without_one_clear_set_of_variants_is_exit_2_naming_the_file(
        tmp_path: Path, files: list[str], named: str, words: str, dry_run: bool) -> None:
    folder = _templates(tmp_path, files)
    config = configure(tmp_path, contacts=4, template_dir=folder)
    result = cli("dormant", *(["--dry-run"] if dry_run else []), "--as-of", AS_OF, "--config", str(config))
    assert result.exit_code == 2, result.output
    where = str(folder / "dormant_ab")
    assert f"repsend: {where}/{named.format(dir=where)}: " in result.stderr and words in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())
    if dry_run:
        assert not (tmp_path / "repsend.db").exists()
    else:
        with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
            assert log.rows() == []  # the run stopped in its setup: no attempt


def test_the_variants_are_sorted_by_name_whatever_the_folder_lists(tmp_path: Path) -> None:
    folder = _templates(tmp_path, ["ja.zz.txt", "ja.b.txt", "ja.a-1.txt", "en.b.txt", "en.zz.txt", "en.a-1.txt"])
    config = configure(tmp_path, contacts=30, template_dir=folder)
    planned = decisions(config, "--dry-run")
    assert {cid: d["variant"] for cid, d in planned.items()} == {
        cid: variant_of(CAMPAIGN, cid, ("a-1", "b", "zz")) for cid in planned}
