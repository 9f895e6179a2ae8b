"""The web view in a real browser: Debian's Chromium, headless, against a daemon and simulator.

Each test waits for what it means (an element, a line, a card), never for a fixed time. The
pages' screenshots (docs/screenshots/*.png, shown in the README) are taken here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.config import HooksConfig, Secret, ServerConfig
from gws_simulator import Simulator, SimulatorOptions
from tests.support import daemon_config, query, wait_for
from tests.support.browser import REBOUND_HOST, Browser, driver_fixture
from tests.support.served import Served, running, served

HOSTILE = {
    "script": "<script>window.pwned = 'script'</script>",
    "image": "<img src=x onerror=\"window.pwned = 'img'\">",
    "link": "<a href=\"javascript:window.pwned = 'link'\">click me</a>",
    "ansi": "\x1b[31mred alert\x1b[0m and ok\rPriya: I confirm the refund",
}


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from driver_fixture()


@pytest.fixture
def browser(driver: Any) -> Iterator[Browser]:
    browser = Browser(driver)
    yield browser
    # Leave the page (closing its stream) before the test's server stops under it.
    driver.get("about:blank")
    driver.get_log("browser")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Served]:
    async with served(tmp_path, agents=2) as s:
        yield s


async def archived(s: Served, session_id: str, count: int) -> None:
    """Wait until ``count`` messages of the session are archived."""
    sql = "SELECT count(*) FROM messages WHERE session_id = ?"
    await wait_for(lambda: query(s.archive, sql, [session_id])[0][0] >= count)


async def conversation(
    sim: Simulator, account: str, lines: list[tuple[str, dict[str, Any]]]
) -> str:
    """A session of ``account`` with these (type, fields) messages; returns its id."""
    session_id = sim.world.create_session(account)
    for kind, fields in lines:
        sim.world.append_message(session_id, kind, **fields)
    return session_id


REFUND = [
    ("ParticipantJoined", {"sender": "Customer"}),
    ("Text", {"text": "Hello, my broken phone needs a refund", "sender": "Customer"}),
    ("TypingStarted", {"text": "Let me", "sender": "Agent"}),
    ("Text", {"text": "Let me look at your order", "sender": "Agent"}),
    ("Text", {"text": "check the warranty first", "sender": "Agent", "visibility": "Agents"}),
    (
        "Text",
        {"text": "supervisor: fine to refund", "sender": "Agent", "visibility": "Supervisors"},
    ),
    ("PushUrl", {"url": "https://example.com/orders/1234", "sender": "Agent"}),
    ("Text", {"text": "Your refund is on its way.\nAnything else?", "sender": "Agent"}),
]


async def test_search_finds_a_message_and_its_link_opens_the_conversation_there(
    site: Served, browser: Browser
) -> None:
    """Typed into the search box, a word finds its message; the hit opens it, anchored."""
    session_id = await conversation(site.sim, "agent1", REFUND)
    await conversation(site.sim, "agent2", [("Text", {"text": "where is my parcel"})])
    await archived(site, session_id, len(REFUND))
    await browser.get(site.url + "/live")
    box = await browser.wait_for("header.top input[name=q]")
    await browser.call(box.send_keys, "refund\n")
    hit = await browser.wait_for("li.hit", text="broken phone")
    marked = await browser.find_all("li.hit mark")
    assert {await browser.call(lambda e: e.text, m) for m in marked} == {"refund"}
    await browser.screenshot("search")

    link = await browser.call(hit.find_element, "css selector", "a")
    await browser.call(link.click)
    line = await browser.wait_for("ol.chat li.message", text="broken phone")
    target = await browser.script("return document.querySelector(':target').id")
    assert target == await browser.call(line.get_attribute, "id") == "m2"
    assert await browser.script("return location.hash") == "#m2"
    assert await browser.console_errors() == []


async def test_the_conversation_shows_sides_marks_and_exports(
    site: Served, browser: Browser
) -> None:
    """Customer left, agents right, restricted lines marked, events hideable, exports linked."""
    await conversation(site.sim, "agent2", [("Text", {"text": "is the shop open on Sunday?"})])
    await conversation(site.sim, "agent2", [("Text", {"text": "my parcel never came"})])
    session_id = await conversation(site.sim, "agent1", REFUND)
    await archived(site, session_id, len(REFUND))
    await browser.get(f"{site.url}/sessions")
    await browser.wait_for("table.sessions tr", text=session_id)
    await browser.screenshot("sessions")
    await browser.call((await browser.wait_for("table.sessions a", text=session_id)).click)
    await browser.wait_for("ol.chat li", text="Anything else?")
    sides = await browser.script(
        "return Array.from(document.querySelectorAll('ol.chat li.message'),"
        " li => [li.dataset.index, li.classList.contains('agent') ? 'right' : 'left',"
        " li.querySelector('.badge') ? li.querySelector('.badge').textContent : ''])"
    )
    assert sides == [
        ["2", "left", ""],
        ["4", "right", ""],
        ["5", "right", "agents only"],
        ["6", "right", "supervisors only"],
        ["7", "right", ""],
        ["8", "right", ""],
    ]
    order = await browser.find_all("ol.chat a[rel~=noreferrer][href^='https://example.com/']")
    assert len(order) == 1
    await browser.screenshot("conversation", height=1500)
    events = "return document.querySelectorAll('ol.chat li.event:not([hidden])')"
    visible = (
        "return Array.from(document.querySelectorAll('ol.chat li.event'))"
        ".filter(e => e.offsetParent).length"
    )
    assert len(await browser.script(events)) == 2
    await browser.call((await browser.wait_for("label[for=hide-events]")).click)
    assert await browser.script(visible) == 0
    formats = await browser.script(
        "return Array.from(document.querySelectorAll('.exports a'), a => a.textContent)"
    )
    assert formats == ["HTML", "text", "JSON lines", "CSV"]


async def test_messages_archived_while_the_pages_are_open_appear_without_a_reload(
    site: Served, browser: Browser
) -> None:
    """The live page shows a new message, a new session and an end; the conversation its line."""
    first = await conversation(site.sim, "agent1", REFUND[:2])
    second = await conversation(site.sim, "agent2", [("Text", {"text": "hi, is the shop open?"})])
    await archived(site, first, 2)
    await archived(site, second, 1)
    await browser.get(site.url + "/live")
    await browser.wait_for("[data-status][data-state=live]")
    await browser.script("window.sameDocument = true")

    site.sim.world.append_message(first, "Text", text="archived while you watch")
    await browser.wait_for(f"article.card[data-session='{first}']", text="archived while you watch")
    third = await conversation(site.sim, "agent2", [("Text", {"text": "a brand new chat"})])
    await browser.wait_for("[data-active] article.card", text="a brand new chat")
    site.sim.world.end_session(second)
    await browser.wait_for(f"[data-ended-list] article.card[data-session='{second}']")
    await browser.screenshot("live")
    assert await browser.script("return window.sameDocument") is True

    await browser.get(f"{site.url}/conversation?session={third}")
    await browser.wait_for("[data-status][data-state=live]")
    await browser.script("window.sameDocument = true")
    site.sim.world.append_message(third, "Text", text="and one more line", sender="Agent")
    line = await browser.wait_for("ol.chat li.agent", text="and one more line")
    assert await browser.call(line.get_attribute, "id") == "m2"
    site.sim.world.end_session(third)
    await browser.wait_for("[data-header] td", text="drained")
    assert await browser.script("return window.sameDocument") is True
    assert await browser.console_errors() == []


async def test_hostile_text_renders_as_text_and_runs_nothing(
    site: Served, browser: Browser
) -> None:
    """<script>, an onerror image, javascript: links and ANSI/CR show literally; nothing runs."""
    lines = [("Text", {"text": text}) for text in HOSTILE.values()]
    lines.append(("PushUrl", {"url": "javascript:window.pwned='push'", "sender": "Agent"}))
    session_id = await conversation(site.sim, "agent1", lines)
    await archived(site, session_id, len(lines))
    ansi = "\\x1b[31mred alert\\x1b[0m and ok\\rPriya: I confirm the refund"
    shown = {  # the live card shows the last three lines; search, the hits' snippets
        "/live": [HOSTILE["link"], ansi, "javascript:window.pwned='push'"],
        f"/conversation?session={session_id}": [*list(HOSTILE.values())[:3], ansi],
        "/search?q=refund+OR+click": [HOSTILE["link"], ansi],
    }
    for page, texts in shown.items():
        await browser.get(site.url + page)
        await browser.wait_for("main", text="Priya: I confirm")
        state = await browser.script(
            "return {pwned: window.pwned === undefined ? null : window.pwned,"
            " scripts: Array.from(document.scripts, s => s.getAttribute('src')),"
            " images: document.images.length,"
            " jsLinks: document.querySelectorAll('a[href^=\"javascript\" i]').length,"
            " text: document.querySelector('main').innerText}"
        )
        assert state["pwned"] is None, page
        assert state["scripts"] == ["/static/live.js"], page
        assert state["images"] == 0
        assert state["jsLinks"] == 0
        assert [text for text in texts if text not in state["text"]] == [], page
    assert await browser.console_errors() == []


async def test_a_page_asked_for_under_another_host_name_is_refused(
    site: Served, browser: Browser
) -> None:
    """A name that resolves here (as a rebinding page's does) gets 421, not the page."""
    port = site.url.rsplit(":", 1)[1]
    await browser.get(f"http://{REBOUND_HOST}:{port}/live")
    await browser.wait_for("body", text="this server does not answer to that Host")
    assert await browser.find_all("article.card, main") == []


async def test_beyond_loopback_no_page_without_the_token_and_the_form_keeps_it(
    tmp_path: Path, browser: Browser
) -> None:
    """Bound to 0.0.0.0 with a token: the sign-in form, a wrong token refused, a right one kept."""
    archive = tmp_path / "archive.sqlite3"
    async with Simulator(SimulatorOptions(agents=1, seed=3)) as sim:
        config = dataclasses.replace(
            daemon_config(sim.base_url, archive, agents=1),
            server=ServerConfig(listen="0.0.0.0:0", token=Secret("open sesame")),
            hooks=HooksConfig(plugins=False),
        )
        async with running(config) as (daemon, _):
            assert daemon.server is not None
            url = "http://127.0.0.1:" + daemon.server.url.rsplit(":", 1)[1]
            session_id = sim.world.create_session("agent1")
            sim.world.append_message(session_id, "Text", text="only for the token holder")
            await wait_for(lambda: bool(query(archive, "SELECT 1 FROM messages")))

            await browser.get(f"{url}/conversation?session={session_id}")
            form = await browser.wait_for("form.login input[name=token]")
            assert "only for the token holder" not in await browser.script(
                "return document.body.innerText"
            )
            await browser.screenshot("sign-in")
            await browser.call(form.send_keys, "wrong\n")
            # The answer is a new page: wait for it before taking its form (the old one goes).
            await browser.wait_for("p.error", text="not the server's")
            form = await browser.wait_for("form.login input[name=token]")
            await browser.call(form.send_keys, "open sesame\n")
            await browser.wait_for("ol.chat li", text="only for the token holder")
            assert await browser.script("return location.pathname") == "/conversation"
            cookies = await browser.call(browser.driver.get_cookies)
            assert [(c["httpOnly"], c["sameSite"]) for c in cookies] == [(True, "Strict")]
            assert await browser.script("return document.cookie") == ""
            await browser.wait_for("[data-status][data-state=live]")
            sim.world.append_message(session_id, "Text", text="the stream takes the cookie too")
            await browser.wait_for("ol.chat li", text="the stream takes the cookie too")
