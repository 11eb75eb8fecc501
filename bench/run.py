"""The one benchmark command: every bench/bench_*.py in turn, each in its own process, then a table.

    python bench/run.py [--quick] [--only NAME ...]

The contract of a benchmark module (see bench/README.md): a module ``bench/bench_<name>.py`` with

    def main(quick: bool) -> list[dict]:

that prints its own detail as it goes and returns one row per goal:
``{"goal": str, "measured": str, "target": str, "met": bool}``; a goal starting with its number ("3 ...")
is listed in the final table in that order. ``quick`` asks for smaller sizes and
fewer repeats (a smoke run); the figures are then not the issue's. Modules run in a fresh interpreter
each (``python bench/run.py --child <module>``), with the repository root first on ``sys.path``, so that
one benchmark's imports and caches cannot flatter the next.

Exit status: 0 every goal met, 1 some goal not met, 2 a benchmark failed to run or broke the contract.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
ROW_KEYS = {"goal": str, "measured": str, "target": str, "met": bool}


def discover() -> list[str]:
    return sorted(path.stem for path in BENCH_DIR.glob("bench_*.py"))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores (nproc), {model}, Python {platform.python_version()} ({sys.executable})"


def check_rows(rows: object) -> list[dict]:
    if not isinstance(rows, list):
        raise TypeError(f"main() returned {type(rows).__name__}, not a list of rows")
    for row in rows:
        if not isinstance(row, dict) or any(not isinstance(row.get(k), t) for k, t in ROW_KEYS.items()):
            raise TypeError(f"not a row {{goal: str, measured: str, target: str, met: bool}}: {row!r}")
    return rows


def child(module: str, quick: bool, out: Path) -> int:
    """Runs inside the benchmark's own process."""
    sys.path[:0] = [str(ROOT)]
    rows = check_rows(importlib.import_module(f"bench.{module}").main(quick))
    out.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return 0


def run_one(module: str, quick: bool) -> tuple[list[dict], str]:
    with tempfile.TemporaryDirectory(prefix="repsend-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", module, "--rows", str(out)]
        if quick:
            command.append("--quick")
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, check=False)
        took = time.perf_counter() - started
        if result.returncode != 0 or not out.is_file():
            return [], f"{module}: failed (exit {result.returncode}) after {took:.0f}s"
        return json.loads(out.read_text(encoding="utf-8")), f"{module}: {took:.0f}s"


def goal_number(row: dict) -> int:
    """The number a goal starts with ("3 real run ..."): the table lists goals in that order."""
    first = row["goal"].split(" ", 1)[0]
    return int(first) if first.isdigit() else 1_000


def table(rows: list[tuple[str, dict]]) -> str:
    rows = sorted(rows, key=lambda item: goal_number(item[1]))  # stable: a module's rows keep their order
    header = ("benchmark", "goal", "measured", "target", "met")
    lines = [[name, row["goal"], row["measured"], row["target"], "yes" if row["met"] else "NO"] for name, row in rows]
    widths = [max(len(str(cells[i])) for cells in [list(header), *lines]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the repsend benchmarks and print which goals are met.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats: a smoke run")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this benchmark (selection or bench_selection); repeatable")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.rows)

    modules = discover()
    if args.only:
        wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in args.only}
        unknown = wanted - set(modules)
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(modules)})")
        modules = [m for m in modules if m in wanted]
    print(f"machine: {machine()}")
    print(f"mode: {'quick (smoke sizes, not the issue figures)' if args.quick else 'full'}; "
          f"benchmarks: {', '.join(modules)}\n", flush=True)
    results: list[tuple[str, dict]] = []
    timings: list[str] = []
    failed = False
    for module in modules:
        print(f"=== {module}", flush=True)
        rows, timing = run_one(module, args.quick)
        timings.append(timing)
        if not rows:
            failed = True
            rows = [{"goal": "(did not run)", "measured": timing, "target": "-", "met": False}]
        results += [(module.removeprefix("bench_"), row) for row in rows]
        print(flush=True)
    print(table(results))
    print("\n" + "; ".join(timings))
    if failed:
        return 2
    return 0 if all(row["met"] for _, row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
