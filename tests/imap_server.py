"""A real IMAP server on 127.0.0.1 for tests: Debian's Dovecot (``dovecot-imapd``, installed by .ci/run),
started once per session on free ports with its own config in a temp dir: a plain-text passdb with one
user, a Maildir in the temp dir, implicit TLS and STARTTLS with a trustme certificate. Skips with the
reason only where Dovecot is not installed.

A pytest plugin (tests/conftest.py): the fixture ``imap_server`` gives each test the server with an
empty INBOX::

    def test_x(imap_server):
        uid = imap_server.append(raw_bytes, flags=r"\\Flagged")
        ... ImapMailbox(imap_server.host, imap_server.user, imap_server.password,
                        port=imap_server.port, ca_file=imap_server.ca_file) ...
        assert imap_server.flags() == {uid: {r"\\Flagged"}}
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

DOVECOT = Path("/usr/sbin/dovecot")
HOST = "127.0.0.1"
USER = "bounces@acme.example"
PASSWORD = "imap-test-secret-7Qx"  # a test's own; the tests assert that no output shows it


@dataclass
class ImapServer:
    host: str
    port: int  # implicit TLS (imaps)
    starttls_port: int
    ca_file: Path
    user: str
    password: str
    log: Path

    def client(self) -> imaplib.IMAP4_SSL:
        """The test's own connection, for appending and looking at flags."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=10)
        conn.login(self.user, self.password)
        return conn

    def append(self, raw: bytes, flags: str = "", folder: str = "INBOX") -> int:
        """APPEND a message (as a mail client would); returns its UID."""
        with contextlib.closing(_Closing(self.client())) as conn:
            data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            typ, answer = conn.imap.append(folder, f"({flags})" if flags else None, None, data)
            assert typ == "OK", answer
            return int(re.search(rb"APPENDUID \d+ (\d+)", answer[0]).group(1))  # type: ignore[union-attr]

    def create(self, folder: str) -> None:
        with contextlib.closing(_Closing(self.client())) as conn:
            typ, answer = conn.imap.create(folder)
            assert typ == "OK", answer

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags, looked at read-only (EXAMINE) so that looking changes nothing."""
        with contextlib.closing(_Closing(self.client())) as conn:
            conn.imap.select(folder, readonly=True)
            typ, data = conn.imap.uid("FETCH", "1:*", "(UID FLAGS)")
            found: dict[int, set[str]] = {}
            for line in data:
                if isinstance(line, bytes) and (m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)):
                    # \\Recent is a session flag (RFC 3501 2.3.2), not one a reader sets or keeps.
                    found[int(m.group(1))] = set(m.group(2).decode().split()) - {r"\Recent"}
            return found

    def empty(self) -> None:
        with contextlib.closing(_Closing(self.client())) as conn:
            typ, listing = conn.imap.list()
            for line in listing:
                name = line.decode().rsplit(" ", 1)[-1] if isinstance(line, bytes) else ""
                if name.strip('"').upper() != "INBOX":
                    conn.imap.delete(name)
                    continue
                conn.imap.select(name)
                conn.imap.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
                conn.imap.expunge()


class _Closing:
    def __init__(self, imap: imaplib.IMAP4) -> None:
        self.imap = imap

    def close(self) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.imap.logout()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _config(root: Path, port: int, starttls_port: int) -> str:
    if os.geteuid() == 0:
        # Dovecot never runs mail processes as root: the mailbox belongs to nobody.
        login_user, internal_user = "dovenull", "dovecot"
        uid, gid = 65534, 65534
    else:
        login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
        uid, gid = os.geteuid(), os.getegid()
    for sub in ("mail", "home"):
        (root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(root / sub, uid, gid)
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {HOST}
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing delay after a wrong password (Dovecot's auth penalty): one test tries one on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


@pytest.fixture(scope="session")
def dovecot() -> Iterator[ImapServer]:
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed here (Debian: apt-get install dovecot-imapd; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="repsend-dovecot-"))
    root.chmod(0o755)  # the mail processes (nobody) must reach their Maildir
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    port, starttls_port = _free_port(), _free_port()
    (root / "dovecot.conf").write_text(_config(root, port, starttls_port))
    process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(root / "dovecot.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = ImapServer(HOST, port, starttls_port, root / "ca.pem", USER, PASSWORD, root / "dovecot.log")
    try:
        _wait_until_listening(process, port, root)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_listening(process: subprocess.Popen, port: int, root: Path) -> None:
    """Dovecot forks its listeners after start-up: connect until one answers (a server's start, not a
    clock a test depends on)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            log = (root / "dovecot.log").read_text(errors="replace") if (root / "dovecot.log").exists() else ""
            raise RuntimeError(f"Dovecot did not start:\n{output}\n{log}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"Dovecot did not listen on {HOST}:{port} within 15 s")


@pytest.fixture
def imap_server(dovecot: ImapServer) -> ImapServer:
    dovecot.empty()
    return dovecot
