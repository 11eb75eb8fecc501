"""A CSV file of an export, or a results set of the Bulk API 2.0, as polars frames of typed columns.

The file is cut into chunks at record boundaries (a newline outside quotes) and each chunk is parsed by
one of two parsers that give the same frame:

- fast: polars, which parses a chunk in C without the GIL. It is taken only where checks vouch for it:
  every record has the header's number of fields, and the chunk holds nothing polars would read otherwise
  than Python's csv module (polars refuses a malformed quote; a blank line, a lone CR, a short record
  are seen by the checks).
- careful: the csv module, strict, record by record, naming ``file:line: field: what`` for anything wrong.

A chunk the fast parser cannot vouch for is read by the careful one, which then types it exactly as the
fast one would have, or stops the run saying where and what. Values are typed by ``csv_format``'s rules
in both: each distinct boolean or day of a chunk is parsed once, by ``parse_bool`` and ``parse_date``.

A frame has one column per wanted name (text as written, a boolean, a date or null; a column the file
lacks reads as empty text, false, no date) and, when asked, ``_line``: the editor line each record starts
on (the header is line 1).
"""

from __future__ import annotations

import codecs
import csv
import io
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from repsend.errors import InputError
from repsend.sfa.csv_format import (
    FOOTER_LINE,
    ISO_DATE_OR_TIME,
    BadValue,
    Columns,
    Dates,
    export_codec,
    parse_bool,
)

# Salesforce's CSV cells may hold a whole signature; the csv module's default limit is 128 KiB.
csv.field_size_limit(16 * 1024 * 1024)

TEXT, BOOL, DATE = "text", "bool", "date"
# A text column read as a boolean: true where the cell holds anything (a bounce reason: there was a bounce).
NONEMPTY = "nonempty"
# Output column -> its kind (TEXT, BOOL or DATE), read from the column of that API name; or -> (API name,
# kind), to read one column twice (as a date and as the text a template prints).
Wanted = Mapping[str, str | tuple[str, str]]

CHUNK_BYTES = 3 * 1024 * 1024
CAREFUL_ROWS = 16384  # records a frame of a file read carefully from start to end

# Encodings in which a newline, a CR, a double quote or a comma byte is always that character (never part
# of another): such a file can be cut and counted as bytes.
_SPLITTABLE = {"utf-8", "utf-8-sig", "cp932", "shift_jis", "ascii", "iso8859-1", "cp1252"}
# The spellings exports write, answered without parse_bool (anything else goes to it).
_BOOLS = {"true": True, "TRUE": True, "True": True, "1": True, "false": False, "FALSE": False, "False": False,
          "0": False, "": False}

T = TypeVar("T")


class _NotVouched(Exception):
    """The fast parser cannot vouch for this chunk: the careful one reads it."""


