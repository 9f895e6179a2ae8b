"""Contact-centre moves on a session: transfer, queue and pick-up, conference and consultation.

Agent operations, the admin routes and the scenario driver all move sessions through these
functions, so they behave alike. Each checks its target first and raises `HandoffError`
before changing anything. What each account then sees:

- transfer to an account: the old agent's `ParticipantLeft`, the old view `Revoked` (listed
  for `revoked_s`, then gone), a new Chatting view for the target with its agent's
  `ParticipantJoined`; the whole log stays readable to the target. A guest already chatting
  in the session takes it over instead, without a second join.
- queue: every agent leaves, every open view is revoked, and the session waits in no list
  until `pick_up` gives it to an account as a new Chatting view.
- conference (`Invite`) and consultation (`Consult`): the target gets a Chatting view beside
  the others; a consultant's join, messages and leave are visible to agents only.
- leave: in a conference the leaver's view is Completed and the others go on; alone, the view
  is LeftChat (the chat is over for the customer, the agent may still set data).

Supervisors are never a target. An agent chatting after a move (a transfer's target, a
pick-up, a guest) brings in whoever monitors it (`Supervision.agent_arrived`); a queue drops
every supervisor too, and a supervisor's leave is its own (`Supervision.leave`).
"""

from __future__ import annotations

from gws_simulator.sessions import SUPERVISOR_ROLE, Session, View
from gws_simulator.world import World

ROLE_VISIBILITY = {"owner": "All", "conference": "All", "consult": "Agents"}


class HandoffError(ValueError):
    """Raised when a move's target cannot take the session (unknown, or already in it)."""


def transfer(world: World, session: Session, view: View, account: str) -> View:
    """`view`'s agent hands the session to `account`; returns the target's view.

    A conference guest or consultant already chatting in the session takes it over without
    joining again (the docs' consult-then-transfer).
    """
    guest = session.views.get(account)
    if account == view.account or guest is None or guest.state != "Chatting":
        _check_target(world, session, account)
    agent_leaves(world, session, view)
    world.revoke_view(session, view)
    if guest is not None and guest.state == "Chatting":
        guest.role = "owner"
        world.hand_to(session, guest)
        return guest
    target = world.open_view(session, account)
    world.hand_to(session, target)
    world.append_message(session.id, "ParticipantJoined", sender=target.agent)
    world.supervision.agent_arrived(session, target)
    return target


def queue(world: World, session: Session) -> None:
    """Transfer to a queue: every agent leaves, every open view is revoked; the session waits."""
    for view in session.open_views():
        if view.role == SUPERVISOR_ROLE:
            world.supervision.drop(session, view)
            continue
        agent_leaves(world, session, view)
        world.revoke_view(session, view)
    session.queued = True


def pick_up(world: World, session: Session, account: str) -> View:
    """Give a queued session to `account` (which may have had it before); returns its view."""
    if not session.queued:
        raise HandoffError(f"session {session.id} is not queued")
    _check_target(world, session, account)
    session.queued = False
    view = world.open_view(session, account)
    world.hand_to(session, view)
    world.append_message(session.id, "ParticipantJoined", sender=view.agent)
    world.supervision.agent_arrived(session, view)
    return view


def add_agent(world: World, session: Session, account: str, role: str) -> View:
    """Bring `account` in beside the others, as `conference` or `consult`; returns its view."""
    _check_target(world, session, account)
    view = world.open_view(session, account, role=role)
    world.append_message(
        session.id, "ParticipantJoined", visibility=ROLE_VISIBILITY[role], sender=view.agent
    )
    world.supervision.agent_arrived(session, view)
    return view


def leave(world: World, session: Session, view: View) -> None:
    """`view`'s agent leaves a Chatting session (anything else: no change)."""
    if view.role == SUPERVISOR_ROLE:
        if view.is_open():
            world.supervision.leave(session, view)
        return
    if view.state != "Chatting":
        return
    conference = session.in_conference()
    agent_leaves(world, session, view)
    if not conference:
        world.set_view_state(session, view, "LeftChat")
        return
    world.set_view_state(session, view, "Completed")
    if view.account == session.account:
        # The chat goes on with the others; one of them now handles it.
        chatting = [
            other
            for other in session.open_views()
            if other.state == "Chatting" and other.role != SUPERVISOR_ROLE
        ]
        if chatting:
            world.hand_to(session, chatting[0])


def agent_leaves(world: World, session: Session, view: View) -> None:
    """Append `view`'s agent's `ParticipantLeft` if that agent is still in the session."""
    if view.agent in session.participants:
        world.append_message(
            session.id,
            "ParticipantLeft",
            visibility=ROLE_VISIBILITY[view.role],
            sender=view.agent,
        )


def _check_target(world: World, session: Session, account: str) -> None:
    if account not in world.accounts:
        raise HandoffError(f"unknown account {account!r}")
    if not world.accounts[account].is_agent:
        raise HandoffError(f"{account} is not an agent")
    current = session.views.get(account)
    if current is not None and current.is_open():
        raise HandoffError(f"{account} is already in session {session.id}")
