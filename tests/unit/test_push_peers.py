"""The Bayeux client against real servers run as Node subprocesses on 127.0.0.1.

cometd-nodejs-server 1.2.1 is the CometD project's own server, the closest thing to GWS's
CometD 3 here: ``BAYEUX_BROWSER`` cookie, ``402::session_unknown``, multiple-clients advice,
duplicate-connect cancellation, events before the connect reply. Faye 1.4.3 differs where it
matters: 401 for an unknown client, events after the connect reply, and it holds even the first
connect unless asked not to. The servers and their test hooks are tests/peers/*.cjs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from archiver.config import Account, GwsConfig, PushConfig, Secret
from archiver.gws.client import GwsClient
from archiver.gws.push import Hint, PushClient
from archiver.gws.transport import GwsHost
from tests.support import wait_for

PEERS = Path(__file__).parents[1] / "peers"
SMS = "/v2/me/smssessions"
PUSH = PushConfig(network_delay_s=2.0, backoff_step_s=0.1, backoff_max_s=0.5)


def new_messages(session_id: str) -> dict[str, Any]:
    """A MessageLogUpdated notification as GWS documents it."""
    return {
        "messageType": "MessageLogUpdated",
        "notificationType": "NewMessages",
        "smssessionUri": f"http://gws/api/v2/smssessions/{session_id}",
        "smssessionPath": f"/smssessions/{session_id}",
        "messages": [{"index": 1, "type": "Text", "text": "hello"}],
    }


def node() -> str:
    """The node binary; fails (never skips) when Node or the npm peers are missing."""
    binary = shutil.which("node")
    installed = all(
        (PEERS / "node_modules" / package).is_dir() for package in ("cometd-nodejs-server", "faye")
    )
    if binary is None or not installed:
        pytest.fail(
            "the push peer tests need Node and tests/peers/node_modules: run `make test`",
            pytrace=False,
        )
    return binary


class NodePeer:
    """One Bayeux server script in a Node subprocess, with its /test/ hooks."""

    def __init__(self, script: str, options: dict[str, Any], log_path: Path) -> None:
        self.script = script
        self.options = options
        self.log_path = log_path
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the server (again on the same port, once it had one)."""
        self._log = self.log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            node(),
            str(PEERS / self.script),
            json.dumps({**self.options, "port": self.port}),
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=PEERS,
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout=10)
        if not line:
            raise AssertionError(f"{self.script} did not start: see {self.log_path}")
        self.port = json.loads(line)["port"]

    async def kill(self) -> None:
        """Kill the server at once (its sessions die with it)."""
        if self._process is not None:
            process, self._process = self._process, None
            if process.returncode is None:
                process.kill()
            await process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def hook(self, path: str, data: object = None) -> Any:
        """POST to a test hook; its JSON answer."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.base_url + path, json=data) as response,
        ):
            assert response.status == 200, await response.text()
            return await response.json()

    async def stats(self) -> dict[str, Any]:
        """What the server has received: {"messages": {channel: count}, ...}."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.base_url + "/test/stats") as response,
        ):
            result: dict[str, Any] = await response.json()
            return result

    async def publish(self, channel: str, data: object) -> float:
        """Publish ``data`` on ``channel``; returns the monotonic time just before."""
        published_at = time.monotonic()
        await self.hook(f"/test/publish?channel={channel}", data)
        return published_at


@dataclass
class Pushing:
    """A running PushClient and what its callbacks received."""

    client: GwsClient
    push: PushClient = field(init=False)
    hints: list[Hint] = field(default_factory=list)
    subscribed: int = 0
    downs: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def on_subscribed(self) -> None:
        self.subscribed += 1

    async def hint_for(self, session_id: str) -> Hint:
        """Wait for the first hint naming ``session_id``."""
        await wait_for(lambda: any(h.session_id == session_id for h in self.hints), timeout_s=10)
        return next(h for h in self.hints if h.session_id == session_id)


Start = Callable[..., Awaitable[NodePeer]]
Run = Callable[..., Awaitable[Pushing]]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """Everything a test starts, stopped in reverse order at its end."""
    async with AsyncExitStack() as exits:
        yield exits


