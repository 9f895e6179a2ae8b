"""Fault injection: each kind happens at about its rate, looks right, never touches the truth."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from gws_simulator import FaultRates, Simulator, SimulatorOptions


def basic(username: str, password: str) -> str:
    """An HTTP Basic `Authorization` value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


AGENT1 = {"Authorization": basic("agent1", "password")}
EXCLUSIVE = (
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "rate_limit",
    "rate_limit_date",
    "internal_error",
    "reset",
    "hang",
    "truncate",
    "malformed",
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


def seeded_session(sim: Simulator, messages: int = 30) -> str:
    session_id = sim.world.create_session("agent1")
    for number in range(messages):
        sim.world.append_message(session_id, "Text", text=f"m{number}", sender="Customer")
    return session_id


async def classify(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> str:
    """What a client sees: a fault name, or `ok` with a parsed statusCode 0 body."""
    try:
        async with http.request(method, url, headers=AGENT1, **kwargs) as response:
            raw = await response.read()
            retry_after = response.headers.get("Retry-After", "")
            status = response.status
    except aiohttp.ClientPayloadError:
        return "truncate"
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return "reset_or_hang"
    if status == 429:
        return "rate_limit" if retry_after.isdigit() else "rate_limit_date"
    if status in (502, 503, 504):
        return f"http_{status}"
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "http_500" if status == 500 else "malformed"
    if status == 500 and body["statusCode"] == 4:
        return "internal_error"
    assert status == 200, (status, body)
    return "ok"


async def many(count: int, call: Callable[[int], Awaitable[str]], width: int = 16) -> Counter[str]:
    """Run `call(0..count-1)` with bounded concurrency and count the outcomes."""
    gate = asyncio.Semaphore(width)

    async def one(number: int) -> str:
        async with gate:
            return await call(number)

    return Counter(await asyncio.gather(*(one(number) for number in range(count))))


def assert_rate(observed: int, total: int, rate: float) -> None:
    """Within four binomial standard deviations (plus one) of the expected count."""
    expected = total * rate
    tolerance = 4 * (total * rate * (1 - rate)) ** 0.5 + 1
    assert abs(observed - expected) <= tolerance, (observed, expected, tolerance)


async def test_exclusive_faults_happen_at_their_rates(http: aiohttp.ClientSession) -> None:
    """Each exclusive kind hits about rate x requests, clients see it, the truth stays put."""
    rates = FaultRates(**dict.fromkeys(EXCLUSIVE, 0.05), hang_s=0.02)
    async with Simulator(SimulatorOptions(agents=1, seed=21, faults=rates)) as sim:
        session_id = seeded_session(sim)
        truth = sim.truth()
        url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}/messages"
        seen = await many(1200, lambda _: classify(http, "GET", url))
        stats = sim.stats()
        assert sim.truth() == truth
    total = stats["total_requests"]
    for kind in EXCLUSIVE:
        assert_rate(stats["faults"][kind], total, 0.05)
    for kind in EXCLUSIVE:
        if kind not in ("reset", "hang"):
            assert seen[kind] > 0, kind
    assert seen["reset_or_hang"] > 0
    assert_rate(seen["ok"], 1200, 1 - 0.05 * len(EXCLUSIVE))


async def test_faulted_posts_are_never_carried_out(http: aiohttp.ClientSession) -> None:
    """A SendMessage is in the truth exactly when its reply was a clean statusCode 0."""
    rates = FaultRates(**dict.fromkeys(EXCLUSIVE, 0.06), hang_s=0.02)
    async with Simulator(SimulatorOptions(agents=1, seed=22, faults=rates)) as sim:
        session_id = seeded_session(sim, messages=0)
        url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}"
        answered: dict[str, str] = {}

        async def send(number: int) -> str:
            text = f"message {number}"
            answered[text] = await classify(
                http, "POST", url, json={"operationName": "SendMessage", "text": text}
            )
            return answered[text]

        outcomes = await many(600, send)
        truth = sim.truth()
    assert outcomes["ok"] < 600
    assert {r["text"] for r in truth} == {text for text, seen in answered.items() if seen == "ok"}
    assert [r["index"] for r in truth] == list(range(1, len(truth) + 1))


@pytest.mark.parametrize("kind", EXCLUSIVE)
async def test_each_fault_looks_as_documented(http: aiohttp.ClientSession, kind: str) -> None:
    """At rate 1 every request shows the fault's own symptom."""
    rates = FaultRates(**{kind: 1.0}, hang_s=0.05, retry_after_s=7)
    async with Simulator(SimulatorOptions(agents=1, seed=3, faults=rates)) as sim:
        url = f"{sim.base_url}/api/v2/me"
        started = time.monotonic()
        seen = await classify(http, "GET", url)
        elapsed = time.monotonic() - started
        if kind.startswith("rate_limit"):
            async with http.get(url, headers=AGENT1) as response:
                retry_after = response.headers["Retry-After"]
            assert retry_after == "7" if kind == "rate_limit" else retry_after.endswith(" GMT")
    assert seen == ("reset_or_hang" if kind in ("reset", "hang") else kind)
    if kind == "hang":
        assert elapsed >= 0.05


async def test_truncated_body_keeps_headers_and_cuts_the_json(http: aiohttp.ClientSession) -> None:
    """A truncated reply promises the full Content-Length and delivers a JSON prefix."""
    async with Simulator(SimulatorOptions(agents=1, faults=FaultRates(truncate=1.0))) as sim:
        session_id = seeded_session(sim)
        url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}/messages"
        async with http.get(url, headers=AGENT1) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            length = int(response.headers["Content-Length"])
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    assert length > 100


