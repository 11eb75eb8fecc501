"""Goals 1, 2 and 4 (the dry run's part): the dry run against a bare CSV read, the table against the
JSON, and the dry run's peak memory as the export grows.

1. ``repsend dormant --dry-run --json`` over a synthetic export of 1,000,000 contacts, output to
   /dev/null, against a bare pass that reads the same four files with the ``csv`` module, every row and
   nothing else. Goal: at most 4x the bare read.
2. The table dry run (``repsend dormant --dry-run``, no ``--json``) of the same export and config, output
   to /dev/null, against that JSON dry run. Goal: at most 1.25x.
4. Peak RSS of the JSON dry run: under 250 MB at 1,000,000 contacts, and ten times the data (100,000 ->
   1,000,000) under 3x the memory. (Goal 4's real run: bench_realrun.py.)

Every measurement is a fresh process (interpreter start included, for repsend and for the bare read
alike), timed on the wall clock; its peak RSS is that process's own ``ru_maxrss`` from ``wait4``. One
untimed bare read comes first (it brings the four files into the page cache for every side); then each
round runs bare, JSON and table one after the other (each round starting with the next side), so that a
slow spell of a noisy machine hits all three; the figures are the medians of the rounds. Children run
with ``clean_env()``: what an installed repsend sees, not what this harness was started with. Exports
come from bench/gen_export.py (fixed seed), generated once under bench/data/.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from bench.gen_export import AS_OF, DATA_DIR, ensure_export, sizes

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"

# The bare pass: the csv module over all four files, every row, nothing else (the same field size
# limit as repsend's, so that a long signature is read the same way).
BARE_READ = """
import csv, sys
csv.field_size_limit(16 * 1024 * 1024)
rows = 0
for name in sys.argv[2:] or ("User.csv", "Contact.csv", "Opportunity.csv", "OpportunityContactRole.csv"):
    with open(sys.argv[1] + "/" + name, encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle):
            rows += 1
"""

CONFIG = """\
# Written by bench/{writer} for one synthetic export.
[sfa]
kind = "csv"
path = "{export}"

[template]
dir = "{templates}"
default_language = "ja"
language_field = "MailingCountry"

[template.languages]
"Japan" = "ja"
"日本" = "ja"
"JP" = "ja"
"United States" = "en"
"USA" = "en"
"UK" = "en"
"Singapore" = "en"
"Canada" = "en"

[company]
name = "株式会社アクメ"
postal_address = "〒100-0005 東京都千代田区丸の内1-1-1"
opt_out = "optout@acme.example"
domain = "acme.example"

[rate]
{rate}

[log]
# Deleted before every run: a dry run reads no send history, a real run starts a fresh send log.
database = "{database}"
{extra}"""

# The bundled default: 30 notes a rep a day. Of the 1,000,000 contacts 416,352 pass every other rule;
# 55,050 are sent, 361,302 are rep_cap (each still checked: a contact whose mail cannot be composed is
# missing_field, not rep_cap).
SELECTION_RATE = "per_rep_per_day = 30"


def write_config(export: Path, name: str = "selection", rate: str = SELECTION_RATE, extra: str = "",
                 writer: str = "bench_selection.py") -> Path:
    """``bench/data/config-<name>-<export>/repsend.toml``: the bundled config pointed at ``export``."""
    folder = DATA_DIR / f"config-{name}-{export.name}"
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "send-log.db"
    remove_log(database)
    path = folder / "repsend.toml"
    path.write_text(CONFIG.format(writer=writer, export=export, templates=TEMPLATES, rate=rate, database=database,
                                  extra=extra), encoding="utf-8")
    return path


def remove_log(database: Path) -> None:
    """The SQLite send log and its WAL files, gone."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)


def repsend_command() -> list[str]:
    """The console script of this interpreter's environment, as a user runs it."""
    script = shutil.which("repsend", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "repsend"]


def clean_env() -> dict[str, str]:
    """The environment of an ordinary run: no REPSEND_/SF_/SMTP_ variable of the caller's (a database
    URL would be read), and Python as installed: stdout buffered (PYTHONUNBUFFERED, which some CI and
    container setups set, makes every JSON line its own write), bytecode caches written."""
    return {
        k: v for k, v in os.environ.items()
        if not k.startswith(("REPSEND_", "SF_", "SMTP_")) and k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")
    }


class Measured(NamedTuple):
    seconds: float  # wall clock, spawn to exit
    peak_mb: float  # the process's own ru_maxrss
    spawned: float  # time.time() just before the spawn, to compare with other processes' clocks


def measure(command: list[str], cwd: Path) -> Measured:
    """One fresh process, its output to /dev/null, in ``clean_env()``; raises unless it exits 0."""
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as errors:
        spawned = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=devnull, stderr=errors, cwd=cwd, env=clean_env())
        _, status, usage = os.wait4(process.pid, 0)
        took = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {message}")
    return Measured(took, usage.ru_maxrss / 1024, spawned)  # Linux: ru_maxrss in kilobytes


def rotated(sides: tuple[str, ...], round_: int) -> tuple[str, ...]:
    """The sides in the order of this round: each starts a round in turn, so that no side always runs
    right after the same other one (the disk's write-back, the page cache, the CPU's clock)."""
    k = round_ % len(sides)
    return sides[k:] + sides[:k]


def describe(export: Path, contacts: int) -> str:
    n = sizes(contacts)
    return (f"{contacts:,} contacts ({n['accounts']:,} accounts, {n['reps']:,} reps, {n['opportunities']:,} "
            f"opportunities; {sum(f.stat().st_size for f in export.glob('*.csv')) / 1e6:.0f} MB of CSV)")


