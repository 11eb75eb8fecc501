"""The command line: parse, call ``selection`` and ``sending``, print. The one place that knows about exit codes.

Heavy libraries (SQLAlchemy, simple-salesforce, Jinja2) load inside the commands that need them so
that ``repsend --help`` answers at once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from repsend.errors import EXIT_OK, EXIT_USAGE, RepsendError, UsageError

EXIT_CODES = """\
Exit codes: 0 done (every attempt sent); 1 some recipients failed, the rest went out;
2 usage, config or input data error; 3 the SFA, the mail server, the send log or the disk failed;
143 stopped by SIGTERM with mails unsent (130: Ctrl-C). A real run that exits non-zero ends with one
line on stderr: what failed, how many were sent, failed, deferred, unknown, and what to do next."""

app = typer.Typer(
    name="repsend",
    help=(
        "Personal notes from each customer's own rep to the dormant contacts in your SFA.\n\n"
        "Start with `repsend dormant --dry-run`: who would get a note, from which rep, and why\n"
        "everyone else would not (in the bundled demo org until `repsend init` writes your own config).\n\n"
        + EXIT_CODES
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it starts faster than rich rendering and keeps "[campaign] name" as written.
    rich_markup_mode=None,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit_codes(command: F) -> F:
    """A RepsendError becomes its message on stderr and its exit code: no traceback for user errors."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RepsendError as exc:
            sys.stdout.flush()
            typer.echo(f"repsend: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            # `repsend dormant --dry-run | head`: the reader has what it wanted.
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("repsend")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from repsend import __version__ as number
        typer.echo(f"repsend {number}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Personal notes from each customer's own rep to the dormant contacts in your SFA."""


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The config file (default: $REPSEND_CONFIG, else ./repsend.toml, else the bundled demo config).",
        show_default=False,
    ),
]


def _parse_day(value: str | None, timezone: str, option: str = "--as-of") -> date:
    """--as-of, or today where the reps are (the rate time zone), not where the server is."""
    if value is None:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        return datetime.now(ZoneInfo(timezone)).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-23",
                                 param_hint=option) from None


AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="The day that counts as today for dormancy and cooldown (default: today).",
        show_default=False,
    ),
]


# Written out, not read from models.Reason, so that --help imports nothing heavy; tests/test_cli.py holds it
# to Reason (its order and its sends).
REASONS = """\
Reasons, the first that applies: no_email, invalid_email, unsendable_address, opted_out, bounced, suppressed,
already_sent, previously_failed, active_deal, recent_activity, cooldown, duplicate_email, no_owner,
inactive_owner, sender_domain, missing_field, invalid_header, holdout, rep_cap; a send is dormant or
fallback_sender (README: Reason codes)."""


@app.command(epilog=REASONS + "\n\n" + EXIT_CODES)
@_errors_to_exit_codes
def dormant(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and compose every mail, print it all; send and write nothing.")
    ] = False,
    json_lines: Annotated[
        bool, typer.Option("--json", help="JSON Lines: one decision per contact, then one summary.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, metavar="N", help="Stop after N sends (a first small batch).")
    ] = None,
    campaign: Annotated[
        str | None, typer.Option("--campaign", metavar="NAME", help="Campaign name (default: [campaign] name).")
    ] = None,
    template: Annotated[
        str | None, typer.Option("--template", metavar="NAME", help="Template (default: [campaign] template).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Outside the send window: sleep until it opens instead of exiting.")
    ] = False,
    only: Annotated[
        str | None, typer.Option("--only", metavar="send|skip", help="Print only the sends, or only the skips.")
    ] = None,
    summary_only: Annotated[
        bool, typer.Option("--summary", help="Print only the summary (every contact is still decided).")
    ] = False,
    as_of: AsOfOption = None,
    config: ConfigOption = None,
) -> None:
    """Mail every dormant contact a personal note from their own rep.

    Example: repsend dormant --dry-run --limit 20
    """
    from repsend.selection import RunOptions
    from repsend.settings import load_settings
    from repsend.sfa import open_source

    if as_of is not None:
        _parse_day(as_of, "UTC")  # a malformed date is a usage error before the config is read
    if only not in (None, "send", "skip"):
        raise typer.BadParameter(f"{only!r}: use send or skip", param_hint="--only")
    shown = "none" if summary_only else only or "all"
    # A real run reports from the start: an error before it began still ends --json with a summary line.
    printer = None if dry_run else _run_printer(json_lines, shown)
    try:
        settings = load_settings(config)
        options = RunOptions(
            as_of=_parse_day(as_of, settings.rate.timezone),
            campaign=campaign or settings.campaign.name,
            template=template or settings.campaign.template,
            limit=limit,
        )
        source = open_source(settings)
        try:
            if printer is None:
                _dry_run(settings, source, options, json_lines, shown)
            else:
                _send(settings, source, options, printer, wait)
        finally:
            source.close()
    except RepsendError as exc:
        if printer is None:
            raise
        _not_started(printer, exc)


