"""The simulator's in-memory world: accounts, SMS sessions, their transcripts and the truth log.

Everything here is synchronous and runs on the event loop; HTTP handlers, the scenario driver
and the admin API all change the world through these methods only. The truth log records
every message created, in creation order, independent of what any client was served. An
optional `SessionObserver` hears of every change as it happens (the GWS notifications).
"""

from __future__ import annotations

import hashlib
import random
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from gws_simulator.hostile import Hostility, Poisoner
from gws_simulator.wire import Message, Participant, compact, render_message

PASSWORD = "password"
MESSAGE_TYPES = frozenset(
    {
        "Text",
        "ParticipantJoined",
        "ParticipantLeft",
        "ParticipantRejoined",
        "TypingStarted",
        "TypingStopped",
        "PushUrl",
        "Notice",
        "CustomNotice",
        "TranscriptSaveDone",
    }
)
VISIBILITIES = frozenset({"All", "Agents", "Supervisors"})
STATES = frozenset({"Invited", "Chatting", "LeftChat", "Completed"})

# Capabilities per state, as sampled in gws-api.md §2.4. SendUrl and SendCustomNotice are not in
# any sampled list but are documented operations, so Chatting allows them; LeftChat keeps the
# user-data operations because SMSLeave says the agent may still update data and disposition.
_USER_DATA_OPS = ("SetDisposition", "AttachUserData", "UpdateUserData", "DeleteUserData")
_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "Invited": ("Accept", "Reject"),
    "Chatting": (
        "Transfer",
        "Complete",
        "Leave",
        "LeaveAndComplete",
        "Invite",
        "Consult",
        "InFocus",
        *_USER_DATA_OPS,
        "SendMessage",
        "SendUrl",
        "SendStartTypingNotification",
        "SendStopTypingNotification",
        "SendCustomNotice",
    ),
    "LeftChat": ("Transfer", "Complete", "Leave", "InFocus", *_USER_DATA_OPS),
    "Completed": (),
}
# Added while more than one agent is in the session (conference or consultation, §1.3).
_CONFERENCE_CAPABILITIES = (
    "SendToAgents",
    "SendStartTypingToAgentsNotification",
    "SendStopTypingToAgentsNotification",
    "SendCustomNoticeToAgents",
)
_FIRST_NAMES = ("Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines")
_ID_CHARS = string.digits + string.ascii_uppercase


@dataclass(slots=True)
class Account:
    """An agent login: `agentN` with the password `password`."""

    username: str
    password: str
    user_id: str
    first_name: str
    last_name: str

    def user_json(self, base_url: str) -> dict[str, Any]:
        """The `user` object of `GET /api/v2/me`."""
        return {
            "id": self.user_id,
            "userName": self.username,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "roles": ["ROLE_AGENT"],
            "enabled": True,
            "changePasswordOnFirstLogin": False,
            "uri": f"{base_url}/api/v2/users/{self.user_id}",
            "path": f"/users/{self.user_id}",
        }


@dataclass(slots=True)
class Session:
    """One SMS session owned by one agent account."""

    id: str
    account: str
    state: str
    agent: Participant
    customer: Participant
    participants: list[Participant]
    user_data: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    transcript: Message | None = None
    system: Participant | None = None
    hidden_until: float = 0.0
    body: bytes | None = None

    def capabilities(self) -> tuple[str, ...]:
        """Operation names allowed in the current state."""
        allowed = _CAPABILITIES[self.state]
        if self.state == "Chatting" and self.in_conference():
            return allowed + _CONFERENCE_CAPABILITIES
        return allowed

    def in_conference(self) -> bool:
        """More than one agent present: a conference or a consultation."""
        return sum(1 for member in self.participants if member.type == "Agent") > 1

    def changed(self) -> None:
        """Drop the cached wire form after a change of state, participants or data."""
        self.body = None


class SessionObserver(Protocol):
    """Told, synchronously and in order, about every change of an SMS session."""

    def session_changed(self, session: Session, change: str) -> None:
        """`change` is `StatusChange`, `ParticipantsUpdated` or `PropertiesUpdated`."""

    def message_added(self, session: Session, message: Message) -> None:
        """A message (TranscriptSaveDone included) joined the session's log."""

    def session_left(self, session: Session, account: str) -> None:
        """The session was handed from `account` to another one."""


def make_user_id(username: str) -> str:
    """A stable 32-hex GWS user id for an account name."""
    return hashlib.sha256(username.encode()).hexdigest()[:32]


def make_participant_id(rng: random.Random) -> str:
    """A 16-hex-digit participant id like `009052BDEE4A003E`."""
    return f"00{rng.getrandbits(56):014X}"


