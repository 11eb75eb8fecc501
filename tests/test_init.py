"""`repsend init` through the CLI in temporary folders, and where a run finds its config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from repsend import bundled
from repsend.settings import load_settings
from tests.conftest import ISOLATED
from tests.helpers import contact, deal, write_export
from tests.test_cli import DEMO_AS_OF, invoke, json_lines

TEMPLATE_FILES = {"templates/_legal/en.txt", "templates/_legal/ja.txt", "templates/dormant/en.txt",
                  "templates/dormant/ja.txt",
                  # The sample of A/B variants (README "Templates").
                  *(f"templates/dormant_ab/{lang}.{v}.txt" for lang in ("ja", "en") for v in ("a", "b"))}


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def keys(data: dict, prefix: str = "") -> set[str]:
    """Every key of a TOML document, dotted ([template.languages] counted as one table)."""
    found = set()
    for key, value in data.items():
        if isinstance(value, dict) and key != "languages" and not key.endswith("names") and key != "postal_addresses":
            found |= keys(value, f"{prefix}{key}.")
        else:
            found.add(prefix + key)
    return found


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def test_init_writes_a_commented_config_for_a_csv_org_that_loads(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    result = invoke("init", str(folder))
    assert result.exit_code == 0, result.stderr
    assert files_in(folder) == {"repsend.toml", ".env.example", "suppressed.txt", "export/README.txt"} | TEMPLATE_FILES
    # The templates and footers are the bundled ones, to edit.
    for name in TEMPLATE_FILES:
        assert (folder / name).read_bytes() == (bundled.root() / name).read_bytes()
    # Strict settings accept it; every path is the folder's own.
    settings = load_settings(folder / "repsend.toml", env={})
    assert settings.sfa.kind == "csv"
    assert settings.resolve(settings.sfa.path) == (folder / "export").resolve()
    assert settings.resolve(settings.template.dir) == (folder / "templates").resolve()
    assert settings.resolve(settings.audience.suppression_file) == (folder / "suppressed.txt").resolve()
    assert settings.database_url == f"sqlite:///{(folder / 'repsend.db').resolve()}"
    assert settings.company.domain == "example.com" and settings.mail.sender_domains == ["example.com"]
    # Every key is there, documented as in the bundled config: all its comments and a few more.
    bundled_text = bundled.config_file().read_text(encoding="utf-8")
    text = (folder / "repsend.toml").read_text(encoding="utf-8")
    assert keys(tomllib.loads(text)) == keys(tomllib.loads(bundled_text)) | {"audience.suppression_file"}
    assert set(comment_lines(bundled_text)) - set(comment_lines(text)) == {
        "# OpportunityContactRole.csv. The bundled demo org:", '# suppression_file = "suppressed.txt"'}
    values = str(tomllib.loads(text))
    assert "FILL IN" in text and "アクメ" not in values and "acme" not in values.lower()  # not the demo company
    # The three next steps.
    out = result.stdout
    assert "1. Fill in" in out
    assert f"2. repsend doctor --config {folder / 'repsend.toml'}" in out
    assert f"3. repsend dormant --dry-run --config {folder / 'repsend.toml'}" in out


def test_the_org_config_runs_once_the_export_is_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the folder itself: init without a folder, the steps without --config, and ./repsend.toml is found."""
    folder = tmp_path / "acme"
    folder.mkdir()
    monkeypatch.chdir(folder)
    result = invoke("init")
    assert result.exit_code == 0, result.stderr
    assert "--config" not in result.stdout and "2. repsend doctor\n" in result.stdout
    before = invoke("dormant", "--dry-run")
    assert before.exit_code == 2 and "User.csv" in before.stderr  # step 1 is not done yet
    rows = [contact(1, Email="c1@example.co.jp"), contact(2), contact(3)]
    write_export(folder / "export", rows, [deal(1, rows[1]["AccountId"])])
    (folder / "suppressed.txt").write_text("# ours\nc1@example.co.jp\n", encoding="utf-8")
    after = invoke("dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF)
    assert after.exit_code == 0, after.stderr
    assert "bundled demo config" not in after.stderr
    decisions = json_lines(after.stdout)[:-1]
    # The reps are at acme.example, not yet in [mail] sender_domains: fail closed until it is filled in.
    assert [d["reason"] for d in decisions] == ["suppressed", "active_deal", "sender_domain"]


def test_init_for_a_salesforce_org(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    result = invoke("init", str(folder), "--sfa", "salesforce")
    assert result.exit_code == 0, result.stderr
    assert "export/README.txt" not in files_in(folder)
    assert load_settings(folder / "repsend.toml", env={}).sfa.kind == "salesforce"
    assert "SF_* login in .env" in result.stdout


def test_env_example_names_every_secret(tmp_path: Path) -> None:
    invoke("init", str(tmp_path))
    text = (tmp_path / ".env.example").read_text(encoding="utf-8")
    secrets = [name for name in ISOLATED if name != "REPSEND_CONFIG"]
    assert [name for name in secrets if f"{name}=" not in text] == []
    # Copied as it is to .env, it sets nothing that could pick a login or a server.
    from dotenv import dotenv_values

    assert {k: v for k, v in dotenv_values(tmp_path / ".env.example").items() if v} == {}


def test_init_never_overwrites_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "repsend.toml").write_text("# mine\n", encoding="utf-8")
    result = invoke("init", str(folder))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"repsend: {folder / 'repsend.toml'}: already exists")
    assert "--force" in result.stderr
    assert (folder / "repsend.toml").read_text(encoding="utf-8") == "# mine\n"
    assert files_in(folder) == {"repsend.toml"}  # nothing else was written either