def _dry_run(settings: Any, source: Any, options: Any, json_lines: bool, shown: str) -> None:
    """Everything a run does up to the mail server; the send log is only read, if it exists. ``shown``:
    the rows printed, all, send, skip or none (the summary counts every contact whatever it says)."""
    from repsend.report import JsonLines, Table
    from repsend.selection import Summary, select

    history = _read_history_readonly(settings, options)
    summary = Summary()
    decisions = select(settings, source, options, history, summary=summary)
    _print_notes([f".env read: {path}" for path in settings.env_files] + source.notes)
    noted = len(source.notes)
    out = (JsonLines(sys.stdout) if json_lines
           else Table(sys.stdout, terminal_width=_terminal_width(), variants=decisions.variants))
    row = out.row
    if shown == "all":
        for decision in decisions:
            row(decision)
    else:
        for decision in decisions:
            if shown == decision.reason.action:
                row(decision)
    _print_notes(source.notes[noted:])
    out.summary(summary, dry_run=True)


def _terminal_width() -> int | None:
    """The terminal's width when stdout is one (the table cuts its subjects to it); None for a file or pipe."""
    import shutil

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _read_history_readonly(settings: Any, options: Any) -> Any:
    """What the send log knows (already sent, cooldown, caps), read without writing; None without a log."""
    from repsend.clock import SystemClock
    from repsend.sending import read_history_readonly

    return read_history_readonly(settings, options.campaign, options.as_of, SystemClock().now())


def make_clock() -> Any:
    """The clock of a real run; tests put a FakeClock here (monkeypatch) so that they never sleep."""
    from repsend.clock import SystemClock

    return SystemClock()


def _run_printer(json_lines: bool, shown: str) -> Any:
    from repsend.report import RunPrinter

    return RunPrinter(sys.stdout, json_lines, progress=sys.stderr if sys.stderr.isatty() else None, shown=shown,
                      terminal_width=_terminal_width(), notes=sys.stderr)


def _send(settings: Any, source: Any, options: Any, printer: Any, wait: bool) -> None:
    from repsend.errors import EXIT_INTERRUPTED, EXIT_SOME_FAILED, EXIT_STOPPED
    from repsend.report import exit_line
    from repsend.sending import send_run
    from repsend.sendlog import SendLog
    from repsend.transport import open_transport

    clock = make_clock()
    # Built (not connected) before the send log is touched: a transport config error writes nothing.
    transport = open_transport(settings, clock)
    _print_notes(getattr(transport, "notes", []))
    log = SendLog.open(settings.database_url)
    try:
        result = send_run(
            settings, source, options, log=log, open_transport=lambda: transport,
            clock=clock, reporter=printer, wait=wait,
        )
    finally:
        log.close()
    if printer.broken:
        _discard_stdout()
    _print_notes(source.notes)
    code = result.exit_code
    if code == EXIT_OK and result.window_opens is not None:
        _err(f"repsend: nothing sent: {result.stopped}; run with --wait to sleep until then")
        raise typer.Exit(0)
    if result.stopped and code not in (EXIT_STOPPED, EXIT_INTERRUPTED, EXIT_SOME_FAILED):
        _err(f"repsend: {result.stopped}")  # the window closed (exit 0), or the error (2, 3) in its own words
    if code != EXIT_OK:
        _err(exit_line(result))
    raise typer.Exit(code)


def _not_started(printer: Any, exc: RepsendError) -> None:
    """An error before the first mail could leave (the config, the SFA, the send log): the message, the
    summary line of --json, and the exit line."""
    from repsend.report import exit_line
    from repsend.selection import Summary
    from repsend.sending import RunResult

    result = RunResult("", Summary(), exit_code=exc.exit_code, stopped=str(exc), error=exc)
    _err(f"repsend: {exc}")
    with suppress(RepsendError):
        printer.summary(result)
    if printer.broken:
        _discard_stdout()
    _err(exit_line(result))
    raise typer.Exit(exc.exit_code)


