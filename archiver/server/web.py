"""The web view: pages for the people who read transcripts (search, sessions, live, a session).

Served by the status server under its access rule (``Host`` checked, cross-site refused, a token
beyond loopback, which a browser may give once in ``/login`` and keep in an ``HttpOnly``,
``SameSite=Strict`` cookie). Pages are rendered here from the archive, read through its own
read-only :class:`~archiver.archive.Archive`; ``/static/live.js`` follows ``/events`` and fetches
the fragments (a live card, new lines) the server renders, so all HTML comes from one escaper.
Every response carries a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path

from aiohttp import web

from archiver.archive import (
    Archive,
    ArchivedMessage,
    InvalidQueryError,
    SessionFilter,
    Transcript,
)
from archiver.cli.export import file_name, message_writer, render_transcript
from archiver.config.model import Secret
from archiver.instants import parse_instant
from archiver.lifecycle import Resource
from archiver.server import pages
from archiver.store.db import ArchiveLocation

COOKIE = "gws_archiver_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Routes without a token: the sign-in form itself and its stylesheet and script.
OPEN_PREFIXES = ("/login", "/static/")
SESSIONS_PAGE = 50
LIVE_CARDS = 100
ENDED_CARDS = 12
SEARCH_HITS = 50
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_EXPORTS = {
    "html": ("text/html", "html"),
    "text": ("text/plain", "txt"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv", "csv"),
}


def cookie_value(token: Secret) -> str:
    """What the sign-in cookie holds: a digest of the token (cookie-safe; not the token)."""
    return hashlib.sha256(b"gws-archiver web\0" + token.reveal().encode()).hexdigest()


def offers_token(request: web.Request, token: Secret) -> bool:
    """True if the request carries the token: ``Authorization: Bearer`` or the cookie."""
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and hmac.compare_digest(
        offered.strip().encode(), token.reveal().encode()
    )
    cookie = request.cookies.get(COOKIE, "")
    return bearer or hmac.compare_digest(cookie.encode(), cookie_value(token).encode())


def is_page(request: web.Request) -> bool:
    """True for the web view's routes (a refusal there is the sign-in form, not plain text)."""
    return request.path not in ("/healthz", "/readyz", "/metrics", "/events")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, error or not, gets the strict headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def html_response(body: str, status: int = 200) -> web.Response:
    """A page, never cached (it shows the archive now, and may be private)."""
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


def login_response(request: web.Request, *, wrong: bool = False) -> web.Response:
    """401 with the sign-in form, which comes back to this page."""
    return html_response(pages.login_page(_local(request.path_qs), wrong=wrong), status=401)