def make_session_id(rng: random.Random, serial: int, marker: str = "a") -> str:
    """A 16-char interaction id like `0000Na9B26EF002G`; `serial` keeps it unique."""
    middle = "".join(rng.choice(_ID_CHARS) for _ in range(4))
    tail = ""
    for _ in range(6):
        serial, digit = divmod(serial, 36)
        tail = _ID_CHARS[digit] + tail
    return f"0000{rng.choice(string.ascii_uppercase)}{marker}{middle}{tail}"


class World:
    """Accounts, sessions and the truth log of one simulator run."""

    def __init__(
        self,
        *,
        agents: int,
        seed: int,
        quirks: bool = False,
        hostile: bool | Hostility = False,
        utc_offset_minutes: int | None = None,
        truth_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = "http://127.0.0.1"
        self.accounts: dict[str, Account] = {}
        for number in range(1, agents + 1):
            name = f"agent{number}"
            first = _FIRST_NAMES[(number - 1) % len(_FIRST_NAMES)]
            self.accounts[name] = Account(
                name, PASSWORD, make_user_id(name), first, f"Agent{number}"
            )
        self.sessions: dict[str, Session] = {}
        self._by_account: dict[str, dict[str, Session]] = {name: {} for name in self.accounts}
        self._rng = random.Random(f"world/{seed}")
        self._quirks = random.Random(f"quirks/{seed}") if quirks else None
        self.utc_offset_minutes = utc_offset_minutes
        self._clock = clock
        self._serial = 0
        self._truth: list[Message] = []
        self._truth_file: IO[bytes] | None = truth_path.open("wb") if truth_path else None
        self.quirks = quirks
        hostility = (Hostility() if hostile else None) if isinstance(hostile, bool) else hostile
        self.poisoner = Poisoner(seed, hostility) if hostility is not None else None
        self.observer: SessionObserver | None = None

    def close(self) -> None:
        """Flush and close the truth file; safe to call twice."""
        if self._truth_file is not None:
            self._truth_file.close()
            self._truth_file = None

    def flush(self) -> None:
        """Push buffered truth lines to the file."""
        if self._truth_file is not None:
            self._truth_file.flush()

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account for these credentials, or None."""
        account = self.accounts.get(username)
        if account is None or account.password != password:
            return None
        return account

    def create_session(
        self,
        account: str,
        state: str = "Chatting",
        *,
        session_id: str | None = None,
        customer: Participant | None = None,
        agent: Participant | None = None,
        user_data: dict[str, Any] | None = None,
    ) -> str:
        """Open a session for `account` with no messages yet; returns its id.

        The customer is a participant from the start; the agent too unless the session is
        `Invited` (the agent joins on Accept).
        """
        owner = self.accounts[account]
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        if session_id is None:
            self._serial += 1
            session_id = make_session_id(self._rng, self._serial, marker="b")
        if session_id in self.sessions:
            raise ValueError(f"session {session_id} exists")
        customer = customer or Participant(
            "Customer", f"Customer{self._serial}", make_participant_id(self._rng)
        )
        agent = agent or Participant("Agent", owner.first_name, make_participant_id(self._rng))
        members = [customer] if state == "Invited" else [agent, customer]
        if state == "Completed":
            members = []
        session = Session(session_id, account, state, agent, customer, members, user_data or {})
        self.sessions[session_id] = session
        self._by_account[account][session_id] = session
        self._changed(session, "StatusChange")
        return session_id

    def append_message(
        self,
        session_id: str,
        type: str,
        text: str | None = None,
        url: str | None = None,
        notice_text: str | None = None,
        visibility: str = "All",
        sender: str | Participant = "Customer",
    ) -> int:
        """Add a message to a session's log and the truth; returns its index.

        `sender` is a role (`Customer`, `Agent` for the owning agent, `External` for the
        system) or a participant. Joins, rejoins and leaves update `participants`.
        `TranscriptSaveDone` takes index -1 and may be added once.
        """
        session = self.sessions[session_id]
        if type not in MESSAGE_TYPES:
            raise ValueError(f"unknown message type {type!r}")
        if visibility not in VISIBILITIES:
            raise ValueError(f"unknown visibility {visibility!r}")
        member = self._resolve_sender(session, sender)
        if type == "TranscriptSaveDone":
            if session.transcript is not None:
                raise ValueError(f"session {session_id} already has TranscriptSaveDone")
            index = -1
        else:
            index = len(session.messages) + 1
        message = Message(
            session_id,
            session.account,
            index,
            type,
            member,
            visibility,
            int(self._clock() * 1000),
            text,
            url,
            notice_text,
        )
        message.body = render_message(message, self.utc_offset_minutes, self._quirks)
        poison = self.poisoner.choose(session_id, index) if self.poisoner else None
        if poison is not None:
            message.body = poison.render(index, session_id)
            message.poison, message.expect = poison.name, poison.expect
            message.claims = index - 1 if poison.claims_previous else None
        if index == -1:
            session.transcript = message
        else:
            session.messages.append(message)
        if self._track_presence(session, type, member):
            self._changed(session, "ParticipantsUpdated")
        self._truth.append(message)
        if self._truth_file is not None:
            self._truth_file.write(orjson.dumps(message.truth_record()) + b"\n")
        if self.observer is not None:
            self.observer.message_added(session, message)
        return index

    def end_session(self, session_id: str, *, transcript: bool = True) -> None:
        """Mark a session Completed (no participants) and, by default, add TranscriptSaveDone."""
        session = self.sessions[session_id]
        # Participants first, so the StatusChange notification shows the session as it ends.
        had_participants = bool(session.participants)
        session.participants.clear()
        if session.state != "Completed":
            self.set_state(session, "Completed")
        elif had_participants:
            self._changed(session, "ParticipantsUpdated")
        if transcript and session.transcript is None:
            self.append_message(session_id, "TranscriptSaveDone", sender="External")

    def remove_session(self, session_id: str) -> None:
        """Forget a session: it leaves the list and later reads answer statusCode 6.

        No notification: GWS documents none for a session leaving the list.
        """
        session = self.sessions.pop(session_id)
        del self._by_account[session.account][session_id]
        if self.poisoner is not None:
            self.poisoner.forget(session_id)

    def set_state(self, session: Session, state: str) -> None:
        """Change a session's state (capabilities follow from it); the same state is no change."""
        if session.state == state:
            return
        session.state = state
        self._changed(session, "StatusChange")

    def update_properties(self, session: Session) -> None:
        """Record that the caller changed the session's `userData`."""
        self._changed(session, "PropertiesUpdated")

    def move_session(self, session: Session, account: str) -> None:
        """Hand a session to another account (a transfer to a named agent)."""
        previous = session.account
        del self._by_account[previous][session.id]
        session.account = account
        self._by_account[account][session.id] = session
        session.agent = Participant(
            "Agent", self.accounts[account].first_name, make_participant_id(self._rng)
        )
        session.changed()
        if self.observer is not None:
            self.observer.session_left(session, previous)
        self._changed(session, "StatusChange")

    def new_agent(self, nickname: str) -> Participant:
        """A fresh agent participant (an invitee or a consultant)."""
        return Participant("Agent", nickname, make_participant_id(self._rng))

    def next_reference_id(self) -> int:
        """A new `referenceId` for an operation reply."""
        self._serial += 1
        return self._serial

    def session_for(self, account: str, session_id: str) -> Session | None:
        """The session if it exists and belongs to `account`."""
        return self._by_account.get(account, {}).get(session_id)

    def listed_sessions(self, account: str, now: float) -> Iterator[Session]:
        """The account's sessions as its list shows them at monotonic time `now`."""
        for session in self._by_account.get(account, {}).values():
            if session.hidden_until <= now:
                yield session

    def session_json(self, session: Session) -> bytes:
        """The session's wire form, cached until it changes."""
        if session.body is None:
            session.body = compact(orjson.dumps(self.session_dict(session)))
        return session.body

    def session_dict(self, session: Session) -> dict[str, Any]:
        """The session resource as a dict (for field selection)."""
        return {
            "id": session.id,
            "uri": f"{self.base_url}/api/v2/smssessions/{session.id}",
            "path": f"/smssessions/{session.id}",
            "state": session.state,
            "capabilities": list(session.capabilities()),
            "participants": [member.to_json() for member in session.participants],
            "userData": session.user_data,
        }

    def message_count(self) -> int:
        """How many messages were created so far (TranscriptSaveDone included)."""
        return len(self._truth)

    def truth(self) -> list[dict[str, Any]]:
        """Every message ever created, in creation order, as truth records."""
        return [message.truth_record() for message in self._truth]

    def _changed(self, session: Session, change: str) -> None:
        session.changed()
        if self.observer is not None:
            self.observer.session_changed(session, change)

    def _resolve_sender(self, session: Session, sender: str | Participant) -> Participant:
        if isinstance(sender, Participant):
            return sender
        if sender == "Customer":
            return session.customer
        if sender == "Agent":
            return session.agent
        if sender == "External":
            if session.system is None:
                session.system = Participant("External", "system", make_participant_id(self._rng))
            return session.system
        raise ValueError(f"unknown sender {sender!r}")

    @staticmethod
    def _track_presence(session: Session, type: str, member: Participant) -> bool:
        """Update `participants` for a join or leave; whether they changed."""
        if type in ("ParticipantJoined", "ParticipantRejoined"):
            if member.type != "External" and member not in session.participants:
                session.participants.append(member)
                return True
        elif type == "ParticipantLeft" and member in session.participants:
            session.participants.remove(member)
            return True
        return False
