"""``repsend init``: the files a real org needs to start, made from the bundled ones.

The config is the bundled, fully commented ``config/repsend.toml`` with its paths made local and its
company made a placeholder to fill in, so that it documents every key exactly as the bundled one does
(and a key added there is in every config ``init`` writes). Each change is a line that must be found
exactly once: a bundled config that drifts from these lines fails loudly (tests/test_init.py), never
silently writes a config that still names the demo company.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from repsend import bundled
from repsend.errors import UsageError

Sfa = Literal["csv", "salesforce"]

# What `init` writes where only the org itself can say (doctor may flag a config still holding them).
PLACEHOLDER_COMPANY = "YOUR COMPANY K.K."
PLACEHOLDER_ADDRESS = "YOUR POSTAL ADDRESS"
PLACEHOLDER_DOMAIN = "example.com"
FILL_IN = "# FILL IN"

# (pattern, replacement): each pattern is a whole line of the bundled config, found exactly once.
_LOCAL_PATHS = [
    (r'dir = "\.\./templates"', 'dir = "templates"'),
    (r'outbox_dir = "\.\./outbox"', 'outbox_dir = "outbox"'),
    (r'database = "\.\./repsend\.db"', 'database = "repsend.db"'),
    (r'# suppression_file = "suppressed\.txt"', 'suppression_file = "suppressed.txt"'),
]
_YOUR_ORG = [
    (r"# OpportunityContactRole\.csv\. The bundled demo org:", "# OpportunityContactRole.csv. Put the export there:"),
    (r'path = "demo"', 'path = "export"'),
    (r'name = "株式会社アクメ"', f'name = "{PLACEHOLDER_COMPANY}"  {FILL_IN}: the legal name, as the law wants it'),
    (r'postal_address = ".*"', f'postal_address = "{PLACEHOLDER_ADDRESS}"  {FILL_IN}'),
    (r'names = \{ en = ".*" \}', 'names = {}  # e.g. { en = "Acme K.K." } for the English mails'),
    (r"postal_addresses = \{ en = .* \}", 'postal_addresses = {}  # e.g. { en = "1-1-1 Marunouchi, ..." }'),
    (r'opt_out = ".*"', f'opt_out = "optout@{PLACEHOLDER_DOMAIN}"  {FILL_IN}'),
    (r'domain = "acme\.example"', f'domain = "{PLACEHOLDER_DOMAIN}"  {FILL_IN}'),
    (r"sender_domains = \[\]", f'sender_domains = ["{PLACEHOLDER_DOMAIN}"]  {FILL_IN}: the domains reps send from'),
    (r'host = ""', f'host = ""  {FILL_IN}: e.g. "smtp.office365.com" or "smtp.gmail.com"'),
    (r'username = ""', f'username = ""  {FILL_IN}: the login (its password: SMTP_PASSWORD in .env)'),
]
_SALESFORCE = [(r'kind = "csv"', 'kind = "salesforce"')]

HEADER = """\
# Written by `repsend init`. Fill in the lines marked FILL IN; secrets go in .env (see .env.example).
"""

ENV_EXAMPLE = """\
# repsend's secrets. Copy this file to .env beside repsend.toml (or into the folder the job starts in),
# fill in what your setup uses, and never commit .env. A variable set in the environment wins over .env.
# repsend never prints, logs or stores any of these.

# The mail server's password, for [smtp] username (or SMTP_USERNAME).
SMTP_PASSWORD=
# Optional: these override [smtp] in repsend.toml.
# SMTP_HOST=
# SMTP_PORT=
# SMTP_USERNAME=
# SMTP_SECURITY=
# SMTP_CA_FILE=

# [sfa] kind = "salesforce": exactly one of these logins (README: Logging in to Salesforce).
# a) For a nightly job: OAuth 2.0 client credentials of a connected app with a Run As user;
#    SF_DOMAIN is your My Domain, e.g. acme or acme.my.salesforce.com.
# SF_CLIENT_ID=
# SF_CLIENT_SECRET=
# SF_DOMAIN=acme
# b) Or OAuth 2.0 JWT bearer: the connected app's consumer key, the API user, and the private key file
#    (pip install 'repsend[jwt]').
# SF_CLIENT_ID=
# SF_USERNAME=
# SF_PRIVATE_KEY_FILE=/etc/repsend/salesforce.key
# SF_DOMAIN=acme
# c) An access token from your org's own OAuth flow, and the instance it is for (it cannot renew itself).
# SF_INSTANCE_URL=https://acme.my.salesforce.com
# SF_ACCESS_TOKEN=
# d) Older orgs only, retiring in Summer '27: the username, password and security token (SOAP login).
# SF_USERNAME=
# SF_PASSWORD=
# SF_SECURITY_TOKEN=
# SF_DOMAIN=login

