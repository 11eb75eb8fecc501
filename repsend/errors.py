"""One family of errors, each knowing the exit code it means.

Raised where a library error is understood (a CSV line, a config key, an SFA answer) and mapped to an
exit code in exactly one place, ``cli.main``. Messages carry their place (``Contact.csv:17: ...``) and
never a secret.
"""

from __future__ import annotations

# Exit codes: a contract with schedulers and scripts, documented in the README and in --help.
EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_SERVICE = 3
# A real run stopped before every chosen mail went out, by a signal: 128 + the signal's number, the code a
# shell gives a process that signal ends, so that a scheduler reads it as it reads any stopped job.
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_STOPPED = 143  # SIGTERM (systemd stop, a scheduler's timeout) with mails still unsent


class RepsendError(Exception):
    exit_code = EXIT_USAGE


class ConfigError(RepsendError):
    """The config file, the environment or a template is wrong: fix it and run again."""

    exit_code = EXIT_USAGE


class InputError(RepsendError):
    """The SFA data (a CSV export) is malformed."""

    exit_code = EXIT_USAGE


class UsageError(RepsendError):
    exit_code = EXIT_USAGE


class ServiceError(RepsendError):
    """The SFA or the mail server failed or refused."""

    exit_code = EXIT_SERVICE


class SFAError(ServiceError):
    pass


class MailError(ServiceError):
    pass


class OutputError(ServiceError):
    """The run's own output cannot be written (a full disk, a closed pipe): the run stops, as for a mail
    server that fails, since nobody could read what it did but the send log."""
