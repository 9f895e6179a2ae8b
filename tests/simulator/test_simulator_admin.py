"""The `/_sim/` admin API and the `simulate` command line."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from gws_simulator import FaultRates, Scenario, Simulator, SimulatorOptions, cli


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorOptions(agents=2, seed=1)) as sim:
        yield sim


async def test_admin_drives_a_session_end_to_end(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Create, append, end and remove through /_sim; truth, status and stats follow."""
    base = f"{simulator.base_url}/_sim"
    async with http.post(f"{base}/sessions", json={"account": "agent2"}) as response:
        assert response.status == 201
        session_id = (await response.json())["session_id"]
    for body, index in (
        ({"type": "ParticipantJoined", "sender": "Customer"}, 1),
        ({"type": "Text", "text": "hello", "sender": "Customer"}, 2),
        ({"type": "CustomNotice", "noticeText": "note", "sender": "Agent"}, 3),
        ({"type": "Text", "text": "psst", "visibility": "Agents", "sender": "Agent"}, 4),
    ):
        async with http.post(f"{base}/sessions/{session_id}/messages", json=body) as response:
            assert (await response.json()) == {"index": index}
    async with http.post(f"{base}/sessions/{session_id}/end", json={}) as response:
        assert await response.json() == {"state": "Completed"}
    async with http.get(f"{base}/truth") as response:
        assert response.content_type == "application/x-ndjson"
        truth = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert truth == simulator.truth()
    assert [(r["account"], r["index"], r["type"], r["text"]) for r in truth] == [
        ("agent2", 1, "ParticipantJoined", None),
        ("agent2", 2, "Text", "hello"),
        ("agent2", 3, "CustomNotice", "note"),
        ("agent2", 4, "Text", "psst"),
        ("agent2", -1, "TranscriptSaveDone", None),
    ]
    async with http.get(f"{base}/status") as response:
        assert await response.json() == {"scenario_finished": True, "sessions": 1, "messages": 5}
    async with http.delete(f"{base}/sessions/{session_id}") as response:
        assert response.status == 200
    assert simulator.world.sessions == {}
    async with http.get(f"{base}/stats") as response:
        stats = await response.json()
    assert stats == simulator.stats() == {"total_requests": 0, "requests": {}, "faults": {}}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/sessions", {"account": "nobody"}, 400),
        ("/sessions", {"account": "agent1", "state": "Dancing"}, 400),
        ("/sessions", [1], 400),
        ("/sessions/0000NOPE00000000/messages", {"type": "Text"}, 404),
        ("/sessions/0000NOPE00000000/end", {}, 404),
    ],
)
async def test_admin_refuses_bad_requests(
    simulator: Simulator, http: aiohttp.ClientSession, path: str, body: object, status: int
) -> None:
    """Bad input answers 400, unknown sessions 404, each with an error text."""
    async with http.post(f"{simulator.base_url}/_sim{path}", json=body) as response:
        assert response.status == status
        assert "error" in await response.json()


@pytest.mark.parametrize(
    "body",
    [{"type": "Bogus"}, {"type": "Text", "text": 3}, {"visibility": "Nobody"}, {"sender": "Ghost"}],
)
async def test_admin_refuses_bad_messages(
    simulator: Simulator, http: aiohttp.ClientSession, body: dict[str, object]
) -> None:
    """An invalid message is refused with 400 and not recorded."""
    session_id = simulator.world.create_session("agent1")
    url = f"{simulator.base_url}/_sim/sessions/{session_id}/messages"
    async with http.post(url, json=body) as response:
        assert response.status == 400
    assert simulator.truth() == []


async def test_status_reports_a_running_scenario(http: aiohttp.ClientSession) -> None:
    """/_sim/status says whether the scenario has finished."""
    scenario = Scenario(sessions=1, messages=(1, 1), interval_s=0.05)
    async with Simulator(SimulatorOptions(agents=1, scenario=scenario)) as sim:
        async with http.get(f"{sim.base_url}/_sim/status") as response:
            assert (await response.json())["scenario_finished"] is False
        await sim.scenario_finished()
        async with http.get(f"{sim.base_url}/_sim/status") as response:
            assert (await response.json())["scenario_finished"] is True