def _err(line: str) -> None:
    with suppress(OSError):  # stderr itself cannot be written: nobody is left to tell
        typer.echo(line, err=True)


def _discard_stdout() -> None:
    """stdout could not be written (a full disk): send what is still buffered to /dev/null, so that
    Python's flush at exit does not fail again (and turn the exit code into 120)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (a test's runner): nothing is flushed at exit
        pass


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        _err(f"repsend: note: {note}")


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def preview(
    contact: Annotated[str, typer.Argument(help="A Contact Id (15 or 18 characters) or an email address.")],
    campaign: Annotated[str | None, typer.Option("--campaign", metavar="NAME", help="Campaign name.")] = None,
    template: Annotated[str | None, typer.Option("--template", metavar="NAME", help="Template name.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="The message as it goes over the wire (RFC 5322).")] = False,
    as_of: AsOfOption = None,
    config: ConfigOption = None,
) -> None:
    """Print one contact's whole mail, headers and body, as it would be sent; or why it would not be.

    Example: repsend preview 0035g00000Q0000001
    """
    from repsend.preview import render_preview
    from repsend.selection import RunOptions
    from repsend.settings import load_settings
    from repsend.sfa import open_source

    settings = load_settings(config)
    options = RunOptions(
        as_of=_parse_day(as_of, settings.rate.timezone),
        campaign=campaign or settings.campaign.name,
        template=template or settings.campaign.template,
    )
    source = open_source(settings)
    try:
        history = _read_history_readonly(settings, options)
        text = render_preview(settings, source, options, contact, raw=raw, history=history)
    finally:
        source.close()
    typer.echo(text, nl=False)


SinceOption = Annotated[
    str | None,
    typer.Option("--since", metavar="YYYY-MM-DD",
                 help="Only attempts on or after this day ([rate] timezone).", show_default=False),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", metavar="YYYY-MM-DD",
                 help="Only attempts on or before this day, the whole day ([rate] timezone).", show_default=False),
]
ExcelOption = Annotated[
    bool,
    typer.Option("--excel", help="For Excel: --format csv (UTF-8 with a BOM, CRLF line ends), in any console."),
]


@app.command(name="log", epilog=EXIT_CODES)
@_errors_to_exit_codes
def log_command(
    campaign: Annotated[str | None, typer.Option("--campaign", metavar="NAME", help="Only this campaign.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    state: Annotated[
        str | None,
        typer.Option("--state", metavar="STATE", help="Only sent, failed, deferred, unknown or sending."),
    ] = None,
    rep: Annotated[str | None, typer.Option("--rep", metavar="REP", help="Only this rep (address or User Id).")] = None,
    contact: Annotated[
        str | None,
        typer.Option("--contact", metavar="EMAIL|ID",
                     help="Only this person: an address (any case) or a Contact Id (15 or 18 characters)."),
    ] = None,
    form: Annotated[
        str | None,
        typer.Option("--format", metavar="table|csv|json",
                     help="table (default), csv (a line per attempt, for a spreadsheet) or json (JSON Lines)."),
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="The same as --format json: one attempt per line, then a summary.")
    ] = False,
    excel: ExcelOption = False,
    config: ConfigOption = None,
) -> None:
    """Who was mailed, by whom, when, what the server said, what each address's state is now, and the
    bounces, opt-outs and complaints that came after each mail; newest first, with the addresses counted by
    their state now per campaign and per rep. Reads, never writes.

    Example: repsend log --since 2026-11-01 --until 2026-11-30 --state failed
    """
    from zoneinfo import ZoneInfo

    from repsend.logview import FORMATS, day_end, day_start, print_log, utf8_out
    from repsend.sendlog import STATES
    from repsend.settings import load_settings

    if state is not None and state not in STATES:
        raise typer.BadParameter(f"{state!r}: use one of {', '.join(sorted(STATES))}", param_hint="--state")
    if form is not None and form not in FORMATS:
        raise typer.BadParameter(f"{form!r}: use {', '.join(FORMATS)}", param_hint="--format")
    if json_lines and form not in (None, "json"):
        raise typer.BadParameter(f"--json is --format json, not {form}", param_hint="--json")
    if excel and (json_lines or form not in (None, "csv")):
        raise typer.BadParameter(f"--excel is --format csv, not {'json' if json_lines else form}",
                                 param_hint="--excel")
    form = "json" if json_lines else "csv" if excel else form or "table"
    if contact is not None:
        contact = _contact_key(contact)
    first, last = _day_range(since, until)
    settings = load_settings(config)
    log = _existing_log(settings)
    if log is None:
        return
    zone = ZoneInfo(settings.rate.timezone)
    filters = (campaign, day_start(first, zone) if first else None, state, rep)
    window = {"until": day_end(last, zone) if last else None, "contact": contact}
    try:
        rows = log.attempts(*filters, **window)
        states_now = log.states_now(*filters, **window) if rows else {}
        suppressions = log.suppressions_by_attempt() if rows else {}
    finally:
        log.close()
    with utf8_out(sys.stdout) if form == "csv" else _as_is(sys.stdout) as out:
        print_log(rows, states_now, out, form, zone, suppressions)


@contextmanager
def _as_is(stream: Any) -> Any:
    yield stream


def _day_range(since: str | None, until: str | None) -> tuple[date | None, date | None]:
    """--since and --until as days, the first not after the second (a usage error before the config is read)."""
    first = _parse_day(since, "UTC", "--since") if since else None
    last = _parse_day(until, "UTC", "--until") if until else None
    if first and last and last < first:
        raise typer.BadParameter(f"{until} is before --since {since}: nothing could match", param_hint="--until")
    return first, last


def _contact_key(value: str) -> str:
    """--contact: an address (compared trimmed, any case) or a Salesforce Contact Id of 15 or 18 letters and digits."""
    import re

    value = value.strip()
    if "@" in value or re.fullmatch(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?", value):
        return value
    raise typer.BadParameter(f"{value!r}: give an address or a Contact Id (15 or 18 letters and digits)",
                             param_hint="--contact")


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def stats(
    by: Annotated[
        str,
        typer.Option("--by", metavar="rep|campaign|day|template|run",
                     help="One line per rep (default), campaign, day ([rate] timezone), template, or run "
                          "(each run's own counts: considered, sent, ..., skipped)."),
    ] = "rep",
    campaign: Annotated[str | None, typer.Option("--campaign", metavar="NAME", help="Only this campaign.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    form: Annotated[
        str | None,
        typer.Option("--format", metavar="table|csv|json",
                     help="table (default), csv (a line per group, for a spreadsheet) or json (JSON Lines)."),
    ] = None,
    excel: ExcelOption = False,
    config: ConfigOption = None,
) -> None:
    """What the mails did, counted per rep, campaign, day, template or run: attempts sent, failed, deferred,
    unknown, and the addresses that bounced, opted out or complained after them. Counted in the send log's
    database; reads, never writes.

    Example: repsend stats --by day --since 2026-11-01 --until 2026-11-30
    """
    from zoneinfo import ZoneInfo

    from repsend.logview import FORMATS, day_end, day_start, print_stats, run_records, stats_records, utf8_out
    from repsend.sendlog import STATS_BY
    from repsend.settings import load_settings

    if by not in STATS_BY:
        raise typer.BadParameter(f"{by!r}: use {', '.join(STATS_BY)}", param_hint="--by")
    if form is not None and form not in FORMATS:
        raise typer.BadParameter(f"{form!r}: use {', '.join(FORMATS)}", param_hint="--format")
    if excel and form not in (None, "csv"):
        raise typer.BadParameter(f"--excel is --format csv, not {form}", param_hint="--excel")
    form = "csv" if excel else form or "table"
    first, last = _day_range(since, until)
    settings = load_settings(config)
    log = _existing_log(settings)
    if log is None:
        return
    zone = ZoneInfo(settings.rate.timezone)
    window = {"campaign": campaign, "since": day_start(first, zone) if first else None,
              "until": day_end(last, zone) if last else None}
    try:
        if by == "run":
            runs = log.run_stats(**window)
            records = run_records(runs, log.run_reasons(run.id for run, _ in runs))
        else:
            records = stats_records(by, log.stats(by, zone, **window))
    finally:
        log.close()
    with utf8_out(sys.stdout) if form == "csv" else _as_is(sys.stdout) as out:
        print_stats(by, records, out, form, zone)


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def resolve(
    address: Annotated[str, typer.Argument(help="The address of the unknown attempt (any case).")],
    campaign: Annotated[str, typer.Option("--campaign", metavar="NAME", help="The campaign of the attempt.")],
    sent: Annotated[bool, typer.Option("--sent", help="The mail did go out: never send it again.")] = False,
    not_sent: Annotated[
        bool, typer.Option("--not-sent", help="The mail did not go out: a later run may send it.")
    ] = False,
    note: Annotated[
        str, typer.Option("--note", metavar="TEXT", help="Why: how you found out (kept in the send log).")
    ] = "",
    config: ConfigOption = None,
) -> None:
    """Record what a person found out about an 'unknown' attempt (the run died or the connection broke
    while the mail was handed over): it went out (--sent) or it did not (--not-sent). The attempt is
    kept as it was, with the answer, who gave it, when, and the note beside it.

    Example: repsend resolve h.yamada@example.co.jp --campaign dormant --not-sent --note "not in the server's log"
    """
    import getpass

    from repsend.clock import SystemClock
    from repsend.errors import UsageError
    from repsend.sendlog import NOT_SENT, SENT, SendLog, safe_name
    from repsend.settings import load_settings

    if sent == not_sent:
        raise UsageError("resolve: give exactly one of --sent (it went out) and --not-sent (it did not)")
    settings = load_settings(config)
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise UsageError(f"no send log at {safe_name(url)}: nothing to resolve (check [log] database)")
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor in the password database
        who = "unknown user"
    log = SendLog.open(url)
    try:
        row = log.resolve(campaign, address, SENT if sent else NOT_SENT, now=SystemClock().now(), by=who,
                          note=note.strip())
    finally:
        log.close()
    then = "it will not be sent again" if sent else "a later run of the campaign may send it"
    typer.echo(f"resolved: {row.address} in campaign {campaign!r} ({row.created_at.isoformat(timespec='seconds')}, "
               f"attempt {row.id}) as {row.resolved_as} by {who}: {then}")


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def optout(
    addresses: Annotated[list[str] | None, typer.Argument(metavar="[EMAIL]...", help="Addresses to opt out.")] = None,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (kept in the send log).")] = "",
    import_file: Annotated[
        Path | None, typer.Option("--import", metavar="FILE",
                                  help="Opt out every address of a file: one a line, Name <address>, or a CSV with "
                                       "an email column; UTF-8 or CP932.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", metavar="TOKEN", help="A signed unsubscribe token (a company web form).")
    ] = None,
    list_them: Annotated[bool, typer.Option("--list", help="List the suppressed addresses.")] = False,
    removed: Annotated[bool, typer.Option("--removed", help="With --list: the removed ones too.")] = False,
    form: Annotated[str, typer.Option("--format", metavar="table|csv|json", help="With --list.")] = "table",
    remove: Annotated[
        str | None, typer.Option("--remove", metavar="EMAIL", help="Lift a mistaken opt-out (needs --reason).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Record opt-outs in the send log, which every run honours; or list or correct them.

    Example: repsend optout hanako@example.jp --reason "電話で依頼"
    (or --import optouts.csv, --list --format csv)
    """
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from repsend.optout import FORMATS, checked, import_source, print_list, record, who
    from repsend.sendlog import SendLog
    from repsend.settings import load_settings
    from repsend.suppression_list import read_suppression_list

    modes = [bool(addresses), import_file is not None, token is not None, list_them, remove is not None]
    if sum(modes) != 1:
        raise typer.BadParameter("give addresses, or one of --import, --token, --list, --remove",
                                 param_hint="optout")
    if form not in FORMATS:
        raise typer.BadParameter(f"{form!r}: use {', '.join(FORMATS)}", param_hint="--format")
    if remove is not None and not reason.strip():
        raise typer.BadParameter("a removal keeps its reason: add --reason TEXT", param_hint="--remove")
    settings = load_settings(config)
    now = datetime.now(UTC)
    if list_them:
        read = _existing_log(settings, "nothing suppressed")
        if read is None:
            return
        try:
            rows = read.suppressions(removed=removed)
        finally:
            read.close()
        print_list(rows, sys.stdout, form, ZoneInfo(settings.rate.timezone))
        return
    if token is not None:
        from repsend.unsubscribe import read_token, secret_of

        said = read_token(secret_of(settings.env), token)
        if said is None:
            raise UsageError("the token is not valid: altered, cut, or signed with another "
                             "REPSEND_UNSUBSCRIBE_SECRET; nothing recorded")
        wanted, source, campaign = [said.address], "unsubscribe token", said.campaign or None
    elif import_file is not None:
        wanted = sorted(read_suppression_list(import_file))
        source, campaign = import_source(import_file), None
    elif remove is not None:
        wanted, source, campaign = checked([remove]), "", None
    else:
        wanted, source, campaign = checked(addresses or []), "optout command", None
    log = SendLog.open(settings.database_url)
    try:
        if remove is not None:
            lifted = log.unsuppress(wanted[0], now, reason=reason.strip(), by=who())
            if not lifted:
                raise UsageError(f"{wanted[0]} is not suppressed: nothing to remove")
            typer.echo(f"removed: {wanted[0]} ({lifted} suppression(s) lifted; kept in the log as removed)")
            return
        done = record(log, wanted, source, now, reason=reason.strip(), campaign=campaign)
    finally:
        log.close()
    for address in done.added:
        typer.echo(f"opted out: {address}")
    for address in done.already:
        typer.echo(f"already opted out: {address}")
    typer.echo(f"{len(done.added)} opted out, {len(done.already)} already were", err=True)


