"""A local suppression list as people write one (``[audience] suppression_file``, ``repsend optout
--import``): addresses one a line, bare or as ``Name <address>``, ``#`` comments, or a CSV with an email
column; UTF-8 (with or without a BOM) or CP932. A line without an address stops the run, naming its place.
"""

from __future__ import annotations

from pathlib import Path

from repsend.errors import InputError
from repsend.models import normalize_email

# Header names of the address column in a suppression list saved as CSV (compared without case, spaces,
# "-" or "_"): what people and their tools call it, in English and in Japanese.
SUPPRESSION_EMAIL_HEADERS = frozenset({
    "email", "emailaddress", "e-mail", "mail", "mailaddress", "address", "emailaddresses", "to",
    "メール", "メールアドレス", "eメール", "eメールアドレス", "電子メール", "電子メールアドレス", "アドレス", "宛先",
})


def read_suppression_list(path: Path) -> set[str]:
    """The addresses of a local suppression list, normalized, as people write one: one per line, bare or
    as ``Name <address>``, with ``#`` comments; or a CSV, with a header naming its email column or rows such
    as ``"hanako@example.jp",opted out``. UTF-8 (with or without a BOM) or CP932. A line that holds no
    address stops the run (InputError, naming the file and the line): a list that is not read as its
    author meant would let someone be mailed who asked not to be."""
    text = _suppression_text(path)
    lines = text.splitlines()
    first = next((n for n, line in enumerate(lines) if _uncommented(line).strip()), None)
    if first is None:
        return set()
    header = _csv_row(_uncommented(lines[first]))
    column = next((i for i, cell in enumerate(header) if _header_key(cell) in SUPPRESSION_EMAIL_HEADERS), None)
    if column is not None and "@" not in lines[first]:
        return _suppression_csv(path, text, first, column, header[column].strip())
    addresses = set()
    for number, line in enumerate(lines, start=1):
        entry = _uncommented(line).strip()
        if not entry:
            continue
        found = _addresses_in([entry, *_csv_row(entry)])
        if "@" in entry and (not found or not any(ch.isspace() or ch in '<>",:' for ch in entry)):
            found.add(normalize_email(entry))  # an address as written, even one no parser takes
        if not found:
            raise InputError(f"{path}:{number}: no address in {entry!r} (write one address per line, "
                             "e.g. hanako@example.jp or 山田 花子 <hanako@example.jp>)")
        addresses |= found
    return addresses


def _suppression_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("cp932")  # a list saved by Japanese Excel
    except UnicodeDecodeError:
        line = data[: utf8_error.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: neither UTF-8 nor CP932: save the list as UTF-8") from None


def _uncommented(line: str) -> str:
    """The line without its comment: ``#`` at the start or after a space (an address may hold a ``#``)."""
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return ""
    cut = min((i for i in (line.find(" #"), line.find("\t#")) if i >= 0), default=-1)
    return line if cut < 0 else line[:cut]


def _csv_row(line: str) -> list[str]:
    import csv

    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return []


def _header_key(cell: str) -> str:
    return "".join(cell.split()).replace("_", "").replace("-", "").casefold().replace("e-mail", "email")


def _addresses_in(texts: list[str]) -> set[str]:
    """Every address in ``texts`` (whole lines, cells): ``Name <address>``, bare, several with commas."""
    import unicodedata
    from email.utils import getaddresses

    # An address typed in full-width (ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ) is the ASCII one too (kept as typed
    # as well); "mailto:" is no part of it.
    texts = [t for text in texts for t in dict.fromkeys((text, unicodedata.normalize("NFKC", text)))]
    found = set()
    for _, address in getaddresses(texts):
        address = address.removeprefix("mailto:").removeprefix("MAILTO:")
        local, at, domain = address.rpartition("@")
        if at and local and domain and not any(ch.isspace() for ch in address):
            found.add(normalize_email(address))
    return found


def _suppression_csv(path: Path, text: str, header_line: int, column: int, name: str) -> set[str]:
    """A suppression list saved as CSV, its header on line ``header_line + 1`` (0-based ``header_line``)."""
    import csv
    import io

    addresses = set()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        start = reader.line_num
        for row in reader:
            number, start = start + 1, reader.line_num
            if number <= header_line + 1 or not any(cell.strip() for cell in row) or (
                    row and row[0].lstrip().startswith("#")):
                continue
            found = _addresses_in([row[column]]) if column < len(row) else set()
            if not found:
                raise InputError(f"{path}:{number}: no address in the {name!r} column")
            addresses |= found
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    return addresses
