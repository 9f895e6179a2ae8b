"""``gws-archiver config check`` and ``status``, and the server's bind rule at start-up."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tomllib
from contextlib import closing
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import load_config
from archiver.config_dump import config_digest
from archiver.state import PollStats
from archiver.store.migrate import migrate
from archiver.store.runs import start_run, stop_run

SECRET = "s3cret-pass-91d0"
TOKEN = "tok-5be0c2d7"
CONFIG = f"""
[gws]
base_url = "http://127.0.0.1:8090"
[[gws.accounts]]
username = "agent1"
password = "{SECRET}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_config_check_prints_the_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0; the output is TOML with defaults filled in and no secret in it."""
    path = write(tmp_path, CONFIG + f'[server]\nlisten = "0.0.0.0:9000"\ntoken = "{TOKEN}"\n')
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    printed = tomllib.loads(out)
    assert printed["poll"]["max_interval_s"] == 3.0
    assert printed["gws"]["accounts"][0]["password"] == "**********"
    assert printed["server"]["token"] == "**********"
    assert SECRET not in out
    assert TOKEN not in out


def test_config_check_rejects_a_bad_file_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value: exit 2, one stderr line naming the key."""
    path = write(tmp_path, CONFIG + "[server]\nkeepalive_s = 0\n")
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "server.keepalive_s" in err


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path: Path) -> None:
    """`run` with listen on 0.0.0.0 and no token: exit 2, one line naming server.listen."""
    path = write(tmp_path, CONFIG + '[server]\nlisten = "0.0.0.0:8765"\n')
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "server.listen" in result.stderr
    assert "token" in result.stderr


def test_non_loopback_bind_with_token_env_is_accepted(tmp_path: Path) -> None:
    """A token from the environment makes a wider bind valid."""
    path = write(
        tmp_path, CONFIG + '[server]\nlisten = "0.0.0.0:8765"\ntoken_env = "ARCHIVER_TOKEN"\n'
    )
    server = load_config(path, {"ARCHIVER_TOKEN": TOKEN}).server
    assert server.address == ("0.0.0.0", 8765)
    assert server.token is not None
    assert server.token.reveal() == TOKEN


def test_status_shows_a_run_whose_process_is_gone_as_crashed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 'running' row whose pid no longer exists is reported as crashed."""
    archive = tmp_path / "archive.sqlite3"
    with closing(sqlite3.connect(archive)) as conn:
        migrate(conn)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    run_id = start_run(archive, "test", "0" * 16, 0)
    with closing(sqlite3.connect(archive)) as conn, conn:
        conn.execute("UPDATE runs SET pid = ? WHERE run_id = ?", (int(gone.stdout), run_id))
    assert main(["status", "--archive", str(archive), "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert (run["run_id"], run["status"]) == (run_id, "crashed")


def test_status_lists_runs_newest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table shows each run's id and status, the newest on top."""
    archive = tmp_path / "archive.sqlite3"
    with closing(sqlite3.connect(archive)) as conn:
        migrate(conn)
    first = start_run(archive, "test", "0" * 16, 0)
    stop_run(archive, first, PollStats(), 0)
    second = start_run(archive, "test", "0" * 16, 0)
    assert main(["status", "--archive", str(archive)]) == 0
    table = capsys.readouterr().out.split("RUN", 1)[1].splitlines()[1:]
    assert [row.split()[:2] for row in table] == [[str(second), "running"], [str(first), "clean"]]


def test_config_digest_ignores_secrets_but_not_settings(tmp_path: Path) -> None:
    """Another password keeps the digest (secrets never reach it); another setting changes it."""
    base = config_digest(load_config(write(tmp_path, CONFIG)))
    other_secret = config_digest(load_config(write(tmp_path, CONFIG.replace(SECRET, "other"))))
    other_poll = config_digest(load_config(write(tmp_path, CONFIG + "[poll]\njitter = 0.2\n")))
    assert base == other_secret
    assert base != other_poll
