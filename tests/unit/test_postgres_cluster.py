"""The throwaway PostgreSQL cluster the PostgreSQL tests run against (tests/support/postgres.py)."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.postgres import PostgresCluster, PostgresError

pytestmark = pytest.mark.postgres  # skipped when no server is installed

_seen_databases: list[str] = []


def current_database(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def test_postgres_url_connects(postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    assert postgres_cluster.running
    assert postgres_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        settings = conn.execute(
            "SELECT current_setting('fsync'), current_setting('max_connections'),"
            " pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert settings == ("off", "200", "UTF8")


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_database(
    postgres_cluster: PostgresCluster, postgres_url: str, run: int
) -> None:
    name = current_database(postgres_url)
    with psycopg.connect(postgres_cluster.url()) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (_seen_databases,)
        ).fetchall()
    assert left == []  # the earlier run's database was dropped after it
    assert name not in _seen_databases
    _seen_databases.append(name)
    with psycopg.connect(postgres_url) as conn:
        # a table left by the other run would make this fail
        conn.execute("CREATE TABLE mine (run int)")
        conn.execute("INSERT INTO mine VALUES (%s)", (run,))


def test_stop_and_start_server_keep_the_data(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    port = postgres_cluster.port
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    postgres_cluster.stop_server()
    assert not postgres_cluster.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(postgres_url, connect_timeout=2).close()
    postgres_cluster.start_server()
    assert postgres_cluster.port == port
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(1,)]


def test_an_immediate_stop_recovers_what_was_committed(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SET synchronous_commit = on")  # the WAL is written at each commit
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (2)")
        conn.commit()
        postgres_cluster.stop_server(immediate=True)  # the server goes away under a session
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    postgres_cluster.start_server()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(2,)]


def test_a_failed_start_shows_the_server_log() -> None:
    cluster = PostgresCluster(settings={"max_connections": "-1"})
    with pytest.raises(PostgresError, match="max_connections") as failed:
        cluster.start()
    assert "its log ends" in str(failed.value)
    assert cluster.folder is None  # removed
    cluster.stop()  # safe after a failed start, and twice
    cluster.stop()
