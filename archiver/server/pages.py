"""The web view's HTML: the layout, the search, sessions, live and conversation pages.

Every string from GWS or from the request is hostile: it goes through :func:`escape_html`
(markup, quotes and control characters escaped) and nothing else reaches the page. Only
``http(s)`` URLs become links. No inline script or style: the page loads ``/static/app.css``
and ``/static/live.js`` only, so the Content-Security-Policy can forbid everything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from archiver.archive import DISCREET_TYPES, ArchivedMessage, SearchHit, SessionRecord, Transcript
from archiver.text import escape_html as h

EXPORT_FORMATS = {"html": "HTML", "text": "text", "jsonl": "JSON lines", "csv": "CSV"}
_URL = re.compile(r"https?://[^\s<>\"'\x00-\x1f\x7f]+", re.IGNORECASE)
_VISIBILITY_MARKS = {"Agents": "agents only", "Supervisors": "supervisors only"}
_AGENT_TYPES = frozenset({"Agent", "Supervisor"})


@dataclass(frozen=True, slots=True)
class SearchForm:
    """What the search and sessions forms were given, to show them again."""

    query: Mapping[str, str]
    error: str | None = None


def link(path: str, **params: str | int | None) -> str:
    """A local URL with its query (empty values left out), escaped for an attribute."""
    kept = {name: str(value) for name, value in params.items() if value not in (None, "")}
    return h(f"{path}?{urlencode(kept)}" if kept else path)


def conversation_link(session_id: str, index: int | None = None) -> str:
    """The conversation page of a session, at one message's anchor if ``index`` is given."""
    anchor = f"#m{index}" if index is not None else ""
    return link("/conversation", session=session_id) + anchor


def layout(
    title: str, body: str, *, current: str = "", live: Mapping[str, str] | None = None
) -> str:
    """A whole page: head (stylesheet, script), navigation with a search box, ``body``."""
    tabs = "".join(
        f'<a href="{href}"{" aria-current=page" if name == current else ""}>{name}</a>'
        for name, href in (("Live", "/live"), ("Sessions", "/sessions"), ("Search", "/search"))
    )
    data = "".join(f' data-{name}="{h(value)}"' for name, value in (live or {}).items())
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{h(title)} · gws-archiver</title>\n"
        '<link rel="icon" href="/static/icon.svg" type="image/svg+xml">\n'
        '<link rel="stylesheet" href="/static/app.css">\n'
        '<script src="/static/live.js" defer></script>\n</head>\n'
        f'<body{data}>\n<header class="top"><strong>gws-archiver</strong><nav>{tabs}</nav>'
        '<form action="/search" method="get" role="search">'
        '<input type="search" name="q" placeholder="Search messages" aria-label="Search">'
        "</form></header>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def login_page(next_path: str, *, wrong: bool) -> str:
    """The form that asks once for the server token and keeps it in a cookie."""
    note = '<p class="error">That token is not the server\'s.</p>' if wrong else ""
    return layout(
        "Sign in",
        "<h1>Server token</h1>\n<p>This server is reachable beyond this machine: enter its token"
        " (server.token) once; this browser keeps it in a cookie.</p>\n"
        f'{note}<form method="post" action="/login" class="login">'
        f'<input type="hidden" name="next" value="{h(next_path)}">'
        '<input type="password" name="token" autocomplete="current-password" required'
        ' aria-label="Token"> <button type="submit">Sign in</button></form>',
    )


def error_page(title: str, message: str) -> str:
    """A short page that says what was wrong (a missing session, a bad date)."""
    return layout(title, f'<h1>{h(title)}</h1>\n<p class="error">{h(message)}</p>')


def _field(name: str, label: str, form: SearchForm, kind: str = "text") -> str:
    value = h(form.query.get(name, ""))
    return f'<label>{label} <input type="{kind}" name="{name}" value="{value}"></label>'