class WebView(Resource):
    """The web view's routes, over one read-only connection to the archive."""

    def __init__(
        self, archive_path: ArchiveLocation, token: Secret | None, seq: Callable[[], int]
    ) -> None:
        self._archive = Archive(archive_path)
        self._token = token
        self._seq = seq
        self._static = resources.files("archiver.server") / "static"

    async def open(self) -> None:
        """Open the archive read-only."""
        await self._archive.open()

    async def close(self) -> None:
        """Close the archive; safe to call twice."""
        await self._archive.close()

    def add_routes(self, app: web.Application) -> None:
        """Register the pages, fragments, exports, sign-in and static files."""
        pages = {
            "/": self._home,
            "/live": self._live,
            "/live/card": self._live_card,
            "/sessions": self._sessions,
            "/search": self._search,
            "/conversation": self._conversation,
            "/conversation/lines": self._lines,
            "/conversation/header": self._header,
            "/conversation/export": self._export,
            "/login": self._login_form,
            "/static/{name}": self._static_file,
        }
        for path, handler in pages.items():
            app.router.add_get(path, handler)
        app.router.add_post("/login", self._login)

    async def _home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/live")

    async def _live(self, request: web.Request) -> web.Response:
        """Active conversations as cards (newest first), then the latest ended ones."""
        seq = self._seq()  # before reading: the stream replays whatever commits after it
        active = self._archive.sessions(SessionFilter(ended=False), limit=LIVE_CARDS + 1)
        shown = [s async for s in active]
        more = len(shown) > LIVE_CARDS
        shown = shown[:LIVE_CARDS]
        ended = [
            s async for s in self._archive.sessions(SessionFilter(ended=True), limit=ENDED_CARDS)
        ]
        recent = await self._recent([s.session_id for s in shown + ended])
        cards = [pages.live_card(s, recent.get(s.session_id, [])) for s in shown]
        settled = [pages.live_card(s, recent.get(s.session_id, [])) for s in ended]
        return html_response(pages.live_page(cards, settled, more=more, seq=seq))

    async def _live_card(self, request: web.Request) -> web.Response:
        session = await self._archive.session(_session_id(request))
        if session is None:
            raise web.HTTPNotFound(text="no such session\n")
        recent = await self._recent([session.session_id])
        return html_response(pages.live_card(session, recent.get(session.session_id, [])))

    async def _recent(self, session_ids: list[str]) -> dict[str, list[ArchivedMessage]]:
        by_session: dict[str, list[ArchivedMessage]] = {}
        for message in await self._archive.recent_messages(session_ids):
            by_session.setdefault(message.session_id, []).append(message)
        return by_session

    async def _sessions(self, request: web.Request) -> web.Response:
        """The sessions matching the filters, newest first, a page at a time (keyset)."""
        form, filters = _filters(request.query)
        if filters is None:
            return html_response(pages.sessions_page(form, [], None), status=400)
        before_at, before_id = request.query.get("before_at"), request.query.get("before_id")
        before = (before_at, before_id) if before_at and before_id else None
        page = [
            s async for s in self._archive.sessions(filters, before=before, limit=SESSIONS_PAGE + 1)
        ]
        next_page = None
        if len(page) > SESSIONS_PAGE:
            page = page[:SESSIONS_PAGE]
            last = page[-1]
            kept = {name: form.query.get(name) for name in _FILTER_NAMES}
            next_page = pages.link(
                "/sessions", **kept, before_at=last.first_seen_at, before_id=last.session_id
            )
        return html_response(pages.sessions_page(form, page, next_page))

    async def _search(self, request: web.Request) -> web.Response:
        """Full-text search with the CLI's syntax and filters; an invalid query is explained."""
        form, filters = _filters(request.query)
        text = request.query.get("q", "").strip()
        marks = (f"\ue000{secrets.token_hex(8)}", f"\ue001{secrets.token_hex(8)}")
        if filters is None or not text:
            return html_response(
                pages.search_page(form, [], marks), 400 if filters is None else 200
            )
        query = '"' + text.replace('"', '""') + '"' if request.query.get("phrase") else text
        try:
            hits = await self._archive.search(query, filters, limit=SEARCH_HITS, highlight=marks)
        except InvalidQueryError as exc:
            error = f"{exc}. Tick “as one phrase” to search these words literally."
            return html_response(pages.search_page(pages.SearchForm(form.query, error), [], marks))
        return html_response(pages.search_page(form, hits, marks))

    async def _conversation(self, request: web.Request) -> web.Response:
        seq = self._seq()
        transcript = await self._transcript(request)
        return html_response(pages.conversation_page(transcript, seq))

    async def _lines(self, request: web.Request) -> web.Response:
        """The lines after ``?after=INDEX`` (for live.js), TranscriptSaveDone included."""
        after = request.query.get("after", "0")
        if not after.lstrip("-").isdigit():
            raise web.HTTPBadRequest(text="after must be a message index\n")
        transcript = await self._transcript(request)
        return html_response(pages.message_lines(transcript, after=int(after)))

    async def _header(self, request: web.Request) -> web.Response:
        return html_response(pages.conversation_header(await self._transcript(request)))

    async def _export(self, request: web.Request) -> web.Response:
        """One session's export, made by the ``export`` command's own code, as a download."""
        fmt = request.query.get("format", "")
        if fmt not in _EXPORTS:
            raise web.HTTPBadRequest(text=f"format must be one of {', '.join(_EXPORTS)}\n")
        transcript = await self._transcript(request)
        session_id = transcript.session.session_id
        if fmt in ("text", "html"):
            body = render_transcript(transcript, fmt, False, standalone=True)
        else:
            out = io.StringIO()
            write = message_writer(out, fmt)
            async for message in self._archive.messages(SessionFilter(session_ids=(session_id,))):
                write(message)
            body = out.getvalue()
        content_type, suffix = _EXPORTS[fmt]
        disposition = f'attachment; filename="{file_name(session_id)}.{suffix}"'
        return web.Response(
            text=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Content-Disposition": disposition, "Cache-Control": "no-store"},
        )

    async def _transcript(self, request: web.Request) -> Transcript:
        transcript = await self._archive.transcript(_session_id(request))
        if transcript is None:
            raise web.HTTPNotFound(
                text=pages.error_page("Not found", "The archive holds no such session."),
                content_type="text/html",
            )
        return transcript

    async def _login_form(self, request: web.Request) -> web.Response:
        next_path = _local(request.query.get("next", "/live"))
        return html_response(pages.login_page(next_path, wrong=False))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        """Check the token typed into the form; if right, keep it in a cookie and go on."""
        form = await request.post()
        offered, next_path = str(form.get("token", "")), _local(str(form.get("next", "/live")))
        token = self._token
        if token is None:
            raise web.HTTPSeeOther(next_path)
        if not hmac.compare_digest(offered.encode(), token.reveal().encode()):
            return html_response(pages.login_page(next_path, wrong=True), status=401)
        response = web.HTTPSeeOther(next_path)
        response.set_cookie(COOKIE, cookie_value(token), httponly=True, samesite="Strict", path="/")
        raise response

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = Path(name).suffix
        entry = self._static / name
        if suffix not in _STATIC_TYPES or "/" in name or not entry.is_file():
            raise web.HTTPNotFound(text="no such file\n")
        return web.Response(
            body=entry.read_bytes(),
            content_type=_STATIC_TYPES[suffix],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )


_FILTER_NAMES = ("account", "state", "participant", "since", "until", "held")


def _filters(query: Mapping[str, str]) -> tuple[pages.SearchForm, SessionFilter | None]:
    """The form as given and its SessionFilter, or None (and a message) if a date is bad."""
    values = {name: query.get(name, "").strip() for name in (*_FILTER_NAMES, "q", "phrase")}
    instants: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            instants[name] = parse_instant(values[name]) if values[name] else None
        except ValueError:
            message = f"{name}: not an ISO-8601 date or time: {values[name]!r}"
            return pages.SearchForm(values, message), None
    filters = SessionFilter(
        account=values["account"] or None,
        state=values["state"] or None,
        participant=values["participant"] or None,
        since=instants["since"],
        until=instants["until"],
        held=True if values["held"] else None,
    )
    return pages.SearchForm(values), filters


def _session_id(request: web.Request) -> str:
    session_id = request.query.get("session")
    if not session_id:
        raise web.HTTPBadRequest(text="which session? (?session=ID)\n")
    return session_id


def _local(path: str) -> str:
    """``path`` if it is a path on this server, else ``/live``: sign-in never sends elsewhere."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/live"
    return path
