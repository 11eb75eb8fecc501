"""Goals 3 and 4 (the real run's part): a real run over SMTP against the JSON dry run of the same config,
how soon its first mail goes out, and its peak memory.

A real run streams: ``sending.send_run`` sends each mail as soon as the pace allows while the selection
goes on. With ``per_rep_per_day = 1`` the 2,000 reps of the 1,000,000-contact export send at most 2,000
mails, so the selection dominates and the goal says what sending adds to it.

3. ``repsend dormant --json`` (a real run, output to /dev/null) against ``repsend dormant --dry-run --json``,
   the same export and the same config: ``per_rep_per_day = 1``, rate limits off (``per_minute = 0``,
   ``per_hour = 0``), SMTP to ``bench/sink.py`` on 127.0.0.1 (its own process; it accepts and discards),
   a fresh SQLite send log each run (deleted before each; the dry run then reads no history, the real
   run creates and migrates it). Goal at 1,000,000 contacts: at most 1.5x.
   And at 100,000 contacts: the first mail reaches the sink within 2 s of the start, start-up excluded.
4. The peak RSS of that real run at 1,000,000 contacts (``ru_maxrss`` of the repsend process, from
   ``wait4``): under 400 MB.

**Start-up excluded**, precisely: the first mail's arrival (``time.time()`` in the sink when its final
dot is read) minus the moment the repsend process has loaded its code and starts the command
(``time.time()`` written by the process itself). repsend's code is not changed for this: the timed process
is ``python -c STAMPED``, which imports every module that a real run of the same kind loads (the list
``sys.modules`` held at the end of an untimed probe run over the 10,000-contact export), writes the
moment to a file, then calls ``repsend.cli.main`` with the command's arguments, as the console script does.
So start-up is the interpreter and every import; reading the config, opening the send log, the selection's
setup (users, deals, the blocked addresses: a whole pass over Contact.csv), deciding up to the first
send, composing it, connecting and the SMTP transaction all count. Both clocks are the same machine's.
The spawn-to-first-mail time (start-up included) is printed beside it.

Every measurement is a fresh process in ``clean_env()`` (no PYTHONUNBUFFERED, no REPSEND_/SF_/SMTP_
variables of the caller's); rounds alternate dry run / real run (dry first, then real first, ...) after
one untimed bare read (the page cache) and the untimed probe; figures are the medians. A real run must
exit 0, and the mails the sink received must equal the run's ``sent`` in the send log (and be more than
none).
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from bench.bench_selection import (
    BARE_READ,
    Measured,
    describe,
    dry_run_command,
    measure,
    remove_log,
    repsend_command,
    rotated,
    write_config,
)
from bench.gen_export import AS_OF, ensure_export
from bench.sink import Sink

RATE = """\
# Goal 3: one note a rep a day, so that 2,000 reps send at most 2,000 mails and the selection dominates;
# no pace: each mail goes out as soon as it is decided.
per_rep_per_day = 1
per_minute = 0
per_hour = 0"""
SMTP = """
[smtp]
# bench/sink.py, started by the benchmark: accepts every mail and discards it.
host = "127.0.0.1"
port = {port}
security = "none"
"""
PROBE_CONTACTS = 10_000

# The probe: a real run as the console script runs it, then the names of every module it loaded.
PROBE = """
import atexit, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w", encoding="utf-8").write("\\n".join(m for m in sys.modules if m != "__main__")))
sys.argv = ["repsend", *sys.argv[2:]]
from repsend.cli import main
sys.exit(main())
"""
# The timed process of the first-mail goal: the probe's modules imported, the moment written, the command.
STAMPED = """
import importlib, sys, time
stamp, modules = sys.argv[1], sys.argv[2]
with open(modules, encoding="utf-8") as handle:
    names = handle.read().split()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass  # a module made by file path (alembic's migration scripts) loads again in the command
with open(stamp, "w", encoding="utf-8") as handle:
    handle.write(repr(time.time()))
