"""The writer's side of views and reconciliation: who saw a session, and history's verdict."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from archiver.store.db import ArchiveLocation
from archiver.store.writer import ArchiveWriter, HistoryCheck, Page, ViewChange
from tests.support import query
from tests.unit.test_store import SESSION, message


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[ArchiveWriter]:
    async with ArchiveWriter(tmp_path / "archive.sqlite3") as archive_writer:
        yield archive_writer


def events(writer: ArchiveWriter) -> list[tuple[Any, ...]]:
    return query(
        writer.path,
        "SELECT type, message_index, json_extract(payload_json, '$.account') FROM events"
        " ORDER BY seq",
    )


async def test_a_transfer_is_two_views_of_one_session(writer: ArchiveWriter) -> None:
    """agent1 sees it, agent2 gets it, agent1 loses it: one session, two views, told in order."""
    await writer.store_page(Page("agent1", SESSION, [message(1)]))
    arrived = [ViewChange("agent2", "Chatting")]
    await writer.store_page(Page("agent2", SESSION, [message(2)], views=arrived))
    left = [ViewChange("agent1", "Revoked", "revoked")]
    await writer.store_page(Page("agent2", SESSION, [message(3)], views=left))
    await writer.store_page(Page("agent2", SESSION, end_reason="final_state"))

    assert events(writer) == [
        ("SessionStarted", None, "agent1"),
        ("Text", 1, "agent1"),
        ("ViewStarted", None, "agent2"),
        ("Text", 2, "agent2"),
        ("ViewEnded", None, "agent1"),
        ("Text", 3, "agent2"),
        ("SessionEnded", None, "agent2"),
    ]
    views = query(
        writer.path,
        "SELECT serial, account, first_state, last_state, left_reason FROM session_views",
    )
    assert views == [
        (1, "agent1", "Chatting", "Revoked", "revoked"),
        (2, "agent2", "Chatting", "Chatting", "ended"),
    ]
    assert query(writer.path, "SELECT account, view_count, tail FROM sessions") == [
        ("agent2", 2, "drained")
    ]


async def test_a_view_first_seen_closed_and_one_seen_after_the_end(writer: ArchiveWriter) -> None:
    """Revoked at first sight opens and closes a view; after the end, a row, no event, once."""
    await writer.store_page(Page("agent1", SESSION, [message(1)]))
    closed = [ViewChange("agent2", "Revoked", "revoked")]
    await writer.store_page(Page("agent1", SESSION, views=closed))
    await writer.store_page(Page("agent1", SESSION, end_reason="final_state"))
    late = [ViewChange("agent3", "Completed", "completed")]
    for _ in range(2):
        await writer.store_page(Page("agent3", SESSION, views=late))

    types = [row[0] for row in events(writer)]
    assert types == ["SessionStarted", "Text", "ViewStarted", "ViewEnded", "SessionEnded"]
    assert query(writer.path, "SELECT account, left_reason FROM session_views") == [
        ("agent1", "ended"),
        ("agent2", "revoked"),
        ("agent3", "completed"),
    ]


async def test_history_fills_the_tail_before_the_end(writer: ArchiveWriter) -> None:
    """Missing messages are filled (with their events, before SessionEnded); a differing one
    is a conflict; an index beyond the log history gave is not believed."""
    await writer.store_page(Page("agent1", SESSION, [message(1), message(2)]))
    saved = [message(1), message(2, "edited"), message(3), message(4), message(99)]
    check = HistoryCheck(saved, entries=4)
    await writer.store_page(Page("agent1", SESSION, history=check, end_reason="history_over"))

    assert [row[:2] for row in events(writer)][-4:] == [
        ("Text", 3),
        ("Text", 4),
        ("SessionReconciled", None),
        ("SessionEnded", None),
    ]
    assert query(writer.path, "SELECT message_index, source FROM messages ORDER BY 1") == [
        (1, None),
        (2, None),
        (3, "history"),
        (4, "history"),
    ]
    assert query(writer.path, "SELECT message_index FROM conflicts") == [(2,)]
    assert query(writer.path, "SELECT status, filled, differing FROM reconciliations") == [
        ("different", 2, 1)
    ]


async def test_a_late_check_fills_without_message_events(writer: ArchiveWriter) -> None:
    """Pending at the end, done later: the filled messages ride in SessionReconciled only."""
    await writer.store_page(Page("agent1", SESSION, [message(1)]))
    pending = HistoryCheck(None, detail="no answer", retry_at="2026-01-01T00:00:00.000Z")
    await writer.store_page(Page("agent1", SESSION, history=pending, end_reason="final_state"))
    assert await writer.due_reconciliations("2026-01-01T00:00:01.000Z", 10) == ["S1"]
    later = HistoryCheck([message(1), message(2)], entries=2)
    await writer.store_page(Page("agent1", SESSION, history=later))

    assert [row[0] for row in events(writer)][-2:] == ["SessionEnded", "SessionReconciled"]
    filled = query(
        writer.path,
        "SELECT json_extract(payload_json, '$.filled_messages[0].text') FROM events"
        " WHERE type = 'SessionReconciled'",
    )
    assert filled == [("message 2",)]
    assert query(writer.path, "SELECT status, attempts FROM reconciliations") == [("filled", 2)]
    assert await writer.due_reconciliations("2026-01-01T00:00:01.000Z", 10) == []


async def test_views_known_only_from_history_are_found_and_kept(writer: ArchiveWriter) -> None:
    """`unviewed` names the ended sessions an account has no view of; recording one is once."""
    await writer.store_page(Page("agent1", SESSION, [message(1)], end_reason="final_state"))
    assert await writer.unviewed("agent1", ["S1"]) == []
    assert await writer.unviewed("agent2", ["S1", "S9"]) == ["S1", "S9"]
    learnt = [ViewChange("agent2", "Completed", "history")]
    await writer.store_page(Page("agent2", SESSION, views=learnt))
    assert await writer.unviewed("agent2", ["S1"]) == []
    assert query(writer.path, "SELECT account, left_reason FROM session_views") == [
        ("agent1", "ended"),
        ("agent2", "history"),
    ]


def test_history_clients_wait_on_the_configured_channel() -> None:
    """A site's own [reconcile] channel is the one results are awaited on, per account."""
    from archiver.config import ReconcileConfig
    from archiver.gws.client import GwsClient, GwsHost
    from archiver.reconcile import history_clients
    from tests.support import daemon_config

    config = daemon_config("http://127.0.0.1:1", Path("unused.sqlite3"), agents=2)
    host = GwsHost(config.gws)
    clients = [GwsClient(host, account) for account in config.gws.accounts]
    made = history_clients(clients, ReconcileConfig(channel="/v2/ucs/site-results"))
    assert {name: h.channel for name, h in made.items()} == {
        "agent1": "/v2/ucs/site-results",
        "agent2": "/v2/ucs/site-results",
    }


