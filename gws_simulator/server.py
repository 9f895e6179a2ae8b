"""`Simulator`: the fake GWS as an async context manager (HTTP server, world, scenario driver)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from gws_simulator.admin import add_admin_routes
from gws_simulator.app import build_app
from gws_simulator.bayeux import Bayeux, add_bayeux_routes
from gws_simulator.faults import FaultInjector, FaultRates
from gws_simulator.hostile import Hostility
from gws_simulator.notifications import Notifier
from gws_simulator.scenario import Scenario, ScenarioDriver
from gws_simulator.stats import RecordedRequest, Stats
from gws_simulator.supervision import REPEATS
from gws_simulator.team import add_team_routes
from gws_simulator.ucs import InteractionHistory, add_ucs_routes
from gws_simulator.world import World


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything a simulator run is built from.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        agents: accounts `agent1` … `agentN`, each with the password `password`.
        seed: seeds every random choice (scenario content, ids, faults, quirks).
        csrf: require the CSRF token on POST/PUT/DELETE and send it on GETs.
        quirks: render about half the messages the way the docs print them (glued or ISO
            timestamps, `timestampSeconds` with an `L` suffix, `TypingStopping`) and the
            single-session key as `smsession` half the time.
        hostile: serve poison payloads among healthy sessions, and odd responses now and then
            (`hostile.py` has the how and the expected outcomes, `poison.py` the catalogue;
            the truth marks each poison message); `True` or a `Hostility` to tune the shares.
        truth_path: JSON lines, one per message created, written as it goes.
        faults: fault rates for `/api/v2` requests.
        scenario: the conversation driver, or None for a world driven only by the API.
        utc_offset_minutes: offset of message `timestamp` strings; None uses the machine's
            local zone.
        bayeux_timeout_s: how long the CometD endpoint holds a `/meta/connect` (CometD's
            `timeout`).
        bayeux_max_interval_s: how long a CometD client may go without a connect after a
            reply before it is dropped (CometD's `maxInterval`).
        revoked_s: how long a transferred or queued session stays in the old agent's list,
            shown `Revoked` and still readable, before it answers 404.
        gone_after_leave: a session answers 404 to an account the moment it leaves that
            account's list: no Revoked phase, and a Completed view vanishes at once (no
            linger) for that account.
        supervisors: accounts `supervisor1` … `supervisorN` (password `password`) with the
            supervisor role; they take no sessions, they monitor agents (`supervision.py`).
        monitor_accept: a monitored session reaches the supervisor `Invited` (it must
            Accept) instead of Chatting at once.
        monitor_repeat: the answer to Monitor for an agent already monitored: `"ok"`
            (statusCode 0) or `"error"` (statusCode 2); monitoring goes on either way.
        request_log: how many of the newest `/api/v2` requests `Simulator.requests` keeps.
    """

    host: str = "127.0.0.1"
    port: int = 0
    agents: int = 3
    seed: int = 1
    csrf: bool = False
    quirks: bool = False
    hostile: bool | Hostility = False
    truth_path: Path | None = None
    faults: FaultRates = field(default_factory=FaultRates)
    scenario: Scenario | None = None
    utc_offset_minutes: int | None = None
    bayeux_timeout_s: float = 30.0
    bayeux_max_interval_s: float = 10.0
    revoked_s: float = 2.0
    gone_after_leave: bool = False
    supervisors: int = 0
    monitor_accept: bool = False
    monitor_repeat: str = "ok"
    request_log: int = 100_000

    def __post_init__(self) -> None:
        if self.revoked_s < 0:
            raise ValueError("revoked_s must be >= 0")
        if self.supervisors < 0 or self.request_log < 0:
            raise ValueError("supervisors and request_log must be >= 0")
        if self.monitor_repeat not in REPEATS:
            raise ValueError(f"monitor_repeat must be one of {REPEATS}")


