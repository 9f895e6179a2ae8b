"""archiver.Archive over a generated 100,000-message archive: sessions, filters, transcripts."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from archiver import Archive
from archiver.archive import SessionFilter
from archiver.errors import StoreError
from archiver.gws.models import format_instant
from archiver.store.migrate import load_migrations, migrate
from archiver.store.retention import set_legal_hold
from gws_bench.archive_factory import GeneratedArchive, PlannedSession, session_id_of, write_archive
from tests.support import query


async def session_ids(path: Path, filters: SessionFilter, limit: int | None = None) -> list[str]:
    async with Archive(path) as archive:
        return [s.session_id async for s in archive.sessions(filters, limit=limit)]


def ids_where(big: GeneratedArchive, keep: Callable[[PlannedSession], bool]) -> set[str]:
    return {p.session_id for p in big.sessions if keep(p)}


def active_between(plan: PlannedSession, since: datetime, until: datetime) -> bool:
    low, high = format_instant(since), format_instant(until)
    return any(low <= at < high for at in plan.sent_ats)


def test_generated_archive_is_large_enough(big_archives: GeneratedArchive) -> None:
    """The shared archive holds at least 100,000 messages, as the plan says."""
    stored = query(big_archives.path, "SELECT count(*) FROM messages")[0][0]
    assert stored == big_archives.message_count >= 100_000


async def test_sessions_without_filters_lists_all_newest_first(
    big_archives: GeneratedArchive,
) -> None:
    """Every session comes once, across page boundaries, newest first_seen_at first."""
    async with Archive(big_archives.path) as archive:
        found = [s async for s in archive.sessions()]
    keys = [(s.first_seen_at, s.session_id) for s in found]
    assert keys == sorted(keys, reverse=True)
    assert {s.session_id for s in found} == {p.session_id for p in big_archives.sessions}
    assert len(found) == len(big_archives.sessions)


async def test_sessions_limit_returns_the_newest_n(big_archives: GeneratedArchive) -> None:
    """limit=N is the first N of the full listing."""
    everything = await session_ids(big_archives.path, SessionFilter())
    assert await session_ids(big_archives.path, SessionFilter(), limit=7) == everything[:7]


async def test_sessions_filter_by_account(big_archives: GeneratedArchive) -> None:
    """account keeps exactly that account's sessions."""
    found = await session_ids(big_archives.path, SessionFilter(account="agent2"))
    assert set(found) == ids_where(big_archives, lambda p: p.account == "agent2")
    assert len(found) == 250


async def test_sessions_filter_by_state_ignores_case(big_archives: GeneratedArchive) -> None:
    """state matches GWS states without regard to case."""
    found = await session_ids(big_archives.path, SessionFilter(state="revoked"))
    assert set(found) == ids_where(big_archives, lambda p: p.state == "Revoked")


async def test_sessions_filter_by_time_window(big_archives: GeneratedArchive) -> None:
    """since/until keep sessions with a message sent in [since, until)."""
    since, until = datetime(2024, 3, 5, 10, tzinfo=UTC), datetime(2024, 3, 6, 3, tzinfo=UTC)
    found = await session_ids(big_archives.path, SessionFilter(since=since, until=until))
    expected = ids_where(big_archives, lambda p: active_between(p, since, until))
    assert set(found) == expected
    assert 0 < len(expected) < 100


async def test_sessions_filter_treats_naive_times_as_utc(big_archives: GeneratedArchive) -> None:
    """A naive datetime means UTC."""
    naive = SessionFilter(since=datetime(2024, 3, 7), until=datetime(2024, 3, 8))
    aware = SessionFilter(
        since=datetime(2024, 3, 7, tzinfo=UTC), until=datetime(2024, 3, 8, tzinfo=UTC)
    )
    assert await session_ids(big_archives.path, naive) == await session_ids(
        big_archives.path, aware
    )


async def test_sessions_filter_by_participant_nickname(big_archives: GeneratedArchive) -> None:
    """participant matches an agent's or customer's nickname, ignoring ASCII case."""
    agents = await session_ids(big_archives.path, SessionFilter(participant="zoë"))
    customers = await session_ids(big_archives.path, SessionFilter(participant="CUST5"))
    assert set(agents) == ids_where(big_archives, lambda p: p.agent == "Zoë")
    assert set(customers) == ids_where(big_archives, lambda p: p.customer == "Cust5")


async def test_sessions_filter_by_message_sender_not_in_participants(
    big_archives: GeneratedArchive,
) -> None:
    """participant also matches senders of messages (the notice sender 'system')."""
    found = await session_ids(big_archives.path, SessionFilter(participant="system"))
    senders = query(
        big_archives.path, "SELECT DISTINCT session_id FROM messages WHERE from_nickname = 'system'"
    )
    assert set(found) == {row[0] for row in senders}


async def test_sessions_filters_combine(big_archives: GeneratedArchive) -> None:
    """Several filters together keep only sessions matching all of them."""
    since, until = datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 20, tzinfo=UTC)
    filters = SessionFilter(
        account="agent1", state="Completed", participant="Marat", since=since, until=until
    )
    expected = ids_where(
        big_archives,
        lambda p: (
            p.account == "agent1"
            and p.state == "Completed"
            and p.agent == "Marat"
            and active_between(p, since, until)
        ),
    )
    assert set(await session_ids(big_archives.path, filters)) == expected
    assert expected


