"""``gws-archiver hooks status|replay|enable`` over the archive, beside a running dispatcher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from archiver.cli import main
from archiver.config import HooksConfig, Secret, WebhookHook
from tests.support import wait_for
from tests.support.hooks import FAST_RETRY, SECRET, Answer, EventSource, Receiver, dispatching

pytest_plugins = ["tests.support.hooks"]


def subscribed(receiver: Receiver, **options: Any) -> HooksConfig:
    hook = WebhookHook(
        name="crm", url=receiver.url, secrets=(Secret(SECRET),), **(FAST_RETRY | options)
    )
    return HooksConfig(webhooks=(hook,))


async def hooks_cli(*args: str) -> int:
    """Run ``gws-archiver hooks ...`` as the command line does (its own event loop)."""
    return await asyncio.to_thread(main, ["hooks", *args])


async def test_status_reports_lag_failures_and_dead_letters(
    source: EventSource, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per subscriber: delivered, failed attempts, dead letters, lag, and not disabled."""
    receiver.respond = lambda r: Answer(500 if r.body["data"].get("index") == 2 else 200)
    async with dispatching(source, subscribed(receiver, max_attempts=2)):
        events = await source.add("S1", 3)
        await wait_for(lambda: len(receiver.delivered()) == len(events) - 1, timeout_s=10)
    capsys.readouterr()
    assert await hooks_cli("status", "--json", "--archive", str(source.path)) == 0
    (status,) = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {k: status[k] for k in ("name", "kind", "delivered", "failed_attempts", "dead")} == {
        "name": "crm",
        "kind": "webhook",
        "delivered": len(events) - 1,
        "failed_attempts": 2,
        "dead": 1,
    }
    assert (status["lag"], status["pending"], status["disabled_reason"]) == (0, 0, None)
    assert status["last_error"] == "HTTP 500"


async def test_status_table_names_each_subscriber(
    source: EventSource, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json, one header line and one line per subscriber."""
    async with dispatching(source, subscribed(receiver)):
        pass
    capsys.readouterr()
    assert await hooks_cli("status", "--archive", str(source.path)) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["NAME", "KIND", "LAG"]
    assert row.split()[:2] == ["crm", "webhook"]


async def test_replay_event_resends_it_with_the_same_id(
    source: EventSource, receiver: Receiver
) -> None:
    """`hooks replay NAME --event ID` sends that event again: same webhook-id, same body."""
    async with dispatching(source, subscribed(receiver)):
        events = await source.add("S1", 2)
        await wait_for(lambda: len(receiver.delivered()) == len(events), timeout_s=10)
        target = events[1]
        assert (
            await hooks_cli(
                "replay", "crm", "--event", target.event_id, "--archive", str(source.path)
            )
            == 0
        )
        await wait_for(lambda: len(receiver.delivered()) == len(events) + 1, timeout_s=10)
    first, again = [r for r in receiver.requests if r.webhook_id == target.event_id]
    assert again.body == first.body == target.to_json()
    assert again.verified


async def test_replay_since_seq_resends_in_order(source: EventSource, receiver: Receiver) -> None:
    """`hooks replay NAME --since SEQ` sends every event from SEQ on again, in session order."""
    async with dispatching(source, subscribed(receiver)):
        events = await source.add("S1", 4)
        await wait_for(lambda: len(receiver.delivered()) == len(events), timeout_s=10)
        since = str(events[2].seq)
        assert (
            await hooks_cli("replay", "crm", "--since", since, "--archive", str(source.path)) == 0
        )
        await wait_for(lambda: len(receiver.delivered()) == len(events) + 3, timeout_s=10)
    replayed = [r.body["id"] for r in receiver.delivered()[len(events) :]]
    assert replayed == [e.event_id for e in events[2:]]


async def test_replay_since_time_resends_later_events(
    source: EventSource, receiver: Receiver
) -> None:
    """`--since TIME` picks the events that occurred at or after TIME."""
    async with dispatching(source, subscribed(receiver, types=("Text",))):
        events = await source.add("S1", 3)
        await wait_for(lambda: len(receiver.delivered()) == 3, timeout_s=10)
        since = events[3].occurred_at
        assert (
            await hooks_cli("replay", "crm", "--since", since, "--archive", str(source.path)) == 0
        )
        await wait_for(lambda: len(receiver.delivered()) == 4, timeout_s=10)
    assert receiver.delivered()[-1].body["id"] == events[3].event_id


async def test_unknown_subscriber_fails_with_exit_1(
    source: EventSource, capsys: pytest.CaptureFixture[str]
) -> None:
    """Enabling a name the archive does not know exits 1 with one line."""
    assert await hooks_cli("enable", "nobody", "--archive", str(source.path)) == 1
    assert "no hook subscriber named 'nobody'" in capsys.readouterr().err


def test_status_without_archive_fails_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing archive is one line and exit 1, not a traceback."""
    assert main(["hooks", "status", "--archive", str(tmp_path / "none.sqlite3")]) == 1
    assert "no archive at" in capsys.readouterr().err
