"""The local server answers only to its own names: DNS rebinding cannot read ``/events``."""

from __future__ import annotations

from pathlib import Path

from archiver.config import Secret
from tests.support.served import served


async def status_for(s: object, path: str, **headers: str) -> int:
    async with s.http.get(s.url + path, headers=headers) as response:  # type: ignore[attr-defined]
        return response.status


async def test_a_foreign_host_header_is_refused(tmp_path: Path) -> None:
    """Host: evil.example (a rebinding page's name) gets 421 on every route, /events included."""
    async with served(tmp_path) as s:
        port = s.url.rsplit(":", 1)[1]
        refused = [
            await status_for(s, path, Host=host)
            for path in ("/events", "/metrics", "/healthz")
            for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{int(port) + 1}")
        ]
        served_ok = [
            await status_for(s, "/healthz", Host=host)
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}")
        ]
    assert set(refused) == {421}
    assert served_ok == [200, 200, 200, 200]


async def test_cross_site_browser_requests_are_refused_without_a_token(tmp_path: Path) -> None:
    """A browser's cross-site fetch (Sec-Fetch-Site: cross-site) gets 403."""
    async with served(tmp_path) as s:
        assert await status_for(s, "/events", **{"Sec-Fetch-Site": "cross-site"}) == 403
        assert await status_for(s, "/healthz", **{"Sec-Fetch-Site": "same-origin"}) == 200


async def test_allowed_hosts_adds_names(tmp_path: Path) -> None:
    """server.allowed_hosts lets a local proxy's name through."""
    async with served(tmp_path, allowed_hosts=("archiver.internal",)) as s:
        assert await status_for(s, "/healthz", Host="archiver.internal") == 200
        assert await status_for(s, "/healthz", Host="other.internal") == 421


async def test_with_a_token_the_token_is_the_guard(tmp_path: Path) -> None:
    """With a token, any Host carrying it is served; without it, 401."""
    async with served(tmp_path, token=Secret("t0ken")) as s:
        auth = {"Authorization": "Bearer t0ken"}
        assert await status_for(s, "/healthz", Host="archiver.example", **auth) == 200
        assert await status_for(s, "/healthz", Host="archiver.example") == 401
