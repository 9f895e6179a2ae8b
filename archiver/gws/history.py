"""Interaction History (UCS): a session's saved transcript, and the interactions of an agent.

GWS answers a UCS request over HTTP with only ``{"statusCode":0,"referenceId":N}``; the result
follows as a CometD notification on ``/v2/ucs/interactions`` (gws-api.md §2.6, team notes B.3),
which the account's :class:`~archiver.gws.push.PushClient` hands to
:meth:`HistoryClient.notification`. So a request waits until that channel is subscribed, posts,
and waits for the notification carrying its referenceId. GWS may publish before its HTTP reply
is read, so a result nobody has claimed yet is kept a while by referenceId; one with an unknown
referenceId but the interaction a pending content request asked for is taken as its answer.

What cannot be asked or answered now raises :class:`HistoryUnavailable`: the caller asks again
later. Keys are matched case-insensitively, a referenceId may be a number or a digit string,
and a notification of any shape costs at most the request it answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TypeVar
from urllib.parse import quote

import structlog

from archiver.errors import GwsError
from archiver.gws.bayeux import Notification
from archiver.gws.client import API, GwsClient, parse_each, raw_text
from archiver.gws.models import (
    MAX_ID_LENGTH,
    Malformed,
    Message,
    parse_epoch,
    parse_message,
    parse_timestamp,
)
from archiver.gws.push import PushClient
from archiver.instants import format_instant

__all__ = [
    "HISTORY_CHANNEL",
    "HistoryClient",
    "HistoryStats",
    "HistoryUnavailable",
    "InteractionContent",
    "InteractionSummary",
]

log = structlog.get_logger()

T = TypeVar("T")
Fields = dict[str, object]  # a JSON object with its keys lower-cased

HISTORY_CHANNEL = "/v2/ucs/interactions"
MAX_UNCLAIMED = 64  # results read before their request's HTTP reply, kept for it meanwhile
MAX_ERROR_CHARS = 500
_SURROGATES = re.compile("[\ud800-\udfff]")
_REFERENCE_DIGITS = re.compile(r"\d{1,18}")


class HistoryUnavailable(GwsError):
    """Raised when Interaction History could not be asked, refused, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class InteractionSummary:
    """One interaction as Interaction History lists it."""

    session_id: str
    state: str | None  # "Stopped" once over, "InProcess" while it runs
    over: bool  # state Stopped, or an end date given
    owner: str | None  # ownerInformation.userName: the agent who handled it last
    started_at: str | None  # UTC instants as the archive writes them; None when unreadable
    ended_at: str | None


@dataclass(frozen=True, slots=True)
class InteractionContent(InteractionSummary):
    """An interaction with its whole saved log (no cursor rule: UCS gives all of it)."""

    messages: list[Message]
    rejected: list[Malformed]


@dataclass(slots=True)
class HistoryStats:
    """Counters of one HistoryClient (exported as metrics)."""

    requests: int = 0  # content and agent-history requests made
    answered: int = 0  # ... that gave a usable result
    errors: int = 0  # ... refused: a failed POST, an errorMessage, an unusable answer
    timeouts: int = 0  # ... not subscribed, or not answered, within wait_s


@dataclass(eq=False, slots=True)
class _Request:
    """A request waiting for its result notification."""

    session_id: str | None  # the interaction a content request asks for
    answer: asyncio.Future[Fields]
    reference_id: int | None = None  # known once the HTTP reply is read


