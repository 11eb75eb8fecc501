"""No module keeps state between runs: what a run remembers (caches, counts) belongs to that run's objects.

A module-level dict, set or list that a run fills would make a second run in the same process (a test
suite, a future web page) depend on the first, and grow without end in a long-lived process.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import date
from typing import Any

import repsend
from repsend.report import JsonLines, Table
from repsend.selection import RunOptions, Summary, select
from repsend.settings import load_settings
from repsend.sfa import open_source
from tests.helpers import REPO


def module_state() -> dict[str, Any]:
    """Every mutable container at module level in repsend, by module and name, as a comparable copy."""
    state: dict[str, Any] = {}
    for info in pkgutil.walk_packages(repsend.__path__, "repsend."):
        if info.name.startswith("repsend.migrations") or info.name == "repsend.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, dict | set | list | bytearray):
                state[f"{info.name}.{name}"] = repr(sorted(map(repr, value))) if isinstance(value, set) else repr(value)
    return state


def test_a_run_leaves_no_state_in_any_module(tmp_path: Any) -> None:
    import io

    settings = load_settings(REPO / "config" / "repsend.toml")
    options = RunOptions(as_of=date(2026, 11, 23), campaign="dormant", template="dormant")
    before = module_state()
    assert before, "no module-level containers found: the test would prove nothing"
    outputs = []
    for writer in (JsonLines, Table, JsonLines):
        out, summary = io.StringIO(), Summary()
        lines = writer(out)
        for decision in select(settings, open_source(settings), options, summary=summary):
            lines.row(decision)
        lines.summary(summary, dry_run=True)
        outputs.append(out.getvalue())
    assert module_state() == before
    assert outputs[0] == outputs[2] and summary.send == 23  # the same run twice: the same output