class CsvFile:
    """One CSV file, its header read and checked (the required columns are there), its records as frames."""

    def __init__(self, path: Path, encoding: str, required: Sequence[str] = (), chunk_bytes: int = CHUNK_BYTES,
                 data: bytes | None = None, fast: bool = True, labels: Mapping[str, str] | None = None) -> None:
        """``data``: the file's bytes, already in memory (a Bulk API results set); else it is read from ``path``.
        ``fast=False``: every chunk by the careful parser (the tests hold the two to each other).
        ``labels``: an export a person made (label -> API name, see ``csv_format.Columns``): its header may
        hold labels and its end a report's footer, which is not read as records (``_find_footer``)."""
        self.path = path
        self.fast = fast
        self.encoding = encoding
        try:
            self.codec = export_codec(encoding)
        except LookupError:
            raise InputError(f"{path}: unknown encoding {encoding!r}") from None
        self.chunk_bytes = chunk_bytes
        self._data = data
        self._cuts: list[tuple[int, bool]] | None = None  # (bytes, read carefully) of each chunk, by frames()
        self._stamp: tuple[int, int, int, int] | None = None
        self.dates = Dates()
        self._labels = labels
        self.columns, self.width, self._start, self._splittable = self._header(required)
        # Where a report's footer starts (bytes), if the file ends with one; checked again as it is read.
        # Where a report's footer may start (bytes, ascending), if the file ends with one; and where it did.
        self._footers = self._find_footer() if labels is not None and self._splittable else []
        self._footer_at: int | None = None

    # -- the header -------------------------------------------------------------------------------------

    def _header(self, required: Sequence[str]) -> tuple[Columns, int, int, bool]:
        """(columns, width, where the records start in bytes, whether the file can be cut as bytes)."""
        raw = self._read_head()
        bom = codecs.BOM_UTF8 if self.codec.startswith("utf-8") and raw.startswith(codecs.BOM_UTF8) else b""
        first = raw[len(bom):].split(b"\n", 1)[0]
        splittable = self.codec in _SPLITTABLE and first.count(b'"') % 2 == 0 and b"\r" not in first.rstrip(b"\r")
        if splittable:
            text = self._decode(first, 1)
            header = next(csv.reader([text.rstrip("\r")]), None) if text.strip() else None
        else:  # a header over several lines, a lone CR, or an encoding a byte cut could split: the csv module
            with self._text() as handle:
                reader = csv.reader(handle, strict=True)
                try:
                    header = next(reader, None)
                except csv.Error as exc:
                    raise InputError(f"{self.path}:1: malformed CSV: {exc}") from None
                except UnicodeDecodeError:
                    raise InputError(self._decode_error(raw, 1)) from None
        if not header or not any(name.strip() for name in header):
            raise InputError(f"{self.path}:1: the file is empty (expected a header of API field names)")
        columns = Columns(self.path, header, self._labels)
        missing = columns.missing(required)
        if missing:
            raise InputError(
                f"{self.path}:1: missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(the header has: {', '.join(h.strip() for h in header)}){columns.unmapped_hint(missing[0])}"
            )
        return columns, len(header), len(bom) + len(first) + 1, splittable

    def _read_head(self) -> bytes:
        if self._data is not None:
            return self._data[:65536]
        try:
            with open(self.path, "rb") as handle:
                return handle.read(65536)
        except FileNotFoundError:
            raise InputError(f"{self.path}: file not found") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {exc.strerror}") from None

    def _find_footer(self) -> list[int]:
        """Where the footer of a Salesforce report export may start, in bytes: each line start in the lines
        after the last record that each hold one cell or none (a blank line, the report's name, "Copyright
        (c) 2000-2026 salesforce.com, inc. ...", "Confidential Information - Do Not Distribute", "Generated
        By: ...", the org's name), from which on the lines hold one only a footer holds. No record is a single
        cell (every file has two required columns or more), so nothing a footer cuts off could have been a
        record; which of these starts is outside quotes (the last lines of a quoted cell look alike) only
        the bytes before it can tell: ``_chunks`` takes the first that is."""
        size = self._stamp_now()[2] if self._data is None else len(self._data)
        tail_from = max(self._start, size - 16384)
        with self._binary() as handle:
            handle.seek(tail_from)
            tail = handle.read(size - tail_from)
        starts: list[int] = []
        at, found, lines = len(tail), False, tail.split(b"\n")
        for number, raw in enumerate(reversed(lines)):
            if number == len(lines) - 1 and tail_from > self._start:
                break  # the first line of the tail may be cut: no start here
            start = at - len(raw)
            try:
                cells = next(csv.reader([raw.decode(self.codec).rstrip("\r")]), [])
            except (UnicodeDecodeError, csv.Error):
                break
            if len(cells) > 1:
                break  # a record: the footer, if any, starts after it
            found = found or any(FOOTER_LINE.search(cell) for cell in cells)
            if found:  # this line, blank or not, may be where the footer starts
                starts.append(tail_from + start)
            at = start - 1  # before this line's newline
        return sorted(starts)

    def _text(self) -> io.TextIOBase:
        codec = "utf-8-sig" if self.codec == "utf-8" else self.codec
        if self._data is not None:
            return io.TextIOWrapper(io.BytesIO(self._data), encoding=codec, newline="")
        return open(self.path, encoding=codec, newline="")  # noqa: SIM115 - the caller's with closes it

    # -- frames -----------------------------------------------------------------------------------------

    def frames(self, wanted: Wanted, lines: bool = False, then: Then | None = None) -> Iterator[pl.DataFrame]:
        """Every record, in file order, as frames of the ``wanted`` columns (and ``_line``). The next chunk is
        parsed in a thread while the caller works on this one; ``then`` (a filter, a selection) runs there
        too, on each frame. Where each chunk was cut, and which were read carefully, is kept for ``again``."""
        if not self._splittable:
            return map(then or _same, self._careful_file(wanted, lines))
        self._stamp = self._stamp_now()
        self._cuts = []
        cuts = self._cuts

        def frame(data: bytes, first_line: int) -> pl.DataFrame:
            try:
                if not self.fast:
                    raise _NotVouched
                made = self._fast(data, first_line, wanted, lines)
                cuts.append((len(data), False))
                return made
            except _NotVouched:
                cuts.append((len(data), True))
                return self._careful(data, first_line, wanted, lines)

        after = then or _same
        return _read_ahead(after(frame(data, line)) for data, line in self._chunks())

    def again(self, wanted: Wanted, lines: bool = False) -> Iterator[pl.DataFrame]:
        """The records once more, cut where ``frames`` cut them, read as it read them: an InputError (after
        the frames already given) when the file is not the one ``frames`` read."""
        if not self._splittable or self._cuts is None:
            if self._stamp is not None and self._stamp_now() != self._stamp:
                raise self._changed()
            yield from self.frames(wanted, lines)
            return
        if self._stamp_now() != self._stamp:
            raise self._changed()
        cuts = list(self._cuts)

        def chunks() -> Iterator[tuple[bytes, int, bool]]:
            line = 2
            with self._binary() as handle:
                handle.seek(self._start)
                for size, careful in cuts:
                    data = handle.read(size)
                    if len(data) != size:
                        raise self._changed()
                    yield data, line, careful
                    line += _line_ends(data)
                if handle.read(-1 if self._footer_at is None else max(0, self._footer_at - handle.tell())).strip():
                    raise self._changed()

        def frame(data: bytes, first_line: int, careful: bool) -> pl.DataFrame:
            if not careful:
                try:
                    return self._fast(data, first_line, wanted, lines)
                except _NotVouched:
                    raise self._changed() from None
            return self._careful(data, first_line, wanted, lines)

        yield from _read_ahead(frame(*chunk) for chunk in chunks())
        if self._stamp_now() != self._stamp:
            raise self._changed()

    def _changed(self) -> InputError:
        return InputError(f"{self.path}: changed while it was being read (an export still being written?); "
                          "run again")

    def _stamp_now(self) -> tuple[int, int, int, int]:
        """What changes when a file is replaced or written to."""
        if self._data is not None:
            return 0, 0, len(self._data), 0
        try:
            stat = self.path.stat()
        except OSError:
            return 0, 0, 0, 0
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _binary(self) -> Any:
        return io.BytesIO(self._data) if self._data is not None else open(self.path, "rb")  # noqa: SIM115

    def _chunks(self) -> Iterator[tuple[bytes, int]]:
        """The records in pieces of about ``chunk_bytes``, each cut after a newline outside quotes, with the
        editor line each piece starts on; without a report's footer (the first of ``_footers`` that is
        outside quotes, which only the bytes before it can tell)."""
        line = 2
        footers = self._footers
        with self._binary() as handle:
            handle.seek(self._start)
            buffer, at = b"", self._start  # at: where the buffer starts in the file
            while True:
                read = handle.read(self.chunk_bytes)
                if not read:
                    for footer in footers:
                        if buffer.count(b'"', 0, footer - at) % 2 == 0:  # outside quotes: the footer
                            self._footer_at, buffer = footer, buffer[: footer - at]
                            break
                    if buffer.strip():
                        yield buffer, line
                    return
                buffer += read
                # Nothing from where a footer may start is given before the end of the file is seen.
                cut = _record_boundary(buffer if not footers else buffer[: max(0, footers[0] - at)])
                if cut < 0:  # one record longer than a chunk: read on
                    continue
                piece, buffer = buffer[:cut], buffer[cut:]
                at += cut
                yield piece, line
                line += _line_ends(piece)

    # -- the fast parser --------------------------------------------------------------------------------

    def _fast(self, data: bytes, first_line: int, wanted: Wanted, lines: bool) -> pl.DataFrame:
        """The chunk parsed by polars, or _NotVouched."""
        returns = data.count(b"\r")
        if returns and returns != data.count(b"\r\n"):
            raise _NotVouched  # the csv module ends a record at a lone CR (old Mac line ends); polars does not
        if self.codec not in ("utf-8", "utf-8-sig", "ascii"):
            try:
                data = data.decode(self.codec).encode("utf-8")
            except UnicodeDecodeError:
                raise _NotVouched from None
        width = self.width
        # A made-up header of one name more than the file has: a record with too many fields fills that
        # extra column, which polars would otherwise not report once it reads only some columns.
        names = [f"c{i}" for i in range(width + 1)]
        prefix = (",".join(names) + "\n").encode()
        fields = self._fields(wanted)
        positions = sorted({p for _, _, _, p in fields if p is not None} | {width - 1, width})
        frame = self._parse(prefix + data, [names[p] for p in positions])
        if frame.get_column(names[width]).null_count() != frame.height:
            raise _NotVouched  # a record with more fields than the header
        whole: pl.DataFrame | None = None
        if frame.get_column(names[width - 1]).null_count():
            # A short record is padded with nulls, and a blank line is a row of them (where every cell is
            # quoted, as Data Loader writes, there is no null at all). The commas outside quoted cells
            # tell, as the csv module counts fields; that needs every column.
            whole = self._parse(prefix + data, names[:width])
            inside = whole.select(
                pl.sum_horizontal(pl.col(n).str.count_matches(",", literal=True).sum() for n in names[:width])
            ).item()
            if data.count(b",") != whole.height * (width - 1) + (inside or 0):
                raise _NotVouched
        typed: dict[str, pl.Series] = {}
        for key, _, kind, position in fields:
            if position is None:
                typed[key] = _absent(kind, frame.height, key)
                continue
            column = frame.get_column(names[position]).fill_null("")
            typed[key] = self._typed(column, kind).alias(key)
        result = pl.DataFrame(list(typed.values())) if typed else pl.DataFrame({"_": [None] * frame.height})
        if lines:
            result = result.with_columns(_line=self._fast_lines(data, first_line, frame, whole, prefix, names))
        return result

    def _parse(self, data: bytes, columns: list[str]) -> pl.DataFrame:
        try:
            return pl.read_csv(data, has_header=True, columns=columns, infer_schema=False, quote_char='"')
        except (pl.exceptions.PolarsError, ValueError):
            raise _NotVouched from None  # polars refuses a malformed quote and a byte that is not UTF-8

    def _typed(self, column: pl.Series, kind: str) -> pl.Series:
        """A column of text as its kind, by csv_format's rules: each distinct boolean spelling, and each value
        that is not an ISO day, parsed once by parse_bool or parse_date."""
        if kind == TEXT:
            return column
        if kind == NONEMPTY:
            return column != ""
        try:
            if kind == BOOL:
                meaning = {value: parse_bool(value) if _BOOLS.get(value) is None else _BOOLS[value]
                           for value in column.unique().to_list()}
                true = pl.Series([value for value, is_true in meaning.items() if is_true], dtype=pl.String)
                return column.is_in(true.implode())
            empty = column == ""
            iso = column.str.contains(ISO_DATE_OR_TIME)
            if (iso | empty).all():
                # An ISO day, alone or with a time, means its first ten characters: polars reads those as the
                # calendar date, and a day that does not exist (null) goes to parse_date's message.
                days = column.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
                if days.null_count() != empty.sum() or (days.dt.year() < 1).any():
                    raise _NotVouched
                return days
            value = pl.col(column.name)
            key = column.to_frame().select(
                pl.when(value.str.contains(ISO_DATE_OR_TIME)).then(value.str.slice(0, 10)).otherwise(value)
            ).to_series()
            days_of = {value: self.dates(value) for value in key.unique().to_list()}
            return key.replace_strict(days_of, return_dtype=pl.Date)
        except BadValue:
            raise _NotVouched from None  # the careful parser names the record and the field

    def _fast_lines(self, data: bytes, first_line: int, frame: pl.DataFrame, whole: pl.DataFrame | None,
                    prefix: bytes, names: list[str]) -> pl.Series:
        """The editor line of each record: consecutive, plus the line breaks inside the cells before it."""
        start = pl.int_range(first_line, first_line + frame.height, eager=True, dtype=pl.Int64)
        record_ends = frame.height - (0 if data.endswith(b"\n") else 1)
        if data.count(b"\n") == record_ends:  # one per record: no cell holds a line break
            return start
        if whole is None:
            whole = self._parse(prefix + data, names[: self.width])
        inside = whole.select(
            pl.sum_horizontal(pl.col(n).str.count_matches("\n", literal=True).fill_null(0) for n in names[: self.width])
        ).to_series()
        return start + inside.cum_sum().shift(1, fill_value=0).cast(pl.Int64)

    # -- the careful parser -----------------------------------------------------------------------------

    def _careful(self, data: bytes, first_line: int, wanted: Wanted, lines: bool) -> pl.DataFrame:
        try:
            text = data.decode("utf-8" if self.codec == "utf-8-sig" else self.codec)
        except UnicodeDecodeError as exc:
            raise InputError(self._decode_error(data, first_line, exc.start)) from None
        frames = list(self._careful_rows(io.StringIO(text, newline=""), first_line, wanted, lines, None))
        return frames[0] if len(frames) == 1 else pl.concat(frames) if frames else self._empty(wanted, lines)

    def _careful_file(self, wanted: Wanted, lines: bool) -> Iterator[pl.DataFrame]:
        """A file that cannot be cut as bytes, read from start to end by the csv module."""
        self._stamp = self._stamp_now()
        with self._text() as handle:
            try:
                yield from self._careful_rows(handle, 1, wanted, lines, CAREFUL_ROWS, skip_header=True)
            except UnicodeDecodeError:
                with self._binary() as raw:
                    raise InputError(self._decode_error(raw.read(), 1)) from None

    def _careful_rows(self, source: Any, first_line: int, wanted: Wanted, lines: bool, batch: int | None,
                      skip_header: bool = False) -> Iterator[pl.DataFrame]:
        """Frames of ``batch`` records (None: all) from a text stream whose first line is ``first_line``."""
        path, width = self.path, self.width
        present = self._fields(wanted)
        values: list[list[Any]] = [[] for _ in present]
        starts: list[int] = []
        dates = self.dates
        reader = csv.reader(source, strict=True)
        try:
            if skip_header:
                next(reader, None)
            before = reader.line_num
            for row in reader:
                line = first_line + before
                before = reader.line_num
                if len(row) != width:
                    if not row:
                        continue  # a blank line: no record
                    raise InputError(f"{path}:{line}: {len(row)} fields where the header has {width}")
                for column, (_, name, kind, position) in zip(values, present, strict=True):
                    cell = row[position] if position is not None else ""
                    try:
                        if kind == TEXT:
                            column.append(cell)
                        elif kind == NONEMPTY:
                            column.append(cell != "")
                        elif kind == BOOL:
                            known = _BOOLS.get(cell)
                            column.append(parse_bool(cell) if known is None else known)
                        else:
                            column.append(dates(cell))
                    except BadValue as exc:
                        raise InputError(f"{path}:{line}: {name}: {exc}") from None
                starts.append(line)
                if batch is not None and len(starts) >= batch:
                    yield self._frame(present, values, starts, lines)
                    values, starts = [[] for _ in present], []
        except csv.Error as exc:
            raise InputError(f"{path}:{first_line - 1 + reader.line_num}: malformed CSV: {exc}") from None
        if starts or batch is None:
            yield self._frame(present, values, starts, lines)

    def _fields(self, wanted: Wanted) -> list[tuple[str, str, str, int | None]]:
        """(output column, API name, kind, position in the file or None) of each wanted column."""
        fields = []
        for key, spec in wanted.items():
            name, kind = (key, spec) if isinstance(spec, str) else spec
            fields.append((key, name, kind, self.columns.get(name)))
        return fields

    def _frame(self, present: list[tuple[str, str, str, int | None]], values: list[list[Any]], starts: list[int],
               lines: bool) -> pl.DataFrame:
        columns = [pl.Series(key, column, dtype=_DTYPES[kind])
                   for (key, _, kind, _), column in zip(present, values, strict=True)]
        if lines:
            columns.append(pl.Series("_line", starts, dtype=pl.Int64))
        return pl.DataFrame(columns) if columns else pl.DataFrame({"_": [None] * len(starts)})

    def _empty(self, wanted: Wanted, lines: bool) -> pl.DataFrame:
        return self._frame(self._fields(wanted), [[] for _ in wanted], [], lines)

    def _decode_error(self, data: bytes, first_line: int, at: int | None = None) -> str:
        """Where ``data`` (which starts at ``first_line``) stops decoding, for a person."""
        if at is None:
            decoder = codecs.getincrementaldecoder(self.codec)()
            at = 0
            for piece in data.splitlines(keepends=True):
                try:
                    decoder.decode(piece)
                except UnicodeDecodeError:
                    break
                at += len(piece)
        line = first_line + _line_ends(data[:at]) if at else first_line
        # An export from Japanese Excel is CP932 whatever the config says; one set to CP932 may be UTF-8.
        hint = ' (an export from Japanese Excel is cp932: set [sfa] encoding = "cp932")'
        if self.codec == "cp932":
            hint = ' (set [sfa] encoding to the file\'s encoding: "utf-8" for Data Loader, "cp932" for Japanese Excel)'
        shown = "utf-8" if self.codec.startswith("utf-8") else self.encoding
        return f"{self.path}:{line}: not valid {shown}{hint}"

    def _decode(self, data: bytes, line: int) -> str:
        try:
            return data.decode("utf-8" if self.codec == "utf-8-sig" else self.codec)
        except UnicodeDecodeError as exc:
            raise InputError(self._decode_error(data, line, exc.start)) from None


