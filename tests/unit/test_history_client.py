"""The Interaction History client against a raw GWS double on 127.0.0.1, over real HTTP.

The double is :class:`tests.support.raw_gws.RawGws` (its ``/api/v2/me`` login) plus a Bayeux
endpoint that holds connects and the two UCS operations: each POST gets the next referenceId,
and the test's answer for it is published on ``/v2/ucs/interactions`` to the held connect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from aiohttp import web

from archiver.config import Account, GwsConfig, PushConfig, Secret
from archiver.errors import GwsStatusError
from archiver.gws.client import GwsClient
from archiver.gws.history import HISTORY_CHANNEL, HistoryClient, HistoryUnavailable
from archiver.gws.push import Hint, PushClient
from archiver.gws.transport import GwsHost
from tests.support import wait_for
from tests.support.raw_gws import RawGws, serving

Answer = Callable[[int], object]  # referenceId -> the notification's data (None: publish nothing)

HOLD_MS = 2000
TOKEN = "csrf-1"
STARTED = "2013-11-25 21:02:22.000+0200"
ENDED = "2013-11-2521: 09: 40.500+0200"  # glued and spaced, as CHGetInteractionContent prints it
OWNER = {"userName": "agent1", "firstName": "Ann", "lastName": "Agent", "id": "U1"}
RELEASE = object()  # queued at teardown: a held connect answers at once


@dataclass
class UcsGws(RawGws):
    """RawGws plus a Bayeux endpoint and the UCS operations, answering through the connect."""

    results: list[tuple[Answer, Callable[[], bool] | None]] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # subscriptions answered 403
    ucs_posts: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)  # raw paths
    next_reference: int = 40
    status_code: int = 0  # non-zero: UCS POSTs are refused with it, nothing is published
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)

    def answer(self, answer: Answer, *, before_reply: Callable[[], bool] | None = None) -> None:
        """Answer the next UCS POST; with ``before_reply``, publish, then wait for it to hold."""
        self.results.append((answer, before_reply))

    def publish(self, data: object) -> None:
        """Deliver ``data`` on the history channel with the next (or the held) connect."""
        self.events.put_nowait({"channel": HISTORY_CHANNEL, "data": data})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v2/notifications":
            return await self._bayeux(request)
        if request.path.startswith("/api/v2/ucs/"):
            return await self._ucs(request)
        response = await super()._handle(request)
        response.headers["X-CSRF-TOKEN"] = TOKEN
        return response

    async def _ucs(self, request: web.Request) -> web.StreamResponse:
        self.ucs_posts.append((request.raw_path, await request.json(), dict(request.headers)))
        if self.status_code:
            return web.json_response({"statusCode": self.status_code, "statusMessage": "no"})
        self.next_reference += 1
        answer, before_reply = self.results.pop(0) if self.results else (_silent, None)
        data = answer(self.next_reference)
        if data is not None:
            self.publish(data)
        if before_reply is not None:
            await wait_for(before_reply, timeout_s=5)
        return web.json_response({"statusCode": 0, "referenceId": self.next_reference})

    async def _bayeux(self, request: web.Request) -> web.StreamResponse:
        batch = await request.json()
        replies, hold = [], False
        for message in batch:
            channel = message["channel"]
            reply = {"channel": channel, "id": message["id"], "successful": True}
            if channel == "/meta/handshake":
                reply.update(
                    clientId="client-1",
                    version="1.0",
                    supportedConnectionTypes=["long-polling"],
                    advice={"reconnect": "retry", "interval": 0, "timeout": HOLD_MS},
                )
            elif channel == "/meta/subscribe":
                reply["subscription"] = message["subscription"]
                if message["subscription"] in self.refused:
                    reply.update(successful=False, error="403::subscribe_denied")
            elif channel == "/meta/connect":
                hold = "advice" not in message  # the first connect is answered at once
            replies.append(reply)
        events = await self._held() if hold else []
        return web.json_response([*events, *replies])

    async def _held(self) -> list[object]:
        """The events published within one hold (none if nothing comes)."""
        try:
            async with asyncio.timeout(HOLD_MS / 1000):
                first = await self.events.get()
        except TimeoutError:
            return []
        events = [first]
        while not self.events.empty():
            events.append(self.events.get_nowait())
        return [event for event in events if event is not RELEASE]


def _silent(reference_id: int) -> None:
    """An unscripted UCS request: nothing is published for it."""


@dataclass
class Listening:
    """A history client whose account's PushClient runs against the double."""

    gws: UcsGws
    host: GwsHost
    history: HistoryClient
    push: PushClient
    task: asyncio.Task[None]  # push.run()
    hints: list[Hint]


