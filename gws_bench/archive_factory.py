"""Archives generated through the real ArchiveWriter, from synthetic GWS-shaped messages.

Used by ``gws_bench/read_speed.py`` and by the tests (their ``big_archive`` fixture: 1,000
sessions of 100 messages, plus a TranscriptSaveDone for each completed one). Each session's
messages come from its own seed, so the plan kept per session is small and tests can compute
what to expect from it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.gws.models import parse_message, parse_session
from archiver.store.db import ArchiveLocation
from archiver.store.writer import ArchiveWriter, Page

BASE_TIME = datetime(2024, 3, 1, tzinfo=UTC)
ACCOUNTS = ("agent1", "agent2", "agent3", "agent4")
AGENTS = ("Marat", "Zoë", "Jürgen", "Priya", "Kenji")
STATES = ("Completed", "Completed", "Completed", "Revoked", "Accepted")
SECONDS_BETWEEN_MESSAGES = 7
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "den", "pra", "gul", "ost")
VOCABULARY = tuple(
    sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in ("", "n", "r", "s")})
)
# Texts planted in known sessions (session number -> texts, in order), for search tests.
PLANTED: dict[int, tuple[str, ...]] = {
    3: ("zebra", "my broken phone needs a refund"),
    5: ("zebra zebra zebra crossing",),
    8: ("the phone is broken, not the screen",),
    11: (
        "a long message that talks about many unrelated matters and mentions a zebra once"
        " somewhere in the middle of all these other words",
    ),
    17: ("Le café était fermé à Straße Nummer drei",),
    23: ("Привет, мир! 東京 タワー",),
}


@dataclass(frozen=True, slots=True)
class PlannedSession:
    """One generated session: what a test may filter on, and when its messages were sent."""

    number: int
    session_id: str
    account: str
    state: str
    agent: str
    customer: str
    message_count: int
    sent_ats: tuple[str, ...]

    @property
    def ended(self) -> bool:
        """Completed and Revoked sessions are stored with an end reason."""
        return self.state in ("Completed", "Revoked")


@dataclass(frozen=True, slots=True)
class GeneratedArchive:
    """An archive file and the plan it was built from."""

    path: ArchiveLocation
    sessions: tuple[PlannedSession, ...]

    @property
    def message_count(self) -> int:
        """Messages the archive holds."""
        return sum(s.message_count for s in self.sessions)


def session_id_of(number: int) -> str:
    """The GWS-looking id of session ``number``."""
    return f"00{number:06d}A1B2C3D4"


def gws_message(
    index: int,
    msg_type: str,
    text: str | None,
    sender: tuple[str, str],
    at: datetime | None,
    *,
    visibility: str = "All",
    url: str | None = None,
) -> dict[str, Any]:
    """One element of a GWS ``messages`` array."""
    nickname, kind = sender
    message: dict[str, Any] = {
        "index": index,
        "type": msg_type,
        "from": {"type": kind, "nickname": nickname, "participantId": f"P-{nickname}"},
        "visibility": visibility,
    }
    if text is not None:
        message["text"] = text
    if url is not None:
        message["url"] = url
    if at is not None:
        message["timestampSeconds"] = int(at.timestamp() * 1000)
    return message


def session_messages(
    number: int, count: int, agent: str, customer: str, state: str
) -> Iterator[dict[str, Any]]:
    """The GWS messages of generated session ``number`` (deterministic)."""
    rng = random.Random(number)
    start = BASE_TIME + timedelta(minutes=43 * number)
    planted = list(PLANTED.get(number, ()))
    them, us = (customer, "Customer"), (agent, "Agent")
    system = ("system", "External")

    def words() -> str:
        return " ".join(rng.choices(VOCABULARY, k=rng.randint(4, 14)))

    for index in range(1, count + 1):
        at: datetime | None = start + timedelta(seconds=SECONDS_BETWEEN_MESSAGES * index)
        if index <= 2:
            yield gws_message(index, "ParticipantJoined", None, them if index == 1 else us, at)
            continue
        if index == count:
            yield gws_message(index, "ParticipantLeft", None, them, at)
            continue
        roll = rng.random()
        if planted and roll < 0.5:
            yield gws_message(index, "Text", planted.pop(0), them, at)
        elif roll < 0.15:
            yield gws_message(index, "TypingStarted", None, them, at)
        elif roll < 0.20:
            # Some GWS messages carry no timestamp at all: sent_at must stay NULL.
            yield gws_message(index, "TypingStopped", None, them, None if number % 50 == 0 else at)
        elif roll < 0.55:
            text = words() if rng.random() > 0.02 else f"{words()}\n{words()}"
            yield gws_message(index, "Text", text, them, at)
        elif roll < 0.85:
            yield gws_message(index, "Text", words(), us, at)
        elif roll < 0.92:
            yield gws_message(index, "Text", words(), us, at, visibility="Agents")
        elif roll < 0.96:
            yield gws_message(index, "Notice", words(), system, at)
        elif roll < 0.98:
            url = f"https://example.com/help/{number}"
            yield gws_message(index, "PushUrl", None, us, at, url=url)
        else:
            yield gws_message(index, "CustomNotice", words(), us, at, visibility="Agents")
    if state == "Completed":
        done = start + timedelta(seconds=SECONDS_BETWEEN_MESSAGES * (count + 1))
        yield gws_message(-1, "TranscriptSaveDone", None, system, done)


def generate_session(
    number: int, messages_per_session: int, page_size: int
) -> tuple[PlannedSession, list[Page]]:
    """Session ``number``: its plan, and the pages the daemon would store for it."""
    state = STATES[number % len(STATES)]
    agent = AGENTS[number % len(AGENTS)]
    customer = f"Cust{number % 97}"
    raws = session_messages(number, messages_per_session, agent, customer, state)
    messages = [parse_message(raw) for raw in raws]
    plan = PlannedSession(
        number=number,
        session_id=session_id_of(number),
        account=ACCOUNTS[number % len(ACCOUNTS)],
        state=state,
        agent=agent,
        customer=customer,
        message_count=len(messages),
        sent_ats=tuple(m.sent_at for m in messages if m.sent_at),
    )
    session = parse_session(
        {
            "id": plan.session_id,
            "state": state,
            "participants": [
                {"type": "Agent", "nickname": agent, "participantId": f"P-{agent}"},
                {"type": "Customer", "nickname": customer, "participantId": "P-c"},
            ],
            "userData": {"number": number},
        }
    )
    chunks = [messages[i : i + page_size] for i in range(0, len(messages), page_size)]
    pages = [
        Page(
            plan.account,
            session,
            chunk,
            end_reason="final_state" if plan.ended and i == len(chunks) - 1 else None,
        )
        for i, chunk in enumerate(chunks)
    ]
    return plan, pages


async def write_archive(
    path: ArchiveLocation,
    sessions: int,
    messages_per_session: int,
    *,
    first: int = 0,
    page_size: int = 1000,
) -> GeneratedArchive:
    """Store generated sessions ``first`` .. ``first + sessions - 1`` through the real writer."""
    plans = []
    async with ArchiveWriter(path) as writer:
        for number in range(first, first + sessions):
            plan, pages = generate_session(number, messages_per_session, page_size)
            for page in pages:
                await writer.store_page(page)
            plans.append(plan)
    return GeneratedArchive(path, tuple(plans))