async def test_scenario_stop_freezes_and_reports_the_final_count(
    http: aiohttp.ClientSession,
) -> None:
    """POST /_sim/scenario/stop stops the driver and answers the status with the final count."""
    scenario = Scenario(sessions=None, messages=(50, 50), interval_s=0.002)
    async with Simulator(SimulatorOptions(agents=1, scenario=scenario)) as sim:
        await asyncio.sleep(0.05)
        async with http.post(f"{sim.base_url}/_sim/scenario/stop") as response:
            status = await response.json()
        await asyncio.sleep(0.05)
        assert status["messages"] == sim.world.message_count() > 0


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults_and_options() -> None:
    """Defaults follow DESIGN.md; scenario and fault options map onto the dataclasses."""
    defaults = cli.options_from(parse())
    assert (defaults.host, defaults.port, defaults.agents, defaults.csrf) == (
        "127.0.0.1",
        8090,
        3,
        False,
    )
    assert defaults.scenario is not None
    assert defaults.scenario.sessions is None
    options = cli.options_from(
        parse(
            "--sessions=5",
            "--messages=3-9",
            "--interval=0.01",
            "--concurrent=4",
            "--faults=http_503=0.1,reset=0.02",
            "--csrf",
            "--quirks",
            "--truth=t.jsonl",
            "--backlog=100:20",
        )
    )
    assert options.scenario == Scenario(
        sessions=5,
        concurrent_per_agent=4,
        messages=(3, 9),
        interval_s=0.01,
        linger_s=10.0,
        backlog=(100, 20),
    )
    assert options.faults == FaultRates(http_503=0.1, reset=0.02)
    assert (options.csrf, options.quirks, options.truth_path) == (True, True, Path("t.jsonl"))
    assert cli.options_from(parse("--no-scenario")).scenario is None


def test_cli_maps_view_and_handoff_options() -> None:
    """Handoff shares, queue wait, revoked time, gone-after-leave and UCS faults map through."""
    defaults = cli.options_from(parse())
    assert (defaults.revoked_s, defaults.gone_after_leave) == (2.0, False)
    assert defaults.scenario is not None
    assert defaults.scenario.handoff_shares() == dict.fromkeys(
        ("transfer", "conference", "consult", "queue"), 0.0
    )
    options = cli.options_from(
        parse(
            "--transfer-share=0.1",
            "--conference-share=0.2",
            "--consult-share=0.3",
            "--queue-share=0.4",
            "--queue-wait=0.5",
            "--revoked=0.25",
            "--gone-after-leave",
            "--faults=ucs_late=0.1,ucs_late_s=2,ucs_missing=0.2,ucs_error=0.3",
        )
    )
    assert options.scenario is not None
    assert options.scenario.handoff_shares() == {
        "transfer": 0.1,
        "conference": 0.2,
        "consult": 0.3,
        "queue": 0.4,
    }
    assert options.scenario.queue_wait_s == 0.5
    assert (options.revoked_s, options.gone_after_leave) == (0.25, True)
    assert options.faults == FaultRates(ucs_late=0.1, ucs_late_s=2, ucs_missing=0.2, ucs_error=0.3)


@pytest.mark.parametrize(
    "argv",
    [
        ["--messages=9-3"],
        ["--faults=bogus=1"],
        ["--agents-only=2"],
        ["--port=x"],
        ["--backlog=10"],
        ["--backlog=10:-1"],
        ["--queue-share=1.5"],
        ["--faults=ucs_error=0.6,ucs_missing=0.6"],
    ],
)
def test_cli_rejects_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad values stop with exit status 2 and a usage message."""
    with pytest.raises(SystemExit) as stopped:
        parse(*argv)
    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_run_refuses_impossible_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """Values argparse accepts but the scenario refuses give exit status 2 and one line."""
    assert cli.run(parse("--concurrent=0")) == 2
    assert capsys.readouterr().err.startswith("simulate: error:")


async def test_cli_serves_until_sigint_and_completes_the_truth(tmp_path: Path) -> None:
    """`simulate` prints its URL, serves, and on SIGINT exits 0 with the truth file complete."""
    truth = tmp_path / "truth.jsonl"
    code = (
        "import argparse, sys\n"
        "from gws_simulator import cli\n"
        "parser = argparse.ArgumentParser()\n"
        "cli.add_arguments(parser)\n"
        "sys.exit(cli.run(parser.parse_args(sys.argv[1:])))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "--port=0",
        "--interval=0.005",
        f"--truth={truth}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
    url = line.split(" on ", 1)[1].split()[0]
    assert "agent1, agent2, agent3" in line
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{url}/_sim/status") as response:
                if (await response.json())["messages"] > 20:
                    break
            await asyncio.sleep(0.05)
        async with http.get(f"{url}/_sim/truth") as response:
            served = (await response.read()).count(b"\n")
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 10) == 0
    records = [orjson.loads(line) for line in truth.read_bytes().splitlines()]
    assert len(records) >= served > 20
    assert {r["account"] for r in records} <= {"agent1", "agent2", "agent3"}
