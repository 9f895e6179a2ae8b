"""The simulator's GWS read surface over real HTTP: auth, cookies, CSRF, sessions, messages."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest

from gws_simulator import Simulator, SimulatorOptions
from gws_simulator.wire import format_timestamp, iso_utc, local_time


def basic(username: str, password: str) -> str:
    """An HTTP Basic `Authorization` value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


AGENT1 = {"Authorization": basic("agent1", "password")}
AGENT2 = {"Authorization": basic("agent2", "password")}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorOptions(agents=2, seed=5, utc_offset_minutes=120)) as sim:
        yield sim


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


def conversation(sim: Simulator, account: str = "agent1", messages: int = 5) -> str:
    """A Chatting session with joins and `messages` customer texts."""
    world = sim.world
    session_id = world.create_session(account)
    world.append_message(session_id, "ParticipantJoined", sender="Customer")
    world.append_message(session_id, "ParticipantJoined", sender="Agent")
    for number in range(messages):
        world.append_message(session_id, "Text", text=f"line {number}", sender="Customer")
    return session_id


async def test_version_needs_no_auth(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """GET /api/v2/diagnostics/version answers without credentials."""
    status, body = await get(http, f"{simulator.base_url}/api/v2/diagnostics/version")
    assert (status, body) == (200, {"statusCode": 0, "version": "8.5.200.50"})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": basic("agent1", "wrong")},
        {"Authorization": basic("nobody", "password")},
        {"Authorization": "Basic !!!not-base64"},
    ],
)
async def test_bad_credentials_answer_20(
    simulator: Simulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """Missing or wrong Basic credentials answer HTTP 401 with statusCode 20."""
    status, body = await get(http, f"{simulator.base_url}/api/v2/me", headers)
    assert (status, body) == (401, {"statusCode": 20, "statusMessage": "Access denied"})


async def test_me_has_the_documented_user_shape(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """GET /api/v2/me returns the user object of InterpretingaResponse."""
    status, body = await get(http, f"{simulator.base_url}/api/v2/me", AGENT1)
    assert status == 200
    assert body["statusCode"] == 0
    user = body["user"]
    assert set(user) == {
        "id",
        "userName",
        "firstName",
        "lastName",
        "roles",
        "enabled",
        "changePasswordOnFirstLogin",
        "uri",
        "path",
    }
    assert user["userName"] == "agent1"
    assert user["roles"] == ["ROLE_AGENT"]
    assert user["uri"] == f"{simulator.base_url}/api/v2/users/{user['id']}"


async def test_jsessionid_authenticates_until_end_contact_center_session(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """The JSESSIONID cookie alone authenticates; EndContactCenterSession invalidates it."""
    url = f"{simulator.base_url}/api/v2/me"
    async with http.get(url, headers=AGENT1) as response:
        assert response.status == 200
        assert "JSESSIONID" in response.cookies
    assert (await get(http, url))[0] == 200
    async with http.post(url, json={"operationName": "StartContactCenterSession"}) as response:
        assert await response.json() == {"statusCode": 0}
    async with http.post(url, json={"operationName": "EndContactCenterSession"}) as response:
        assert await response.json() == {"statusCode": 0}
    http.cookie_jar.clear()
    assert (await get(http, url))[0] == 401


async def test_csrf_token_is_required_on_posts(http: aiohttp.ClientSession) -> None:
    """With CSRF on, GETs carry the token headers and POSTs without the token get 403."""
    async with Simulator(SimulatorOptions(agents=1, csrf=True)) as sim:
        session_id = conversation(sim)
        url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}"
        async with http.get(f"{sim.base_url}/api/v2/me", headers=AGENT1) as response:
            assert response.headers["X-CSRF-HEADER"] == "X-CSRF-TOKEN"
            token = response.headers["X-CSRF-TOKEN"]
        assert re.fullmatch(r"[0-9a-f-]{36}", token)
        operation = {"operationName": "SendMessage", "text": "hello"}
        async with http.post(url, json=operation, headers=AGENT1) as response:
            assert response.status == 403
            assert await response.text() == "Missing or invalid Csrf token"
        bad = {**AGENT1, "X-CSRF-TOKEN": "00000000-0000-0000-0000-000000000000"}
        async with http.post(url, json=operation, headers=bad) as response:
            assert response.status == 403
        good = {**AGENT1, "X-CSRF-TOKEN": token}
        async with http.post(url, json=operation, headers=good) as response:
            assert await response.json() == {"statusCode": 0}
        assert [r["text"] for r in sim.truth()][-1] == "hello"


async def test_session_list_shapes(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """fields=* lists full sessions under `smssessions`; no fields lists `uris` only."""
    session_id = conversation(simulator)
    conversation(simulator, account="agent2")
    base = simulator.base_url
    status, full = await get(http, f"{base}/api/v2/me/smssessions?fields=*", AGENT1)
    assert status == 200
    assert full["statusCode"] == 0
    [session] = full["smssessions"]
    assert set(session) == {
        "id",
        "uri",
        "path",
        "state",
        "capabilities",
        "participants",
        "userData",
    }
    assert session["id"] == session_id
    assert session["uri"] == f"{base}/api/v2/smssessions/{session_id}"
    assert session["path"] == f"/smssessions/{session_id}"
    assert session["state"] == "Chatting"
    assert {p["type"] for p in session["participants"]} == {"Agent", "Customer"}
    assert all(
        set(p) - {"path"} == {"type", "nickname", "participantId"} for p in session["participants"]
    )
    [agent] = [p for p in session["participants"] if p["type"] == "Agent"]
    assert agent["path"].startswith("/users/")
    assert "SendMessage" in session["capabilities"]
    _, uris = await get(http, f"{base}/api/v2/me/smssessions", AGENT1)
    assert uris == {"statusCode": 0, "uris": [f"{base}/api/v2/smssessions/{session_id}"]}
    _, some = await get(http, f"{base}/api/v2/me/smssessions?fields=id,state", AGENT1)
    assert some["smssessions"] == [{"id": session_id, "state": "Chatting"}]


async def test_single_session_and_typo_path(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """A session reads under `smssession`, also via `smsessions` and the URI without /me."""
    session_id = conversation(simulator)
    base = simulator.base_url
    for path in (f"/api/v2/me/smssessions/{session_id}", f"/api/v2/me/smsessions/{session_id}"):
        status, body = await get(http, base + path, AGENT1)
        assert status == 200
        assert body["smssession"]["id"] == session_id
    status, body = await get(http, f"{base}/api/v2/smssessions/{session_id}", AGENT1)
    assert (status, body["smssession"]["id"]) == (200, session_id)


async def test_unknown_or_foreign_session_is_404_with_6(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """Unknown ids, another agent's session and removed sessions answer 404 / statusCode 6."""
    base = simulator.base_url
    foreign = conversation(simulator, account="agent2")
    removed = conversation(simulator)
    simulator.world.remove_session(removed)
    for session_id in ("0000XXXXXXXXXXXX", foreign, removed):
        for suffix in ("", "/messages"):
            url = f"{base}/api/v2/me/smssessions/{session_id}{suffix}"
            status, body = await get(http, url, AGENT1)
            assert status == 404
            assert body["statusCode"] == 6
            assert set(body) == {"statusCode", "statusMessage"}
    _, listed = await get(http, f"{base}/api/v2/me/smssessions?fields=*", AGENT1)
    assert listed["smssessions"] == []


async def test_message_shape(simulator: Simulator, http: aiohttp.ClientSession) -> None:
    """Messages carry index, type, from, words, visibility, timestamp and ms timestampSeconds."""
    session_id = simulator.world.create_session("agent1")
    world = simulator.world
    world.append_message(session_id, "Text", text="hi", sender="Customer")
    world.append_message(session_id, "PushUrl", url="https://example.com/", sender="Agent")
    world.append_message(session_id, "CustomNotice", notice_text="n", sender="Agent")
    world.append_message(session_id, "Notice", text="idle", sender="External")
    world.append_message(session_id, "Text", text="psst", visibility="Agents", sender="Agent")
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}/messages"
    _, body = await get(http, url, AGENT1)
    assert list(body) == ["statusCode", "messages"]
    text, push, notice, system, private = body["messages"]
    assert set(text) == {
        "index",
        "type",
        "from",
        "text",
        "visibility",
        "timestamp",
        "timestampSeconds",
    }
    assert text["from"]["type"] == "Customer"
    assert re.fullmatch(r"[0-9A-F]{16}", text["from"]["participantId"])
    assert push["url"] == "https://example.com/"
    assert "text" not in push
    assert notice["noticeText"] == "n"
    assert system["from"]["type"] == "External"
    assert private["visibility"] == "Agents"
    truth = simulator.truth()
    assert [m["index"] for m in body["messages"]] == [1, 2, 3, 4, 5]
    assert [r["text"] for r in truth] == ["hi", "https://example.com/", "n", "idle", "psst"]
    for message, record in zip(body["messages"], truth, strict=True):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+0200", message["timestamp"])
        millis = message["timestampSeconds"]
        assert record["created_at"].endswith(f".{millis % 1000:03d}Z")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["created_at"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [1, 2, 3, 4, 5, 6, 7]),
        ("?startIndex=0", [1, 2, 3, 4, 5, 6, 7]),
        ("?startIndex=1&count=3", [1, 2, 3]),
        ("?startIndex=0&count=3", [1, 2, 3]),
        ("?startIndex=5", [5, 6, 7]),
        ("?startIndex=6&count=0", [6, 7]),
        ("?startIndex=7&count=10", [7]),
        ("?startIndex=8", []),
        ("?startIndex=100&count=5", []),
    ],
)
async def test_message_index_semantics(
    simulator: Simulator, http: aiohttp.ClientSession, query: str, expected: list[int]
) -> None:
    """Indices are 1-based and contiguous; startIndex 0 is 1; count 0 is all; past the end is []."""
    session_id = conversation(simulator, messages=5)
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}/messages{query}"
    status, body = await get(http, url, AGENT1)
    assert status == 200
    assert [m["index"] for m in body["messages"]] == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?startIndex=1&count=3", [1, 2, 3]),
        ("?startIndex=1&count=7", [1, 2, 3, 4, 5, 6, 7, -1]),
        ("?startIndex=6", [6, 7, -1]),
        ("?startIndex=8", [-1]),
        ("?startIndex=50&count=2", [-1]),
    ],
)
async def test_transcript_save_done_comes_with_reads_reaching_the_end(
    simulator: Simulator, http: aiohttp.ClientSession, query: str, expected: list[int]
) -> None:
    """TranscriptSaveDone (index -1) rides on every read that reaches a completed log's end."""
    session_id = conversation(simulator, messages=5)
    simulator.world.end_session(session_id)
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}/messages{query}"
    _, body = await get(http, url, AGENT1)
    assert [m["index"] for m in body["messages"]] == expected
    if expected[-1] == -1:
        assert body["messages"][-1]["type"] == "TranscriptSaveDone"


