"""HTTP error mapping, retries, re-authentication and host-wide throttling of the GWS client.

These are unit tests of the client's handling of answers, so they use aioresponses; everything
end to end runs against the real simulator elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from archiver.config import Account, GwsConfig, Secret
from archiver.errors import (
    AuthError,
    GwsStatusError,
    NotFoundError,
    ProtocolError,
    ThrottledError,
    TransportError,
)
from archiver.gws.backoff import RequestRetry
from archiver.gws.client import GwsClient
from archiver.gws.transport import GwsHost
from archiver.retry_after import parse_retry_after

BASE = "http://gws.test"
SESSIONS = f"{BASE}/api/v2/me/smssessions?fields=*"
ME = f"{BASE}/api/v2/me"
OK_LIST = {"statusCode": 0, "smssessions": [{"id": "S1", "state": "Chatting"}]}


class FakeClock:
    """Time that moves only when somebody sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def host(clock: FakeClock) -> AsyncIterator[GwsHost]:
    accounts = (Account("agent1", Secret("pw-one")), Account("agent2", Secret("pw-two")))
    config = GwsConfig(base_url=BASE, accounts=accounts)
    gws_host = GwsHost(
        config, retry=RequestRetry(attempts=4), keepalive_gets=False, clock=clock, sleep=clock.sleep
    )
    yield gws_host
    await gws_host.close()


@pytest.fixture
async def client(host: GwsHost) -> AsyncIterator[GwsClient]:
    async with GwsClient(host, host.config.accounts[0]) as gws_client:
        yield gws_client


@pytest.fixture
def gws() -> Any:
    with aioresponses() as mocked:
        yield mocked


async def test_server_errors_are_retried_until_success(gws: Any, client: GwsClient) -> None:
    """5xx answers are retried with backoff; the eventual answer is returned."""
    gws.get(SESSIONS, status=502, body="Bad Gateway")
    gws.get(SESSIONS, status=500, payload={"statusCode": 4, "statusMessage": "internal"})
    gws.get(SESSIONS, payload=OK_LIST)
    listing = await client.list_sessions()
    assert [s.id for s in listing.sessions] == ["S1"]


async def test_retries_stop_after_the_attempt_limit(
    gws: Any, client: GwsClient, clock: FakeClock
) -> None:
    """A server that keeps failing gives up after the configured attempts, with waits capped."""
    for _ in range(4):
        gws.get(SESSIONS, status=503)
    with pytest.raises(ThrottledError):
        await client.list_sessions()
    assert len(clock.sleeps) == 3
    assert all(0 <= wait <= 10 for wait in clock.sleeps)


@pytest.mark.parametrize("status", [400, 403])
async def test_client_errors_are_not_retried(gws: Any, client: GwsClient, status: int) -> None:
    """400 and (non-CSRF) 403 fail at once."""
    gws.get(SESSIONS, status=status, payload={"statusCode": 3, "statusMessage": "forbidden"})
    with pytest.raises(GwsStatusError) as caught:
        await client.list_sessions()
    assert caught.value.status == status
    assert not caught.value.retryable


async def test_not_found_maps_from_http_404_and_status_code_6(gws: Any, client: GwsClient) -> None:
    """HTTP 404, or statusCode 6 in a 200, is NotFoundError and is not retried."""
    url = f"{BASE}/api/v2/me/smssessions/S9"
    gws.get(url, status=404, payload={"statusCode": 6, "statusMessage": "not found"})
    gws.get(url, payload={"statusCode": 6, "statusMessage": "not found"})
    for _ in range(2):
        with pytest.raises(NotFoundError):
            await client.get_session("S9")


async def test_unauthenticated_relogs_in_once_then_retries(gws: Any, client: GwsClient) -> None:
    """HTTP 401 or statusCode 20: one re-login (GET /me), then the request again."""
    gws.get(SESSIONS, status=401, payload={"statusCode": 20, "statusMessage": "Access denied"})
    gws.get(ME, payload={"statusCode": 0, "user": {}})
    gws.get(SESSIONS, payload=OK_LIST)
    listing = await client.list_sessions()
    assert len(listing.sessions) == 1
    requested = [str(key[1]) for key in gws.requests]
    assert requested.count(ME) == 1


