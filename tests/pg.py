"""A real PostgreSQL for tests: a throwaway database per test module, a fresh schema per test.

Skipped, with the reason, only when the server cannot be reached (REPSEND_TEST_POSTGRES points
elsewhere than 127.0.0.1:5432).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from repsend import sendlog

ADMIN_URL = os.environ.get("REPSEND_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _admin_connect() -> Any:
    import psycopg2

    url = sa.make_url(ADMIN_URL)
    return psycopg2.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        connect_timeout=3,
    )


@pytest.fixture(scope="module")
def pg_database() -> Iterator[sa.URL]:
    """A uniquely named database for this module, dropped at teardown."""
    try:
        admin = _admin_connect()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means: skip
        pytest.skip(f"PostgreSQL not reachable at {sa.make_url(ADMIN_URL).render_as_string()}: {exc}".strip())
    admin.autocommit = True
    name = f"repsend_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(ADMIN_URL).set(database=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _fresh_schema(database: sa.URL) -> str:
    """A new, empty schema in the module's database, as a URL whose search_path starts there."""
    schema = f"s_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(sendlog._with_installed_driver(database))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return database.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)




@pytest.fixture
def postgres_url(pg_database: sa.URL) -> str:
    """A send log URL on the real PostgreSQL server, in a schema of its own."""
    return _fresh_schema(pg_database)
