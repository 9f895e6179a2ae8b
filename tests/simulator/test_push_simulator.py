"""Conformance: the official CometD JavaScript client against the simulator's CometD endpoint.

`cometd` 9.0.0 with `cometd-nodejs-client` 2.0.0 runs headless in Node
(tests/peers/cometd_client.mjs) against the in-process simulator on 127.0.0.1; the test reads
its observations (one JSON object per line) and drives the world. If the reference client
gets along with the simulator, the simulator's Bayeux is real enough to test the daemon with.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gws_simulator import Simulator, SimulatorOptions

PEERS = Path(__file__).parents[1] / "peers"
SMS = "/v2/me/smssessions"
WAIT_S = 10.0

Observation = dict[str, Any]


def node() -> str:
    """The node binary; fails (never skips) when Node or the npm peers are missing."""
    binary = shutil.which("node")
    installed = all(
        (PEERS / "node_modules" / package).is_dir()
        for package in ("cometd", "cometd-nodejs-client")
    )
    if binary is None or not installed:
        pytest.fail(
            "the CometD conformance tests need Node and tests/peers/node_modules: run `make test`",
            pytrace=False,
        )
    return binary


class OfficialClient:
    """tests/peers/cometd_client.mjs in a Node subprocess, and what it has reported."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[Observation] = []

    async def next(self, event: str, where: Callable[[Observation], bool] = bool) -> Observation:
        """The next not-yet-read observation of kind `event` satisfying `where`."""

        async def read() -> Observation:
            assert self.process.stdout is not None
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"the client exited; it reported {self.seen}")
                observation: Observation = json.loads(line)
                self.seen.append(observation)
                if observation["event"] == event and where(observation):
                    return observation

        return await asyncio.wait_for(read(), WAIT_S)

    async def leave(self) -> None:
        """Disconnect and wait for the process; kill it if it lingers."""
        if self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.write(b"disconnect\n")
        await self.process.stdin.drain()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    options = SimulatorOptions(agents=2, bayeux_timeout_s=2.0, bayeux_max_interval_s=5.0)
    async with Simulator(options) as sim:
        yield sim


@pytest.fixture
async def client(simulator: Simulator, tmp_path: Path) -> AsyncIterator[OfficialClient]:
    """The official client for agent1, subscribed to `/v2/me/*` once the simulator saw it."""
    url = f"{simulator.base_url}/api/v2/notifications"
    with (tmp_path / "cometd_client.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            node(),
            str(PEERS / "cometd_client.mjs"),
            url,
            "agent1",
            "password",
            "/v2/me/*",
            cwd=PEERS,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        official = OfficialClient(process)
        try:
            await asyncio.wait_for(simulator.bayeux.wait_listening("agent1", SMS), WAIT_S)
            yield official
        finally:
            await official.leave()


def notification_of(session_id: str, message_type: str) -> Callable[[Observation], bool]:
    """Matches a received notification of `message_type` about `session_id`."""

    def matches(observation: Observation) -> bool:
        data = observation["data"]
        if data.get("messageType") != message_type:
            return False
        if message_type == "MessageLogUpdated":
            return bool(data["smssessionPath"] == f"/smssessions/{session_id}")
        return bool(data["smssession"]["id"] == session_id)

    return matches


async def test_official_client_handshakes_and_subscribes(client: OfficialClient) -> None:
    """The reference client's handshake succeeds and its `/v2/me/*` subscription is accepted."""
    handshake = await client.next("handshake")
    assert handshake["successful"] is True
    assert handshake["reestablish"] is False
    assert handshake["advice"] == {"reconnect": "retry", "interval": 0, "timeout": 2000}
    subscribe = await client.next("subscribe")
    assert (subscribe["successful"], subscribe["subscription"]) == (True, "/v2/me/*")


async def test_official_client_receives_a_new_message(
    simulator: Simulator, client: OfficialClient
) -> None:
    """An appended SMS message reaches the reference client as `MessageLogUpdated`."""
    session_id = simulator.world.create_session("agent1")
    simulator.world.append_message(session_id, "Text", text="hello from the customer")
    received = await client.next("message", notification_of(session_id, "MessageLogUpdated"))
    assert received["channel"] == SMS
    assert received["data"]["notificationType"] == "NewMessages"
    assert [(m["index"], m["text"]) for m in received["data"]["messages"]] == [
        (1, "hello from the customer")
    ]


async def test_official_client_receives_a_state_change(
    simulator: Simulator, client: OfficialClient
) -> None:
    """Ending a session reaches the reference client as a `StatusChange` to Completed."""
    session_id = simulator.world.create_session("agent1")
    simulator.world.end_session(session_id)
    received = await client.next(
        "message",
        lambda seen: (
            notification_of(session_id, "SMSsessionStateChangeMessage")(seen)
            and seen["data"]["smssession"]["state"] == "Completed"
        ),
    )
    assert received["data"]["notificationType"] == "StatusChange"


async def test_official_client_rehandshakes_after_a_forced_expiry(
    simulator: Simulator, client: OfficialClient
) -> None:
    """Expiry: 402 with handshake advice, a re-handshake with `reestablish`, then delivery."""
    await client.next("subscribe")
    assert simulator.bayeux.expire("agent1") == 1
    refused = await client.next("connect", lambda seen: not seen["successful"])
    assert refused["error"].startswith("402:")
    assert refused["advice"]["reconnect"] == "handshake"
    again = await client.next("handshake")
    assert (again["successful"], again["reestablish"]) == (True, True)
    await asyncio.wait_for(simulator.bayeux.wait_listening("agent1", SMS), WAIT_S)
    session_id = simulator.world.create_session("agent1")
    simulator.world.append_message(session_id, "Text", text="after the expiry")
    received = await client.next("message", notification_of(session_id, "MessageLogUpdated"))
    assert received["data"]["messages"][0]["text"] == "after the expiry"
