"""Jinja2 templates -> the mail a rep would have typed. Pure: no I/O after the templates are loaded.

A template is ``templates/<name>/<language>.txt``: a ``Subject:`` line, a blank line, then the body,
which ends with the rep's signature. The legal footer (company, postal address, how to opt out: Japan's
Act on Specified Electronic Mail and CAN-SPAM) is ``templates/_legal/<language>.txt``, appended by code
so that no template can forget it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from repsend.errors import ConfigError
from repsend.models import Contact, Rep

# Headers are never folded inside a URL (List-Unsubscribe) or a Japanese subject's encoded word.
POLICY = SMTP.clone(max_line_length=998)

LEGAL_DIR = "_legal"
CONTACT_FIELDS = {
    "id": "Id",
    "first_name": "FirstName",
    "last_name": "LastName",
    "name": "FirstName/LastName",
    "email": "Email",
    "account_name": "Account.Name",
    "title": "Title",
}
REP_FIELDS = {"id", "name", "first_name", "last_name", "email", "title", "phone", "signature"}
COMPANY_FIELDS = {"name", "postal_address", "opt_out", "domain", "unsubscribe_url"}
TOP_LEVEL = {"contact", "rep", "company", "campaign", "language"}


class MissingField(Exception):
    """A value the template needs is empty for this contact: skip the contact, name the field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class HeaderInjection(Exception):
    """A CR, LF or other control character would reach a header."""

    def __init__(self, header: str) -> None:
        super().__init__(header)
        self.header = header


