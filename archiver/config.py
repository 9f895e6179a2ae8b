"""Configuration: one TOML file, loaded and validated once into frozen dataclasses.

Every problem becomes a :class:`ConfigError` naming the file, the dotted key and what is wrong.
Secrets come from the file or from the environment (``password_env``) and are held in
:class:`Secret`, whose repr and str are masked.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from archiver.errors import ConfigError

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
class ArchiveConfig:
    """Where the SQLite archive lives."""

    path: Path = Path("archive.sqlite3")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Log level and format (``auto`` is readable on a terminal, JSON elsewhere)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one daemon."""

    gws: GwsConfig
    poll: PollConfig = field(default_factory=PollConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    log: LogConfig = field(default_factory=LogConfig)
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


def _parse_archive(reader: _Reader, base_dir: Path) -> ArchiveConfig:
    raw = reader.get("path", str, "archive.sqlite3")
    if not raw:
        raise reader.fail("path", "must not be empty")
    path = Path(raw).expanduser()
    reader.finish()
    return ArchiveConfig(path=path if path.is_absolute() else base_dir / path)


def _parse_log(reader: _Reader) -> LogConfig:
    config = LogConfig(
        level=reader.choice("level", LOG_LEVELS, "info"),
        format=reader.choice("format", LOG_FORMATS, "auto"),
    )
    reader.finish()
    return config
