from __future__ import annotations

import pytest

pytest_plugins = ["tests.smtp_server", "tests.pg", "tests.imap_server"]

ISOLATED = (
    "REPSEND_CONFIG", "REPSEND_DATABASE_URL", "SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN", "SF_DOMAIN",
    "SF_INSTANCE_URL", "SF_ACCESS_TOKEN", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD",
    "SMTP_SECURITY", "SMTP_CA_FILE", "SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_PRIVATE_KEY_FILE",
    "REPSEND_UNSUBSCRIBE_SECRET", "REPSEND_IMAP_PASSWORD",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's config, .env, credentials or send log."""
    for name in ISOLATED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
