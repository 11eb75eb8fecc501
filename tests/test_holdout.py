"""The holdout group through the CLI: a stable share of the would-be sends kept unmailed, the same in the
dry run and the real run, recorded in the send log as held_out with the rep, and held out for the whole
campaign, even when the share is changed later."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from repsend.cli import app
from repsend.sendlog import SendLog
from tests.helpers import SATO, contact, write_config, write_export

AS_OF = "2026-12-07"


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"REPSEND_CONFIG": ""})


def configure(tmp_path: Path, holdout: float) -> Path:
    export = write_export(tmp_path / "export", [contact(n) for n in range(1, 41)], roles=[])
    return write_config(tmp_path, export, campaign={"name": "spring", "holdout": holdout},
                        mail={"transport": "outbox", "outbox_dir": str(tmp_path / "outbox")})


def reasons(config: Path, *args: str) -> dict[str, str]:
    result = cli("dormant", "--json", "--as-of", AS_OF, "--config", str(config), *args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["email"]: line["reason"] for line in lines if line.get("type") == "decision"}


def test_the_dry_run_and_the_real_run_hold_out_the_same_contacts(tmp_path: Path) -> None:
    config = configure(tmp_path, 0.3)

    planned = reasons(config, "--dry-run")
    held = sorted(a for a, r in planned.items() if r == "holdout")
    assert 6 <= len(held) <= 18 and set(planned.values()) == {"holdout", "dormant"}  # 30% of 40: 12

    done = reasons(config)
    assert sorted(a for a, r in done.items() if r == "holdout") == held
    mailed = {p.read_text(encoding="utf-8").split("\nTo: ", 1)[1].split("\n", 1)[0].rsplit("<", 1)[1].rstrip(">")
              for p in (tmp_path / "outbox").glob("*.eml")}
    assert mailed == set(planned) - set(held)
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        rows = [r for r in log.rows("spring") if r.state == "held_out"]
    assert sorted(r.address for r in rows) == held
    assert {r.rep_id for r in rows} == {SATO} and {r.message_id for r in rows} == {""}

    again = reasons(config, "--dry-run")
    assert sorted(a for a, r in again.items() if r == "holdout") == held  # held out, not already_sent
    assert {r for a, r in again.items() if a not in held} == {"already_sent"}


def test_a_held_out_contact_stays_held_out_when_the_share_changes(tmp_path: Path) -> None:
    config = configure(tmp_path, 0.3)
    held = {a for a, r in reasons(config).items() if r == "holdout"}

    lowered = configure(tmp_path, 0.0)  # the same files, the share now 0
    assert lowered == config
    assert {a for a, r in reasons(config, "--dry-run").items() if r == "holdout"} == held


def test_each_real_run_keeps_its_decisions_by_reason_and_a_dry_run_nothing(tmp_path: Path) -> None:
    config = configure(tmp_path, 0.3)
    planned = reasons(config, "--dry-run")
    assert not (tmp_path / "repsend.db").exists()  # a dry run writes nothing, its counts neither
    reasons(config)

    result = cli("stats", "--by", "run", "--format", "json", "--config", str(config))

    assert result.exit_code == 0, result.output
    (run,) = [json.loads(line) for line in result.stdout.splitlines() if json.loads(line)["type"] == "run"]
    expected = {"dormant": list(planned.values()).count("dormant"), "holdout": list(planned.values()).count("holdout")}
    assert run["reasons"] == expected and run["considered"] == 40
