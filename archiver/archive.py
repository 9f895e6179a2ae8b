"""The public read API: ``archiver.Archive(path)``, safe to use while the daemon writes.

::

    async with Archive("archive.sqlite3") as archive:
        async for session in archive.sessions(SessionFilter(account="agent1"), limit=10):
            print(session.session_id, session.message_count)
        hits = await archive.search('"refund policy"')
        transcript = await archive.transcript(hits[0].message.session_id)

Every query runs on one read-only connection (``mode=ro``) in WAL mode: readers never block
the writer and see only committed pages. Long listings (``sessions``, ``messages``,
``transcripts``) are read in keyset pages, so they stream in constant memory and no read
transaction stays open between pages.

Text rendering treats every GWS-supplied string as hostile: control characters (C0, DEL, C1,
so ESC, CR and NEL too), the line and paragraph separators and bidi overrides are shown as
escapes (``\\r``, ``\\x1b``, ``\\u202e``; see :func:`printable`), and a message's own line
breaks become continuation lines indented under it. No line a customer writes can start like
a speaker line or move the terminal's cursor.
"""

from __future__ import annotations

import asyncio
import html
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

from archiver.errors import StoreError
from archiver.events import Event
from archiver.lifecycle import Resource
from archiver.store import queries, search
from archiver.store.db import ArchiveLocation, location_of
from archiver.store.postgres import PostgresArchive
from archiver.store.queries import (
    MESSAGE_COLUMNS,
    ArchivedMessage,
    InvalidQueryError,
    SearchHit,
    SessionFilter,
    SessionRecord,
    SessionView,
)
from archiver.store.reader import ArchiveReader
from archiver.store.stats import ArchiveStats, archive_stats
from archiver.text import escape_html as _html
from archiver.text import printable

__all__ = [
    "MESSAGE_COLUMNS",
    "Archive",
    "ArchiveStats",
    "ArchivedMessage",
    "InvalidQueryError",
    "SearchHit",
    "SessionFilter",
    "SessionRecord",
    "SessionView",
    "Transcript",
    "printable",
]

_SESSION_CHUNK = 500
# Shown discreetly in transcripts (and hidden by ``hide_events``): they carry no words of
# their own, only what happened around the conversation.
DISCREET_TYPES = frozenset(
    {
        "ParticipantJoined",
        "ParticipantLeft",
        "ParticipantRejoined",
        "TypingStarted",
        "TypingStopped",
        "NicknameUpdated",
        "TranscriptSaveDone",
    }
)
_DIM, _RESET = "\x1b[2m", "\x1b[0m"
_CONTINUATION = " " * 10
_HTML_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}"
    "ol{list-style:none;padding:0}li{margin:.2rem 0}time{color:#777;margin-right:.6rem}"
    ".who{font-weight:600}.text{white-space:pre-wrap}.event{color:#888;font-size:.85em;"
    "padding-left:2rem}.agents-only{background:#fff6d5}.agents-only .who:after"
    "{content:' [agents only]';font-weight:400;color:#a60}"
)


