"""The seeded scenario driver: finishes, reproduces, covers every type, holds 10,000 sessions."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gws_simulator import Scenario, Simulator, SimulatorOptions
from gws_simulator.scenario import ScenarioDriver
from gws_simulator.world import World

FAST = Scenario(
    sessions=20, concurrent_per_agent=3, messages=(50, 50), interval_s=0.001, linger_s=60
)
ALL_TYPES = {
    "Text",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantRejoined",
    "TypingStarted",
    "TypingStopped",
    "PushUrl",
    "Notice",
    "CustomNotice",
    "TranscriptSaveDone",
}


def by_session(truth: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in truth:
        sessions[record["session_id"]].append(record)
    return dict(sessions)


def content(truth: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Everything but wall-clock time, in session order then creation order."""
    return sorted(
        (r["session_id"], r["account"], r["index"], r["type"], r["text"], r["visibility"])
        for r in truth
    )


async def play(seed: int, scenario: Scenario = FAST, **options: Any) -> list[dict[str, Any]]:
    async with Simulator(
        SimulatorOptions(agents=3, seed=seed, scenario=scenario, **options)
    ) as sim:
        await sim.scenario_finished()
        return sim.truth()


async def test_finite_scenario_finishes_quickly_and_is_well_formed() -> None:
    """20 sessions x 50 messages finish in seconds; every log is a well-formed conversation."""
    started = time.monotonic()
    truth = await play(seed=1)
    assert time.monotonic() - started < 5
    sessions = by_session(truth)
    assert len(sessions) == 20
    for records in sessions.values():
        indexed = [r for r in records if r["index"] != -1]
        assert [r["index"] for r in indexed] == list(range(1, len(indexed) + 1))
        assert len(indexed) >= 54
        assert [r["type"] for r in indexed[:2]] == ["ParticipantJoined", "ParticipantJoined"]
        assert indexed[-1]["type"] == "ParticipantLeft"
        assert [r["index"] for r in records if r["type"] == "TranscriptSaveDone"] in ([], [-1])
        if records[-1]["type"] == "TranscriptSaveDone":
            assert records[-1]["index"] == -1
    assert {r["type"] for r in truth} == ALL_TYPES
    assert any(r["visibility"] == "Agents" for r in truth)
    assert any(r["type"] == "TypingStarted" and r["text"] for r in truth)
    assert any(r["type"] == "PushUrl" and r["text"].startswith("https://") for r in truth)
    accounts = Counter(r["account"] for r in truth if r["index"] == 1)
    assert accounts == {"agent1": 7, "agent2": 7, "agent3": 6}


async def test_same_seed_same_conversations() -> None:
    """A seed reproduces sessions, types, texts and order; another seed does not."""
    first, second, other = await play(seed=7), await play(seed=7), await play(seed=8)
    assert content(first) == content(second)
    assert content(first) != content(other)
    for records in by_session(first).values():
        ordered = [r["index"] for r in records]
        assert ordered == sorted(ordered, key=lambda index: index if index > 0 else 10**9)


async def test_ids_look_like_gws_ids() -> None:
    """Session ids are 16 GWS-style characters; participant ids are 16 hex digits."""
    scenario = Scenario(sessions=6, messages=(3, 5), interval_s=0.001, linger_s=60)
    headers = {"Authorization": "Basic " + base64.b64encode(b"agent1:password").decode()}
    async with Simulator(SimulatorOptions(agents=1, seed=2, scenario=scenario)) as sim:
        await sim.scenario_finished()
        async with aiohttp.ClientSession() as http:
            url = f"{sim.base_url}/api/v2/me/smssessions?fields=*"
            async with http.get(url, headers=headers) as response:
                sessions = (await response.json())["smssessions"]
            session_id = sessions[0]["id"]
            url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}/messages"
            async with http.get(url, headers=headers) as response:
                messages = (await response.json())["messages"]
        truth = [r for r in sim.truth() if r["session_id"] == session_id]
    assert len(sessions) == 6
    assert all(re.fullmatch(r"0000[A-Z]a[0-9A-Z]{10}", s["id"]) for s in sessions)
    assert all(re.fullmatch(r"[0-9A-F]{16}", m["from"]["participantId"]) for m in messages)
    served = [
        (m["index"], m["type"], m.get("text", m.get("noticeText", m.get("url"))), m["visibility"])
        for m in messages
    ]
    assert served == [(r["index"], r["type"], r["text"], r["visibility"]) for r in truth]


