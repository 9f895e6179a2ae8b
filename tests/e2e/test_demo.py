"""``gws-archiver demo``: the simulator, the daemon and a live view in one process."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp

from archiver.cli.demo import run_demo
from tests.support import archived_messages, wait_for


async def test_demo_prints_archived_events_and_a_summary(tmp_path: Path) -> None:
    """A short demo shows a header, one line per event and the commands to read the archive."""
    archive = tmp_path / "demo.sqlite3"
    out = io.StringIO()
    await run_demo(archive=str(archive), agents=2, seed=4, duration_s=4.0, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("GWS simulator at http://127.0.0.1:")
    assert lines[1].split()[:3] == ["time", "session", "account"]
    assert any(line.startswith("Watch the conversations live at http://") for line in lines)
    events = [line for line in lines[2:] if "SessionStarted" in line or "Participant" in line]
    assert events
    assert archived_messages(archive) > 0
    assert any(f"sessions --archive {archive}" in line for line in lines)


async def test_demo_serves_the_live_page_at_the_address_it_prints(tmp_path: Path) -> None:
    """The demo turns the web view on (loopback, a free port) and prints its live page."""
    out = io.StringIO()
    demo = asyncio.create_task(
        run_demo(archive=str(tmp_path / "demo.sqlite3"), agents=1, seed=4, duration_s=None, out=out)
    )
    try:
        await wait_for(lambda: "/live" in out.getvalue(), 20)
        (line,) = [line for line in out.getvalue().splitlines() if "/live" in line]
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert "Active now" in await response.text()
    finally:
        demo.cancel()
        await asyncio.gather(demo, return_exceptions=True)
