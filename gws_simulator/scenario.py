"""A seeded conversation driver: sessions open, talk, end and disappear over wall-clock time.

One task drives every session from a heap of due times, so ten thousand concurrent sessions
cost ten thousand heap entries, not ten thousand tasks. Each session draws its content from
its own `random.Random`, seeded from the run seed and the session's number, so a seed
reproduces the same sessions, message types, texts and order whatever the timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from gws_simulator import phrases
from gws_simulator.wire import Participant
from gws_simulator.world import World, make_participant_id, make_session_id

DEFAULT_TYPE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("Text", 0.55),
    ("TypingStarted", 0.2),
    ("PushUrl", 0.06),
    ("Notice", 0.06),
    ("CustomNotice", 0.06),
    ("ParticipantLeft", 0.07),
)
log = structlog.get_logger()
_TURN_TYPES = frozenset(name for name, _ in DEFAULT_TYPE_WEIGHTS)

Step = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scenario:
    """How the simulated contact centre behaves.

    Attributes:
        sessions: total sessions over the whole run; None plays endlessly.
        concurrent_per_agent: sessions each agent holds open at once.
        messages: inclusive range of messages between the opening joins (customer, then
            agent) and the closing leaves; each session draws its count from it.
        interval_s: mean gap between two messages of one session (each gap is drawn from
            0.5-1.5 times this); 0.001 for fast tests, 1-3 for a watchable demo.
        type_weights: relative share of each kind of turn. `TypingStarted` is followed by
            `TypingStopped` or by a `Text` from the same sender; `ParticipantLeft` is the
            customer stepping out and is followed by `ParticipantRejoined`. Joins, final
            leaves and `TranscriptSaveDone` are always part of a session.
        agents_only_share: probability that a turn is agents-only (`visibility: Agents`);
            the first one brings a consultant agent in, who leaves before the end.
        transcript_share: probability that a session ends with `TranscriptSaveDone`.
        linger_s: how long a Completed session stays in the list before it disappears.
        backlog: (sessions, messages): sessions that exist from the start with that many
            messages each already in their logs (a conversation cut short), held open and
            silent for the whole run; (0, 0) for none. For ingest benchmarks.
    """

    sessions: int | None = 20
    concurrent_per_agent: int = 2
    messages: tuple[int, int] = (10, 40)
    interval_s: float = 1.0
    type_weights: tuple[tuple[str, float], ...] = DEFAULT_TYPE_WEIGHTS
    agents_only_share: float = 0.05
    transcript_share: float = 0.9
    linger_s: float = 5.0
    backlog: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.sessions is not None and self.sessions < 0:
            raise ValueError("sessions must be >= 0 or None")
        if self.concurrent_per_agent < 1:
            raise ValueError("concurrent_per_agent must be >= 1")
        low, high = self.messages
        if not 0 <= low <= high:
            raise ValueError("messages must be a range 0 <= low <= high")
        if self.interval_s < 0 or self.linger_s < 0:
            raise ValueError("interval_s and linger_s must be >= 0")
        unknown = {name for name, _ in self.type_weights} - _TURN_TYPES
        if unknown or sum(weight for _, weight in self.type_weights) <= 0:
            raise ValueError(f"type_weights need positive weights over {sorted(_TURN_TYPES)}")
        for share in (self.agents_only_share, self.transcript_share):
            if not 0.0 <= share <= 1.0:
                raise ValueError("shares must be within 0..1")
        if min(self.backlog) < 0:
            raise ValueError("backlog sessions and messages must be >= 0")


@dataclass(slots=True)
class _Play:
    """One scripted session in progress."""

    account: str
    session_id: str
    steps: Iterator[tuple[float, Step]]
    transcript: bool


class ScenarioDriver:
    """Plays a `Scenario` against a `World`; `run()` is the loop, `run_once()` one tick."""

    def __init__(self, world: World, scenario: Scenario, seed: int) -> None:
        self._world = world
        self._scenario = scenario
        self._seed = seed
        self._accounts = list(world.accounts)
        # Due time, tie-breaker, and what is due: a step, a removal (session id) or a start.
        self._heap: list[tuple[float, int, _Play | str | tuple[int, int]]] = []
        self._tick = 0
        self._ended = 0
        # Session n always belongs to agent n % agents, so the assignment is seed-stable.
        self._next_number = list(range(len(self._accounts)))
        self.finished = asyncio.Event()
        self.error: Exception | None = None
        if scenario.sessions == 0 or not self._accounts:
            self.finished.set()

    async def run(self) -> None:
        """Play until the scenario is over (forever when endless)."""
        loop = asyncio.get_running_loop()
        self.begin(loop.time())
        try:
            while self._heap:
                delay = self._heap[0][0] - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.run_once(loop.time())
        except Exception as exc:
            log.exception("scenario_failed")
            self.error = exc
            self.finished.set()
            raise

    def begin(self, now: float) -> None:
        """Schedule each agent's first sessions, staggered over one interval."""
        stagger = random.Random(f"stagger/{self._seed}")
        for slot in range(len(self._accounts)):
            for _ in range(self._scenario.concurrent_per_agent):
                self._schedule_start(slot, now + stagger.random() * self._scenario.interval_s)

    def open_backlog(self) -> None:
        """Create the backlog sessions with all their messages at once (before serving)."""
        sessions, messages = self._scenario.backlog
        if not self._accounts:
            return
        script = dataclasses.replace(self._scenario, messages=(messages, messages))
        for number in range(sessions):
            account = self._accounts[number % len(self._accounts)]
            rng = random.Random(f"backlog/{self._seed}/{number}")
            session_id, customer, agent = self._open(account, rng, number, marker="c")
            for _, message in itertools.islice(_script(rng, script, customer, agent), messages):
                self._world.append_message(session_id, **message)
        self._world.flush()

    def run_once(self, now: float) -> None:
        """Carry out everything due by `now`."""
        while self._heap and self._heap[0][0] <= now:
            due, _, item = heapq.heappop(self._heap)
            if isinstance(item, _Play):
                self._advance(item, due)
            elif isinstance(item, str):
                if item in self._world.sessions:
                    self._world.remove_session(item)
            else:
                slot, number = item
                self._start(slot, number, due)
        self._world.flush()

    def _push(self, due: float, item: _Play | str | tuple[int, int]) -> None:
        self._tick += 1
        heapq.heappush(self._heap, (due, self._tick, item))

    def _schedule_start(self, slot: int, due: float) -> None:
        # The session number is taken now, so pending starts never exceed the total.
        number = self._next_number[slot]
        total = self._scenario.sessions
        if total is None or number < total:
            self._next_number[slot] += len(self._accounts)
            self._push(due, (slot, number))

    def _start(self, slot: int, number: int, now: float) -> None:
        account = self._accounts[slot]
        rng = random.Random(f"scenario/{self._seed}/{number}")
        session_id, customer, agent = self._open(account, rng, number)
        transcript = rng.random() < self._scenario.transcript_share
        steps = _script(rng, self._scenario, customer, agent)
        self._advance(_Play(account, session_id, steps, transcript), now)

    def _open(
        self, account: str, rng: random.Random, number: int, marker: str = "a"
    ) -> tuple[str, Participant, Participant]:
        """Create session `number` for `account`: its id, customer and agent."""
        session_id = make_session_id(rng, number, marker)
        customer = Participant("Customer", rng.choice(phrases.CUSTOMERS), make_participant_id(rng))
        nickname = self._world.accounts[account].first_name
        agent = Participant("Agent", nickname, make_participant_id(rng))
        self._world.create_session(account, session_id=session_id, customer=customer, agent=agent)
        return session_id, customer, agent

    def _advance(self, play: _Play, now: float) -> None:
        session = self._world.sessions.get(play.session_id)
        if session is None or session.state != "Chatting":
            # An operation (Complete, Leave, Transfer to a queue) or the admin API ended it.
            if session is not None:
                self._push(now + self._scenario.linger_s, play.session_id)
            self._finish(play, now)
            return
        step = next(play.steps, None)
        if step is None:
            self._world.end_session(play.session_id, transcript=play.transcript)
            self._push(now + self._scenario.linger_s, play.session_id)
            self._finish(play, now)
            return
        delay, message = step
        self._world.append_message(play.session_id, **message)
        self._push(now + delay, play)

    def _finish(self, play: _Play, now: float) -> None:
        self._ended += 1
        self._schedule_start(self._accounts.index(play.account), now + self._scenario.interval_s)
        if self._scenario.sessions is not None and self._ended >= self._scenario.sessions:
            self.finished.set()


