"""The files that ship with repsend: the default (demo) config, the templates with their legal footers,
and the demo org.

Installed from a wheel (``pip install .``, ``pipx install .``) they are package data under
``repsend/_bundled/``, put there from the repository's top-level ``config/`` and ``templates/`` by
pyproject.toml's package-dir mapping; in a source checkout (``pip install -e .``, what the README and CI
use) they are those folders themselves, so an edit there is seen at once. Either way the layout is the
same (``config/repsend.toml`` beside ``templates/``), so the config's relative paths hold in both.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from repsend.errors import ConfigError


def root() -> Path:
    """The folder holding ``config/`` and ``templates/``."""
    shipped = files("repsend") / "_bundled"
    # A wheel installs as files on disk; a zipped install (zipimport) is not supported: polars and Jinja2
    # read real paths.
    if isinstance(shipped, Path) and (shipped / "config" / "repsend.toml").is_file():
        return shipped
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "config" / "repsend.toml").is_file():
        return checkout
    raise ConfigError(f"{shipped}: repsend's bundled config and templates are missing: reinstall repsend")


def config_file() -> Path:
    """The bundled demo config, ``config/repsend.toml``."""
    return root() / "config" / "repsend.toml"


def templates_dir() -> Path:
    """The bundled templates: ``<name>/<language>.txt`` and ``_legal/<language>.txt``."""
    return root() / "templates"


def demo_dir() -> Path:
    """The demo org, a Salesforce CSV export (``config/demo/``)."""
    return root() / "config" / "demo"
