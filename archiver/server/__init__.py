"""The optional local HTTP server: health, readiness, Prometheus metrics, the SSE stream and
the web view (search, sessions, live, conversations).

With ``gws_simulator`` it is the only code that imports ``aiohttp.web``.
"""

from archiver.server.app import StatusServer

__all__ = ["StatusServer"]