@pytest.mark.parametrize(
    "query", ["?startIndex=-1", "?count=-2", "?startIndex=abc", "?count=1.5", "?startIndex=2x"]
)
async def test_bad_paging_parameters_answer_10(
    simulator: Simulator, http: aiohttp.ClientSession, query: str
) -> None:
    """Negative or non-integer startIndex/count answer HTTP 400 with statusCode 10."""
    session_id = conversation(simulator)
    url = f"{simulator.base_url}/api/v2/me/smssessions/{session_id}/messages{query}"
    status, body = await get(http, url, AGENT1)
    assert status == 400
    assert body["statusCode"] == 10


async def test_completed_session_shows_no_participants(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """end_session leaves the session Completed, with no capabilities and no participants."""
    session_id = conversation(simulator)
    simulator.world.end_session(session_id)
    _, body = await get(http, f"{simulator.base_url}/api/v2/me/smssessions/{session_id}", AGENT1)
    session = body["smssession"]
    assert (session["state"], session["capabilities"], session["participants"]) == (
        "Completed",
        [],
        [],
    )


async def test_quirks_mode_emits_the_documented_oddities(http: aiohttp.ClientSession) -> None:
    """Quirks mode mixes glued/ISO timestamps, `L` suffixes, TypingStopping and `smsession`."""
    async with Simulator(SimulatorOptions(agents=1, seed=3, quirks=True)) as sim:
        session_id = sim.world.create_session("agent1")
        for _ in range(40):
            sim.world.append_message(session_id, "TypingStopped", sender="Customer")
        base = f"{sim.base_url}/api/v2/me/smssessions/{session_id}"
        async with http.get(f"{base}/messages", headers=AGENT1) as response:
            raw = await response.read()
        keys = set()
        for _ in range(20):
            async with http.get(base, headers=AGENT1) as response:
                keys |= set(await response.json()) - {"statusCode"}
        truth = sim.truth()
    assert re.search(rb'"timestampSeconds":\d+L', raw)
    assert re.search(rb'"timestampSeconds":\d+[,}]', raw)
    assert b'"TypingStopping"' in raw
    assert b'"TypingStopped"' in raw
    assert re.search(rb'"timestamp":"\d{4}-\d\d-\d\d\d\d:', raw)
    assert re.search(rb'"timestamp":"\d{4}-\d\d-\d\dT', raw)
    assert keys == {"smssession", "smsession"}
    assert {r["type"] for r in truth} == {"TypingStopped"}


async def test_stats_count_requests_by_route_and_status(
    simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    """stats() counts GWS requests by method, route pattern and HTTP status."""
    await get(http, f"{simulator.base_url}/api/v2/me", AGENT1)
    await get(http, f"{simulator.base_url}/api/v2/me", {"Authorization": basic("agent1", "x")})
    await get(http, f"{simulator.base_url}/api/v2/me/smsessions/0000XXXXXXXXXXXX", AGENT1)
    stats = simulator.stats()
    assert stats["total_requests"] == 3
    assert stats["requests"] == {
        "GET /api/v2/me": {"200": 1, "401": 1},
        "GET /api/v2/me/{collection}/{session_id}": {"404": 1},
    }
    assert stats["faults"] == {}


@pytest.mark.parametrize("offset", [None, 120, -330])
def test_timestamps_match_a_direct_rendering(offset: int | None) -> None:
    """The per-second cache renders every millisecond of a second as datetime would."""
    for epoch_ms in (1_700_000_000_000, 1_700_000_000_999, 1_700_000_001_005, 1_710_054_000_123):
        moment = local_time(epoch_ms, offset)
        expected = f"{moment:%Y-%m-%d %H:%M:%S}.{epoch_ms % 1000:03d}{moment:%z}"
        assert format_timestamp(epoch_ms, offset) == expected
        iso = datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert iso_utc(epoch_ms) == f"{iso}.{epoch_ms % 1000:03d}Z"
