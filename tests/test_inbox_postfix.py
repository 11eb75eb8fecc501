"""Real bounce reports: a private Postfix on 127.0.0.1 (Debian's package, installed by .ci/run) takes two
mails that repsend's SMTP transport sends, one to an unknown local user and one to a destination that
defers, and writes its DSNs to the envelope sender, which it relays to the loopback SMTP sink. The inbox
sorts what Postfix wrote: a bounce with 5.1.1 and a delay with 4.x.x, each tied to the Message-ID sent.

Postfix needs root (its master drops privileges to the postfix user); where it is not installed or
this is not root, the test skips and says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from repsend.clock import FakeClock
from repsend.inbox import classify, incoming
from repsend.transport import SmtpTransport

POSTFIX = Path("/usr/sbin/postfix")
HOST = "127.0.0.1"
MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@pytest.fixture
def postfix(smtp_sink, refused_port: int) -> Iterator[tuple[int, Path]]:  # noqa: ANN001
    """A Postfix instance of its own (config, queue and log in a temp dir), listening on a free port:
    mail.acme.test is local (every local user accepted at RCPT, so an unknown one bounces in delivery),
    defer.acme.test goes to a port where nothing listens, everything else to the sink."""
    if not POSTFIX.exists():
        pytest.skip("Postfix is not installed here (Debian: apt-get install postfix; .ci/run installs it)")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root (its master starts as root)")
    root = Path(tempfile.mkdtemp(prefix="repsend-postfix-"))
    root.chmod(0o755)  # the postfix user works in the queue below it
    port = _free_port()
    (root / "etc").mkdir()
    (root / "spool").mkdir()
    (root / "data").mkdir()
    shutil.chown(root / "data", "postfix")
    (root / "etc" / "master.cf").write_text(MASTER_CF.format(host=HOST, port=port))
    (root / "etc" / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = mail.acme.test
mydomain = acme.test
myorigin = $myhostname
mydestination = $myhostname
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [{smtp_sink.host}]:{smtp_sink.port}
transport_maps = inline:{{defer.acme.test=smtp:[{HOST}]:{refused_port}}}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
# Seconds, not hours: the delay warning for the deferred mail comes within the test.
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
biff = no
""")
    config = str(root / "etc")
    master = subprocess.Popen([str(POSTFIX), "-c", config, "start-fg"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _listening(port) or master.poll() is not None, 20, lambda: f"no Postfix on {port}")
        if master.poll() is not None:
            pytest.fail(f"Postfix did not start: {master.stdout.read().decode()}{_log(root)}")  # type: ignore[union-attr]
        yield port, root
    finally:
        subprocess.run([str(POSTFIX), "-c", config, "stop"], capture_output=True)  # this instance only
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        shutil.rmtree(root, ignore_errors=True)


def _log(root: Path) -> str:
    log = root / "maillog"
    return "\n" + log.read_text(errors="replace") if log.exists() else ""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_for(condition, seconds: float, failure) -> None:  # noqa: ANN001
    """Postfix delivers in its own processes: look until it has (a daemon's pace, not a test's clock)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(failure())
        time.sleep(0.1)


def note(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Sato Hiroshi <sato@acme.example>"
    msg["To"] = to
    msg["Subject"] = "ご無沙汰しております"
    msg["Message-ID"] = make_msgid(domain="acme.example")
    msg.set_content("ご無沙汰しております。佐藤です。\n\n"
                    "配信停止をご希望の方は optout@acme.example までご連絡ください。\n")
    return msg


def test_postfix_reports_are_sorted(postfix: tuple[int, Path], smtp_sink) -> None:  # noqa: ANN001
    port, root = postfix
    unknown, deferred = note("nosuchuser@mail.acme.test"), note("tanaka@defer.acme.test")
    transport = SmtpTransport(HOST, port, "none", "", "", 10, None, clock=FakeClock(datetime.now(UTC)))
    try:
        transport.send(unknown, "bounces@acme.example", "nosuchuser@mail.acme.test")
        transport.send(deferred, "bounces@acme.example", "tanaka@defer.acme.test")
    finally:
        transport.close()

    def reports() -> list:
        return [m for m in smtp_sink.messages if m.rcpt_tos == ["bounces@acme.example"]]

    _wait_for(lambda: len(reports()) >= 2, 30, lambda: f"Postfix sent {len(reports())} of 2 reports{_log(root)}")
    sorted_ = {}
    for i, received in enumerate(reports()):
        item = incoming(f"sink message {i}", received.data)
        assert item.problem is None
        returned = classify(item.message, raw=item.raw)  # type: ignore[arg-type]
        sorted_[returned.original_message_id] = returned
    bounce, delay = sorted_[unknown["Message-ID"]], sorted_[deferred["Message-ID"]]
    assert (bounce.kind, bounce.addresses, bounce.status, bounce.action) == (
        "bounce", ("nosuchuser@mail.acme.test",), "5.1.1", "failed")
    assert (delay.kind, delay.addresses, delay.action) == ("delayed", ("tanaka@defer.acme.test",), "delayed")
    assert delay.status and delay.status.startswith("4.")
