"""The web view's rendering and its pages over a generated archive (no daemon, no browser)."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from archiver.archive import Archive, SessionRecord
from archiver.server.pages import highlight, linked, live_card
from archiver.server.web import WebView, add_security_headers
from gws_bench.archive_factory import GeneratedArchive, write_archive

MARKS = ("\ue000a1b2", "\ue001c3d4")


def test_highlights_come_only_from_our_markers_and_the_rest_is_escaped() -> None:
    """A customer's own <mark>, quotes and marker-like text stay text; ours become <mark>."""
    start, end = MARKS
    snippet = f'<mark>x</mark> "q" \ue000 {start}refund{end} & <b>'
    assert highlight(snippet, MARKS) == (
        "&lt;mark&gt;x&lt;/mark&gt; &quot;q&quot; \ue000 <mark>refund</mark> &amp; &lt;b&gt;"
    )


def test_only_http_urls_become_links_and_they_carry_no_referrer() -> None:
    """javascript: and data: stay text; an https URL is a link, its quotes escaped."""
    rendered = linked('javascript:alert(1) data:text/html,x https://ex.com/a?b=1&c="2"')
    assert rendered.count("<a ") == 1
    assert '<a href="https://ex.com/a?b=1&amp;c=&quot;2&quot;"' not in rendered  # quote ends it
    assert '<a href="https://ex.com/a?b=1&amp;c=" rel="noopener noreferrer nofollow">' in rendered
    assert html.unescape(re.sub(r"<[^>]+>", "", rendered)) == (
        'javascript:alert(1) data:text/html,x https://ex.com/a?b=1&c="2"'
    )


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> GeneratedArchive:
    import asyncio

    path = tmp_path_factory.mktemp("web") / "archive.sqlite3"
    return asyncio.run(write_archive(path, sessions=120, messages_per_session=5))


@pytest.fixture
async def client(
    small_archive: GeneratedArchive,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.on_response_prepare.append(add_security_headers)
    async with WebView(small_archive.path, None, lambda: 0) as view:
        view.add_routes(app)
        async with TestClient(TestServer(app)) as test_client:
            yield test_client


async def test_sessions_pages_follow_the_keyset_and_cover_every_session_once(
    client: TestClient[web.Request, web.Application], small_archive: GeneratedArchive
) -> None:
    """Following "Older sessions" lists every session once, newest first, as Archive does."""
    seen: list[str] = []
    path: str | None = "/sessions"
    while path is not None:
        response = await client.get(path)
        body = await response.text()
        assert response.status == 200
        seen += [html.unescape(s) for s in re.findall(r'<tr><td><a href="[^"]*">([^<]*)</a>', body)]
        found = re.search(r'rel="next" href="([^"]*)"', body)
        path = html.unescape(found[1]) if found else None
    async with Archive(small_archive.path) as archive:
        expected = [s.session_id async for s in archive.sessions()]
    assert seen == expected
    assert len(seen) == 120


async def test_the_sessions_filters_are_the_clis(
    client: TestClient[web.Request, web.Application], small_archive: GeneratedArchive
) -> None:
    """account and state select the sessions SessionFilter selects."""
    response = await client.get("/sessions?account=agent2&state=completed")
    body = await response.text()
    shown = {html.unescape(s) for s in re.findall(r'<tr><td><a href="[^"]*">([^<]*)</a>', body)}
    expected = {
        s.session_id
        for s in small_archive.sessions
        if s.account == "agent2" and s.state == "Completed"
    }
    assert shown == expected
    assert shown


async def test_a_conversation_has_an_anchor_and_its_index_on_every_line(
    client: TestClient[web.Request, web.Application], small_archive: GeneratedArchive
) -> None:
    """Each message is li#m<index> with a visible #index link (what an auditor cites)."""
    planned = small_archive.sessions[3]
    response = await client.get("/conversation", params={"session": planned.session_id})
    body = await response.text()
    indices = re.findall(r'<li id="m(-?\d+)"[^>]*><a class="index" href="#m\1">#\1</a>', body)
    assert [int(n) for n in indices if n != "-1"] == list(range(1, planned.message_count + 1))


def test_a_hostile_session_id_and_nickname_stay_text_in_links_and_attributes() -> None:
    """An id and a nickname full of markup and quotes cannot leave their attribute or element."""
    session_id = "\"><script>alert(1)</script>'&"
    session = SessionRecord(
        session_id=session_id,
        account="agent1",
        state="Chatting",
        participants=[{"nickname": "<img src=x onerror=alert(1)>", "type": "Customer"}],
        user_data={},
        first_seen_at="2024-03-01T00:00:00.000Z",
        last_seen_at="2024-03-01T00:00:00.000Z",
        ended_at=None,
        legal_hold=False,
        message_count=0,
        first_message_at=None,
        last_message_at=None,
    )
    card = live_card(session, [])
    assert "<script" not in card
    assert "<img" not in card
    assert 'data-session="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&amp;"' in card
    assert html.unescape(re.search(r'href="([^"]*)"', card)[1]) == (  # type: ignore[index]
        "/conversation?session=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%27%26"
    )
