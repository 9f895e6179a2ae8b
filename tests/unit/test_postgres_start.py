"""Starting on a PostgreSQL archive: an unreachable server or a newer schema is one line, exit 2."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from archiver.cli import main


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        '[gws]\nbase_url = "http://127.0.0.1:9"\n'
        '[[gws.accounts]]\nusername = "agent1"\npassword = "password"\n'
        f'[archive]\nurl = "{url}"\n'
    )
    return config


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f"postgresql://archiver:secret@127.0.0.1:{closed_port()}/x")
    assert main(["run", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "cannot open the archive postgresql://archiver:***@127.0.0.1" in error
    assert "secret" not in error


@pytest.mark.postgres
def test_newer_schema_is_one_line_and_exit_2(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (99, '099_future.sql', 'now')")
    assert main(["run", "--config", str(write_config(tmp_path, postgres_url))]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "schema version 99, newer than this gws-archiver knows" in error
