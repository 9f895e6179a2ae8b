"""Agent operations on an SMS session (`POST /api/v2/me/smssessions/{id}`), gws-api.md §1.2-1.3.

Each operation acts for the caller's view of the session. It is checked against that view's
capabilities (statusCode 2), then its parameters (statusCode 1 when missing, 10 when of the
wrong type or naming a target that cannot take the session), and only then changes the
world, so a refused operation modifies nothing. Transfers, queues, conferences and leaves
are `handoffs.py`'s moves. A supervisor's view allows only Accept and Leave; its join and
leave carry its mode's visibility (`supervision.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gws_simulator import handoffs
from gws_simulator.handoffs import HandoffError
from gws_simulator.sessions import Session, View
from gws_simulator.wire import status_body
from gws_simulator.world import World

# Spellings printed on the operation pages that differ from the capability names.
ALIASES = {
    "SendStopTypingToAgentNotification": "SendStopTypingToAgentsNotification",
    "SetInFocus": "InFocus",
}
_HTTP_STATUS = {0: 200, 1: 400, 2: 400, 6: 404, 10: 400}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The reply to an operation: statusCode, statusMessage and an optional referenceId."""

    status_code: int
    message: str | None = None
    reference_id: int | None = None

    @property
    def http_status(self) -> int:
        """The HTTP status sent with this statusCode."""
        return _HTTP_STATUS.get(self.status_code, 400)

    def body(self) -> bytes:
        """The JSON reply body."""
        if self.reference_id is not None:
            return b'{"statusCode":0,"referenceId":%d}' % self.reference_id
        return status_body(self.status_code, self.message)


OK = Outcome(0)


class ParameterError(Exception):
    """Raised when an operation parameter is missing (code 1) or malformed (code 10)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


Operation = Callable[[World, Session, View, dict[str, Any]], Outcome]


def perform(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    """Validate and carry out one operation request of `view`'s account on `session`."""
    name = payload.get("operationName")
    if not isinstance(name, str) or not name:
        return Outcome(1, "Missing parameter: operationName")
    canonical = ALIASES.get(name, name)
    operation = _OPERATIONS.get(canonical)
    if operation is None or canonical not in session.capabilities(view):
        return Outcome(2, f"Operation {name} is not valid in state {view.state}")
    try:
        return operation(world, session, view, payload)
    except ParameterError as exc:
        return Outcome(exc.status_code, str(exc))
    except HandoffError as exc:
        return Outcome(10, f"Invalid parameter: {exc}")


