"""Interaction History (UCS) at `/api/v2/ucs/interactions` (gws-api.md §2.6, team notes B.3).

Both operations answer at once with `{"statusCode":0,"referenceId":N}`; the result follows
as a notification on `/v2/ucs/interactions` to the caller's subscribed clients:

- `POST /api/v2/ucs/interactions/{id}` `{"operationName":"GetInteractionContent"}` (`source`
  optional): `GetInteractionContentMessage` with `interaction` and `messages`, the whole log,
  each message the bytes `/messages` serves for it, TranscriptSaveDone included. Any account
  may read any session, one already removed from every list too; an unknown id gives
  `"errorMessage":"Interaction <id> not found"` and no content.
- `POST /api/v2/ucs/interactions` `{"operationName":"RetrieveAgentHistory","userId":...}`
  with optional `fromDate`/`toDate` (`yyyy-MM-dd`, inclusive, UTC):
  `GetInteractionsHistoryMessage` listing every interaction that user ever had a view of,
  started in the range, in order of start.

Decisions where the docs are silent: `state` is `Stopped` once the session ended, else
`InProcess` (`endDate` null); `typeId` is always `Inbound`; `contactId` is a stable id per
customer nickname; `ownerInformation` is the account handling the session last; an unknown
`userId` lists nothing. A missing `operationName` or `userId` answers statusCode 1, an unknown
operation 2, a malformed date 10. In quirks mode a message's `L` suffix is dropped, as in
every notification. The `ucs_late`, `ucs_missing` and `ucs_error` faults hit the
notification; the request faults hit the HTTP request as on every `/api/v2` route.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from gws_simulator.app import caller, outcome_response, read_payload
from gws_simulator.bayeux import Bayeux
from gws_simulator.faults import FaultInjector
from gws_simulator.operations import Outcome
from gws_simulator.sessions import Session
from gws_simulator.stats import Stats
from gws_simulator.wire import format_timestamp, without_long_suffix
from gws_simulator.world import World

UCS_CHANNEL = "/v2/ucs/interactions"
_CONTENT = b"GetInteractionContentMessage"
_HISTORY = b"GetInteractionsHistoryMessage"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class InteractionHistory:
    """The UCS routes: answers now, publishes the result (subject to the UCS faults)."""

    def __init__(self, world: World, bayeux: Bayeux, injector: FaultInjector, stats: Stats) -> None:
        self._world = world
        self._bayeux = bayeux
        self._injector = injector
        self._faults = stats.faults
        self._late: set[asyncio.TimerHandle] = set()

    async def get_content(self, request: web.Request) -> web.Response:
        """`POST /api/v2/ucs/interactions/{id}`: GetInteractionContent."""
        payload = await _operation_payload(request, "GetInteractionContent")
        if isinstance(payload, Outcome):
            return outcome_response(payload)
        interaction_id = request.match_info["interaction_id"]
        session = self._world.interactions.get(interaction_id)
        if session is None:
            content = orjson.dumps({"errorMessage": f"Interaction {interaction_id} not found"})
        else:
            content = self._content(session)
        return self._answer(_CONTENT, content)

    async def retrieve_agent_history(self, request: web.Request) -> web.Response:
        """`POST /api/v2/ucs/interactions`: RetrieveAgentHistory."""
        payload = await _operation_payload(request, "RetrieveAgentHistory")
        if isinstance(payload, Outcome):
            return outcome_response(payload)
        user_id = payload.get("userId")
        if user_id is None:
            return outcome_response(Outcome(1, "Missing parameter: userId"))
        try:
            first, last = _day(payload, "fromDate"), _day(payload, "toDate")
        except ValueError as exc:
            return outcome_response(Outcome(10, str(exc)))
        account = next(
            (
                a.username
                for a in self._world.accounts.values()
                if user_id in (a.user_id, a.username)
            ),
            None,
        )
        listed = [
            self._summary(session)
            for session in self._world.interactions.values()
            if account in session.viewers and _started_within(session, first, last)
        ]
        return self._answer(_HISTORY, orjson.dumps({"interactions": listed}))

    def cancel(self) -> None:
        """Drop the late answers not yet published (the server is shutting down)."""
        for handle in self._late:
            handle.cancel()
        self._late.clear()

    def _answer(self, message_type: bytes, content: bytes) -> web.Response:
        """Reply with a new referenceId; publish `content` (a JSON object's bytes) under it."""
        reference_id = self._world.next_reference_id()
        fault = self._injector.draw_ucs()
        if fault is not None:
            self._faults[fault] += 1
        if fault == "ucs_error":
            content = b'{"errorMessage":"Internal error"}'
        head = b'{"messageType":"%s","referenceId":%d' % (message_type, reference_id)
        # `content` is a non-empty object: its fields follow the head's after a comma.
        data = head + b"," + content[1:]
        account = caller().username
        if fault == "ucs_late":
            self._publish_later(account, data)
        elif fault != "ucs_missing":
            self._bayeux.publish(account, UCS_CHANNEL, data)
        return outcome_response(Outcome(0, reference_id=reference_id))

    def _publish_later(self, account: str, data: bytes) -> None:
        def publish() -> None:
            self._late.discard(handle)
            self._bayeux.publish(account, UCS_CHANNEL, data)

        delay_s = self._injector.rates.ucs_late_s
        handle = asyncio.get_running_loop().call_later(delay_s, publish)
        self._late.add(handle)

    def _content(self, session: Session) -> bytes:
        """`{"interaction":...,"messages":[...]}` with the messages as `/messages` serves them."""
        bodies = [message.body for message in session.messages]
        if session.transcript is not None:
            bodies.append(session.transcript.body)
        interaction = orjson.dumps(self._interaction(session))
        messages = b",".join(without_long_suffix(body) for body in bodies)
        return b'{"interaction":' + interaction + b',"messages":[' + messages + b"]}"

    def _interaction(self, session: Session) -> dict[str, Any]:
        """The `interaction` object of GetInteractionContentMessage."""
        customer = session.customer.nickname
        interaction = self._summary(session)
        owner = interaction.pop("ownerInformation")
        return {
            **interaction,
            "subject": None,
            "contactId": "0000" + hashlib.sha256(customer.encode()).hexdigest()[:12].upper(),
            "ownerInformation": owner,
        }

    def _summary(self, session: Session) -> dict[str, Any]:
        """An entry of GetInteractionsHistoryMessage's `interactions`."""
        offset = self._world.utc_offset_minutes
        owner = self._world.accounts[session.account]
        ended = session.ended_ms
        return {
            "id": session.id,
            "uri": f"{self._world.base_url}/api/v2/ucs/interactions/{session.id}",
            "path": f"/ucs/interactions/{session.id}",
            "mediaType": "smssession",
            "typeId": "Inbound",
            "state": "Stopped" if session.ended else "InProcess",
            "startDate": format_timestamp(session.started_ms, offset),
            "endDate": format_timestamp(ended, offset) if ended is not None else None,
            "ownerInformation": {
                "userName": owner.username,
                "firstName": owner.first_name,
                "lastName": owner.last_name,
                "id": owner.user_id,
            },
        }


async def _operation_payload(request: web.Request, expected: str) -> dict[str, Any] | Outcome:
    """The body of a request for operation `expected`, or the outcome refusing it."""
    payload = await read_payload(request)
    if isinstance(payload, Outcome):
        return payload
    name = payload.get("operationName")
    if not isinstance(name, str) or not name:
        return Outcome(1, "Missing parameter: operationName")
    if name != expected:
        return Outcome(2, f"Operation {name} is not valid")
    return payload


def _day(payload: dict[str, Any], key: str) -> date | None:
    """The `yyyy-MM-dd` date under `key`, None when absent; ValueError when malformed."""
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f"Invalid parameter: {key} must be yyyy-MM-dd")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"Invalid parameter: {key} must be yyyy-MM-dd") from exc


def _started_within(session: Session, first: date | None, last: date | None) -> bool:
    started = datetime.fromtimestamp(session.started_ms / 1000, UTC).date()
    return (first is None or first <= started) and (last is None or started <= last)


def add_ucs_routes(app: web.Application, history: InteractionHistory) -> None:
    """Serve `history` at `/api/v2/ucs/interactions[/{id}]`; drop late answers on shutdown."""
    app.router.add_post("/api/v2/ucs/interactions", history.retrieve_agent_history)
    app.router.add_post("/api/v2/ucs/interactions/{interaction_id}", history.get_content)

    async def cancel(app: web.Application) -> None:
        history.cancel()

    app.on_shutdown.append(cancel)
