"""The reason codes are written once (``models.Reason``): their order, and which are sends. The README's
table is their documentation: a new member without its row, or a row out of order, fails here."""

from __future__ import annotations

import re

from repsend.models import Action, Reason
from tests.helpers import REPO


def readme_reasons() -> list[tuple[str, str]]:
    """(reason, action) of each row of the README's "Reason codes" table, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \| (send|skip) \|", section, flags=re.MULTILINE)


def test_every_reason_is_documented_in_its_order_with_its_action() -> None:
    assert readme_reasons() == [(reason.value, reason.action.value) for reason in Reason]


def test_every_reason_says_whether_it_sends() -> None:
    assert {reason.action for reason in Reason} == {Action.SEND, Action.SKIP}
    assert [reason for reason in Reason if reason.is_send] == [Reason.DORMANT, Reason.FALLBACK_SENDER]
    # A send reason comes after every skip: a skip that applies always wins.
    assert all(skip.rank < send.rank for skip in Reason if not skip.is_send for send in Reason if send.is_send)



def test_the_help_lists_every_reason_in_its_order() -> None:
    """``repsend dormant --help`` names the reason codes (cli.REASONS), the first that applies first."""
    from repsend.cli import REASONS

    named = re.findall(r"[a-z]+(?:_[a-z]+)+|\b(?:dormant|bounced|suppressed|cooldown|holdout)\b", REASONS)
    assert named == [reason.value for reason in Reason]
