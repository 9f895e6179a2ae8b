"""The one error tree of gws-archiver.

::

    ArchiverError
    ├── ConfigError            bad configuration file, key or value (exit code 2)
    ├── GwsError               anything that went wrong talking to GWS
    │   ├── TransportError     connection refused/reset, timeout, truncated body
    │   ├── ProtocolError      a response we cannot understand (not JSON, wrong shape)
    │   │   └── UndecodableError   a body too large, or not JSON by any reading
    │   └── GwsStatusError     GWS answered with an HTTP error or a non-zero statusCode
    │       ├── AuthError          HTTP 401, statusCode 20, or a CSRF 403
    │       ├── NotFoundError      HTTP 404 or statusCode 6
    │       └── ThrottledError     HTTP 429 or 503 (carries retry_after_s)
    ├── StoreError             the archive cannot be opened, migrated or written
    │   └── SchemaTooNewError  the archive was written by a newer gws-archiver
    └── InstanceLockedError    another daemon already runs on this archive (exit code 2)

Foreign exceptions (aiohttp, sqlite3) are translated once, at the boundary that owns them,
with ``raise ... from exc``.
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error gws-archiver raises on purpose."""


class ConfigError(ArchiverError):
    """Raised when the configuration file, a key or a value is unusable."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")


class GwsError(ArchiverError):
    """Raised when a request to GWS did not give a usable answer."""

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(f"{message} ({url})" if url else message)


class TransportError(GwsError):
    """Raised when the connection failed, timed out, or the body was cut short."""


class ProtocolError(GwsError):
    """Raised when GWS answered with something that is not the expected JSON shape."""


class UndecodableError(ProtocolError):
    """Raised when a body exceeds ``max_body_bytes`` or is not JSON; ``body`` keeps its bytes."""

    def __init__(
        self, message: str, *, url: str = "", body: bytes, truncated: bool = False
    ) -> None:
        self.body = body
        self.truncated = truncated  # ``body`` is only the start of what the server sent
        super().__init__(message, url=url)


class GwsStatusError(GwsError):
    """Raised when GWS answered with an HTTP error status or a non-zero ``statusCode``."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        super().__init__(message, url=url)

    @property
    def retryable(self) -> bool:
        """True for server-side trouble worth another try: 5xx, 429, statusCode 4 and 9."""
        return self.status >= 500 or self.status == 429 or self.status_code in (4, 9)


class AuthError(GwsStatusError):
    """Raised on HTTP 401, ``statusCode`` 20, or a 403 "Missing or invalid Csrf token"."""


class NotFoundError(GwsStatusError):
    """Raised on HTTP 404 or ``statusCode`` 6: the session (or resource) is gone."""


class ThrottledError(GwsStatusError):
    """Raised on HTTP 429 or 503; ``retry_after_s`` holds the server's wish, if it said one."""


class StoreError(ArchiverError):
    """Raised when the archive cannot be opened, migrated or written."""


class InstanceLockedError(ArchiverError):
    """Raised when another ``gws-archiver run`` holds the archive's lock file."""


class SchemaTooNewError(StoreError):
    """Raised when the archive's schema version is newer than this code knows."""


class ArchiveUnreachableError(StoreError):
    """Raised when a PostgreSQL archive's server cannot be reached or refuses us."""


class ForbiddenOperationError(ArchiverError):
    """Raised, before anything is sent, for an operation gws-archiver must never send."""


class TeamRefusedError(ArchiverError):
    """Raised at start when the team-mode supervisor cannot monitor anyone (a role missing)."""
