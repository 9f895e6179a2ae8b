"""Reading the TOML file: the core sections ([gws], [poll], [push], [archive], [log])."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from archiver.config.hooks import parse_hooks
from archiver.config.model import (
    LOG_FORMATS,
    LOG_LEVELS,
    Account,
    ArchiveConfig,
    Config,
    GwsConfig,
    HooksConfig,
    LogConfig,
    PollConfig,
    PushConfig,
    ReconcileConfig,
    ServerConfig,
    TeamConfig,
    is_http_url,
    redact_url,
)
from archiver.config.server import parse_server
from archiver.config.table import TableReader
from archiver.config.team import parse_team, password
from archiver.errors import ConfigError
from archiver.store.postgres import is_url


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
    root = TableReader(source, document)
    if "gws" not in document:
        raise root.fail("gws", "is required (the [gws] table with base_url and accounts)")
    config = Config(
        gws=_parse_gws(root.sub("gws", GwsConfig), env, team="team" in document),
        poll=_parse_poll(root.sub("poll", PollConfig)),
        archive=_parse_archive(root.sub("archive", ArchiveConfig), Path(source).parent),
        log=_parse_log(root.sub("log", LogConfig)),
        push=_parse_push(root.sub("push", PushConfig)),
        server=parse_server(root.sub("server", ServerConfig), env),
        hooks=parse_hooks(root.sub("hooks", HooksConfig), env),
        reconcile=_parse_reconcile(root.sub("reconcile", ReconcileConfig)),
        team=parse_team(root.sub("team", TeamConfig), env),
        source=source,
    )
    root.finish()
    agents = {account.username for account in config.gws.accounts}
    if config.team is not None and config.team.username in agents:
        raise root.fail("team.username", "is also in [[gws.accounts]]: configure it once")
    return config


def _parse_gws(reader: TableReader, env: Mapping[str, str], *, team: bool) -> GwsConfig:
    base_url = reader.get("base_url", str).rstrip("/")
    if not is_http_url(base_url):
        shown = redact_url(base_url)
        raise reader.fail("base_url", f"must be http(s)://host[:port], not {shown!r}")
    parts = urlsplit(base_url)
    if parts.path.endswith("/api/v2"):
        raise reader.fail("base_url", "must not include /api/v2 (it is added per request)")
    if parts.username is not None or parts.password is not None:
        raise reader.fail(
            "base_url", "credentials in the URL are not allowed; use [[gws.accounts]]"
        )
    if parts.query or parts.fragment:
        raise reader.fail("base_url", "must not have a query or fragment")
    raw_accounts = reader.get("accounts", list, [])
    if not raw_accounts and not team:
        raise reader.fail("accounts", "needs at least one [[gws.accounts]] entry (or a [team])")
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
        request_timeout_s=reader.positive("request_timeout_s", float),
        connect_timeout_s=reader.positive("connect_timeout_s", float),
        max_concurrent_requests=reader.positive("max_concurrent_requests", int),
        page_size=reader.positive("page_size", int),
        verify_tls=reader.get("verify_tls", bool),
        max_requests_per_s=(
            reader.positive("max_requests_per_s", float)
            if "max_requests_per_s" in reader.table
            else None
        ),
        max_body_bytes=reader.positive("max_body_bytes", int),
        max_retry_after_s=reader.positive("max_retry_after_s", float),
    )
    reader.finish()
    return config


def _parse_account(
    parent: TableReader, position: int, item: object, env: Mapping[str, str]
) -> Account:
    name = f"accounts[{position}]"
    if not isinstance(item, dict):
        raise parent.fail(name, "must be a table with username and password_env")
    reader = TableReader(parent.path, item, parent.key(name) + ".")
    username = reader.get("username", str)
    if not username:
        raise reader.fail("username", "must not be empty")
    account = Account(username=username, password=password(reader, env))
    reader.finish()
    return account


def _parse_poll(reader: TableReader) -> PollConfig:
    config = PollConfig(
        min_interval_s=reader.positive("min_interval_s", float),
        max_interval_s=reader.positive("max_interval_s", float),
        sessions_interval_s=reader.positive("sessions_interval_s", float),
        jitter=reader.get("jitter", float),
        away_timeout_s=reader.positive("away_timeout_s", float),
    )
    if config.max_interval_s < config.min_interval_s:
        raise reader.fail("max_interval_s", "must not be less than min_interval_s")
    if not 0 <= config.jitter < 1:
        raise reader.fail("jitter", f"must be at least 0 and less than 1, not {config.jitter}")
    reader.finish()
    return config


def _parse_push(reader: TableReader) -> PushConfig:
    path = reader.get("path", str)
    if not path.startswith("/"):
        raise reader.fail("path", f"must start with /, not {path!r}")
    channels = reader.get("channels", list)
    if not channels or not all(isinstance(c, str) and c.startswith("/") for c in channels):
        raise reader.fail("channels", "must be a non-empty array of channel names starting with /")
    config = PushConfig(
        enabled=reader.get("enabled", bool),
        path=path,
        channels=tuple(channels),
        safety_interval_s=reader.positive("safety_interval_s", float),
        debounce_s=reader.positive("debounce_s", float),
        network_delay_s=reader.positive("network_delay_s", float),
        backoff_step_s=reader.positive("backoff_step_s", float),
        backoff_max_s=reader.positive("backoff_max_s", float),
    )
    reader.finish()
    return config


def _parse_reconcile(reader: TableReader) -> ReconcileConfig:
    channel = reader.get("channel", str)
    if not channel.startswith("/"):
        raise reader.fail("channel", f"must start with /, not {channel!r}")
    config = ReconcileConfig(
        enabled=reader.get("enabled", bool),
        channel=channel,
        wait_s=reader.positive("wait_s", float),
        retry_s=reader.positive("retry_s", float),
        give_up_s=reader.positive("give_up_s", float),
        sweep_s=reader.positive("sweep_s", float),
    )
    reader.finish()
    return config


def _parse_archive(reader: TableReader, base_dir: Path) -> ArchiveConfig:
    raw = reader.get("path", str, str(reader.defaults["path"]))
    if not raw:
        raise reader.fail("path", "must not be empty")
    url = reader.get("url", str) if "url" in reader.table else None
    if url is not None:
        if "path" in reader.table:
            raise reader.fail("url", "set either path (SQLite) or url (PostgreSQL), not both")
        if not is_url(url):
            raise reader.fail("url", "must be a postgresql:// URL")
    path = Path(raw).expanduser()
    config = ArchiveConfig(
        path=path if path.is_absolute() else base_dir / path,
        url=url,
        lease_s=reader.positive("lease_s", float),
        busy_timeout_s=reader.positive("busy_timeout_s", float),
        retain_days=(
            reader.positive("retain_days", float) if "retain_days" in reader.table else None
        ),
        retention_interval_s=reader.positive("retention_interval_s", float),
    )
    reader.finish()
    return config


def _parse_log(reader: TableReader) -> LogConfig:
    config = LogConfig(
        level=reader.choice("level", LOG_LEVELS),
        format=reader.choice("format", LOG_FORMATS),
    )
    reader.finish()
    return config