def _string(payload: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise ParameterError(1, f"Missing parameter: {key}")
        return None
    if not isinstance(value, str):
        raise ParameterError(10, f"Invalid parameter: {key} must be a string")
    return value


def _send(type: str, key: str | None, visibility: str) -> Operation:
    """An operation that appends one agent message, its words taken from `key`.

    A consultant's messages are visible to agents only, whatever the operation.
    """
    field = {"text": "text", "url": "url", "noticeText": "notice_text"}

    def operation(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
        words = {field[key]: _string(payload, key)} if key else {}
        shown = "Agents" if view.role == "consult" else visibility
        world.append_message(session.id, type, visibility=shown, sender=view.agent, **words)
        return OK

    return operation


def _accept(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    nickname = _string(payload, "nickname", required=False)
    if nickname:
        view.agent.nickname = nickname
    world.set_view_state(session, view, "Chatting")
    visibility = view.agent.visibility or "All"
    world.append_message(session.id, "ParticipantJoined", visibility=visibility, sender=view.agent)
    world.supervision.agent_arrived(session, view)
    return OK


def _reject(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    world.end_session(session.id, transcript=False)
    return OK


def _complete(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    _string(payload, "queueName", required=False)
    handoffs.agent_leaves(world, session, view)
    world.end_session(session.id)
    return OK


def _leave(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    handoffs.leave(world, session, view)
    return OK


def _in_focus(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    return OK


def _target_account(world: World, payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The account a `targetUri`/`targetPath` names (by user id or user name), if any.

    `""` when the target names no configured account (an agent outside the simulation).
    """
    for key in keys:
        target = _string(payload, key, required=False)
        if target:
            last = target.rstrip("/").rsplit("/", 1)[-1]
            for account in world.accounts.values():
                if last in (account.user_id, account.username):
                    return account.username
            return ""
    return None


def _transfer(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
    if payload.get("text") is None and ("messageType" in payload or "treatAs" in payload):
        raise ParameterError(1, "Missing parameter: text")
    target = _target_account(world, payload, ("targetUri", "targetPath"))
    queue = _string(payload, "queueName", required=False)
    if target is None and queue is None:
        raise ParameterError(1, "Missing parameter: targetUri, targetPath or queueName")
    if target is not None:
        if not target:
            raise ParameterError(10, "Invalid parameter: transfer target")
        handoffs.transfer(world, session, view, target)
    else:
        handoffs.queue(world, session)
    return OK


def _add_agent(role: str) -> Operation:
    """Invite (conference, visible to all) or Consult (visible to agents only).

    A configured account gets a view of its own; any other target joins as an agent no
    account sees through.
    """

    def operation(world: World, session: Session, view: View, payload: dict[str, Any]) -> Outcome:
        target = _target_account(world, payload, ("targetUri", "targetPath", "userUri"))
        if target is None:
            raise ParameterError(1, "Missing parameter: targetUri or targetPath")
        if target:
            handoffs.add_agent(world, session, target, role)
        else:
            member = world.new_agent("Queue agent")
            visibility = handoffs.ROLE_VISIBILITY[role]
            world.append_message(
                session.id, "ParticipantJoined", visibility=visibility, sender=member
            )
        return Outcome(0, reference_id=world.next_reference_id())

    return operation


def _user_data_object(payload: dict[str, Any]) -> dict[str, Any]:
    value = payload.get("userData")
    if value is None:
        raise ParameterError(1, "Missing parameter: userData")
    if not isinstance(value, dict):
        raise ParameterError(10, "Invalid parameter: userData must be an object")
    return value


def _update_user_data(
    world: World, session: Session, view: View, payload: dict[str, Any]
) -> Outcome:
    # Attach and Update both merge: a JSON object cannot hold the duplicate keys Attach may
    # create on voice calls.
    session.user_data.update(_user_data_object(payload))
    world.update_properties(session)
    return OK


def _delete_user_data(
    world: World, session: Session, view: View, payload: dict[str, Any]
) -> Outcome:
    keys = payload.get("keys", payload.get("key"))
    if keys is None:
        raise ParameterError(1, "Missing parameter: keys")
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ParameterError(10, "Invalid parameter: keys must be a list of strings")
    for key in keys:
        session.user_data.pop(key, None)
    world.update_properties(session)
    return OK


def _set_disposition(
    world: World, session: Session, view: View, payload: dict[str, Any]
) -> Outcome:
    disposition = _string(payload, "disposition")
    key = _string(payload, "dispositionKey", required=False) or "DispositionCode"
    session.user_data[key] = disposition
    world.update_properties(session)
    return OK


_OPERATIONS: dict[str, Operation] = {
    "Accept": _accept,
    "Reject": _reject,
    "SendMessage": _send("Text", "text", "All"),
    "SendUrl": _send("PushUrl", "url", "All"),
    "SendStartTypingNotification": _send("TypingStarted", None, "All"),
    "SendStopTypingNotification": _send("TypingStopped", None, "All"),
    "SendToAgents": _send("Text", "text", "Agents"),
    "SendStartTypingToAgentsNotification": _send("TypingStarted", None, "Agents"),
    "SendStopTypingToAgentsNotification": _send("TypingStopped", None, "Agents"),
    "SendCustomNotice": _send("CustomNotice", "noticeText", "All"),
    "SendCustomNoticeToAgents": _send("CustomNotice", "noticeText", "Agents"),
    "Complete": _complete,
    "Leave": _leave,
    "LeaveAndComplete": _complete,
    "InFocus": _in_focus,
    "Transfer": _transfer,
    "Invite": _add_agent("conference"),
    "Consult": _add_agent("consult"),
    "AttachUserData": _update_user_data,
    "UpdateUserData": _update_user_data,
    "DeleteUserData": _delete_user_data,
    "SetDisposition": _set_disposition,
}