def _script(
    rng: random.Random, scenario: Scenario, customer: Participant, agent: Participant
) -> Iterator[tuple[float, Step]]:
    """The messages of one session, each with the gap to wait after it."""

    def gap() -> float:
        return scenario.interval_s * rng.uniform(0.5, 1.5)

    kinds = [name for name, _ in scenario.type_weights]
    weights = [weight for _, weight in scenario.type_weights]
    target = rng.randint(*scenario.messages)
    consultant: Participant | None = None
    yield gap(), {"type": "ParticipantJoined", "sender": customer}
    yield gap(), {"type": "ParticipantJoined", "sender": agent}
    produced = 0
    while produced < target:
        kind = rng.choices(kinds, weights)[0]
        if kind != "ParticipantLeft" and rng.random() < scenario.agents_only_share:
            if consultant is None:
                consultant = Participant(
                    "Agent", rng.choice(phrases.CONSULTANTS), make_participant_id(rng)
                )
                yield (
                    gap(),
                    {"type": "ParticipantJoined", "sender": consultant, "visibility": "Agents"},
                )
                produced += 1
            speaker = rng.choice((agent, consultant))
            for step in _turn(rng, kind, speaker, speaker, "Agents"):
                yield gap(), step
                produced += 1
        else:
            for step in _turn(rng, kind, customer, agent, "All"):
                yield gap(), step
                produced += 1
    if consultant is not None:
        yield gap(), {"type": "ParticipantLeft", "sender": consultant, "visibility": "Agents"}
    yield gap(), {"type": "ParticipantLeft", "sender": customer}
    yield gap(), {"type": "ParticipantLeft", "sender": agent}


