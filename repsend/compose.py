"""Jinja2 templates -> the mail a rep would have typed. Pure: no I/O after the templates are loaded.

A template is ``templates/<name>/<language>.txt``: a ``Subject:`` line, a blank line, then the body,
which ends with the rep's signature; or, for an A/B test, its variants ``<language>.<variant>.txt``, one
of which each contact gets by a stable hash (``assignment.variant_of``). The legal footer (company,
postal address, how to opt out: Japan's Act on Specified Electronic Mail and CAN-SPAM) is
``templates/_legal/<language>.txt``, appended by code so that no template can forget it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from repsend.assignment import variant_of
from repsend.audience import Uncomposable
from repsend.errors import ConfigError
from repsend.models import Company, Contact, Mail, Reason, Rep, wire_domain


class RepeatedHeaderPolicy(EmailPolicy):
    """``email.policy.EmailPolicy`` that folds the headers repeated from mail to mail (a rep's From and
    Reply-To, the unsubscribe and MIME headers) once per value instead of once per mail: turning a mail
    into bytes is mostly folding, and a From with a Japanese name costs about 0.2 ms each time. The bytes
    are the ones ``fold_binary`` gives: a header's folding depends only on the policy, its name and its
    value (``tests/test_compose.py`` holds the two to each other).

    The memory belongs to one policy object and its clones, so to one run (``run_policy``): ``POLICY``
    itself remembers nothing."""

    # Set only through the constructor (policies are immutable): folded bytes, and header objects.
    folded: dict[tuple[Any, ...], bytes] | None = None
    headers: dict[tuple[str, str], Any] | None = None

    def fold_binary(self, name: str, value: str) -> bytes:
        if self.folded is None or name.lower() not in _REPEATED:
            return super().fold_binary(name, value)
        # The registry makes a new class for every header it makes: the class's name is what is stable.
        key = (self.linesep, self.max_line_length, self.utf8, self.cte_type, name, type(value).__name__, str(value))
        return _remembered(self.folded, key, lambda: super(RepeatedHeaderPolicy, self).fold_binary(name, value))

    def repeated(self, name: str, value: Address | str) -> Any:
        """The header object ``msg[name] = value`` would make, made once per value: a message stores a
        header object it is given as it is (``EmailPolicy.header_store_parse``), and these repeat."""
        if self.headers is None:
            return value
        return _remembered(self.headers, (name, str(value)), lambda: self.header_factory(name, value))


def _remembered(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make`` when missing; the cache is emptied at 4,096 entries."""
    value = cache.get(key)
    if value is None:
        if len(cache) >= 4096:
            cache.clear()
        value = cache[key] = make()
    return value


_REPEATED = frozenset({"from", "reply-to", "list-unsubscribe", "list-unsubscribe-post", "mime-version",
                       "content-type", "content-transfer-encoding"})

# Headers are never folded inside a URL (List-Unsubscribe) or a Japanese subject's encoded word.
POLICY = RepeatedHeaderPolicy(linesep="\r\n", max_line_length=998)  # email.policy.SMTP, 998-character lines


def run_policy() -> RepeatedHeaderPolicy:
    """``POLICY`` for one run: it remembers the headers that repeat, for as long as the run lasts."""
    return POLICY.clone(folded={}, headers={})


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


class MissingField(Uncomposable):
    """A value the template needs is empty for this contact: skip the contact, name the field."""

    reason = Reason.MISSING_FIELD

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class HeaderInjection(Uncomposable):
    """A CR, LF or other control character would reach a header."""

    reason = Reason.INVALID_HEADER

    def __init__(self, header: str) -> None:
        super().__init__(f"control character in {header}")
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


# A field a template names like an attribute of _Fields (contact.items, rep.prefix): Jinja answers with the
# attribute, not the value, so such a template is always rendered by Jinja itself.
_ATTRIBUTE_NAMES = frozenset(dir(_Fields("", {})))
_GROUPS = ("contact", "rep", "company")
_MARKER = re.compile("\x00([0-9]+)\x00")


