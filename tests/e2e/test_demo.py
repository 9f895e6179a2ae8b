"""``gws-archiver demo``: the simulator, the daemon and a live view in one process."""

from __future__ import annotations

import io
from pathlib import Path

from archiver.cli.demo import run_demo
from tests.support import archived_messages


async def test_demo_prints_archived_events_and_a_summary(tmp_path: Path) -> None:
    """A short demo shows a header, one line per event and the commands to read the archive."""
    archive = tmp_path / "demo.sqlite3"
    out = io.StringIO()
    await run_demo(archive=str(archive), agents=2, seed=4, duration_s=4.0, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("GWS simulator at http://127.0.0.1:")
    assert lines[1].split()[:3] == ["time", "session", "account"]
    events = [line for line in lines[2:] if "SessionStarted" in line or "Participant" in line]
    assert events
    assert archived_messages(archive) > 0
    assert any(f"sessions --archive {archive}" in line for line in lines)