def filter_fields(form: SearchForm) -> str:
    """The CLI's filters as form fields: account, state, participant, dates, held."""
    held = " checked" if form.query.get("held") else ""
    return (
        '<fieldset class="filters">'
        + _field("account", "Account", form)
        + _field("state", "State", form)
        + _field("participant", "Participant", form)
        + _field("since", "Since", form)
        + _field("until", "Until", form)
        + f'<label><input type="checkbox" name="held" value="1"{held}> Under legal hold</label>'
        + "</fieldset>"
    )


def search_page(form: SearchForm, hits: Sequence[SearchHit], marks: tuple[str, str]) -> str:
    """The search box, its filters and the hits, each linking to its message."""
    phrase = " checked" if form.query.get("phrase") else ""
    parts = [
        '<h1>Search</h1>\n<form class="search" action="/search" method="get">'
        f'<input type="search" name="q" value="{h(form.query.get("q", ""))}" autofocus'
        ' aria-label="Query"> <button type="submit">Search</button>'
        f'<label><input type="checkbox" name="phrase" value="1"{phrase}> as one phrase</label>'
        f"{filter_fields(form)}</form>\n"
        '<p class="hint">Words match anywhere (<code>refund phone</code>); <code>"a phrase"</code>,'
        " <code>refun*</code>, <code>OR</code>, <code>NOT</code> as in the CLI's search.</p>"
    ]
    if form.error is not None:
        parts.append(f'<p class="error" role="alert">{h(form.error)}</p>')
    elif form.query.get("q"):
        parts.append(f'<p class="count">{len(hits)} {"hit" if len(hits) == 1 else "hits"}</p>')
    items = []
    for hit in hits:
        message = hit.message
        where = conversation_link(message.session_id, message.message_index)
        items.append(
            f'<li class="hit"><a href="{where}">{h(message.session_id)}'
            f" #{message.message_index}</a> <time>{h(message.sent_at or '')}</time> "
            f'<span class="who">{h(_who(message))}</span> <span class="muted">'
            f"({h(hit.account)}, {h(hit.state or '-')})</span>{_visibility(message)}"
            f'<p class="snippet">{highlight(hit.snippet, marks)}</p></li>'
        )
    if items:
        parts.append('<ol class="hits">' + "".join(items) + "</ol>")
    return layout("Search", "\n".join(parts), current="Search")


def highlight(snippet: str, marks: tuple[str, str]) -> str:
    """``snippet`` escaped, with the text between our own markers in ``<mark>``."""
    start, end = marks
    pieces = snippet.split(start)
    out = [h(pieces[0])]
    for piece in pieces[1:]:
        marked, _, rest = piece.partition(end)
        out.append(f"<mark>{h(marked)}</mark>{h(rest)}")
    return "".join(out)