class _MissingIsAnError(jinja2.StrictUndefined):
    """StrictUndefined that says which field was missing, so the skip reason can name it."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        owner = self._undefined_obj
        prefix = ""
        if isinstance(owner, _Fields):
            prefix = owner.prefix + "."
        raise MissingField(prefix + str(self._undefined_name))

    __str__ = __iter__ = __len__ = __bool__ = __eq__ = __hash__ = _fail_with_undefined_error  # type: ignore[assignment]


class _Fields(dict):
    """A dict of the non-empty values of a record: an empty value is missing, never rendered blank."""

    def __init__(self, prefix: str, values: Mapping[str, Any]) -> None:
        super().__init__((k, v) for k, v in values.items() if v not in (None, ""))
        self.prefix = prefix


@dataclass(frozen=True, slots=True)
class Mail:
    """A composed mail, before it gets its Message-ID and Date at send time."""

    to: Address
    from_: Address
    subject: str
    body: str
    language: str
    template: str


@dataclass(frozen=True, slots=True)
class Company:
    name: str
    postal_address: str
    opt_out: str
    domain: str
    unsubscribe_url: str = ""


def full_name(first: str, last: str, language: str) -> str:
    """Family name first in Japanese (山田 花子), given name first otherwise."""
    parts = (last, first) if language == "ja" else (first, last)
    return " ".join(p for p in parts if p)


class Templates:
    """The templates of one template name in every language a run may need, parsed and checked."""

    def __init__(self, folder: Path, name: str, languages: Iterable[str], extra_fields: Iterable[str] = ()) -> None:
        self.folder = folder
        self.name = name
        self.contact_fields = set(CONTACT_FIELDS) | set(extra_fields)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=_MissingIsAnError,
            autoescape=False,  # plain text: nothing to escape, and "&" must stay "&"
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._main: dict[str, jinja2.Template] = {}
        self._legal: dict[str, jinja2.Template] = {}
        for language in sorted(set(languages)):
            self._main[language] = self._load(f"{name}/{language}.txt", needs_subject=True)
            self._legal[language] = self._load(f"{LEGAL_DIR}/{language}.txt", needs_subject=False)

    def _load(self, relative: str, needs_subject: bool) -> jinja2.Template:
        path = self.folder / relative
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: template not found (template {self.name!r} needs it)") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: the template is not UTF-8") from None
        if needs_subject:
            lines = source.splitlines()
            if not lines or not lines[0].startswith("Subject:") or (len(lines) > 1 and lines[1].strip()):
                raise ConfigError(f"{path}:1: a template starts with a 'Subject: ...' line and a blank line")
        try:
            tree = self.env.parse(source, name=relative, filename=str(path))
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from None
        self._check_names(tree, path)
        return self.env.get_template(relative)

    def _check_names(self, tree: nodes.Template, path: Path) -> None:
        """Unknown variables stop the run before any decision: a typo must not skip every contact."""
        for name in sorted(meta.find_undeclared_variables(tree)):
            if name not in TOP_LEVEL:
                line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), 1)
                raise ConfigError(
                    f"{path}:{line}: unknown variable {name!r} (known: {', '.join(sorted(TOP_LEVEL))})"
                )
        known = {"contact": self.contact_fields, "rep": REP_FIELDS, "company": COMPANY_FIELDS}
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if not isinstance(node.node, nodes.Name) or node.node.name not in known:
                continue
            if isinstance(node, nodes.Getattr):
                attr = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                attr = node.arg.value
            else:
                continue
            if attr not in known[node.node.name]:
                fields = ", ".join(sorted(known[node.node.name]))
                raise ConfigError(
                    f"{path}:{node.lineno}: unknown variable '{node.node.name}.{attr}' (known: {fields};"
                    " more Contact fields can be added with [sfa] contact_fields)"
                )

    def compose(
        self, contact: Contact, rep: Rep, company: Company, language: str, campaign: str
    ) -> Mail:
        """The mail for one contact; raises MissingField or HeaderInjection for a contact to skip."""
        name = full_name(contact.first_name.strip(), contact.last_name.strip(), language)
        context = {
            "contact": _Fields(
                "contact",
                {
                    "id": contact.id,
                    "first_name": contact.first_name.strip(),
                    "last_name": contact.last_name.strip(),
                    "name": name,
                    "email": contact.email.strip(),
                    "account_name": contact.account_name.strip(),
                    "title": contact.title.strip(),
                    **{k: v.strip() for k, v in contact.extra.items()},
                },
            ),
            "rep": _Fields(
                "rep",
                {
                    "id": rep.id,
                    "name": rep.name.strip(),
                    "first_name": rep.first_name.strip(),
                    "last_name": rep.last_name.strip(),
                    "email": rep.email.strip(),
                    "title": rep.title.strip(),
                    "phone": rep.phone.strip(),
                    "signature": rep.signature.strip(),
                },
            ),
            "company": _Fields("company", _company_fields(company)),
            "campaign": campaign,
            "language": language,
        }
        text = self._main[language].render(context)
        legal = self._legal[language].render(context).strip("\n")
        first, _, rest = text.partition("\n")
        subject = first.removeprefix("Subject:").strip()
        body = rest.strip("\n") + "\n\n" + legal + "\n"
        for part, where in ((subject, "subject"), (body, "body")):
            for marker in ("{{", "}}", "{%", "%}"):
                if marker in part:
                    raise MissingField(f"unrendered {marker!r} in the {where}")
        if not subject:
            raise MissingField("subject")
        _check_header("Subject", subject)
        return Mail(
            to=_address("To", name, contact.email.strip()),
            from_=_address("From", rep.name.strip(), rep.email.strip()),
            subject=subject,
            body=body,
            language=language,
            template=self.name,
        )


def _company_fields(company: Company) -> dict[str, str]:
    return {
        "name": company.name,
        "postal_address": company.postal_address,
        "opt_out": company.opt_out,
        "domain": company.domain,
        "unsubscribe_url": company.unsubscribe_url,
    }


def _check_header(header: str, value: str) -> None:
    if any(ch in value for ch in "\r\n\0") or any(ord(ch) < 32 and ch != "\t" for ch in value):
        raise HeaderInjection(header)


def _address(header: str, display_name: str, addr_spec: str) -> Address:
    _check_header(header, display_name)
    _check_header(header, addr_spec)
    try:
        return Address(display_name=display_name, addr_spec=addr_spec)
    except (ValueError, IndexError, TypeError):
        raise HeaderInjection(header) from None


def to_message(
    mail: Mail,
    *,
    message_id: str | None = None,
    date: str | None = None,
    unsubscribe_url: str = "",
) -> EmailMessage:
    """The RFC 5322 message: From and Reply-To the rep, no Sender header (clients would show "via")."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = mail.from_
    msg["Reply-To"] = mail.from_
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    if date:
        msg["Date"] = date
    if message_id:
        msg["Message-ID"] = message_id
    if unsubscribe_url:
        # RFC 8058 one-click unsubscribe; the policy's 998-character lines keep the URL unfolded.
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(mail.body, charset="utf-8")
    return msg
