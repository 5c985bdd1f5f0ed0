"""The throwaway PostgreSQL server fixture (tests/pg_server.py)."""

from __future__ import annotations

import pg_server
import pytest


@pytest.mark.postgres
def test_postgres_fixture_serves_queries(postgres_uri):
    from contextlib import closing

    import psycopg2  # the driver the test extra declares

    assert postgres_uri.startswith("postgresql://postgres@127.0.0.1:")
    with closing(psycopg2.connect(postgres_uri)) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1, current_database()")
        assert cur.fetchone() == (1, "voxsms")


def test_no_binaries_skips(monkeypatch):
    monkeypatch.setattr(pg_server, "find_pg_bin", lambda: None)
    monkeypatch.delenv(pg_server.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        pg_server.require_pg_bin()


def test_no_binaries_fails_when_required(monkeypatch):
    monkeypatch.setattr(pg_server, "find_pg_bin", lambda: None)
    monkeypatch.setenv(pg_server.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is not installed"):
        pg_server.require_pg_bin()


@pytest.mark.postgres
def test_slow_start_fails_with_server_log():
    bindir = pg_server.require_pg_bin()
    with (
        pytest.raises(RuntimeError, match=r"(?s)did not accept connections.*server log tail"),
        pg_server.running_postgres(bindir, timeout=0),
    ):
        pass
