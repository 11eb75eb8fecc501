"""Goal 5: start-up. ``repsend --help`` against ``python -c "import typer"``: at most 1.5x.

Both are fresh processes timed on the wall clock, alternating, many times (a start-up is a few tens of
milliseconds, so one slow spell of a noisy machine must not decide it); the median is reported. Then
one more ``repsend --help`` reports which heavy libraries it loaded: none of SQLAlchemy, simple-salesforce,
Jinja2, pydantic should be among them, and rich (typer's help formatter) costs about as much as typer.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("sqlalchemy", "simple_salesforce", "jinja2", "pydantic", "alembic", "sqlmodel", "rich", "requests",
         "tenacity", "dotenv")

# repsend --help as the console script runs it, then which of the packages named in argv it imported.
HELP_THEN_LIST = """
import json, sys
wanted = set(sys.argv[1:])
sys.argv = ["repsend", "--help"]
from repsend.cli import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & wanted)))
"""


def repsend_command() -> list[str]:
    script = shutil.which("repsend", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "repsend"]


def clean_env() -> dict[str, str]:
    """Python as installed: bytecode caches written and read (PYTHONDONTWRITEBYTECODE, which some CI and
    container setups set, would have repsend's own modules compiled again at every start)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")}


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True, env=clean_env())
    return time.perf_counter() - started


def main(quick: bool) -> list[dict]:
    repeats = 7 if quick else 21
    typer_cmd = [sys.executable, "-c", "import typer"]
    help_cmd = [*repsend_command(), "--help"]
    wall(typer_cmd)  # warm the file cache for both
    wall(help_cmd)
    typer_t, help_t = [], []
    for _ in range(repeats):
        typer_t.append(wall(typer_cmd))
        help_t.append(wall(help_cmd))
    typer_s, help_s = statistics.median(typer_t), statistics.median(help_t)
    ratio = help_s / typer_s
    print(f"{repeats} runs each, alternating:")
    print(f'  python -c "import typer": median {typer_s * 1000:.0f} ms '
          f"(min {min(typer_t) * 1000:.0f}, max {max(typer_t) * 1000:.0f})")
    print(f"  repsend --help:           median {help_s * 1000:.0f} ms "
          f"(min {min(help_t) * 1000:.0f}, max {max(help_t) * 1000:.0f})")
    print(f"  ratio {ratio:.2f}x (goal <= 1.5x)")
    probe = subprocess.run([sys.executable, "-c", HELP_THEN_LIST, *HEAVY], capture_output=True, text=True,
                           check=True, env=clean_env())
    loaded = json.loads(probe.stderr.strip().splitlines()[-1])
    print(f"  heavy libraries loaded by repsend --help: {', '.join(loaded) or 'none'}")
    if "rich" in loaded:
        print("  (rich is typer's help formatter: Typer(rich_markup_mode=None) in repsend/cli.py leaves it out)")
    return [
        {
            "goal": "5 start-up, repsend --help vs import typer",
            "measured": f"{help_s * 1000:.0f} ms vs {typer_s * 1000:.0f} ms = {ratio:.2f}x",
            "target": "<= 1.5x",
            "met": ratio <= 1.5,
        },
    ]
