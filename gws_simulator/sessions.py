"""An SMS session and the views accounts have of it.

One session has one message log and one set of participants, and any number of views: the
entry an account sees in its list, with that account's state and agent. A transfer gives the
target a new view and revokes the old one; a conference or consultation adds a view beside
the handling agent's; a queued session has no open view at all. A view may outlive its use
for a while (`gone_at`): a Revoked view stays listed for `revoked_s`, then vanishes. A
supervisor's view (`supervision.py`) sits beside the agents' without ever handling the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gws_simulator.wire import Message, Participant

STATES = frozenset({"Invited", "Chatting", "LeftChat", "Completed"})
OPEN_STATES = frozenset({"Invited", "Chatting", "LeftChat"})

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
    "Revoked": (),
}
# A supervisor may only join (Accept) and leave; it cannot send (Monitor is silent) and the
# Switch* operations are not simulated.
_SUPERVISOR_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "Invited": ("Accept", "Leave"),
    "Chatting": ("Leave",),
}
SUPERVISOR_ROLE = "supervisor"
# Added while more than one agent is in the session (conference or consultation, §1.3).
_CONFERENCE_CAPABILITIES = (
    "SendToAgents",
    "SendStartTypingToAgentsNotification",
    "SendStopTypingToAgentsNotification",
    "SendCustomNoticeToAgents",
)


@dataclass(eq=False, slots=True)
class View:
    """What one account sees of a session: its state, its agent, and how long it stays.

    `role` is `owner` (the handling agent, by creation, transfer or pick-up), `conference`
    (invited), `consult` (consulted: its messages go to agents only) or `supervisor` (a
    supervisor's copy; its `agent` is the supervisor, with a `visibility`). `gone_at` is the
    monotonic time the view leaves the account's list (None: until the session is removed).
    """

    account: str
    state: str
    agent: Participant
    role: str = "owner"
    gone_at: float | None = None
    hidden_until: float = 0.0
    body: bytes | None = None

    def is_open(self) -> bool:
        """Whether the account still takes part (Invited, Chatting or LeftChat)."""
        return self.state in OPEN_STATES

    def visible(self, now: float) -> bool:
        """Whether the view is still in the account's list at monotonic time `now`."""
        return self.gone_at is None or now < self.gone_at

    def sees(self, visibility: str) -> bool:
        """Whether a participant of this `visibility` shows to this view's account."""
        return visibility != "Supervisors" or self.role == SUPERVISOR_ROLE


@dataclass(eq=False, slots=True)
class Session:
    """One SMS session: its log, participants and data, and every account's view of it.

    `account` is the account handling it now (or last); `agent` that account's agent.
    `viewers` names every account that ever had a view, in order of first view. Supervisors
    present are kept apart from `participants` (`supervisors`): they never make a conference.
    """

    id: str
    account: str
    agent: Participant
    customer: Participant
    participants: list[Participant]
    user_data: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    transcript: Message | None = None
    system: Participant | None = None
    views: dict[str, View] = field(default_factory=dict)
    viewers: list[str] = field(default_factory=list)
    queued: bool = False
    ended: bool = False
    started_ms: int = 0
    ended_ms: int | None = None
    supervisors: list[Participant] = field(default_factory=list)

    @property
    def state(self) -> str:
        """The handling account's view state; `Queued` while waiting in a queue."""
        if self.queued:
            return "Queued"
        view = self.views.get(self.account)
        return view.state if view is not None else "Completed"

    def in_conference(self) -> bool:
        """More than one agent present: a conference or a consultation."""
        return sum(1 for member in self.participants if member.type == "Agent") > 1

    def capabilities(self, view: View) -> tuple[str, ...]:
        """Operation names `view`'s account may use now."""
        if view.role == SUPERVISOR_ROLE:
            return _SUPERVISOR_CAPABILITIES.get(view.state, ())
        allowed = _CAPABILITIES[view.state]
        if view.state == "Chatting" and self.in_conference():
            return allowed + _CONFERENCE_CAPABILITIES
        return allowed

    def open_views(self) -> list[View]:
        """The views whose accounts still take part."""
        return [view for view in self.views.values() if view.is_open()]

    def members(self, view: View) -> list[Participant]:
        """`participants` as `view` lists them: with the supervisors it may see."""
        shown = [member for member in self.supervisors if view.sees(member.visibility or "All")]
        return self.participants + shown if shown else self.participants

    def changed(self) -> None:
        """Drop every view's cached wire form after a change of participants or data."""
        for view in self.views.values():
            view.body = None
