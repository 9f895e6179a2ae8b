"""End to end over real HTTP: the simulator on 127.0.0.1, the daemon, a real SQLite file."""

from __future__ import annotations

from collections import Counter

from archiver.daemon import Daemon
from archiver.events import Event
from archiver.gws.models import MESSAGE_TYPES
from archiver.store.db import ArchiveLocation
from gws_simulator import Scenario, Simulator, SimulatorOptions
from tests.support import (
    archived_messages,
    compare,
    daemon_config,
    daemon_running,
    ended_sessions,
    query,
    wait_for,
)

SCENARIO = Scenario(
    sessions=24, concurrent_per_agent=3, messages=(40, 60), interval_s=0.003, linger_s=2.0
)


async def test_archive_equals_simulator_record(archive: ArchiveLocation) -> None:
    """Guarantees 1, 2, 5, 6: every message once, one event each, SessionEnded per session."""
    options = SimulatorOptions(agents=3, seed=11, scenario=SCENARIO)
    seen: list[Event] = []
    async with Simulator(options) as sim:
        daemon = Daemon(daemon_config(sim.base_url, archive, page_size=25))
        daemon.subscribe(seen.append)
        async with daemon_running(daemon):
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == SCENARIO.sessions)
            await wait_for(lambda: len(seen) >= query(archive, "SELECT count(*) FROM events")[0][0])
        truth = sim.truth()

    assert len(truth) >= 1000
    assert {r["type"] for r in truth} >= set(MESSAGE_TYPES) - {"NicknameUpdated"}
    result = compare(archive, truth)
    assert result.exact, result
    sessions = {r["session_id"] for r in truth}
    lifecycle = Counter(
        row[0] for row in query(archive, "SELECT type FROM events WHERE message_index IS NULL")
    )
    assert lifecycle["SessionStarted"] == len(sessions) == SCENARIO.sessions
    assert lifecycle["SessionEnded"] == len(sessions)
    message_events = [e for e in seen if e.type not in lifecycle]
    assert len(message_events) == len(truth)
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)


async def test_session_ending_mid_run_is_drained_then_ended(archive: ArchiveLocation) -> None:
    """Guarantee 6: messages written just before the end are archived before SessionEnded."""
    async with Simulator(SimulatorOptions(agents=1, seed=3, scenario=None)) as sim:
        session_id = sim.world.create_session("agent1")
        daemon = Daemon(daemon_config(sim.base_url, archive, agents=1))
        async with daemon_running(daemon):
            for n in range(30):
                sim.world.append_message(session_id, "Text", text=f"line {n}")
            await wait_for(lambda: archived_messages(archive) == 30)
            for n in range(30, 40):
                sim.world.append_message(session_id, "Text", text=f"line {n}")
            sim.world.end_session(session_id)
            await wait_for(lambda: ended_sessions(archive) == 1)
            sim.world.remove_session(session_id)
        truth = sim.truth()
    assert compare(archive, truth).exact
    (last,) = query(archive, "SELECT max(seq) FROM events WHERE message_index IS NOT NULL")
    (ended,) = query(archive, "SELECT seq FROM events WHERE type = 'SessionEnded'")
    assert ended[0] > last[0]


async def test_doc_quirks_and_csrf_archive_exactly(archive: ArchiveLocation) -> None:
    """Glued timestamps, ``L`` suffixes, ``TypingStopping``, ``smsession``, CSRF: all archived."""
    scenario = Scenario(sessions=8, concurrent_per_agent=2, messages=(20, 30), interval_s=0.003)
    options = SimulatorOptions(agents=2, seed=5, scenario=scenario, quirks=True, csrf=True)
    async with Simulator(options) as sim:
        daemon = Daemon(daemon_config(sim.base_url, archive, agents=2))
        async with daemon_running(daemon):
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions)
        truth = sim.truth()
    assert compare(archive, truth).exact
    assert daemon.stats.malformed == 0
    quirky = "SELECT count(*) FROM messages WHERE raw_json LIKE '%TypingStopping%'"
    assert query(archive, quirky)[0][0] > 0
    sent = query(archive, "SELECT session_id, message_index, sent_at FROM messages")
    assert sorted(sent) == sorted((r["session_id"], r["index"], r["created_at"]) for r in truth)