_DTYPES = {TEXT: pl.String, BOOL: pl.Boolean, DATE: pl.Date, NONEMPTY: pl.Boolean}
Then = Callable[[pl.DataFrame], pl.DataFrame]


def _same(frame: pl.DataFrame) -> pl.DataFrame:
    return frame


def _absent(kind: str, height: int, name: str) -> pl.Series:
    """A column the file lacks: empty text, false, no date (as an empty cell reads)."""
    value = {TEXT: "", BOOL: False, DATE: None, NONEMPTY: False}[kind]
    return pl.Series(name, [value] * height, dtype=_DTYPES[kind])


def _line_ends(data: bytes) -> int:
    """The lines ``data`` ends, as the csv module counts them (CRLF, LF and a lone CR each end one)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _record_boundary(buffer: bytes) -> int:
    """Where the last complete record of ``buffer`` ends (after a newline outside quotes); -1: none yet.
    A doubled quote inside a cell counts twice, so the count of quotes before a newline is even exactly
    when the newline is outside quotes."""
    stop = len(buffer)
    while True:
        newline = buffer.rfind(b"\n", 0, stop)
        if newline < 0:
            return -1
        if buffer.count(b'"', 0, newline) % 2 == 0:
            return newline + 1
        stop = newline


def _read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each produced in a thread while the caller holds the one before (at most one ahead).
    An exception in the thread is raised here, where the item would have been; closing this generator
    early (``| head``) stops the thread."""
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


def rows_of(frame: pl.DataFrame, names: Sequence[str], step: int = 256) -> Iterator[tuple[Any, ...]]:
    """The records of a frame as tuples of Python values in the order of ``names``, a slice at a time so
    that only a slice's values are Python objects at once."""
    for offset in range(0, frame.height, step):
        part = frame.slice(offset, step)
        yield from zip(*(part.get_column(name).to_list() for name in names), strict=True)