sys.argv = ["repsend", *sys.argv[3:]]
from repsend.cli import main
sys.exit(main())
"""


def real_run_args(config: Path) -> list[str]:
    return ["dormant", "--json", "--as-of", AS_OF.isoformat(), "--config", str(config)]


def database_of(config: Path) -> Path:
    return config.parent / "send-log.db"


def checked(sink: Sink, config: Path, contacts: int) -> int:
    """The real run just done sent what the sink received, and something; its mails sent."""
    database = database_of(config)
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT considered, sent, exit_code FROM run").fetchall()
    stats = sink.stats()
    if rows != [(contacts, stats.messages, 0)] or not stats.messages:
        raise RuntimeError(f"real run: send log (considered, sent, exit) {rows}, sink received {stats.messages}")
    return stats.messages


def fresh(sink: Sink, config: Path) -> None:
    remove_log(database_of(config))
    sink.reset()


def compare(contacts: int, rounds: int, sink: Sink) -> dict[str, float]:
    """Rounds of JSON dry run / real run over one export and config; medians."""
    export = ensure_export(contacts)
    config = write_config(export, "realrun", RATE, SMTP.format(port=sink.port), "bench_realrun.py")
    cwd = config.parent
    print(f"{describe(export, contacts)}, {rounds} rounds of JSON dry run / real run:", flush=True)
    measure([sys.executable, "-c", BARE_READ, str(export)], cwd)  # untimed: the page cache
    dry_cmd = dry_run_command(config)
    real_cmd = [*repsend_command(), *real_run_args(config)]
    dry: list[Measured] = []
    real: list[Measured] = []
    sent = 0
    for i in range(rounds):
        for side in rotated(("dry", "real"), i):
            fresh(sink, config)
            if side == "dry":
                dry.append(measure(dry_cmd, cwd))
            else:
                real.append(measure(real_cmd, cwd))
                sent = checked(sink, config, contacts)
        print(f"  round {i + 1}: dry run {dry[-1].seconds:6.2f}s {dry[-1].peak_mb:4.0f} MB | real run "
              f"{real[-1].seconds:6.2f}s {real[-1].peak_mb:4.0f} MB, {sent:,} mails sent "
              f"| ratio {real[-1].seconds / dry[-1].seconds:5.2f}x", flush=True)
    remove_log(database_of(config))
    figures = {
        "dry_s": statistics.median(r.seconds for r in dry),
        "real_s": statistics.median(r.seconds for r in real),
        "dry_mb": statistics.median(r.peak_mb for r in dry),
        "real_mb": statistics.median(r.peak_mb for r in real),
        "sent": sent,
    }
    print(f"  median: dry run {figures['dry_s']:.2f}s, real run {figures['real_s']:.2f}s = "
          f"{figures['real_s'] / figures['dry_s']:.2f}x; peak RSS dry {figures['dry_mb']:.0f} MB, "
          f"real {figures['real_mb']:.0f} MB\n", flush=True)
    return figures


def probe_modules(sink: Sink, folder: Path) -> Path:
    """The modules a real run loads, from one untimed real run over a small export (it also compiles
    and caches every module's bytecode before anything is timed)."""
    config = write_config(ensure_export(PROBE_CONTACTS), "realrun", RATE, SMTP.format(port=sink.port),
                          "bench_realrun.py")
    out = folder / "modules.txt"
    fresh(sink, config)
    measure([sys.executable, "-c", PROBE, str(out), *real_run_args(config)], config.parent)
    checked(sink, config, PROBE_CONTACTS)
    remove_log(database_of(config))
    return out


def first_mail(contacts: int, rounds: int, sink: Sink, modules: Path, folder: Path) -> dict[str, float]:
    """Rounds of the stamped real run; the median seconds from the command's start to the first mail."""
    export = ensure_export(contacts)
    config = write_config(export, "realrun", RATE, SMTP.format(port=sink.port), "bench_realrun.py")
    cwd = config.parent
    stamp = folder / "started"
    command = [sys.executable, "-c", STAMPED, str(stamp), str(modules), *real_run_args(config)]
    count = len(modules.read_text(encoding="utf-8").split())
    print(f"{describe(export, contacts)}, {rounds} real runs, each with the {count} modules a real run loads "
          "imported before its start is written:", flush=True)
    measure([sys.executable, "-c", BARE_READ, str(export)], cwd)  # untimed: the page cache
    after_start, after_spawn, startup = [], [], []
    for i in range(rounds):
        fresh(sink, config)
        stamp.unlink(missing_ok=True)
        run = measure(command, cwd)
        sent = checked(sink, config, contacts)
        started = float(stamp.read_text(encoding="utf-8"))
        first = sink.stats().first
        after_start.append(first - started)
        after_spawn.append(first - run.spawned)
        startup.append(started - run.spawned)
        print(f"  run {i + 1}: start-up {startup[-1]:5.2f}s, then the first mail after {after_start[-1]:5.2f}s "
              f"({after_spawn[-1]:5.2f}s after the spawn); {sent:,} mails, whole run {run.seconds:5.2f}s", flush=True)
    remove_log(database_of(config))
    figures = {
        "after_start": statistics.median(after_start),
        "after_spawn": statistics.median(after_spawn),
        "startup": statistics.median(startup),
    }
    print(f"  median: first mail {figures['after_start']:.2f}s after the command's start (start-up "
          f"{figures['startup']:.2f}s; {figures['after_spawn']:.2f}s after the spawn)\n", flush=True)
    return figures


def main(quick: bool) -> list[dict]:
    large, early = (PROBE_CONTACTS, PROBE_CONTACTS) if quick else (1_000_000, 100_000)
    rounds, early_rounds = (3, 2) if quick else (3, 5)
    print("commands: repsend dormant [--dry-run] --json --as-of 2026-06-01 > /dev/null; config: per_rep_per_day = 1,")
    print("per_minute = per_hour = 0, SMTP to bench/sink.py on 127.0.0.1, a fresh SQLite send log each run\n")
    with tempfile.TemporaryDirectory(prefix="repsend-bench-realrun-") as tmp, Sink() as sink:
        modules = probe_modules(sink, Path(tmp))
        at_large = compare(large, rounds, sink)
        early_figures = first_mail(early, early_rounds, sink, modules, Path(tmp))
    ratio = at_large["real_s"] / at_large["dry_s"]
    label = f"{large:,}"
    print(f"3 real run at {label}: {at_large['real_s']:.2f}s vs JSON dry run {at_large['dry_s']:.2f}s = {ratio:.2f}x "
          "(goal <= 1.5x)")
    print(f"3 first mail at {early:,}: {early_figures['after_start']:.2f}s after the command's start (goal <= 2 s)")
    print(f"4 real run memory at {label}: {at_large['real_mb']:.0f} MB (goal < 400 MB)")
    return [
        {
            "goal": f"3 real run (SMTP sink, 1 a rep a day) vs JSON dry run, {label} contacts",
            "measured": f"{at_large['real_s']:.2f}s vs {at_large['dry_s']:.2f}s = {ratio:.2f}x",
            "target": "<= 1.5x",
            "met": ratio <= 1.5,
        },
        {
            "goal": f"3 first mail at the sink, start-up excluded, {early:,} contacts",
            "measured": f"{early_figures['after_start']:.2f}s (start-up {early_figures['startup']:.2f}s more)",
            "target": "<= 2 s",
            "met": early_figures["after_start"] <= 2.0,
        },
        {
            "goal": f"4 peak RSS, real run, {label} contacts",
            "measured": f"{at_large['real_mb']:.0f} MB",
            "target": "< 400 MB",
            "met": at_large["real_mb"] < 400,
        },
    ]
