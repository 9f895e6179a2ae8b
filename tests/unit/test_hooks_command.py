"""Command hooks: a program per event, the event's JSON on standard input, retried on failure."""

from __future__ import annotations

from pathlib import Path

import orjson

from archiver.config import CommandHook, HooksConfig
from tests.support import wait_for
from tests.support.hooks import FAST_RETRY, EventSource, dispatching, rows

pytest_plugins = ["tests.support.hooks"]

# Appends its standard input to $1/events.jsonl; fails the first attempt of every event.
APPEND_SECOND_TIME = (
    'if [ -e "$1/$GWS_EVENT_ID" ]; then cat >> "$1/events.jsonl";'
    ' else touch "$1/$GWS_EVENT_ID"; echo "not yet" >&2; exit 3; fi'
)


def command(name: str, script: str, *args: str, **options: object) -> CommandHook:
    return CommandHook(
        name=name, argv=("/bin/sh", "-c", script, "sh", *args), **(FAST_RETRY | options)
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_command_gets_event_json_on_stdin(source: EventSource, tmp_path: Path) -> None:
    """Each event's JSON form arrives on the program's standard input, once, in order."""
    out = tmp_path / "events.jsonl"
    hook = command("append", 'cat >> "$1"', str(out))
    async with dispatching(source, HooksConfig(commands=(hook,))):
        events = await source.add("S1", 3)
        await wait_for(lambda: len(lines(out)) == len(events), timeout_s=10)
    assert lines(out) == [e.to_json() for e in events]


async def test_non_zero_exit_is_retried(source: EventSource, tmp_path: Path) -> None:
    """A program exiting 3 fails that attempt (its stderr is kept); the retry gets through."""
    hook = command("flaky", APPEND_SECOND_TIME, str(tmp_path))
    async with dispatching(source, HooksConfig(commands=(hook,))):
        events = await source.add("S1", 2)
        await wait_for(lambda: len(lines(tmp_path / "events.jsonl")) == len(events), timeout_s=10)
    assert [e["id"] for e in lines(tmp_path / "events.jsonl")] == [e.event_id for e in events]
    (state,) = rows(
        source.path, "SELECT delivered, failed_attempts, last_error FROM hook_subscribers"
    )
    assert state == (len(events), len(events), "exit status 3: not yet")


async def test_command_past_its_timeout_is_killed_and_retried(
    source: EventSource, tmp_path: Path
) -> None:
    """A program still running at timeout_s is killed; the retry runs it again."""
    script = 'if [ -e "$1" ]; then exit 0; fi; touch "$1"; sleep 30'
    hook = command("hangs", script, str(tmp_path / "started"), timeout_s=0.3)
    async with dispatching(source, HooksConfig(commands=(hook,))):
        events = await source.add("S1", 1)
        await wait_for(
            lambda: rows(source.path, "SELECT delivered FROM hook_subscribers") == [(len(events),)],
            timeout_s=10,
        )
    (error,) = rows(source.path, "SELECT last_error FROM hook_subscribers")
    assert error == ("still running after 0.3 s: killed",)
