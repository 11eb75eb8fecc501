"""The edges of a dry run without its rules, for bench_selection's goal 1 (a reported figure, not a goal).

    python bench/edges_only.py CONFIG > /dev/null

Everything ``repsend dormant --dry-run --json`` does but decide: the imports of the command, the config, the
CSV source's setup (users, deals, the first pass over Contact.csv) and every contact as a ``Contact``, a
``Decision`` made for each without asking a rule (a skip), and the JSON writer's line for it. So its time
against the bare csv read is how far "speed from the edges" can take goal 1: the rules come on top of it.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import typer  # noqa: F401 - the command's import, as repsend dormant pays it

from repsend.models import Decision, Reason
from repsend.report import JsonLines
from repsend.selection import Summary
from repsend.settings import load_settings
from repsend.sfa import open_source


def main(config: str) -> None:
    settings = load_settings(Path(config))
    source = open_source(settings)
    recent_since = date(2026, 6, 1) - timedelta(days=settings.audience.dormant_after_days)
    source.reps()
    deals = source.deals(recent_since, settings.audience.active_deal_scope)
    source.blocked_addresses(deals, settings.audience.active_deal_scope)
    out, summary = JsonLines(sys.stdout), Summary()
    for contact in source.contacts():
        decision = Decision(contact=contact, reason=Reason.NO_EMAIL, language="ja")
        summary.add(decision)
        out.row(decision)
    out.summary(summary, dry_run=True)


if __name__ == "__main__":
    main(sys.argv[1])
