"""The ``[hooks]`` section: webhooks, commands and Python hooks, with filters and retries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archiver.config.model import (
    CommandHook,
    HooksConfig,
    PythonHook,
    Secret,
    WebhookHook,
    is_http_url,
    webhook_key,
)
from archiver.config.table import TableReader
from archiver.events import EVENT_TYPES

# A POSIX environment variable name (what env_pass may list).
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_hooks(reader: TableReader, env: Mapping[str, str]) -> HooksConfig:
    """The [hooks] table: every subscriber of every kind."""
    config = HooksConfig(
        webhooks=tuple(
            _parse_webhook(item, env) for item in _hook_tables(reader, "webhooks", WebhookHook)
        ),
        commands=tuple(
            _parse_command(item) for item in _hook_tables(reader, "commands", CommandHook)
        ),
        python=tuple(
            _parse_python_hook(item) for item in _hook_tables(reader, "python", PythonHook)
        ),
        plugins=reader.get("plugins", bool),
    )
    reader.finish()
    seen: set[str] = set()
    for kind, hooks in (
        ("webhooks", config.webhooks),
        ("commands", config.commands),
        ("python", config.python),
    ):
        for position, hook in enumerate(hooks):
            if hook.name in seen:
                raise reader.fail(
                    f"{kind}[{position}].name", f"{hook.name!r} appears twice: set a unique name"
                )
            seen.add(hook.name)
    return config


def _hook_tables(parent: TableReader, kind: str, model: type) -> list[TableReader]:
    readers = []
    for position, item in enumerate(parent.get(kind, list, [])):
        name = f"{kind}[{position}]"
        if not isinstance(item, dict):
            raise parent.fail(name, f"must be a table ([[hooks.{kind}]])")
        readers.append(TableReader(parent.path, item, parent.key(name) + ".", model))
    return readers


def _strings(reader: TableReader, name: str) -> tuple[str, ...]:
    values = reader.get(name, list, [])
    if not all(isinstance(value, str) and value for value in values):
        raise reader.fail(name, "must be an array of non-empty strings")
    return tuple(values)


def _hook_common(reader: TableReader, default_name: str) -> dict[str, Any]:
    """The keys every kind of subscriber has, as HookConfig keyword arguments."""
    types = _strings(reader, "types")
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise reader.fail("types", f"unknown event type {unknown[0]!r}")
    delays = reader.get("retry_delays_s", list, list(reader.defaults["retry_delays_s"]))
    if not delays or not all(
        isinstance(d, int | float) and not isinstance(d, bool) and d >= 0 for d in delays
    ):
        raise reader.fail("retry_delays_s", "must be a non-empty array of seconds (>= 0)")
    jitter = reader.get("retry_jitter", float)
    if not 0 <= jitter < 1:
        raise reader.fail("retry_jitter", f"must be at least 0 and less than 1, not {jitter}")
    name = reader.get("name", str, default_name)
    if not name:
        raise reader.fail("name", "must not be empty")
    return {
        "name": name,
        "timeout_s": reader.positive("timeout_s", float),
        "max_in_flight": reader.positive("max_in_flight", int),
        "types": types,
        "accounts": _strings(reader, "accounts"),
        "sessions": _strings(reader, "sessions"),
        "max_attempts": reader.positive("max_attempts", int),
        "retry_delays_s": tuple(float(d) for d in delays),
        "retry_jitter": jitter,
    }


def _parse_webhook(reader: TableReader, env: Mapping[str, str]) -> WebhookHook:
    url = reader.get("url", str)
    if not is_http_url(url):
        raise reader.fail("url", f"must be an http(s) URL, not {url!r}")
    parts = urlsplit(url)
    # Every secret given signs each request: one signature per secret lets receivers rotate keys.
    given: list[tuple[str, str]] = []
    if "secret" in reader.table:
        given.append(("secret", reader.get("secret", str)))
    given += [(f"secrets[{n}]", value) for n, value in enumerate(_strings(reader, "secrets"))]
    variables = [(f"secrets_env[{n}]", v) for n, v in enumerate(_strings(reader, "secrets_env"))]
    if "secret_env" in reader.table:
        variables.insert(0, ("secret_env", reader.get("secret_env", str)))
    for key, variable in variables:
        if variable not in env:
            raise reader.fail(key, f"environment variable {variable} is not set")
        given.append((key, env[variable]))
    if not given:
        raise reader.fail("secret_env", "set a secret: secret_env, secret, secrets or secrets_env")
    for key, value in given:
        try:
            webhook_key(value)
        except ValueError as exc:
            raise reader.fail(key, str(exc)) from None
    hook = WebhookHook(
        url=url,
        secrets=tuple(Secret(value) for _, value in given),
        **_hook_common(reader, f"webhook:{parts.hostname}{parts.path}"),
    )
    reader.finish()
    return hook


def _parse_command(reader: TableReader) -> CommandHook:
    if ("argv" in reader.table) == ("command" in reader.table):
        raise reader.fail("argv", "set exactly one of argv or command")
    if "argv" in reader.table:
        argv = _strings(reader, "argv")
        if not argv:
            raise reader.fail("argv", "must name a program")
        program = argv[0]
    else:
        command = reader.get("command", str).strip()
        if not command:
            raise reader.fail("command", "must not be empty")
        argv = ("/bin/sh", "-c", command)
        program = command.split()[0]
    env_pass = _strings(reader, "env_pass")
    for position, variable in enumerate(env_pass):
        if not _VARIABLE_NAME.fullmatch(variable):
            raise reader.fail(
                f"env_pass[{position}]", f"must be an environment variable name, not {variable!r}"
            )
    hook = CommandHook(
        argv=argv,
        env_pass=env_pass,
        **_hook_common(reader, f"command:{Path(program).name}"),
    )
    reader.finish()
    return hook


def _parse_python_hook(reader: TableReader) -> PythonHook:
    target = reader.get("target", str)
    module, _, function = target.partition(":")
    if not all(part.isidentifier() for part in [*module.split("."), *function.split(".")]):
        raise reader.fail("target", f"must be module:function, not {target!r}")
    hook = PythonHook(target=target, **_hook_common(reader, f"python:{target}"))
    reader.finish()
    return hook