def _printed_fields(tree: nodes.Template) -> tuple[tuple[int, str], ...] | None:
    """The fields a template prints, as (group, key) with group 0 contact, 1 rep, 2 company, when all it
    does is print fields, text, constants, ``campaign`` and ``language``, with ``default`` filters and
    ``{% if %}`` on whether a field is defined. Such a template's output is its text with the values of
    the fields that are defined dropped in, so ``_Compiled`` renders it once per shape (which fields are
    defined) and formats the values in after that. Anything else (loops, set, other filters or tests,
    comparisons, calls): None, and Jinja renders every mail."""
    refs: dict[tuple[int, str], None] = {}

    def field(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            key = node.arg.value
        else:
            return False
        owner = node.node
        if not isinstance(owner, nodes.Name) or owner.name not in _GROUPS or key in _ATTRIBUTE_NAMES:
            return False
        refs[(_GROUPS.index(owner.name), key)] = None
        return True

    def plain_call(node: nodes.Filter | nodes.Test) -> bool:
        return not node.kwargs and node.dyn_args is None and node.dyn_kwargs is None

    def value(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Const):
            return True
        if isinstance(node, nodes.Name):
            return node.name in ("campaign", "language")
        if isinstance(node, nodes.Filter):
            return (
                node.name in ("default", "d") and node.node is not None and value(node.node)
                and len(node.args) <= 2 and all(value(arg) for arg in node.args) and plain_call(node)
            )
        return field(node)

    def test(node: nodes.Node) -> bool:
        if isinstance(node, nodes.Test):
            return node.name in ("defined", "undefined") and not node.args and plain_call(node) and value(node.node)
        if isinstance(node, nodes.Not):
            return test(node.node)
        if isinstance(node, nodes.And | nodes.Or):
            return test(node.left) and test(node.right)
        return value(node)

    def statements(body: list[nodes.Node]) -> bool:
        for node in body:
            if isinstance(node, nodes.Output):
                if not all(isinstance(child, nodes.TemplateData) or value(child) for child in node.nodes):
                    return False
            elif isinstance(node, nodes.If):
                if not (test(node.test) and statements(node.body) and statements(node.elif_)
                        and statements(node.else_)):
                    return False
            else:
                return False
        return True

    # By group (contact, rep, company), each in the order first printed: the order of _Compiled's values.
    return tuple(sorted(refs, key=lambda ref: ref[0])) if statements(tree.body) else None


class _Values:
    """A rep's or a company's template values, made once per value (compose sees the same few again and
    again), with what is derived from them: a rep's From, texts that depend only on a company."""

    __slots__ = ("owner", "values", "plain", "from_", "texts", "plans")

    def __init__(self, owner: Rep | Company, values: dict[str, Any]) -> None:
        self.owner = owner  # the record they were made of: compared by value before they are used for another
        self.values = values
        self.plain = all(value is None or type(value) is str for value in values.values())
        self.from_: Address | HeaderInjection | None = None
        self.texts: dict[tuple[str, str, str], str] = {}
        # A rep's check plan by language and variant (``_key``; see Templates.check).
        self.plans: dict[str | tuple[str, str], _CheckPlan] = {}


class _Format:
    """A shape's output: ``text % pick(values)``, the text with ``%s`` where each value is printed; and what
    ``Templates.check`` needs to know that such a mail composes without making its text."""

    __slots__ = ("text", "pick", "subject_values", "vouched")

    def __init__(self, text: str, order: tuple[int, ...], statics: list[str]) -> None:
        """``statics``: the text between the values, in order (one more than ``order``)."""
        self.text = text
        if len(order) == 1:
            index = order[0]
            self.pick: Callable[[list[Any]], tuple[Any, ...]] = lambda values: (values[index],)
        elif order:
            self.pick = itemgetter(*order)
        else:
            self.pick = lambda values: ()
        line = next((k for k, static in enumerate(statics) if "\n" in static), None)
        # The values printed in the Subject line (before the first line break of the text around them).
        self.subject_values = order[:line] if line is not None else order
        subject = "".join(statics[:line]) + statics[line].split("\n", 1)[0] if line is not None else "".join(statics)
        around = "".join(statics)
        # Around the values, nothing that check would stop: no brace (a marker), no control character in
        # the Subject line, a subject that is never empty.
        self.vouched = (line is not None and "{" not in around and "}" not in around
                        and _CONTROL.search(subject) is None and subject.removeprefix("Subject:").strip() != "")


class _Compiled:
    """One template file (one language, one variant), with its output per shape once ``_printed_fields`` has
    vouched for it. Each variant is a file of its own, so what a shape learnt of one is never another's.

    A shape is (campaign, language, which printed fields are defined). Its entry is a ``_Format``, the
    field a render of that shape misses (MissingField), or None: Jinja renders that shape every time.
    An entry is made from a render with a marker for each defined value, then checked against a real
    render of the mail that asked for it.
    """

    __slots__ = ("template", "subject", "refs", "keys", "company_only", "shapes")

    def __init__(self, template: jinja2.Template, refs: tuple[tuple[int, str], ...] | None,
                 subject: jinja2.Template | None = None) -> None:
        self.template = template
        # A mail template's first line as a template by itself: where a value holds a line break, the
        # rendered text alone cannot say where the Subject ends (see Templates._render).
        self.subject = subject
        self.refs = refs
        self.keys = tuple(tuple(key for group, key in refs or () if group == g) for g in range(3))
        self.company_only = refs is not None and not self.keys[0] and not self.keys[1]
        self.shapes: dict[tuple[Any, ...], _Format | MissingField | None] = {}

    def fast(self, contact: dict[str, Any], rep: _Values, company: _Values, campaign: str, language: str,
             plain: bool) -> str | None:
        """The text from the shape's entry; None when Jinja must render it. ``plain``: every value is a
        str or None (anything else is left to Jinja)."""
        if self.refs is None or not plain:
            return None
        if self.company_only:
            # Printing only company fields: the same text for every mail of the campaign and language.
            memo = (self.template.name or "", campaign, language)
            text = company.texts.get(memo)
            if text is None:
                text = self._format(contact, rep, company, campaign, language)
                if text is not None:
                    company.texts[memo] = text
            return text
        return self._format(contact, rep, company, campaign, language)

    def _format(self, contact: dict[str, Any], rep: _Values, company: _Values, campaign: str,
                language: str) -> str | None:
        values, entry = self._entry(contact, rep, company, campaign, language)
        if entry is None:
            return None
        if self.subject is not None:
            for index in entry.subject_values:
                value = values[index]
                if value and "\n" in value:
                    return None  # the Subject would end inside the value: Jinja renders it, line by line
        return entry.text % entry.pick(values)

    def _entry(self, contact: dict[str, Any], rep: _Values, company: _Values, campaign: str,
               language: str) -> tuple[list[Any], _Format | None]:
        """The printed values and their shape's format (None: Jinja renders this shape); raises the
        MissingField of a shape that misses a field."""
        contact_keys, rep_keys, company_keys = self.keys
        values = [*map(contact.get, contact_keys), *map(rep.values.get, rep_keys),
                  *map(company.values.get, company_keys)]
        shape = (campaign, language, *map(bool, values))  # defined: neither None nor empty
        entry = self.shapes.get(shape, self)
        if entry is self:
            groups = (contact, rep.values, company.values)
            entry = self._learn(shape, groups, values, campaign, language)
        if entry is None or type(entry) is _Format:
            return values, entry  # type: ignore[return-value]
        raise MissingField(entry.field)  # type: ignore[union-attr]

    def composes(self, contact: dict[str, Any], rep: _Values, company: _Values, campaign: str, language: str,
                 plain: bool) -> bool:
        """True when this text is known, without making it, to hold no marker and a Subject that is neither
        empty nor broken by a control character; False: make the text to know. Raises what a render
        would (a missing field)."""
        if self.refs is None or not plain or self.company_only:
            return False
        values, entry = self._entry(contact, rep, company, campaign, language)
        if entry is None or not entry.vouched:
            return False
        for value in values:
            if value and ("{" in value or "}" in value):
                return False
        for index in entry.subject_values:
            value = values[index]
            if value and _CONTROL.search(value) is not None:
                return False
        return True

    def _learn(self, shape: tuple[Any, ...], groups: tuple[Mapping[str, Any], ...], values: list[Any],
               campaign: str, language: str) -> _Format | MissingField | None:
        entry: _Format | MissingField | None = None
        marked: tuple[dict[str, Any], ...] = ({}, {}, {})
        for i, (group, key) in enumerate(self.refs or ()):
            if values[i]:
                marked[group][key] = f"\x00{i}\x00"
        try:
            text = self.template.render(_context(marked, campaign, language))
            pieces = _MARKER.split(text)  # text, field index, text, ...
            if not any("\x00" in piece for piece in pieces[::2]):
                entry = _Format(
                    "%s".join(piece.replace("%", "%%") for piece in pieces[::2]),
                    tuple(int(index) for index in pieces[1::2]),
                    pieces[::2],
                )
        except MissingField as missing:
            entry = MissingField(missing.field)
        except Exception:  # noqa: BLE001 - anything unexpected: Jinja renders this shape every time
            entry = None
        if entry is not None:
            # Checked against the real render of this mail; a difference leaves the shape to Jinja.
            try:
                real: str | MissingField = self.template.render(_context(groups, campaign, language))
            except MissingField as missing:
                real = missing
            if isinstance(entry, _Format):
                ok = isinstance(real, str) and entry.text % entry.pick(values) == real
            else:
                ok = isinstance(real, MissingField) and real.field == entry.field
            if not ok:
                entry = None
        if len(self.shapes) < 1024:
            self.shapes[shape] = entry
        return entry


def _context(groups: tuple[Mapping[str, Any], ...], campaign: str, language: str) -> dict[str, Any]:
    return {
        "contact": _Fields("contact", groups[0]),
        "rep": _Fields("rep", groups[1]),
        "company": _Fields("company", groups[2]),
        "campaign": campaign,
        "language": language,
    }


def full_name(first: str, last: str, language: str) -> str:
    """Family name first in Japanese (山田 花子), given name first otherwise."""
    before, after = (last, first) if language == "ja" else (first, last)
    return f"{before} {after}" if before and after else before or after


def _key(language: str, variant: str) -> str | tuple[str, str]:
    """The key of a language's template (and a rep's check plan for it): the language, or for a variant
    (language, variant). Never the same for two: a language is a str, a variant's key a tuple."""
    return (language, variant) if variant else language


# A variant's name, as its file names it (``<language>.<variant>.txt``): short, and the same on every file system.
# Starts with a letter or digit: a name starting with "-" would read as a formula in a CSV for Excel.
_VARIANT_NAME = re.compile("[a-z0-9][a-z0-9_-]{0,19}")


class Templates:
    """The templates of one template name in every language a run may need, parsed and checked; with its
    variants (``variants``, sorted by name) in each language, if it has any."""

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
        self.languages = sorted(set(languages))
        # Sorted by name, so that each contact's variant does not depend on the order a file system lists them.
        self.variants: tuple[str, ...] = self._find_variants()
        # By language, and by (language, variant) for a variant: a template without variants pays for no tuple
        # per mail (see _key).
        self._main: dict[str | tuple[str, str], _Compiled] = {}
        self._legal: dict[str, _Compiled] = {}
        for language in self.languages:
            for variant in self.variants or ("",):
                self._main[_key(language, variant)] = self._load(self.file_name(language, variant), needs_subject=True)
            self._legal[language] = self._load(f"{LEGAL_DIR}/{language}.txt", needs_subject=False)
        # Per Rep (by Id) and Company (by name), checked by value: its template values (see _Values).
        self._reps: dict[str, _Values] = {}
        self._companies: dict[str, _Values] = {}

    def file_name(self, language: str, variant: str = "") -> str:
        """The template file of a language (and variant), relative to the templates folder."""
        return f"{self.name}/{language}.{variant}.txt" if variant else f"{self.name}/{language}.txt"

    def _find_variants(self) -> tuple[str, ...]:
        """The variants of the template, sorted; () when it has none (``<language>.txt`` files). A language
        with both kinds of file, a variant one language lacks, a name that is no short identifier: each a
        ConfigError naming the file, so that the split of an A/B test is never what the folder happens to hold."""
        folder = self.folder / self.name
        try:
            files = sorted(path.name for path in folder.iterdir())
        except OSError:
            return ()  # no such folder: _load names the file it cannot find
        found: dict[str, list[str]] = {}
        for language in self.languages:
            prefix = f"{language}."
            variants = found[language] = [
                file[len(prefix):-4] for file in files
                if file.startswith(prefix) and file.endswith(".txt") and len(file) > len(prefix) + 4
            ]
            for variant in variants:
                if not _VARIANT_NAME.fullmatch(variant):
                    raise ConfigError(f"{folder / f'{language}.{variant}.txt'}: {variant!r} is no variant name (a"
                                      f" variant is {language}.<variant>.txt, its name 1 to 20 of a-z, 0-9, _ and -,"
                                      " starting with a letter or digit)")
            if variants and f"{language}.txt" in files:
                both = ", ".join(str(folder / f"{language}.{variant}.txt") for variant in variants)
                raise ConfigError(f"{folder / f'{language}.txt'} and {both}: a template has either {language}.txt or"
                                  f" its variants {language}.<variant>.txt, not both: remove or rename one")
        every = sorted({variant for variants in found.values() for variant in variants})
        for language in self.languages:
            missing = [variant for variant in every if variant not in found[language]]
            if missing:
                raise ConfigError(
                    f"{folder / f'{language}.{missing[0]}.txt'}: template not found (template {self.name!r} has the"
                    f" variants {', '.join(every)}: every language it is sent in needs each of them)")
        return tuple(every)

    def _load(self, relative: str, needs_subject: bool) -> _Compiled:
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
        subject = None
        if needs_subject:
            # The Subject line must be a template by itself, so that it can be rendered alone.
            first = source.splitlines()[0]
            try:
                self.env.parse(first)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"{path}:1: the Subject line must be complete on its own line"
                                  f" (a tag opened there closes there): {exc.message}") from None
            subject = self.env.from_string(first)
        return _Compiled(self.env.get_template(relative), _printed_fields(tree), subject)

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

    def compose(self, contact: Contact, rep: Rep, company: Company, language: str, campaign: str,
                variant: str = "") -> Mail:
        """The mail for one contact (in ``variant``, one of ``variants``); raises MissingField or
        HeaderInjection for a contact to skip."""
        subject, body, to = self._checked(contact, rep, company, language, campaign, variant, make_to=True)
        assert to is not None
        return Mail(to=to, from_=self._from(rep, self._rep_values(rep)), subject=subject, body=body,
                    language=language, template=self.name, variant=variant)

    def check(self, contact: Contact, rep: Rep, company: Company, language: str, campaign: str,
              variant: str = "") -> None:
        """Raises what ``compose`` would raise, without making the mail: for a contact whose mail would be
        thrown away (its rep has reached the daily cap), only whether it could be composed counts.

        Where the template's shape vouches for it (``_Compiled.composes``), the text is not even made:
        that is most contacts of a large run, whose reps are at their cap."""
        rep_values, company_values = self._rep_values(rep), self._company_values(company)
        plans = rep_values.plans
        key = (language, variant) if variant else language  # _key, inline: every contact of a run comes here
        plan = plans.get(key)
        if plan is None or plan.company is not company_values or plan.campaign != campaign:
            plan = plans[key] = _CheckPlan(
                self._main[key], self._legal[language], rep_values, company_values, campaign, language)
        if type(contact.id) is str and plan.composes(contact):
            _check_address("To", full_name(contact.first_name.strip(), contact.last_name.strip(), language),
                           contact.email.strip())
            self._from(rep, rep_values)
            return
        self._checked(contact, rep, company, language, campaign, variant, make_to=False)
        self._from(rep, rep_values)

    def _checked(self, contact: Contact, rep: Rep, company: Company, language: str, campaign: str, variant: str,
                 make_to: bool) -> tuple[str, str, Address | None]:
        """(subject, body, To) of the mail, each checked: no placeholder left, nothing that breaks a header."""
        values = _contact_values(contact, language)
        subject, body = self._render(values, self._rep_values(rep), self._company_values(company), language, campaign,
                                     variant)
        if "{" in subject or "}" in subject or "{" in body or "}" in body:  # every marker has a brace
            for part, where in ((subject, "subject"), (body, "body")):
                for marker in ("{{", "}}", "{%", "%}"):
                    if marker in part:
                        raise MissingField(f"unrendered {marker!r} in the {where}")
        if not subject:
            raise MissingField("subject")
        _check_header("Subject", subject)
        if make_to:
            return subject, body, _address("To", values["name"], values["email"])
        _check_address("To", values["name"], values["email"])
        return subject, body, None

    def _render(self, contact: dict[str, Any], rep: _Values, company: _Values, language: str,
                campaign: str, variant: str) -> tuple[str, str]:
        """(subject, body): the template's text (the variant's) and the legal footer under it."""
        plain = type(contact["id"]) is str and rep.plain and company.plain
        context = None  # one context for both renders when Jinja renders either, as one render call would
        main = self._main[(language, variant) if variant else language]  # _key, inline
        text = main.fast(contact, rep, company, campaign, language, plain)
        first: str | None = None
        if text is None:
            context = _context((contact, rep.values, company.values), campaign, language)
            text = _jinja(main.template, context)
            # The Subject is what the template's first line renders to, line breaks of its values and all
            # (then refused by the header check): never cut at a line break a value brought in, the rest
            # of the value going into the body.
            first = _jinja(main.subject, context) if main.subject is not None else None
            if first is not None and not text.startswith(first):
                raise MissingField(f"subject (the first line of {self.file_name(language, variant)} renders"
                                   " otherwise alone than in the whole template)")
        legal_template = self._legal[language]
        legal = None if context is not None else legal_template.fast(contact, rep, company, campaign, language, plain)
        if legal is None:
            legal = _jinja(legal_template.template,
                           context or _context((contact, rep.values, company.values), campaign, language))
        if first is None:
            first, _, rest = text.partition("\n")  # fast: no value printed in the Subject holds a line break
        else:
            rest = text[len(first):]
        return first.removeprefix("Subject:").strip(), rest.strip("\n") + "\n\n" + legal.strip("\n") + "\n"

    def _from(self, rep: Rep, values: _Values) -> Address:
        """The rep as From (and Reply-To); raises HeaderInjection for a name or address that breaks it."""
        from_ = values.from_
        if from_ is None:
            try:
                from_ = _address("From", rep.name.strip(), rep.email.strip())
            except HeaderInjection as bad:
                from_ = bad
            values.from_ = from_  # an Address is immutable: one per rep serves every mail
        if isinstance(from_, HeaderInjection):
            raise HeaderInjection(from_.header)
        return from_

    def _rep_values(self, rep: Rep) -> _Values:
        """The rep's values, by value: found by Id, and made again if the rep is not the one they were made of."""
        values = self._reps.get(rep.id)
        if values is None or (values.owner is not rep and values.owner != rep):
            if len(self._reps) >= 4096:
                self._reps.clear()
            values = self._reps[rep.id] = _Values(rep, {
                "id": rep.id,
                "name": rep.name.strip(),
                "first_name": rep.first_name.strip(),
                "last_name": rep.last_name.strip(),
                "email": rep.email.strip(),
                "title": rep.title.strip(),
                "phone": rep.phone.strip(),
                "signature": rep.signature.strip(),
            })
        return values

    def _company_values(self, company: Company) -> _Values:
        values = self._companies.get(company.name)
        if values is None or (values.owner is not company and values.owner != company):
            values = self._companies[company.name] = _Values(company, {
                "name": company.name,
                "postal_address": company.postal_address,
                "opt_out": company.opt_out,
                "domain": company.domain,
                "unsubscribe_url": company.unsubscribe_url,
            })
        return values


