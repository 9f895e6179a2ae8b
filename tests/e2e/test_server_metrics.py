"""``/metrics``: scraped over HTTP, parsed with prometheus-client's own text parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

from archiver.config import HooksConfig, PythonHook
from tests.support import archived_messages, query, wait_for
from tests.support.served import sample, served

RECORDER = "tests.support.hook_targets:record"
BACKLOG = "gws_archiver_delivery_backlog"


async def test_message_counters_move_as_messages_are_archived(tmp_path: Path) -> None:
    """Messages archived by type and events committed grow by what the archive gained."""
    async with served(tmp_path) as s:
        session_id = s.sim.world.create_session("agent1")
        s.sim.world.append_message(session_id, "Text", text="hello")
        await wait_for(lambda: archived_messages(s.archive) == 1)
        before = await s.scrape()
        for n in range(5):
            s.sim.world.append_message(session_id, "Text", text=f"line {n}")
        s.sim.world.append_message(session_id, "PushUrl", url="https://example.invalid/")
        await wait_for(lambda: archived_messages(s.archive) == 7)
        after = await s.scrape()
        (events,) = query(s.archive, "SELECT max(seq) FROM events")[0]

    text = "gws_archiver_messages_archived_total"
    assert sample(after, text, type="Text") - sample(before, text, type="Text") == 5
    assert sample(after, text, type="PushUrl") - sample(before, text, type="PushUrl") == 1
    assert sample(after, "gws_archiver_events_total") == events
    assert sample(after, "gws_archiver_pages_stored_total") > sample(
        before, "gws_archiver_pages_stored_total"
    )


async def test_polls_and_gws_requests_are_counted_by_result_and_status(tmp_path: Path) -> None:
    """Session polls count by result, and GWS requests by endpoint and HTTP status."""
    async with served(tmp_path) as s:
        session_id = s.sim.world.create_session("agent1")
        s.sim.world.append_message(session_id, "Text", text="hello")
        await wait_for(lambda: archived_messages(s.archive) == 1)
        metrics = await s.scrape()

    assert sample(metrics, "gws_archiver_polls_total", result="archived") >= 1
    assert sample(metrics, "gws_archiver_session_list_reads_total", result="ok") >= 1
    requests = "gws_archiver_gws_requests_total"
    assert sample(metrics, requests, endpoint="messages", status="200") >= 1
    assert sample(metrics, requests, endpoint="sessions", status="200") >= 1


async def test_open_sessions_show_as_active_with_a_bounded_cursor_lag(tmp_path: Path) -> None:
    """An open session counts as active; its cursor lag stays under the idle poll interval."""
    async with served(tmp_path) as s:
        s.sim.world.create_session("agent1")
        s.sim.world.create_session("agent1")
        await wait_for(lambda: len(s.daemon.accounts[0].pollers) == 2)
        metrics = await s.scrape()

    assert sample(metrics, "gws_archiver_active_sessions", account="agent1") == 2
    lag = sample(metrics, "gws_archiver_cursor_lag_max_seconds", account="agent1")
    assert 0 <= lag < 2 * s.daemon.config.poll.max_interval_s + 1
    assert sample(metrics, "gws_archiver_account_up", account="agent1") == 1


async def test_archive_size_counts_the_file_and_its_wal(tmp_path: Path) -> None:
    """archive_bytes reports the database file and the WAL as they are on disk."""
    async with served(tmp_path) as s:
        session_id = s.sim.world.create_session("agent1")
        s.sim.world.append_message(session_id, "Text", text="hello")
        await wait_for(lambda: archived_messages(s.archive) == 1)
        metrics = await s.scrape()
        main_bytes = s.archive.stat().st_size

    assert sample(metrics, "gws_archiver_archive_bytes", file="main") == main_bytes
    assert sample(metrics, "gws_archiver_archive_bytes", file="wal") > 0


async def test_delivery_metrics_follow_each_hook_subscriber(tmp_path: Path) -> None:
    """A Python hook's deliveries count up and its backlog drains to zero."""
    hooks = HooksConfig(python=(PythonHook(name="recorder", target=RECORDER),), plugins=False)
    async with served(tmp_path, hooks=hooks) as s:
        session_id = s.sim.world.create_session("agent1")
        for n in range(4):
            s.sim.world.append_message(session_id, "Text", text=f"line {n}")
        await wait_for(lambda: archived_messages(s.archive) == 4)
        (events,) = query(s.archive, "SELECT count(*) FROM events")[0]
        for _ in range(600):  # the hook runs beside archiving: give it up to 30 s
            metrics = await s.scrape()
            if not sample(metrics, BACKLOG, subscriber="recorder"):
                break
            await asyncio.sleep(0.05)

    deliveries = "gws_archiver_deliveries_total"
    assert sample(metrics, deliveries, subscriber="recorder", result="delivered") == events
    assert sample(metrics, deliveries, subscriber="recorder", result="failed") == 0
    assert sample(metrics, "gws_archiver_dead_letters", subscriber="recorder") == 0