@asynccontextmanager
async def listening(
    channels: tuple[str, ...] = (HISTORY_CHANNEL,), wait_s: float = 5.0, **double: Any
) -> AsyncIterator[Listening]:
    """Serve a UcsGws; log in; run the account's push (history only unless told) meanwhile."""
    gws = UcsGws(**double)
    async with serving(gws):
        config = GwsConfig(base_url=gws.base_url, accounts=(Account("agent1", Secret("pw")),))
        host = GwsHost(config)
        client = GwsClient(host, config.accounts[0])
        history = HistoryClient(client, wait_s=wait_s)
        hints: list[Hint] = []
        push = PushClient(
            client,
            PushConfig(channels=channels, network_delay_s=2.0),
            on_hint=hints.append,
            on_subscribed=lambda: None,
            on_down=lambda reason: None,
            on_history=history.notification,
        )
        history.listen(push)
        await client.login()
        task = asyncio.create_task(push.run())
        try:
            await wait_for(lambda: push.healthy, timeout_s=5)
            yield Listening(gws, host, history, push, task, hints)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            gws.events.put_nowait(RELEASE)
            await client.close()
            await host.close()


def interaction(session_id: str = "S1", state: str | None = "Stopped", **extra: Any) -> Any:
    """An ``interaction`` object as CHGetInteractionContent shows it."""
    return {
        "id": session_id,
        "uri": f"http://gws/api/v2/ucs/interactions/{session_id}",
        "path": f"/ucs/interactions/{session_id}",
        "mediaType": "smssession",
        "typeId": "Inbound",
        "state": state,
        "startDate": STARTED,
        "endDate": ENDED if state == "Stopped" else None,
        "ownerInformation": OWNER,
        **extra,
    }


def message(index: int, words: str) -> dict[str, Any]:
    """One Text entry as ``/messages`` serves it."""
    return {
        "index": index,
        "type": "Text",
        "text": words,
        "visibility": "All",
        "from": {"nickname": "Customer", "type": "Client", "participantId": "P1"},
        "timestampSeconds": 1389261492035 + index,
    }


def content(session_id: str = "S1", state: str = "Stopped", **extra: Any) -> Answer:
    """A GetInteractionContentMessage with two messages, under the request's referenceId."""

    def respond(reference_id: int) -> object:
        return {
            "messageType": "GetInteractionContentMessage",
            "referenceId": reference_id,
            "interaction": interaction(session_id, state),
            "messages": [message(1, "hello"), message(2, "bye")],
            **extra,
        }

    return respond


async def test_content_of_a_stopped_interaction_is_over_with_its_messages() -> None:
    """The whole log comes back parsed; the dates as UTC instants; the owner's user name."""
    async with listening() as running:
        running.gws.answer(content())
        found = await running.history.content("S1")
        assert found.session_id == "S1"
        assert (found.state, found.over, found.owner) == ("Stopped", True, "agent1")
        assert found.started_at == "2013-11-25T19:02:22.000Z"
        assert found.ended_at == "2013-11-25T19:09:40.500Z"
        assert [(m.index, m.text) for m in found.messages] == [(1, "hello"), (2, "bye")]
        assert found.rejected == []
        assert running.history.stats.requests == running.history.stats.answered == 1


async def test_a_malformed_entry_is_kept_rejected_and_no_cursor_rule_applies() -> None:
    """An entry without a type is kept raw; an index beyond the entry count is believed."""
    async with listening() as running:
        running.gws.answer(content(messages=[message(7, "late"), {"index": 2, "text": "?"}]))
        found = await running.history.content("S1")
        assert [m.index for m in found.messages] == [7]
        assert [r.raw_json for r in found.rejected] == ['{"index":2,"text":"?"}']


