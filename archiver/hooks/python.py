"""Python hooks: a ``module:function`` from the configuration, or an entry-point plugin.

The function gets the typed event (an :class:`archiver.events.Event` subclass). An ``async``
function runs on the event loop, within ``timeout_s``; a plain one runs on a thread pool of the
hook's own, so it can block without stalling polling (it is not interrupted: it must return).
Raising is a failure, retried like any other.

Plugins are installed packages that declare, in ``pyproject.toml``::

    [project.entry-points."gws_archiver.hooks"]
    crm = "my_package.hooks:on_event"
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import Any

import structlog

from archiver.config import PythonHook
from archiver.events import Event
from archiver.hooks.sink import DELIVERED, Outcome, Sink, failed

PLUGIN_GROUP = "gws_archiver.hooks"

log = structlog.get_logger()

HookFunction = Callable[[Event], Any]


def load_target(target: str) -> HookFunction:
    """Import ``module:function`` (the function may be dotted: ``module:Class.method``)."""
    module_name, _, attribute = target.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{target} is not callable")
    return found  # type: ignore[no-any-return]


def discover_plugins() -> list[PythonHook]:
    """One hook per installed entry point in ``gws_archiver.hooks``, named ``plugin:NAME``."""
    return [
        PythonHook(name=f"plugin:{point.name}", target=point.value)
        for point in entry_points(group=PLUGIN_GROUP)
    ]


class PythonSink(Sink):
    """Calls one function per event."""

    def __init__(self, hook: PythonHook, function: HookFunction) -> None:
        self.function = function
        self.timeout_s = hook.timeout_s
        self.threads = hook.max_in_flight
        self._is_async = inspect.iscoroutinefunction(function)
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Start the hook's own threads (a plain function must not take the loop's)."""
        if not self._is_async:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="python-hook")

    async def close(self) -> None:
        """Stop the threads without waiting for a call still running; safe twice."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def deliver(self, event: Event) -> Outcome:
        """Call the function once with ``event``."""
        deadline = asyncio.timeout(self.timeout_s if self._is_async else None)
        try:
            async with deadline:
                if self._is_async:
                    await self.function(event)
                else:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(self._executor, self.function, event)
                    if inspect.isawaitable(result):  # e.g. an object with an async __call__
                        await result
        except TimeoutError:
            if deadline.expired():
                return failed(f"still running after {self.timeout_s:g} s")
            return failed("TimeoutError raised by the hook")
        except Exception as exc:
            log.debug("python_hook_raised", event_id=event.event_id, exc_info=True)
            return failed(f"{type(exc).__name__}: {exc}")
        return DELIVERED