_UNKNOWN: Any = object()
# What a template sees of a contact (contact.*): these Contact attributes stripped, its Id as it is, and
# its name (family name first in Japanese); then the [sfa] contact_fields, stripped. Both ways of reading
# them (_contact_values, _CheckPlan) read this.
_STRIPPED = ("first_name", "last_name", "email", "account_name", "title")
_get_stripped = attrgetter(*_STRIPPED)


class _CheckPlan:
    """``Templates.check`` for one language, campaign, rep and company: what it learnt of each shape of the
    contact's printed values (which are empty), so that a contact is checked from the few values the
    template prints. A shape's verdict is the places of the values printed in the Subject line (the text
    around them vouched for: no brace, no control character, a subject never empty, a footer without a
    brace), the MissingField the shape raises, or None: make the text to know."""

    __slots__ = ("main", "legal", "rep", "company", "campaign", "language", "keys", "verdicts", "values")

    def __init__(self, main: _Compiled, legal: _Compiled, rep: _Values, company: _Values, campaign: str,
                 language: str) -> None:
        self.main, self.legal, self.rep, self.company = main, legal, rep, company
        self.campaign, self.language = campaign, language
        self.keys = main.keys[0] if main.refs is not None else ()
        self.verdicts: dict[tuple[bool, ...], tuple[int, ...] | MissingField | None] = {}
        # The printed values of a contact, as _contact_values has them.
        self.values: Callable[[Contact], list[str]] = self._each_value
        if self.keys and all(key in _STRIPPED for key in self.keys):
            get = attrgetter(*self.keys)  # the Contact attributes of the same names, in one call
            self.values = (lambda c: [get(c).strip()]) if len(self.keys) == 1 else (
                lambda c: [value.strip() for value in get(c)])

    def _each_value(self, contact: Contact) -> list[str]:
        values = _contact_values(contact, self.language)
        return [values.get(key) or "" for key in self.keys]

    def composes(self, contact: Contact) -> bool:
        """True when the mail to ``contact`` is known to compose; False: make its text to know. Raises the
        MissingField its shape raises."""
        main = self.main
        if main.refs is None or main.company_only or not (self.rep.plain and self.company.plain):
            return False
        values = self.values(contact)
        shape = tuple(map(bool, values))
        verdict = self.verdicts.get(shape, _UNKNOWN)
        if verdict is _UNKNOWN:
            verdict = self._learn(contact, shape)
        if verdict is None:
            return False
        if type(verdict) is MissingField:
            raise MissingField(verdict.field)
        text = "".join(values)
        if "{" in text or "}" in text:
            return False
        search = _CONTROL.search
        for index in verdict:  # noqa: SIM110 - a loop, not all(): a generator costs more, for most contacts
            if search(values[index]) is not None:
                return False
        return True

    def _learn(self, contact: Contact, shape: tuple[bool, ...]) -> tuple[int, ...] | MissingField | None:
        verdict: tuple[int, ...] | MissingField | None = None
        everything = _contact_values(contact, self.language)
        args = (everything, self.rep, self.company, self.campaign, self.language)
        try:
            values, entry = self.main._entry(*args)
        except MissingField as missing:
            verdict = MissingField(missing.field)
        else:
            legal = self.legal.fast(*args, plain=True)
            others = values[len(self.keys):]  # the rep's and the company's, the same for every contact here
            if (entry is not None and entry.vouched and legal is not None and "{" not in legal and "}" not in legal
                    and not any(value and ("{" in value or "}" in value) for value in others)
                    and not any(index >= len(self.keys) and values[index]
                                and _CONTROL.search(values[index]) is not None for index in entry.subject_values)):
                verdict = tuple(index for index in entry.subject_values if index < len(self.keys) and values[index])
        if len(self.verdicts) < 1024:
            self.verdicts[shape] = verdict
        return verdict