@app.command(name="unsubscribe-endpoint", epilog=EXIT_CODES)
@_errors_to_exit_codes
def unsubscribe_endpoint(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (behind your reverse proxy).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: a free one).")] = 8025,
    config: ConfigOption = None,
) -> None:
    """Serve RFC 8058 one-click unsubscribe: a POST with a valid signed token records the opt-out.

    Put it behind the company's HTTPS reverse proxy at [mail] unsubscribe_url. Example:
    repsend unsubscribe-endpoint --port 8025
    """
    import threading
    from datetime import UTC, datetime

    from repsend.sendlog import OPT_OUT, SendLog
    from repsend.settings import load_settings
    from repsend.unsubscribe import Unsubscribe, endpoint, secret_of, serve

    settings = load_settings(config)
    secret = secret_of(settings.env)
    log = SendLog.open(settings.database_url)
    lock = threading.Lock()  # waitress answers on threads; the log is one connection

    def record(said: Unsubscribe) -> None:
        with lock:
            log.suppress(said.address, OPT_OUT, "unsubscribe link", datetime.now(UTC), campaign=said.campaign or None)

    def ready(url: str) -> None:
        typer.echo(f"repsend: unsubscribe endpoint listening on {url} (send log {log.name})", err=True)

    try:
        serve(endpoint(secret, record), host, port, ready)
    finally:
        log.close()


