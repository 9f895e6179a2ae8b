"""The simulator's in-memory world: accounts, SMS sessions, their views and the truth log.

Everything here is synchronous and runs on the event loop; HTTP handlers, the scenario driver
and the admin API all change the world through these methods only (`handoffs.py` composes
them into transfers, queues and conferences; `supervision.py` gives supervisors their views).
The truth log records every message created, in creation order, independent of what any
client was served. An optional `SessionObserver` hears of every change as it happens (the GWS
notifications). Sessions removed from every list stay in `interactions`, the Interaction
History.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from gws_simulator.accounts import Account, make_accounts
from gws_simulator.hostile import Hostility, Poisoner
from gws_simulator.sessions import STATES, SUPERVISOR_ROLE, Session, View
from gws_simulator.supervision import Supervision
from gws_simulator.wire import Message, Participant, compact, render_message

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
_ID_CHARS = string.digits + string.ascii_uppercase


class SessionObserver(Protocol):
    """Told, synchronously and in order, about every change of an SMS session."""

    def session_changed(self, session: Session, change: str, visibility: str = "All") -> None:
        """`change` (`ParticipantsUpdated` or `PropertiesUpdated`) concerns every viewer.

        A supervisor's join or leave concerns only the views that see its `visibility`.
        """

    def view_changed(self, session: Session, view: View) -> None:
        """One account's view changed state (a `StatusChange`), or was opened."""

    def message_added(self, session: Session, message: Message) -> None:
        """A message (TranscriptSaveDone included) joined the session's log."""


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
    """Accounts, sessions, their views and the truth log of one simulator run.

    `revoked_s` is how long a Revoked view stays listed; with `gone_after_leave` a view
    vanishes the moment it is revoked or completed. Both go by the `monotonic` clock.
    `supervisors` adds accounts `supervisor1..N`; `supervision` holds their monitoring
    (`monitor_accept`, `monitor_repeat`: see `Supervision`).
    """

    def __init__(
        self,
        *,
        agents: int,
        seed: int,
        supervisors: int = 0,
        monitor_accept: bool = False,
        monitor_repeat: str = "ok",
        quirks: bool = False,
        hostile: bool | Hostility = False,
        utc_offset_minutes: int | None = None,
        truth_path: Path | None = None,
        revoked_s: float = 2.0,
        gone_after_leave: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = "http://127.0.0.1"
        self.accounts: dict[str, Account] = make_accounts(agents, supervisors)
        self.sessions: dict[str, Session] = {}
        self.interactions: dict[str, Session] = {}
        self._by_account: dict[str, dict[str, Session]] = {name: {} for name in self.accounts}
        self._rng = random.Random(f"world/{seed}")
        self._quirks = random.Random(f"quirks/{seed}") if quirks else None
        self.utc_offset_minutes = utc_offset_minutes
        self.revoked_s = revoked_s
        self.gone_after_leave = gone_after_leave
        self._clock = clock
        self._monotonic = monotonic
        self._serial = 0
        self._truth: list[Message] = []
        self._truth_file: IO[bytes] | None = truth_path.open("wb") if truth_path else None
        self.quirks = quirks
        hostility = (Hostility() if hostile else None) if isinstance(hostile, bool) else hostile
        self.poisoner = Poisoner(seed, hostility) if hostility is not None else None
        self.observer: SessionObserver | None = None
        self.supervision = Supervision(self, accept=monitor_accept, repeat=monitor_repeat)

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
        if not owner.is_agent:
            raise ValueError(f"{account} is not an agent")
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        if session_id is None:
            self._serial += 1
            session_id = make_session_id(self._rng, self._serial, marker="b")
        if session_id in self.interactions:
            raise ValueError(f"session {session_id} exists")
        customer = customer or Participant(
            "Customer", f"Customer{self._serial}", make_participant_id(self._rng)
        )
        agent = agent or self.new_agent(owner.first_name, owner.user_id)
        members = [customer] if state == "Invited" else [agent, customer]
        if state == "Completed":
            members = []
        now_ms = self._now_ms()
        session = Session(session_id, account, agent, customer, members, user_data or {})
        session.started_ms = now_ms
        if state == "Completed":
            session.ended, session.ended_ms = True, now_ms
        self.sessions[session_id] = session
        self.interactions[session_id] = session
        view = self.open_view(session, account, state, agent)
        self.supervision.agent_arrived(session, view)
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

        `sender` is a role (`Customer`, `Agent` for the handling agent, `External` for the
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
            self._now_ms(),
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
            self._changed(session, "ParticipantsUpdated", member.visibility or "All")
        self._truth.append(message)
        if self._truth_file is not None:
            self._truth_file.write(orjson.dumps(message.truth_record()) + b"\n")
        if self.observer is not None:
            self.observer.message_added(session, message)
        return index

    def end_session(self, session_id: str, *, transcript: bool = True) -> None:
        """End a session for everyone: every open view Completed (a supervisor's Revoked).

        No participants are left; TranscriptSaveDone follows unless `transcript` is false.
        """
        session = self.sessions[session_id]
        # Participants first, so the StatusChange notifications show the session as it ends.
        had_participants = bool(session.participants)
        session.participants.clear()
        session.supervisors.clear()
        session.changed()
        session.queued = False
        if not session.ended:
            session.ended, session.ended_ms = True, self._now_ms()
        open_views = session.open_views()
        for view in open_views:
            if view.role == SUPERVISOR_ROLE:
                self.revoke_view(session, view)
            else:
                self.set_view_state(session, view, "Completed")
        if not open_views and had_participants:
            self._changed(session, "ParticipantsUpdated")
        if transcript and session.transcript is None:
            self.append_message(session_id, "TranscriptSaveDone", sender="External")

    def remove_session(self, session_id: str) -> None:
        """Take a session off every list: later reads answer statusCode 6.

        It stays in `interactions` (the Interaction History). No notification: GWS documents
        none for a session leaving the list.
        """
        session = self.sessions.pop(session_id)
        for account in session.views:
            self._by_account[account].pop(session_id, None)
        session.views.clear()
        if self.poisoner is not None:
            self.poisoner.forget(session_id)

    def open_view(
        self,
        session: Session,
        account: str,
        state: str = "Chatting",
        agent: Participant | None = None,
        role: str = "owner",
    ) -> View:
        """Give `account` a (new) view of `session`, replacing any old one; tell the account."""
        agent = agent or self.new_agent(
            self.accounts[account].first_name, self.accounts[account].user_id
        )
        view = View(account, state, agent, role)
        session.views.pop(account, None)
        session.views[account] = view
        if account not in session.viewers:
            session.viewers.append(account)
        listed = self._by_account[account]
        listed.pop(session.id, None)
        listed[session.id] = session
        self._view_changed(session, view)
        return view

    def set_view_state(self, session: Session, view: View, state: str) -> None:
        """Change one view's state; a Completed view vanishes at once with `gone_after_leave`."""
        if view.state == state:
            return
        view.state = state
        if state == "Completed" and self.gone_after_leave:
            view.gone_at = self._monotonic()
        self._view_changed(session, view)

    def revoke_view(self, session: Session, view: View) -> None:
        """Show `view` Revoked for `revoked_s` (no time with `gone_after_leave`), then drop it."""
        view.state = "Revoked"
        view.gone_at = self._monotonic() + (0.0 if self.gone_after_leave else self.revoked_s)
        self._view_changed(session, view)

    def hand_to(self, session: Session, view: View) -> None:
        """Make `view`'s account the one handling the session (its agent speaks as `Agent`)."""
        session.account, session.agent = view.account, view.agent
        session.changed()

    def update_properties(self, session: Session) -> None:
        """Record that the caller changed the session's `userData`."""
        self._changed(session, "PropertiesUpdated")

    def new_agent(self, nickname: str, user_id: str | None = None) -> Participant:
        """A fresh agent participant (a new owner, an invitee or a consultant; a GWS user's id)."""
        return Participant("Agent", nickname, make_participant_id(self._rng), user_id=user_id)

    def next_reference_id(self) -> int:
        """A new `referenceId` for an operation reply."""
        self._serial += 1
        return self._serial

    def find(self, account: str, session_id: str) -> tuple[Session, View] | None:
        """The session and `account`'s view of it, while that view is in the account's list."""
        session = self._by_account.get(account, {}).get(session_id)
        if session is None:
            return None
        view = self._visible_view(session, account, self._monotonic())
        return None if view is None else (session, view)

    def listed_sessions(self, account: str, now: float) -> Iterator[tuple[Session, View]]:
        """The account's list at monotonic time `now`: each session with the account's view."""
        for session in list(self._by_account.get(account, {}).values()):
            view = self._visible_view(session, account, now)
            if view is not None and view.hidden_until <= now:
                yield session, view

    def audience(self, session: Session) -> list[View]:
        """The views that hear of the session's changes: listed, and not Revoked."""
        now = self._monotonic()
        return [
            view for view in session.views.values() if view.visible(now) and view.state != "Revoked"
        ]

    def session_json(self, session: Session, view: View | None = None) -> bytes:
        """The session's wire form as `view` (default: the handling account's) shows it."""
        view = view or session.views.get(session.account)
        if view is None:
            return compact(orjson.dumps(self.session_dict(session)))
        if view.body is None:
            view.body = compact(orjson.dumps(self.session_dict(session, view)))
        return view.body

    def session_dict(self, session: Session, view: View | None = None) -> dict[str, Any]:
        """The session resource as a dict (for field selection), as `view` shows it."""
        view = view or session.views.get(session.account)
        state = view.state if view is not None else session.state
        members = [] if state in ("Completed", "Revoked") else session.participants
        if view is not None and members:
            members = session.members(view)
        return {
            "id": session.id,
            "uri": f"{self.base_url}/api/v2/smssessions/{session.id}",
            "path": f"/smssessions/{session.id}",
            "state": state,
            "capabilities": list(session.capabilities(view)) if view is not None else [],
            "participants": [member.to_json() for member in members],
            "userData": session.user_data,
        }

    def monitoring(self, supervisor: str) -> dict[str, str]:
        """Agent user id -> mode, for each agent `supervisor` (an account name) monitors."""
        return self.supervision.monitoring(supervisor)

    def message_count(self) -> int:
        """How many messages were created so far (TranscriptSaveDone included)."""
        return len(self._truth)

    def truth(self) -> list[dict[str, Any]]:
        """Every message ever created, in creation order, as truth records."""
        return [message.truth_record() for message in self._truth]

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _visible_view(self, session: Session, account: str, now: float) -> View | None:
        """`account`'s view if still listed; a view past its time is dropped here."""
        view = session.views.get(account)
        if view is not None and view.visible(now):
            return view
        if view is not None:
            del session.views[account]
        self._by_account[account].pop(session.id, None)
        return None

    def _changed(self, session: Session, change: str, visibility: str = "All") -> None:
        session.changed()
        if self.observer is not None:
            self.observer.session_changed(session, change, visibility)

    def _view_changed(self, session: Session, view: View) -> None:
        view.body = None
        if self.observer is not None:
            self.observer.view_changed(session, view)

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
        """Update `participants` (`supervisors`) for a join or leave; whether they changed."""
        present = session.participants if member.visibility is None else session.supervisors
        if type in ("ParticipantJoined", "ParticipantRejoined"):
            if member.type != "External" and member not in present:
                present.append(member)
                return True
        elif type == "ParticipantLeft" and member in present:
            present.remove(member)
            return True
        return False