class Composer:
    """The mails of one run: one template name, each language's company, one campaign (``audience.Composer``).

    With a template that has variants, each contact's is ``assignment.variant_of`` (campaign, Contact Id):
    the same in the dry run, the real run, ``preview`` and any later run of the campaign."""

    def __init__(self, templates: Templates, companies: Mapping[str, Company], campaign: str) -> None:
        self.templates = templates
        self.companies = companies
        self.campaign = campaign
        self.variants = templates.variants

    def variant(self, contact: Contact) -> str:
        """The contact's variant of the template; "" for a template without variants."""
        return variant_of(self.campaign, contact.id, self.variants) if self.variants else ""

    def compose(self, contact: Contact, rep: Rep, language: str) -> Mail:
        variant = variant_of(self.campaign, contact.id, self.variants) if self.variants else ""
        return self.templates.compose(contact, rep, self.companies[language], language, self.campaign, variant)

    def check(self, contact: Contact, rep: Rep, language: str) -> None:
        variant = variant_of(self.campaign, contact.id, self.variants) if self.variants else ""
        self.templates.check(contact, rep, self.companies[language], language, self.campaign, variant)


def _contact_values(contact: Contact, language: str) -> dict[str, Any]:
    """What a template sees of a contact (``contact.*``), each value stripped (see _STRIPPED)."""
    values: dict[str, Any] = dict(zip(_STRIPPED, (value.strip() for value in _get_stripped(contact)), strict=True))
    values["id"] = contact.id
    values["name"] = full_name(values["first_name"], values["last_name"], language)
    if contact.extra:
        values.update({k: v.strip() for k, v in contact.extra.items()})
    return values


