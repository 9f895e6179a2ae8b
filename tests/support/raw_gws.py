"""A minimal GWS of the tests' own that serves message logs byte for byte, poison included.

Unlike the simulator, it builds no JSON of its own: each session's log is a list of raw JSON
elements (bytes), served by position (``startIndex`` N is the N-th element), so a test can put
anything on the wire: offsets of +24:00, invalid UTF-8, unquoted Java longs, indices that lie.
It also records every request, and can answer with chosen headers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web


def text(index: int, words: str, **extra: str) -> bytes:
    """One healthy Text element."""
    element = {"index": index, "type": "Text", "text": words, "from": {"nickname": "Customer"}}
    element.update(extra)
    return json.dumps(element).encode()


@dataclass
class RawGws:
    """Sessions per account, each a log of raw elements; ``answers`` override the next replies."""

    logs: dict[str, dict[str, list[bytes]]] = field(default_factory=dict)  # account -> id -> log
    states: dict[str, str] = field(default_factory=dict)
    session_extra: dict[str, bytes] = field(default_factory=dict)  # raw session list entries
    answers: list[web.Response] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    base_url: str = ""

    def add(self, account: str, session_id: str, log: list[bytes], state: str = "Chatting") -> None:
        """Give ``account`` a session with this log."""
        self.logs.setdefault(account, {})[session_id] = log
        self.states[session_id] = state

    def _account(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "Basic ")
        return base64.b64decode(header.split(" ", 1)[1]).decode().split(":", 1)[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        if self.answers and request.path.endswith("/messages"):
            return self.answers.pop(0)
        account = self._account(request)
        sessions = self.logs.get(account, {})
        raw_path = request.raw_path.split("?", 1)[0].removeprefix("/api/v2/me")
        parts = [unquote(part) for part in raw_path.strip("/").split("/")]
        if parts == [""]:
            return _json(b'{"statusCode":0,"user":{"userName":"%s"}}' % account.encode())
        if parts == ["smssessions"]:
            entries = [self._session(sid) for sid in sessions]
            entries += list(self.session_extra.values())
            return _json(b'{"statusCode":0,"smssessions":[' + b",".join(entries) + b"]}")
        session_id = parts[1]
        if session_id not in sessions:
            return web.Response(status=404, body=b'{"statusCode":6}')
        if len(parts) == 2:
            return _json(b'{"statusCode":0,"smssession":' + self._session(session_id) + b"}")
        log = sessions[session_id]
        start = max(1, int(request.query.get("startIndex", "1")))
        count = int(request.query.get("count", "0")) or len(log)
        chosen = log[start - 1 : start - 1 + count]
        return _json(b'{"statusCode":0,"messages":[' + b",".join(chosen) + b"]}")

    def _session(self, session_id: str) -> bytes:
        state = self.states[session_id]
        return b'{"id":"%s","state":"%s","participants":[]}' % (
            session_id.encode(),
            state.encode(),
        )


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


@asynccontextmanager
async def serving(gws: RawGws) -> AsyncIterator[RawGws]:
    """Serve ``gws`` on 127.0.0.1 (a free port) for the block."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gws._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gws.base_url = f"http://127.0.0.1:{port}"
    try:
        yield gws
    finally:
        await runner.cleanup()
