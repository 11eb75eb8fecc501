"""The mail itself: header by header, in Japanese and English, and templates that must not ship."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from repsend.compose import MissingField, Templates, to_message
from repsend.errors import ConfigError
from repsend.models import Company, Contact, Rep
from tests.helpers import TEMPLATES

SATO = Rep(id="0055g00000AbCdEAAV", name="佐藤 健", email="k.sato@acme.example", is_active=True,
           first_name="健", last_name="佐藤", signature="佐藤 健\n株式会社アクメ 営業部 課長\n03-1234-5678")
CARTER = Rep(id="0055g00000AbCdFAAV", name="Emily Carter", email="e.carter@acme.example", is_active=True,
             first_name="Emily", last_name="Carter", signature="")
COMPANY = Company(name="株式会社アクメ", postal_address="〒100-0005 東京都千代田区丸の内1-1-1",
                  opt_out="optout@acme.example", domain="acme.example")
YAMADA = Contact(id="0035g00000Q0000001", email="h.yamada@example.co.jp", owner_id=SATO.id, first_name="花子",
                 last_name="山田", account_name="株式会社サンプル")
MILLER = Contact(id="0035g00000Q0000002", email="john.miller@northwind.example.com", owner_id=CARTER.id,
                 first_name="John", last_name="Miller", account_name="Northwind Traders Inc.")


def parsed(raw: bytes):
    return message_from_bytes(raw, policy=default)


def test_japanese_mail_header_by_header() -> None:
    mail = Templates(TEMPLATES, "dormant", ["ja"]).compose(YAMADA, SATO, COMPANY, "ja", "dormant")
    raw = to_message(mail, message_id="<1.2@acme.example>", date="Mon, 23 Nov 2026 10:00:00 +0900").as_bytes()
    msg = parsed(raw)
    assert msg["From"].addresses[0].display_name == "佐藤 健"
    assert msg["From"].addresses[0].addr_spec == "k.sato@acme.example"
    assert str(msg["Reply-To"]) == "佐藤 健 <k.sato@acme.example>"
    assert str(msg["To"]) == "山田 花子 <h.yamada@example.co.jp>"
    assert str(msg["Subject"]) == "ご無沙汰しております（株式会社アクメ 佐藤）"
    assert msg["Message-ID"] == "<1.2@acme.example>"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert "Sender" not in msg
    assert all(ord(ch) < 128 for ch in raw.split(b"\r\n\r\n", 1)[0].decode("ascii")), "headers are encoded ASCII"
    body = msg.get_content().replace("\r\n", "\n")
    assert body.startswith("株式会社サンプル\n山田様\n\nご無沙汰しております。株式会社アクメの佐藤です。")
    # The rep's own signature, then the company, its postal address and how to opt out.
    tail = body.rstrip("\n").split("\n")[-8:]
    assert tail == ["佐藤 健", "株式会社アクメ 営業部 課長", "03-1234-5678", "", "--", "株式会社アクメ",
                    "〒100-0005 東京都千代田区丸の内1-1-1",
                    "今後このようなご連絡が不要な場合は、お手数ですが optout@acme.example までお知らせください。"]
    assert "None" not in body and "{{" not in body


def test_english_mail_uses_the_reps_name_when_there_is_no_signature() -> None:
    mail = Templates(TEMPLATES, "dormant", ["en"]).compose(MILLER, CARTER, COMPANY, "en", "dormant")
    msg = parsed(to_message(mail).as_bytes())
    assert str(msg["From"]) == "Emily Carter <e.carter@acme.example>"
    assert str(msg["Subject"]) == "Catching up, John"
    body = msg.get_content().replace("\r\n", "\n")
    assert body.startswith("Hi John,\n")
    assert "going at Northwind Traders Inc. these days." in body
    assert "Best regards,\nEmily Carter\n\n--\n" in body
    assert "write to optout@acme.example" in body


def test_a_missing_value_is_never_rendered_blank() -> None:
    no_first = Contact(id="1", email="x@example.com", owner_id=CARTER.id, last_name="Johnson")
    with pytest.raises(MissingField) as err:
        Templates(TEMPLATES, "dormant", ["en"]).compose(no_first, CARTER, COMPANY, "en", "dormant")
    assert err.value.field == "contact.first_name"
    # The Japanese template greets by family name and leaves the company line out when it is empty.
    no_company = Contact(id="2", email="y@example.jp", owner_id=SATO.id, last_name="小林")
    mail = Templates(TEMPLATES, "dormant", ["ja"]).compose(no_company, SATO, COMPANY, "ja", "dormant")
    assert mail.body.startswith("小林様\n")
    assert str(mail.to) == "小林 <y@example.jp>"


def test_list_unsubscribe_is_one_click_and_not_folded() -> None:
    url = "https://acme.example/unsubscribe?token=" + "a" * 120
    mail = Templates(TEMPLATES, "dormant", ["ja"]).compose(YAMADA, SATO, COMPANY, "ja", "dormant")
    raw = to_message(mail, unsubscribe_url=url).as_bytes()
    assert f"List-Unsubscribe: <{url}>\r\n".encode() in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


def write_template(folder: Path, text: str, lang: str = "ja") -> Path:
    (folder / "t").mkdir(parents=True, exist_ok=True)
    (folder / "_legal").mkdir(exist_ok=True)
    (folder / "_legal" / f"{lang}.txt").write_text("--\n{{ company.name }}\n", encoding="utf-8")
    (folder / "t" / f"{lang}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Subject: x\n\nline2\n{% if contact.last_name %}\n", r"t/ja\.txt:4: template syntax error: Unexpected end"),
        ("Subject: x\n\n{{ contact.frist_name }}\n", r"t/ja\.txt:3: unknown variable 'contact.frist_name'"),
        ("Subject: x\n\n\n{{ customer.name }}\n", r"t/ja\.txt:4: unknown variable 'customer'"),
        ("Hello\n\nbody\n", r"t/ja\.txt:1: a template starts with a 'Subject: ...' line"),
    ],
)
def test_a_broken_template_stops_the_run_naming_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Templates(write_template(tmp_path, text), "t", ["ja"])


def test_a_subject_line_that_does_not_close_its_tags_is_a_config_error(tmp_path: Path) -> None:
    """The Subject line is rendered alone too (where a value holds a line break): it must be whole."""
    text = "Subject: {% if contact.title is defined %}x\n\n{% endif %}{{ contact.last_name }}様\n"
    with pytest.raises(ConfigError, match=r"t/ja\.txt:1: the Subject line must be complete on its own line"):
        Templates(write_template(tmp_path, text), "t", ["ja"])


# The case: a value the Subject prints holds a line feed and a header after it. Printed plainly
# (the fast path), through a filter (Jinja renders every mail), and from the bundled templates.
SUBJECT_TEMPLATES = {
    "plain": "Subject: ご無沙汰しております（{{ contact.account_name }}）\n\n{{ contact.last_name }}様\n",
    "filtered": "Subject: {{ contact.account_name | trim }} 様\n\n{{ contact.last_name }}様\n",
    "looped": "Subject: {% for w in [contact.account_name] %}{{ w }}{% endfor %}\n\n{{ contact.last_name }}様\n",
}


@pytest.mark.parametrize("kind", sorted(SUBJECT_TEMPLATES))
@pytest.mark.parametrize("value", ["X\nBcc: someone@example", "X\r\nBcc: someone@example", "X\rY", "X\x85Y",
                                   "X\x7fY", "X\x00Y", "X\x1bY"])
def test_a_control_character_a_value_brings_into_the_subject_is_invalid_header(
        tmp_path: Path, kind: str, value: str) -> None:
    """Checked after rendering: never a Subject cut at the line break with the rest going into the body."""
    from repsend.compose import HeaderInjection

    templates = Templates(write_template(tmp_path, SUBJECT_TEMPLATES[kind]), "t", ["ja"])
    fine = templates.compose(YAMADA, SATO, COMPANY, "ja", "c")  # the shape learnt on a good value first
    assert "\n" not in fine.subject and fine.body.startswith("山田様\n")
    odd = Contact(id="0035g00000Q0000009", email="a@example.jp", owner_id=SATO.id, last_name="森",
                  account_name=value)
    for make in (templates.compose, templates.check):
        with pytest.raises(HeaderInjection) as err:
            make(odd, SATO, COMPANY, "ja", "c")
        assert (err.value.detail, err.value.header) == ("control character in Subject", "Subject")


@pytest.mark.parametrize("value", ["X\tY", "X\u3000Y"])
def test_white_space_in_the_subject_is_no_control_character(tmp_path: Path, value: str) -> None:
    templates = Templates(write_template(tmp_path, SUBJECT_TEMPLATES["plain"]), "t", ["ja"])
    odd = Contact(id="0035g00000Q0000009", email="a@example.jp", owner_id=SATO.id, last_name="森",
                  account_name=value)
    assert templates.compose(odd, SATO, COMPANY, "ja", "c").subject == f"ご無沙汰しております（{value}）"


@pytest.mark.parametrize(
    ("rep", "contact", "header"),
    [
        pytest.param(Rep(id="0055g00000AbCdXAAV", name="佐藤\x85健", email="k@acme.example", is_active=True,
                         last_name="佐藤"), YAMADA, "From", id="C1 in the rep's name"),
        pytest.param(Rep(id="0055g00000AbCdXAAV", name="佐藤 健", email="k\t@acme.example", is_active=True,
                         last_name="佐藤"), YAMADA, "From", id="TAB in the rep's address"),
        pytest.param(SATO, Contact(id="0035g00000Q0000009", email="a@example.jp", owner_id=SATO.id,
                                   last_name="森\x7f"), "To", id="DEL in the contact's name"),
    ],
)
def test_a_control_character_in_an_address_header_is_invalid_header(rep: Rep, contact: Contact, header: str) -> None:
    from repsend.compose import HeaderInjection

    templates = Templates(TEMPLATES, "dormant", ["ja"])
    for make in (templates.compose, templates.check):
        with pytest.raises(HeaderInjection, match=f"control character in {header}"):
            make(contact, rep, COMPANY, "ja", "dormant")


def test_a_missing_language_version_is_a_config_error(tmp_path: Path) -> None:
    folder = write_template(tmp_path, "Subject: x\n\nbody\n")
    with pytest.raises(ConfigError, match=r"t/en\.txt: template not found"):
        Templates(folder, "t", ["ja", "en"])


def test_configured_extra_fields_are_known_to_templates(tmp_path: Path) -> None:
    folder = write_template(tmp_path, "Subject: {{ contact['Department'] }}\n\n{{ contact.last_name }}様\n")
    with pytest.raises(ConfigError, match="unknown variable 'contact.Department'"):
        Templates(folder, "t", ["ja"])
    templates = Templates(folder, "t", ["ja"], extra_fields=["Department"])
    with_dept = Contact(id="1", email="a@b.jp", owner_id="x", last_name="森", extra={"Department": "購買部"})
    assert templates.compose(with_dept, SATO, COMPANY, "ja", "c").subject == "購買部"
    with pytest.raises(MissingField, match="contact.Department"):
        templates.compose(Contact(id="2", email="a@b.jp", owner_id="x", last_name="森"), SATO, COMPANY, "ja", "c")


@pytest.mark.parametrize("value", ["{{ contact.email }}", "山田 {% raw %}", "x }}"])
def test_a_placeholder_that_survives_rendering_never_goes_out(value: str) -> None:
    """A value from the SFA that looks like template syntax would reach the reader unrendered: skip it."""
    templates = Templates(TEMPLATES, "dormant", ["ja"])
    fine = templates.compose(YAMADA, SATO, COMPANY, "ja", "dormant")  # the same template, learnt first
    assert "{{" not in fine.body
    odd = Contact(id="9", email="odd@example.jp", owner_id=SATO.id, last_name=value, account_name="株式会社サンプル")
    with pytest.raises(MissingField, match="unrendered"):
        templates.compose(odd, SATO, COMPANY, "ja", "dormant")


@pytest.mark.parametrize("rep_name", ["佐藤 健太", "Sato Kenta", 'Kenta "K." Sato, Sales',
                                      "とても長い名前の営業担当者" * 6])
def test_repeated_headers_made_once_are_the_bytes_the_email_package_makes(rep_name: str) -> None:
    """From, Reply-To and the unsubscribe headers are made and folded once per value and reused; the mail's
    bytes stay exactly those of a plain EmailMessage under email.policy.SMTP, whether the cache is cold or
    warm, for the wire (CRLF, 8-bit) and for 7-bit servers."""
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.policy import SMTP

    from repsend.compose import POLICY, run_policy
    from repsend.models import Mail
    from repsend.transport import wire_policy

    rep = Address(rep_name, "kenta.sato", "acme.example")
    url = "https://acme.example/unsubscribe?c=0035g0000000001AAA&k=" + "x" * 80
    policy = run_policy()
    for n in range(4):  # the run's policy: the first builds the cached headers, the others reuse them
        mail = Mail(to=Address(f"山田 花子{n}", f"hanako{n}", "example.co.jp"), from_=rep,
                    subject=f"ご無沙汰しております {n}", body="本文\n" * 3, language="ja", template="dormant")
        made = to_message(mail, message_id=f"<{n}@acme.example>", date="Mon, 23 Nov 2026 10:00:00 +0900",
                          unsubscribe_url=url, policy=POLICY if n == 0 else policy)
        plain = EmailMessage(policy=SMTP.clone(max_line_length=998))
        for name, value in (("From", rep), ("Reply-To", rep), ("To", mail.to), ("Subject", mail.subject),
                            ("Date", "Mon, 23 Nov 2026 10:00:00 +0900"), ("Message-ID", f"<{n}@acme.example>"),
                            ("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")):
            plain[name] = value
        plain.set_content(mail.body, charset="utf-8")
        for seven_bit in (False, True):
            expected = plain.as_bytes(policy=SMTP.clone(max_line_length=998, cte_type="7bit" if seven_bit else "8bit"))
            assert made.as_bytes(policy=wire_policy(made, seven_bit)) == expected
        assert made["From"].addresses[0].display_name == rep_name
    assert policy.folded and policy.headers and not POLICY.folded  # the run remembered; the module did not


@pytest.mark.parametrize("name", ["dormant", "dormant_ab"])
def test_the_check_that_makes_no_text_says_what_composing_says(name: str) -> None:
    """Templates.check skips making the text where the template's shape vouches for the mail (most contacts of
    a large run: their reps are at the cap). For any values it must raise exactly what composing raises, in
    each variant of a template that has them."""
    import random

    from repsend.compose import HeaderInjection

    rng = random.Random(11)
    pieces = ["花子", "Ann", " ", "", "{{", "}", "%s", "%", "\n", "\r", "\x01", "\t", "Bcc: x@example.jp", "ｻﾝﾌﾟﾙ",
              "O'Brien", '"', "\u2028", "{% raw %}", "\x85", "\x7f", "山田@例え.jp"]
    templates = Templates(TEMPLATES, name, ["ja", "en"])
    reps = [SATO, Rep(id="0055g00000AbCdFAAV", name="Emily Carter", email="e.carter@acme.example", is_active=True,
                      first_name="Emily", signature=""),
            Rep(id="0055g00000AbCdXAAV", name="Bad\nName", email="b@acme.example", is_active=True)]

    def outcome(call: Any) -> str:
        try:
            call()
        except (MissingField, HeaderInjection) as exc:
            return f"{type(exc).__name__}: {exc.detail}"
        return "composes"

    seen = set()
    for n in range(3000):
        value = lambda: "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 3)))  # noqa: E731
        person = Contact(id=f"0035g{n:010d}AAA", email=rng.choice(["a@example.jp", "a\n@example.jp", " b@example.jp "]),
                         owner_id=SATO.id, first_name=value(), last_name=value(), account_name=value(),
                         title=value())
        rep, language, variant = rng.choice(reps), rng.choice(["ja", "en"]), rng.choice(templates.variants or ("",))
        quick = outcome(lambda: templates.check(person, rep, COMPANY, language, "dormant", variant))  # noqa: B023
        full = outcome(lambda: templates.compose(person, rep, COMPANY, language, "dormant", variant))  # noqa: B023
        assert quick == full, (person, rep.name, language, variant)
        seen.add(quick.split(":")[0])
    assert seen == {"composes", "MissingField", "HeaderInjection"}


# -- A/B variants: templates/<name>/<language>.<variant>.txt --------------------------------------------

# Each variant's own Subject and first line, printed plainly (the fast path: the text learnt once per shape
# and the values formatted in) or through a filter no shape vouches for (Jinja renders every mail).
VARIANT_TEXTS = {
    ("ja", "a", "fast"): "Subject: ご無沙汰しております（{{ company.name }} {{ rep.last_name }}）\n\n"
                         "{{ contact.last_name }}様\nA案です。\n",
    ("ja", "b", "fast"): "Subject: その後いかがでしょうか（{{ contact.account_name | default('ご担当') }}）\n\n"
                         "{{ contact.last_name }}様\nB案です。\n",
    ("en", "a", "fast"): "Subject: Catching up, {{ contact.first_name }}\n\nHi {{ contact.first_name }},\nplan A\n",
    ("en", "b", "fast"): "Subject: How are things{% if contact.account_name is defined %} at"
                         " {{ contact.account_name }}{% endif %}?\n\nHi {{ contact.first_name }},\nplan B\n",
    ("ja", "a", "jinja"): "Subject: ご無沙汰しております（{{ company.name | trim }} {{ rep.last_name | trim }}）\n\n"
                          "{{ contact.last_name | trim }}様\nA案です。\n",
    ("ja", "b", "jinja"): "Subject: その後いかがでしょうか（{{ contact.account_name | default('ご担当') | trim }}）\n\n"
                          "{{ contact.last_name | trim }}様\nB案です。\n",
    ("en", "a", "jinja"): "Subject: Catching up, {{ contact.first_name | trim }}\n\nHi {{ contact.first_name | trim }},"
                          "\nplan A\n",
    ("en", "b", "jinja"): "Subject: How are things{% if contact.account_name is defined %} at"
                          " {{ contact.account_name | trim }}{% endif %}?\n\nHi {{ contact.first_name | trim }},"
                          "\nplan B\n",
}
ANN = Contact(id="0035g00000Q0000003", email="ann@example.com", owner_id=CARTER.id, first_name="Ann",
              last_name="Lee", account_name="Fabrikam")
NO_ACCOUNT = Contact(id="0035g00000Q0000004", email="ito@example.jp", owner_id=SATO.id, first_name="Ann",
                     last_name="伊藤")
# (language, variant, contact, rep) -> the subject and the body's first lines, whichever way the text is made.
VARIANT_CASES = [
    ("ja", "a", YAMADA, SATO, "ご無沙汰しております（株式会社アクメ 佐藤）", "山田様\nA案です。"),
    ("ja", "b", YAMADA, SATO, "その後いかがでしょうか（株式会社サンプル）", "山田様\nB案です。"),
    ("ja", "b", NO_ACCOUNT, SATO, "その後いかがでしょうか（ご担当）", "伊藤様\nB案です。"),
    ("en", "a", ANN, CARTER, "Catching up, Ann", "Hi Ann,\nplan A"),
    ("en", "b", ANN, CARTER, "How are things at Fabrikam?", "Hi Ann,\nplan B"),
    ("en", "b", NO_ACCOUNT, CARTER, "How are things?", "Hi Ann,\nplan B"),
]


def write_variants(folder: Path, kind: str) -> Path:
    (folder / "t").mkdir(parents=True, exist_ok=True)
    (folder / "_legal").mkdir(exist_ok=True)
    for language in ("ja", "en"):
        (folder / "_legal" / f"{language}.txt").write_text("--\n{{ company.name }}\n", encoding="utf-8")
    for (language, variant, text_kind), text in VARIANT_TEXTS.items():
        if text_kind == kind:
            (folder / "t" / f"{language}.{variant}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("kind", ["fast", "jinja"])
def test_each_variant_composes_its_own_mail(tmp_path: Path, kind: str) -> None:
    """Every variant in both languages, on the fast path and through Jinja, each case composed twice (the
    second time from what the first learnt) and in an order that puts another variant of the same language,
    shape and rep in between: a cache keyed without the variant would give one variant's text to another."""
    templates = Templates(write_variants(tmp_path, kind), "t", ["ja", "en"])
    assert templates.variants == ("a", "b")
    for _ in range(2):
        for language, variant, person, rep, subject, start in VARIANT_CASES + VARIANT_CASES[::-1]:
            mail = templates.compose(person, rep, COMPANY, language, "c", variant)
            assert (mail.subject, mail.variant, mail.language, mail.template) == (subject, variant, language, "t")
            assert mail.body.startswith(start + "\n\n--\n株式会社アクメ"), mail.body
            templates.check(person, rep, COMPANY, language, "c", variant)  # composes: raises nothing


