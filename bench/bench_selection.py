"""Goals 1 and 2: selection time against a bare CSV read, and peak memory as the export grows.

1. ``repsend dormant --dry-run --json`` over a synthetic export of 1,000,000 contacts, output to
   /dev/null, against a bare pass that reads the same four files with the ``csv`` module, every row and
   nothing else. Goal: at most 3x the bare read.
2. Peak RSS of that same run at 100,000 and at 1,000,000 contacts. Goal: ten times the data takes less
   than 3x the memory, and the 1,000,000 run stays under 400 MB.

Every measurement is a fresh process (interpreter start included, for repsend and for the bare read
alike), timed on the wall clock; its peak RSS is that process's own ``ru_maxrss`` from ``wait4``. One
untimed run of each comes first; then runs alternate bare / repsend so that a slow spell of a noisy
machine hits both; the median is reported.
Exports come from bench/gen_export.py (fixed seed), generated once under bench/data/.
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
# For the detail only, not a goal: what the two-pass design reads (Contact.csv twice), with no work at all.
TWO_PASS_FILES = ("User.csv", "Opportunity.csv", "OpportunityContactRole.csv", "Contact.csv", "Contact.csv")

CONFIG = """\
# Written by bench/bench_selection.py for one synthetic export.
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
# The bundled defaults: 30 notes a rep a day (2,000 reps: 60,000 sends, the other dormant contacts
# are rep_cap, and each of them is composed all the same to know it could be sent).
per_rep_per_day = 30

[log]
# Never created by a dry run: the run reads no send history.
database = "{database}"
"""


def write_config(export: Path) -> Path:
    folder = DATA_DIR / f"config-{export.name}"
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "no-send-log.db"
    if database.exists():
        database.unlink()
    path = folder / "repsend.toml"
    path.write_text(CONFIG.format(export=export, templates=TEMPLATES, database=database), encoding="utf-8")
    return path


def repsend_command() -> list[str]:
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


def measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh process, its output to /dev/null."""
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=devnull, stderr=errors, cwd=cwd, env=clean_env())
        _, status, usage = os.wait4(process.pid, 0)
        took = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}: {message}")
    return took, usage.ru_maxrss / 1024  # Linux: kilobytes


def compare(contacts: int, repeats: int) -> dict[str, float]:
    export = ensure_export(contacts)
    config = write_config(export)
    n = sizes(contacts)
    print(f"{contacts:,} contacts ({n['accounts']:,} accounts, {n['reps']:,} reps, {n['opportunities']:,} "
          f"opportunities; {sum(f.stat().st_size for f in export.glob('*.csv')) / 1e6:.0f} MB of CSV), "
          f"{repeats} runs each:", flush=True)
    bare_cmd = [sys.executable, "-c", BARE_READ, str(export)]
    run_cmd = [*repsend_command(), "dormant", "--dry-run", "--json", "--as-of", AS_OF.isoformat(),
               "--config", str(config)]
    two_pass_cmd = [*bare_cmd, *TWO_PASS_FILES]
    bare_t, bare_m, run_t, run_m, two_t = [], [], [], [], []
    cwd = config.parent  # no .env of the caller's
    # One untimed run of each first: a just-generated export may still be being written back to disk,
    # and the first reads of a file find it in the page cache or not; both sides then start alike.
    measure(bare_cmd, cwd)
    measure(run_cmd, cwd)
    for i in range(repeats):
        t, m = measure(bare_cmd, cwd)
        bare_t.append(t)
        bare_m.append(m)
        t, m = measure(run_cmd, cwd)
        run_t.append(t)
        run_m.append(m)
        two_t.append(measure(two_pass_cmd, cwd)[0])
        print(f"  run {i + 1}: bare read {bare_t[-1]:6.2f}s {bare_m[-1]:4.0f} MB | "
              f"repsend {run_t[-1]:6.2f}s {run_m[-1]:4.0f} MB | ratio {run_t[-1] / bare_t[-1]:5.2f}x | "
              f"bare read with Contact.csv twice {two_t[-1]:6.2f}s", flush=True)
    figures = {
        "bare_s": statistics.median(bare_t),
        "run_s": statistics.median(run_t),
        "bare_mb": statistics.median(bare_m),
        "run_mb": statistics.median(run_m),
        "two_pass_s": statistics.median(two_t),
    }
    print(f"  median: bare read {figures['bare_s']:.2f}s, repsend {figures['run_s']:.2f}s "
          f"= {figures['run_s'] / figures['bare_s']:.2f}x; repsend peak RSS {figures['run_mb']:.0f} MB; "
          f"the two passes' reading alone {figures['two_pass_s']:.2f}s "
          f"= {figures['two_pass_s'] / figures['bare_s']:.2f}x\n", flush=True)
    return figures


def main(quick: bool) -> list[dict]:
    small, large = (10_000, 100_000) if quick else (100_000, 1_000_000)
    small_runs, large_runs = (3, 3) if quick else (5, 3)
    print(f"command: repsend dormant --dry-run --json --as-of {AS_OF} > /dev/null\n")
    at_large = compare(large, large_runs)
    at_small = compare(small, small_runs)

    ratio = at_large["run_s"] / at_large["bare_s"]
    growth = at_large["run_mb"] / at_small["run_mb"]
    label = f"{large:,}"
    print(f"selection at {label}: {at_large['run_s']:.2f}s vs bare read {at_large['bare_s']:.2f}s = {ratio:.2f}x "
          f"(goal <= 3x)")
    print(f"memory: {at_small['run_mb']:.0f} MB at {small:,}, {at_large['run_mb']:.0f} MB at {label} "
          f"= {growth:.2f}x for 10x the data (goal < 3x; and < 400 MB at {label})")
    return [
        {
            "goal": f"1 selection, {label} contacts, vs bare csv read",
            "measured": f"{at_large['run_s']:.2f}s vs {at_large['bare_s']:.2f}s = {ratio:.2f}x",
            "target": "<= 3x",
            "met": ratio <= 3.0,
        },
        {
            "goal": f"2 peak RSS growth, {small:,} -> {label} contacts",
            "measured": f"{at_small['run_mb']:.0f} MB -> {at_large['run_mb']:.0f} MB = {growth:.2f}x",
            "target": "< 3x",
            "met": growth < 3.0,
        },
        {
            "goal": f"2 peak RSS at {label} contacts",
            "measured": f"{at_large['run_mb']:.0f} MB",
            "target": "< 400 MB",
            "met": at_large["run_mb"] < 400,
        },
    ]
