"""Full-text search: FTS5 ranking, snippets, phrases, non-ASCII text, filters, bad syntax."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver import Archive
from archiver.archive import InvalidQueryError, SearchHit, SessionFilter
from archiver.gws.models import parse_message, parse_session
from archiver.store.migrate import load_migrations, migrate
from archiver.store.writer import ArchiveWriter, Page
from gws_bench.archive_factory import GeneratedArchive, gws_message, session_id_of

AT = datetime(2024, 5, 1, 12, tzinfo=UTC)


async def search(
    path: Path,
    query: str,
    *,
    filters: SessionFilter | None = None,
    types: tuple[str, ...] = (),
    limit: int = 20,
    highlight: tuple[str, str] = ("[", "]"),
) -> list[SearchHit]:
    async with Archive(path) as archive:
        return await archive.search(query, filters, types=types, limit=limit, highlight=highlight)


def sessions_of(hits: list[SearchHit]) -> list[str]:
    return [hit.message.session_id for hit in hits]


async def test_ranking_prefers_dense_short_matches(big_archives: GeneratedArchive) -> None:
    """bm25: 'zebra zebra zebra crossing' beats 'zebra', which beats a long message."""
    hits = await search(big_archives.path, "zebra")
    assert sessions_of(hits) == [session_id_of(5), session_id_of(3), session_id_of(11)]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_snippet_highlights_every_hit_with_brackets(big_archives: GeneratedArchive) -> None:
    """The snippet wraps each matching token in the highlight markers."""
    hits = await search(big_archives.path, "zebra")
    assert hits[0].snippet == "[zebra] [zebra] [zebra] crossing"


async def test_snippet_markers_are_configurable(big_archives: GeneratedArchive) -> None:
    """Other markers (ANSI bold on a terminal) replace the brackets."""
    hits = await search(big_archives.path, "crossing", highlight=("\x1b[1m", "\x1b[0m"))
    assert hits[0].snippet == "zebra zebra zebra \x1b[1mcrossing\x1b[0m"


async def test_long_messages_are_cut_around_the_hit(big_archives: GeneratedArchive) -> None:
    """A long message's snippet is an excerpt with an ellipsis, hit included."""
    hits = await search(big_archives.path, "zebra")
    long = hits[2]
    assert "[zebra]" in long.snippet
    assert "…" in long.snippet
    assert len(long.snippet) < len(long.message.text or "")


async def test_phrase_query_needs_adjacent_words(big_archives: GeneratedArchive) -> None:
    """'"broken phone"' matches the phrase only; 'broken phone' matches both words anywhere."""
    phrase = await search(big_archives.path, '"broken phone"')
    words = await search(big_archives.path, "broken phone")
    assert sessions_of(phrase) == [session_id_of(3)]
    # FTS5 marks the phrase; PostgreSQL's ts_headline marks each of its words.
    assert phrase[0].snippet in (
        "my [broken phone] needs a refund",
        "my [broken] [phone] needs a refund",
    )
    assert set(sessions_of(words)) == {session_id_of(3), session_id_of(8)}


async def test_accents_and_case_are_folded(big_archives: GeneratedArchive) -> None:
    """'cafe' finds 'café' and 'FERME' finds 'fermé' (remove_diacritics 2)."""
    for query in ("cafe", "FERME", "café"):
        assert sessions_of(await search(big_archives.path, query)) == [session_id_of(17)]


async def test_non_latin_scripts_are_searchable(big_archives: GeneratedArchive) -> None:
    """Cyrillic folds case; CJK words separated by spaces are tokens of their own."""
    for query in ("привет", "ПРИВЕТ", "東京", "タワー"):
        assert sessions_of(await search(big_archives.path, query)) == [session_id_of(23)]


async def test_prefix_and_boolean_queries_work(big_archives: GeneratedArchive) -> None:
    """FTS5 syntax passes through: prefix*, OR, NOT."""
    assert sessions_of(await search(big_archives.path, "zebr*"))[:2] == [
        session_id_of(5),
        session_id_of(3),
    ]
    either = await search(big_archives.path, "crossing OR refund")
    assert set(sessions_of(either)) == {session_id_of(5), session_id_of(3)}
    assert sessions_of(await search(big_archives.path, "phone NOT refund")) == [session_id_of(8)]