@pytest.fixture
def start_peer(stack: AsyncExitStack, tmp_path: Path) -> Start:
    """Start a peer script with options; it is killed when the test ends."""

    async def start(script: str, **options: Any) -> NodePeer:
        peer = NodePeer(script, options, tmp_path / f"{script}.log")
        stack.push_async_callback(peer.kill)
        await peer.start()
        return peer

    return start


@pytest.fixture
def run_push(stack: AsyncExitStack) -> Run:
    """Run a PushClient for an account of ``peer`` (or on a given client); cancelled at the end."""

    async def run(peer: NodePeer, client: GwsClient | None = None) -> Pushing:
        if client is None:
            config = GwsConfig(base_url=peer.base_url, accounts=(Account("agent1", Secret("pw")),))
            host = GwsHost(config)
            stack.push_async_callback(host.close)
            client = GwsClient(host, config.accounts[0])
            stack.push_async_callback(client.close)
        pushing = Pushing(client)
        pushing.push = PushClient(
            client,
            PUSH,
            on_hint=pushing.hints.append,
            on_subscribed=pushing.on_subscribed,
            on_down=pushing.downs.append,
        )
        pushing.task = task = asyncio.create_task(pushing.push.run())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        stack.push_async_callback(stop)
        return pushing

    return run


async def connected(pushing: Pushing, subscribed: int = 1) -> None:
    """Wait until push is healthy after its ``subscribed``-th subscribe, and a connect is held."""
    await wait_for(lambda: pushing.subscribed >= subscribed and pushing.push.healthy, 10)
    # The connect in the subscribe batch is answered at once; give the next one time to be held.
    await asyncio.sleep(0.3)


# ---------------------------------------------------------------- cometd-nodejs-server


async def test_cometd_a_publish_during_a_held_connect_arrives_within_200_ms(
    start_peer: Start, run_push: Run
) -> None:
    """The server holds our connect and answers it with the event: hint in < 200 ms."""
    peer = await start_peer("cometd_server.cjs", timeout=2000)
    pushing = await run_push(peer)
    await connected(pushing)
    connects = pushing.push.stats.connects
    published_at = await peer.publish(SMS, new_messages("S1"))
    hint = await pushing.hint_for("S1")
    assert hint.received_at - published_at < 0.2
    assert connects == 2  # the batch, then one held connect: no busy polling
    assert hint == Hint("S1", False, hint.received_at)


async def test_cometd_without_the_browser_cookie_every_session_is_unknown(
    start_peer: Start, run_push: Run
) -> None:
    """A BAYEUX_BROWSER cookie the jar cannot keep → 402 after every handshake, said loudly."""
    # The jar refuses a cookie for another domain, as aiohttp's default jar refuses cookies of
    # IP hosts: cometd-nodejs-server finds sessions only through that cookie.
    peer = await start_peer("cometd_server.cjs", timeout=2000, browserCookieDomain="example.com")
    with capture_logs() as logs:
        pushing = await run_push(peer)
        await wait_for(lambda: pushing.push.stats.rehandshakes["unknown_client"] >= 3, 10)
    assert pushing.subscribed == 0
    assert not pushing.push.healthy
    failing = [entry for entry in logs if entry["event"] == "push_failing"]
    assert len(failing) == 1
    assert failing[0]["log_level"] == "warning"
    assert "402::session_unknown" in failing[0]["error"]


async def test_cometd_two_clients_on_one_cookie_jar_get_multiple_clients_advice(
    start_peer: Start, run_push: Run
) -> None:
    """A second session behind the same cookie: warned once, and connects slow to the interval."""
    peer = await start_peer("cometd_server.cjs", timeout=2000, multiSessionInterval=500)
    first = await run_push(peer)
    await connected(first)
    with capture_logs() as logs:
        second = await run_push(peer, first.client)  # same GwsClient, same jar
        await connected(second)
        connects = second.push.stats.connects
        await asyncio.sleep(1.5)
    warnings = [entry for entry in logs if entry["event"] == "push_multiple_clients"]
    assert len(warnings) == 1
    # 1.5 s at one connect per 500 ms is 3 connects, 4 at worst; without the interval: hundreds.
    assert second.push.stats.connects - connects <= 4