@dataclass(frozen=True, slots=True)
class Transcript:
    """A session and its messages in log order, renderable as text or HTML."""

    session: SessionRecord
    messages: list[ArchivedMessage]
    views: list[SessionView] = field(default_factory=list)
    filled: frozenset[int] = frozenset()  # indices Interaction History supplied

    def header_lines(self) -> list[str]:
        """What the session is: id, account, state, size, who handled it, its checks, hold."""
        session = self.session
        facts = [f"account {session.account}", f"state {session.state or '(none)'}"]
        facts.append(f"{session.message_count} messages")
        if session.ended_at:
            facts.append(f"ended {session.ended_at}")
        if session.legal_hold:
            facts.append("under legal hold")
        checks = []
        if session.ended_at:
            checks.append(
                f"checked against Interaction History: {session.reconciliation or 'not yet'}"
            )
            if self.filled:
                checks.append(f"{len(self.filled)} messages from history")
            if session.tail == "unverified" and session.reconciliation not in _VERIFYING:
                checks.append("its last messages could not be verified")
        people = ", ".join(
            f"{p.get('nickname', '?')} ({p.get('type', '?')})"
            for p in session.participants
            if isinstance(p, dict)
        )
        lines = [f"Session {session.session_id}", f"  {', '.join(facts)}"] + (
            [f"  participants: {people}"] if people else []
        )
        lines += [f"  handled by {_view_words(view)}" for view in self.views]
        if checks:
            lines.append(f"  {', '.join(checks)}")
        return [printable(line) for line in lines]

    def text_lines(self, *, hide_events: bool = False, color: bool = False) -> Iterator[str]:
        """The conversation as plain text lines: a date line, then ``HH:MM:SS  who: text``.

        GWS-supplied text is made :func:`printable`; ``color`` dims the discreet lines.
        """
        yield from self.header_lines()
        day = None
        for message in self.messages:
            discreet = message.type in DISCREET_TYPES
            if discreet and hide_events:
                continue
            if message.sent_at and message.sent_at[:10] != day:
                day = message.sent_at[:10]
                yield ""
                yield day
            clock = message.sent_at[11:19] if message.sent_at else "--:--:--"
            marker = " [agents only]" if message.agents_only else ""
            if message.message_index in self.filled:
                marker += " [from history]"
            if discreet:
                line = printable(f"{clock}    · {_event_words(message)}{marker}")
                yield f"{_DIM}{line}{_RESET}" if color else line
                continue
            first, *rest = _body_lines(message)
            yield printable(f"{clock}  {_who(message)}{marker}: ") + first
            yield from (_CONTINUATION + line for line in rest)

    def html_section(self, *, hide_events: bool = False) -> str:
        """The conversation as one HTML ``<section>`` (see :func:`html_page`)."""
        session = self.session
        meta = "<br>".join(html.escape(line.strip()) for line in self.header_lines()[1:])
        items = []
        for message in self.messages:
            discreet = message.type in DISCREET_TYPES
            if discreet and hide_events:
                continue
            classes = ["event" if discreet else "message"]
            if message.agents_only:
                classes.append("agents-only")
            if message.message_index in self.filled:
                classes.append("from-history")
            stamp = _html(message.sent_at or "")
            clock = message.sent_at[11:19] if message.sent_at else "--:--:--"
            if discreet:
                content = f'<span class="text">{_html(_event_words(message))}</span>'
            else:
                content = (
                    f'<span class="who">{_html(_who(message))}</span> '
                    f'<span class="text">{_html_body(message)}</span>'
                )
            items.append(
                f'<li class="{" ".join(classes)}" data-index="{message.message_index}"'
                f' data-type="{_html(message.type)}">'
                f'<time datetime="{stamp}">{_html(clock)}</time>{content}</li>'
            )
        sid = _html(session.session_id)
        return (
            f'<section class="session" data-session-id="{sid}">\n'
            f'<h1>Session {sid}</h1>\n<p class="meta">{meta}</p>\n'
            f'<ol class="transcript">\n{chr(10).join(items)}\n</ol>\n</section>\n'
        )


# Reconciliation outcomes that settle how a session's log ends.
_VERIFYING = ("verified", "filled", "different")


def _view_words(view: SessionView) -> str:
    """One account's sight of the session, for a transcript header."""
    until = f" until {view.left_at} ({view.left_reason})" if view.left_at else " (in view)"
    return f"{view.account} from {view.appeared_at}{until}, {view.last_state or 'no state'}"


def html_page(title: str) -> tuple[str, str]:
    """The head and the tail of an HTML document; transcript sections go between them."""
    head = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_html(title)}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
    )
    return head, "</body>\n</html>\n"


def _body_lines(message: ArchivedMessage) -> list[str]:
    """A message's words as printable lines: split at its line breaks (LF or CRLF)."""
    return [printable(line) for line in _body(message).replace("\r\n", "\n").split("\n")]


def _who(message: ArchivedMessage) -> str:
    return message.from_nickname or message.from_type or "?"


def _body(message: ArchivedMessage) -> str:
    text = message.text or ""
    if message.type == "PushUrl":
        return " ".join(part for part in (message.url, text) if part)
    if message.type in ("Notice", "CustomNotice"):
        return f"(notice) {text}"
    if message.type != "Text":
        return f"({message.type}) {text}"
    return text


