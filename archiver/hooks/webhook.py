"""Webhooks per the Standard Webhooks specification: signed POSTs of the event JSON.

Each attempt carries ``webhook-id`` (the event id, the same on every attempt, so receivers can
drop duplicates), its own ``webhook-timestamp`` and ``webhook-signature``: ``v1,`` and the
base64 HMAC-SHA256 of ``id.timestamp.body``, once per configured secret, space-separated, so a
receiver rotating its secret accepts either. Any 2xx is success; 410 disables the endpoint;
anything else (3xx included: redirects are not followed) is a failure, retried.

Signing is ``hmac`` from the standard library rather than the ``standardwebhooks`` package: it
is six lines, the package signs one secret at a time from a ``str`` body, and keeping the
official package as the tests' verifier means our signatures are checked by code we did not
write. This is the one place besides the GWS client that speaks HTTP (to receivers, not GWS).

The POSTs go through the daemon's lean kept-alive pool (:mod:`archiver.gws.http1`), not
aiohttp's client: at the live rate (a thousand events a second) aiohttp's request path was most
of a subscriber's CPU. Each request is written whole: a head fixed per sink, the attempt's own
``webhook-*`` headers, the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

from yarl import URL

from archiver import __version__
from archiver.config import WebhookHook, webhook_key
from archiver.config.model import redact_url
from archiver.errors import ArchiverError
from archiver.events import Event
from archiver.gws.http1 import Http1Pool
from archiver.hooks.retry import MAX_RETRY_AFTER_S
from archiver.hooks.sink import DELIVERED, Outcome, Sink, failed
from archiver.retry_after import parse_retry_after

# Of a receiver's answer body, read only so the connection can be reused.
MAX_DRAINED_BYTES = 1024 * 1024


def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per key, space-separated."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, content, hashlib.sha256)).decode() for key in keys
    )


class WebhookSink(Sink):
    """POSTs events to one endpoint."""

    def __init__(
        self,
        hook: WebhookHook,
        *,
        connections: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``connections``: at most this many open to the receiver, one per attempt in flight
        (the dispatcher passes its bound; ``max_in_flight`` by default)."""
        self.url = hook.url
        self.connections = connections or hook.max_in_flight
        self.timeout_s = hook.timeout_s
        self._keys = [webhook_key(secret.reveal()) for secret in hook.secrets]
        self._clock = clock
        self._pool: Http1Pool | None = None
        url = URL(hook.url)
        head = [
            f"POST {url.raw_path_qs} HTTP/1.1",
            f"Host: {url.host_port_subcomponent}",
            f"User-Agent: gws-archiver/{__version__}",
        ]
        if url.user is not None:
            credentials = f"{url.user}:{url.password or ''}".encode()
            head.append(f"Authorization: Basic {base64.b64encode(credentials).decode()}")
        self._head = "\r\n".join(head) + "\r\n"

    async def open(self) -> None:
        """Start the connection pool (kept alive between events)."""
        self._pool = Http1Pool(
            self.url,
            limit=self.connections,
            verify_tls=True,
            connect_timeout_s=self.timeout_s,
            max_body_bytes=MAX_DRAINED_BYTES,
            cut_bodies=True,
        )

    async def close(self) -> None:
        """Close the connection pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def headers(self, event: Event, body: bytes) -> dict[str, str]:
        """The headers of one attempt, signed now."""
        timestamp = int(self._clock())
        return {
            "Content-Type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, event.event_id, timestamp, body),
        }

    def request(self, event: Event, body: bytes) -> bytes:
        """One attempt's whole request, signed now; ValueError if the id cannot be a header."""
        if any(c in event.event_id for c in "\r\n\0"):
            raise ValueError("the event id holds a line break or NUL: it cannot be a header")
        headers = "".join(
            f"{name}: {value}\r\n" for name, value in self.headers(event, body).items()
        )
        return f"{self._head}{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def deliver(self, event: Event) -> Outcome:
        """POST ``event`` once; map the answer onto an outcome."""
        if self._pool is None:
            raise ArchiverError("the webhook sink is not open")
        try:
            request = self.request(event, event.to_bytes())
            answer = await self._pool.send(request, self.url, self.timeout_s)
        except TimeoutError:
            return failed(f"no answer within {self.timeout_s:g} s")
        except (OSError, ValueError) as exc:
            # The error may name the URL; its query may hold a token.
            detail = str(exc).replace(self.url, redact_url(self.url))
            return failed(f"{type(exc).__name__}: {detail}")
        status = answer.status
        if 200 <= status < 300:
            return DELIVERED
        if status == 410:
            return failed("HTTP 410 Gone: the endpoint asked to be disabled", gone=True)
        retry_after = parse_retry_after(
            answer.headers.get("Retry-After"), cap_s=MAX_RETRY_AFTER_S, now=self._clock()
        )
        return failed(f"HTTP {status}", retry_after_s=retry_after)