async def test_truth_file_is_written_as_it_goes_and_complete_at_exit(tmp_path: Path) -> None:
    """The truth file gains lines during the run and equals sim.truth() at exit."""
    path = tmp_path / "truth.jsonl"
    scenario = Scenario(sessions=4, messages=(5, 5), interval_s=0.001, linger_s=60)
    async with Simulator(
        SimulatorOptions(agents=2, seed=3, scenario=scenario, truth_path=path)
    ) as sim:
        await sim.scenario_finished()
        assert path.read_bytes().count(b"\n") == len(sim.truth())
        sim.world.create_session("agent1")
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines == sim.truth()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[0]["created_at"])


async def test_completed_sessions_linger_then_disappear() -> None:
    """Completed sessions stay listed for linger_s, then reads answer statusCode 6."""
    scenario = Scenario(sessions=2, messages=(1, 1), interval_s=0.001, linger_s=0.2)
    async with Simulator(SimulatorOptions(agents=1, seed=4, scenario=scenario)) as sim:
        await sim.scenario_finished()
        assert {s.state for s in sim.world.sessions.values()} == {"Completed"}
        await asyncio.sleep(0.3)
        assert sim.world.sessions == {}


def test_agents_never_hold_more_than_their_share() -> None:
    """At every tick each agent has at most concurrent_per_agent Chatting sessions."""
    world = World(agents=2, seed=1)
    scenario = Scenario(sessions=30, concurrent_per_agent=2, messages=(2, 6), interval_s=1.0)
    driver = ScenarioDriver(world, scenario, seed=1)
    driver.begin(0.0)
    now = 0.0
    while not driver.finished.is_set():
        now += 0.25
        driver.run_once(now)
        chatting = Counter(s.account for s in world.sessions.values() if s.state == "Chatting")
        assert max(chatting.values(), default=0) <= 2
    assert len({r["session_id"] for r in world.truth()}) == 30


def test_endless_scenario_keeps_starting_sessions() -> None:
    """sessions=None never finishes and keeps opening new sessions."""
    world = World(agents=1, seed=1)
    driver = ScenarioDriver(world, Scenario(sessions=None, messages=(1, 1), interval_s=1.0), seed=1)
    driver.begin(0.0)
    for step in range(1, 200):
        driver.run_once(step * 0.5)
    assert len({r["session_id"] for r in world.truth()}) > 10
    assert not driver.finished.is_set()


def test_ten_thousand_concurrent_sessions_are_cheap() -> None:
    """100 agents x 100 sessions all open within one interval, in well under a few seconds."""
    world = World(agents=100, seed=1)
    scenario = Scenario(sessions=None, concurrent_per_agent=100, messages=(10, 40), interval_s=2.0)
    driver = ScenarioDriver(world, scenario, seed=1)
    started = time.process_time()
    driver.begin(0.0)
    driver.run_once(2.0)
    assert len(world.sessions) == 10_000
    assert time.process_time() - started < 5


async def test_backlog_is_all_there_before_the_first_request() -> None:
    """Backlog sessions exist with all their messages when serving starts, and stay open."""
    scenario = Scenario(sessions=0, backlog=(7, 30))
    headers = {"Authorization": "Basic " + base64.b64encode(b"agent2:password").decode()}
    async with Simulator(SimulatorOptions(agents=3, seed=5, scenario=scenario)) as sim:
        assert sim.world.message_count() == 7 * 30
        async with aiohttp.ClientSession() as http:
            url = f"{sim.base_url}/api/v2/me/smssessions?fields=*"
            async with http.get(url, headers=headers) as response:
                listed = (await response.json())["smssessions"]
            url = f"{sim.base_url}/api/v2/me/smssessions/{listed[0]['id']}/messages"
            async with http.get(url, headers=headers) as response:
                messages = (await response.json())["messages"]
        await asyncio.sleep(0.05)
        truth = sim.truth()
        states = {session.state for session in sim.world.sessions.values()}
    assert len(truth) == 7 * 30
    assert len(listed) == 2
    assert [m["index"] for m in messages] == list(range(1, 31))
    assert [m["type"] for m in messages[:2]] == ["ParticipantJoined", "ParticipantJoined"]
    assert states == {"Chatting"}
    assert Counter(r["account"] for r in truth if r["index"] == 1) == {
        "agent1": 3,
        "agent2": 2,
        "agent3": 2,
    }


async def test_backlog_is_seeded() -> None:
    """The same seed gives the same backlog; backlog ids never collide with scenario ids."""
    scenario = Scenario(sessions=5, messages=(2, 2), interval_s=0.001, backlog=(5, 12))
    first = await play(seed=3, scenario=scenario)
    second = await play(seed=3, scenario=scenario)
    assert content(first) == content(second)
    assert len(by_session(first)) == 10


