"""The dry run's JSON over a CSV export as column operations: a million contacts in a few seconds.

The same lines, in the same order, as ``runner.plan`` written by ``report.JsonLines`` (tests/test_columnar.py
holds the two engines to each other). Where this engine cannot vouch for that, ``prepare`` declines before
anything is written and the caller runs the reference path, which also gives the precise message for a
malformed file: a value or row the reference would reject, a template Jinja must render mail by mail, an
encoding whose bytes cannot be split safely, ``--limit``.

How: each file is read in chunks cut at record boundaries and parsed by polars (no memory map, so memory
stays flat). Contact.csv is read twice as in the reference: pass 1 checks every value and collects the
addresses blocked on any record, pass 2 (by pass 1's cuts, fewer columns) decides. The rules that depend
on a record alone (address checks, opt-outs, blocks, history, deals, dates) are expressions over a chunk,
applied in the reading thread; the ones that depend on the order of records (one mail per address, each
rep's daily cap) run in a short Python loop over the rest in the main thread, sharing ``Audience`` and
``Settle`` with the reference (only the first mail of each sender, language and shape is composed; the
others take the subject it taught); a write-behind thread makes and writes the lines. A record with a
control character in a value, or an address that is not plain ASCII, goes through the reference rules
whole (string functions differ at those edges).

Modules: ``chunks`` (a CSV file as frames, chunk by chunk), ``expressions`` (the values the rules read, as
polars expressions), ``deals`` (the deal files as a DealIndex), ``first_pass`` (checks, address blocks, a
flag byte per record), ``engine`` (setup, pass 2, the ordered rules, the JSON lines).
"""

from __future__ import annotations

import os

# polars' allocator (jemalloc) keeps freed pages for 10 s by default: a run reads chunk after chunk, so
# they would pile up in the peak memory. Half a second keeps the reuse and returns the rest. One arena
# instead of one per thread lets the reading thread reuse what the main thread freed (about 25 MB less
# at the peak). Set before the first import of polars only; a value the user set stays.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1,dirty_decay_ms:500,muzzy_decay_ms:0")

from repsend.columnar.chunks import Decline  # noqa: E402
from repsend.columnar.engine import ColumnarRun, prepare  # noqa: E402

__all__ = ["ColumnarRun", "Decline", "prepare"]
