"""A real SMTP server on 127.0.0.1 for tests: aiosmtpd on a free port, recording what it receives, with
scripted faults (4xx, 5xx, 421, dropped connections), optional STARTTLS or implicit TLS with a trustme
CA, and optional AUTH.

A pytest plugin: ``pytest_plugins = ["tests.smtp_server"]`` in tests/conftest.py gives every test the
fixtures ``smtp_sink`` (a plain server), ``make_smtp_sink`` (a factory for TLS/AUTH/fault variants),
``smtp_ca`` (a session-wide trustme CA) and ``refused_port`` (a port where nothing listens).

    def test_x(smtp_sink):
        smtp_sink.tempfail(times=1, at="RCPT")          # the first RCPT gets 451, the next 250
        ... send to smtp_sink.host, smtp_sink.port ...
        assert smtp_sink.messages[0].message["Subject"] == "..."
        assert smtp_sink.connections == 1
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

Stage = Literal["MAIL", "RCPT", "DATA", "EOM"]
STAGES = ("MAIL", "RCPT", "DATA", "EOM")  # EOM: the reply after the content (the final dot)
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """A message the server accepted (250 after the data)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # as received, dot-unstuffed, CRLF line ends
    mail_options: list[str]
    connection: int  # 1 for the first connection of the test, 2 for the next...
    tls: bool
    user: str | None  # the AUTH login, if any

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)  # type: ignore[return-value]


@dataclass
class _Fault:
    stage: Stage
    action: Literal["reply", "reply_close", "drop", "hang"]
    code: int = 0
    text: str = ""
    after: int = 0  # only once this many messages were accepted
    times: float = 1  # how many commands it hits; inf for "always"
    address: str | None = None  # only for this recipient (the sender at MAIL)
    refuse_connections: bool = False  # and then stop listening

    def matches(self, stage: str, accepted: int, addresses: list[str]) -> bool:
        if self.stage != stage or self.times <= 0 or accepted < self.after:
            return False
        return self.address is None or self.address.lower() in (a.lower() for a in addresses)


@dataclass
class _Log:
    connections: int = 0
    commands: list[tuple[int, str]] = field(default_factory=list)
    ehlo_names: list[str] = field(default_factory=list)