def dry_run_command(config: Path, json_lines: bool = True) -> list[str]:
    return [*repsend_command(), "dormant", "--dry-run", *(["--json"] if json_lines else []),
            "--as-of", AS_OF.isoformat(), "--config", str(config)]


def compare(contacts: int, repeats: int, table: bool) -> dict[str, float]:
    """Rounds of bare read / JSON dry run (/ table dry run); medians."""
    export = ensure_export(contacts)
    config = write_config(export)
    sides = ("bare", "edges", "json", "table") if table else ("bare", "json")
    print(f"{describe(export, contacts)}, {repeats} rounds of {' / '.join(sides)}:", flush=True)
    commands = {
        "bare": [sys.executable, "-c", BARE_READ, str(export)],
        "edges": [sys.executable, str(Path(__file__).resolve().parent / "edges_only.py"), str(config)],
        "json": dry_run_command(config),
        "table": dry_run_command(config, json_lines=False),
    }
    cwd = config.parent  # no .env of the caller's
    # Untimed: a just-generated export may still be being written back to disk, and the first read of
    # a file finds it in the page cache or not; after this one every side finds it there.
    measure(commands["bare"], cwd)
    runs: dict[str, list[Measured]] = {side: [] for side in sides}
    for i in range(repeats):
        for side in rotated(sides, i):
            runs[side].append(measure(commands[side], cwd))
        bare, json_ = runs["bare"][-1], runs["json"][-1]
        line = (f"  round {i + 1}: bare read {bare.seconds:6.2f}s | JSON {json_.seconds:6.2f}s {json_.peak_mb:4.0f} MB "
                f"= {json_.seconds / bare.seconds:5.2f}x bare")
        if table:
            tab, edges = runs["table"][-1], runs["edges"][-1]
            line += f" | table {tab.seconds:6.2f}s {tab.peak_mb:4.0f} MB = {tab.seconds / json_.seconds:5.2f}x JSON"
            line += f" | edges alone {edges.seconds:6.2f}s = {edges.seconds / bare.seconds:5.2f}x bare"
        print(line, flush=True)
    figures = {f"{side}_s": statistics.median(r.seconds for r in runs[side]) for side in sides}
    figures |= {f"{side}_mb": statistics.median(r.peak_mb for r in runs[side]) for side in sides}
    line = (f"  median: bare read {figures['bare_s']:.2f}s, JSON {figures['json_s']:.2f}s "
            f"= {figures['json_s'] / figures['bare_s']:.2f}x; JSON peak RSS {figures['json_mb']:.0f} MB")
    if table:
        line += (f"; table {figures['table_s']:.2f}s = {figures['table_s'] / figures['json_s']:.2f}x JSON, "
                 f"peak RSS {figures['table_mb']:.0f} MB; the edges alone {figures['edges_s']:.2f}s "
                 f"= {figures['edges_s'] / figures['bare_s']:.2f}x bare")
    print(line + "\n", flush=True)
    return figures


def main(quick: bool) -> list[dict]:
    small, large = (1_000, 10_000) if quick else (100_000, 1_000_000)
    small_runs, large_runs = 3, 3
    print(f"commands: repsend dormant --dry-run [--json] --as-of {AS_OF} > /dev/null; "
          f"config: {SELECTION_RATE}, no send log\n")
    at_large = compare(large, large_runs, table=True)
    at_small = compare(small, small_runs, table=False)

    ratio = at_large["json_s"] / at_large["bare_s"]
    table_ratio = at_large["table_s"] / at_large["json_s"]
    growth = at_large["json_mb"] / at_small["json_mb"]
    label = f"{large:,}"
    print(f"1 JSON dry run at {label}: {at_large['json_s']:.2f}s vs bare read {at_large['bare_s']:.2f}s = {ratio:.2f}x "
          "(goal <= 4x)")
    print(f"2 table dry run at {label}: {at_large['table_s']:.2f}s vs JSON {at_large['json_s']:.2f}s = "
          f"{table_ratio:.2f}x (goal <= 1.25x)")
    print(f"4 JSON dry run memory: {at_small['json_mb']:.0f} MB at {small:,}, {at_large['json_mb']:.0f} MB at {label} "
          f"= {growth:.2f}x for 10x the data (goal < 3x; and < 250 MB at {label})")
    return [
        {
            "goal": f"1 JSON dry run vs bare csv read, {label} contacts",
            "measured": f"{at_large['json_s']:.2f}s vs {at_large['bare_s']:.2f}s = {ratio:.2f}x",
            "target": "<= 4x",
            "met": ratio <= 4.0,
        },
        {
            "goal": f"1 the edges alone (records in, a line out, no rule asked: bench/edges_only.py), {label}",
            "measured": f"{at_large['edges_s']:.2f}s vs {at_large['bare_s']:.2f}s = "
                        f"{at_large['edges_s'] / at_large['bare_s']:.2f}x",
            "target": "reported",
            "met": True,
        },
        {
            "goal": f"2 table dry run vs JSON dry run, {label} contacts",
            "measured": f"{at_large['table_s']:.2f}s vs {at_large['json_s']:.2f}s = {table_ratio:.2f}x",
            "target": "<= 1.25x",
            "met": table_ratio <= 1.25,
        },
        {
            "goal": f"4 peak RSS, JSON dry run, {label} contacts",
            "measured": f"{at_large['json_mb']:.0f} MB",
            "target": "< 250 MB",
            "met": at_large["json_mb"] < 250,
        },
        {
            "goal": f"4 peak RSS growth, JSON dry run, {small:,} -> {label} contacts",
            "measured": f"{at_small['json_mb']:.0f} MB -> {at_large['json_mb']:.0f} MB = {growth:.2f}x",
            "target": "< 3x",
            "met": growth < 3.0,
        },
    ]
