"""A CSV for Excel never carries a formula: text that a stranger wrote (an SMTP answer, a bounce's words)
and that starts like one is shown as text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from repsend.cli import app
from repsend.logview import excel_safe
from repsend.sendlog import FAILED, SendLog
from tests.helpers import contact, write_config, write_export

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def test_formula_like_text_is_text_and_numbers_stay_numbers() -> None:
    assert [excel_safe(v) for v in ("=1+1", "+81 3", "-x", "@SUM(A1)", "\tx", "plain", 550, -0.5, None)] == [
        "'=1+1", "'+81 3", "'-x", "'@SUM(A1)", "'\tx", "plain", 550, -0.5, ""]


def test_the_log_for_excel_shows_a_hostile_smtp_answer_as_text(tmp_path: Path) -> None:
    config = write_config(tmp_path, write_export(tmp_path / "export", [contact(1)], roles=[]))
    with SendLog.open(f"sqlite:///{tmp_path / 'repsend.db'}") as log:
        row = log.claim(run_id="r", campaign="dormant", contact_id=contact(1)["Id"], address="c1@example.co.jp",
                        rep_id="0055g00000AbCdEAAV", rep_email="k.sato@acme.example", subject="件名",
                        message_id="<1@acme.example>", template="dormant", language="ja", now=NOW)
        assert row is not None
        log.finish(row, FAILED, NOW, 550, '=HYPERLINK("http://evil.example","5.1.1")')

    result = CliRunner().invoke(app, ["log", "--excel", "--config", str(config)], env={"REPSEND_CONFIG": ""})

    assert result.exit_code == 0, result.output
    (record,) = csv.DictReader(io.StringIO(result.stdout_bytes.decode("utf-8-sig")))
    assert record["smtp_text"] == '\'=HYPERLINK("http://evil.example","5.1.1")'
    assert record["subject"] == "件名" and record["smtp_code"] == "550"
