"""GWS request, fault and Bayeux counters of a simulator run (`Simulator.stats()`, `/_sim/stats`).

Only `/api/v2` traffic is counted; the admin API is not. Each `/api/v2` request is also kept
as a `RecordedRequest` (the newest `log_size` of them) and counted by its `operationName`, so
a test can tell exactly what a client asked for, faulted requests included.
"""

from __future__ import annotations

from collections import Counter, deque
from contextvars import ContextVar
from typing import Any, NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

STATS_KEY: web.AppKey[Stats] = web.AppKey("stats")
# The fault injected into the request being handled, noted by the fault middleware. A context
# variable, as typed request keys (web.RequestKey) exist only from aiohttp 3.14 on.
injected_fault: ContextVar[str | None] = ContextVar("simulator_fault", default=None)


class RecordedRequest(NamedTuple):
    """One `/api/v2` request as received: who (None when not authenticated), what, which op."""

    account: str | None
    method: str
    path: str
    operation: str | None


class Stats:
    """Counts requests by route and outcome, injected faults by kind, Bayeux and hostile events.

    `log` keeps the newest `log_size` requests; `operations` counts every `operationName`.
    """

    def __init__(self, log_size: int = 100_000) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[str] = Counter()
        self.bayeux: Counter[str] = Counter()
        self.hostile: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.log: deque[RecordedRequest] = deque(maxlen=log_size)

    def record(self, request: RecordedRequest) -> None:
        """Keep a received request and count its operation."""
        self.log.append(request)
        if request.operation is not None:
            self.operations[request.operation] += 1

    def snapshot(self) -> dict[str, Any]:
        """`{"requests": {route: {status: n}}, "faults": {kind: n}, "total_requests": n}`.

        Plus `"bayeux": {counter: n}` once the CometD endpoint has counted anything (see
        `Bayeux` for the counter names); dropped and duplicated notifications are faults. In
        hostile mode, `"hostile": {"response:<name>" or "listed:<name>": n}` once served. Once
        a request named one, `"operations": {operationName: n}`, faulted requests included.
        """
        routes: dict[str, dict[str, int]] = {}
        for (route, status), count in sorted(self.requests.items()):
            routes.setdefault(route, {})[status] = count
        snapshot: dict[str, Any] = {
            "total_requests": sum(self.requests.values()),
            "requests": routes,
            "faults": dict(sorted(self.faults.items())),
        }
        if self.bayeux:
            snapshot["bayeux"] = dict(sorted(self.bayeux.items()))
        if self.hostile:
            snapshot["hostile"] = dict(sorted(self.hostile.items()))
        if self.operations:
            snapshot["operations"] = dict(sorted(self.operations.items()))
        return snapshot


@web.middleware
async def stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each `/api/v2` request under `<METHOD> <route pattern>` with its status or fault."""
    if not request.path.startswith("/api/v2/"):
        return await handler(request)
    stats = request.app[STATS_KEY]
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    key = f"{request.method} {route}"
    token = injected_fault.set(None)
    try:
        response = await handler(request)
        fault = injected_fault.get()
    except web.HTTPException as exc:
        stats.requests[key, str(exc.status)] += 1
        raise
    finally:
        injected_fault.reset(token)
    outcome = fault if fault in ("reset", "hang", "truncate") else str(response.status)
    stats.requests[key, outcome] += 1
    return response
