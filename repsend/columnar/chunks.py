"""A CSV file as polars frames of all-string columns, chunk by chunk, cut at record boundaries."""

from __future__ import annotations

import codecs
import csv
import io
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from repsend.sfa.csv_export import _Columns

# Contact.csv is read in pieces of this size; the deal files, with less work per record, in smaller ones.
CHUNK_BYTES = 8 * 1024 * 1024

DEAL_CHUNK_BYTES = 2 * 1024 * 1024

# Encodings in which a newline or a double quote byte is always that character (never part of another).
_SPLITTABLE = {"utf-8", "utf-8-sig", "cp932", "shift_jis"}

# Every byte but those of _ODD (a newline or CR between records is counted apart, in _Csv.frames).
_PLAIN_BYTES = bytes(b for b in range(256) if b in (10, 13) or (b >= 32 and b not in b"{}"))


class Decline(Exception):
    """The reference path must take this run (the reason is for tests and debugging)."""


class _Csv:
    """One CSV file as polars frames of all-string columns c0, c1, ... (cells as written, none null)."""

    def __init__(self, path: Path, encoding: str, required: tuple[str, ...], chunk_bytes: int = 0) -> None:
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise Decline(f"unknown encoding {encoding}") from None
        if codec not in _SPLITTABLE:
            raise Decline(f"{codec} is not split safely")
        self.path, self.codec = path, codec
        self.utf8 = codec.startswith("utf-8")
        try:
            with open(path, "rb") as handle:
                first = handle.readline()
        except OSError:
            raise Decline(f"{path}: cannot read") from None
        if self.utf8:
            first = first.removeprefix(codecs.BOM_UTF8)
        if not first.strip() or first.count(b'"') % 2 or b"\r" in first.rstrip(b"\r\n"):
            raise Decline(f"{path}: empty, or a header over several lines")
        self.header_bytes = len(first)
        header = next(csv.reader(io.StringIO(self._text(first), newline="")))
        self.columns = _Columns(path, {h.strip().lower(): i for i, h in enumerate(header)})
        if any(not self.columns.has(name) for name in required):
            raise Decline(f"{path}: a required column is missing")
        self.width = len(header)

    def _text(self, data: bytes) -> str:
        try:
            return data.decode(self.codec)
        except UnicodeDecodeError:
            raise Decline(f"{self.path}: not {self.codec}") from None

    def frames(self, check: bool = False) -> Iterator[tuple[pl.DataFrame, bool]]:
        """``_frames``, the next chunk read in a thread while the caller works on this one (polars parses
        without the GIL, so the two cores share the work)."""
        return _read_ahead(self._frames(check))

    def _frames(self, check: bool) -> Iterator[tuple[pl.DataFrame, bool]]:
        """Each chunk as (frame, plain): ``plain`` when no cell holds a control character or a brace.
        ``check``: also prove that every record has the header's number of fields."""
        names = [f"c{i}" for i in range(self.width)]
        last = names[-1]
        for data in self._chunks():
            if not self.utf8:
                data = self._text(data).encode("utf-8")
            try:  # polars refuses a byte that is not UTF-8 as the reference's decoding does
                frame = pl.read_csv(data, has_header=False, new_columns=names, infer_schema=False, quote_char='"')
            except (pl.exceptions.PolarsError, ValueError) as exc:
                raise Decline(f"{self.path}: {exc}") from None
            if check and frame.get_column(last).null_count():
                # A short record is padded with nulls, and a blank line is a row of them (a longer record is
                # refused by polars; with every cell quoted, as Data Loader writes, there is no null at
                # all). The commas outside quoted cells tell, as the reference's csv module counts fields.
                inside = frame.select(
                    pl.sum_horizontal(pl.col(n).str.count_matches(",", literal=True).sum() for n in names)
                ).item()
                if data.count(b",") != frame.height * (self.width - 1) + (inside or 0):
                    raise Decline(f"{self.path}: a record does not have {self.width} fields, or a blank line")
            newlines, returns = data.count(b"\n"), data.count(b"\r")
            if returns and returns != data.count(b"\r\n"):
                # The csv module ends a record at a lone CR (old Mac line ends); polars does not.
                raise Decline(f"{self.path}: a CR that is not part of a CRLF")
            plain = (
                newlines == frame.height and returns in (0, newlines)
                and not data.translate(None, _PLAIN_BYTES)
            )
            yield frame.with_columns(pl.all().fill_null("")), plain

    def _chunks(self) -> Iterator[bytes]:
        """The file after its header in pieces of about ``chunk_bytes``, each cut after a newline outside quotes
        (read into one reused buffer: a piece is the only copy)."""
        with open(self.path, "rb") as handle:
            handle.seek(self.header_bytes + (3 if self.utf8 and handle.read(3) == codecs.BOM_UTF8 else 0))
            buffer = bytearray(self.chunk_bytes)
            filled = 0
            while True:
                with memoryview(buffer) as view:
                    read = handle.readinto(view[filled:])
                end = filled + read
                if not read:
                    if buffer[:end].strip():
                        if buffer.count(b'"', 0, end) % 2:
                            raise Decline(f"{self.path}: a quoted cell is not closed")
                        yield bytes(buffer[:end])
                    return
                cut, stop = -1, end
                while cut < 0:
                    newline = buffer.rfind(b"\n", 0, stop)
                    if newline < 0:
                        break
                    if buffer.count(b'"', 0, newline) % 2 == 0:  # doubled quotes inside a cell count twice
                        cut = newline + 1
                    stop = newline
                if cut < 0:  # one record longer than the buffer
                    if end == len(buffer):
                        buffer.extend(bytes(len(buffer)))
                    filled = end
                    continue
                yield bytes(buffer[:cut])
                buffer[: end - cut] = buffer[cut:end]
                filled = end - cut


def _read_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """``items``, each produced in a thread while the caller holds the one before (at most one ahead).
    An exception in the thread is raised here, where the item would have been; closing this generator
    early (a Decline) stops the thread."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            slots.put((False, exc))

    worker = threading.Thread(target=produce, name="repsend-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            more, item = slots.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()