# Which planted session field each filter looks at, and the filter built from a value.
SESSION_FIELDS: dict[str, tuple[str, Callable[[str], SessionFilter]]] = {
    "account": ("account", lambda value: SessionFilter(account=value)),
    "state": ("state", lambda value: SessionFilter(state=value)),
    "participant": ("customer", lambda value: SessionFilter(participant=value)),
}


@pytest.mark.parametrize("name", sorted(SESSION_FIELDS))
async def test_search_filters_by_session_fields(big_archives: GeneratedArchive, name: str) -> None:
    """account, state and participant keep only hits in matching sessions, still ranked."""
    attribute, make_filter = SESSION_FIELDS[name]
    ranked = [big_archives.sessions[n] for n in (5, 3, 11)]
    value = getattr(big_archives.sessions[11], attribute)
    hits = await search(big_archives.path, "zebra", filters=make_filter(value))
    expected = [p.session_id for p in ranked if getattr(p, attribute) == value]
    assert sessions_of(hits) == expected
    assert 0 < len(expected) < len(ranked)


async def test_search_time_window_applies_to_the_message(big_archives: GeneratedArchive) -> None:
    """since/until keep hits whose own sent_at is in the window."""
    hits = await search(big_archives.path, "kaka", limit=10_000)
    middle = sorted(h.message.sent_at or "" for h in hits)[len(hits) // 2]
    since = datetime.fromisoformat(middle)
    later = await search(
        big_archives.path, "kaka", filters=SessionFilter(since=since), limit=10_000
    )
    assert {(h.message.session_id, h.message.message_index) for h in later} == {
        (h.message.session_id, h.message.message_index)
        for h in hits
        if (h.message.sent_at or "") >= middle
    }


async def test_limit_caps_the_hits(big_archives: GeneratedArchive) -> None:
    """A common word returns exactly limit hits, best first."""
    hits = await search(big_archives.path, "kaka", limit=25)
    assert len(hits) == 25
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("query", ["don't", '"unterminated', "AND", "nosuchcolumn:word", "  "])
async def test_invalid_queries_raise_invalid_query_error(
    big_archives: GeneratedArchive, query: str
) -> None:
    """FTS5 syntax errors (and an empty query) become InvalidQueryError."""
    with pytest.raises(InvalidQueryError):
        await search(big_archives.path, query)


async def test_typing_previews_are_skipped_unless_asked_for(tmp_path: Path) -> None:
    """A TypingStarted preview repeating the text is not a hit, unless types asks for it."""
    path = tmp_path / "a.sqlite3"
    session = parse_session({"id": "S1", "state": "Chatting"})
    who = ("Pat", "Customer")
    messages = [
        parse_message(gws_message(1, "TypingStarted", "I want a refund", who, AT)),
        parse_message(gws_message(2, "Text", "I want a refund", who, AT)),
    ]
    async with ArchiveWriter(path) as writer:
        await writer.store_page(Page("agent1", session, messages))
    default = await search(path, "refund")
    typing = await search(path, "refund", types=("TypingStarted",))
    assert [h.message.message_index for h in default] == [2]
    assert [h.message.message_index for h in typing] == [1]


async def test_migration_indexes_messages_archived_before_it(tmp_path: Path) -> None:
    """Upgrading a version-1 archive backfills the search index with its messages."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:1])
    conn.execute(
        "INSERT INTO sessions (session_id, account, first_seen_at, last_seen_at)"
        " VALUES ('S1', 'agent1', 'x', 'x')"
    )
    conn.execute(
        "INSERT INTO messages (session_id, message_index, type, text, raw_json, archived_at)"
        " VALUES ('S1', 1, 'Text', 'archived before search existed', '{}', 'x')"
    )
    migrate(conn)
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
    conn.close()
    hits = await search(path, "existed")
    assert [(h.message.session_id, h.message.message_index) for h in hits] == [("S1", 1)]
