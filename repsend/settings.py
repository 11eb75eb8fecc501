"""config/repsend.toml + the environment + .env -> validated Settings, with errors a person can act on.

The config file holds everything but secrets; secrets (SF_*, SMTP_PASSWORD, REPSEND_DATABASE_URL) come
only from the environment or a ``.env`` file beside the working directory. Paths in the config file are
relative to the file itself, so a nightly job may run from any directory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from repsend.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PACKAGE_ROOT / "config" / "repsend.toml"

Days = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SfaSettings(_Section):
    kind: Literal["csv", "salesforce"] = "csv"
    path: Path = Path("demo")
    encoding: str = "utf-8"
    contact_fields: list[str] = []
    api_version: str = "59.0"
    bulk_threshold: Annotated[int, Field(ge=0)] = 0
    # kind = "salesforce": an API user that may not see every Contact and Opportunity stops the run ("fail"),
    # or runs on what it sees, saying so once ("allow").
    partial_visibility: Literal["fail", "allow"] = "fail"
    # kind = "salesforce": a Lead that opted out blocks the contacts with its address.
    lead_opt_outs: bool = True

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; use for example 'utf-8' or 'cp932'") from None
        return value


class AudienceSettings(_Section):
    dormant_after_days: Days = 180
    active_deal_scope: Literal["account", "contact_role"] = "account"
    fallback_sender: str = ""
    cooldown_days: Days = 90
    suppression_file: Path | None = None


class CampaignSettings(_Section):
    name: Annotated[str, Field(min_length=1)] = "dormant"
    template: Annotated[str, Field(min_length=1)] = "dormant"


class TemplateSettings(_Section):
    dir: Path = Path("../templates")
    default_language: Annotated[str, Field(min_length=1)] = "ja"
    language_field: str = "MailingCountry"
    languages: dict[str, str] = {}


class CompanySettings(_Section):
    name: Annotated[str, Field(min_length=1)]
    postal_address: Annotated[str, Field(min_length=1)]
    # The same in another language's mails, by template language: {en = "Acme K.K."}.
    names: dict[str, Annotated[str, Field(min_length=1)]] = {}
    postal_addresses: dict[str, Annotated[str, Field(min_length=1)]] = {}
    opt_out: Annotated[str, Field(min_length=1)]
    domain: Annotated[str, Field(min_length=1)]


class MailSettings(_Section):
    transport: Literal["smtp", "outbox"] = "smtp"
    outbox_dir: Path = Path("outbox")
    envelope_from: str = ""
    unsubscribe_url: str = ""
    sender_domains: list[str] = []
    max_consecutive_failures: Annotated[int, Field(ge=1)] = 5


class SmtpSettings(_Section):
    host: str = ""
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    timeout: Annotated[float, Field(gt=0)] = 30.0
    ca_file: Path | None = None


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
    database: Path = Path("repsend.db")


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

    # Not from the file: where it was, and the environment (with .env) the run sees.
    config_path: Path = Path("repsend.toml")
    env: dict[str, str] = {}

    def resolve(self, path: Path) -> Path:
        """A path from the config file, taken relative to the file."""
        path = Path(os.path.expanduser(path))
        return path if path.is_absolute() else (self.config_path.parent / path).resolve()

    @property
    def database_url(self) -> str:
        url = self.env.get("REPSEND_DATABASE_URL", "")
        return url or f"sqlite:///{self.resolve(self.log.database)}"


def load_env(env: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> dict[str, str]:
    """The process environment over ``.env``: a variable already set wins, as with docker and systemd."""
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ if env is None else env)
    return merged


def load_settings(config: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the config; ``config`` beats REPSEND_CONFIG beats the bundled default."""
    environ = load_env(env)
    if config is None:
        config = Path(environ["REPSEND_CONFIG"]) if environ.get("REPSEND_CONFIG") else DEFAULT_CONFIG
    config = config.expanduser()
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
    for forbidden in ("config_path", "env"):
        if forbidden in data:
            raise ConfigError(f"{config}: {forbidden}: unknown key")
    try:
        settings = Settings(**data, config_path=config.resolve(), env=environ)
    except ValidationError as exc:
        raise ConfigError(_explain(config, exc)) from None
    _check_paths(settings)
    return settings


def _explain(config: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0] if loc else "?"
        kind = error["type"]
        if kind == "extra_forbidden":
            what = "unknown key"
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