async def test_the_request_is_a_json_post_with_the_csrf_token_and_a_bounded_label() -> None:
    """GetInteractionContent is POSTed as JSON with the token; metrics label it, not its id."""
    async with listening() as running:
        running.gws.answer(content("S/1"))
        await running.history.content("S/1")
        path, body, headers = running.gws.ucs_posts[0]
        assert path == "/api/v2/ucs/interactions/S%2F1"
        assert body == {"operationName": "GetInteractionContent"}
        assert headers["X-CSRF-TOKEN"] == TOKEN
        assert headers["Content-Type"] == "application/json"
        assert running.host.requests["interaction", "200"] == 1


async def test_an_interaction_in_process_is_not_over() -> None:
    """State InProcess and no endDate: not over, and no end instant."""
    async with listening() as running:
        running.gws.answer(content(state="InProcess"))
        found = await running.history.content("S1")
        assert (found.state, found.over, found.ended_at) == ("InProcess", False, None)


async def test_an_error_message_is_history_unavailable_with_its_text() -> None:
    """A notification with errorMessage (and no content) raises, saying what GWS said."""
    async with listening() as running:
        running.gws.answer(lambda ref: {"referenceId": ref, "errorMessage": "S1 not found"})
        with pytest.raises(HistoryUnavailable, match="S1 not found"):
            await running.history.content("S1")
        assert running.history.stats.errors == 1


async def test_no_answer_is_history_unavailable_after_wait_s() -> None:
    """Nothing published for the request: HistoryUnavailable once wait_s has passed."""
    async with listening(wait_s=0.2) as running:
        running.gws.answer(_silent)
        with pytest.raises(HistoryUnavailable, match=r"within 0\.2 s"):
            await running.history.content("S1")
        assert running.history.stats.timeouts == 1


async def test_a_result_read_before_the_http_reply_is_claimed() -> None:
    """GWS publishes first: the result, already handed over, answers the request."""
    async with listening() as running:
        running.gws.answer(content(), before_reply=lambda: running.push.stats.history == 1)
        found = await running.history.content("S1")
        assert found.over
        assert running.history.stats.answered == 1


async def test_an_error_read_before_the_http_reply_is_claimed() -> None:
    """An errorMessage has no interaction id: only its referenceId can match it."""
    async with listening() as running:
        running.gws.answer(
            lambda ref: {"referenceId": ref, "errorMessage": "UCS is down"},
            before_reply=lambda: running.push.stats.history == 1,
        )
        with pytest.raises(HistoryUnavailable, match="UCS is down"):
            await running.history.content("S1")


async def test_a_reference_id_as_a_string_matches() -> None:
    """referenceId "41" answers the request GWS gave referenceId 41 (no interaction to match)."""
    async with listening(wait_s=0.5) as running:
        running.gws.answer(lambda ref: {"referenceId": f" {ref}", "errorMessage": "refused"})
        with pytest.raises(HistoryUnavailable, match="answered: refused"):
            await running.history.content("S1")


async def test_keys_are_matched_whatever_their_case() -> None:
    """ReferenceID, Interaction, ID, State, OwnerInformation.USERNAME, EndDate, Messages."""
    answer = {
        "MessageType": "GetInteractionContentMessage",
        "Interaction": {
            "ID": "S1",
            "State": "STOPPED",
            "StartDate": STARTED,
            "OwnerInformation": {"USERNAME": "agent1"},
        },
        "Messages": [message(1, "hello")],
    }
    async with listening() as running:
        running.gws.answer(lambda ref: {**answer, "ReferenceID": ref})
        found = await running.history.content("S1")
        assert (found.over, found.owner, found.started_at) == (
            True,
            "agent1",
            "2013-11-25T19:02:22.000Z",
        )
        assert [m.text for m in found.messages] == ["hello"]


async def test_an_unknown_reference_id_with_the_asked_interaction_is_accepted() -> None:
    """The fallback: a result naming the interaction a pending content() asked for."""
    async with listening(wait_s=0.5) as running:
        running.gws.answer(content(referenceId=999))
        found = await running.history.content("S1")
        assert found.over


async def test_a_result_for_another_interaction_is_not_taken() -> None:
    """A matching referenceId that names another interaction does not answer the request."""
    async with listening(wait_s=0.3) as running:
        running.gws.answer(content("S9"))
        with pytest.raises(HistoryUnavailable, match="no Interaction History answer"):
            await running.history.content("S1")


