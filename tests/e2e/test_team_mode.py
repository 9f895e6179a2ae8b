"""Team mode end to end: one supervisor account archives every monitored agent's sessions,
against the simulator over real HTTP, with transfers, sessions running before the daemon,
a forced re-login, faults and SIGKILLs; and only allowed operations ever sent."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from pathlib import Path

import pytest

from archiver.config import PushConfig, ReconcileConfig, Secret, TeamConfig
from archiver.daemon import Daemon
from archiver.gws.client import ALLOWED_OPERATIONS
from gws_simulator import Simulator, SimulatorOptions
from gws_simulator.accounts import make_user_id
from tests.e2e.test_chaos import CHAOS
from tests.e2e.test_views_end_to_end import (
    admin,
    chaos_toml,
    handoff_scenario,
    lifecycle_problems,
)
from tests.support import (
    compare,
    config_toml,
    count,
    daemon_config,
    daemon_process,
    daemon_running,
    ended_sessions,
    kill_repeatedly,
    query,
    wait_for,
)

AGENTS = tuple(f"agent{n}" for n in range(1, 11))
SUPERVISOR = "supervisor1"
QUICK = ReconcileConfig(wait_s=1.0, retry_s=0.2, sweep_s=1.0)


def team_toml(existing: str, agents: tuple[str, ...] = AGENTS, username: str = SUPERVISOR) -> str:
    names = ", ".join(f'"{name}"' for name in agents)
    return (
        f'[team]\nusername = "{username}"\npassword = "password"\nagents = [{names}]\n'
        f'existing = "{existing}"\ncheck_s = 1.0\nretry_min_s = 0.2\nretry_max_s = 1.0\n'
    )


def team_config(existing: str = "report", agents: tuple[str, ...] = AGENTS) -> TeamConfig:
    return TeamConfig(
        username=SUPERVISOR,
        password=Secret("password"),
        agents=agents,
        existing=existing,
        check_s=0.5,
        retry_min_s=0.2,
        retry_max_s=1.0,
    )


async def agents_of(sim: Simulator) -> dict[str, set[str]]:
    """Per session, the user ids of the agent accounts that had it (the simulator's truth)."""
    views = await admin(sim, "GET", "views")
    return {
        entry["session_id"]: {make_user_id(a) for a in entry["accounts"] if a.startswith("agent")}
        for entry in views["sessions"]
    }


def recorded_agents(archive: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for session_id, agent_id in query(archive, "SELECT session_id, agent_id FROM session_agents"):
        found.setdefault(session_id, set()).add(agent_id)
    return found


def attribution_problems(truth: dict[str, set[str]], archive: Path) -> list[str]:
    """Sessions whose recorded agents are not exactly the agents who had them."""
    recorded = recorded_agents(archive)
    return [
        f"{sid}: had by {sorted(agents)}, recorded {sorted(recorded.get(sid, set()))}"
        for sid, agents in truth.items()
        if recorded.get(sid, set()) != agents
    ]


def forbidden_requests(sim: Simulator) -> list[str]:
    """Every request the simulator saw that carried an operation outside the allow-list."""
    return [
        f"{r.account} {r.method} {r.path} {r.operation}"
        for r in sim.requests
        if r.operation is not None and r.operation not in ALLOWED_OPERATIONS
    ]


@pytest.mark.timeout(300)  # a hung CometD connect under these faults costs up to a minute
async def test_supervisor_archives_ten_agents_through_faults_kills_and_a_relogin(
    tmp_path: Path,
) -> None:
    """Ten monitored agents, transfers between them, sessions running before the daemon,
    20% faults, 3 SIGKILLs and a forced re-login: every message once, each session attributed
    to exactly the agents who had it, and no operation outside the allow-list."""
    archive = tmp_path / "archive.sqlite3"
    config = tmp_path / "config.toml"
    log = tmp_path / "daemon.log"
    rng = random.Random(16)
    scenario = handoff_scenario(60, 2, 0.15)
    options = SimulatorOptions(
        agents=len(AGENTS), supervisors=1, seed=16, scenario=scenario, faults=CHAOS
    )
    async with Simulator(options) as sim:
        config.write_text(chaos_toml(sim.base_url, archive, agents=0) + team_toml("intrude"))
        await wait_for(lambda: len(sim.world.sessions) >= 5)  # already running at start
        await kill_repeatedly(config, log, 3, lambda: rng.uniform(1.0, 2.0))
        async with daemon_process(config, log, archive):
            before = sim.stats()["operations"].get("Monitor", 0)
            await admin(sim, "POST", "http-sessions/expire", {"account": SUPERVISOR})
            await wait_for(lambda: sim.stats()["operations"].get("Monitor", 0) >= before + 10)
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == scenario.sessions, 200)
            truth_agents = await agents_of(sim)
            await wait_for(lambda: not attribution_problems(truth_agents, archive), 30)
        truth = sim.truth()

    result = compare(archive, truth)
    assert result.exact, result
    assert lifecycle_problems(archive) == []
    assert attribution_problems(truth_agents, archive) == []
    assert sum(len(agents) > 1 for agents in truth_agents.values()) >= 10
    assert forbidden_requests(sim) == []
    assert {r.account for r in sim.requests} == {SUPERVISOR}
    assert count(archive, "SELECT count(*) FROM messages WHERE visibility = 'Supervisors'") > 0
    monitored = query(archive, "SELECT status, count(*) FROM team_agents GROUP BY 1")
    assert monitored == [("monitoring", len(AGENTS))]


async def test_sessions_running_at_start_are_reported_then_archived_from_history(
    tmp_path: Path,
) -> None:
    """``existing = "report"``: a session begun before monitoring is a known gap, not silence,
    and Interaction History archives it whole when it ends."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=2, supervisors=1, seed=8, scenario=None)) as sim:
        early = (await admin(sim, "POST", "sessions", {"account": "agent1"}))["session_id"]
        await admin(sim, "POST", f"sessions/{early}/messages", {"text": "before monitoring"})
        config = daemon_config(sim.base_url, archive, agents=0)
        config = dataclasses.replace(
            config, team=team_config("report", ("agent1", "agent2")), reconcile=QUICK
        )
        daemon = Daemon(config)
        async with daemon_running(daemon):
            await wait_for(lambda: count(archive, "SELECT count(*) FROM team_gaps") == 1)
            late = (await admin(sim, "POST", "sessions", {"account": "agent2"}))["session_id"]
            await admin(sim, "POST", f"sessions/{late}/messages", {"text": "monitored"})
            await admin(sim, "POST", f"sessions/{early}/messages", {"text": "still unseen"})
            for sid in (early, late):
                await admin(sim, "POST", f"sessions/{sid}/end")
            await wait_for(lambda: ended_sessions(archive) == 2)
        truth = sim.truth()

    assert compare(archive, truth).exact
    assert lifecycle_problems(archive) == []
    gaps = query(archive, "SELECT session_id, agent_id, status FROM team_gaps")
    assert gaps == [(early, make_user_id("agent1"), "gap")]
    tails = dict(query(archive, "SELECT session_id, tail FROM sessions"))
    assert tails == {early: "history", late: "drained"}
    assert daemon.stats.team["gap"] == 1


async def test_sessions_running_at_start_are_intruded_and_captured_live(tmp_path: Path) -> None:
    """``existing = "intrude"``: the running session is joined silently (Invited, then Accept)
    and archived live from its first message."""
    archive = tmp_path / "archive.sqlite3"
    options = SimulatorOptions(agents=1, supervisors=1, seed=9, scenario=None, monitor_accept=True)
    async with Simulator(options) as sim:
        sid = (await admin(sim, "POST", "sessions", {"account": "agent1"}))["session_id"]
        await admin(sim, "POST", f"sessions/{sid}/messages", {"text": "before monitoring"})
        config = daemon_config(sim.base_url, archive, agents=0)
        config = dataclasses.replace(config, team=team_config("intrude", ("agent1",)))
        async with daemon_running(Daemon(config)):
            await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") >= 1)
            await admin(sim, "POST", f"sessions/{sid}/messages", {"text": "now watched"})
            await admin(sim, "POST", f"sessions/{sid}/end")
            await wait_for(lambda: ended_sessions(archive) == 1)
        truth = sim.truth()
        operations = sim.stats()["operations"]

    assert compare(archive, truth).exact
    assert query(archive, "SELECT status FROM team_gaps") == [("intruded",)]
    assert query(archive, "SELECT tail FROM sessions") == [("drained",)]
    assert operations["Intrude"] == 1
    assert operations["Accept"] == 1
    assert set(operations) <= ALLOWED_OPERATIONS


async def test_exit_cancels_monitoring_and_leaves_without_ending_the_session(
    tmp_path: Path,
) -> None:
    """On exit the supervisor stops monitoring and leaves; the agent's session goes on."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, supervisors=1, seed=4, scenario=None)) as sim:
        config = dataclasses.replace(
            daemon_config(sim.base_url, archive, agents=0), team=team_config("report", ("agent1",))
        )
        async with daemon_running(Daemon(config)):
            await wait_for(lambda: bool(sim.world.monitoring(SUPERVISOR)))
            sid = (await admin(sim, "POST", "sessions", {"account": "agent1"}))["session_id"]
            await admin(sim, "POST", f"sessions/{sid}/messages", {"text": "hello"})
            await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") >= 2)
        monitoring = sim.world.monitoring(SUPERVISOR)
        session = sim.world.sessions[sid]
        operations = sim.stats()["operations"]

    assert monitoring == {}
    assert operations["CancelSupervisorMonitoring"] == 1
    assert operations["Leave"] == 1
    assert session.views["agent1"].state == "Chatting"
    assert ended_sessions(archive) == 0


async def test_push_as_the_supervisor_carries_the_monitored_sessions(tmp_path: Path) -> None:
    """With push on and routine polls ten minutes apart, a monitored agent's new messages reach
    the archive through the supervisor's CometD notifications."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, supervisors=1, seed=2, scenario=None)) as sim:
        config = daemon_config(sim.base_url, archive, agents=0)
        config = dataclasses.replace(
            config,
            team=team_config("report", ("agent1",)),
            push=PushConfig(enabled=True, safety_interval_s=600.0),
            poll=dataclasses.replace(config.poll, min_interval_s=600.0, max_interval_s=600.0),
        )
        daemon = Daemon(config)
        async with daemon_running(daemon):
            await wait_for(lambda: bool(sim.world.monitoring(SUPERVISOR)))
            sid = (await admin(sim, "POST", "sessions", {"account": "agent1"}))["session_id"]
            await wait_for(lambda: count(archive, "SELECT count(*) FROM sessions") == 1)
            for n in range(3):
                await admin(sim, "POST", f"sessions/{sid}/messages", {"text": f"pushed {n}"})
            await wait_for(lambda: count(archive, "SELECT count(*) FROM messages") >= 4)
            truth = sim.truth()  # before the supervisor's own leave on exit

    assert compare(archive, truth).exact
    assert daemon.stats.hint_polls > 0


async def run_once(config: Path) -> tuple[int, str]:
    """``gws-archiver run`` until it exits by itself: its exit code and its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


async def test_an_account_without_the_supervisor_role_exits_2_in_one_line(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "archive.sqlite3"
    config = tmp_path / "config.toml"
    async with Simulator(SimulatorOptions(agents=2, supervisors=1, scenario=None)) as sim:
        config.write_text(
            config_toml(sim.base_url, archive, agents=0)
            + team_toml("report", ("agent2",), username="agent1")
        )
        code, output = await run_once(config)

    assert code == 2, output
    [line] = output.strip().splitlines()
    assert "team.username 'agent1'" in line
    assert "ROLE_SUPERVISOR" in line
    assert not archive.exists() or count(archive, "SELECT count(*) FROM messages") == 0


async def test_a_refused_agent_is_warned_about_by_name_and_the_others_archived(
    tmp_path: Path,
) -> None:
    """An agent GWS will not let the supervisor monitor (here another supervisor) and a user
    name nobody has are each named in a warning; the real agent is monitored and archived."""
    archive = tmp_path / "archive.sqlite3"
    config = tmp_path / "config.toml"
    log = tmp_path / "daemon.log"
    async with Simulator(SimulatorOptions(agents=1, supervisors=2, seed=3, scenario=None)) as sim:
        config.write_text(
            config_toml(sim.base_url, archive, agents=0)
            + team_toml("report", ("agent1", "supervisor2", "nobody"))
        )
        async with daemon_process(config, log, archive):
            await wait_for(lambda: bool(sim.world.monitoring(SUPERVISOR)))
            sid = (await admin(sim, "POST", "sessions", {"account": "agent1"}))["session_id"]
            await admin(sim, "POST", f"sessions/{sid}/messages", {"text": "archived"})
            await admin(sim, "POST", f"sessions/{sid}/end")
            await wait_for(lambda: ended_sessions(archive) == 1)
        truth = sim.truth()

    assert compare(archive, truth).exact
    text = log.read_text()
    assert [line for line in text.splitlines() if "team_monitor_refused" in line and
            "supervisor2" in line]  # fmt: skip
    assert [line for line in text.splitlines() if "team_agent_unknown" in line and
            "nobody" in line]  # fmt: skip
    statuses = dict(query(archive, "SELECT username, status FROM team_agents"))
    assert statuses == {"agent1": "monitoring", "supervisor2": "refused"}