def _jinja(template: jinja2.Template, context: dict[str, Any]) -> str:
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:  # what _MissingIsAnError does not turn into MissingField itself
        raise MissingField(str(exc)) from None


# A control character that no header value may hold: C0 (CR, LF, NUL and the rest below 32) but TAB, which
# is white space in a Subject or a display name (RFC 5322 WSP), DEL, and C1 (U+0080 to U+009F: NEL among
# them, which some software reads as a line break).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# In an address (addr-spec) TAB is no white space that may be there either.
_ADDRESS_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# An addr-spec that is two ASCII dot-atoms: email's parser would give back these very two parts, without
# a defect, so the Address is made from them without parsing. Anything else goes through the parser.
_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDR_SPEC = re.compile(f"({_ATEXT}(?:\\.{_ATEXT})*)@({_ATEXT}(?:\\.{_ATEXT})*)")
# The same with UTF-8 (RFC 6532 atext): a local part such as 山田 (sent with SMTPUTF8, see to_message) or an
# internationalized domain, which email's parser refuses or would write as an encoded word.
_UTF8_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\U0010ffff-]+"
_UTF8_ADDR_SPEC = re.compile(f"({_UTF8_ATEXT}(?:\\.{_UTF8_ATEXT})*)@({_UTF8_ATEXT}(?:\\.{_UTF8_ATEXT})*)")