async def test_stopped_scenario_freezes_the_world() -> None:
    """After stop_scenario() nothing is created, ended or removed; reads still work."""
    scenario = Scenario(sessions=None, messages=(50, 50), interval_s=0.002, linger_s=0.01)
    async with Simulator(SimulatorOptions(agents=2, seed=6, scenario=scenario)) as sim:
        await asyncio.sleep(0.1)
        await sim.stop_scenario()
        created, sessions = sim.world.message_count(), set(sim.world.sessions)
        await asyncio.sleep(0.1)
        assert (sim.world.message_count(), set(sim.world.sessions)) == (created, sessions)
        await sim.stop_scenario()
    assert created > 10


@pytest.mark.parametrize(
    "changes",
    [
        {"backlog": (-1, 5)},
        {"sessions": -1},
        {"concurrent_per_agent": 0},
        {"messages": (5, 2)},
        {"interval_s": -1.0},
        {"type_weights": (("Bogus", 1.0),)},
        {"type_weights": (("Text", 0.0),)},
        {"transcript_share": 1.5},
        {"queue_share": -0.1},
        {"transfer_share": 0.6, "queue_share": 0.6},
        {"queue_wait_s": -1.0},
    ],
)
def test_scenario_rejects_bad_settings(changes: dict[str, Any]) -> None:
    """Impossible scenario settings raise ValueError."""
    with pytest.raises(ValueError, match=r"must|need"):
        Scenario(**changes)


HANDOFFS = Scenario(
    sessions=30,
    concurrent_per_agent=2,
    messages=(12, 12),
    interval_s=0.001,
    linger_s=60,
    transfer_share=0.25,
    conference_share=0.25,
    consult_share=0.2,
    queue_share=0.2,
    queue_wait_s=0.01,
)


async def play_handoffs(seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The truth and /_sim/views of a finished HANDOFFS run with 3 agents."""
    async with Simulator(SimulatorOptions(agents=3, seed=seed, scenario=HANDOFFS)) as sim:
        await sim.scenario_finished()
        async with aiohttp.ClientSession() as http, http.get(f"{sim.base_url}/_sim/views") as got:
            views: list[dict[str, Any]] = (await got.json())["sessions"]
        return sim.truth(), views


async def test_handoff_scenario_ends_every_session_and_is_seeded() -> None:
    """Transfers, conferences, consults and queues: all end, several viewers, same seed same run."""
    truth, views = await play_handoffs(seed=11)
    assert len(views) == 30
    assert all(entry["ended"] and not entry["queued"] for entry in views)
    sessions = by_session(truth)
    handled_by = {
        session_id: list(dict.fromkeys(r["account"] for r in records))
        for session_id, records in sessions.items()
    }
    viewed_by = {entry["session_id"]: entry["accounts"] for entry in views}
    for session_id, accounts in handled_by.items():
        # Every account that handled a message had a view, in the same order.
        assert [a for a in viewed_by[session_id] if a in accounts] == accounts
    transferred = [sid for sid, accounts in handled_by.items() if len(accounts) > 1]
    assert len(transferred) >= 5
    assert all(len(viewed_by[sid]) > 1 for sid in transferred)
    guests = [sid for sid, accounts in viewed_by.items() if len(accounts) > len(handled_by[sid])]
    assert len(guests) >= 5
    for records in sessions.values():
        indexed = [r["index"] for r in records if r["index"] != -1]
        assert indexed == list(range(1, len(indexed) + 1))
    again, _ = await play_handoffs(seed=11)
    assert content(again) == content(truth)


async def test_a_lone_agent_gets_its_queued_sessions_back() -> None:
    """With one agent only queue handoffs happen, and the same agent picks the session up."""
    scenario = dataclasses.replace(
        HANDOFFS,
        sessions=4,
        agents_only_share=0.0,
        transfer_share=0.25,
        conference_share=0.0,
        consult_share=0.0,
        queue_share=0.75,
    )
    async with Simulator(SimulatorOptions(agents=1, seed=2, scenario=scenario)) as sim:
        await sim.scenario_finished()
        sessions = list(sim.world.interactions.values())
        joins = Counter(r["session_id"] for r in sim.truth() if r["type"] == "ParticipantJoined")
    assert all(session.ended and session.viewers == ["agent1"] for session in sessions)
    # Customer and agent join; a queued session adds the agent's second join.
    assert sorted(joins.values())[-1] == 3
    assert set(joins.values()) <= {2, 3}


async def test_no_scenario_is_finished_at_once() -> None:
    """Without a scenario, scenario_finished() returns immediately and the world is empty."""
    async with Simulator(SimulatorOptions(agents=1)) as sim:
        await sim.scenario_finished()
        assert sim.truth() == []
