"""Logs as shipped: JSON lines, transitions logged once, context bound, no secret anywhere."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from archiver.config import Account, Secret
from archiver.logs import configure_logging
from gws_simulator import Simulator, SimulatorOptions
from tests.support import ended_sessions, wait_for
from tests.support.served import running, served_config

PASSWORD = "Pa55-w0rd-7c1e9b"
TOKEN = "tok-a41d93f2"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured as in production off a TTY (JSON lines), into a buffer."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    yield stream
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every log line, decoded (each must be one JSON object)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def run_credential_outage(tmp_path: Path) -> None:
    """Run a daemon with one session; GWS rejects its password for a while, then accepts it."""
    async with Simulator(SimulatorOptions(agents=1, seed=4)) as sim:
        account = sim.world.accounts["agent1"]
        account.password = PASSWORD
        config = served_config(sim.base_url, tmp_path / "archive.sqlite3", token=Secret(TOKEN))
        gws = dataclasses.replace(config.gws, accounts=(Account("agent1", Secret(PASSWORD)),))
        sim.world.create_session("agent1")
        async with running(dataclasses.replace(config, gws=gws)) as (daemon, _):
            poller = daemon.accounts[0]
            await wait_for(lambda: poller.health.healthy)
            account.password = "rotated-by-an-admin"
            await wait_for(lambda: poller.health.failures >= 5)
            account.password = PASSWORD
            await wait_for(lambda: poller.health.healthy)


async def test_credential_failure_warns_once_and_recovery_logs_once(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """Five failed session-list reads: one warning, one info on recovery, no repeats between."""
    await run_credential_outage(tmp_path)
    records = [
        (r["level"], r["event"])
        for r in lines(log_stream)
        if r["event"].startswith("session_list_") and r.get("account") == "agent1"
    ]
    assert records == [("warning", "session_list_failing"), ("info", "session_list_recovered")]


async def test_nothing_is_logged_between_failure_and_recovery(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """Between the first failure and the recovery only other states' transitions (info+)."""
    await run_credential_outage(tmp_path)
    records = lines(log_stream)
    events = [r["event"] for r in records]
    start, end = events.index("session_list_failing"), events.index("session_list_recovered")
    between = [
        (r["event"], r.get("session_id"))
        for r in records[start + 1 : end]
        if r["level"] != "debug" and not r["event"].endswith(("_failing", "_recovered"))
    ]
    transitions = [
        (r["event"], r.get("session_id")) for r in records[start:end] if r["level"] != "debug"
    ]
    assert between == []
    assert len(transitions) == len(set(transitions))


async def test_no_secret_appears_in_any_log_line(tmp_path: Path, log_stream: io.StringIO) -> None:
    """Neither the password, its Basic-auth form, nor the server token is ever logged."""
    await run_credential_outage(tmp_path)
    text = log_stream.getvalue()
    basic = base64.b64encode(f"agent1:{PASSWORD}".encode()).decode()
    assert lines(log_stream)
    assert PASSWORD not in text
    assert basic not in text
    assert TOKEN not in text


async def test_session_task_lines_carry_session_and_account_context(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """A line logged inside a session's task has session_id and account bound."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, seed=4)) as sim:
        session_id = sim.world.create_session("agent1")
        sim.world.append_message(session_id, "Text", text="bye")
        sim.world.end_session(session_id)
        async with running(served_config(sim.base_url, archive)):
            await wait_for(lambda: ended_sessions(archive) == 1)
    (ended,) = [r for r in lines(log_stream) if r["event"] == "session_ended"]
    assert (ended["session_id"], ended["account"]) == (session_id, "agent1")
