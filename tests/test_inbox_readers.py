"""The inbox readers: mbox, Maildir, a folder of .eml files, and IMAP against a real Dovecot on loopback.
Each item says where it came from; reading changes nothing; a broken message is named and skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from repsend.errors import ConfigError, InputError, MailError
from repsend.inbox import ImapMailbox, classify, read_path

CORPUS = Path(__file__).parent / "inbox_corpus"
GMAIL = (CORPUS / "gmail.eml").read_bytes()
EXIM = (CORPUS / "exim-plain.eml").read_bytes()
TRUNCATED = (CORPUS / "truncated.eml").read_bytes()
STOP = (CORPUS / "reply-stop-japanese.eml").read_bytes()


def mbox_of(*messages: bytes) -> bytes:
    """An mbox as Postfix's local delivery writes one: a From_ line, ">From " quoted, a blank line after."""
    out = b""
    for raw in messages:
        body = b"".join(b">" + line if line.startswith((b"From ", b">From ")) else line
                        for line in raw.splitlines(keepends=True))
        out += b"From MAILER-DAEMON  Tue Dec  1 10:00:04 2026\n" + body.rstrip(b"\n") + b"\n\n"
    return out


def test_mbox_gives_each_message_its_line(tmp_path: Path) -> None:
    quoted = b"From: a@example.jp\nMessage-ID: <q@example.jp>\n\nFrom here on it is fine.\n"
    path = tmp_path / "bounces.mbox"
    path.write_bytes(mbox_of(GMAIL, quoted, TRUNCATED))
    items = list(read_path(path))
    first_lines = [i + 1 for i, line in enumerate(path.read_bytes().splitlines()) if line.startswith(b"From ")]
    assert [item.where for item in items] == [f"{path}:{n} (message {i})" for i, n in enumerate(first_lines, 1)]
    assert classify(items[0].message).addresses == ("kato.old@gmail.com",)  # type: ignore[arg-type]
    assert items[1].message.get_content() == "From here on it is fine.\n"  # type: ignore[union-attr]
    assert [item.problem is None for item in items] == [True, True, False]
    assert "closing multipart boundary is missing" in items[2].problem  # type: ignore[operator]