async def test_csrf_403_counts_as_authentication_failure(gws: Any, client: GwsClient) -> None:
    """A 403 'Missing or invalid Csrf token' re-logs in like a 401."""
    gws.get(SESSIONS, status=403, body="Missing or invalid Csrf token")
    gws.get(ME, payload={"statusCode": 0}, headers={"X-CSRF-TOKEN": "tok"})
    gws.get(SESSIONS, payload=OK_LIST)
    assert len((await client.list_sessions()).sessions) == 1


async def test_wrong_credentials_raise_auth_error(gws: Any, client: GwsClient) -> None:
    """When the re-login itself is refused, AuthError reaches the caller."""
    gws.get(SESSIONS, status=401, payload={"statusCode": 20}, repeat=True)
    gws.get(ME, status=401, payload={"statusCode": 20}, repeat=True)
    with pytest.raises(AuthError):
        await client.list_sessions()


async def test_malformed_json_is_retried_then_reported(gws: Any, client: GwsClient) -> None:
    """A body that is not JSON is a ProtocolError, retried like a transient fault."""
    gws.get(SESSIONS, body='{"statusCode":0,"smsses', repeat=True)
    with pytest.raises(ProtocolError):
        await client.list_sessions()
    gws.get(SESSIONS, payload=OK_LIST)


async def test_connection_errors_become_transport_errors(gws: Any, client: GwsClient) -> None:
    """aiohttp's exceptions are translated once, at the client boundary."""
    gws.get(SESSIONS, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(TransportError):
        await client.list_sessions()


async def test_429_pauses_every_request_to_the_host(
    gws: Any, host: GwsHost, clock: FakeClock
) -> None:
    """A 429 with Retry-After: 2 holds all polling of that host for >= 2 s (fake clock)."""
    served_at: list[float] = []

    def record(url: Any, **kwargs: Any) -> CallbackResult:
        served_at.append(clock.now)
        return CallbackResult(payload=OK_LIST)

    gws.get(SESSIONS, status=429, headers={"Retry-After": "2"})
    gws.get(SESSIONS, callback=record, repeat=True)
    start = clock.now
    async with GwsClient(host, host.config.accounts[0]) as first:
        await first.list_sessions()
    async with GwsClient(host, host.config.accounts[1]) as second:
        clock.now = start + 0.5
        await second.list_sessions()
    assert served_at[0] >= start + 2
    assert served_at[1] >= start + 2
    assert host.pauses == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is honoured as delta-seconds and as an HTTP date."""
    import time

    assert parse_retry_after("2", cap_s=300) == 2.0
    in_ten = parse_retry_after(formatdate(time.time() + 10, usegmt=True), cap_s=300)
    assert in_ten is not None
    assert 8 <= in_ten <= 10
    assert parse_retry_after("soon", cap_s=300) is None
    assert parse_retry_after(None, cap_s=300) is None


def test_password_never_in_client_repr(host: GwsHost) -> None:
    """Guarantee 8: the client's repr names the account, never the password."""
    client = GwsClient(host, host.config.accounts[0])
    assert "pw-one" not in repr(client)
    assert "agent1" in repr(client)


async def test_requests_per_second_ceiling_holds_across_accounts(gws: Any) -> None:
    """``max_requests_per_s`` caps the request rate to the host, all accounts together."""
    accounts = (Account("agent1", Secret("a")), Account("agent2", Secret("b")))
    config = GwsConfig(base_url=BASE, accounts=accounts, max_requests_per_s=40.0)
    sent_at: list[float] = []

    def record(url: Any, **kwargs: Any) -> CallbackResult:
        sent_at.append(asyncio.get_running_loop().time())
        return CallbackResult(payload=OK_LIST)

    gws.get(SESSIONS, callback=record, repeat=True)
    host = GwsHost(config, keepalive_gets=False)
    async with GwsClient(host, accounts[0]) as first, GwsClient(host, accounts[1]) as second:
        await asyncio.gather(*(client.list_sessions() for client in (first, second) * 40))
    await host.close()
    # A full bucket lets the first 40 through at once; the other 40 follow at 40 per second.
    assert len(sent_at) == 80
    assert sent_at[-1] - sent_at[0] >= 0.9
