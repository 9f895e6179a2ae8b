"""Supervisor monitoring (team mode): who monitors whom, and the views it gives supervisors.

Documented (team notes B.1, gws-api.md §1.2): a supervisor asks to `Monitor`, `Coach` or
`BargeIn` an agent for `AllChats` or the `NextChat`; from then on, each session the agent
takes also reaches the supervisor, sessions already running do not; `Intrude` joins one
running session of a monitored agent, the supervisor seeing it `Invited` first; monitoring
ends on `CancelSupervisorMonitoring` or logout; a completed or queued session shows `Revoked`
to the supervisor; a supervisor's `Leave` ends only its own part.

The supervisor's view sits beside the agents' (`role` `supervisor`) and never handles the
session. Its agent participant carries the mode's visibility: its join and leave are seen by
`Supervisors` (Monitor), `Agents` (Coach) or `All` (BargeIn), and it is listed in
`participants` only to the views that may see it. The log stays one log: every viewer reads
every entry, as before.

Decisions where the docs are silent: a session reaches a monitoring supervisor when one of
its monitored agents gets a Chatting view of it (a new session, a transfer, a pick-up, a
conference or consultation, or an Invited session Accepted), unless the supervisor is in it
already; the supervisor then chats at once, or with `accept` sees it `Invited` until it
Accepts (both readings of an undocumented point); `NextChat` is used up by the first session
it gives; re-issuing Monitor for a monitored agent is accepted (the new request replaces the
old) or, with `repeat` `"error"`, refused with statusCode 2, monitoring going on unchanged.
A queued session shows the supervisor's leave before its `Revoked`; a completed one none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gws_simulator.accounts import Account, find_user
from gws_simulator.sessions import SUPERVISOR_ROLE, Session, View

if TYPE_CHECKING:
    from gws_simulator.world import World

# Each mode's visibility: who sees the supervisor join, leave and take part.
MODES = {"Monitor": "Supervisors", "Coach": "Agents", "BargeIn": "All"}
SCOPES = ("AllChats", "NextChat")
REPEATS = ("ok", "error")


@dataclass(frozen=True, slots=True)
class Watch:
    """One supervisor's monitoring of one agent: its mode, its scope and the nickname asked."""

    mode: str
    scope: str = "AllChats"
    nickname: str | None = None