def test_maildir_reads_new_and_cur_and_moves_nothing(tmp_path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1765000001.M1P1.mx").write_bytes(GMAIL)
    (tmp_path / "cur" / "1765000000.M2P2.mx:2,S").write_bytes(EXIM)
    (tmp_path / "tmp" / "1765000002.M3P3.mx").write_bytes(b"half written")
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    items = list(read_path(tmp_path))
    assert [Path(item.where).relative_to(tmp_path).as_posix() for item in items] == [
        "new/1765000001.M1P1.mx", "cur/1765000000.M2P2.mx:2,S"]
    assert [classify(i.message).kind for i in items] == ["bounce", "bounce"]  # type: ignore[arg-type]
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_folder_of_eml_files_and_one_file() -> None:
    items = list(read_path(CORPUS))
    assert len(items) == len(list(CORPUS.glob("*.eml")))
    broken = [(Path(i.where).name, i.problem) for i in items if i.problem]
    assert broken == [("truncated.eml", "truncated or broken MIME structure "
                                        "(the closing multipart boundary is missing)")]
    [single] = read_path(CORPUS / "gmail.eml")
    assert single.where == str(CORPUS / "gmail.eml") and single.raw == GMAIL


def test_empty_file_in_a_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(b"")
    [item] = read_path(tmp_path)
    assert item.problem == "an empty message" and item.message is None


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.mbox: no such file or folder"):
        list(read_path(tmp_path / "nowhere.mbox"))


# -- IMAP against Dovecot ------------------------------------------------------------------------


def box(server, **options) -> ImapMailbox:  # noqa: ANN001, ANN003
    options.setdefault("port", server.port)
    options.setdefault("ca_file", server.ca_file)
    return ImapMailbox(server.host, server.user, options.pop("password", server.password), **options)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imap_reads_without_changing_a_flag(imap_server, security: str) -> None:  # noqa: ANN001
    uids = [imap_server.append(GMAIL), imap_server.append(STOP, flags=r"\Flagged"), imap_server.append(TRUNCATED)]
    before = imap_server.flags()
    port = imap_server.port if security == "ssl" else imap_server.starttls_port
    mailbox = box(imap_server, port=port, security=security)
    items = list(mailbox.messages())
    assert [item.uid for item in items] == uids
    assert items[0].where == f"{imap_server.host}:{port} INBOX UID {uids[0]}"
    kinds = [classify(i.message, raw=i.raw).kind if not i.problem else i.problem for i in items]  # type: ignore[arg-type]
    assert kinds[:2] == ["bounce", "opt_out"] and "closing multipart boundary" in kinds[2]
    assert items[0].raw.replace(b"\r\n", b"\n") == GMAIL
    assert mailbox.uidvalidity
    assert imap_server.flags() == before == {uids[0]: set(), uids[1]: {r"\Flagged"}, uids[2]: set()}


def test_imap_mark_seen_marks_what_was_handled(imap_server) -> None:  # noqa: ANN001
    uids = [imap_server.append(GMAIL), imap_server.append(EXIM), imap_server.append(STOP)]
    messages = box(imap_server, mark_seen=True).messages()
    next(messages)
    next(messages)  # asking for the second says the first was handled
    messages.close()  # stopped while handling the second: it stays unseen, to be read again
    assert imap_server.flags() == {uids[0]: {r"\Seen"}, uids[1]: set(), uids[2]: set()}
    list(box(imap_server, mark_seen=True).messages())
    assert imap_server.flags() == {uid: {r"\Seen"} for uid in uids}


def test_imap_reads_only_what_is_new_while_uidvalidity_holds(imap_server) -> None:  # noqa: ANN001
    first = imap_server.append(GMAIL)
    mailbox = box(imap_server)
    assert [i.uid for i in mailbox.messages()] == [first]
    validity = mailbox.uidvalidity
    assert list(box(imap_server).messages(after_uid=first, uidvalidity=validity)) == []
    second = imap_server.append(EXIM)
    assert [i.uid for i in box(imap_server).messages(after_uid=first, uidvalidity=validity)] == [second]
    # Renumbered (another UIDVALIDITY): everything again.
    assert [i.uid for i in box(imap_server).messages(after_uid=second, uidvalidity=validity + 1)] == [first, second]


def test_imap_folder_with_a_japanese_name(imap_server) -> None:  # noqa: ANN001
    imap_server.create("&kAFP4W4IMH8-")  # 送信済み in IMAP's modified UTF-7
    imap_server.append(EXIM, folder="&kAFP4W4IMH8-")
    [item] = box(imap_server, folder="送信済み").messages()
    assert item.where.endswith("送信済み UID 1")


def test_imap_wrong_password_names_host_and_user_not_the_password(imap_server) -> None:  # noqa: ANN001
    wrong = "not-the-" + imap_server.password
    with pytest.raises(MailError) as caught:
        list(box(imap_server, password=wrong).messages())
    text = str(caught.value)
    assert f"{imap_server.host}:{imap_server.port}" in text and repr(imap_server.user) in text
    assert "refused the login" in text
    assert wrong not in text and imap_server.password not in text
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert wrong not in repr(box(imap_server, password=wrong))


def test_imap_untrusted_certificate_and_missing_folder(imap_server, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(MailError, match=r"certificate cannot be verified.*ca_file"):
        list(box(imap_server, ca_file=None).messages())
    with pytest.raises(ConfigError, match=r"cannot open the IMAP folder 'Bounces'"):
        list(box(imap_server, folder="Bounces").messages())
    with pytest.raises(ConfigError, match=r"cannot load it"):
        list(box(imap_server, ca_file=tmp_path / "none.pem").messages())


def test_imap_nothing_listening(refused_port: int) -> None:
    with pytest.raises(MailError, match=rf"127\.0\.0\.1:{refused_port}: cannot connect to the IMAP server"):
        list(ImapMailbox("127.0.0.1", "u", "p", port=refused_port).messages())

