"""`repsend doctor`: what a nightly job needs, checked without sending a mail or writing a row.

Each check is one line of a checklist, ok, warn or fail, with what to fix. The checks use the run's own
code (settings, the source, the engine, the templates, the transport, the send log, the window), never a
second copy of it: what doctor accepts is what the run accepts. A check that cannot run because an
earlier one failed (no settings, no source) is left out rather than guessed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from repsend.clock import Clock
from repsend.errors import RepsendError

if TYPE_CHECKING:
    from repsend.models import Rep
    from repsend.selection import RunOptions
    from repsend.settings import Settings
    from repsend.sfa.base import Source

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    area: str  # config, sfa, reps, templates, legal, smtp, bounces, send log, window
    status: Status
    text: str
    fix: str = ""

    def fields(self) -> dict[str, str]:
        return asdict(self)


def ok(area: str, text: str) -> Check:
    return Check(area, "ok", text)


def warn(area: str, text: str, fix: str = "") -> Check:
    return Check(area, "warn", text, fix)


def fail(area: str, text: str, fix: str = "") -> Check:
    return Check(area, "fail", text, fix)


def diagnose(config: Path | None, clock: Clock, options_for: Callable[[Settings], RunOptions]) -> Iterator[Check]:
    """Every check, in the order a person fixes things: the config first, since the rest needs it."""
    from repsend.settings import load_settings

    try:
        settings = load_settings(config)
    except RepsendError as exc:
        yield fail("config", str(exc), "fix the config file (the message names the key), then run doctor again")
        return
    yield ok("config", f"{settings.config_path}: valid")
    from repsend import bundled

    if settings.config_path.resolve() == bundled.config_file().resolve():
        yield warn("config", "this is the bundled demo config, not your org's",
                   "`repsend init DIR` writes one to fill in; then --config DIR/repsend.toml")
    yield from _placeholders(settings)
    if settings.env_files:
        yield ok("config", ".env read: " + ", ".join(str(path) for path in settings.env_files))
    else:
        yield ok("config", "no .env file read (secrets come from the environment only)")
    options = options_for(settings)
    templates = list(_templates(settings, options))
    yield from templates
    if any(check.status == "fail" and check.area == "templates" for check in templates):
        # The first pass composes every mail: without templates it would only repeat their failure.
        yield warn("sfa", "not checked: the templates must load first")
    else:
        yield from _source(settings, options, clock)
    yield from _transport(settings, clock)
    yield from _send_log(settings)
    yield from _window(settings, clock)


def _placeholders(settings: Settings) -> Iterator[Check]:
    """What `repsend init` leaves to fill in: a mail must not go out as "YOUR COMPANY K.K."."""
    from repsend.starter import PLACEHOLDER_ADDRESS, PLACEHOLDER_COMPANY, PLACEHOLDER_DOMAIN

    company = settings.company
    left = [key for key, value, placeholder in (
        ("name", company.name, PLACEHOLDER_COMPANY), ("postal_address", company.postal_address, PLACEHOLDER_ADDRESS),
        ("domain", company.domain, PLACEHOLDER_DOMAIN), ("opt_out", company.opt_out.rpartition("@")[2],
                                                         PLACEHOLDER_DOMAIN),
    ) if value == placeholder]
    left += ["[mail] sender_domains"] if PLACEHOLDER_DOMAIN in settings.mail.sender_domains else []
    if left:
        yield fail("config", f"{settings.config_path}: still as `repsend init` wrote it: "
                             + ", ".join(k if k.startswith("[") else f"[company] {k}" for k in left),
                   "fill in the lines marked FILL IN")


# -- the SFA ----------------------------------------------------------------------------------------


def _source(settings: Settings, options: RunOptions, clock: Clock) -> Iterator[Check]:
    from repsend.sfa import open_source

    try:
        source = open_source(settings)
    except RepsendError as exc:
        yield fail("sfa", str(exc), _sfa_fix(settings))
        return
    try:
        if settings.sfa.kind == "salesforce":
            yield from _salesforce(settings, source, options)
        else:
            yield from _csv_pass(settings, source, options, clock)
    finally:
        source.close()


def _sfa_fix(settings: Settings) -> str:
    if settings.sfa.kind == "salesforce":
        return "check the Salesforce variables in the environment or .env, and the API user's permissions"
    return "re-export the named file from Salesforce (Data Loader, UTF-8 or CP932), or fix [sfa] in the config"


def _csv_pass(settings: Settings, source: Source, options: RunOptions, clock: Clock) -> Iterator[Check]:
    """A first pass over every row, as the dry run makes it: the export's columns, encoding and rows, and
    who would send."""
    from repsend.models import Reason
    from repsend.selection import Summary, select
    from repsend.sending import read_history_readonly

    summary = Summary()
    outside: Counter[tuple[str, str]] = Counter()
    try:
        reps = source.reps()
        history = read_history_readonly(settings, options.campaign, options.as_of, clock.now())
        for decision in select(settings, source, options, history, summary=summary):
            if decision.reason is Reason.SENDER_DOMAIN and decision.rep is not None:
                outside[(decision.rep.name, decision.rep.email)] += 1
    except RepsendError as exc:
        yield fail("sfa", str(exc), _sfa_fix(settings))
        return
    yield ok("sfa", f"CSV export {settings.resolve(settings.sfa.path)}: {summary.considered} contacts read, "
                    f"{len(reps)} users; {summary.send} would be mailed today")
    for note in source.notes:
        yield warn("sfa", note)
    yield from _reps_outside(settings, outside)


def _reps_outside(settings: Settings, outside: Counter[tuple[str, str]]) -> Iterator[Check]:
    domains = settings.mail.sender_domains
    if not domains:
        yield warn("reps", "[mail] sender_domains is empty: any rep address may be a From",
                   'list the domains your mail server may send for, e.g. sender_domains = ["acme.example"]')
        return
    if not outside:
        yield ok("reps", f"every rep who would send has an address in {', '.join(domains)}")
        return
    for (name, email), count in sorted(outside.items()):
        yield fail("reps", f"{name} <{email}> would send {count} mail(s) but is outside [mail] sender_domains "
                           f"({', '.join(domains)})",
                   "correct the rep's address in Salesforce, add the domain to [mail] sender_domains, "
                   "or reassign the contacts")


def _salesforce(settings: Settings, source: Any, options: RunOptions) -> Iterator[Check]:
    """Logged in, sees every record that decides who is mailed, reads every configured field, has API
    calls left. No contact is pulled: a first pass over a large org costs what a dry run costs."""
    try:
        reps = source.reps()  # logs in and makes the visibility check first
    except RepsendError as exc:
        yield fail("sfa", str(exc), _sfa_fix(settings))
        return
    credentials = source.credentials
    yield ok("sfa", f"Salesforce, {credentials.name}: logged in as {source.api_user or 'the token user'}; "
                    f"{len(reps)} users")
    if credentials.kind == "password":
        yield warn("sfa", "the username/password login is SOAP login(), which Salesforce retires in Summer '27 "
                          "(off by default in orgs created from Winter '26)",
                   "switch to the client credentials or JWT bearer login (README: Logging in to Salesforce)")
    elif not credentials.renews:
        yield warn("sfa", "an access token cannot renew itself: a nightly job stops when it expires",
                   "use the client credentials or JWT bearer login for a job that runs unattended")
    visibility = [note for note in source.notes if "View All" in note or "may not see" in note]
    if visibility:
        for note in visibility:
            yield warn("sfa", note, "grant View All Data, or View All on Contact, Opportunity and Lead")
    else:
        yield ok("sfa", "the API user sees every Contact, Opportunity and contact role"
                        + (" and Lead" if settings.sfa.lead_opt_outs else ""))
    try:
        source.check_fields()
    except RepsendError as exc:
        yield fail("sfa", str(exc), "correct [sfa] contact_fields or [template] language_field, or grant the "
                                    "API user read access to the field")
    else:
        yield ok("sfa", "every configured Contact field is readable: " + ", ".join(source.select))
    try:
        left = source.api_limits()
    except RepsendError as exc:
        yield warn("sfa", f"API limits not read: {exc}")
    else:
        if left is not None:
            remaining, maximum = left
            line = f"{remaining:,} of {maximum:,} API calls left today"
            yield (warn("sfa", line, "a run needs about one call per 2,000 contacts, plus 10")
                   if maximum and remaining < maximum * 0.1 else ok("sfa", line))
    active = [rep for rep in reps.values() if rep.is_active]
    yield from _reps_outside_by_address(settings, active, options)


def _reps_outside_by_address(settings: Settings, reps: list[Rep], options: RunOptions) -> Iterator[Check]:
    """Without a pass over the contacts (Salesforce), every active user is a rep who may send: the engine
    says, for a contact each of them owned, whether its sender_domain rule would stop the mail."""
    from repsend.audience import Audience
    from repsend.models import Reason, id15
    from repsend.selection import rules_of
    from repsend.sfa.base import Blocks, DealIndex

    if not settings.mail.sender_domains:
        yield from _reps_outside(settings, Counter())
        return
    audience = Audience({id15(rep.id): rep for rep in reps}, DealIndex(), Blocks(), rules_of(settings, options, None))
    outside = sorted((rep.name, rep.email) for rep in reps if audience.sender(rep.id)[0] is Reason.SENDER_DOMAIN)
    domains = ", ".join(settings.mail.sender_domains)
    if not outside:
        yield ok("reps", f"every active user has an address in {domains}")
        return
    for name, email in outside:
        yield warn("reps", f"{name} <{email}> is active but outside [mail] sender_domains: their contacts would "
                           "be skipped (sender_domain)",
                   "correct the address, add the domain, or reassign their contacts")


# -- the templates and the legal footer -------------------------------------------------------------


def _templates(settings: Settings, options: RunOptions) -> Iterator[Check]:
    """Every language the config maps to renders for a sample contact, and its footer carries what the
    Act on Specified Electronic Mail requires: the sender, the postal address and the opt-out address."""
    from repsend.audience import Uncomposable
    from repsend.models import Contact, Rep
    from repsend.selection import company_of, load_templates

    try:
        templates = load_templates(settings, options.template)
    except RepsendError as exc:
        yield fail("templates", str(exc), "add or fix the named template file, or the languages in the config")
        return
    rep = Rep(id="005000000000001", name="見本 太郎", email=f"sample.rep@{settings.company.domain}", is_active=True,
              first_name="太郎", last_name="見本", title="営業部", phone="03-0000-0000", signature="見本 太郎")
    fields = {name: "sample" for name in settings.sfa.contact_fields}
    bad = False
    # Every variant of every language: a variant that cannot be composed would skip its share of the contacts.
    for language, variant in ((lang, v) for lang in templates.languages for v in templates.variants or ("",)):
        contact = Contact(id="003000000000001", email="sample.contact@example.com", owner_id=rep.id,
                          first_name="Sample", last_name="Contact", account_id="001000000000001",
                          account_name="Sample Co", title="Manager", extra=fields)
        company = company_of(settings, language)
        try:
            mail = templates.compose(contact, rep, company, language, options.campaign, variant)
        except Uncomposable as exc:
            bad = True
            yield fail("templates", f"{templates.folder / templates.file_name(language, variant)}: a sample "
                                    f"contact's mail cannot be composed: {exc}",
                       "fix the template, or list the field in [sfa] contact_fields")
            continue
        missing = [what for what, value in (("the company name", company.name),
                                            ("the postal address", company.postal_address),
                                            ("the opt-out address", company.opt_out)) if value not in mail.body]
        if missing and variant == (templates.variants or ("",))[0]:  # one footer a language, whatever the variant
            bad = True
            yield fail("legal", f"the {language} mail does not print {', '.join(missing)} "
                                "(Act on Specified Electronic Mail)",
                       f"keep the footer ({templates.folder / '_legal' / (language + '.txt')}) in every mail")
    if not bad:
        variants = f" (variants {', '.join(templates.variants)})" if templates.variants else ""
        yield ok("templates", f"{options.template}: {', '.join(templates.languages)}{variants} render for a sample"
                              " contact")
        yield ok("legal", "every mail ends with the sender, the postal address and the opt-out address")


# -- the mail server --------------------------------------------------------------------------------


def _transport(settings: Settings, clock: Clock) -> Iterator[Check]:
    from repsend.transport import SmtpTransport

    if settings.mail.transport == "outbox":
        folder = settings.resolve(settings.mail.outbox_dir)
        parent = next((p for p in (folder, *folder.parents) if p.exists()), folder)
        if os.access(parent, os.W_OK):
            yield ok("smtp", f"outbox {folder}: writable (mail is written there, not sent)")
        else:
            yield fail("smtp", f"outbox {folder}: {parent} is not writable", "fix the folder's permissions")
        return
    try:
        transport = SmtpTransport.from_settings(settings, clock)
        offered = transport.probe()
    except RepsendError as exc:
        yield fail("smtp", str(exc), _smtp_fix(str(exc)))
        return
    for note in transport.notes:
        yield warn("smtp", note, "set [smtp] helo_name to this machine's name in DNS (receiving servers score a "
                                 "greeting without one)")
    security = {"starttls": "STARTTLS, certificate verified", "ssl": "TLS, certificate verified",
                "none": "no TLS"}[transport.security]
    login = f"logged in as {transport.username}" if transport.username else "no login"
    extensions = ", ".join(e for e in ("PIPELINING", "8BITMIME", "SMTPUTF8") if e.lower() in offered)
    greeting = f"EHLO {transport.local_hostname}" if transport.local_hostname else "EHLO by address"
    line = (f"{transport.where}: connected, {security}, {login}, {greeting}; offers {extensions or 'no extensions'}"
            " (QUIT, no mail)")
    yield warn("smtp", line, "use security = \"starttls\" or \"ssl\"") if transport.security == "none" else ok("smtp",
                                                                                                              line)
    if not settings.mail.envelope_from.strip():
        yield warn("bounces", "[mail] envelope_from is empty: bounces go to each rep's own inbox, where nobody "
                              "reads them for repsend",
                   "set [mail] envelope_from to a bounce mailbox that repsend reads")
    else:
        yield ok("bounces", f"bounces go to {settings.mail.envelope_from}")


def _smtp_fix(message: str) -> str:
    lowered = message.lower()
    if "certificate" in lowered:
        return "for a private CA set [smtp] ca_file (or SMTP_CA_FILE); check that [smtp] host is the certificate's name"
    if "login" in lowered or "password" in lowered:
        return "check SMTP_USERNAME / [smtp] username and SMTP_PASSWORD"
    if "starttls" in lowered:
        return "check [smtp] port and security (587 starttls, 465 ssl)"
    if "smtputf8" in lowered:
        return ("use a server that offers SMTPUTF8, or set [smtp] smtputf8 = false (UTF-8 addresses are then "
                "skipped as unsendable_address)")
    return "check [smtp] host and port (or SMTP_HOST, SMTP_PORT), and that the server is reachable from here"


# -- the send log -----------------------------------------------------------------------------------


def _send_log(settings: Settings) -> Iterator[Check]:
    from repsend.sendlog import schema_state

    try:
        state = schema_state(settings.database_url)
    except RepsendError as exc:
        yield fail("send log", str(exc), "check [log] database (or REPSEND_DATABASE_URL) and the server")
        return
    if not state.exists:
        where = state.writable_at or "its folder"
        if state.writable:
            yield ok("send log", f"{state.name}: not there yet; the first real run creates it ({where} is writable)")
        else:
            yield fail("send log", f"{state.name}: not there yet, and {where} is not writable",
                       "fix the folder's permissions or point [log] database elsewhere")
        return
    if not state.writable:
        yield fail("send log", f"{state.name}: read-only for this user ({state.writable_at})",
                   "give the user that runs the job write access (the file and its folder, for SQLite)")
        return
    if state.pending:
        yield ok("send log", f"{state.name}: writable; the next run applies migration(s) {', '.join(state.pending)}")
    else:
        yield ok("send log", f"{state.name}: writable, schema current ({state.current})")


# -- the send window --------------------------------------------------------------------------------


def _window(settings: Settings, clock: Clock) -> Iterator[Check]:
    from repsend.throttle import SendWindow, Throttle

    rate = settings.rate
    window = SendWindow(rate.window, rate.weekdays, rate.timezone)
    now = clock.now()
    pace = Throttle(rate.per_minute, rate.per_hour, clock).gap.total_seconds()
    paced = f"at most one mail every {pace:g} s" if pace else "no pace limit"
    capped = f"{rate.per_rep_per_day} per rep a day" if rate.per_rep_per_day else "no per-rep cap"
    if window.always:
        yield ok("window", f"always open ({rate.timezone}); {paced}, {capped}")
        return
    opens = window.next_open(now)
    if opens == now:
        yield ok("window", f"open now ({window.text}); {paced}, {capped}")
    else:
        yield ok("window", f"closed now; opens {_local(opens)} ({window.text}); {paced}, {capped}")


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z")
