"""Configuration: one TOML file, loaded and validated once into frozen dataclasses.

Every problem becomes a :class:`ConfigError` naming the file, the dotted key and what is wrong.
Secrets come from the file or from the environment (``password_env``) and are held in
:class:`Secret`, whose repr and str are masked.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from archiver.errors import ConfigError
from archiver.events import EVENT_TYPES

T = TypeVar("T")


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself; call only where it is sent to its owner."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Account:
    """One GWS agent whose SMS sessions are archived."""

    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class GwsConfig:
    """Where GWS is and how to talk to it."""

    base_url: str
    accounts: tuple[Account, ...]
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_concurrent_requests: int = 32
    page_size: int = 500
    verify_tls: bool = True
    max_requests_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class PollConfig:
    """How often sessions and their message logs are read."""

    min_interval_s: float = 0.5
    max_interval_s: float = 5.0
    sessions_interval_s: float = 2.0
    jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class PushConfig:
    """GWS CometD notifications as poll hints (polling stays the source of truth)."""

    enabled: bool = False
    path: str = "/api/v2/notifications"
    channels: tuple[str, ...] = ("/v2/me/*",)
    safety_interval_s: float = 30.0  # per-session poll interval while push is healthy
    debounce_s: float = 0.05  # hints for one session within this window make one poll
    network_delay_s: float = 10.0  # added to the server's hold time for the HTTP timeout
    backoff_step_s: float = 1.0  # a failed connect waits this much longer than the last one
    backoff_max_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """Where the SQLite archive lives."""

    path: Path = Path("archive.sqlite3")
    busy_timeout_s: float = 10.0
    retain_days: float | None = None  # None keeps everything
    retention_interval_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Log level and format (``auto`` is readable on a terminal, JSON elsewhere)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The optional local HTTP endpoint: health, readiness, metrics and the live event stream."""

    listen: str | None = None  # "host:port"; None keeps the server off
    token: Secret | None = None  # bearer token; required unless bound to loopback
    keepalive_s: float = 15.0  # seconds between SSE keep-alive comments
    ready_window_s: float = 60.0  # an account is ready if its session list was read this recently

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port); raises ValueError if it is not ``host:port``."""
        return split_listen(self.listen or "")


@dataclass(frozen=True, slots=True)
class HookFilters:
    """Which events a subscriber gets; an empty tuple lets every value through."""

    types: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()


# The Standard Webhooks schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_DELAYS_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed delivery is retried before it becomes a dead letter.

    ``delays_s[n]`` is the wait after failed attempt ``n + 1`` (the last one repeats), spread
    by ``jitter`` (0.2 = ±20%); a longer ``Retry-After`` from the receiver wins.
    """

    max_attempts: int = 8
    delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
    jitter: float = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class HookConfig:
    """What every subscriber has: a unique name, filters, a timeout and its retry policy.

    Fields are named like the TOML keys, so the effective configuration reads back as TOML.
    """

    name: str
    types: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    timeout_s: float = 30.0
    max_in_flight: int = 4  # sessions delivered in parallel (one event in flight per session)
    max_attempts: int = 8
    retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
    retry_jitter: float = 0.2

    @property
    def filters(self) -> HookFilters:
        """The events this subscriber gets."""
        return HookFilters(types=self.types, accounts=self.accounts, sessions=self.sessions)

    @property
    def retry(self) -> RetryPolicy:
        """How its failed deliveries are retried."""
        return RetryPolicy(self.max_attempts, self.retry_delays_s, self.retry_jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookHook(HookConfig):
    """An HTTP endpoint that gets each event as a signed Standard Webhooks POST."""

    url: str
    secrets: tuple[Secret, ...]  # every one signs each request (several during a rotation)
    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandHook(HookConfig):
    """A program run once per event, with the event's JSON on its standard input."""

    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonHook(HookConfig):
    """A ``module:function`` (sync or async) called with each typed event."""

    target: str


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """Event subscribers; ``plugins`` also loads the entry-point group ``gws_archiver.hooks``."""

    webhooks: tuple[WebhookHook, ...] = ()
    commands: tuple[CommandHook, ...] = ()
    python: tuple[PythonHook, ...] = ()
    plugins: bool = True


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError if it is not one."""
    if not secret.startswith("whsec_"):
        raise ValueError("must start with whsec_ (a Standard Webhooks secret)")
    encoded = secret.removeprefix("whsec_")
    try:
        # Secrets are often pasted without their base64 padding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("must be whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"must decode to 24-64 bytes, not {len(key)}")
    return key


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one daemon."""

    gws: GwsConfig
    poll: PollConfig = field(default_factory=PollConfig)
    push: PushConfig = field(default_factory=PushConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    log: LogConfig = field(default_factory=LogConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    source: str = "<defaults>"


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


class _Reader:
    """Reads typed values out of one TOML table, naming keys by their dotted path."""

    def __init__(self, path: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.path = path
        self.table = table
        self.prefix = prefix
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def get(self, name: str, kind: type[T], default: T | None = None) -> T:
        self.used.add(name)
        if name not in self.table:
            if default is None:
                raise self.fail(name, "is required")
            return default
        value = self.table[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be {_kind_name(kind)}, not {_kind_name(type(value))}")
        return value

    def positive(self, name: str, kind: type[T], default: T) -> T:
        value = self.get(name, kind, default)
        if not value > 0:  # type: ignore[operator]
            raise self.fail(name, f"must be greater than 0, not {value}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def sub(self, name: str) -> _Reader:
        """A reader for the sub-table ``name`` (empty if absent)."""
        table = self.get(name, dict, {})
        return _Reader(self.path, table, self.key(name) + ".")

    def finish(self) -> None:
        """Reject keys nobody asked for: a typo must not pass silently."""
        for name in self.table:
            if name not in self.used:
                raise self.fail(name, "is not a known key")


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _kind_name(kind: type) -> str:
    return _KIND_NAMES.get(kind, kind.__name__)


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and return the configuration in ``path``; raise ConfigError if unusable."""
    source = str(path)
    env = os.environ if environ is None else environ
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"is not valid TOML: {exc}") from None
    return parse_config(document, source, env)


def parse_config(document: Mapping[str, Any], source: str, env: Mapping[str, str]) -> Config:
    """Validate an already-parsed TOML document."""
    root = _Reader(source, document)
    if "gws" not in document:
        raise root.fail("gws", "is required (the [gws] table with base_url and accounts)")
    config = Config(
        gws=_parse_gws(root.sub("gws"), env),
        poll=_parse_poll(root.sub("poll")),
        archive=_parse_archive(root.sub("archive"), Path(source).parent),
        log=_parse_log(root.sub("log")),
        push=_parse_push(root.sub("push")),
        server=_parse_server(root.sub("server"), env),
        hooks=_parse_hooks(root.sub("hooks"), env),
        source=source,
    )
    root.finish()
    return config


def _parse_gws(reader: _Reader, env: Mapping[str, str]) -> GwsConfig:
    base_url = reader.get("base_url", str).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.fail("base_url", f"must be http(s)://host[:port], not {base_url!r}")
    if parts.path.endswith("/api/v2"):
        raise reader.fail("base_url", "must not include /api/v2 (it is added per request)")
    raw_accounts = reader.get("accounts", list)
    if not raw_accounts:
        raise reader.fail("accounts", "needs at least one [[gws.accounts]] entry")
    accounts = tuple(
        _parse_account(reader, position, item, env) for position, item in enumerate(raw_accounts)
    )
    seen: set[str] = set()
    for position, account in enumerate(accounts):
        if account.username in seen:
            raise reader.fail(f"accounts[{position}].username", "appears twice")
        seen.add(account.username)
    config = GwsConfig(
        base_url=base_url,
        accounts=accounts,
        request_timeout_s=reader.positive("request_timeout_s", float, 30.0),
        connect_timeout_s=reader.positive("connect_timeout_s", float, 10.0),
        max_concurrent_requests=reader.positive("max_concurrent_requests", int, 32),
        page_size=reader.positive("page_size", int, 500),
        verify_tls=reader.get("verify_tls", bool, True),
        max_requests_per_s=(
            reader.positive("max_requests_per_s", float, 1.0)
            if "max_requests_per_s" in reader.table
            else None
        ),
    )
    reader.finish()
    return config


def _parse_account(parent: _Reader, position: int, item: object, env: Mapping[str, str]) -> Account:
    name = f"accounts[{position}]"
    if not isinstance(item, dict):
        raise parent.fail(name, "must be a table with username and password_env")
    reader = _Reader(parent.path, item, parent.key(name) + ".")
    username = reader.get("username", str)
    if not username:
        raise reader.fail("username", "must not be empty")
    has_inline, has_env = "password" in item, "password_env" in item
    if has_inline == has_env:
        raise reader.fail("password_env", "set exactly one of password_env or password")
    if has_env:
        variable = reader.get("password_env", str)
        if variable not in env:
            raise reader.fail("password_env", f"environment variable {variable} is not set")
        password = env[variable]
    else:
        password = reader.get("password", str)
    reader.finish()
    return Account(username=username, password=Secret(password))


def _parse_poll(reader: _Reader) -> PollConfig:
    config = PollConfig(
        min_interval_s=reader.positive("min_interval_s", float, 0.5),
        max_interval_s=reader.positive("max_interval_s", float, 5.0),
        sessions_interval_s=reader.positive("sessions_interval_s", float, 2.0),
        jitter=reader.get("jitter", float, 0.1),
    )
    if config.max_interval_s < config.min_interval_s:
        raise reader.fail("max_interval_s", "must not be less than min_interval_s")
    if not 0 <= config.jitter < 1:
        raise reader.fail("jitter", f"must be at least 0 and less than 1, not {config.jitter}")
    reader.finish()
    return config


def _parse_push(reader: _Reader) -> PushConfig:
    path = reader.get("path", str, "/api/v2/notifications")
    if not path.startswith("/"):
        raise reader.fail("path", f"must start with /, not {path!r}")
    channels = reader.get("channels", list, ["/v2/me/*"])
    if not channels or not all(isinstance(c, str) and c.startswith("/") for c in channels):
        raise reader.fail("channels", "must be a non-empty array of channel names starting with /")
    config = PushConfig(
        enabled=reader.get("enabled", bool, False),
        path=path,
        channels=tuple(channels),
        safety_interval_s=reader.positive("safety_interval_s", float, 30.0),
        debounce_s=reader.positive("debounce_s", float, 0.05),
        network_delay_s=reader.positive("network_delay_s", float, 10.0),
        backoff_step_s=reader.positive("backoff_step_s", float, 1.0),
        backoff_max_s=reader.positive("backoff_max_s", float, 60.0),
    )
    reader.finish()
    return config


def _parse_archive(reader: _Reader, base_dir: Path) -> ArchiveConfig:
    raw = reader.get("path", str, "archive.sqlite3")
    if not raw:
        raise reader.fail("path", "must not be empty")
    path = Path(raw).expanduser()
    config = ArchiveConfig(
        path=path if path.is_absolute() else base_dir / path,
        busy_timeout_s=reader.positive("busy_timeout_s", float, 10.0),
        retain_days=(
            reader.positive("retain_days", float, 1.0) if "retain_days" in reader.table else None
        ),
        retention_interval_s=reader.positive("retention_interval_s", float, 3600.0),
    )
    reader.finish()
    return config


def _parse_log(reader: _Reader) -> LogConfig:
    config = LogConfig(
        level=reader.choice("level", LOG_LEVELS, "info"),
        format=reader.choice("format", LOG_FORMATS, "auto"),
    )
    reader.finish()
    return config


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8765"`` or ``"[::1]:8765"`` as (host, port); ValueError if malformed."""
    problem = ValueError(f"must be host:port, like 127.0.0.1:8765, not {listen!r}")
    parts = urlsplit(f"//{listen}")
    try:
        port = parts.port
    except ValueError:
        raise problem from None
    if not parts.hostname or port is None or parts.netloc != listen or "@" in listen:
        raise problem
    return parts.hostname, port


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def _parse_server(reader: _Reader, env: Mapping[str, str]) -> ServerConfig:
    listen = reader.get("listen", str, "") or None
    host = ""
    if listen is not None:
        try:
            host, _ = split_listen(listen)
        except ValueError as exc:
            raise reader.fail("listen", str(exc)) from None
    if "token" in reader.table and "token_env" in reader.table:
        raise reader.fail("token_env", "set at most one of token_env or token")
    token: Secret | None = None
    if "token_env" in reader.table:
        variable = reader.get("token_env", str)
        if not env.get(variable):
            raise reader.fail("token_env", f"environment variable {variable} is not set")
        token = Secret(env[variable])
    elif "token" in reader.table:
        value = reader.get("token", str)
        if not value:
            raise reader.fail("token", "must not be empty")
        token = Secret(value)
    if listen is not None and token is None and not is_loopback(host):
        raise reader.fail(
            "listen",
            f"binds to {host}, which is not loopback: set server.token or server.token_env",
        )
    config = ServerConfig(
        listen=listen,
        token=token,
        keepalive_s=reader.positive("keepalive_s", float, 15.0),
        ready_window_s=reader.positive("ready_window_s", float, 60.0),
    )
    reader.finish()
    return config


def _parse_hooks(reader: _Reader, env: Mapping[str, str]) -> HooksConfig:
    config = HooksConfig(
        webhooks=tuple(_parse_webhook(item, env) for item in _hook_tables(reader, "webhooks")),
        commands=tuple(_parse_command(item) for item in _hook_tables(reader, "commands")),
        python=tuple(_parse_python_hook(item) for item in _hook_tables(reader, "python")),
        plugins=reader.get("plugins", bool, True),
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


def _hook_tables(parent: _Reader, kind: str) -> list[_Reader]:
    readers = []
    for position, item in enumerate(parent.get(kind, list, [])):
        name = f"{kind}[{position}]"
        if not isinstance(item, dict):
            raise parent.fail(name, f"must be a table ([[hooks.{kind}]])")
        readers.append(_Reader(parent.path, item, parent.key(name) + "."))
    return readers


def _strings(reader: _Reader, name: str) -> tuple[str, ...]:
    values = reader.get(name, list, [])
    if not all(isinstance(value, str) and value for value in values):
        raise reader.fail(name, "must be an array of non-empty strings")
    return tuple(values)


def _hook_common(reader: _Reader, default_name: str, timeout_s: float) -> dict[str, Any]:
    """The keys every kind of subscriber has, as HookConfig keyword arguments."""
    types = _strings(reader, "types")
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise reader.fail("types", f"unknown event type {unknown[0]!r}")
    delays = reader.get("retry_delays_s", list, list(DEFAULT_RETRY_DELAYS_S))
    if not delays or not all(
        isinstance(d, int | float) and not isinstance(d, bool) and d >= 0 for d in delays
    ):
        raise reader.fail("retry_delays_s", "must be a non-empty array of seconds (>= 0)")
    jitter = reader.get("retry_jitter", float, 0.2)
    if not 0 <= jitter < 1:
        raise reader.fail("retry_jitter", f"must be at least 0 and less than 1, not {jitter}")
    name = reader.get("name", str, default_name)
    if not name:
        raise reader.fail("name", "must not be empty")
    return {
        "name": name,
        "timeout_s": reader.positive("timeout_s", float, timeout_s),
        "max_in_flight": reader.positive("max_in_flight", int, 4),
        "types": types,
        "accounts": _strings(reader, "accounts"),
        "sessions": _strings(reader, "sessions"),
        "max_attempts": reader.positive("max_attempts", int, 8),
        "retry_delays_s": tuple(float(d) for d in delays),
        "retry_jitter": jitter,
    }


def _parse_webhook(reader: _Reader, env: Mapping[str, str]) -> WebhookHook:
    url = reader.get("url", str)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.fail("url", f"must be an http(s) URL, not {url!r}")
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
        **_hook_common(reader, f"webhook:{parts.hostname}{parts.path}", 15.0),
    )
    reader.finish()
    return hook


def _parse_command(reader: _Reader) -> CommandHook:
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
    hook = CommandHook(argv=argv, **_hook_common(reader, f"command:{Path(program).name}", 30.0))
    reader.finish()
    return hook


def _parse_python_hook(reader: _Reader) -> PythonHook:
    target = reader.get("target", str)
    module, _, function = target.partition(":")
    if not all(part.isidentifier() for part in [*module.split("."), *function.split(".")]):
        raise reader.fail("target", f"must be module:function, not {target!r}")
    hook = PythonHook(target=target, **_hook_common(reader, f"python:{target}", 30.0))
    reader.finish()
    return hook