def _html_body(message: ArchivedMessage) -> str:
    url = message.url or ""
    if message.type == "PushUrl" and url.startswith(("https://", "http://")):
        link = f'<a href="{_html(url)}" rel="noopener">{_html(url)}</a>'
        return " ".join(part for part in (link, _html(message.text or "")) if part)
    return _html(_body(message))


def _event_words(message: ArchivedMessage) -> str:
    who = _who(message)
    words = {
        "ParticipantJoined": f"{who} joined",
        "ParticipantLeft": f"{who} left",
        "ParticipantRejoined": f"{who} rejoined",
        "TypingStarted": f"{who} is typing",
        "TypingStopped": f"{who} stopped typing",
        "NicknameUpdated": f"{who} is now {message.text or '?'}",
        "TranscriptSaveDone": "transcript saved",
    }
    return words.get(message.type, f"{who}: {message.type}")


def _in_log_order(messages: list[ArchivedMessage]) -> list[ArchivedMessage]:
    """Key order puts TranscriptSaveDone (index -1) first; it closes the log instead."""
    if messages and messages[0].message_index == -1:
        return [*messages[1:], messages[0]]
    return messages


class Archive(Resource):
    """Read-only access to one archive; an async context manager.

    ``path`` is an SQLite file, or a ``postgresql://`` URL (or
    :class:`~archiver.store.postgres.PostgresArchive`) for an archive in PostgreSQL.
    """

    def __init__(self, path: str | os.PathLike[str] | PostgresArchive) -> None:
        self.path: ArchiveLocation = (
            path if isinstance(path, PostgresArchive) else location_of(os.fspath(path))
        )
        self._reader = ArchiveReader(self.path)

    async def open(self) -> None:
        """Open the file read-only; refuse files that are not archives or are too old."""
        await self._reader.open()
        version = await queries.schema_version(self._reader.conn)
        if version is None or version < queries.READ_SCHEMA_VERSION:
            await self._reader.close()
            if version is None:
                raise StoreError(f"{self.path} is not a gws-archiver archive")
            raise StoreError(
                f"the archive {self.path} is at schema version {version}; reading it needs"
                f" version {queries.READ_SCHEMA_VERSION}: run the daemon on it once to upgrade"
            )

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._reader.close()

    async def sessions(
        self,
        filters: SessionFilter | None = None,
        *,
        limit: int | None = None,
        before: tuple[str, str] | None = None,
    ) -> AsyncIterator[SessionRecord]:
        """Matching sessions, newest first (by when the archiver first saw them), after the
        keyset ``before`` (``(first_seen_at, session_id)`` of the last one seen) if given."""
        filters = filters or SessionFilter()
        remaining = limit
        while remaining is None or remaining > 0:
            size = _SESSION_CHUNK if remaining is None else min(_SESSION_CHUNK, remaining)
            page = await queries.session_page(self._reader.conn, filters, before=before, limit=size)
            for record in page:
                yield record
            if len(page) < size:
                return
            before = (page[-1].first_seen_at, page[-1].session_id)
            remaining = None if remaining is None else remaining - len(page)

    async def session(self, session_id: str) -> SessionRecord | None:
        """One session, or None if the archive does not hold it."""
        filters = SessionFilter(session_ids=(session_id,))
        page = await queries.session_page(self._reader.conn, filters, before=None, limit=1)
        return page[0] if page else None

    async def transcript(self, session_id: str) -> Transcript | None:
        """A session and all its messages, or None if the archive does not hold it."""
        record = await self.session(session_id)
        if record is None:
            return None
        conn = self._reader.conn
        messages = await queries.session_messages(conn, session_id)
        views = await queries.session_views(conn, session_id)
        return Transcript(record, messages, views, await queries.filled_indices(conn, session_id))

    async def recent_messages(
        self, session_ids: Sequence[str], *, per_session: int = 3
    ) -> list[ArchivedMessage]:
        """The last few numbered messages of each of ``session_ids`` (by session, then index)."""
        return await queries.recent_messages(self._reader.conn, session_ids, per_session)

    async def search(
        self,
        query: str,
        filters: SessionFilter | None = None,
        *,
        types: Sequence[str] = (),
        limit: int = 20,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> list[SearchHit]:
        """The best matches of an FTS5 query (words, ``"a phrase"``, ``pre*``, ``OR``, ``NOT``).

        Typing previews are left out unless ``types`` asks for them. Raises
        :class:`InvalidQueryError` if the query is not valid FTS5 syntax.
        """
        return await search.search_messages(
            self._reader.conn,
            query,
            filters or SessionFilter(),
            types=types,
            limit=limit,
            highlight=highlight,
        )

    async def messages(
        self, filters: SessionFilter | None = None, *, batch: int = 2000
    ) -> AsyncIterator[ArchivedMessage]:
        """Every message of the matching sessions, by session id then index (for export)."""
        async for ids in self._session_id_chunks(filters or SessionFilter()):
            async for message in self._chunk_messages(ids, batch):
                yield message

    async def transcripts(
        self, filters: SessionFilter | None = None, *, batch: int = 2000
    ) -> AsyncIterator[Transcript]:
        """One transcript per matching session, by session id; one session in memory at once."""
        conn = self._reader.conn
        async for ids in self._session_id_chunks(filters or SessionFilter()):
            chunk = SessionFilter(session_ids=tuple(ids))
            page = await queries.session_page(conn, chunk, before=None, limit=len(ids))
            records = {record.session_id: record for record in page}
            ids = [session_id for session_id in ids if session_id in records]
            # Sessions of this chunk not yet yielded, in id order: those without any message
            # get an empty transcript when the stream passes them.
            pending = iter(ids)
            current: list[ArchivedMessage] = []
            async for message in self._chunk_messages(ids, batch):
                if current and current[0].session_id != message.session_id:
                    yield Transcript(records[current[0].session_id], _in_log_order(current))
                    current = []
                if not current:
                    for session_id in pending:
                        if session_id == message.session_id:
                            break
                        yield Transcript(records[session_id], [])
                current.append(message)
            if current:
                yield Transcript(records[current[0].session_id], _in_log_order(current))
            for session_id in pending:
                yield Transcript(records[session_id], [])

    async def _session_id_chunks(self, filters: SessionFilter) -> AsyncIterator[list[str]]:
        after = ""
        while ids := await queries.session_ids_page(
            self._reader.conn, filters, after=after, limit=_SESSION_CHUNK
        ):
            yield ids
            after = ids[-1]

    async def _chunk_messages(self, ids: list[str], batch: int) -> AsyncIterator[ArchivedMessage]:
        after: tuple[str, int] | None = None
        while ids and (
            page := await queries.message_page(self._reader.conn, ids, after=after, limit=batch)
        ):
            for message in page:
                yield message
            after = (page[-1].session_id, page[-1].message_index)

    async def stats(self) -> ArchiveStats:
        """Counts per message type, session state and day."""
        return await archive_stats(self._reader.conn)

    async def last_seq(self) -> int:
        """The newest committed event's ``seq`` (0 for an empty archive)."""
        return await self._reader.last_seq()

    async def last_events(
        self, limit: int, *, types: Sequence[str] = (), session_id: str | None = None
    ) -> list[Event]:
        """The newest ``limit`` events (matching the filters), oldest first."""
        return await self._reader.last_events(limit, types=types, session_id=session_id)

    async def follow_events(
        self,
        after_seq: int,
        *,
        types: Sequence[str] = (),
        session_id: str | None = None,
        interval_s: float = 0.5,
    ) -> AsyncIterator[Event]:
        """Events after ``after_seq`` as they are committed, forever (polls every interval)."""
        cursor = after_seq
        batch = 500
        while True:
            newest = await self._reader.last_seq()
            events = await self._reader.events_after(
                cursor, limit=batch, types=types, session_id=session_id
            )
            for event in events:
                yield event
            if len(events) == batch:
                cursor = events[-1].seq
                continue
            # Everything up to ``newest`` was committed before the query ran, so it was seen:
            # skipping past it keeps filtered polls from rescanning the same rows.
            cursor = max(cursor, newest, events[-1].seq if events else 0)
            await asyncio.sleep(interval_s)