async def test_an_end_waits_while_an_account_held_elsewhere_has_the_session(
    archive: ArchiveLocation,
) -> None:
    """A daemon whose account lost the session does not end it while another daemon's
    account has it open; that one ends it."""
    async with ArchiveWriter(archive) as writer:
        await writer.store_page(Page("agent1", SESSION, [message(1)]))
        await writer.store_page(Page("agent2", SESSION, views=[ViewChange("agent2", "Chatting")]))
        left = [ViewChange("agent1", "Revoked", "revoked")]
        first = Page(
            "agent1", SESSION, views=left, end_reason="out_of_sight",
            held_elsewhere=frozenset({"agent2", "agent3"}),
        )  # fmt: skip
        assert (await writer.store_page(first)).handed_over
        assert query(archive, "SELECT ended_at FROM sessions") == [(None,)]
        last = Page(
            "agent2", SESSION, end_reason="final_state", held_elsewhere=frozenset({"agent1"})
        )
        assert not (await writer.store_page(last)).handed_over
    ends = query(archive, "SELECT count(*) FROM events WHERE type = 'SessionEnded'")
    assert ends == [(1,)]
    views = query(archive, "SELECT account, left_reason FROM session_views ORDER BY serial")
    assert views == [("agent1", "revoked"), ("agent2", "ended")]
