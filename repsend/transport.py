"""Where a composed mail goes: one SMTP connection for the whole run, or an outbox folder of .eml files.

Each send ends in exactly one of four outcomes, so that the send log never guesses:

- ``Delivered``: the server accepted the message (its final 2xx reply);
- ``RecipientRefused``: a 5xx for this mail, at MAIL, RCPT or after the data: final for this recipient;
- ``TemporaryFailure``: 4xx answers, or the connection lost *before* the end of the data, still failing
  after the retries: not delivered, safe to try again in a later run;
- ``DeliveryUnknown``: the connection broke after the whole message was transmitted and before the
  server's reply: it may have been delivered, so it is never sent again automatically.

What stops the run is a ``MailError`` (exit 3): the server cannot be reached, TLS or its certificate
fails, the login is refused. Its message names ``host:port`` and the user, never the password.

The message is sent step by step (MAIL, RCPT, DATA, the content, the final reply) rather than with
``sendmail()``, because only then is it known which side of the final dot the connection broke on
(RFC 5321 section 4.1.1.4: without the final ``.`` the server must not deliver). A server that offers
PIPELINING (RFC 2920) gets MAIL, RCPT and DATA in one write and answers them together: two round trips
fewer a mail, the same outcomes, the content still sent only after MAIL and RCPT were accepted.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import EmailPolicy
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from repsend.clock import Clock, SystemClock
from repsend.compose import POLICY, RepeatedHeaderPolicy
from repsend.errors import ConfigError, MailError
from repsend.models import wire_address

if TYPE_CHECKING:
    from repsend.settings import Settings

Security = Literal["starttls", "ssl", "none"]
SECURITIES: tuple[str, ...] = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

# Flattening for the wire: CRLF line ends, 8-bit bodies as they are (announced with BODY=8BITMIME), or
# re-encoded to base64 for the rare server without 8BITMIME (RFC 6152).
WIRE_8BIT = POLICY.clone(linesep="\r\n")
WIRE_7BIT = POLICY.clone(linesep="\r\n", cte_type="7bit")


def wire_policy(msg: EmailMessage, seven_bit: bool = False) -> EmailPolicy:
    """How ``msg`` is flattened for the wire: its own policy where it is repsend's (a run's, which
    remembers the headers that repeat), else ``WIRE_8BIT``; 7-bit for a server without 8BITMIME."""
    policy = msg.policy
    if not isinstance(policy, RepeatedHeaderPolicy) or policy.linesep != "\r\n":
        wire = WIRE_7BIT if seven_bit else WIRE_8BIT
        # A message for SMTPUTF8 (a UTF-8 local part) stays one: encoded words cannot carry an address.
        return wire.clone(utf8=True) if getattr(policy, "utf8", False) else wire
    return policy.clone(cte_type="7bit") if seven_bit else policy

# Waits between tries, all through the injected clock: connecting (2 s, 4 s), a 4xx answer (5 s, 10 s, ...).
CONNECT_ATTEMPTS = 3
CONNECT_WAIT = wait_exponential(multiplier=2, min=2, max=30)
SEND_WAIT = wait_exponential(multiplier=5, min=5, max=300)


@dataclass(frozen=True)
class Delivered:
    """The server accepted the message (or the outbox holds it)."""

    code: int
    text: str


class SendFailure(Exception):
    """A mail that was not (or not surely) delivered; the run goes on with the next one."""


class RecipientRefused(SendFailure):
    """A 5xx for this mail (MAIL, RCPT or after the data): final for this recipient."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class TemporaryFailure(SendFailure):
    """A 4xx still failing after the retries, or the connection lost before the end of the data.

    Not delivered: safe to try again in a later run.
    """

    def __init__(self, code: int | None, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


class DeliveryUnknown(SendFailure):
    """The connection broke after the whole message was sent, before the final reply: never retry it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


@runtime_checkable
class Transport(Protocol):
    def connect(self) -> None:
        """Be ready to send (connect and log in, if not connected yet), or raise a MailError.

        Called before a mail's send-log row is claimed, so that a run whose server cannot be reached,
        whose certificate fails or whose login is refused leaves no row for a contact it never tried."""
        ...

    def send(self, msg: EmailMessage, envelope_from: str, recipient: str) -> Delivered: ...

    def close(self) -> None: ...


class _CannotConnect(Exception):
    """A connect attempt failed in a way that may pass: retried, then a MailError."""


class _Fatal(Exception):
    """A connect attempt failed in a way that will not pass by waiting: a MailError at once."""


class _Stale(Exception):
    """A kept-open connection turned out closed at the first command: reconnect at once, no backoff."""


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT politely; a server that is already gone changes nothing: the socket is closed either way."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class SmtpTransport:
    """One SMTP connection for the whole run, opened at the first send and re-opened after a drop or 421."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str,
        password: str,
        timeout: float,
        ca_file: Path | str | None,
        clock: Clock,
        retries: int = 3,
        local_hostname: str | None = None,
        smtputf8: bool = False,
    ) -> None:
        if security not in SECURITIES:
            raise ConfigError(f"SMTP security must be one of {', '.join(SECURITIES)}, got {security!r}")
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.ca_file = Path(ca_file) if ca_file else None
        self.clock = clock
        self.retries = max(1, retries)
        self.local_hostname = local_hostname
        # [smtp] smtputf8: the run composed mails for SMTPUTF8, so a server without it is refused at connect.
        self.smtputf8 = smtputf8
        self.connections = 0  # how many connections were opened, for the run summary and tests
        self.notes: list[str] = []  # said once on stderr by the command (e.g. a machine with no proper name)
        self._smtp: smtplib.SMTP | None = None
        self._used = False  # the open connection has answered a MAIL already (so it may have gone stale)
        self._context: ssl.SSLContext | None = None
        if security != "none":
            self._context = self._tls_context()

    def __repr__(self) -> str:  # never the password
        return (f"SmtpTransport({self.host}:{self.port}, security={self.security!r}, "
                f"username={self.username!r})")

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> SmtpTransport:
        """[smtp] from the config file, each value overridden by SMTP_* in the environment (or .env)."""
        smtp, env = settings.smtp, settings.env

        def var(name: str) -> str:
            return (env.get(name) or "").strip()

        host = var("SMTP_HOST") or smtp.host.strip()
        if not host:
            raise ConfigError(
                f"{settings.config_path}: no SMTP server: set [smtp] host in the config file or SMTP_HOST"
                " in the environment (or use [mail] transport = \"outbox\")"
            )
        security: str = smtp.security
        if var("SMTP_SECURITY"):
            security = var("SMTP_SECURITY").lower()
            if security not in SECURITIES:
                raise ConfigError(
                    f"SMTP_SECURITY: expected starttls, ssl or none, got {env['SMTP_SECURITY']!r}"
                )
        port = smtp.port
        if var("SMTP_PORT"):
            try:
                port = int(var("SMTP_PORT"))
            except ValueError:
                port = -1
            if not 0 <= port <= 65535:
                raise ConfigError(
                    f"SMTP_PORT: expected a port number from 1 to 65535 (0 for the default of the security),"
                    f" got {env['SMTP_PORT']!r}"
                )
        username = var("SMTP_USERNAME") or smtp.username.strip()
        password = env.get("SMTP_PASSWORD") or ""
        if username and not password:
            raise ConfigError(
                f"an SMTP user is set ({username}) but no password: set SMTP_PASSWORD in the environment or .env"
            )
        ca_file: Path | None
        if var("SMTP_CA_FILE"):
            ca_file = Path(os.path.expanduser(var("SMTP_CA_FILE"))).resolve()
            where = "SMTP_CA_FILE"
        else:
            ca_file = settings.resolve(smtp.ca_file) if smtp.ca_file else None
            where = f"{settings.config_path}: [smtp] ca_file"
        if ca_file is not None and not ca_file.is_file():
            raise ConfigError(f"{where}: {ca_file} does not exist")
        local_hostname, note = helo_name(smtp.helo_name)
        transport = cls(
            host=host,
            port=port,
            security=security,  # type: ignore[arg-type]
            username=username,
            password=password,
            timeout=smtp.timeout,
            ca_file=ca_file,
            clock=clock,
            local_hostname=local_hostname,
            smtputf8=smtp.smtputf8,
        )
        if note:
            transport.notes.append(note)
        return transport

    # -- the connection ---------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        """Certificate and host name verification, always: a private CA is added with ca_file, never skipped."""
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"SMTP CA file {self.ca_file}: cannot load it: {_reason(exc)}") from None

    def connect(self) -> None:
        """Open the connection now (connect, EHLO, STARTTLS, login), if none is open; a MailError if it fails."""
        self._connection()

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        message = ""
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(CONNECT_ATTEMPTS),
                wait=CONNECT_WAIT,
                retry=retry_if_exception_type(_CannotConnect),
                sleep=self.clock.sleep,
                reraise=True,
            ):
                with attempt:
                    self._smtp = self._open()
        except (_CannotConnect, _Fatal) as exc:
            message = str(exc)
        if self._smtp is None:
            # Raised outside the except block: no __context__ chain that could carry a credential.
            raise MailError(message)
        self.connections += 1
        self._used = False
        return self._smtp

    def _open(self) -> smtplib.SMTP:
        """Connect, EHLO, STARTTLS (and EHLO again, RFC 3207), log in: one attempt."""
        where = self.where
        smtp: smtplib.SMTP | None = None
        failure: Exception | None = None
        try:
            # The host goes to the constructor, not to connect(): smtplib takes the TLS server name
            # (certificate check, SNI) from the constructor's host only.
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.local_hostname,
                                        timeout=self.timeout, context=self._context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise _Fatal(
                        f"{where}: the server does not offer STARTTLS; not sending in clear"
                        " (check [smtp] port and security)"
                    )
                smtp.starttls(context=self._context)
                smtp.ehlo_or_helo_if_needed()
            if self.smtputf8 and not smtp.has_extn("smtputf8"):
                # The dry run decided with SMTPUTF8 (UTF-8 local parts are sends): without it the run would
                # not be the one the dry run showed. Nothing is sent; a person chooses.
                raise _Fatal(
                    f"{where}: the server does not offer SMTPUTF8, which [smtp] smtputf8 = true needs;"
                    " nothing sent (set smtputf8 = false to skip UTF-8 addresses as unsendable_address)"
                )
            if self.username:
                self._login(smtp)
            return smtp
        except (_Fatal, _CannotConnect) as exc:
            failure = exc
        except ssl.SSLCertVerificationError as exc:
            # A wrong or unknown certificate does not fix itself: no retry.
            failure = _Fatal(
                f"{where}: TLS certificate verification failed: {exc.verify_message or _reason(exc)}"
                " (for a private CA set [smtp] ca_file or SMTP_CA_FILE)"
            )
        except ssl.SSLError as exc:
            failure = _CannotConnect(f"{where}: TLS failure: {exc.reason or _reason(exc)}")
        except smtplib.SMTPServerDisconnected:
            failure = _CannotConnect(f"{where}: cannot connect: the server closed the connection")
        except smtplib.SMTPResponseException as exc:
            text = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                failure = _CannotConnect(f"{where}: the server is not available: {text}")
            else:
                failure = _Fatal(f"{where}: the server refused the session: {text}")
        except smtplib.SMTPException as exc:
            failure = _Fatal(f"{where}: {_reason(exc)}")
        except OSError as exc:  # refused, unreachable, DNS, timeout
            failure = _CannotConnect(f"{where}: cannot connect: {_reason(exc)}")
        if smtp is not None:
            smtp.close()
        raise failure

    def _login(self, smtp: smtplib.SMTP) -> None:
        where, user = self.where, self.username
        if not smtp.has_extn("auth"):
            raise _Fatal(f"{where}: the server offers no login (AUTH) for user {user} on this connection")
        refused: tuple[int, str] | None = None
        try:
            smtp.login(user, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            refused = (exc.smtp_code, _text(exc.smtp_error))
        except smtplib.SMTPNotSupportedError:
            refused = (0, "the server offers no login")
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPServerDisconnected):
                raise
            refused = (0, _reason(exc))
        if refused is not None:
            code, text = refused
            if 400 <= code < 500:
                raise _CannotConnect(f"{where}: login failed for user {user}: {code} {text}")
            shown = f"{code} {text}" if code else text
            raise _Fatal(f"{where}: login refused for user {user}: {shown}")

    def probe(self) -> set[str]:
        """One connection as a run opens it (EHLO, STARTTLS with the certificate verified, AUTH), then QUIT:
        no MAIL FROM, no retry. The extensions the server offers, lower case; MailError as a run would stop."""
        message = ""
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._open()
        except (_CannotConnect, _Fatal) as exc:
            message = str(exc)
        if smtp is None:
            raise MailError(message)
        offered = set(smtp.esmtp_features)
        _quit(smtp)
        return offered

    def _drop(self) -> None:
        """Forget a connection that broke or that the server closes (421): the next send opens a new one."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _quit(smtp)

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------------

    def send(self, msg: EmailMessage, envelope_from: str, recipient: str) -> Delivered:
        """Send one message to one recipient; 4xx and drops before the data are retried with backoff.

        The envelope's domains go out as IDNA A-labels, like the headers' (``compose.to_message``)."""
        try:
            envelope_from, recipient = wire_address(envelope_from), wire_address(recipient)
        except ValueError as exc:
            raise RecipientRefused(553, f"not sent: {exc}") from None
        # The first try runs outside tenacity, whose bookkeeping costs about a tenth of a transaction
        # with a local server; after a TemporaryFailure the same Retrying as ever takes over, its first
        # attempt being that failure (so the waits, the attempts and the error raised stay the same).
        try:
            return self._attempt(msg, envelope_from, recipient)
        except TemporaryFailure as exc:
            first: TemporaryFailure | None = exc
        for attempt in Retrying(
            stop=stop_after_attempt(self.retries),
            wait=SEND_WAIT,
            retry=retry_if_exception_type(TemporaryFailure),
            sleep=self.clock.sleep,
            reraise=True,
        ):
            with attempt:
                if first is not None:
                    failure, first = first, None
                    raise failure
                return self._attempt(msg, envelope_from, recipient)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, msg: EmailMessage, envelope_from: str, recipient: str) -> Delivered:
        smtp = self._connection()
        try:
            return self._transaction(smtp, msg, envelope_from, recipient)
        except _Stale:
            # An idle connection the server had closed (or a 421 at once): one new connection
            # without waiting, then the normal backoff.
            return self._transaction(self._connection(), msg, envelope_from, recipient)

    def _prepare(self, smtp: smtplib.SMTP, msg: EmailMessage, envelope_from: str,
                 recipient: str) -> tuple[bytes, list[str]]:
        content = msg.as_bytes(policy=wire_policy(msg))
        options: list[str] = []
        if not content.isascii():
            if smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            else:
                content = msg.as_bytes(policy=wire_policy(msg, seven_bit=True))
        # A UTF-8 local part, in the envelope or in a header (a message made for SMTPUTF8): RFC 6531.
        if not (envelope_from + recipient).isascii() or getattr(msg.policy, "utf8", False):
            if not smtp.has_extn("smtputf8"):
                raise RecipientRefused(
                    553, f"not sent: {recipient} or {envelope_from} needs SMTPUTF8, which {self.where} does not offer"
                )
            options.append("SMTPUTF8")
        # Every line ends in CRLF (RFC 5321 2.3.8), a leading dot is doubled (4.5.2), then the final dot.
        content = re.sub(rb"\r?\n", b"\r\n", content)
        content = re.sub(rb"(?m)^\.", b"..", content)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        return content + b".\r\n", options

    def _transaction(self, smtp: smtplib.SMTP, msg: EmailMessage, envelope_from: str, recipient: str) -> Delivered:
        content, options = self._prepare(smtp, msg, envelope_from, recipient)
        if smtp.has_extn("pipelining"):
            return self._pipelined(smtp, content, options, envelope_from, recipient)
        stale_possible = self._used
        stage = "MAIL FROM"
        try:
            code, resp = smtp.mail(envelope_from, options)
            if code == 421 and stale_possible:
                self._drop()
                raise _Stale
            self._used = True  # the connection answered: a later drop at MAIL is no longer "stale"
            self._check(smtp, stage, code, resp)
            stage = "RCPT TO"
            code, resp = smtp.rcpt(recipient)
            self._check(smtp, stage, code, resp)
            stage = "DATA"
            code, resp = smtp.docmd("DATA")
            if code != 354:
                self._check(smtp, stage, code, resp, expected=354)
            stage = "the message data"
            smtp.send(content)
            stage = "the final reply"
            code, resp = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise self._lost(stage, exc, stale_possible) from None
        self._check(smtp, stage, code, resp)
        return Delivered(code, _text(resp))

    def _pipelined(self, smtp: smtplib.SMTP, content: bytes, options: list[str], envelope_from: str,
                   recipient: str) -> Delivered:
        """The same transaction with PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write, then their replies.

        It saves two round trips a mail and changes no outcome. The replies are read in order and judged
        as the step-by-step transaction judges them: a 421 (or a reply that makes no sense) drops the
        connection at once; the first 4xx or 5xx of MAIL or RCPT is the one raised, once the replies
        still due are read (and the RSET sent); the message data go out only after MAIL and RCPT were
        accepted and DATA answered 354. A server that answers 354 although it refused the sender or the
        recipient gets the final dot alone (an empty message without a recipient, which it cannot
        deliver) before the RSET. A drop before the data is a TemporaryFailure, or the refusal already
        read; after the data and before the final reply it is a DeliveryUnknown, as ever.
        """
        stale_possible = self._used
        refused: tuple[str, int, bytes] | None = None  # the first 4xx/5xx of MAIL or RCPT
        stage = "MAIL FROM"
        try:
            if "SMTPUTF8" in options:
                smtp.command_encoding = "utf-8"  # what smtplib's mail() does for this option
            optionlist = "".join(" " + option for option in options)
            commands = (f"mail FROM:{smtplib.quoteaddr(envelope_from)}{optionlist}\r\n"
                        f"rcpt TO:{smtplib.quoteaddr(recipient)}\r\nDATA\r\n")
            if commands.count("\r") != 3 or commands.count("\n") != 3:  # what smtplib's putcmd refuses
                raise ValueError(f"command and arguments contain prohibited newline characters: {commands!r}")
            smtp.send(commands)
            code, resp = smtp.getreply()
            if code == 421 and stale_possible:
                self._drop()
                raise _Stale
            self._used = True  # the connection answered: a later drop at MAIL is no longer "stale"
            for stage in ("MAIL FROM", "RCPT TO", "DATA"):
                if stage != "MAIL FROM":
                    code, resp = smtp.getreply()
                if stage == "DATA" and code == 354:
                    break
                closing = code == 421 or not (200 <= code < 300 or 400 <= code < 600)
                if refused is not None:
                    if closing:  # the server goes away after a refusal: the refusal stands
                        self._drop()
                        break
                elif closing or stage == "DATA":
                    self._check(smtp, stage, code, resp, expected=354 if stage == "DATA" else 0)
                elif not 200 <= code < 300:
                    refused = (stage, code, resp)
            if refused is None:
                stage = "the message data"
                smtp.send(content)
                stage = "the final reply"
                code, resp = smtp.getreply()
            elif code == 354 and self._smtp is smtp:
                stage = "the message data"
                smtp.send(b".\r\n")
                smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            if refused is None:
                raise self._lost(stage, exc, stale_possible) from None
        if refused is not None:
            self._check(smtp, *refused)  # RSET (a dropped connection stays dropped), then the refusal
            raise AssertionError("unreachable")  # pragma: no cover - _check raised it
        self._check(smtp, stage, code, resp)
        return Delivered(code, _text(resp))

    def _lost(self, stage: str, exc: BaseException, stale_possible: bool) -> Exception:
        """What a connection lost at ``stage`` means: after the data, maybe delivered (never retried);
        at the first MAIL on a kept connection, a stale one (reconnect at once); else not delivered."""
        if stage == "the final reply":
            return DeliveryUnknown(
                f"{self.where}: the connection broke after the message was sent and before the server's"
                f" reply ({_reason(exc)}): it may have been delivered; not retried"
            )
        if stage == "MAIL FROM" and stale_possible:
            return _Stale()
        return TemporaryFailure(
            None, f"{self.where}: connection lost at {stage}, before the message was sent ({_reason(exc)})"
        )

    def _check(self, smtp: smtplib.SMTP, stage: str, code: int, resp: bytes, expected: int = 0) -> None:
        """2xx (or the expected code) goes on; 421 drops the connection; 4xx retries; 5xx refuses."""
        if (expected and code == expected) or (not expected and 200 <= code < 300):
            return
        text = f"{_text(resp)} (at {stage})"
        if code == 421 or not 400 <= code < 600:
            # The server closes the channel (RFC 5321 3.8), or an answer that makes no sense here.
            self._drop()
            raise TemporaryFailure(code if code > 0 else None, text)
        self._reset(smtp)
        if code < 500:
            raise TemporaryFailure(code, text)
        raise RecipientRefused(code, text)

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """RSET after a refusal so that the same connection serves the next mail."""
        try:
            code, _ = smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop()


class OutboxTransport:
    """Each message as an .eml file in a folder, for another system to pick up (or a person to read).

    Written to a hidden temporary file in the same folder and renamed into place, so that a reader never
    sees half a file. The envelope sender is not kept: an .eml file has no envelope.
    """

    def __init__(self, folder: Path | str, clock: Clock | None = None) -> None:
        self.folder = Path(folder)
        self.clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"OutboxTransport({str(self.folder)!r})"

    def connect(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MailError(f"{self.folder}: cannot create the outbox folder: {_reason(exc)}") from None

    def send(self, msg: EmailMessage, envelope_from: str, recipient: str) -> Delivered:
        self.connect()
        content = msg.as_bytes(policy=wire_policy(msg))
        stem = self._stem(msg)
        # A hidden name that no pickup glob (*.eml) matches; created with the usual umask, like any file.
        temp = self.folder / f".{stem}.{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            path = self.folder / f"{stem}.eml"
            number = 1
            while path.exists():
                number += 1
                path = self.folder / f"{stem}-{number}.eml"
            os.replace(temp, path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise MailError(f"{self.folder}: cannot write to the outbox: {_reason(exc)}") from None
        return Delivered(250, f"written to {path}")

    def _stem(self, msg: EmailMessage) -> str:
        when: datetime | None = None
        date = msg.get("Date")
        if date is not None:
            when = getattr(date, "datetime", None)
        if when is None or when.tzinfo is None:
            when = self.clock.now()
        stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        message_id = str(msg.get("Message-ID") or "").strip().strip("<>")
        safe = re.sub(r"[^A-Za-z0-9._@+-]+", "_", message_id).strip("._")[:120] or uuid.uuid4().hex
        return f"{stamp}-{safe}"

    def close(self) -> None:
        pass


# First labels of the names a machine without a proper one reports: not a name another server can check.
_LOOPBACK_NAMES = {"localhost", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback"}


def helo_name(configured: str) -> tuple[str | None, str | None]:
    """The name for EHLO (``local_hostname``) and, when this machine has no usable one, a note saying so.

    ``[smtp] helo_name`` when set; else this machine's fully qualified name. Receiving servers check the
    greeting (a name that resolves, not "localhost", not a bare address) and score a bad one as spam. When
    ``socket.getfqdn()`` gives no dotted name or a loopback one, repsend does what smtplib would do (None:
    a bare name becomes the connection's address literal, e.g. ``[192.0.2.1]``) and says so."""
    if configured:
        return configured, None
    fqdn = socket.getfqdn()
    first = fqdn.split(".", 1)[0].lower()
    if "." in fqdn and first not in _LOOPBACK_NAMES:
        return fqdn, None
    return None, (f"this machine's name {fqdn!r} is not a fully qualified domain name, so the SMTP greeting "
                  f"(EHLO) {'gives it' if '.' in fqdn else 'gives its address, e.g. [192.0.2.1]'}, which "
                  "receiving servers may count against the mail: set [smtp] helo_name (e.g. "
                  "\"mail.yourcompany.example\", a name that resolves to this machine)")


def open_transport(settings: Settings, clock: Clock) -> Transport:
    """The transport the config asks for; an SMTP one connects only at its first send."""
    if settings.mail.transport == "outbox":
        return OutboxTransport(settings.resolve(settings.mail.outbox_dir), clock)
    return SmtpTransport.from_settings(settings, clock)
