"""The configuration as frozen dataclasses: what every part of the daemon is handed."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from archiver.store.postgres import PostgresArchive


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
    max_body_bytes: int = 64 * 1024 * 1024  # a bigger answer is refused (and read in smaller pages)
    max_retry_after_s: float = 60.0  # the longest pause a Retry-After header can impose


@dataclass(frozen=True, slots=True)
class PollConfig:
    """How often sessions and their message logs are read."""

    min_interval_s: float = 0.5
    max_interval_s: float = 3.0
    sessions_interval_s: float = 2.0
    jitter: float = 0.1
    # how long a session out of every configured account's list stays open, waiting to come
    # back (a queue, an unconfigured agent), before it ends unless GWS said it is over sooner
    away_timeout_s: float = 600.0


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
class ReconcileConfig:
    """Checking ended sessions against Interaction History (UCS), the system of record."""

    enabled: bool = True
    channel: str = "/v2/ucs/interactions"  # the CometD channel UCS results arrive on
    wait_s: float = 10.0  # how long one request waits for its result notification
    retry_s: float = 30.0  # a check that could not be made is tried again this much later
    give_up_s: float = 86400.0  # ... until this long after the session ended: then 'unchecked'
    sweep_s: float = 300.0  # how often history is asked for sessions no list ever showed


TEAM_EXISTING = ("report", "intrude")


@dataclass(frozen=True, slots=True)
class TeamConfig:
    """Team mode: one supervisor account monitors agents silently and archives their sessions.

    Exactly one of ``agents`` (user names, resolved once through the contacts look-up),
    ``agent_ids`` or ``all_agents`` names who is monitored.
    """

    username: str
    password: Secret
    agents: tuple[str, ...] = ()
    agent_ids: tuple[str, ...] = ()
    all_agents: bool = False
    nickname: str | None = None  # the supervisor's name in Monitor requests (GWS's own if None)
    existing: str = "report"  # sessions running before monitoring: report as gaps, or intrude
    accept_invited: bool = True  # Accept a session the supervisor sees Invited with Accept
    cancel_on_exit: bool = True  # cancel monitoring and leave the supervisor's sessions on exit
    check_s: float = 60.0  # every agent's active sessions compared with what is archived
    retry_min_s: float = 5.0  # a refused Monitor is retried after this, doubling ...
    retry_max_s: float = 300.0  # ... up to this
    exit_timeout_s: float = 10.0  # how long the cancel-and-leave on exit may take

    @property
    def account(self) -> Account:
        """The supervisor as one more account whose list and messages are read."""
        return Account(username=self.username, password=self.password)


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """Where the archive lives: an SQLite file (``path``), or PostgreSQL (``url``)."""

    path: Path = Path("archive.sqlite3")
    busy_timeout_s: float = 10.0
    retain_days: float | None = None  # None keeps everything
    retention_interval_s: float = 3600.0
    url: str | None = None  # postgresql://...; several daemons may share it
    lease_s: float = 10.0  # PostgreSQL: how long a daemon's hold on its work outlives it

    @property
    def location(self) -> Path | PostgresArchive:
        """The archive the store opens."""
        return PostgresArchive(self.url) if self.url is not None else self.path


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
    allowed_hosts: tuple[str, ...] = ()  # more names the Host header may give (a proxy's)

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
    max_in_flight: int = 32  # sessions delivered in parallel (one event in flight per session)
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
    env_pass: tuple[str, ...] = ()  # daemon environment variables it gets besides the minimal set


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
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    team: TeamConfig | None = None  # None: team mode off
    source: str = "<defaults>"

    @property
    def accounts(self) -> tuple[Account, ...]:
        """Every account read through: the configured agents, then the team supervisor."""
        extra = (self.team.account,) if self.team is not None else ()
        return self.gws.accounts + extra


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


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


def is_http_url(url: str) -> bool:
    """Whether ``url`` is http(s) with a host and, if it names a port, a port that can be one."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it checks it: ValueError when out of range)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# Query parameters whose values are credentials (matched as a part of the name, any case).
_CREDENTIAL_PARAM = re.compile(
    r"token|key|secret|passw|pwd|auth|sig|credential|session|code", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """``url`` fit to print: a userinfo password and credential-like query values as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"***@{hostport}"
        query = urlencode(
            [
                (name, "***" if _CREDENTIAL_PARAM.search(name) else value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unreadable URL>"