def test_the_fast_path_and_jinja_make_the_same_variants(tmp_path: Path) -> None:
    fast = Templates(write_variants(tmp_path / "fast", "fast"), "t", ["ja", "en"])
    jinja = Templates(write_variants(tmp_path / "jinja", "jinja"), "t", ["ja", "en"])
    assert all(c.refs is not None for c in fast._main.values())  # the fast templates are the fast path's
    assert all(c.refs is None for c in jinja._main.values())  # and the others Jinja's every time
    for language, variant, person, rep, *_ in VARIANT_CASES * 2:
        one, other = (t.compose(person, rep, COMPANY, language, "c", variant) for t in (fast, jinja))
        assert (one.subject, one.body, one.variant) == (other.subject, other.body, other.variant)


def test_a_variant_that_needs_a_field_skips_only_its_own_contacts(tmp_path: Path) -> None:
    """Variant b prints the title, a does not: for a contact without one, b is missing_field and a composes,
    in compose and in check (whose plans are learnt per language and variant), in either order."""
    folder = write_template(tmp_path, "Subject: x\n\n{{ contact.last_name }}様\n")
    (folder / "t" / "ja.txt").unlink()
    (folder / "t" / "ja.a.txt").write_text("Subject: A {{ rep.last_name }}\n\n{{ contact.last_name }}様\n",
                                           encoding="utf-8")
    (folder / "t" / "ja.b.txt").write_text("Subject: B {{ contact.title }}\n\n{{ contact.last_name }}様\n",
                                           encoding="utf-8")
    templates = Templates(folder, "t", ["ja"])
    titled = Contact(id="0035g00000Q0000005", email="t@example.jp", owner_id=SATO.id, last_name="森", title="部長")
    for order in (("a", "b"), ("b", "a")):
        for variant in order:
            for make in (templates.compose, templates.check):
                make(titled, SATO, COMPANY, "ja", "c", variant)
                if variant == "a":
                    make(YAMADA, SATO, COMPANY, "ja", "c", variant)
                else:
                    with pytest.raises(MissingField, match="contact.title"):
                        make(YAMADA, SATO, COMPANY, "ja", "c", variant)
    assert templates.compose(titled, SATO, COMPANY, "ja", "c", "b").subject == "B 部長"


