"""config/repsend.toml + the environment + .env -> validated Settings, with errors a person can act on.

The config file holds everything but secrets; secrets (SF_*, SMTP_PASSWORD, REPSEND_DATABASE_URL) come
only from the environment or a ``.env`` file beside the working directory. Paths in the config file are
relative to the file itself, so a nightly job may run from any directory.

Which config: ``--config``, else ``REPSEND_CONFIG``, else ``./repsend.toml``, else the bundled demo config
(repsend/bundled.py), which says so on stderr.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from repsend import bundled
from repsend.errors import ConfigError

# The config a folder holds for itself (what `repsend init` writes), looked for in the working directory.
LOCAL_CONFIG = "repsend.toml"

Days = Annotated[int, Field(ge=0)]

# C0, DEL and C1: what no value that goes into a mail header (or an SMTP command) may hold.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _header_value(value: str) -> str:
    """A config value that goes into every mail's headers or envelope: a CR or LF there would stop the
    real run at its first mail (or break the header), and the dry run would not have said so."""
    if _CONTROL.search(value) is not None:
        raise ValueError("holds a control character (CR, LF, TAB, ...); it goes into every mail's headers")
    return value


class _Section(BaseModel):
    # Strict: a string is not a number ("20"), nor a boolean a number (true): a value of the wrong type
    # stops the run instead of being read as something it does not say.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# A path in the config file, relative to the file: TOML writes it as a string.
ConfigPath = Annotated[Path, Field(strict=False)]

# [template.languages] when the config says nothing: the table config/repsend.toml documents.
DEFAULT_LANGUAGES = {"Japan": "ja", "日本": "ja", "JP": "ja", "United States": "en", "USA": "en", "US": "en",
                     "United Kingdom": "en", "UK": "en", "Singapore": "en", "Australia": "en", "Canada": "en"}


class SfaSettings(_Section):
    kind: Literal["csv", "salesforce"] = "csv"
    path: ConfigPath = Path("demo")
    encoding: str = "utf-8"
    contact_fields: list[str] = []
    # kind = "salesforce": the REST API version, independent of the SOAP login's (sfa/salesforce.py pins that)
    api_version: str = "64.0"
    bulk_threshold: Annotated[int, Field(ge=0)] = 0
    # kind = "salesforce": an API user that may not see every Contact and Opportunity stops the run ("fail"),
    # or runs on what it sees, saying so once ("allow").
    partial_visibility: Literal["fail", "allow"] = "fail"
    # kind = "salesforce": a Lead that opted out blocks the contacts with its address.
    lead_opt_outs: bool = True
    # Each sent mail a completed Task in the SFA, each opt-out HasOptedOutOfEmail there (``writes_back``);
    # unset: on for Salesforce, off for a CSV export (whose Task.csv a person imports: ``repsend sync --export``).
    log_activity: bool | None = None

    @property
    def writes_back(self) -> bool:
        return self.log_activity if self.log_activity is not None else self.kind == "salesforce"
    # kind = "csv": the safety data an admin accepts the export lacks (by default each gap stops the run).
    allow_missing: list[str] = []
    # kind = "csv": header label -> API name, over csv_format's tables (a report export writes labels).
    columns: dict[str, str] = {}

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        from repsend.sfa.csv_format import export_codec

        try:
            export_codec(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; use for example 'utf-8' or 'cp932'") from None
        return value

    @field_validator("allow_missing")
    @classmethod
    def _known_gaps(cls, value: list[str]) -> list[str]:
        import difflib

        from repsend.sfa.csv_format import SAFETY_GAPS

        for name in value:
            if name not in SAFETY_GAPS:
                nearest = difflib.get_close_matches(name, list(SAFETY_GAPS), n=1, cutoff=0.6)
                hint = f" (did you mean `{nearest[0]}`?)" if nearest else ""
                raise ValueError(f"{name!r} is not a gap repsend knows{hint}; known: {', '.join(SAFETY_GAPS)}")
        return value

    @field_validator("columns")
    @classmethod
    def _api_names(cls, value: dict[str, str]) -> dict[str, str]:
        for label, name in value.items():
            if not label.strip() or not name.strip():
                raise ValueError(f"{label!r} = {name!r}: a header label and an API name, neither empty")
        return value


class AudienceSettings(_Section):
    dormant_after_days: Days = 180
    active_deal_scope: Literal["account", "contact_role"] = "account"
    fallback_sender: str = ""
    cooldown_days: Days = 90
    suppression_file: ConfigPath | None = None


class CampaignSettings(_Section):
    name: Annotated[str, Field(min_length=1)] = "dormant"
    template: Annotated[str, Field(min_length=1)] = "dormant"
    # An address the server refused (5xx) in this campaign is skipped as previously_failed unless true.
    retry_failed: bool = False
    # The share of the contacts who would be mailed that is kept unmailed, to compare outcomes against.
    holdout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class TemplateSettings(_Section):
    dir: ConfigPath = Path("../templates")
    default_language: Annotated[str, Field(min_length=1)] = "ja"
    language_field: str = "MailingCountry"
    languages: dict[str, str] = DEFAULT_LANGUAGES


class CompanySettings(_Section):
    name: Annotated[str, Field(min_length=1)]
    postal_address: Annotated[str, Field(min_length=1)]
    # The same in another language's mails, by template language: {en = "Acme K.K."}.
    names: dict[str, Annotated[str, Field(min_length=1)]] = {}
    postal_addresses: dict[str, Annotated[str, Field(min_length=1)]] = {}
    opt_out: Annotated[str, Field(min_length=1)]
    domain: Annotated[str, Field(min_length=1)]

    @field_validator("domain")
    @classmethod
    def _message_id_domain(cls, value: str) -> str:
        from repsend.models import wire_domain

        if " " in _header_value(value):
            raise ValueError("a domain has no spaces")
        return wire_domain(value)  # in Message-IDs: an internationalized domain as IDNA A-labels


class MailSettings(_Section):
    transport: Literal["smtp", "outbox"] = "smtp"
    outbox_dir: ConfigPath = Path("outbox")
    envelope_from: str = ""
    unsubscribe_url: str = ""
    sender_domains: list[str] = []
    max_consecutive_failures: Annotated[int, Field(ge=1)] = 5

    @field_validator("envelope_from", "unsubscribe_url")
    @classmethod
    def _in_every_mail(cls, value: str) -> str:
        return _header_value(value)


class SmtpSettings(_Section):
    host: str = ""
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    timeout: Annotated[float, Field(gt=0)] = 30.0
    ca_file: ConfigPath | None = None
    # UTF-8 local parts (山田@example.jp) are mailed with SMTPUTF8, and the server must offer it (else exit 3
    # before any mail); false: they are skipped as unsendable_address, in the dry run and the real run alike.
    smtputf8: bool = False
    # The name repsend gives in EHLO; empty: this machine's fully qualified name (transport.helo_name).
    helo_name: str = ""

    @field_validator("helo_name")
    @classmethod
    def _helo_shape(cls, value: str) -> str:
        # RFC 5321 4.1.1.1: a domain or an address literal; a space or CR/LF would end the command early.
        import re

        label = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
        if value and not re.fullmatch(rf"{label}(?:\.{label})*|\[(?:IPv6:)?[0-9A-Fa-f:.]+\]", value):
            raise ValueError("expected a host name such as 'mail.acme.example' (or an address literal such as "
                             "'[192.0.2.1]')")
        return value


class RateSettings(_Section):
    per_minute: Annotated[int, Field(ge=0)] = 20
    per_hour: Annotated[int, Field(ge=0)] = 300
    per_rep_per_day: Annotated[int, Field(ge=0)] = 30
    window: str = ""
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = []
    timezone: str = "Asia/Tokyo"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use for example 'Asia/Tokyo'") from None
        return value

    @field_validator("window")
    @classmethod
    def _window_shape(cls, value: str) -> str:
        if value:
            from repsend.throttle import parse_window

            parse_window(value)
        return value


class LogSettings(_Section):
    database: ConfigPath = Path("repsend.db")


class InboxSettings(_Section):
    """The IMAP mailbox `repsend inbox imap` reads (the bounce and opt-out address's); the password comes
    only from REPSEND_IMAP_PASSWORD."""

    host: str = ""
    port: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: 993 for ssl, 143 for starttls
    security: Literal["ssl", "starttls"] = "ssl"
    user: str = ""
    folder: str = "INBOX"
    ca_file: ConfigPath | None = None
    mark_seen: bool = False


class Settings(_Section):
    sfa: SfaSettings = SfaSettings()
    audience: AudienceSettings = AudienceSettings()
    campaign: CampaignSettings = CampaignSettings()
    template: TemplateSettings = TemplateSettings()
    company: CompanySettings
    mail: MailSettings = MailSettings()
    smtp: SmtpSettings = SmtpSettings()
    rate: RateSettings = RateSettings()
    log: LogSettings = LogSettings()
    inbox: InboxSettings = InboxSettings()

    # Not from the file: where it was, the environment (with .env) the run sees, and the .env files read.
    config_path: ConfigPath = Path("repsend.toml")
    env: dict[str, str] = {}
    env_files: tuple[ConfigPath, ...] = ()

    def resolve(self, path: Path) -> Path:
        """A path from the config file, taken relative to the file."""
        path = Path(os.path.expanduser(path))
        return path if path.is_absolute() else (self.config_path.parent / path).resolve()

    @property
    def database_url(self) -> str:
        url = self.env.get("REPSEND_DATABASE_URL", "")
        return url or f"sqlite:///{self.resolve(self.log.database)}"


def load_env(env: Mapping[str, str] | None = None, dotenv_paths: tuple[Path, ...] = ()) -> tuple[dict[str, str],
                                                                                           tuple[Path, ...]]:
    """The process environment over the ``.env`` files (the first file over the next): a variable already
    set wins, as with docker and systemd. Returns it and the files that were read."""
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    read: list[Path] = []
    for path in reversed(list(dict.fromkeys(p.resolve() for p in dotenv_paths))):
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
            read.insert(0, path)
    merged.update(os.environ if env is None else env)
    return merged, tuple(read)


def find_config(config: Path | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read: ``config`` (--config), REPSEND_CONFIG, ``./repsend.toml``, else the bundled
    demo config. Returns it and whether it is the bundled one."""
    if config is not None:
        return config.expanduser(), False
    if environ.get("REPSEND_CONFIG"):
        return Path(environ["REPSEND_CONFIG"]).expanduser(), False
    local = Path.cwd() / LOCAL_CONFIG
    if local.is_file():
        return local, False
    return bundled.config_file(), True


def load_settings(config: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config (``find_config`` says which one).

    Secrets come from the environment, then ``./.env``, then the ``.env`` beside the config file (a
    nightly job's config folder holds its secrets whatever folder the job starts in)."""
    environ, _ = load_env(env, (Path.cwd() / ".env",))
    config, demo = find_config(config, environ)
    if demo:
        # On stderr, so that a script reading --json is not disturbed, and a person is not misled.
        print(f"repsend: note: using the bundled demo config {config} (no --config, REPSEND_CONFIG or "
              f"./{LOCAL_CONFIG}; `repsend init` writes one for your org)", file=sys.stderr)
    # The bundled config's folder is repsend's own, never a place for secrets.
    env_paths = (Path.cwd() / ".env",) if demo else (Path.cwd() / ".env", config.parent / ".env")
    environ, env_files = load_env(env, env_paths)
    try:
        raw = config.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{config}: config file not found (set --config PATH or REPSEND_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{config}: cannot read the config file: {exc.strerror}") from None
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"{config}: the config file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config}: not valid TOML: {exc}") from None
    for forbidden in ("config_path", "env", "env_files"):
        if forbidden in data:
            raise ConfigError(f"{config}: {forbidden}: unknown key")
    try:
        settings = Settings(**data, config_path=config.resolve(), env=environ, env_files=env_files)
    except ValidationError as exc:
        raise ConfigError(_explain(config, exc)) from None
    _check_paths(settings)
    return settings


# What a value of the wrong type should have been, in the config file's words.
_EXPECTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string in quotes",
    "list_type": "a list, e.g. [\"a\", \"b\"]",
    "dict_type": "a table, e.g. { key = \"value\" }",
}


def _reads_as(text: str, kind: str) -> bool:
    """Whether ``text`` is what ``kind`` wants, quoted: "20" for a number, "true" for a boolean."""
    text = text.strip()
    if kind == "bool_type":
        return text.lower() in ("true", "false")
    try:
        int(text) if kind == "int_type" else float(text)
    except ValueError:
        return False
    return True


def _known_keys(loc: list[str]) -> list[str]:
    """The keys the config may have where ``loc`` points (a section, or the top level)."""
    model: Any = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return [name for name in model.model_fields if name not in ("config_path", "env", "env_files")]


def _explain(config: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0] if loc else "?"
        kind = error["type"]
        if kind == "extra_forbidden":
            import difflib

            nearest = difflib.get_close_matches(loc[-1], _known_keys(loc), n=1, cutoff=0.6)
            if len(loc) == 1:
                key, what = f"[{loc[0]}]", "unknown section"
                nearest = [f"[{n}]" for n in nearest]
            else:
                what = "unknown key"
            if nearest:
                what += f" (did you mean `{nearest[0]}`?)"
        elif kind in _EXPECTED:
            value = error["input"]
            shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)  # as TOML writes it
            what = f"expected {_EXPECTED[kind]}, got {shown}"
            if isinstance(value, str) and _reads_as(value, kind):
                what += " (a string: write it without quotes)"
        elif kind == "missing":
            what = "required key is missing"
        elif kind == "literal_error":
            what = f"expected {error['ctx']['expected']}, got {error['input']!r}"
        else:
            msg = error["msg"].removeprefix("Value error, ")
            what = f"{msg} (got {error['input']!r})" if not isinstance(error["input"], dict) else msg
        lines.append(f"{config}: {key}: {what}")
    return "\n".join(lines)


def _check_paths(settings: Settings) -> None:
    config = settings.config_path
    if settings.sfa.kind == "csv" and not settings.resolve(settings.sfa.path).is_dir():
        raise ConfigError(
            f"{config}: [sfa] path: {settings.resolve(settings.sfa.path)} is not a folder of CSV files"
        )
    if not settings.resolve(settings.template.dir).is_dir():
        raise ConfigError(f"{config}: [template] dir: {settings.resolve(settings.template.dir)} is not a folder")
    supp = settings.audience.suppression_file
    if supp is not None and not settings.resolve(supp).is_file():
        raise ConfigError(f"{config}: [audience] suppression_file: {settings.resolve(supp)} does not exist")
