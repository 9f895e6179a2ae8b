"""The web view over HTTP (no browser): headers, refusals, the token form, errors, exports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import re
from pathlib import Path

from archiver.cli.read import add_read_commands
from archiver.config import Secret
from tests.support import query, wait_for
from tests.support.served import Served, served

PAGES = ("/live", "/sessions", "/search?q=refund", "/static/app.css")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def with_conversation(s: Served, *texts: str) -> str:
    """A session of agent1 with these customer texts, archived."""
    session_id = s.sim.world.create_session("agent1")
    for text in texts:
        s.sim.world.append_message(session_id, "Text", text=text)
    sql = "SELECT count(*) FROM messages WHERE session_id = ?"
    await wait_for(lambda: query(s.archive, sql, [session_id])[0][0] == len(texts))
    return session_id


async def fetch(s: Served, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
    async with s.http.get(s.url + path, headers=headers, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.text()


async def test_every_answer_carries_the_strict_headers(tmp_path: Path) -> None:
    """Pages, static files, errors and refusals: CSP, nosniff, no referrer."""
    async with served(tmp_path) as s:
        answers = [await fetch(s, path) for path in (*PAGES, "/conversation?session=nope")]
        answers.append(await fetch(s, "/live", Host="evil.example"))
    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 404, 421]
    for _, headers, _ in answers:
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


async def test_pages_have_no_inline_script_or_style(tmp_path: Path) -> None:
    """Every script is /static/live.js and no element carries a style or an on* handler."""
    async with served(tmp_path) as s:
        session_id = await with_conversation(s, "hello there")
        bodies = [(await fetch(s, path))[2] for path in PAGES[:3]]
        bodies.append((await fetch(s, f"/conversation?session={session_id}"))[2])
    for body in bodies:
        assert re.findall(r"<script[^>]*>", body) == ['<script src="/static/live.js" defer>']
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", body)


async def test_an_invalid_query_is_explained_not_a_server_error(tmp_path: Path) -> None:
    """`don't` (invalid FTS5) answers 200 with the reason; as a phrase it is searched."""
    async with served(tmp_path) as s:
        await with_conversation(s, "I don't know")
        status, _, body = await fetch(s, "/search?q=don%27t")
        phrase_status, _, phrase_body = await fetch(s, "/search?q=don%27t&phrase=1")
    assert status == 200
    assert 'role="alert">invalid search query' in body
    assert phrase_status == 200
    assert "1 hit" in phrase_body


async def test_a_bad_date_filter_is_a_400_page_naming_it(tmp_path: Path) -> None:
    """since=yesterday is not ISO-8601: 400, and the page says which field."""
    async with served(tmp_path) as s:
        status, _, body = await fetch(s, "/sessions?since=yesterday")
    assert status == 400
    assert "since: not an ISO-8601 date or time" in body


async def test_exports_are_what_the_export_command_writes(tmp_path: Path) -> None:
    """Each format is a download of `gws-archiver export --session ID` (plus the views)."""
    async with served(tmp_path) as s:
        session_id = await with_conversation(s, '=HYPERLINK("x")', "second line")
        served_exports = {}
        for fmt in ("html", "text", "jsonl", "csv"):
            status, headers, body = await fetch(
                s, f"/conversation/export?session={session_id}&format={fmt}"
            )
            assert status == 200
            assert headers["Content-Disposition"].startswith("attachment; filename=")
            served_exports[fmt] = body
        archive = s.archive
    for fmt, body in served_exports.items():
        out = tmp_path / f"cli-{fmt}"
        await asyncio.to_thread(run_export, archive, session_id, fmt, out)
        (written,) = out.iterdir()
        if fmt in ("jsonl", "csv"):
            assert body == written.read_text(), fmt
        else:  # the same renderer; the page's transcript also names the accounts' views
            lines = set(written.read_text().splitlines()) - set(body.splitlines())
            assert {line for line in lines if not line.startswith('<p class="meta">')} == set()
            assert "handled by agent1" in body
    assert "'=HYPERLINK" in served_exports["csv"]


def run_export(archive: Path, session_id: str, fmt: str, out: Path) -> None:
    parser = argparse.ArgumentParser()
    add_read_commands(parser.add_subparsers())
    command = ["export", "--archive", str(archive), "--session", session_id]
    args = parser.parse_args([*command, "--format", fmt, "--out", str(out)])
    with contextlib.redirect_stderr(io.StringIO()):
        assert args.handler(args) == 0


async def test_with_a_token_no_page_without_it_and_the_form_sets_a_cookie(tmp_path: Path) -> None:
    """401 sign-in form (no archive text) without the token; the form's cookie opens the pages."""
    async with served(tmp_path, token=Secret("t0ken")) as s:
        session_id = await with_conversation(s, "private words")
        refused = [
            await fetch(s, path) for path in (*PAGES[:3], f"/conversation?session={session_id}")
        ]
        events, _, _ = await fetch(s, "/events")
        async with s.http.post(
            s.url + "/login", data={"token": "wrong", "next": "/live"}, allow_redirects=False
        ) as wrong:
            wrong_status = wrong.status
        async with s.http.post(
            s.url + "/login", data={"token": "t0ken", "next": "//evil.example/"},
            allow_redirects=False,
        ) as right:  # fmt: skip
            cookie = right.headers["Set-Cookie"]
            location = right.headers["Location"]
        name, value = cookie.split(";")[0].split("=", 1)
        status, _, body = await fetch(
            s, f"/conversation?session={session_id}", Cookie=f"{name}={value}"
        )
        bearer, _, _ = await fetch(s, "/live", Authorization="Bearer t0ken")
    for status_refused, _, page in refused:
        assert status_refused == 401
        assert 'name="token"' in page
        assert "private words" not in page
    assert events == 401
    assert wrong_status == 401
    assert location == "/live"  # never sent to another site after signing in
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "t0ken" not in cookie
    assert (status, bearer) == (200, 200)
    assert "private words" in body