async def test_cometd_a_duplicate_connect_cancelled_with_http_500_is_retried(
    start_peer: Start, run_push: Run
) -> None:
    """A second connect for our session makes the server fail ours with HTTP 500: connect again."""
    peer = await start_peer("cometd_server.cjs", timeout=2000)
    pushing = await run_push(peer)
    await connected(pushing)
    assert (await peer.hook("/test/duplicate-connect"))["sessions"] == 1
    await wait_for(lambda: pushing.push.stats.failures >= 1, 5)
    await connected(pushing, subscribed=2)
    assert pushing.client.host.requests["notifications", "500"] == 1
    assert pushing.push.stats.handshakes == 1  # a retry, not a new session
    await peer.publish(SMS, new_messages("S2"))
    await pushing.hint_for("S2")


async def test_cometd_a_server_restart_means_handshake_resubscribe_and_a_full_poll(
    start_peer: Start, run_push: Run
) -> None:
    """Restart → down, then 402 → handshake, subscribe, on_subscribed again; events flow again."""
    peer = await start_peer("cometd_server.cjs", timeout=2000)
    pushing = await run_push(peer)
    await connected(pushing)
    await peer.kill()
    await wait_for(lambda: pushing.downs != [], 5)
    await peer.start()
    await connected(pushing, subscribed=2)
    assert pushing.push.stats.rehandshakes == {"unknown_client": 1}
    assert pushing.push.stats.handshakes == 2
    await peer.publish(SMS, new_messages("S3"))
    await pushing.hint_for("S3")


# ---------------------------------------------------------------- Faye


async def test_faye_an_unknown_client_401_means_handshake_again(
    start_peer: Start, run_push: Run
) -> None:
    """Faye forgets us and answers "401:<id>:Unknown client": handshake, resubscribe, go on."""
    peer = await start_peer("faye_server.cjs", timeout=3)
    pushing = await run_push(peer)
    await connected(pushing)
    assert (await peer.hook("/test/expire"))["expired"] == 1
    await connected(pushing, subscribed=2)
    assert pushing.push.stats.rehandshakes == {"unknown_client": 1}
    await peer.publish(SMS, new_messages("S4"))
    await pushing.hint_for("S4")


async def test_faye_an_event_after_the_connect_reply_fires_a_hint(
    start_peer: Start, run_push: Run
) -> None:
    """Faye writes [connect reply, event] (the event even reuses an id): the event still counts."""
    peer = await start_peer("faye_server.cjs", timeout=3)
    pushing = await run_push(peer)
    await connected(pushing)
    published_at = await peer.publish(SMS, new_messages("S5"))
    hint = await pushing.hint_for("S5")
    assert hint.received_at - published_at < 0.2
    assert pushing.push.stats.failures == 0


async def test_faye_answers_the_first_connect_at_once(start_peer: Start, run_push: Run) -> None:
    """advice.timeout 0 on the first connect: subscribed in well under Faye's 3 s hold."""
    peer = await start_peer("faye_server.cjs", timeout=3)
    started = time.monotonic()
    pushing = await run_push(peer)
    await wait_for(lambda: pushing.subscribed == 1, 5)
    assert time.monotonic() - started < 1.0


async def test_faye_reconnect_none_stops_push_and_its_requests(
    start_peer: Start, run_push: Run
) -> None:
    """An extension advising reconnect "none": on_down, run() returns, not one more request."""
    peer = await start_peer("faye_server.cjs", timeout=3)
    pushing = await run_push(peer)
    await connected(pushing)
    await peer.hook("/test/refuse")
    await peer.publish(SMS, new_messages("S6"))  # answers the held connect, with the advice
    assert pushing.task is not None
    await asyncio.wait_for(pushing.task, timeout=5)
    assert len(pushing.downs) == 1
    received = (await peer.stats())["messages"]
    await asyncio.sleep(1.0)
    assert (await peer.stats())["messages"] == received
    assert "/meta/disconnect" not in received