@pytest.mark.parametrize(
    "data",
    [
        "text",
        None,
        [1],
        {"referenceId": True},
        {"referenceId": [41], "interaction": [2]},
        {"referenceId": 10**40, "interaction": {"id": {"x": 1}}},
    ],
)
async def test_notifications_of_any_shape_break_nothing(data: object) -> None:
    """Odd UCS notifications are dropped; push stays up and the next request is answered."""
    async with listening() as running:
        running.gws.publish(data)
        await wait_for(lambda: running.push.stats.history == 1, timeout_s=5)
        running.gws.answer(content())
        assert (await running.history.content("S1")).over
        assert running.push.stats.failures == 0


async def test_a_refused_history_channel_is_history_unavailable() -> None:
    """Push is up on its other channel, but results could never arrive: not asked at all."""
    channels = ("/v2/me/*", HISTORY_CHANNEL)
    async with listening(channels, wait_s=0.3, refused={HISTORY_CHANNEL}) as running:
        with pytest.raises(HistoryUnavailable, match="not subscribed"):
            await running.history.content("S1")
        assert running.gws.ucs_posts == []


async def test_once_push_has_stopped_nothing_is_asked() -> None:
    """A stopped PushClient no longer counts as subscribed: no result could arrive."""
    async with listening(wait_s=0.3) as running:
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        with pytest.raises(HistoryUnavailable, match="not subscribed"):
            await running.history.content("S1")
        assert running.gws.ucs_posts == []


@pytest.mark.parametrize("pattern", ["/v2/ucs/*", "/v2/**", "/**"])
async def test_a_pattern_subscription_covers_the_history_channel(pattern: str) -> None:
    """A wildcard subscription counts as the history channel subscribed."""
    async with listening((pattern,)) as running:
        running.gws.answer(content())
        assert (await running.history.content("S1")).over


async def test_an_http_failure_is_history_unavailable_with_its_cause() -> None:
    """A non-zero statusCode on the POST raises HistoryUnavailable chained to the GWS error."""
    async with listening(status_code=2) as running:
        with pytest.raises(HistoryUnavailable, match="request failed") as caught:
            await running.history.content("S1")
        assert isinstance(caught.value.__cause__, GwsStatusError)
        assert caught.value.__cause__.status_code == 2
        assert running.history.stats.errors == 1


async def test_an_answer_without_its_interaction_is_history_unavailable() -> None:
    """A result matched by referenceId but holding no interaction cannot say it is over."""
    async with listening() as running:
        running.gws.answer(lambda ref: {"referenceId": ref, "interaction": "S1"})
        with pytest.raises(HistoryUnavailable, match="without interaction S1"):
            await running.history.content("S1")


async def test_agent_history_lists_sms_interactions_only() -> None:
    """RetrieveAgentHistory: other media are left out; a missing mediaType is kept."""
    listed = [
        interaction("S1"),
        interaction("C1", mediaType="chat"),
        interaction("S2", state="InProcess", mediaType="SMSSession"),
        {"id": "S3", "state": "Stopped"},
        {"state": "Stopped"},  # no id: unusable
    ]
    async with listening() as running:
        running.gws.answer(lambda ref: {"referenceId": ref, "interactions": listed})
        found = await running.history.agent_history("U1", date(2024, 1, 2), date(2024, 2, 3))
        assert [(s.session_id, s.over) for s in found] == [
            ("S1", True),
            ("S2", False),
            ("S3", True),
        ]
        path, body, _ = running.gws.ucs_posts[0]
        assert path == "/api/v2/ucs/interactions"
        assert body == {
            "operationName": "RetrieveAgentHistory",
            "userId": "U1",
            "fromDate": "2024-01-02",
            "toDate": "2024-02-03",
        }


async def test_history_notifications_never_become_hints() -> None:
    """With SMS channels subscribed too, a UCS result is history's, not a hint nor ignored."""
    async with listening(("/v2/me/*", HISTORY_CHANNEL)) as running:
        running.gws.answer(content(smssession={"id": "S1"}))
        await running.history.content("S1")
        assert running.hints == []
        assert (running.push.stats.history, running.push.stats.ignored) == (1, 0)