async def test_session_record_counts_its_messages(big_archives: GeneratedArchive) -> None:
    """A session's record carries its message count and first/last sent_at."""
    plan = big_archives.sessions[42]
    async with Archive(big_archives.path) as archive:
        record = await archive.session(plan.session_id)
    assert record is not None
    assert record.message_count == plan.message_count
    assert record.first_message_at == min(plan.sent_ats)
    assert record.last_message_at == max(plan.sent_ats)
    assert (record.account, record.state, record.nicknames) == (
        plan.account,
        plan.state,
        [plan.agent, plan.customer],
    )


async def test_held_filter_keeps_only_sessions_under_legal_hold(tmp_path: Path) -> None:
    """held=True lists exactly the sessions under legal hold."""
    small = await write_archive(tmp_path / "a.sqlite3", sessions=6, messages_per_session=5)
    await set_legal_hold(small.path, session_id_of(4), held=True)
    assert await session_ids(small.path, SessionFilter(held=True)) == [session_id_of(4)]


async def test_transcript_is_in_log_order_with_save_done_last(
    big_archives: GeneratedArchive,
) -> None:
    """A transcript runs index 1..N, then the TranscriptSaveDone (index -1)."""
    plan = next(p for p in big_archives.sessions if p.state == "Completed")
    async with Archive(big_archives.path) as archive:
        transcript = await archive.transcript(plan.session_id)
    assert transcript is not None
    indices = [m.message_index for m in transcript.messages]
    assert indices == [*range(1, plan.message_count), -1]
    assert transcript.messages[-1].type == "TranscriptSaveDone"


async def test_transcript_of_unknown_session_is_none(big_archives: GeneratedArchive) -> None:
    """An id the archive does not hold gives None, not an error."""
    async with Archive(big_archives.path) as archive:
        assert await archive.transcript("no-such-session") is None


async def test_transcript_text_marks_agents_only_and_can_hide_events(
    big_archives: GeneratedArchive,
) -> None:
    """Text lines mark agents-only messages; hide_events drops typing and join/leave lines."""
    async with Archive(big_archives.path) as archive:
        transcript = await archive.transcript(session_id_of(3))
    assert transcript is not None
    shown = list(transcript.text_lines())
    hidden = list(transcript.text_lines(hide_events=True))
    agents_only = sum(m.agents_only for m in transcript.messages)
    assert sum("[agents only]" in line for line in shown) == agents_only > 0
    assert any(line.endswith("· Cust3 joined") for line in shown)
    assert not any("· " in line for line in hidden)
    assert "02:09:35  Cust3: my broken phone needs a refund" in hidden


async def test_transcript_text_dims_events_only_when_colored(
    big_archives: GeneratedArchive,
) -> None:
    """With color, event lines are dim (ANSI) and message lines are plain."""
    async with Archive(big_archives.path) as archive:
        transcript = await archive.transcript(session_id_of(3))
    assert transcript is not None
    colored = list(transcript.text_lines(color=True))
    assert all(line.startswith("\x1b[2m") for line in colored if "· " in line)
    assert not any("\x1b[" in line for line in transcript.text_lines())


async def test_stats_count_types_states_and_days(big_archives: GeneratedArchive) -> None:
    """stats agree with the plan: totals, per state, per day; per type sums to the total."""
    async with Archive(big_archives.path) as archive:
        stats = await archive.stats()
    days = Counter(at[:10] for p in big_archives.sessions for at in p.sent_ats)
    undated = big_archives.message_count - sum(days.values())
    assert stats.messages == big_archives.message_count
    assert stats.sessions == len(big_archives.sessions)
    assert stats.sessions_by_state == dict(Counter(p.state for p in big_archives.sessions))
    assert stats.messages_by_day == {"(none)": undated, **dict(sorted(days.items()))}
    assert sum(stats.messages_by_type.values()) == stats.messages
    assert stats.messages_by_type["TranscriptSaveDone"] == stats.sessions_by_state["Completed"]


async def test_opening_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    """A path with no file raises StoreError naming it (nothing is created)."""
    path = tmp_path / "absent.sqlite3"
    with pytest.raises(StoreError, match="no archive"):
        await Archive(path).open()
    assert not path.exists()


async def test_opening_a_file_that_is_not_an_archive_fails(tmp_path: Path) -> None:
    """An SQLite file without our schema is refused."""
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a gws-archiver archive"):
        await Archive(path).open()


async def test_opening_an_archive_older_than_search_asks_for_an_upgrade(tmp_path: Path) -> None:
    """An archive still at schema version 1 is refused with a clear next step."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:1])
    conn.close()
    with pytest.raises(StoreError, match="schema version 1"):
        await Archive(path).open()


async def test_archive_is_read_only(big_archives: GeneratedArchive) -> None:
    """The Archive's connection cannot write, even by accident."""
    refusal = (sqlite3.OperationalError, psycopg.errors.ReadOnlySqlTransaction)
    async with Archive(big_archives.path) as archive:
        with pytest.raises(refusal, match=r"readonly|read-only"):
            await archive._reader.conn.execute_fetchall("DELETE FROM sessions")


async def test_close_twice_is_harmless(big_archives: GeneratedArchive) -> None:
    """close() may be called again after the context manager closed it."""
    archive = Archive(big_archives.path)
    async with archive:
        pass
    await archive.close()
    with pytest.raises(StoreError, match="closed"):
        await archive.open()