def test_texts_made_once_per_company_are_made_once_per_variant(tmp_path: Path) -> None:
    """A template that prints only company fields is the same text for every mail of a campaign: kept by
    the company's values, per template file, so that variant b never gets a's."""
    folder = write_template(tmp_path, "Subject: x\n\nbody\n")
    (folder / "t" / "ja.txt").unlink()
    for variant in ("a", "b"):
        text = f"Subject: {variant.upper()} {{{{ company.name }}}}\n\n{variant} {{{{ company.name }}}}\n"
        (folder / "t" / f"ja.{variant}.txt").write_text(text, encoding="utf-8")
    templates = Templates(folder, "t", ["ja"])
    assert all(c.company_only for c in templates._main.values())
    for variant in ("a", "b", "a", "b"):
        mail = templates.compose(YAMADA, SATO, COMPANY, "ja", "c", variant)
        assert mail.subject == f"{variant.upper()} 株式会社アクメ"
        assert mail.body.split("\n")[0] == f"{variant} 株式会社アクメ"


def test_the_composer_gives_each_contact_its_stable_variant(tmp_path: Path) -> None:
    from repsend.assignment import variant_of
    from repsend.compose import Composer

    templates = Templates(write_variants(tmp_path, "fast"), "t", ["ja", "en"])
    composer = Composer(templates, {"ja": COMPANY, "en": COMPANY}, "spring")
    people = [Contact(id=f"0035g{n:010d}AAA", email=f"c{n}@example.jp", owner_id=SATO.id, first_name="Ann",
                      last_name=f"森{n}", account_name="株式会社サンプル") for n in range(200)]
    got = [composer.compose(person, SATO, "ja").variant for person in people]
    assert got == [variant_of("spring", person.id, ("a", "b")) for person in people]
    assert got == [composer.variant(person) for person in people]
    assert 70 <= got.count("a") <= 130
    plain = Composer(Templates(TEMPLATES, "dormant", ["ja"]), {"ja": COMPANY}, "spring")
    assert plain.variants == () and plain.compose(YAMADA, SATO, "ja").variant == ""