def _check_header(header: str, value: str) -> None:
    if _CONTROL.search(value) is not None:
        raise HeaderInjection(header)


def _address(header: str, display_name: str, addr_spec: str) -> Address:
    _check_header(header, display_name)
    if _ADDRESS_CONTROL.search(addr_spec) is not None:
        raise HeaderInjection(header)
    simple = _DOT_ATOM_ADDR_SPEC.fullmatch(addr_spec) or _UTF8_ADDR_SPEC.fullmatch(addr_spec)
    if simple is not None:
        return Address(display_name=display_name, username=simple[1], domain=simple[2])
    try:
        return Address(display_name=display_name, addr_spec=addr_spec)
    except (ValueError, IndexError, TypeError):
        raise HeaderInjection(header) from None


def _check_address(header: str, display_name: str, addr_spec: str) -> None:
    """Raises what ``_address`` would raise; a plain addr-spec needs no Address to know it is fine."""
    if _CONTROL.search(display_name) is not None or _ADDRESS_CONTROL.search(addr_spec) is not None:
        raise HeaderInjection(header)
    if _DOT_ATOM_ADDR_SPEC.fullmatch(addr_spec) is None:
        _address(header, display_name, addr_spec)


def _wire(address: Address) -> Address:
    """The address with its domain as it goes over the wire (IDNA A-labels)."""
    if address.domain.isascii():
        return address
    return Address(display_name=address.display_name, username=address.username,
                   domain=wire_domain(address.domain))


