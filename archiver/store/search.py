"""Full-text search over the archive: SQLite's FTS5, or PostgreSQL's text search.

The query language is FTS5's either way (see :mod:`archiver.store.tsquery`); results are ranked
first (bm25, or ts_rank) and snippets built for the few winners only, as snippets are the
costly part.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from archiver.errors import StoreError
from archiver.store.db import DATABASE_ERRORS, ReadConnection
from archiver.store.postgres import is_postgres
from archiver.store.queries import (
    MESSAGE_SELECT,
    TYPING_TYPES,
    InvalidQueryError,
    SearchHit,
    SessionFilter,
    marks,
    message_row,
    session_conditions,
)
from archiver.store.tsquery import QuerySyntaxError, to_tsquery

# How FTS5 reports a query it cannot parse (the SQL around it is fixed, so these are the user's).
_QUERY_ERRORS = ("fts5:", "unterminated string", "no such column", "unknown special query")


async def search_messages(
    conn: ReadConnection,
    query: str,
    filters: SessionFilter,
    *,
    types: Sequence[str],
    limit: int,
    highlight: tuple[str, str],
) -> list[SearchHit]:
    """The best ``limit`` matches of an FTS5 query, ranked by bm25, with a snippet each."""
    if not query.strip():
        raise InvalidQueryError("the search query is empty")
    where, params = session_conditions(conn, filters, message_window=True)
    if types:
        where.append(f"m.type IN ({marks(types)})")
        params.extend(types)
    else:
        where.append(f"m.type NOT IN ({marks(TYPING_TYPES)})")
        params.extend(TYPING_TYPES)
    if is_postgres(conn):
        rows = await _search_postgres(conn, query, where, params, limit, highlight)
    else:
        rows = await _search_sqlite(conn, query, where, params, limit, highlight)
    return [
        SearchHit(message_row(row), account=row[12], state=row[13], snippet=row[14], score=-row[15])
        for row in rows
    ]


async def _search_sqlite(
    conn: ReadConnection,
    query: str,
    where: list[str],
    params: list[object],
    limit: int,
    highlight: tuple[str, str],
) -> list[Any]:
    """FTS5: rank first, then build snippets for the few winners only (snippet() is costly)."""
    sql = (
        "WITH hits AS ("
        "  SELECT messages_fts.rowid AS hit_rowid, messages_fts.rank AS hit_rank"
        "  FROM messages_fts"
        "  JOIN messages m ON m.rowid = messages_fts.rowid"
        "  JOIN sessions s ON s.session_id = m.session_id"
        f" WHERE messages_fts MATCH ? AND {' AND '.join(where)}"
        "  ORDER BY messages_fts.rank LIMIT ?)"
        f" SELECT {MESSAGE_SELECT}, s.account, s.state,"
        "  snippet(messages_fts, 0, ?, ?, '…', 16), hits.hit_rank"
        " FROM hits"
        " JOIN messages_fts ON messages_fts.rowid = hits.hit_rowid"
        " JOIN messages m ON m.rowid = hits.hit_rowid"
        " JOIN sessions s ON s.session_id = m.session_id"
        " WHERE messages_fts MATCH ?"
        " ORDER BY hits.hit_rank, m.session_id, m.message_index"
    )
    all_params = [query, *params, limit, *highlight, query]
    try:
        return list(await conn.execute_fetchall(sql, all_params))
    except sqlite3.OperationalError as exc:
        if str(exc).startswith(_QUERY_ERRORS):
            raise InvalidQueryError(f"invalid search query {query!r}: {exc}") from exc
        raise StoreError(f"searching the archive failed: {exc}") from exc


async def _search_postgres(
    conn: ReadConnection,
    query: str,
    where: list[str],
    params: list[object],
    limit: int,
    highlight: tuple[str, str],
) -> list[Any]:
    """The same search on PostgreSQL: ranked by ts_rank, snippets by ts_headline."""
    try:
        tsquery = to_tsquery(query)
    except QuerySyntaxError as exc:
        raise InvalidQueryError(f"invalid search query {query!r}: {exc}") from exc
    start, stop = (mark.replace('"', '""') for mark in highlight)
    options = (
        f'StartSel="{start}", StopSel="{stop}", MaxWords=16, MinWords=8, ShortWord=0,'
        ' MaxFragments=1, FragmentDelimiter="…"'
    )
    sql = (
        "WITH q AS (SELECT to_tsquery('gws_search', ?) AS query),"
        " hits AS ("
        "  SELECT m.session_id, m.message_index, -ts_rank(m.search, q.query) AS hit_rank"
        "  FROM messages m JOIN sessions s ON s.session_id = m.session_id CROSS JOIN q"
        f" WHERE m.search @@ q.query AND {' AND '.join(where)}"
        "  ORDER BY hit_rank LIMIT ?)"
        f" SELECT {MESSAGE_SELECT}, s.account, s.state,"
        "  ts_headline('gws_search', coalesce(m.text, ''), q.query, ?), hits.hit_rank"
        " FROM hits"
        " JOIN messages m ON m.session_id = hits.session_id"
        "  AND m.message_index = hits.message_index"
        " JOIN sessions s ON s.session_id = m.session_id CROSS JOIN q"
        " ORDER BY hits.hit_rank, m.session_id, m.message_index"
    )
    try:
        rows = await conn.execute_fetchall(sql, [tsquery, *params, limit, options])
    except DATABASE_ERRORS as exc:
        raise StoreError(f"searching the archive failed: {exc}") from exc
    return [(*row[:14], _with_ellipses(row[14], row[3] or "", highlight), row[15]) for row in rows]


def _with_ellipses(snippet: str, text: str, highlight: tuple[str, str]) -> str:
    """'…' where ts_headline's excerpt cuts the text, as FTS5's snippet() marks it."""
    plain = snippet.replace(highlight[0], "").replace(highlight[1], "")
    if not plain or plain == text:
        return snippet
    head = "" if text.startswith(plain) else "…"
    tail = "" if text.endswith(plain) else "…"
    return f"{head}{snippet}{tail}"