class SupervisionError(Exception):
    """Raised when a supervisor request is refused; `status_code` is the GWS statusCode."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class Supervision:
    """The monitoring of a `World`: supervisors' watches and the views they open.

    `accept`: a monitored session reaches the supervisor `Invited` (it must Accept) rather
    than Chatting. `repeat`: `"ok"` or `"error"`, the answer to Monitor for an agent already
    monitored.
    """

    def __init__(self, world: World, *, accept: bool = False, repeat: str = "ok") -> None:
        if repeat not in REPEATS:
            raise ValueError(f"monitor_repeat must be one of {REPEATS}, not {repeat!r}")
        self._world = world
        self.accept = accept
        self.repeat = repeat
        # Supervisor account -> monitored agent account -> its watch, in order of Monitor.
        self._watches: dict[str, dict[str, Watch]] = {}

    def monitoring(self, supervisor: str) -> dict[str, str]:
        """Agent user id -> mode (`Monitor`, `Coach` or `BargeIn`) that `supervisor` monitors."""
        accounts = self._world.accounts
        watches = self._watches.get(supervisor, {})
        return {accounts[agent].user_id: watch.mode for agent, watch in watches.items()}

    def watches(self, supervisor: str) -> dict[str, Watch]:
        """Agent account -> watch, for each agent `supervisor` monitors."""
        return dict(self._watches.get(supervisor, {}))

    def target(self, caller: Account, user: str) -> Account:
        """The agent a supervisor request of `caller` names by `user` (its id or name).

        statusCode 5 when the caller is no supervisor, 6 for an unknown user, 3 when the
        user is not an agent (a supervisor, the caller included).
        """
        if not caller.is_supervisor:
            raise SupervisionError(5, f"User {caller.username} has no supervisor permission")
        account = find_user(self._world.accounts, user)
        if account is None:
            raise SupervisionError(6, f"User {user} not found")
        if not account.is_agent:
            raise SupervisionError(3, f"User {account.username} is not an agent")
        return account

    def monitor(self, supervisor: str, agent: str, watch: Watch) -> None:
        """Start `supervisor`'s monitoring of `agent` (its next sessions, not the current)."""
        watches = self._watches.setdefault(supervisor, {})
        if agent in watches and self.repeat == "error":
            raise SupervisionError(2, f"{agent} is already monitored by {supervisor}")
        watches[agent] = watch

    def cancel(self, supervisor: str, agent: str) -> None:
        """End `supervisor`'s monitoring of `agent`; the sessions it is in go on."""
        watches = self._watches.get(supervisor, {})
        if watches.pop(agent, None) is None:
            raise SupervisionError(2, f"{agent} is not monitored by {supervisor}")

    def cancel_all(self, account: str) -> int:
        """End every monitoring of `account` (its HTTP session ended); how many ended."""
        return len(self._watches.pop(account, {}))

    def intrude(self, supervisor: str, agent: str, session_id: str, mode: str | None) -> View:
        """Join `agent`'s running session `session_id`: a new Invited view for `supervisor`.

        The mode defaults to the monitoring's (statusCode 1 without one); the agent must be
        monitored (3), the session known to the agent (6), Chatting there and not joined yet
        by the supervisor (2).
        """
        watch = self._watches.get(supervisor, {}).get(agent)
        if mode is None:
            if watch is None:
                raise SupervisionError(1, "Missing parameter: supervisorVisibilityMode")
            mode = watch.mode
        if mode not in MODES:
            raise SupervisionError(10, f"Invalid parameter: supervisorVisibilityMode {mode!r}")
        if watch is None:
            raise SupervisionError(3, f"{agent} is not monitored by {supervisor}")
        session = self._world.sessions.get(session_id)
        agent_view = session.views.get(agent) if session is not None else None
        if session is None or agent_view is None:
            raise SupervisionError(6, f"SMS session {session_id} of {agent} not found")
        if agent_view.state != "Chatting" or session.queued:
            raise SupervisionError(2, f"SMS session {session_id} is not active with {agent}")
        current = session.views.get(supervisor)
        if current is not None and current.is_open():
            raise SupervisionError(2, f"{supervisor} is in SMS session {session_id} already")
        return self._give(session, supervisor, mode, watch.nickname, join=False)

    def agent_arrived(self, session: Session, view: View) -> None:
        """`view`'s account is now chatting in `session`: give it to who monitors that account.

        Called after the agent's own join, so the supervisor's join follows it in the log.
        """
        if view.role == SUPERVISOR_ROLE or view.state != "Chatting":
            return
        for supervisor, watches in self._watches.items():
            watch = watches.get(view.account)
            if watch is None:
                continue
            current = session.views.get(supervisor)
            if current is not None and current.is_open():
                continue
            if watch.scope == "NextChat":
                del watches[view.account]
            self._give(session, supervisor, watch.mode, watch.nickname, join=not self.accept)

    def leave(self, session: Session, view: View) -> None:
        """The supervisor leaves: its `ParticipantLeft` if it had joined; its view Completed."""
        self._leaves(session, view)
        self._world.set_view_state(session, view, "Completed")

    def drop(self, session: Session, view: View) -> None:
        """The session is queued: the supervisor leaves and its view shows Revoked."""
        self._leaves(session, view)
        self._world.revoke_view(session, view)

    def _give(
        self, session: Session, supervisor: str, mode: str, nickname: str | None, *, join: bool
    ) -> View:
        """A new view of `session` for `supervisor`, Chatting and joined, or Invited."""
        account = self._world.accounts[supervisor]
        member = self._world.new_agent(nickname or account.first_name, account.user_id)
        member.visibility = MODES[mode]
        state = "Chatting" if join else "Invited"
        view = self._world.open_view(session, supervisor, state, member, role=SUPERVISOR_ROLE)
        if join:
            self._world.append_message(
                session.id, "ParticipantJoined", visibility=member.visibility, sender=member
            )
        return view

    def _leaves(self, session: Session, view: View) -> None:
        member = view.agent
        if member in session.supervisors:
            self._world.append_message(
                session.id, "ParticipantLeft", visibility=member.visibility or "All", sender=member
            )
