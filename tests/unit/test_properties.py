"""Property tests (hypothesis) over the cursor and dedupe logic, and fuzzing of payload parsing."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.errors import ProtocolError
from archiver.gws.client import parse_messages_body
from archiver.gws.models import MalformedPayload, parse_message, parse_session, session_objects
from archiver.store.writer import ArchiveWriter, Page

SESSION = parse_session({"id": "S1", "state": "Chatting"})


def gws_message(index: int) -> dict[str, Any]:
    if index == -1:
        return {"index": -1, "type": "TranscriptSaveDone", "visibility": "All"}
    return {"index": index, "type": "Text", "text": f"m{index}", "timestampSeconds": 1e12 + index}


@st.composite
def page_sequences(draw: st.DrawFn) -> tuple[int, bool, list[list[int]]]:
    """A log of N messages and pages over it: overlapping, repeated, reordered, short, empty."""
    total = draw(st.integers(min_value=0, max_value=25))
    saved = draw(st.booleans())
    indices = st.integers(min_value=1, max_value=max(total, 1))
    slices = st.tuples(indices, st.integers(min_value=0, max_value=10)).map(
        lambda t: [i for i in range(t[0], t[0] + t[1]) if i <= total]
    )
    pages = draw(st.lists(slices, max_size=12))
    pages = [draw(st.permutations(page)) for page in pages]
    # Whatever the order, the log is read completely in the end (as the poller would).
    pages.append(list(range(1, total + 1)))
    if saved:
        pages = [[*page, -1] if draw(st.booleans()) else page for page in pages]
        pages.append([-1])
    return total, saved, draw(st.permutations(pages))


def archive_of(pages: list[list[int]]) -> tuple[list[tuple[Any, ...]], set[str], int]:
    """Store the pages in a fresh archive; return its messages, event ids and cursor."""

    async def store(path: Path) -> int:
        async with ArchiveWriter(path) as writer:
            for indices in pages:
                messages = [parse_message(gws_message(i)) for i in indices]
                await writer.store_page(Page("agent1", SESSION, messages))
            states = await writer.session_states(["S1"])
            return states["S1"].next_index if states else 1

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.sqlite3"
        cursor = asyncio.run(store(path))
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT message_index, type, text, raw_json FROM messages ORDER BY 1"
        ).fetchall()
        events = {r[0] for r in conn.execute("SELECT event_id FROM events")}
        conn.close()
    return rows, events, cursor


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_sequences())
def test_any_page_sequence_equals_one_clean_read(case: tuple[int, bool, list[list[int]]]) -> None:
    """Guarantees 1-2: page order, overlap, repeats and gaps never change the final archive."""
    total, saved, pages = case
    clean = [list(range(1, total + 1)) + ([-1] if saved else [])]
    assert archive_of(pages) == archive_of(clean)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(-3, 10**6) | st.text(max_size=6) | st.none(),
        "type": st.sampled_from(["Text", "TypingStopping", "Weird", ""]) | json_values,
        "text": json_values,
        "from": json_values,
        "timestamp": st.text(max_size=30) | json_values,
        "timestampSeconds": st.integers() | st.floats() | st.text(max_size=16),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({"messages": st.lists(message_like | json_values, max_size=6)}),
    )
)
def test_malformed_message_bodies_never_crash_parsing(body: Any) -> None:
    """Guarantee 7: any body yields messages plus counted rejects, or one ProtocolError."""
    try:
        page = parse_messages_body(body, "http://gws")
    except ProtocolError:
        assert not (isinstance(body, dict) and isinstance(body.get("messages"), list))
        return
    assert len(page.messages) + len(page.rejected) == len(body["messages"])


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_malformed_session_lists_never_crash_parsing(body: Any) -> None:
    """A session list of any shape gives sessions or MalformedPayload, nothing else."""
    try:
        objects = session_objects(body)
    except MalformedPayload:
        return
    for obj in objects:
        with contextlib.suppress(MalformedPayload):
            parse_session(obj)