class HistoryClient:
    """Interaction History as one account reads it, its results heard by that account's push.

    ``wait_s`` bounds each wait: for the channel to be subscribed, then for the result.
    """

    def __init__(
        self,
        client: GwsClient,
        *,
        wait_s: float,
        channel: str = HISTORY_CHANNEL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.wait_s = wait_s
        self.channel = channel
        self.stats = HistoryStats()
        self._clock = clock
        self._push: PushClient | None = None
        self._open: set[_Request] = set()
        self._by_reference: dict[int, _Request] = {}
        self._unclaimed: OrderedDict[int, tuple[float, Fields]] = OrderedDict()

    def listen(self, push: PushClient) -> None:
        """Hear results through ``push``, built with ``on_history=self.notification``."""
        self._push = push

    async def content(self, session_id: str) -> InteractionContent:
        """The interaction and its whole saved log (GetInteractionContent).

        Raises HistoryUnavailable when it cannot be read now (see the module docstring).
        """
        path = f"{API}/ucs/interactions/{quote(session_id, safe='')}"
        answer = await self._ask(path, {"operationName": "GetInteractionContent"}, session_id)
        return self._read(answer, lambda fields: _content(fields, session_id))

    async def agent_history(
        self, user_id: str, from_date: date | None, to_date: date | None
    ) -> list[InteractionSummary]:
        """The SMS interactions of a user, started in the range (RetrieveAgentHistory).

        GWS defaults an open range to the last month. Entries of another media type are left
        out; so are entries without a usable id. Raises HistoryUnavailable as content() does.
        """
        body: dict[str, object] = {"operationName": "RetrieveAgentHistory", "userId": user_id}
        if from_date is not None:
            body["fromDate"] = from_date.isoformat()
        if to_date is not None:
            body["toDate"] = to_date.isoformat()
        answer = await self._ask(f"{API}/ucs/interactions", body, None)
        return self._read(answer, _summaries)

    def notification(self, notification: Notification) -> None:
        """Hand a UCS notification to the request it answers: PushClient's ``on_history``.

        Never raises: a notification of any shape is read or dropped.
        """
        try:
            self._deliver(_lowered(notification.data))
        except Exception:  # a notification of any shape costs that notification only
            log.warning("history_notification_unreadable", channel=notification.channel[:200])

    async def _ask(self, path: str, body: Mapping[str, object], session_id: str | None) -> Fields:
        """POST a UCS operation and wait for its result notification; return its fields."""
        self.stats.requests += 1
        await self._wait_subscribed()
        request = _Request(session_id, asyncio.get_running_loop().create_future())
        self._open.add(request)
        try:
            request.reference_id = await self._post(path, body)
            # No await since the reply was read: a result arriving from here on finds the request.
            self._claim(request)
            unanswered = f"no Interaction History answer (referenceId {request.reference_id})"
            return await self._within(request.answer, unanswered, url=self.client.base_url + path)
        finally:
            self._open.discard(request)
            reference_id = request.reference_id
            if reference_id is not None and self._by_reference.get(reference_id) is request:
                del self._by_reference[reference_id]

    async def _wait_subscribed(self) -> None:
        """Return once results can arrive: the history channel is subscribed and connected."""
        push = self._push
        if push is None:
            self.stats.errors += 1
            raise HistoryUnavailable(f"no notification session listens on {self.channel}")
        await self._within(push.wait_subscribed(self.channel), f"{self.channel} not subscribed")

    async def _within(self, awaitable: Awaitable[T], problem: str, *, url: str = "") -> T:
        """``await awaitable``, or HistoryUnavailable saying ``problem`` after ``wait_s``."""
        try:
            async with asyncio.timeout(self.wait_s):
                return await awaitable
        except TimeoutError:
            self.stats.timeouts += 1
            raise HistoryUnavailable(f"{problem} within {self.wait_s:g} s", url=url) from None

    async def _post(self, path: str, body: Mapping[str, object]) -> int:
        """The referenceId GWS gives the request (retried as every GWS request is)."""
        try:
            reply = await self.client.call("POST", path, json=body)
        except GwsError as exc:
            self.stats.errors += 1
            raise HistoryUnavailable(f"Interaction History request failed: {exc}") from exc
        reference_id = _reference_id(_lowered(reply).get("referenceid"))
        if reference_id is None:
            self.stats.errors += 1
            raise HistoryUnavailable(
                "Interaction History replied without a referenceId", url=self.client.base_url + path
            )
        return reference_id

    def _claim(self, request: _Request) -> None:
        """Answer ``request`` from a result read before its reply, or await it by referenceId."""
        if request.answer.done():  # an interaction-id match came first
            return
        assert request.reference_id is not None
        kept = self._unclaimed.pop(request.reference_id, None)
        if (
            kept is not None
            and self._clock() - kept[0] <= self.wait_s
            and _accepts(request, kept[1])
        ):
            request.answer.set_result(kept[1])
        else:
            self._by_reference[request.reference_id] = request

    def _deliver(self, fields: Fields) -> None:
        """Answer the request these fields are for, or keep them for one whose reply is unread."""
        reference_id = _reference_id(fields.get("referenceid"))
        request = self._by_reference.get(reference_id) if reference_id is not None else None
        if request is None or request.answer.done() or not _accepts(request, fields):
            request = self._asking_for(_interaction_id(fields))
        if request is not None:
            request.answer.set_result(fields)
        elif reference_id is not None and any(r.reference_id is None for r in self._open):
            self._keep(reference_id, fields)

    def _asking_for(self, interaction_id: str | None) -> _Request | None:
        """A pending content request for ``interaction_id``, if there is one."""
        if interaction_id is None:
            return None
        return next(
            (r for r in self._open if r.session_id == interaction_id and not r.answer.done()),
            None,
        )

    def _keep(self, reference_id: int, fields: Fields) -> None:
        """Keep an unclaimed result, dropping the oldest beyond MAX_UNCLAIMED or wait_s."""
        now = self._clock()
        self._unclaimed[reference_id] = (now, fields)
        self._unclaimed.move_to_end(reference_id)
        for old, (kept_at, _) in list(self._unclaimed.items()):
            if len(self._unclaimed) <= MAX_UNCLAIMED and now - kept_at <= self.wait_s:
                break
            del self._unclaimed[old]

    def _read(self, fields: Fields, read: Callable[[Fields], T]) -> T:
        """The result in an answer, counted; an errorMessage or an unreadable answer raises."""
        try:
            error = fields.get("errormessage")
            if error is not None and error != "":
                text = error if isinstance(error, str) else str(raw_text(error))
                raise HistoryUnavailable(f"Interaction History answered: {text[:MAX_ERROR_CHARS]}")
            result = read(fields)
        except HistoryUnavailable:
            self.stats.errors += 1
            raise
        except Exception as exc:  # an answer of any shape is history unavailable, never a crash
            self.stats.errors += 1
            raise HistoryUnavailable(f"unreadable Interaction History answer: {exc!r}") from exc
        self.stats.answered += 1
        return result


def _accepts(request: _Request, fields: Fields) -> bool:
    """False when the result names an interaction other than the one ``request`` asked for."""
    found = _interaction_id(fields)
    return request.session_id is None or found is None or found == request.session_id


def _content(fields: Fields, session_id: str) -> InteractionContent:
    interaction = _lowered(fields.get("interaction"))
    if not interaction:
        raise HistoryUnavailable(f"Interaction History answered without interaction {session_id}")
    summary = _summary(interaction, session_id)
    messages, rejected = _messages(fields.get("messages", interaction.get("messages")))
    return InteractionContent(**dataclasses.asdict(summary), messages=messages, rejected=rejected)


def _messages(entries: object) -> tuple[list[Message], list[Malformed]]:
    """Every entry parsed, or kept raw with the reason; no messages at all is an empty log."""
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        problem = f"messages is {type(entries).__name__}, not an array"
        return [], [Malformed(problem, raw_text(entries))]
    return parse_each(parse_message, entries)


def _summaries(fields: Fields) -> list[InteractionSummary]:
    entries = fields.get("interactions")
    if not isinstance(entries, list):
        raise HistoryUnavailable("Interaction History answered without an interactions array")
    found = []
    for entry in entries:
        interaction = _lowered(entry)
        session_id = _id(interaction.get("id"))
        if session_id is not None and _is_sms(interaction.get("mediatype")):
            found.append(_summary(interaction, session_id))
    return found


def _summary(interaction: Fields, session_id: str) -> InteractionSummary:
    state = _text(interaction.get("state"))
    end = interaction.get("enddate")
    stopped = state is not None and state.lower() == "stopped"
    return InteractionSummary(
        session_id=session_id,
        state=state,
        over=stopped or _given(end),
        owner=_text(_lowered(interaction.get("ownerinformation")).get("username")),
        started_at=_instant(interaction.get("startdate")),
        ended_at=_instant(end),
    )


def _is_sms(media_type: object) -> bool:
    """SMS, or not said: ``smssession`` in the docs, matched loosely (no SMS value is listed)."""
    if media_type is None or media_type == "":
        return True
    return isinstance(media_type, str) and "sms" in media_type.lower()


def _lowered(value: object) -> Fields:
    """A JSON object with its keys lower-cased; anything else is an empty one."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key).lower(): item for key, item in value.items()}


def _interaction_id(fields: Fields) -> str | None:
    return _id(_lowered(fields.get("interaction")).get("id"))


def _id(value: object) -> str | None:
    """An interaction id: a usable string, or an integer written as one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = _text(value)
    return text if text is not None and text.strip() else None


def _reference_id(value: object) -> int | None:
    """A referenceId from an integer, an integral float or digits in a string (``"7"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        digits = value.strip().removesuffix("L")
        return int(digits) if _REFERENCE_DIGITS.fullmatch(digits) else None
    return value if isinstance(value, int) else None


def _text(value: object) -> str | None:
    """A short string as it is (lone surrogates replaced); anything else is None."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        return None
    return _SURROGATES.sub("\ufffd", value)


def _given(value: object) -> bool:
    """A field with a value: neither absent, null, nor blank."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def _instant(value: object) -> str | None:
    """A GWS date (any shape of gws-api.md §3.6, or epoch milliseconds) as a UTC instant."""
    instant = parse_timestamp(value) if isinstance(value, str) else None
    if instant is None:
        instant = parse_epoch(value)
    return None if instant is None else format_instant(instant)