class SmtpSink:
    """aiosmtpd on 127.0.0.1 and a free port, in a thread; start() / stop() or use as a context manager."""

    def __init__(
        self,
        *,
        tls: Literal["starttls", "ssl"] | None = None,
        ca: trustme.CA | None = None,
        require_starttls: bool = True,
        auth: tuple[str, str] | None = None,
        eight_bit_mime: bool = True,
        hostname: str = "mx.sink.test",
        pipelining: bool = False,
        smtputf8: bool = False,
    ) -> None:
        self.tls = tls
        # Offer PIPELINING (RFC 2920): aiosmtpd reads pipelined commands one line at a time anyway.
        self.pipelining = pipelining
        self.auth = auth
        self.messages: list[Received] = []
        self.unanswered: list[Received] = []  # content received, then the connection dropped (EOM drop)
        self._faults: list[_Fault] = []
        self.hung = threading.Event()
        self._log = _Log()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._ready = False
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp-sink-")
        self.ca: trustme.CA | None = None
        self.ca_file: Path | None = None
        server_ctx: ssl.SSLContext | None = None
        if tls:
            self.ca = ca or trustme.CA()
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(HOST, "localhost").configure_cert(server_ctx)
            self.ca_file = Path(self._tmp.name) / "ca.pem"
            self.ca.cert_pem.write_to_path(str(self.ca_file))
        kwargs: dict[str, Any] = {
            "hostname": HOST,
            "port": 0,
            "server_hostname": hostname,
            "ready_timeout": 5.0,
            # Without 8BITMIME aiosmtpd needs decode_data=True (then it also refuses BODY=8BITMIME).
            "decode_data": not eight_bit_mime,
            # Offer SMTPUTF8 (RFC 6531): UTF-8 in MAIL, RCPT and the headers.
            "enable_SMTPUTF8": smtputf8,
        }
        if tls == "starttls":
            kwargs.update(tls_context=server_ctx, require_starttls=require_starttls)
        elif tls == "ssl":
            kwargs.update(ssl_context=server_ctx)
        if auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=tls is not None)
        self.controller = _Controller(self, _Handler(self), **kwargs)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        self.controller.start()
        self._ready = True  # the controller's own probe connection is not counted
        return self

    def stop(self) -> None:
        if self.controller._thread is not None:
            self.controller.stop()
        self._tmp.cleanup()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self.controller.port

    def env(self, username: str = "", password: str = "") -> dict[str, str]:
        """SMTP_* variables for ``Settings.env`` that point a run at this server."""
        env = {"SMTP_HOST": HOST, "SMTP_PORT": str(self.port), "SMTP_SECURITY": self.tls or "none"}
        if self.ca_file is not None:
            env["SMTP_CA_FILE"] = str(self.ca_file)
        if username:
            env.update(SMTP_USERNAME=username, SMTP_PASSWORD=password)
        return env

    # -- what happened ----------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections opened by clients (the controller's start-up probe excluded)."""
        return self._log.connections

    @property
    def commands(self) -> list[str]:
        """Every command received, in order: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, QUIT..."""
        with self._lock:
            return [command for _, command in self._log.commands]

    def commands_on(self, connection: int) -> list[str]:
        with self._lock:
            return [command for n, command in self._log.commands if n == connection]

    @property
    def ehlo_count(self) -> int:
        return self.commands.count("EHLO")

    @property
    def ehlo_names(self) -> list[str]:
        """The name each EHLO (or HELO) gave, in order."""
        with self._lock:
            return list(self._log.ehlo_names)

    # -- faults: each hits the commands of its stage, once `after` messages were accepted --------

    def tempfail(self, times: int = 1, at: Stage = "RCPT", code: int = 451,
                 text: str = "4.7.1 Try again later", address: str | None = None) -> None:
        """Answer the next `times` commands at a stage with a 4xx (then 250 again)."""
        self._add(_Fault(_stage(at), "reply", code, text, times=times, address=address))

    def refuse(self, address: str, at: Stage = "RCPT", code: int = 550,
               text: str = "5.1.1 Mailbox unavailable") -> None:
        """Always answer 5xx for this recipient (for this sender when at="MAIL")."""
        self._add(_Fault(_stage(at), "reply", code, text, times=float("inf"), address=address))

    def close_with_421(self, after: int, at: Stage = "MAIL",
                       text: str = "4.4.2 mx.sink.test closing connection") -> None:
        """Once `after` messages were accepted, answer the next command at `at` with 421 and close (once)."""
        self._add(_Fault(_stage(at), "reply_close", 421, text, after=after))

    def drop(self, after: int, at: Stage = "MAIL", refuse_connections: bool = False) -> None:
        """Once `after` messages were accepted, close the connection instead of answering at `at` (once).

        at="EOM" reads the whole message, then closes without the final reply: the client cannot know
        whether it was delivered (the content lands in `unanswered`, not `messages`). With
        refuse_connections=True the server also stops listening: a reconnect is refused.
        """
        self._add(_Fault(_stage(at), "drop", after=after, refuse_connections=refuse_connections))

    def hang(self, after: int = 0, at: Stage = "EOM", address: str | None = None) -> threading.Event:
        """Once `after` messages were accepted, never answer at `at` (once; for `address` only, if given):
        the client waits until its own timeout, or forever.

        For killing a client in the middle of an SMTP transaction; the returned event is set when the
        server starts hanging, so a test waits on it instead of sleeping.
        """
        self._add(_Fault(_stage(at), "hang", after=after, address=address))
        return self.hung

    def wait_for_messages(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` messages were accepted (True), or `timeout` seconds passed (False)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)

    def stop_listening(self) -> None:
        """Refuse new connections from now on; open ones go on."""
        loop = self.controller.loop
        server = self.controller.server
        if server is not None:
            asyncio.run_coroutine_threadsafe(_close_server(server), loop).result(5)

    # -- internals (called on the server thread) --------------------------------------------------

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _stop_listening_in_loop(self) -> None:
        if self.controller.server is not None:
            self.controller.server.close()

    def _opened(self) -> int:
        with self._lock:
            if not self._ready:
                return 0
            self._log.connections += 1
            return self._log.connections

    def _command(self, connection: int, command: str, argument: str | None = None) -> None:
        if connection:
            with self._lock:
                self._log.commands.append((connection, command))
                if argument is not None:
                    self._log.ehlo_names.append(argument)

    def _take(self, stage: str, addresses: list[str]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(stage, len(self.messages), addresses):
                    fault.times -= 1
                    return fault
        return None

    def _record(self, received: Received, accepted: bool) -> int:
        with self._lock:
            (self.messages if accepted else self.unanswered).append(received)
            self._arrived.notify_all()
            return len(self.messages)

    def _authenticate(self, server: SMTP, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert self.auth is not None
        user, password = self.auth
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _stage(at: str) -> Stage:
    if at not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {at!r}")
    return at  # type: ignore[return-value]


async def _close_server(server: asyncio.AbstractServer) -> None:
    server.close()


async def _hang() -> None:
    """Wait to be cancelled: aiosmtpd cancels the session's task when the connection is lost."""
    await asyncio.Event().wait()


class _SinkSMTP(SMTP):
    """aiosmtpd's SMTP session, with a command log and the scripted faults at each stage."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink
        self.number = 0  # this connection's number; 0 for the controller's probe

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # called again with the TLS transport after STARTTLS
        super().connection_made(transport)
        if first:
            self.number = self.sink._opened()

    async def _fault(self, stage: str, addresses: list[str]) -> bool:
        """Apply a scripted fault; True when it answered (or dropped) instead of the normal command."""
        fault = self.sink._take(stage, addresses)
        if fault is None:
            return False
        if fault.action == "reply":
            await self.push(f"{fault.code} {fault.text}")
            return True
        if fault.action == "hang":
            self.sink.hung.set()
            await _hang()
        if fault.refuse_connections:
            self.sink._stop_listening_in_loop()
        if fault.action == "reply_close":
            await self.push(f"{fault.code} {fault.text}")
            assert self.transport is not None
            self.transport.close()
        else:
            assert self.transport is not None
            self.transport.abort()
        await _hang()
        return True  # pragma: no cover

    async def smtp_EHLO(self, hostname: str) -> None:
        self.sink._command(self.number, "EHLO", hostname)
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self.sink._command(self.number, "HELO", hostname)
        await super().smtp_HELO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self.sink._command(self.number, "STARTTLS")
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        self.sink._command(self.number, "AUTH")
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.sink._command(self.number, "MAIL")
        ready = self.session is not None and self.session.host_name
        if not ready or not await self._fault("MAIL", _addr(arg)):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self.sink._command(self.number, "RCPT")
        ready = self.envelope is not None and self.envelope.mail_from
        if not ready or not await self._fault("RCPT", _addr(arg)):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self.sink._command(self.number, "DATA")
        ready = self.envelope is not None and self.envelope.rcpt_tos
        if not ready or not await self._fault("DATA", list(self.envelope.rcpt_tos)):  # type: ignore[union-attr]
            await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self.sink._command(self.number, "RSET")
        await super().smtp_RSET(arg)

    async def smtp_NOOP(self, arg: str) -> None:
        self.sink._command(self.number, "NOOP")
        await super().smtp_NOOP(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self.sink._command(self.number, "QUIT")
        await super().smtp_QUIT(arg)


def _addr(arg: str | None) -> list[str]:
    found = re.search(r"<([^>]*)>", arg or "")
    return [found.group(1)] if found else []


class _Handler:
    """The end of the data: a scripted fault, or record the message and answer 250."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server: _SinkSMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname  # the five-argument hook must do what aiosmtpd would
        if self.sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: _SinkSMTP, session: Any, envelope: Any) -> str | None:
        login = session.login_data
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content),
            mail_options=list(envelope.mail_options),
            connection=server.number,
            tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
            user=login.decode() if isinstance(login, bytes) else login,
        )
        fault = self.sink._take("EOM", received.rcpt_tos)
        if fault is not None:
            if fault.action == "reply":
                return f"{fault.code} {fault.text}"
            if fault.action == "hang":
                self.sink._record(received, accepted=False)
                self.sink.hung.set()
                await _hang()
            if fault.action == "drop":
                self.sink._record(received, accepted=False)
            if fault.refuse_connections:
                self.sink._stop_listening_in_loop()
            assert server.transport is not None
            if fault.action == "reply_close":
                await server.push(f"{fault.code} {fault.text}")
                server.transport.close()
            else:
                server.transport.abort()
            await _hang()
        number = self.sink._record(received, accepted=True)
        return f"250 2.0.0 OK: queued as SINK{number}"


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: learns the port the OS gave before its start-up probe."""

    def __init__(self, sink: SmtpSink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        return _SinkSMTP(self.sink, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # aiosmtpd 1.4 probes self.port, which is still 0 after binding to port 0.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


# -- pytest plugin ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_ca() -> trustme.CA:
    """A private CA for the test servers' certificates (clients trust it through ca_file)."""
    return trustme.CA()


@pytest.fixture
def make_smtp_sink(smtp_ca: trustme.CA) -> Iterator[Callable[..., SmtpSink]]:
    """Start a server with options (tls="starttls"|"ssl", auth=(user, password), ca=...); stopped after the test."""
    started: list[SmtpSink] = []

    def make(**options: Any) -> SmtpSink:
        if options.get("tls"):
            options.setdefault("ca", smtp_ca)
        sink = SmtpSink(**options).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


@pytest.fixture
def smtp_sink(make_smtp_sink: Callable[..., SmtpSink]) -> SmtpSink:
    """A plain SMTP server (no TLS, no AUTH) on 127.0.0.1 and a free port, recording every message."""
    return make_smtp_sink()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a connection is refused: bound, never listening, so nobody else takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]