SYNC_EXIT = """\
Exit codes: 0 everything written; 1 Salesforce refused some records (kept with their error, tried again
next time); 2 usage or config error; 3 Salesforce failed (what was written before is kept)."""


@app.command(epilog=SYNC_EXIT)
@_errors_to_exit_codes
def sync(
    export_dir: Annotated[
        Path | None, typer.Option("--export", metavar="DIR",
                                  help="CSV source: write Task.csv and Contact.csv for Data Loader into DIR.")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="With --export: every Task and opt-out again, not only the new ones.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Write back to the SFA what the send log holds and the SFA does not yet: a completed Task per sent
    mail, owned by its rep, and HasOptedOutOfEmail on every Contact and Lead of an opted-out address.
    Salesforce: through its API, records refused before tried again (a real run writes its own Tasks when
    it ends; sync writes what one left). A CSV export: files for Data Loader (--export).

    Example: repsend sync --export ~/dataloader/in   (Salesforce: repsend sync)
    """
    from datetime import UTC, datetime

    from repsend.sendlog import SendLog, safe_name
    from repsend.settings import load_settings
    from repsend.writeback import export, write_back

    if everything and export_dir is None:
        raise typer.BadParameter("--all goes with --export DIR", param_hint="--all")
    settings = load_settings(config)
    if not settings.sfa.writes_back:
        raise UsageError(f"{settings.config_path}: [sfa] log_activity is false: repsend writes nothing back to the SFA "
                         "(set it to true)")
    if settings.sfa.kind == "csv" and export_dir is None:
        raise UsageError("the SFA is a CSV export ([sfa] kind = \"csv\"): nothing to write to; give --export DIR "
                         "for Data Loader's files")
    if settings.sfa.kind == "salesforce" and export_dir is not None:
        raise UsageError("--export is for a CSV export ([sfa] kind = \"csv\"); Salesforce is written to directly")
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        typer.echo(f"repsend: no send log at {safe_name(url)} yet: nothing to write back", err=True)
        return
    log = SendLog.open(url)
    try:
        now = datetime.now(UTC)
        if export_dir is not None:
            done = export(log, settings, export_dir, now, everything=everything)
        else:
            from repsend.sfa import open_source

            source = open_source(settings)
            try:
                done = write_back(log, source, now)  # type: ignore[arg-type]
            finally:
                source.close()
    finally:
        log.close()
    for line in done.lines():
        typer.echo(line)
    for error in done.errors:
        typer.echo(f"repsend: Salesforce refused: {error}", err=True)
    raise typer.Exit(1 if done.rejected else 0)


DOCTOR_EXIT = "Exit codes: 0 nothing failed (warnings allowed); 1 at least one check failed."


@app.command(epilog=DOCTOR_EXIT)
@_errors_to_exit_codes
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document: every check, then the verdict.")] = False,
    campaign: Annotated[str | None, typer.Option("--campaign", metavar="NAME", help="Campaign name.")] = None,
    template: Annotated[str | None, typer.Option("--template", metavar="NAME", help="Template name.")] = None,
    as_of: AsOfOption = None,
    config: ConfigOption = None,
) -> None:
    """Check what a nightly run needs (config, SFA, templates, mail server, send log, window); send
    nothing, write nothing.

    Example: repsend doctor --config /etc/repsend/repsend.toml
    """
    import json

    from repsend.clock import SystemClock
    from repsend.doctor import diagnose
    from repsend.selection import RunOptions

    if as_of is not None:
        _parse_day(as_of, "UTC")

    def options_for(settings: Any) -> RunOptions:
        return RunOptions(as_of=_parse_day(as_of, settings.rate.timezone),
                          campaign=campaign or settings.campaign.name,
                          template=template or settings.campaign.template)

    checks = []
    for check in diagnose(config, SystemClock(), options_for):
        checks.append(check)
        if not json_out:
            typer.echo(f"{check.status:<5} {check.area:<10} {check.text}")
            if check.fix:
                typer.echo(f"{'':16} fix: {check.fix}")
    failed = sum(check.status == "fail" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    if json_out:
        typer.echo(json.dumps({"checks": [c.fields() for c in checks], "ok": not failed, "failed": failed,
                               "warned": warned}, ensure_ascii=False))
    else:
        typer.echo(f"{failed} failed, {warned} warning(s), {len(checks) - failed - warned} ok")
    raise typer.Exit(1 if failed else 0)


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def init(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="The folder to write into, made if need be (default: this one).",
                             show_default=False)
    ] = Path("."),
    sfa: Annotated[
        str, typer.Option("--sfa", metavar="csv|salesforce", help="Where contacts come from: a CSV export or the org.")
    ] = "csv",
    demo: Annotated[
        bool, typer.Option("--demo", help="Copy the demo org too, and point the config at it: a first try anywhere.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist (else: exit 2).")] = False,
) -> None:
    """Write what your own org needs to start: a commented repsend.toml, the templates and legal footers
    to edit, .env.example with every secret's name, and an empty suppression list.

    Example: repsend init acme --sfa salesforce
    """
    from repsend import starter

    if sfa not in ("csv", "salesforce"):
        raise typer.BadParameter(f"{sfa!r}: use csv or salesforce", param_hint="--sfa")
    written = starter.write(starter.plan(folder, sfa, demo), force=force)  # type: ignore[arg-type]
    typer.echo(f"repsend init: wrote {len(written)} files in {folder}:")
    for path in written:
        typer.echo(f"  {path.relative_to(folder)}")
    typer.echo(starter.next_steps(folder, sfa, demo))  # type: ignore[arg-type]


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def inbox(
    source: Annotated[str, typer.Argument(metavar="PATH|imap",
                                          help="An mbox file, a Maildir, a folder of .eml files, or imap ([inbox]).")],
    mark_seen: Annotated[
        bool, typer.Option("--mark-seen", help="IMAP: mark each message read once it is recorded.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Sort and print; record nothing.")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="JSON Lines: one per message, then a summary.")] = False,
    config: ConfigOption = None,
) -> None:
    """Read what came back to the bounce and opt-out addresses: suppress hard bounces, complaints and
    opt-outs in the send log; record the rest. Each message is handled once.

    Example: repsend inbox imap   (or: repsend inbox bounces.mbox --dry-run)
    """
    import json
    from datetime import UTC, datetime

    from repsend.returns import Tally, messages_of, sort_messages
    from repsend.sendlog import SendLog
    from repsend.settings import load_settings

    settings = load_settings(config)
    items = messages_of(settings, source, mark_seen=(mark_seen or settings.inbox.mark_seen) and not dry_run)
    log = SendLog.open_readonly(settings.database_url) if dry_run else SendLog.open(settings.database_url)
    tally = Tally()
    try:
        for found in sort_messages(items, settings, log, datetime.now(UTC), tally, dry_run=dry_run,
                                   malformed=lambda text: typer.echo(f"repsend: note: {text}", err=True)):
            returned, changes = found.returned, found.changes
            if json_lines:
                typer.echo(json.dumps({"type": "message", "where": found.where, "kind": returned.kind,
                                       "key": returned.key, "addresses": list(returned.addresses),
                                       "reason": returned.reason,
                                       "suppressed": [{"address": c.address, "kind": c.kind} for c in changes]},
                                      ensure_ascii=False))
            else:
                done = "; ".join(f"{'would suppress' if dry_run else 'suppressed'} {c.address} ({c.kind})"
                                 for c in changes)
                typer.echo(f"{returned.kind:<10} {found.where}  {returned.reason}" + (f"  -> {done}" if done else ""))
    finally:
        if log is not None:
            log.close()
    summary = {"type": "summary", "dry_run": dry_run, "kinds": dict(sorted(tally.kinds.items())),
               "suppressed": dict(sorted(tally.suppressed.items())), "already_read": tally.already,
               "malformed": tally.malformed, "unmatched": tally.unmatched}
    if json_lines:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        found = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.kinds.items())) or "nothing new"
        made = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.suppressed.items())) or "none"
        typer.echo(f"{found}; suppressed: {made}; {tally.already} read before, {tally.malformed} malformed")


@app.command(epilog=EXIT_CODES)
@_errors_to_exit_codes
def outcomes(
    campaign: Annotated[str | None, typer.Option("--campaign", metavar="NAME", help="Only this campaign.")] = None,
    by: Annotated[str, typer.Option("--by", metavar="rep|template|variant|campaign|language",
                                    help="Group by this.")] = "campaign",
    window: Annotated[int, typer.Option("--window", metavar="DAYS", min=1,
                                        help="Count what happens within DAYS of the mail.")] = 60,
    form: Annotated[str, typer.Option("--format", metavar="table|csv|json", help="How to print it.")] = "table",
    excel: Annotated[bool, typer.Option("--excel", help="CSV with the BOM and CRLF Japanese Excel needs.")] = False,
    replies: Annotated[
        list[str] | None, typer.Option("--replies", metavar="PATH|imap|sfa",
                                       help="Count replies from a mailbox (an mbox, Maildir, .eml folder, or imap), "
                                            "or the SFA's activities (sfa); may be given twice.")
    ] = None,
    deals: Annotated[bool, typer.Option("--deals/--no-deals", help="Read deals opened after the mail from the SFA.")
                     ] = True,
    chart_file: Annotated[
        Path | None, typer.Option("--chart", metavar="FILE.svg|FILE.png", help="Also draw the rates with intervals.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Did the notes work: replies, deals opened, opt-outs and bounces of the mailed contacts against the
    holdout group, with 95% intervals. Reads, never writes.

    Example: repsend outcomes --by rep --window 60 --replies imap
    """
    from datetime import UTC, datetime, timedelta

    from repsend.outcome_report import FORMATS, chart, write
    from repsend.outcome_sources import exposures_of, gather
    from repsend.outcomes import GROUPINGS
    from repsend.outcomes import outcomes as count
    from repsend.settings import load_settings

    if by not in GROUPINGS:
        raise typer.BadParameter(f"{by!r}: use one of {', '.join(GROUPINGS)}", param_hint="--by")
    if excel:
        form = "csv"
    if form not in FORMATS:
        raise typer.BadParameter(f"{form!r}: use {', '.join(FORMATS)}", param_hint="--format")
    settings = load_settings(config)
    log = _existing_log(settings, "nothing mailed")
    if log is None:
        return
    try:
        attempts, events = gather(settings, log, campaign, replies or [], deals)
    finally:
        log.close()
    groups = count(exposures_of(attempts), events, by=by, window=timedelta(days=window), now=datetime.now(UTC))
    write(groups, by, window, sys.stdout, form, excel)
    if chart_file is not None:
        chart(groups, chart_file, settings.template.default_language, by)
        typer.echo(f"repsend: chart written to {chart_file}", err=True)


def _existing_log(settings: Any, nothing: str = "nothing was sent") -> Any:
    """The send log opened to read, or None (having said so on stderr) when there is none yet."""
    from repsend.sendlog import SendLog, safe_name

    log = SendLog.open_readonly(settings.database_url)
    if log is None:
        typer.echo(f"repsend: no send log at {safe_name(settings.database_url)} yet: {nothing}", err=True)
    return log


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("repsend: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        # Click reports a usage error with exit code 2 already; keep ours identical.
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else 0
        sys.exit(code)
