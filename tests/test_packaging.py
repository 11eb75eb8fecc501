"""repsend as people install it: a wheel built from the source, installed into a fresh virtual environment
in a temporary folder, run from another folder, away from the checkout.

The wheel is built with `pip wheel` (what `python -m build` and `pipx install .` also do through
setuptools) and installed without its dependencies, which the fresh venv takes from this environment:
the test reaches no network, and it is the only one that proves a non-editable install finds its config,
templates and demo org.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.test_cli import DEMO_AS_OF, invoke

# What the wheel is built from: the files pyproject.toml packages, nothing else of the checkout.
SOURCES = ("pyproject.toml", "README.md", "repsend", "config", "templates")


def clean_env() -> dict[str, str]:
    """The environment without repsend's variables or anything that could put the checkout on sys.path."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("REPSEND_", "SF_", "SMTP_", "PYTHON", "VIRTUAL_ENV"))}


def test_every_package_under_repsend_is_listed_in_pyproject() -> None:
    """pyproject.toml lists its packages (the bundled folders are mapped, not found): a new subpackage
    left out of the list would be missing from the wheel."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "repsend").rglob("__init__.py")}
    assert found - listed == set()
    assert {"repsend._bundled.config", "repsend._bundled.templates"} <= listed


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh virtual environment with repsend installed from a wheel built from a copy
    of the sources (so that no build/ folder of the checkout leaks stale files into it)."""
    top = tmp_path_factory.mktemp("wheel")
    source = top / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
        else:
            shutil.copy2(REPO / name, source / name)
    dist = top / "dist"
    env = clean_env()
    # No network: the build uses this environment's setuptools, and the fresh venv takes repsend's
    # dependencies from this environment's site-packages (a .pth file after its own, so that the wheel's
    # repsend, not the checkout's editable one, is the one imported).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(source)], check=True, env=env, capture_output=True, timeout=300)
    wheel = next(dist.glob("repsend-*.whl"))
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, env=env, capture_output=True, text=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "zz_test_dependencies.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, env=env, capture_output=True, timeout=600)
    return venv / "bin"


def run_installed(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "repsend"), *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=120)


def test_the_wheel_runs_the_demo_dry_run_as_the_checkout_does(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["--json"], []):
        wheel = run_installed(installed, elsewhere, "dormant", "--dry-run", "--as-of", DEMO_AS_OF, *args)
        assert wheel.returncode == 0, wheel.stderr
        checkout = invoke("dormant", "--dry-run", "--as-of", DEMO_AS_OF, *args)
        assert checkout.exit_code == 0, checkout.stderr
        assert wheel.stdout == checkout.stdout
        # The demo config says it is the one used, and it is the installed copy, not the checkout's.
        assert "using the bundled demo config" in wheel.stderr
        assert str(installed.parent) in wheel.stderr and str(REPO) not in wheel.stderr
    assert not list(elsewhere.iterdir())  # a dry run writes nothing, here or anywhere
    version = run_installed(installed, elsewhere, "--version")
    assert version.returncode == 0 and version.stdout.startswith("repsend ")


def test_the_wheel_s_init_writes_an_org_and_a_demo_that_run(installed: Path, tmp_path: Path) -> None:
    """`repsend init` from the wheel: the org's config loads (only its export is missing), and the demo copy
    runs the dry run exactly as the checkout's demo."""
    org = run_installed(installed, tmp_path, "init", "acme")
    assert org.returncode == 0, org.stderr
    first = run_installed(installed, tmp_path / "acme", "dormant", "--dry-run")  # finds ./repsend.toml
    assert first.returncode == 2 and f"{tmp_path / 'acme' / 'export' / 'User.csv'}: file not found" in first.stderr
    demo = run_installed(installed, tmp_path, "init", "--demo", "try")
    assert demo.returncode == 0, demo.stderr
    copy = run_installed(installed, tmp_path, "dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF,
                         "--config", str(tmp_path / "try" / "repsend.toml"))
    assert copy.returncode == 0, copy.stderr
    assert copy.stdout == invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF).stdout
