"""Python hooks: module:function targets (sync and async) and entry-point plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.config import HooksConfig, PythonHook
from archiver.errors import ConfigError
from archiver.events import SessionStarted, Text
from archiver.hooks.dispatcher import HookDispatcher
from tests.support import hook_targets, wait_for
from tests.support.hooks import FAST_RETRY, EventSource, deliveries, dispatching, rows

pytest_plugins = ["tests.support.hooks"]

pytestmark = pytest.mark.usefixtures("hook_calls")


def python_hook(target: str, **options: object) -> PythonHook:
    return PythonHook(
        name=target, target=f"tests.support.hook_targets:{target}", **(FAST_RETRY | options)
    )


async def test_sync_and_async_hooks_get_typed_events(source: EventSource) -> None:
    """Both kinds of function receive every event as its typed class, in order."""
    hooks = HooksConfig(python=(python_hook("record"), python_hook("record_async")))
    async with dispatching(source, hooks):
        events = await source.add("S1", 2)
        await wait_for(lambda: len(hook_targets.ASYNC_RECEIVED) == len(events), timeout_s=10)
        await wait_for(lambda: len(hook_targets.RECEIVED) == len(events), timeout_s=10)
    for received in (hook_targets.RECEIVED, hook_targets.ASYNC_RECEIVED):
        assert received == events
        assert [type(e) for e in received] == [SessionStarted, Text, Text]


async def test_raising_hook_is_retried_until_it_succeeds(source: EventSource) -> None:
    """A hook that raises twice per event gets each event a third time, in session order."""
    async with dispatching(source, HooksConfig(python=(python_hook("flaky"),))):
        events = await source.add("S1", 3)
        await wait_for(lambda: len(hook_targets.RECEIVED) == len(events), timeout_s=10)
    assert events == hook_targets.RECEIVED
    assert set(hook_targets.ATTEMPTS.values()) == {3}
    (failed,) = rows(source.path, "SELECT failed_attempts, last_error FROM hook_subscribers")
    assert failed[0] == 2 * len(events)
    assert failed[1].startswith("RuntimeError: attempt 2 of")


async def test_broken_hook_is_isolated_from_the_others(source: EventSource) -> None:
    """A hook that always raises dead-letters its events; a healthy one gets them all."""
    hooks = HooksConfig(
        python=(python_hook("always_raises", max_attempts=2), python_hook("record"))
    )
    async with dispatching(source, hooks):
        events = await source.add("S1", 4)
        await wait_for(lambda: len(hook_targets.RECEIVED) == len(events), timeout_s=10)
        await wait_for(lambda: len(deliveries(source.path, "dead")) == len(events), timeout_s=10)
    assert events == hook_targets.RECEIVED
    dead = deliveries(source.path, "dead")
    assert {(name, attempts) for name, _, attempts, _ in dead} == {("always_raises", 2)}


async def test_entry_point_plugin_receives_events(
    source: EventSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed gws_archiver.hooks entry point becomes subscriber plugin:NAME."""
    dist = tmp_path / "site" / "recorder_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recorder-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[gws_archiver.hooks]\nrecorder = tests.support.hook_targets:record_plugin\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    async with dispatching(source, HooksConfig()) as dispatcher:
        events = await source.add("S1", 2)
        await wait_for(lambda: len(hook_targets.PLUGIN_RECEIVED) == len(events), timeout_s=10)
    assert [s.hook.name for s in dispatcher.subscribers] == ["plugin:recorder"]
    assert events == hook_targets.PLUGIN_RECEIVED


async def test_unloadable_target_is_a_configuration_error(source: EventSource) -> None:
    """A target that cannot be imported stops start-up with a ConfigError naming the key."""
    assert source.feed is not None
    bad = PythonHook(name="bad", target="tests.support.hook_targets:no_such_function")
    with pytest.raises(ConfigError) as caught:
        HookDispatcher(source.path, source.feed, HooksConfig(python=(bad,)), source="cfg.toml")
    assert caught.value.key == "hooks.python[0].target"
    assert caught.value.path == "cfg.toml"