def to_message(
    mail: Mail,
    *,
    message_id: str | None = None,
    date: str | None = None,
    unsubscribe_url: str = "",
    unsubscribe_mailto: str = "",
    policy: RepeatedHeaderPolicy = POLICY,
) -> EmailMessage:
    """The RFC 5322 message: From and Reply-To the rep, no Sender header (clients would show "via").

    ``policy``: a run's (``run_policy``) makes the headers that repeat from mail to mail once.

    An internationalized domain is written as IDNA A-labels (``models.wire_domain``), in the header as in
    the envelope. A UTF-8 local part makes a message for SMTPUTF8 (``email.policy.SMTPUTF8``, RFC 6532:
    headers in UTF-8, no encoded words): the audience lets one through only with ``[smtp] smtputf8``."""
    to, from_ = _wire(mail.to), _wire(mail.from_)
    if not (to.username.isascii() and from_.username.isascii()):
        policy = policy.clone(utf8=True)
    msg = EmailMessage(policy=policy)
    msg["From"] = policy.repeated("From", from_)
    msg["Reply-To"] = policy.repeated("Reply-To", from_)
    msg["To"] = to
    msg["Subject"] = mail.subject
    if date:
        msg["Date"] = date
    if message_id:
        msg["Message-ID"] = message_id
    if unsubscribe_url:
        # RFC 8058 one-click unsubscribe, and RFC 2369's mailto to the opt-out address beside it; the policy's
        # 998-character lines keep the URL unfolded. Each recipient's URL is its own: not a repeated header.
        links = f"<{unsubscribe_url}>" + (f", <mailto:{unsubscribe_mailto}?subject=unsubscribe>"
                                          if unsubscribe_mailto else "")
        msg["List-Unsubscribe"] = links
        msg["List-Unsubscribe-Post"] = policy.repeated("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    msg.set_content(mail.body, charset="utf-8")
    return msg
