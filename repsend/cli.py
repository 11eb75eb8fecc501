"""The command line: parse, call ``selection`` and ``sending``, print. The one place that knows about exit codes.

Heavy libraries (SQLAlchemy, simple-salesforce, Jinja2) load inside the commands that need them so
that ``repsend --help`` answers at once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from repsend.errors import EXIT_USAGE, RepsendError

EXIT_CODES = """\
Exit codes: 0 done (every attempt sent); 1 some recipients failed, the rest went out;
2 usage, config or input data error; 3 the SFA or the mail server failed or refused."""

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


def _parse_day(value: str | None, timezone: str) -> date:
    """--as-of, or today where the reps are (the rate time zone), not where the server is."""
    if value is None:
        from datetime import datetime
        from zoneinfo import ZoneInfo

        return datetime.now(ZoneInfo(timezone)).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-23",
                                 param_hint="--as-of") from None


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
already_sent, active_deal, recent_activity, cooldown, duplicate_email, no_owner, inactive_owner,
sender_domain, missing_field, invalid_header, rep_cap; a send is dormant or fallback_sender (README: Reason
codes)."""


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
    settings = load_settings(config)
    options = RunOptions(
        as_of=_parse_day(as_of, settings.rate.timezone),
        campaign=campaign or settings.campaign.name,
        template=template or settings.campaign.template,
        limit=limit,
    )
    source = open_source(settings)
    try:
        if dry_run:
            _dry_run(settings, source, options, json_lines, shown)
        else:
            _send(settings, source, options, json_lines, wait, shown)
    finally:
        source.close()


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
    out = JsonLines(sys.stdout) if json_lines else Table(sys.stdout, terminal_width=_terminal_width())
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
    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # no log yet: nothing to read, and no reason to load SQLAlchemy to learn that
    from repsend.clock import SystemClock
    from repsend.sending import read_history
    from repsend.sendlog import SendLog

    log = SendLog.open_readonly(url)
    if log is None:
        return None
    try:
        return read_history(log, settings, options.campaign, options.as_of, SystemClock().now())
    finally:
        log.close()


def _send(settings: Any, source: Any, options: Any, json_lines: bool, wait: bool, shown: str) -> None:
    from repsend.clock import SystemClock
    from repsend.report import RunPrinter
    from repsend.sending import send_run
    from repsend.sendlog import SendLog
    from repsend.transport import open_transport

    clock = SystemClock()
    printer = RunPrinter(sys.stdout, json_lines, progress=sys.stderr if sys.stderr.isatty() else None, shown=shown,
                         terminal_width=_terminal_width())
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
    _print_notes(source.notes)
    if result.recovered:
        _print_notes([f"{result.recovered} send(s) were interrupted by a crash or kill and are now 'unknown' "
                      "in the send log: they will not be sent again automatically"])
    if result.window_opens is not None:
        typer.echo(f"repsend: nothing sent: {result.stopped}; run with --wait to sleep until then", err=True)
        raise typer.Exit(0)
    printer.summary(result.summary, result)
    if result.stopped:
        typer.echo(f"repsend: {result.stopped}", err=True)
    raise typer.Exit(result.exit_code)


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        typer.echo(f"repsend: note: {note}", err=True)


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


@app.command(name="log", epilog=EXIT_CODES)
@_errors_to_exit_codes
def log_command(
    campaign: Annotated[str | None, typer.Option("--campaign", metavar="NAME", help="Only this campaign.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="YYYY-MM-DD", help="Only attempts on or after this day.")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", metavar="STATE", help="Only sent, failed, deferred, unknown or sending."),
    ] = None,
    rep: Annotated[str | None, typer.Option("--rep", metavar="REP", help="Only this rep (address or User Id).")] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="JSON Lines: one attempt per line, then a summary.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Who was mailed, by whom, when, and what came of it; newest first. Reads, never writes.

    Example: repsend log --since 2026-11-01 --state failed
    """
    from zoneinfo import ZoneInfo

    from repsend.logview import day_start, print_log
    from repsend.sendlog import STATES, SendLog, safe_name
    from repsend.settings import load_settings

    if state is not None and state not in STATES:
        raise typer.BadParameter(f"{state!r}: use one of {', '.join(sorted(STATES))}", param_hint="--state")
    day = _parse_day(since, "UTC") if since else None
    settings = load_settings(config)
    log = SendLog.open_readonly(settings.database_url)
    if log is None:
        typer.echo(f"repsend: no send log at {safe_name(settings.database_url)} yet: nothing was sent", err=True)
        return
    zone = ZoneInfo(settings.rate.timezone)
    try:
        rows = log.attempts(campaign, day_start(day, zone) if day else None, state, rep)
    finally:
        log.close()
    print_log(rows, sys.stdout, json_lines, zone)


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
