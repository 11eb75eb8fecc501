"""The inbox sorts what comes back: one hand-written message per case under tests/inbox_corpus/, each
after the real format of the server or client named in its file name, and what a person would expect
repsend to learn from it."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from repsend.inbox.classify import classify, message_key, new_text, problem_of

CORPUS = Path(__file__).parent / "inbox_corpus"
OPT_OUT = ["OptOut@acme.example"]


def parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


def ours(n: str) -> str:
    """The Message-ID repsend gave the mail a report is about (tests/inbox_corpus uses these)."""
    return f"<{n}@acme.example>"


# file: (kind, addresses, status, action, original Message-ID)
CASES: dict[str, tuple[str, tuple[str, ...], str | None, str | None, str | None]] = {
    "postfix-user-unknown.eml": ("bounce", ("tanaka@example.co.jp",), "5.1.1", "failed",
                                 ours("176455080212.4021.1111111111111111111")),
    "postfix-delayed.eml": ("delayed", ("suzuki@slow.example.jp",), "4.7.1", "delayed",
                            ours("176463478011.4021.2222222222222222222")),
    "postfix-success.eml": ("delivered", ("ito@example.com",), "2.0.0", "relayed",
                            ours("176464203011.4021.3333333333333333333")),
    "exim-plain.eml": ("bounce", ("kobayashi@old-domain.example.jp",), "5.1.1", None,
                       ours("176472076311.4021.4444444444444444444")),
    "qmail-plain.eml": ("bounce", ("watanabe@hosting.example.net",), "5.1.1", None,
                        ours("176472540111.4021.5555555555555555555")),
    "exchange-online.eml": ("bounce", ("yamamoto@contoso.co.jp",), "5.1.10", "failed",
                            ours("176478630011.4021.6666666666666666666")),
    "gmail.eml": ("bounce", ("kato.old@gmail.com",), "5.1.1", "failed",
                  ours("176479761011.4021.7777777777777777777")),
    "japanese-host-iso2022jp.eml": ("bounce", ("nakamura@isp.example.ne.jp",), "5.1.1", None,
                                    ours("176480520011.4021.8888888888888888888")),
    "global-dsn.eml": ("bounce", ("山田@例え.jp",), "5.1.1", "failed", ours("176490000811.4021.1010101010101010101")),
    "multi-recipient.eml": ("bounce", ("kimura@partner.example.com", "hayashi@partner.example.com"), "5.1.1",
                            "failed", ours("176489699811.4021.1212121212121212121")),
    "no-message-id.eml": ("bounce", ("tanaka@example.org",), "5.2.1", "failed", None),
    "arf-complaint.eml": ("complaint", ("ogawa@mailbox.example",), None, None,
                          ours("176500067011.4021.1313131313131313131")),
    "ooo-english.eml": ("auto_reply", ("jclark@northwind.example.com",), None, None,
                        ours("176506212011.4021.1414141414141414141")),
    "ooo-japanese.eml": ("auto_reply", ("hayashi@example.co.jp",), None, None,
                         ours("176482080011.4021.9999999999999999999")),
    "vacation-x-autoreply.eml": ("auto_reply", ("matsuda@example.ne.jp",), None, None,
                                 ours("176506242011.4021.1515151515151515151")),
    "human-reply.eml": ("other", (), None, None, ours("176506212011.4021.1414141414141414141")),
    "reply-stop-english.eml": ("opt_out", ("bwilson@example.com",), None, None,
                               ours("176506290011.4021.1616161616161616161")),
    "reply-stop-japanese.eml": ("opt_out", ("kondo@example.co.jp",), None, None,
                                ours("176506320011.4021.1818181818181818181")),
    "reply-stop-short.eml": ("opt_out", ("ueda@example.jp",), None, None,
                             ours("176506340011.4021.2020202020202020202")),
    "reply-quoted-footer-japanese.eml": ("other", (), None, None, ours("176506330011.4021.1919191919191919191")),
    "reply-quoted-footer-outlook.eml": ("other", (), None, None, ours("176506300011.4021.1717171717171717171")),
    "to-optout-address.eml": ("opt_out", ("okada@example.co.jp",), None, None, None),
}
MALFORMED = {"truncated.eml": "the closing multipart boundary is missing"}


def test_every_corpus_file_has_a_case() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted([*CASES, *MALFORMED])


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus(name: str) -> None:
    kind, addresses, status, action, original = CASES[name]
    raw = (CORPUS / name).read_bytes()
    msg = parse(raw)
    assert problem_of(msg) is None
    returned = classify(msg, opt_out_addresses=OPT_OUT, raw=raw)
    assert (returned.kind, returned.addresses, returned.status, returned.action, returned.original_message_id) == (
        kind, addresses, status, action, original), returned.reason
    assert returned.key == (str(msg["Message-ID"]).strip() if msg["Message-ID"] else message_key(msg, raw))
    assert returned.reason


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed(name: str) -> None:
    problem = problem_of(parse((CORPUS / name).read_bytes()))
    assert problem is not None and MALFORMED[name] in problem.problem


def test_multi_recipient_report_has_one_record_per_recipient() -> None:
    returned = classify(parse((CORPUS / "multi-recipient.eml").read_bytes()))
    got = [(r.address, r.kind, r.status, r.final_address) for r in returned.recipients]
    assert got == [
        ("kimura@partner.example.com", "bounce", "5.1.1", None),
        ("hayashi@partner.example.com", "bounce", "5.2.2", None),
        # Sent to mori@, expanded by an alias to sales@: the address we sent to is the one to match.
        ("mori@partner.example.com", "delayed", "4.4.1", "sales@partner.example.com"),
    ]


def test_report_without_message_id_keeps_the_envelope() -> None:
    returned = classify(parse((CORPUS / "no-message-id.eml").read_bytes()))
    assert returned.original_message_id is None
    assert returned.envelope_id == "9f2c41d07a6b4e35"
    assert returned.envelope_to == ("bounces+tanaka=example.org@acme.example",)
    assert returned.diagnostic == "smtp; 550 5.2.1 <tanaka@example.org>: mailbox disabled"


def test_plain_text_report_keeps_the_servers_words() -> None:
    returned = classify(parse((CORPUS / "japanese-host-iso2022jp.eml").read_bytes()))
    assert returned.diagnostic == "理由: 550 5.1.1 <nakamura@isp.example.ne.jp>... User unknown"
    assert "配信エラー" in returned.subject


def message(body: str, **headers: str) -> EmailMessage:
    msg = EmailMessage(policy=policy.default)
    msg["From"] = headers.pop("From", "Kenji Mori <mori@example.jp>")
    msg["To"] = headers.pop("To", "sato@acme.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return parse(msg.as_bytes())


@pytest.mark.parametrize(("headers", "body", "kind"), [
    ({"Subject": "Re: hello", "Auto_Submitted": "no"}, "Thanks, see you Monday.", "other"),
    ({"Subject": "Re: hello", "Auto_Submitted": "auto-replied; owner-email=x@example.jp"}, "Away.", "auto_reply"),
    ({"Subject": "Re: hello", "X_Autorespond": "yes"}, "Away.", "auto_reply"),
    ({"Subject": "Re: hello", "Precedence": "auto_reply"}, "Away.", "auto_reply"),
    ({"Subject": "Out of Office: hello"}, "I am away.", "auto_reply"),
    ({"Subject": "【不在】ご無沙汰しております"}, "出張中です。", "auto_reply"),
    ({"Subject": "unsubscribe"}, "", "opt_out"),
    ({"Subject": "配信停止"}, "よろしくお願いします。", "opt_out"),
    ({"Subject": "Re: 配信停止のご案内", "In_Reply_To": "<1@acme.example>"}, "承知しました。", "other"),
    ({"Subject": "Re: hello"}, "STOP", "opt_out"),
    ({"Subject": "Re: hello"}, "Please stop sending these emails.", "opt_out"),
    ({"Subject": "Re: hello"}, "I will stop by your office on Monday.", "other"),
    ({"Subject": "Re: hello"}, "工場の稼働を停止している期間はお電話でお願いします。", "other"),
    ({"Subject": "Re: hello"}, "Please call me.\n\nOn Mon, Dec 7, 2026 at 10:00 AM Sato Hiroshi <\nsato@acme.example> "
     "wrote:\nTo stop, reply unsubscribe.", "other"),
    ({"Subject": "Re: hello"}, "ありがとうございます。\n\n-----Original Message-----\n配信停止はこちら", "other"),
    ({"Subject": "Re: hello"}, "Thanks.\n-- \nTo unsubscribe from my newsletter, write to me.", "other"),
    ({"Subject": "Re: hello", "Cc": "optout@acme.example"}, "Thanks.", "opt_out"),
])
def test_small_cases(headers: dict[str, str], body: str, kind: str) -> None:
    assert classify(message(body, **headers), opt_out_addresses=OPT_OUT).kind == kind


def test_a_rep_forwarding_to_the_opt_out_address_does_not_opt_the_rep_out() -> None:
    msg = message("Please remove this customer.\n\n---------- Forwarded message ---------\nFrom: ueda@example.jp\n"
                  "配信停止", From="Sato Hiroshi <sato@acme.example>", To="optout@acme.example", Subject="Fwd: 停止")
    returned = classify(msg, opt_out_addresses=OPT_OUT, own_domains=["acme.example"])
    assert (returned.kind, returned.addresses) == ("other", ())
    assert "our own acme.example" in returned.reason
    assert classify(msg, opt_out_addresses=OPT_OUT).kind == "opt_out"  # without own_domains it cannot tell


def test_ip_address_is_not_a_status_code() -> None:
    msg = message("Your message could not be delivered to ono@example.jp: host 10.2.4.5 refused the connection\n"
                  "after 5 days; the mail has been returned.", From="MAILER-DAEMON@mx.example.jp",
                  Subject="Returned mail")
    returned = classify(msg)
    assert (returned.kind, returned.addresses, returned.status) == ("bounce", ("ono@example.jp",), None)


def test_plain_text_report_names_only_the_addresses_with_a_code() -> None:
    msg = message("Delivery has failed to these recipients or groups:\n\nyamada@contoso.co.jp\n"
                  "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipientNotFound; not found'\n\n"
                  "For help, contact helpdesk@contoso.co.jp.\n",
                  From="MicrosoftExchange329e71ec@contoso.co.jp", Subject="Undeliverable: hello",
                  X_MS_Exchange_Message_Is_Ndr="")
    returned = classify(msg)
    assert (returned.kind, returned.addresses, returned.status) == ("bounce", ("yamada@contoso.co.jp",), "5.1.1")
    assert returned.recipients[0].from_text
    standard = classify(parse((CORPUS / "postfix-user-unknown.eml").read_bytes()))
    assert not standard.recipients[0].from_text


def test_key_without_message_id_is_a_digest_of_the_bytes() -> None:
    raw = b"From: a@example.jp\r\nSubject: hi\r\n\r\nhello\r\n"
    key = classify(parse(raw), raw=raw).key
    assert key.startswith("sha256:") and len(key) == 7 + 64
    assert classify(parse(raw), raw=raw).key == key
    assert classify(parse(raw + b"!"), raw=raw + b"!").key != key
    lf = raw.replace(b"\r\n", b"\n")  # the same message from a Maildir file rather than over IMAP
    assert classify(parse(lf), raw=lf).key == key


def test_new_text_drops_inline_quotes_and_keeps_the_answers() -> None:
    body = "> Shall we meet?\nYes, Tuesday.\n> Any topic?\nThe budget.\n"
    assert new_text(body) == "Yes, Tuesday.\nThe budget."


def test_cut_anywhere_a_message_is_sorted_or_named_never_a_crash() -> None:
    """A mailbox holds what it holds: every corpus file cut at many places, each with a header cut mid-address
    among them, is either sorted or reported as a problem."""
    from repsend.inbox import incoming

    for path in sorted(CORPUS.glob("*.eml")):
        raw = path.read_bytes()
        for cut in range(0, len(raw), 101):
            item = incoming(path.name, raw[:cut] + b"\xff\x1b$B")
            if item.message is not None and item.problem is None:
                assert classify(item.message, opt_out_addresses=OPT_OUT, raw=item.raw).kind