def _turn(
    rng: random.Random, kind: str, customer: Participant, agent: Participant, visibility: str
) -> Iterator[Step]:
    """One turn of `kind`: one message, or two for typing and step-out pairs."""
    agents_only = visibility == "Agents"
    if kind == "ParticipantLeft":
        yield {"type": "ParticipantLeft", "sender": customer}
        yield {"type": "ParticipantRejoined", "sender": customer}
    elif kind == "PushUrl":
        yield {
            "type": "PushUrl",
            "url": phrases.url(rng),
            "sender": agent,
            "visibility": visibility,
        }
    elif kind == "Notice":
        text = None if rng.random() < 0.1 else rng.choice(phrases.NOTICES)
        yield {"type": "Notice", "text": text, "sender": "External", "visibility": visibility}
    elif kind == "CustomNotice":
        notice = phrases.fill(rng, rng.choice(phrases.CUSTOM_NOTICES))
        yield {
            "type": "CustomNotice",
            "notice_text": notice,
            "sender": agent,
            "visibility": visibility,
        }
    else:
        speaker = customer if not agents_only and rng.random() < 0.5 else agent
        line = phrases.line(rng, speaker.type, agents_only)
        if kind == "TypingStarted":
            preview = line[: rng.randint(3, 12)] if rng.random() < 0.3 else None
            yield {
                "type": "TypingStarted",
                "text": preview,
                "sender": speaker,
                "visibility": visibility,
            }
            if rng.random() < 0.4:
                yield {"type": "TypingStopped", "sender": speaker, "visibility": visibility}
                return
        yield {"type": "Text", "text": line, "sender": speaker, "visibility": visibility}
