"""Where what came back is read from: an mbox file, a Maildir, a folder of .eml files, or an IMAP mailbox.

Every reader yields ``Incoming`` items, each with its place (``bounces.mbox:120``, ``Maildir/new/17...``,
``imap.example.com:993 INBOX UID 17``) for the messages about it, its bytes (for the digest that makes a
message without a Message-ID "handled once") and the message parsed with ``email.policy.default``. A
message too broken to sort has ``problem`` set and is for the caller to report and skip.

Reading changes nothing: files are only opened for reading, and the IMAP folder is opened with EXAMINE
and read with ``BODY.PEEK[]`` so that no flag moves, unless ``mark_seen=True`` asks for ``\\Seen`` to be
set, and then only on a message after the caller has handled it (the generator resumes past its yield).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Literal

from repsend.errors import ConfigError, InputError, MailError
from repsend.inbox.classify import problem_of

_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class Incoming:
    """One message as read, with its place."""

    where: str  # "bounces.mbox:120 (message 3)", "Maildir/cur/1733.M1P2.host:2,S", "host:993 INBOX UID 17"
    raw: bytes
    message: EmailMessage | None  # None when it could not be parsed at all
    problem: str | None = None  # why it cannot be sorted: report it with ``where`` and skip it
    uid: int | None = None  # IMAP only


def incoming(where: str, raw: bytes, uid: int | None = None) -> Incoming:
    """Parse ``raw`` and say whether it is sortable: what every reader (and a test) makes its items with."""
    if not raw.strip():
        return Incoming(where, raw, None, "an empty message", uid)
    try:
        msg: EmailMessage = _PARSER.parsebytes(raw)  # type: ignore[assignment]
    except Exception as exc:  # the parser is lenient; anything it still raises names a broken message
        return Incoming(where, raw, None, f"cannot be parsed: {exc}", uid)
    problem = problem_of(msg)
    return Incoming(where, raw, msg, problem.problem if problem else None, uid)


# -- files ---------------------------------------------------------------------------------------


def read_path(path: Path | str) -> Iterator[Incoming]:
    """The messages in ``path``: a Maildir (a folder with cur/ and new/), a folder of ``.eml`` files, an
    mbox file, or one ``.eml`` file. A path that does not exist or cannot be read is an ``InputError``."""
    path = Path(path)
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            yield from read_maildir(path)
        else:
            yield from read_eml_dir(path)
        return
    if not path.exists():
        raise InputError(f"{path}: no such file or folder (an mbox file, a Maildir or a folder of .eml files)")
    try:
        with path.open("rb") as handle:
            first = handle.read(5)
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if first == b"From ":
        yield from read_mbox(path)
    else:
        yield incoming(str(path), _read_bytes(path))


def read_mbox(path: Path | str) -> Iterator[Incoming]:
    """An mbox file, streamed: a message starts at a ``From `` line at the start of the file or after a
    blank line; ``>From `` lines are unquoted (mboxrd). Each item's place is the line of its From_ line."""
    path = Path(path)
    number = 0
    start_line = 0
    lines: list[bytes] = []
    previous_blank = True

    def flush() -> Incoming:
        body = b"".join(lines)
        if body.endswith(b"\n\n"):  # the blank line that separates it from the next From_ line
            body = body[:-1]
        return incoming(f"{path}:{start_line} (message {number})", body)

    try:
        with path.open("rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                if line.startswith(b"From ") and previous_blank:
                    if number:
                        yield flush()
                    number += 1
                    start_line = line_number
                    lines = []
                    previous_blank = False
                    continue
                if number == 0:  # text before the first From_ line: not a message
                    previous_blank = not line.strip()
                    continue
                if re.match(rb">+From ", line):
                    line = line[1:]
                lines.append(line)
                previous_blank = not line.strip()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if number:
        yield flush()


def read_maildir(path: Path | str) -> Iterator[Incoming]:
    """A Maildir's new/ and cur/ messages, by file name (the delivery time leads it); tmp/ is unfinished."""
    path = Path(path)
    for sub in ("new", "cur"):
        folder = path / sub
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            file = folder / name
            if name.startswith(".") or not file.is_file():
                continue
            yield incoming(str(file), _read_bytes(file))


def read_eml_dir(path: Path | str) -> Iterator[Incoming]:
    """The ``.eml`` files of a folder, by name."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".eml" and p.is_file())
    for file in files:
        yield incoming(str(file), _read_bytes(file))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None


# -- IMAP ----------------------------------------------------------------------------------------

ImapSecurity = Literal["ssl", "starttls"]
IMAP_PORTS = {"ssl": 993, "starttls": 143}
FETCH_BATCH = 50


class ImapMailbox:
    """One IMAP folder, read over TLS (implicit, or STARTTLS), always with certificate verification.

    Errors are ``MailError`` (exit 3) naming host, port and user, never the password; a folder that does
    not exist is a ``ConfigError``. Use ``messages()`` once per connection::

        box = ImapMailbox("imap.example.com", user="bounces@example.com", password=env["IMAP_PASSWORD"])
        for item in box.messages():
            ...
    """

    def __init__(
        self,
        host: str,
        user: str,
        password: str,
        *,
        port: int | None = None,
        folder: str = "INBOX",
        security: ImapSecurity = "ssl",
        ca_file: Path | str | None = None,
        mark_seen: bool = False,
        timeout: float = 30.0,
    ) -> None:
        if security not in IMAP_PORTS:
            raise ConfigError(f"IMAP security must be one of {', '.join(IMAP_PORTS)}, got {security!r}")
        self.host = host
        self.port = port or IMAP_PORTS[security]
        self.user = user
        self._password = password
        self.folder = folder
        self.security = security
        self.ca_file = Path(ca_file) if ca_file else None
        self.mark_seen = mark_seen
        self.timeout = timeout
        self.uidvalidity: int | None = None  # of the folder, once opened: UIDs are only stable with it

    def __repr__(self) -> str:  # never the password
        return f"ImapMailbox({self.where}, user={self.user!r}, folder={self.folder!r})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def messages(self, after_uid: int = 0, uidvalidity: int | None = None) -> Iterator[Incoming]:
        """Every message of the folder, oldest UID first; with ``after_uid`` only the newer ones, when
        ``uidvalidity`` is the folder's still (else the UIDs were renumbered and all are read again).
        After the run, ``self.uidvalidity`` and the last item's ``uid`` are what to remember."""
        conn = self._connect()
        try:
            self._login(conn)
            self._open_folder(conn)
            if uidvalidity is not None and uidvalidity != self.uidvalidity:
                after_uid = 0
            uids = [uid for uid in self._uids(conn, after_uid) if uid > after_uid]
            for start in range(0, len(uids), FETCH_BATCH):
                batch = uids[start: start + FETCH_BATCH]
                for uid, raw in self._fetch(conn, batch):
                    yield incoming(f"{self.where} {self.folder} UID {uid}", raw, uid)
                    if self.mark_seen:  # only now: the caller has handled it
                        self._command(conn, "mark it seen", conn.uid, "STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    # -- steps ------------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"IMAP CA file {self.ca_file}: cannot load it: {_reason(exc)}") from None

    def _connect(self) -> imaplib.IMAP4:
        context = self._context()
        failure: str | None = None
        try:
            if self.security == "ssl":
                return imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=self.timeout)
            conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
            try:
                conn.starttls(ssl_context=context)
            except imaplib.IMAP4.error as exc:
                conn.shutdown()
                failure = f"{self.where}: STARTTLS failed: {_reason(exc)}"
            else:
                return conn
        except ssl.SSLCertVerificationError as exc:
            failure = (f"{self.where}: the IMAP server's certificate cannot be verified: "
                       f"{exc.verify_message or _reason(exc)} (for a private CA set the IMAP ca_file)")
        except ssl.SSLError as exc:
            failure = f"{self.where}: TLS failure: {exc.reason or _reason(exc)}"
        except imaplib.IMAP4.error as exc:
            failure = f"{self.where}: the IMAP server refused the session: {_reason(exc)}"
        except OSError as exc:
            failure = f"{self.where}: cannot connect to the IMAP server: {_reason(exc)}"
        raise MailError(failure)

    def _login(self, conn: imaplib.IMAP4) -> None:
        failure: str | None = None
        try:
            if self._password.isascii():
                conn.login(self.user, self._password)
            else:  # LOGIN is ASCII only; SASL PLAIN carries UTF-8 (RFC 4616)
                secret = f"\0{self.user}\0{self._password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: secret)
        except imaplib.IMAP4.error as exc:
            failure = f"{self.where}: the IMAP server refused the login of user {self.user!r}: {self._scrub(exc)}"
        except OSError as exc:
            failure = f"{self.where}: the connection broke while logging in as {self.user!r}: {_reason(exc)}"
        if failure:
            raise MailError(failure)  # outside the except block: no chained exception holding a secret

    def _open_folder(self, conn: imaplib.IMAP4) -> None:
        name = _quoted(_imap_utf7(self.folder))
        try:
            typ, data = conn.select(name, readonly=not self.mark_seen)  # readonly: EXAMINE (RFC 3501 6.3.2)
        except imaplib.IMAP4.error as exc:
            typ, data = "NO", [str(exc).encode()]
        except OSError as exc:
            raise MailError(f"{self.where}: the connection broke opening {self.folder!r}: {_reason(exc)}") from None
        if typ != "OK":
            raise ConfigError(f"{self.where}: user {self.user!r} cannot open the IMAP folder {self.folder!r}: "
                              f"{_text(data)}")
        _, validity = conn.response("UIDVALIDITY")
        if validity and validity[0]:
            self.uidvalidity = int(validity[0])

    def _uids(self, conn: imaplib.IMAP4, after_uid: int) -> list[int]:
        # "UID n:*" also matches the last message when its UID is below n (RFC 3501 6.4.8): filtered above.
        query = ("UID", f"{after_uid + 1}:*") if after_uid else ("ALL",)
        data = self._command(conn, "list the messages", conn.uid, "SEARCH", *query)
        return sorted(int(n) for n in b" ".join(d for d in data if isinstance(d, bytes)).split())

    def _fetch(self, conn: imaplib.IMAP4, uids: list[int]) -> Iterator[tuple[int, bytes]]:
        data = self._command(conn, "fetch messages", conn.uid, "FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
        for i, item in enumerate(data):
            if not isinstance(item, tuple):
                continue
            head, raw = item
            found = re.search(rb"UID (\d+)", head)
            if not found and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                found = re.search(rb"UID (\d+)", data[i + 1])  # some servers put the UID after the literal
            if found:
                yield int(found.group(1)), raw

    def _command(self, conn: imaplib.IMAP4, what: str, method, *args: str) -> list:  # noqa: ANN001
        failure: str | None = None
        try:
            typ, data = method(*args)
            if typ == "OK":
                return data
            failure = f"{self.where}: cannot {what} in {self.folder!r}: {_text(data)}"
        except (imaplib.IMAP4.error, OSError) as exc:
            failure = f"{self.where}: cannot {what} in {self.folder!r}: {_reason(exc)}"
        raise MailError(failure)

    def _scrub(self, exc: BaseException) -> str:
        text = _reason(exc)
        return text.replace(self._password, "***") if self._password else text


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith(("b'", 'b"')):  # imaplib passes the server's bytes through str()
        text = text[2:-1]
    return text or type(exc).__name__


def _text(data: list) -> str:
    return " ".join(d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data if d)


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_utf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 section 5.1.3): "送信済み" -> "&kAFP4W4IMH8-"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            out.append("&" + encoded.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)
