"""The kept-alive GET path against a real TCP server on 127.0.0.1 answering exact bytes.

Each test scripts the server's answers byte for byte (framing, cookies, closed connections,
garbage) and reads them through the real client, so what is checked is what the daemon does.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from archiver.config import Account, GwsConfig, Secret
from archiver.errors import TransportError, UndecodableError
from archiver.gws.backoff import RequestRetry
from archiver.gws.client import GwsClient
from archiver.gws.transport import GwsHost

Reply = Callable[[bytes], bytes | None]  # request head -> answer bytes, or None: close at once


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


OK = b'{"statusCode":0,"smssessions":[]}'


@dataclass
class Server:
    """Answers requests from a script; records each request head and connection."""

    replies: list[tuple[Reply, bool]] = field(default_factory=list)  # (reply, close after)
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def then(self, reply: Reply | bytes, *, close: bool = False) -> Server:
        self.replies.append((reply if callable(reply) else (lambda _h, r=reply: r), close))
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                reply, close = self.replies.pop(0)
                data = reply(head)
                if data is None:
                    return
                writer.write(data)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    script = Server()
    listening = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    script.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield script


@pytest.fixture
async def client(server: Server) -> AsyncIterator[GwsClient]:
    config = GwsConfig(
        base_url=f"http://127.0.0.1:{server.port}",
        accounts=(Account("agent1", Secret("pw")),),
        request_timeout_s=0.5,
        max_body_bytes=1000,
    )
    host = GwsHost(config, retry=RequestRetry(attempts=1))
    async with GwsClient(host, config.accounts[0]) as gws:
        yield gws
    await host.close()


async def get(client: GwsClient) -> object:
    return await client.call("GET", "/api/v2/me/smssessions", params={"fields": "*"})


async def test_one_connection_carries_many_requests(server: Server, client: GwsClient) -> None:
    for _ in range(3):
        server.then(answer(OK))
    for _ in range(3):
        assert await get(client) == {"statusCode": 0, "smssessions": []}
    assert server.connections == 1
    assert server.heads[0].startswith(b"GET /api/v2/me/smssessions?fields=* HTTP/1.1\r\n")
    assert b"Authorization: Basic " in server.heads[0]


async def test_a_connection_closed_while_idle_is_replaced(
    server: Server, client: GwsClient
) -> None:
    server.then(answer(OK), close=True).then(answer(OK))
    await get(client)
    await asyncio.sleep(0)  # the server's close may or may not have been seen yet: both work
    assert await get(client) == {"statusCode": 0, "smssessions": []}
    assert server.connections == 2


async def test_connection_close_is_honoured(server: Server, client: GwsClient) -> None:
    server.then(answer(OK, "Connection: close")).then(answer(OK))
    await get(client)
    await get(client)
    assert server.connections == 2


async def test_chunked_and_close_delimited_bodies(server: Server, client: GwsClient) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n" + OK[:5]
    chunked += f"\r\n{len(OK) - 5:x}\r\n".encode() + OK[5:] + b"\r\n0\r\n\r\n"
    server.then(chunked).then(b"HTTP/1.1 200 OK\r\n\r\n" + OK, close=True)
    assert await get(client) == {"statusCode": 0, "smssessions": []}
    assert await get(client) == {"statusCode": 0, "smssessions": []}


async def test_cookies_set_by_an_answer_are_sent_after(server: Server, client: GwsClient) -> None:
    server.then(answer(OK, "Set-Cookie: JSESSIONID=abc123; Path=/; HttpOnly"))
    server.then(answer(OK, "Set-Cookie: JSESSIONID=def456; Path=/")).then(answer(OK))
    await get(client)
    await get(client)
    await get(client)
    assert b"Cookie" not in server.heads[0]
    assert b"Cookie: JSESSIONID=abc123\r\n" in server.heads[1]
    assert b"Cookie: JSESSIONID=def456\r\n" in server.heads[2]
    assert client.transport.session_cookie() == "def456"


async def test_bodies_over_the_limit_are_refused(server: Server, client: GwsClient) -> None:
    big = b'{"x":"' + b"a" * 2000 + b'"}'
    server.then(answer(big))
    with pytest.raises(UndecodableError, match="exceeds max_body_bytes") as declared:
        await get(client)
    assert declared.value.truncated
    streamed = f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{len(big):x}\r\n".encode()
    server.then(streamed + big + b"\r\n0\r\n\r\n")
    with pytest.raises(UndecodableError, match="exceeds max_body_bytes"):
        await get(client)


async def test_transport_failures_map_onto_transport_errors(
    server: Server, client: GwsClient
) -> None:
    server.then(lambda _head: None)  # closed without an answer on a fresh connection
    with pytest.raises(TransportError, match="ConnectionResetError"):
        await get(client)
    server.then(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", close=True)
    with pytest.raises(TransportError, match="closed mid-answer"):
        await get(client)
    server.then(b"NOT HTTP AT ALL\r\n\r\n")
    with pytest.raises(TransportError, match="malformed HTTP answer"):
        await get(client)
    # Half an answer, then silence: the server waits for a next request that never comes.
    server.then(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{").then(answer(OK))
    with pytest.raises(TransportError, match="TimeoutError"):
        await get(client)
    counted = {status for (_, status) in client.host.requests}
    assert {"ConnectionResetError", "ConnectionError", "TimeoutError"} <= counted


async def test_http_errors_and_retry_after_read_as_before(
    server: Server, client: GwsClient
) -> None:
    server.then(answer(b'{"statusCode":6}', status="404 Not Found"))
    server.then(answer(b"", "Retry-After: 2", status="429 Too Many Requests"))
    with pytest.raises(Exception, match="HTTP 404"):
        await get(client)
    with pytest.raises(Exception, match="HTTP 429") as throttled:
        await get(client)
    assert getattr(throttled.value, "retry_after_s", None) == 2.0
    assert server.connections == 1


async def test_concurrent_requests_share_at_most_the_configured_connections(
    server: Server,
) -> None:
    config = GwsConfig(
        base_url=f"http://127.0.0.1:{server.port}",
        accounts=(Account("agent1", Secret("pw")),),
        max_concurrent_requests=2,
    )
    for _ in range(12):
        server.then(answer(OK))
    host = GwsHost(config, retry=RequestRetry(attempts=1))
    async with GwsClient(host, config.accounts[0]) as gws:
        answers = await asyncio.gather(*(get(gws) for _ in range(12)))
    await host.close()
    assert answers == [{"statusCode": 0, "smssessions": []}] * 12
    assert server.connections <= 2


async def test_a_compressed_answer_is_decoded_not_kept_as_poison(
    server: Server, client: GwsClient
) -> None:
    server.then(answer(gzip.compress(OK), "Content-Encoding: gzip"))
    server.then(answer(b"not gzip at all", "Content-Encoding: gzip"))
    server.then(answer(OK, "Content-Encoding: br"))
    assert await get(client) == {"statusCode": 0, "smssessions": []}
    with pytest.raises(TransportError, match="Content-Encoding gzip"):
        await get(client)
    with pytest.raises(TransportError, match="Content-Encoding br"):
        await get(client)


async def test_a_reused_connection_closed_before_answering_is_retried_once(
    server: Server, client: GwsClient
) -> None:
    # The server reads the second request on the kept-alive connection and closes without a
    # byte: the client sends it again on a new connection, which answers.
    server.then(answer(OK)).then(lambda _head: None).then(answer(OK))
    await get(client)
    assert await get(client) == {"statusCode": 0, "smssessions": []}
    assert server.connections == 2
    assert len(server.heads) == 3


async def test_unreadable_cookies_do_not_lose_the_answer(server: Server, client: GwsClient) -> None:
    odd = (
        "Set-Cookie: bad key=1",
        "Set-Cookie: =x",
        'Set-Cookie: a="unterminated',
        "Set-Cookie: k=v; Expires=garbage; Max-Age=x",
        "Set-Cookie: \xff=\xfe",
        "Set-Cookie: JSESSIONID=abc; Path=/",
    )
    server.then(answer(OK, *odd)).then(answer(OK))
    assert await get(client) == {"statusCode": 0, "smssessions": []}
    await get(client)
    assert client.transport.session_cookie() == "abc"
    assert b"JSESSIONID=abc" in server.heads[1]