class Simulator:
    """A running fake GWS: `async with Simulator(options) as sim: sim.base_url ...`.

    Attributes:
        base_url: `http://host:port` once started.
        world: the `World`, to create, fill, end and remove sessions directly;
            `world.monitoring(supervisor)` tells who a supervisor monitors.
        faults: the `FaultInjector`; assign `faults.rates` to change fault rates at run time.
        bayeux: the CometD endpoint, to expire clients or wait for a subscription.
    """

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.world = World(
            agents=options.agents,
            seed=options.seed,
            quirks=options.quirks,
            hostile=options.hostile,
            utc_offset_minutes=options.utc_offset_minutes,
            truth_path=options.truth_path,
            revoked_s=options.revoked_s,
            gone_after_leave=options.gone_after_leave,
            supervisors=options.supervisors,
            monitor_accept=options.monitor_accept,
            monitor_repeat=options.monitor_repeat,
        )
        self.faults = FaultInjector(options.faults, options.seed)
        self._stats = Stats(log_size=options.request_log)
        self.bayeux = Bayeux(
            timeout_s=options.bayeux_timeout_s,
            max_interval_s=options.bayeux_max_interval_s,
            stats=self._stats,
            injector=self.faults,
        )
        self.world.observer = Notifier(self.world, self.bayeux, options.seed)
        self._history = InteractionHistory(self.world, self.bayeux, self.faults, self._stats)
        self._driver = (
            ScenarioDriver(self.world, options.scenario, options.seed)
            if options.scenario is not None
            else None
        )
        self._runner: web.AppRunner | None = None
        self._driver_task: asyncio.Task[None] | None = None
        self._state = "new"
        self.base_url = ""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind, serve and start the scenario."""
        if self._state != "new":
            raise RuntimeError(f"simulator is {self._state}; it can start only once")
        self._state = "running"
        app = build_app(self.world, self.faults, self._stats, csrf=self.options.csrf)
        add_bayeux_routes(app, self.bayeux)
        add_ucs_routes(app, self._history)
        add_team_routes(app)
        add_admin_routes(app, self)
        # Bind first so the URIs the world renders already carry the real port.
        sock = socket.create_server((self.options.host, self.options.port), reuse_port=False)
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        self.world.base_url = self.base_url
        if self._driver is not None:
            # The backlog is all there before the first request can arrive.
            self._driver.open_backlog()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        if self._driver is not None:
            self._driver_task = asyncio.create_task(self._driver.run(), name="simulator-scenario")

    async def stop_scenario(self) -> None:
        """Freeze the world: no more messages, starts, ends or removals; serving goes on."""
        if self._driver_task is not None:
            self._driver_task.cancel()
            await asyncio.wait([self._driver_task])
            self.world.flush()

    async def close(self) -> None:
        """Stop the scenario and the server, then complete the truth file; safe twice."""
        if self._state == "closed":
            return
        self._state = "closed"
        self.faults.closing.set()
        await self.stop_scenario()
        if self._runner is not None:
            await self._runner.cleanup()
        self.world.close()

    async def scenario_finished(self) -> None:
        """Resolve once a finite scenario has ended its last session (no scenario: at once).

        Completed sessions still linger in the lists afterwards; an endless scenario never
        finishes.
        """
        if self._driver is not None:
            await self._driver.finished.wait()
            if self._driver.error is not None:
                raise RuntimeError("the scenario driver failed") from self._driver.error

    def is_scenario_finished(self) -> bool:
        """Whether `scenario_finished()` would resolve now."""
        return self._driver is None or self._driver.finished.is_set()

    def truth(self) -> list[dict[str, Any]]:
        """Every message ever created, in creation order, in the truth-file shape.

        Keys: `session_id`, `account` (the account handling the session when created),
        `index` (-1 for TranscriptSaveDone), `type` (canonical, `TypingStopped` even when
        quirks mode served `TypingStopping`), `text` (the words: `text`, else `noticeText`,
        else the PushUrl `url`; None when there are none), `visibility`, `created_at` (UTC,
        ms, `Z`). In hostile mode a message served as poison adds `poison`, `expect`, `slot`
        and, for a conflict, `claims` (see `hostile.py`).
        """
        return self.world.truth()

    def stats(self) -> dict[str, Any]:
        """Counters: requests by route and status (or fault), faults injected by kind.

        Once a CometD client has shown up, also `bayeux`: handshakes, notifications published
        and delivered, held and cancelled connects, expired clients (see `Bayeux`). Once a
        request named one, `operations`: requests per `operationName`.
        """
        return self._stats.snapshot()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The `/api/v2` requests received, oldest first, faulted ones included.

        Each is `(account, method, path, operation)`: the authenticated account name or
        None, the HTTP method, the path without its query, the body's `operationName` or None.
        """
        return list(self._stats.log)
