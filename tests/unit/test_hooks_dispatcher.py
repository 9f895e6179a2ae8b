"""The dispatcher: per-session order, bounded parallelism, filters, state that survives a stop."""

from __future__ import annotations

import random
from typing import Any

from archiver.config import HooksConfig, RetryPolicy, Secret, WebhookHook
from archiver.hooks.retry import retry_delay
from tests.support import wait_for
from tests.support.hooks import (
    FAST_RETRY,
    SECRET,
    Answer,
    EventSource,
    Received,
    Receiver,
    deliveries,
    dispatching,
    order_violations,
    rows,
    seqs_by_session,
)

pytest_plugins = ["tests.support.hooks"]


def subscribed(receiver: Receiver, **options: Any) -> HooksConfig:
    hook = WebhookHook(
        name="receiver", url=receiver.url, secrets=(Secret(SECRET),), **(FAST_RETRY | options)
    )
    return HooksConfig(webhooks=(hook,))


async def test_sessions_in_parallel_each_in_order(source: EventSource, receiver: Receiver) -> None:
    """Guarantee 5: one event in flight per session, up to max_in_flight sessions, in order."""
    rng = random.Random(7)
    # Each event fails its first 0-2 attempts (drawn once per event, so whatever order the
    # requests come in, none runs out of attempts and becomes a dead letter).
    failures: dict[str, int] = {}

    def respond(request: Received) -> Answer:
        event_id = request.body["id"]
        left = failures.setdefault(event_id, rng.choice([0, 0, 1, 2]))
        failures[event_id] = left - 1
        return Answer(500 if left > 0 else 200, delay_s=0)

    receiver.respond = respond
    async with dispatching(source, subscribed(receiver, max_in_flight=3)):
        for round_number in range(4):
            for session in range(6):
                await source.add(f"S{session}", 3, end=round_number == 3)
        expected = set(source.event_ids())
        await wait_for(lambda: receiver.delivered_ids() == expected, timeout_s=30)
    assert order_violations(receiver.requests, seqs_by_session(source.path)) == []
    assert receiver.overlaps == 0
    assert 1 < receiver.max_in_flight <= 3
    assert all(r.verified for r in receiver.requests)


async def test_filters_pick_types_accounts_and_sessions(
    source: EventSource, receiver: Receiver
) -> None:
    """Only events matching every filter (type, account, session) are sent."""
    hooks = subscribed(
        receiver, types=("Text", "SessionEnded"), accounts=("agent2",), sessions=("S2", "S3")
    )
    async with dispatching(source, hooks):
        await source.add("S1", 2, account="agent1")
        wanted = (await source.add("S2", 2, account="agent2", end=True))[1:]
        await source.add("S4", 2, account="agent2")
        wanted += (await source.add("S3", 1, account="agent2"))[1:]
        await wait_for(lambda: len(receiver.delivered()) == len(wanted), timeout_s=10)
    sent = sorted(receiver.delivered(), key=lambda r: r.body["seq"])
    assert [r.body["id"] for r in sent] == [e.event_id for e in wanted]
    assert [r.body["type"] for r in sent] == ["Text", "Text", "SessionEnded", "Text"]
    assert rows(source.path, "SELECT cursor_seq FROM hook_subscribers") == [(wanted[-1].seq,)]


async def test_attempts_survive_a_restart(source: EventSource, receiver: Receiver) -> None:
    """Attempt counts are kept in the archive: a restart continues toward the dead letter."""
    receiver.respond = lambda request: Answer(500)
    hooks = subscribed(receiver, max_attempts=4, retry_delays_s=(0.3,), max_in_flight=1)
    async with dispatching(source, hooks):
        started, *_ = await source.add("S1", 1)
        await wait_for(lambda: attempts(source) == [2, 0], timeout_s=10)
    async with dispatching(source, hooks):
        await wait_for(lambda: bool(deliveries(source.path, "dead")), timeout_s=10)
    tries = [r for r in receiver.requests if r.webhook_id == started.event_id]
    assert len(tries) == 4
    assert deliveries(source.path, "dead")[0][1:3] == (started.event_id, 4)


def attempts(source: EventSource) -> list[int]:
    return [row[0] for row in rows(source.path, "SELECT attempts FROM hook_deliveries")]


async def test_events_queued_after_the_queue_emptied_are_sent(
    source: EventSource, receiver: Receiver
) -> None:
    """Rows queued after every earlier one was delivered (and deleted) are still found."""
    async with dispatching(source, subscribed(receiver)):
        first = await source.add("S1", 1)
        await wait_for(lambda: len(receiver.delivered()) == len(first), timeout_s=10)
        second = await source.add("S1", 1)
        await wait_for(lambda: len(receiver.delivered()) == len(first + second), timeout_s=10)
    assert [r.body["id"] for r in receiver.delivered()] == [e.event_id for e in first + second]


def test_retry_delays_follow_the_table_with_jitter_and_retry_after() -> None:
    """Waits come from the table (the last repeats), within the jitter; Retry-After may extend."""
    policy = RetryPolicy(max_attempts=10, delays_s=(5.0, 300.0), jitter=0.2)
    rng = random.Random(1)
    waits = [retry_delay(policy, attempt, None, rng) for attempt in (1, 2, 3, 4)]
    assert 4.0 <= waits[0] <= 6.0
    assert all(240.0 <= wait <= 360.0 for wait in waits[1:])
    assert retry_delay(policy, 1, 3600.0, rng) == 3600.0
    assert 4.0 <= retry_delay(policy, 1, 1.0, rng) <= 6.0


async def test_a_hung_attempt_does_not_hold_back_other_sessions(
    source: EventSource, receiver: Receiver
) -> None:
    """One in flight at most, yet a receiver hanging on one session's event does not stop the
    other sessions: after 1 s that attempt no longer holds the place."""

    def respond(request: Received) -> Answer:
        hangs = request.body["session_id"] == "S0" and request.body["type"] == "SessionStarted"
        return Answer(204, delay_s=30.0 if hangs else 0.0)

    receiver.respond = respond
    async with dispatching(source, subscribed(receiver, max_in_flight=1, timeout_s=60.0)):
        await source.add("S0", 2)
        for session in range(1, 4):
            await source.add(f"S{session}", 2)
        others = {i for i in source.event_ids() if not i.startswith("evt_S0_")}
        await wait_for(lambda: others <= receiver.delivered_ids(), timeout_s=20)
    # S0's own messages wait behind the hung attempt: order within a session holds.
    assert {r.webhook_id for r in receiver.requests if r.webhook_id.startswith("evt_S0_")} == {
        "evt_S0_started"
    }
    assert order_violations(receiver.requests, seqs_by_session(source.path)) == []
