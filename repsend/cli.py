"""The command line: parse, call ``runner``, print. The one place that knows about exit codes.

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
        "everyone else would not.\n\n" + EXIT_CODES
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
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


@app.callback()
def _root() -> None:
    """Personal notes from each customer's own rep to the dormant contacts in your SFA."""


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The config file (default: $REPSEND_CONFIG, else the bundled config/repsend.toml).",
        show_default=False,
    ),
]


def _parse_day(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-23") from None


AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="The day that counts as today for dormancy and cooldown (default: today).",
        show_default=False,
    ),
]


@app.command(epilog=EXIT_CODES)
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
    as_of: AsOfOption = None,
    config: ConfigOption = None,
) -> None:
    """Mail every dormant contact a personal note from their own rep.

    Example: repsend dormant --dry-run --limit 20
    """
    from repsend.settings import load_settings

    day = _parse_day(as_of)
    settings = load_settings(config)
    if not dry_run:
        raise RepsendError(
            "sending is not built yet: run `repsend dormant --dry-run` to see who would get a note"
        )
    _dry_run(settings, day, campaign, template, limit, json_lines)


def _dry_run(settings: Any, day: date, campaign: str | None, template: str | None, limit: int | None,
             json_lines: bool) -> None:
    from repsend.report import JsonLines, Table
    from repsend.runner import RunOptions, Summary, plan
    from repsend.sfa import open_source

    options = RunOptions(
        as_of=day,
        campaign=campaign or settings.campaign.name,
        template=template or settings.campaign.template,
        limit=limit,
    )
    source = open_source(settings)
    summary = Summary()
    try:
        planned = plan(settings, source, options, summary=summary)
        _print_notes(source.notes)
        shown = len(source.notes)
        out = JsonLines(sys.stdout) if json_lines else Table(sys.stdout)
        for item in planned:
            out.row(item)
        _print_notes(source.notes[shown:])
        out.summary(summary, dry_run=True)
    finally:
        source.close()


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
    from repsend.runner import RunOptions
    from repsend.settings import load_settings
    from repsend.sfa import open_source

    day = _parse_day(as_of)
    settings = load_settings(config)
    options = RunOptions(
        as_of=day,
        campaign=campaign or settings.campaign.name,
        template=template or settings.campaign.template,
    )
    source = open_source(settings)
    try:
        text = render_preview(settings, source, options, contact, raw=raw)
    finally:
        source.close()
    typer.echo(text, nl=False)


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
