"""A seeded conversation driver: sessions open, talk, end and disappear over wall-clock time.

One task drives every session from a heap of due times, so ten thousand concurrent sessions
cost ten thousand heap entries, not ten thousand tasks. Each session draws its content from
its own `random.Random`, seeded from the run seed and the session's number, so a seed
reproduces the same sessions, message types, texts and order whatever the timing.

Midway through its script a session may be handed on (`handoffs.py`), at most one move per
session, drawn from a second per-session `random.Random` so that sessions without one keep
their content: a transfer (the new agent finishes the script), a queue (picked up after
`queue_wait_s` by another agent, or the same one when there is only one), a conference or a
consultation (another agent speaks a few lines, then leaves; the first agent goes on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog

from gws_simulator import handoffs, phrases
from gws_simulator.handoffs import HandoffError
from gws_simulator.sessions import Session, View
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
# Yielded by a script midway, with no delay and no draw: where a handoff, if any, happens.
_HANDOFF: Step = {}


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
        transfer_share: probability that a session is transferred midway to another
            configured agent, who finishes it.
        conference_share: probability that another configured agent is invited midway,
            speaks a few lines to all, then leaves.
        consult_share: the same as a consultation: the other agent's join, lines and leave
            are visible to agents only.
        queue_share: probability that a session is transferred to a queue midway, then
            picked up by another agent (the same one when there is only one).
        queue_wait_s: how long a queued session waits for its pick-up.
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
    transfer_share: float = 0.0
    conference_share: float = 0.0
    consult_share: float = 0.0
    queue_share: float = 0.0
    queue_wait_s: float = 3.0

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
        handoff_shares = self.handoff_shares()
        for share in (self.agents_only_share, self.transcript_share, *handoff_shares.values()):
            if not 0.0 <= share <= 1.0:
                raise ValueError("shares must be within 0..1")
        if sum(handoff_shares.values()) > 1.0 + 1e-9:
            raise ValueError("transfer, conference, consult and queue shares must sum to <= 1")
        if self.queue_wait_s < 0:
            raise ValueError("queue_wait_s must be >= 0")
        if min(self.backlog) < 0:
            raise ValueError("backlog sessions and messages must be >= 0")

    def handoff_shares(self) -> dict[str, float]:
        """The share of each handoff kind, by name."""
        return {
            "transfer": self.transfer_share,
            "conference": self.conference_share,
            "consult": self.consult_share,
            "queue": self.queue_share,
        }


@dataclass(slots=True)
class _Play:
    """One scripted session in progress.

    `account` is the agent it started with (its slot); `agent` the scripted agent, whose
    lines the handling agent speaks after a transfer. `handoff` and `other` say which move
    happens midway and with whom; `guest` holds a conference or consult guest's turns, played
    before the script goes on; `pickup` the account picking the session up from its queue.
    """

    account: str
    session_id: str
    steps: Iterator[tuple[float, Step]]
    transcript: bool
    agent: Participant
    handoff: str | None = None
    other: str = ""
    rng: random.Random | None = None
    guest: deque[tuple[float, Step]] = field(default_factory=deque)
    pickup: str | None = None


class ScenarioDriver:
    """Plays a `Scenario` against a `World`; `run()` is the loop, `run_once()` one tick."""

    def __init__(self, world: World, scenario: Scenario, seed: int) -> None:
        self._world = world
        self._scenario = scenario
        self._seed = seed
        # Sessions go to agents only; supervisors see them by monitoring.
        self._accounts = [name for name, account in world.accounts.items() if account.is_agent]
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
            steps = (
                step for step in _script(rng, script, customer, agent) if step[1] is not _HANDOFF
            )
            for _, message in itertools.islice(steps, messages):
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
        play = _Play(account, session_id, steps, transcript, agent)
        self._plan_handoff(play, number)
        self._advance(play, now)

    def _plan_handoff(self, play: _Play, number: int) -> None:
        """Draw session `number`'s move, if any, and the account it involves."""
        shares = self._scenario.handoff_shares()
        if not any(shares.values()):
            return
        rng = random.Random(f"handoff/{self._seed}/{number}")
        point = rng.random()
        others = [account for account in self._accounts if account != play.account]
        for kind, share in shares.items():
            point -= share
            if point < 0:
                if kind == "queue" or others:
                    play.handoff, play.rng = kind, rng
                    play.other = rng.choice(others) if others else play.account
                return

    def _open(
        self, account: str, rng: random.Random, number: int, marker: str = "a"
    ) -> tuple[str, Participant, Participant]:
        """Create session `number` for `account`: its id, customer and agent."""
        session_id = make_session_id(rng, number, marker)
        customer = Participant("Customer", rng.choice(phrases.CUSTOMERS), make_participant_id(rng))
        owner = self._world.accounts[account]
        agent = Participant(
            "Agent", owner.first_name, make_participant_id(rng), user_id=owner.user_id
        )
        self._world.create_session(account, session_id=session_id, customer=customer, agent=agent)
        return session_id, customer, agent

    def _advance(self, play: _Play, now: float) -> None:
        session = self._world.sessions.get(play.session_id)
        if session is not None and play.pickup is not None:
            if session.queued:
                handoffs.pick_up(self._world, session, play.pickup)
            play.pickup = None
        if session is None or session.state != "Chatting":
            # An operation (Complete, Leave, Transfer to a queue) or the admin API ended it.
            if session is not None:
                self._push(now + self._scenario.linger_s, play.session_id)
            self._finish(play, now)
            return
        step = play.guest.popleft() if play.guest else next(play.steps, None)
        if step is None:
            self._world.end_session(play.session_id, transcript=play.transcript)
            self._push(now + self._scenario.linger_s, play.session_id)
            self._finish(play, now)
            return
        delay, message = step
        if message is _HANDOFF:
            delay = self._hand_off(play, session)
        elif "leave" in message:
            guest = session.views.get(message["leave"])
            if guest is not None:
                handoffs.leave(self._world, session, guest)
        else:
            if message.get("sender") is play.agent and session.agent is not play.agent:
                message = {**message, "sender": "Agent"}
            self._world.append_message(play.session_id, **message)
        self._push(now + delay, play)

    def _hand_off(self, play: _Play, session: Session) -> float:
        """Make the planned move; the delay before the next step."""
        if play.handoff is None or play.rng is None:
            return 0.0
        world, rng, scenario = self._world, play.rng, self._scenario
        try:
            if play.handoff == "transfer":
                handoffs.transfer(world, session, session.views[session.account], play.other)
            elif play.handoff == "queue":
                handoffs.queue(world, session)
                play.pickup = play.other
                return scenario.queue_wait_s
            else:
                guest = handoffs.add_agent(world, session, play.other, play.handoff)
                play.guest.extend(_guest_turns(rng, scenario, guest))
        except HandoffError:
            # The admin API or an agent brought the other account in already.
            log.info("handoff_skipped", session_id=session.id, handoff=play.handoff)
        return scenario.interval_s * rng.uniform(0.5, 1.5)

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
    midway = False
    while produced < target:
        if not midway and produced >= target // 2:
            midway = True
            yield 0.0, _HANDOFF
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
    if not midway:
        yield 0.0, _HANDOFF
    if consultant is not None:
        yield gap(), {"type": "ParticipantLeft", "sender": consultant, "visibility": "Agents"}
    yield gap(), {"type": "ParticipantLeft", "sender": customer}
    yield gap(), {"type": "ParticipantLeft", "sender": agent}


def _guest_turns(
    rng: random.Random, scenario: Scenario, guest: View
) -> Iterator[tuple[float, Step]]:
    """A conference or consult guest's few lines (agents-only for a consultant), then its leave."""
    visibility = handoffs.ROLE_VISIBILITY[guest.role]
    for _ in range(rng.randint(2, 4)):
        line = phrases.line(rng, "Agent", agents_only=visibility == "Agents")
        step = {"type": "Text", "text": line, "sender": guest.agent, "visibility": visibility}
        yield scenario.interval_s * rng.uniform(0.5, 1.5), step
    yield scenario.interval_s * rng.uniform(0.5, 1.5), {"leave": guest.account}


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