def test_a_folder_that_is_a_file_is_exit_2_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "acme").write_text("a file\n", encoding="utf-8")
    result = invoke("init", str(tmp_path / "acme"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"repsend: {tmp_path / 'acme' / 'repsend.toml'}: cannot write it")


def test_init_force_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    assert invoke("init", str(folder)).exit_code == 0
    (folder / "templates" / "dormant" / "ja.txt").write_text("edited\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not init's\n", encoding="utf-8")
    again = invoke("init", str(folder))
    assert again.exit_code == 2 and f"(and {len(TEMPLATE_FILES) + 3} more of the files init writes)" in again.stderr
    forced = invoke("init", str(folder), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert (folder / "templates" / "dormant" / "ja.txt").read_bytes() == (
        bundled.templates_dir() / "dormant" / "ja.txt").read_bytes()
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "not init's\n"


def test_the_demo_copy_runs_the_dry_run_as_the_bundled_demo(tmp_path: Path) -> None:
    folder = tmp_path / "try"
    result = invoke("init", "--demo", str(folder))
    assert result.exit_code == 0, result.stderr
    assert {f"demo/{p.name}" for p in bundled.demo_dir().iterdir() if p.is_file()} <= files_in(folder)
    config = folder / "repsend.toml"
    settings = load_settings(config, env={})
    assert settings.resolve(settings.sfa.path) == (folder / "demo").resolve()
    assert settings.resolve(settings.template.dir) == (folder / "templates").resolve()
    for args in (["--json"], []):
        copy = invoke("dormant", "--dry-run", "--as-of", DEMO_AS_OF, "--config", str(config), *args)
        demo = invoke("dormant", "--dry-run", "--as-of", DEMO_AS_OF, *args)
        assert copy.exit_code == demo.exit_code == 0, copy.stderr
        assert copy.stdout == demo.stdout
        assert "bundled demo config" in demo.stderr and "bundled demo config" not in copy.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--demo", "--sfa", "salesforce"], "--demo is a CSV export"),
    (["--sfa", "sap"], "'sap': use csv or salesforce"),
])
def test_init_usage_errors(tmp_path: Path, args: list[str], expected: str) -> None:
    result = invoke("init", str(tmp_path / "x"), *args)
    assert result.exit_code == 2 and expected in result.stderr
    assert not (tmp_path / "x").exists()


# -- which config a run reads -------------------------------------------------------------------


@pytest.fixture
def three_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A folder with ./repsend.toml (1 contact), another config (2) and a third (3), each its own export."""
    configs = {}
    for name, n in (("here", 1), ("env", 2), ("option", 3)):
        folder = tmp_path / name
        invoke("init", str(folder))
        write_export(folder / "export", [contact(i) for i in range(1, n + 1)])
        configs[name] = folder / "repsend.toml"
    monkeypatch.chdir(tmp_path / "here")
    return configs


def considered(result) -> int:
    assert result.exit_code == 0, result.stderr
    return json_lines(result.stdout)[-1]["considered"]


def test_the_config_search_order(three_configs: dict[str, Path]) -> None:
    args = ["dormant", "--dry-run", "--json", "--as-of", DEMO_AS_OF]
    assert considered(invoke(*args)) == 1  # ./repsend.toml
    env = {"REPSEND_CONFIG": str(three_configs["env"])}
    assert considered(invoke(*args, env=env)) == 2  # REPSEND_CONFIG beats ./repsend.toml
    assert considered(invoke(*args, "--config", str(three_configs["option"]), env=env)) == 3  # --config beats both


def test_the_bundled_demo_config_says_it_is_used(tmp_path: Path) -> None:
    result = invoke("dormant", "--dry-run", "--summary", "--as-of", DEMO_AS_OF)
    assert result.exit_code == 0
    assert (f"repsend: note: using the bundled demo config {bundled.config_file()} (no --config, REPSEND_CONFIG "
            "or ./repsend.toml") in result.stderr
    assert "bundled" not in result.stdout