@pytest.mark.parametrize(("files", "message"), [
    (["ja.txt", "ja.a.txt"], r"t/ja\.txt and .*/t/ja\.a\.txt: a template has either ja\.txt or its variants"),
    (["ja.a.txt", "ja.b.txt", "en.b.txt"], r"t/en\.a\.txt: template not found \(template 't' has the variants a, b"),
    (["ja.a.txt", "en.txt"], r"t/en\.a\.txt: template not found"),
    (["ja.Ab.txt", "en.Ab.txt"], r"t/en\.Ab\.txt: 'Ab' is no variant name"),
    (["ja.a b.txt", "en.a b.txt"], r"t/en\.a b\.txt: 'a b' is no variant name"),
    (["ja.-b.txt", "en.-b.txt"], r"t/en\.-b\.txt: '-b' is no variant name"),
    (["ja.a.txt", "ja.b.c.txt", "en.a.txt"], r"t/ja\.b\.c\.txt: 'b\.c' is no variant name"),
])
def test_a_folder_without_one_clear_set_of_variants_is_a_config_error(tmp_path: Path, files: list[str],
                                                                       message: str) -> None:
    folder = write_template(tmp_path, "Subject: x\n\nbody\n")
    write_template(tmp_path, "Subject: x\n\nbody\n", lang="en")
    for name in ("ja.txt", "en.txt"):
        (folder / "t" / name).unlink()
    for name in files:
        (folder / "t" / name).write_text("Subject: x\n\nbody\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        Templates(folder, "t", ["ja", "en"])


def test_variants_of_a_language_the_run_does_not_need_are_not_read(tmp_path: Path) -> None:
    folder = write_template(tmp_path, "Subject: x\n\nbody\n")
    (folder / "t" / "fr.a.txt").write_text("{% broken", encoding="utf-8")
    (folder / "t" / "ja.txt.bak").write_text("old", encoding="utf-8")
    templates = Templates(folder, "t", ["ja"])
    assert templates.variants == () and templates.compose(YAMADA, SATO, COMPANY, "ja", "c").variant == ""