async def test_short_pages_are_contiguous_prefixes(http: aiohttp.ClientSession) -> None:
    """Short pages hit about their rate and are always a contiguous prefix, without -1."""
    rates = FaultRates(short_page=0.25)
    async with Simulator(SimulatorOptions(agents=1, seed=4, faults=rates)) as sim:
        session_id = seeded_session(sim)
        sim.world.end_session(session_id)
        url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}/messages?startIndex=0"

        async def read(_: int) -> str:
            async with http.get(url, headers=AGENT1) as response:
                indices = [m["index"] for m in (await response.json())["messages"]]
            if indices == [*range(1, 31), -1]:
                return "full"
            assert indices == list(range(1, len(indices) + 1))
            assert 1 <= len(indices) < 30
            return "short"

        seen = await many(800, read)
        stats = sim.stats()
    assert seen["short"] == stats["faults"]["short_page"]
    assert_rate(seen["short"], 800, 0.25)


async def test_vanishing_sessions_leave_the_list_and_come_back(
    http: aiohttp.ClientSession,
) -> None:
    """A vanished session is missing from its list for vanish_s, then listed again."""
    rates = FaultRates(vanish=0.1, vanish_s=0.0)
    async with Simulator(SimulatorOptions(agents=1, seed=5, faults=rates)) as sim:
        for _ in range(3):
            seeded_session(sim, messages=1)
        url = f"{sim.base_url}/api/v2/me/smssessions"

        async def listed(_: int) -> str:
            async with http.get(url, headers=AGENT1) as response:
                return str(len((await response.json())["uris"]))

        seen = await many(800, listed)
        assert_rate(seen["2"], 800, 0.1)
        assert set(seen) == {"2", "3"}
        sim.faults.rates = FaultRates(vanish=1.0, vanish_s=0.2)
        assert await listed(0) == "2"
        sim.faults.rates = FaultRates()
        assert await listed(0) == "2"
        await asyncio.sleep(0.25)
        assert await listed(0) == "3"


async def test_latency_is_added_at_its_rate(http: aiohttp.ClientSession) -> None:
    """Latency hits about its rate and delays the answer by latency_s."""
    rates = FaultRates(latency=0.2, latency_s=0.001)
    async with Simulator(SimulatorOptions(agents=1, seed=6, faults=rates)) as sim:
        url = f"{sim.base_url}/api/v2/me"
        seen = await many(800, lambda _: classify(http, "GET", url))
        assert seen == {"ok": 800}
        assert_rate(sim.stats()["faults"]["latency"], 800, 0.2)
        sim.faults.rates = FaultRates(latency=1.0, latency_s=0.2)
        started = time.monotonic()
        assert await classify(http, "GET", url) == "ok"
        assert time.monotonic() - started >= 0.2


async def test_admin_routes_are_never_faulted(http: aiohttp.ClientSession) -> None:
    """/_sim routes answer normally even when every /api/v2 request fails."""
    async with Simulator(SimulatorOptions(agents=1, faults=FaultRates(http_503=1.0))) as sim:
        async with http.get(f"{sim.base_url}/_sim/status") as response:
            assert response.status == 200
        assert sim.stats()["faults"] == {}


async def test_fault_rates_change_at_run_time(http: aiohttp.ClientSession) -> None:
    """POST /_sim/faults switches faults on and off; unknown names are refused."""
    async with Simulator(SimulatorOptions(agents=1)) as sim:
        url = f"{sim.base_url}/api/v2/me"
        admin = f"{sim.base_url}/_sim/faults"
        async with http.post(admin, json={"http_503": 1.0}) as response:
            assert (await response.json())["http_503"] == 1.0
        assert await classify(http, "GET", url) == "http_503"
        async with http.post(admin, json={"http_503": 0}) as response:
            assert response.status == 200
        assert await classify(http, "GET", url) == "ok"
        for bad in ({"nonsense": 1}, {"http_500": 2.0}, {"http_500": "x"}, [1]):
            async with http.post(admin, json=bad) as response:
                assert response.status == 400


async def test_hanging_requests_end_at_shutdown(http: aiohttp.ClientSession) -> None:
    """A request that hangs for up to 60 s is let go as soon as the simulator closes."""
    async with Simulator(SimulatorOptions(agents=1, faults=FaultRates(hang=1.0))) as sim:
        pending = asyncio.create_task(classify(http, "GET", f"{sim.base_url}/api/v2/me"))
        await asyncio.sleep(0.1)
        assert not pending.done()
        started = time.monotonic()
    assert await pending == "reset_or_hang"
    assert time.monotonic() - started < 2


def test_fault_rates_validate_and_parse() -> None:
    """Rates outside 0..1 or summing past 1 are refused; the CLI spec parses field names."""
    with pytest.raises(ValueError, match="within"):
        FaultRates(reset=1.5)
    with pytest.raises(ValueError, match="add up"):
        FaultRates(reset=0.6, hang=0.6)
    with pytest.raises(ValueError, match="unknown"):
        FaultRates.parse("bogus=1")
    rates = FaultRates.parse("http_503=0.05, reset=0.01,latency_s=0.5,retry_after_s=3")
    assert (rates.http_503, rates.reset, rates.latency_s, rates.retry_after_s) == (
        0.05,
        0.01,
        0.5,
        3,
    )