def sessions_page(
    form: SearchForm, sessions: Sequence[SessionRecord], next_page: str | None
) -> str:
    """The sessions table with the filters and a link to the next (older) page."""
    parts = [
        '<h1>Sessions</h1>\n<form class="search" action="/sessions" method="get">'
        f'{filter_fields(form)}<button type="submit">Filter</button></form>'
    ]
    if form.error is not None:
        parts.append(f'<p class="error" role="alert">{h(form.error)}</p>')
    rows = "".join(
        f'<tr><td><a href="{conversation_link(s.session_id)}">{h(s.session_id)}</a></td>'
        f"<td>{h(', '.join(s.accounts) or s.account)}</td><td>{h(s.state or '')}</td>"
        f"<td>{s.message_count}</td><td>{h(s.first_message_at or '')}</td>"
        f"<td>{h(s.last_message_at or '')}</td><td>{h(', '.join(s.nicknames))}</td>"
        f"<td>{'ended' if s.ended_at else 'active'}{' · held' if s.legal_hold else ''}</td></tr>"
        for s in sessions
    )
    parts.append(
        '<table class="sessions"><thead><tr><th>Session</th><th>Accounts</th><th>State</th>'
        "<th>Messages</th><th>First message</th><th>Last message</th><th>Participants</th>"
        f"<th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
    if not sessions:
        parts.append('<p class="muted">No sessions match.</p>')
    if next_page is not None:
        parts.append(f'<p><a rel="next" href="{next_page}">Older sessions</a></p>')
    return layout("Sessions", "\n".join(parts), current="Sessions")


def live_card(session: SessionRecord, recent: Iterable[ArchivedMessage]) -> str:
    """One conversation on the live page: who, state, size, its last few lines."""
    ended = session.ended_at is not None
    lines = "".join(
        f'<li class="{_side(m)}{" event" if m.type in DISCREET_TYPES else ""}">'
        f'<span class="who">{h(_who(m))}</span> '
        f'<span class="text">{_words(m)}</span></li>'
        for m in recent
    )
    status = f"ended {h(session.ended_at or '')}" if ended else "active"
    return (
        f'<article class="card{" ended" if ended else ""}" data-session="{h(session.session_id)}"'
        f' data-ended="{int(ended)}"><h2><a href="{conversation_link(session.session_id)}">'
        f"{h(session.session_id)}</a></h2>"
        f'<p class="muted">{h(", ".join(session.accounts) or session.account)} ·'
        f" {h(session.state or '')} · {session.message_count} messages · {status}</p>"
        f'<p class="people">{h(", ".join(session.nicknames))}</p>'
        f'<ol class="recent">{lines}</ol></article>'
    )


def live_page(active: Sequence[str], ended: Sequence[str], *, more: bool, seq: int) -> str:
    """The conversations going on now (cards), and those that ended last; updated by SSE."""
    shown = f"the newest {len(active)} shown" if more else str(len(active))
    body = (
        '<h1>Live</h1>\n<p class="status" data-status>Not following: this page shows the'
        " archive as it was when loaded (live updates need JavaScript).</p>\n"
        f'<h2 class="section">Active now (<span data-count>{shown}</span>)</h2>\n'
        f'<div class="cards" data-active>{"".join(active)}</div>\n'
        '<h2 class="section">Ended lately</h2>\n'
        f'<div class="cards" data-ended-list>{"".join(ended)}</div>'
    )
    return layout("Live", body, current="Live", live={"live": "sessions", "seq": str(seq)})


def conversation_header(transcript: Transcript) -> str:
    """Who handled the session, its states and times, hold, check against history."""
    session = transcript.session
    facts = [
        ("State", session.state or "(none)"),
        ("Accounts", ", ".join(session.accounts) or session.account),
        ("First seen", session.first_seen_at),
        (
            "Messages",
            f"{session.message_count} ({session.first_message_at or '-'} to"
            f" {session.last_message_at or '-'})",
        ),
        ("Ended", session.ended_at or "not yet"),
        ("Legal hold", "yes" if session.legal_hold else "no"),
        ("Checked against history", session.reconciliation or "not yet"),
        ("End of log", session.tail or "-"),
    ]
    if transcript.filled:
        facts.append(("From history", f"{len(transcript.filled)} messages"))
    people = {(_who(m), m.from_type or "") for m in transcript.messages if m.from_nickname}
    people |= {
        (str(p.get("nickname", "?")), str(p.get("type", "")))
        for p in session.participants
        if isinstance(p, dict)
    }
    facts.append(("People", ", ".join(f"{who} ({kind})" for who, kind in sorted(people))))
    rows = "".join(f"<tr><th>{h(name)}</th><td>{h(value)}</td></tr>" for name, value in facts)
    views = "".join(
        f"<tr><td>{h(v.account)}</td><td>{h(v.appeared_at)}</td><td>{h(v.left_at or 'in view')}"
        f"</td><td>{h(v.left_reason or '')}</td><td>{h(v.first_state or '')} →"
        f" {h(v.last_state or '')}</td></tr>"
        for v in transcript.views
    )
    return (
        f'<table class="facts">{rows}</table>'
        '<table class="views"><thead><tr><th>Handled by</th><th>From</th><th>Until</th>'
        f"<th>Why</th><th>States</th></tr></thead><tbody>{views}</tbody></table>"
    )


def message_lines(transcript: Transcript, *, after: int | None = None) -> str:
    """The conversation's lines (those after index ``after``, if given; index -1 always)."""
    return "".join(
        _line(m, m.message_index in transcript.filled)
        for m in transcript.messages
        if after is None or m.message_index > after or m.message_index == -1
    )


def conversation_page(transcript: Transcript, seq: int) -> str:
    """The transcript as a chat: customer left, agents right, events dimmed and hideable."""
    sid = transcript.session.session_id
    exports = " · ".join(
        f'<a href="{link("/conversation/export", session=sid, format=fmt)}" download>{label}</a>'
        for fmt, label in EXPORT_FORMATS.items()
    )
    body = (
        f'<h1>Session <span class="sid">{h(sid)}</span></h1>\n'
        f'<p class="exports">Export: {exports}</p>\n'
        f"<section data-header>{conversation_header(transcript)}</section>\n"
        '<p class="status" data-status></p>\n'
        '<input type="checkbox" id="hide-events" class="toggle">'
        '<label for="hide-events">Hide joins, leaves and typing</label>\n'
        f'<ol class="chat">{message_lines(transcript)}</ol>'
    )
    live = {"live": "conversation", "seq": str(seq), "session": sid}
    return layout(f"Session {sid}", body, live=live)


def _line(message: ArchivedMessage, filled: bool) -> str:
    index = message.message_index
    discreet = message.type in DISCREET_TYPES
    classes = ["event" if discreet else "message", _side(message)]
    if message.visibility in _VISIBILITY_MARKS:
        classes.append("restricted")
    if filled:
        classes.append("from-history")
    clock = message.sent_at[11:19] if message.sent_at else "--:--:--"
    marks = _visibility(message) + (' <span class="badge">from history</span>' if filled else "")
    return (
        f'<li id="m{index}" class="{" ".join(classes)}" data-index="{index}"'
        f' data-type="{h(message.type)}"><a class="index" href="#m{index}">#{index}</a>'
        f'<time datetime="{h(message.sent_at or "")}">{h(clock)}</time>'
        f'<span class="who">{h(_who(message))}</span>{marks}'
        f'<span class="text">{_words(message)}</span></li>'
    )


def _who(message: ArchivedMessage) -> str:
    return message.from_nickname or message.from_type or "?"


def _side(message: ArchivedMessage) -> str:
    if message.from_type == "Customer":
        return "customer"
    return "agent" if message.from_type in _AGENT_TYPES else "system"


def _visibility(message: ArchivedMessage) -> str:
    mark = _VISIBILITY_MARKS.get(message.visibility or "")
    return f' <span class="badge restricted">{mark}</span>' if mark else ""


def _words(message: ArchivedMessage) -> str:
    """What a line says, escaped; http(s) URLs (a PushUrl's, or in the text) become links."""
    text = message.text or ""
    if message.type == "PushUrl":
        text = " ".join(part for part in (message.url, text) if part)
    elif message.type in DISCREET_TYPES:
        text = _EVENT_WORDS.get(message.type, message.type) + (f" {text}" if text else "")
    elif message.type != "Text":
        text = f"({message.type}) {text}"
    return linked(text)


def linked(text: str) -> str:
    """``text`` escaped, its http(s) URLs made links that open without a referrer."""
    out, position = [], 0
    for match in _URL.finditer(text):
        url = match[0]
        out.append(h(text[position : match.start()]))
        out.append(f'<a href="{h(url)}" rel="noopener noreferrer nofollow">{h(url)}</a>')
        position = match.end()
    out.append(h(text[position:]))
    return "".join(out)


_EVENT_WORDS = {
    "ParticipantJoined": "joined",
    "ParticipantLeft": "left",
    "ParticipantRejoined": "rejoined",
    "TypingStarted": "is typing",
    "TypingStopped": "stopped typing",
    "NicknameUpdated": "is now",
    "TranscriptSaveDone": "transcript saved",
}
