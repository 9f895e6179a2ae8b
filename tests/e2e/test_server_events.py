"""``/events``: the SSE stream resumes from the archive with Last-Event-ID, filters, keeps alive."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from archiver.daemon import Daemon
from gws_simulator import Simulator, SimulatorOptions
from tests.support import archived_messages, query, wait_for
from tests.support.served import running, served, served_config


@dataclass(frozen=True)
class Frame:
    """One SSE message (``id`` and ``data``) or comment."""

    id: int | None
    data: dict[str, Any] | None
    comment: str | None = None


async def read_frames(response: aiohttp.ClientResponse, events: int) -> list[Frame]:
    """Read until ``events`` messages have arrived (comments are kept too)."""
    frames: list[Frame] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(30):
        while sum(f.data is not None for f in frames) < events:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith(":"):
                frames.append(Frame(None, None, line[1:].strip()))
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:
                frames.append(Frame(int(fields["id"]), json.loads(fields["data"])))
                fields = {}
    return frames


def server_url(daemon: Daemon) -> str:
    """The running daemon's status server URL."""
    assert daemon.server is not None
    return daemon.server.url


def archived_events(archive: Path, **where: str) -> list[tuple[int, str]]:
    """(seq, event_id) of every archived event, optionally of one type, in seq order."""
    sql = "SELECT seq, event_id FROM events"
    if "type" in where:
        sql += " WHERE type = ?"
    return [
        (seq, event_id) for seq, event_id in query(archive, sql + " ORDER BY seq", where.values())
    ]


async def add_messages(sim: Simulator, archive: Path, session_id: str, count: int) -> None:
    """Append ``count`` texts and wait until all are archived."""
    target = archived_messages(archive) + count
    for n in range(count):
        sim.world.append_message(session_id, "Text", text=f"message {n}")
    await wait_for(lambda: archived_messages(archive) == target)


async def test_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    """Disconnect mid-stream, restart the daemon, archive more, resume: every event once."""
    archive = tmp_path / "archive.sqlite3"
    async with (
        Simulator(SimulatorOptions(agents=1, seed=3)) as sim,
        aiohttp.ClientSession() as http,
    ):
        config = served_config(sim.base_url, archive)
        session_id = sim.world.create_session("agent1")
        async with running(config) as (daemon, _):
            await add_messages(sim, archive, session_id, 20)
            async with http.get(server_url(daemon) + "/events?after=0") as first:
                before = await read_frames(first, 8)
        # A new process: nothing of the old one's memory survives, only the archive.
        async with running(config) as (daemon, _):
            await add_messages(sim, archive, session_id, 20)
            last_id = str([f.id for f in before if f.id is not None][-1])
            remaining = len(archived_events(archive)) - 8
            async with http.get(
                server_url(daemon) + "/events", headers={"Last-Event-ID": last_id}
            ) as second:
                after = await read_frames(second, remaining)
        expected = archived_events(archive)

    received = [(f.id, f.data["id"]) for f in before + after if f.data is not None]
    assert received == expected
    assert all(f.id == f.data["seq"] for f in before + after if f.data is not None)


async def test_type_and_session_filters_select_events(tmp_path: Path) -> None:
    """?type=Text&session=ID carries only that session's Text events."""
    async with served(tmp_path) as s:
        wanted = s.sim.world.create_session("agent1")
        other = s.sim.world.create_session("agent1")
        await add_messages(s.sim, s.archive, other, 1)
        await add_messages(s.sim, s.archive, wanted, 3)
        async with s.http.get(s.url + f"/events?after=0&type=Text&session={wanted}") as response:
            frames = await read_frames(response, 3)

    events = [f.data for f in frames if f.data is not None]
    assert [(e["type"], e["session_id"]) for e in events] == [("Text", wanted)] * 3


async def test_idle_stream_gets_keepalive_comments(tmp_path: Path) -> None:
    """With nothing to send, a comment line arrives every keepalive_s."""
    async with served(tmp_path, keepalive_s=0.05) as s, s.http.get(s.url + "/events") as response:
        line = await asyncio.wait_for(response.content.readline(), 5)
    assert line == b": keep-alive\n"


async def test_unknown_event_type_is_a_bad_request(tmp_path: Path) -> None:
    """A misspelt type filter answers 400 instead of a silent, empty stream."""
    async with served(tmp_path) as s, s.http.get(s.url + "/events?type=Txet") as response:
        status, body = response.status, await response.text()
    assert status == 400
    assert "Txet" in body


async def test_open_stream_does_not_delay_daemon_shutdown(tmp_path: Path) -> None:
    """The daemon stops within a second while a client still holds a stream open."""
    async with served(tmp_path) as s, s.http.get(s.url + "/events") as response:
        assert response.status == 200
        s.task.cancel()
        done, _ = await asyncio.wait([s.task], timeout=1.0)
    assert done == {s.task}
    assert s.task.cancelled()
