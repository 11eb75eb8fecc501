"""A CSV file as polars frames of all-string columns, chunk by chunk, cut at record boundaries."""

from __future__ import annotations

import codecs
import csv
import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import polars as pl

from repsend.sfa.csv_export import _Columns

# Contact.csv is read in pieces of this size; the deal files, with less work per record, in smaller ones.
CHUNK_BYTES = 8 * 1024 * 1024

DEAL_CHUNK_BYTES = 2 * 1024 * 1024

# Encodings in which a newline or a double quote byte is always that character (never part of another).
_SPLITTABLE = {"utf-8", "utf-8-sig", "cp932", "shift_jis"}

# Every byte but those of _ODD (a newline or CR between records is counted apart, in _Csv.frames).
_PLAIN_BYTES = bytes(b for b in range(256) if b in (10, 13) or (b >= 32 and b not in b"{}"))


T = TypeVar("T")


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
        self._cuts: list[tuple[int, bool]] | None = None  # (bytes, plain) of each chunk, from frames
        self._stamp: tuple[int, int, int, int] | None = None

    def _text(self, data: bytes) -> str:
        try:
            return data.decode(self.codec)
        except UnicodeDecodeError:
            raise Decline(f"{self.path}: not {self.codec}") from None

    def frames(self, check: bool = False, only: Iterable[str] | None = None,
               then: Callable[[pl.DataFrame, bool], T] = lambda frame, plain: (frame, plain)) -> Iterator[T]:
        """``then(frame, plain)`` of each of ``_frames``, the next chunk read in a thread while the caller
        works on this one (polars parses without the GIL, so the two cores share the work; ``then`` runs
        there too). Where each chunk was cut is kept for ``again``."""
        return _read_ahead(then(frame, plain) for frame, plain in self._frames(check, only))

    def again(self, only: Iterable[str] | None, whole: Sequence[bool],
              then: Callable[[pl.DataFrame, bool, int], T]) -> Iterator[T]:
        """The chunks of the last ``frames``, read again by the sizes it found: no cutting and no checks,
        which ``frames`` made. Decline when the file is no longer the one it read. ``only``: the columns
        wanted, except in a chunk that is not plain or whose ``whole`` is true: every column there.
        Yields ``then(frame, plain, chunk number)``, run in the reading thread."""
        return _read_ahead(then(frame, plain, k) for k, (frame, plain) in enumerate(self._again(only, whole)))

    def _frames(self, check: bool, only: Iterable[str] | None) -> Iterator[tuple[pl.DataFrame, bool]]:
        """Each chunk as (frame, plain): ``plain`` when no cell holds a control character or a brace.
        ``check``: also prove that every record has the header's number of fields. ``only``: the columns
        wanted (by API name; the others are absent from the frame), which saves polars building them."""
        # Each chunk goes to polars after a made-up header line of one name more than the file has: a
        # record with too many fields then fills that extra column, which polars would otherwise no
        # longer report once it reads only some columns.
        names = [f"c{i}" for i in range(self.width + 1)]
        extra, last = names[-1], names[-2]
        prefix = (",".join(names) + "\n").encode()
        positions = None
        if only is not None:
            wanted = {self.columns.get(name) for name in only} | {self.width - 1, self.width}
            positions = sorted(p for p in wanted if p is not None)
        self._stamp = _stamp(self.path)
        self._cuts = []
        for data, size in self._chunks(prefix):
            if not self.utf8:
                data = self._text(data).encode("utf-8")
            frame = self._parse(data, names, positions)
            if frame.get_column(extra).null_count() != frame.height:
                raise Decline(f"{self.path}: a record has more than {self.width} fields")
            if check and frame.get_column(last).null_count():
                # A short record is padded with nulls, and a blank line is a row of them (with every cell
                # quoted, as Data Loader writes, there is no null at all). The commas outside quoted cells
                # tell, as the reference's csv module counts fields; that needs every column.
                if positions is not None:
                    frame = self._parse(data, names, None)
                inside = frame.select(
                    pl.sum_horizontal(pl.col(n).str.count_matches(",", literal=True).sum() for n in names[:-1])
                ).item()
                if data.count(b",") - self.width != frame.height * (self.width - 1) + (inside or 0):
                    raise Decline(f"{self.path}: a record does not have {self.width} fields, or a blank line")
            newlines = data.count(b"\n") - 1
            returns = data.count(b"\r") if b"\r" in data else 0
            if returns and returns != data.count(b"\r\n"):
                # The csv module ends a record at a lone CR (old Mac line ends); polars does not.
                raise Decline(f"{self.path}: a CR that is not part of a CRLF")
            plain = (
                newlines == frame.height and returns in (0, newlines)
                and not data.translate(None, _PLAIN_BYTES)
            )
            self._cuts.append((size, plain))
            yield frame.drop(extra).with_columns(pl.all().fill_null("")), plain

    def _again(self, only: Iterable[str] | None, whole: Sequence[bool]) -> Iterator[tuple[pl.DataFrame, bool]]:
        if self._cuts is None or _stamp(self.path) != self._stamp:
            raise Decline(f"{self.path}: not the file read before")
        names = [f"c{i}" for i in range(self.width)]
        positions = None if only is None else sorted({p for p in map(self.columns.get, only) if p is not None})
        with open(self.path, "rb") as handle:
            handle.seek(self._start(handle))
            for k, (size, plain) in enumerate(self._cuts):
                data = handle.read(size)
                if len(data) != size:
                    raise Decline(f"{self.path}: shorter than before")
                if not self.utf8:
                    data = self._text(data).encode("utf-8")
                wanted = None if not plain or (k < len(whole) and whole[k]) else positions
                yield self._parse(data, names, wanted, header=False).with_columns(pl.all().fill_null("")), plain
            if handle.read(1):
                raise Decline(f"{self.path}: longer than before")

    def _parse(self, data: bytes, names: list[str], positions: list[int] | None, header: bool = True) -> pl.DataFrame:
        """``data`` (with a first line of ``names`` when ``header``) as string columns; only those at
        ``positions`` if given."""
        try:  # polars refuses a byte that is not UTF-8 as the reference's decoding does
            return pl.read_csv(data, has_header=header, new_columns=names, columns=positions, infer_schema=False,
                               quote_char='"')
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise Decline(f"{self.path}: {exc}") from None

    def _start(self, handle: BinaryIO) -> int:
        """Where the records start: after the header (and a BOM)."""
        return self.header_bytes + (3 if self.utf8 and handle.read(3) == codecs.BOM_UTF8 else 0)

    def _chunks(self, prefix: bytes) -> Iterator[tuple[bytes, int]]:
        """The file after its header in pieces of about ``chunk_bytes``, each cut after a newline outside
        quotes, as (``prefix`` and the piece, the piece's size): read into one reused buffer, so that the
        piece with its prefix is the only copy."""
        with open(self.path, "rb") as handle:
            handle.seek(self._start(handle))
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
                        with memoryview(buffer) as view:
                            yield b"".join((prefix, view[:end])), end
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
                with memoryview(buffer) as view:
                    yield b"".join((prefix, view[:cut])), cut
                buffer[: end - cut] = buffer[cut:end]
                filled = end - cut


def _stamp(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or written to."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


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