# [mail] unsubscribe_url: the secret that signs each mail's one-click unsubscribe link (16+ characters).
# REPSEND_UNSUBSCRIBE_SECRET=
# [inbox]: the password of the bounce and opt-out mailbox that `repsend inbox imap` reads.
# REPSEND_IMAP_PASSWORD=

# Optional: the send log in PostgreSQL instead of the SQLite file [log] database.
# REPSEND_DATABASE_URL=postgresql://user:password@host/db
"""

SUPPRESSION = """\
# Addresses repsend never mails, one per line, whatever the SFA says (# starts a comment).
"""

EXPORT_README = """\
Put the Salesforce CSV export here (Data Loader, or reports with API field names as headers):
User.csv, Contact.csv, Opportunity.csv and, optionally, OpportunityContactRole.csv.
The README's "A Salesforce CSV export" says which columns each needs.
"""


def config_text(sfa: Sfa = "csv", demo: bool = False) -> str:
    """The bundled config, made a folder's own: local paths; unless ``demo``, a placeholder company."""
    text = bundled.config_file().read_text(encoding="utf-8")
    changes = list(_LOCAL_PATHS)
    if not demo:
        changes += _YOUR_ORG
    if sfa == "salesforce":
        changes += _SALESFORCE
    for pattern, replacement in changes:
        text, count = re.subn(rf"^{pattern}$", lambda _, r=replacement: r, text, flags=re.MULTILINE)
        if count != 1:
            raise RuntimeError(f"repsend init: the bundled config has {count} lines like {pattern!r}, not one")
    return text if demo else HEADER + text


@dataclass(frozen=True)
class Plan:
    """What ``init`` writes: each file's path (relative to the folder) and content."""

    folder: Path
    files: dict[Path, bytes]


def _tree(source: Path, under: str) -> Iterable[tuple[Path, bytes]]:
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield Path(under) / path.relative_to(source), path.read_bytes()


def plan(folder: Path, sfa: Sfa = "csv", demo: bool = False) -> Plan:
    if demo and sfa != "csv":
        raise UsageError("--demo is a CSV export: it cannot go with --sfa salesforce")
    files: dict[Path, bytes] = {Path("repsend.toml"): config_text(sfa, demo).encode("utf-8")}
    # The templates and the legal footers, to edit: every mail is written from these.
    files.update(_tree(bundled.templates_dir(), "templates"))
    files[Path(".env.example")] = ENV_EXAMPLE.encode("utf-8")
    files[Path("suppressed.txt")] = SUPPRESSION.encode("utf-8")
    if demo:
        files.update(_tree(bundled.demo_dir(), "demo"))
    elif sfa == "csv":
        files[Path("export") / "README.txt"] = EXPORT_README.encode("utf-8")
    return Plan(folder, files)


def write(plan: Plan, force: bool = False) -> list[Path]:
    """Write every file, or none: an existing one stops it (exit 2, naming them) unless ``force``."""
    targets = {plan.folder / name: content for name, content in plan.files.items()}
    folders = [path for path in targets if path.is_dir()]
    if folders:
        raise UsageError(f"{', '.join(map(str, folders))}: a folder where a file goes; nothing was written")
    existing = [path for path in targets if path.exists() or path.is_symlink()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more of the files init writes)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0]}: already exists{more}; nothing was written (--force overwrites)")
    for path, content in targets.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except OSError as exc:  # the folder is a file, a read-only place, a full disk
            raise UsageError(f"{path}: cannot write it: {exc.strerror or exc}") from None
    return list(targets)


def next_steps(folder: Path, sfa: Sfa, demo: bool) -> str:
    """The three steps after ``init``, with ``--config`` unless the folder is the working directory."""
    import shlex

    config = folder / "repsend.toml"
    here = folder.resolve() == Path.cwd().resolve()
    option = "" if here else f" --config {shlex.quote(str(config))}"
    if demo:
        first = (f"Try the demo org copied to {folder / 'demo'}; for your own org, run `repsend init` in "
                 "another folder")
    else:
        where = ("the SF_* login in .env (copy .env.example)" if sfa == "salesforce"
                 else f"your export in {folder / 'export'}")
        first = (f"Fill in {config} (the lines marked FILL IN, and [mail] envelope_from: a bounce mailbox for "
                 f"`repsend inbox`), the templates in {folder / 'templates'}, SMTP_PASSWORD and {where}")
    return "\n".join([
        "Next:",
        f"  1. {first}.",
        f"  2. repsend doctor{option}",
        "     checks the config, the SFA, the mail server and the send log, without sending anything.",
        f"  3. repsend dormant --dry-run{option}",
        "     who would get a note, from which rep, and why everyone else would not.",
    ])
