"""Command hooks: run a program per event, with the event's JSON on its standard input.

Exit status 0 is success; anything else, or running past ``timeout_s``, is a failure and is
retried. The program gets its own process group, so a timeout (or the daemon stopping) kills
whatever it started too. It also finds the event in its environment: ``GWS_EVENT_ID``,
``GWS_EVENT_TYPE``, ``GWS_EVENT_SEQ`` and ``GWS_SESSION_ID``.

The environment is otherwise minimal: the daemon's holds GWS passwords, webhook secrets and the
server token, so a program gets only :data:`PASSED_VARIABLES` (and ``LC_*``), those its hook
names in ``env_pass``, and the event's variables.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from contextlib import suppress

from archiver.config import CommandHook
from archiver.events import Event
from archiver.hooks.sink import DELIVERED, Outcome, Sink, failed

# How much of a failing program's standard error the delivery state keeps.
STDERR_TAIL = 500
# What every program gets from the daemon's environment (when set), besides LC_* and env_pass.
PASSED_VARIABLES = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")


def program_environment(
    event: Event, env_pass: tuple[str, ...], daemon_env: Mapping[str, str]
) -> dict[str, str]:
    """The environment a hook program runs with for ``event``: minimal, never the whole daemon's."""
    passed = set(PASSED_VARIABLES) | set(env_pass)
    env = {
        name: value
        for name, value in daemon_env.items()
        if name in passed or name.startswith("LC_")
    }
    return env | {
        "GWS_EVENT_ID": event.event_id,
        "GWS_EVENT_TYPE": event.type,
        "GWS_EVENT_SEQ": str(event.seq),
        "GWS_SESSION_ID": event.session_id,
    }


class CommandSink(Sink):
    """Runs one program per event."""

    def __init__(self, hook: CommandHook) -> None:
        self.argv = hook.argv
        self.timeout_s = hook.timeout_s
        self.env_pass = hook.env_pass

    async def deliver(self, event: Event) -> Outcome:
        """Run the program once for ``event``."""
        env = program_environment(event, self.env_pass, os.environ)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return failed(f"cannot start {self.argv[0]}: {exc.strerror}")
        try:
            async with asyncio.timeout(self.timeout_s):
                _, stderr = await process.communicate(event.to_bytes() + b"\n")
        except TimeoutError:
            return failed(f"still running after {self.timeout_s:g} s: killed")
        finally:
            if process.returncode is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if process.returncode == 0:
            return DELIVERED
        detail = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        return failed(f"exit status {process.returncode}" + (f": {detail}" if detail else ""))
