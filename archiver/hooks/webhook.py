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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

import aiohttp

from archiver import __version__
from archiver.config import WebhookHook, webhook_key
from archiver.config.model import redact_url
from archiver.errors import ArchiverError
from archiver.events import Event
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

    def __init__(self, hook: WebhookHook, *, clock: Callable[[], float] = time.time) -> None:
        self.url = hook.url
        self.timeout_s = hook.timeout_s
        self._keys = [webhook_key(secret.reveal()) for secret in hook.secrets]
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Start the connection pool (kept alive between events)."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": f"gws-archiver/{__version__}"},
        )

    async def close(self) -> None:
        """Close the connection pool; safe to call twice."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def headers(self, event: Event, body: bytes) -> dict[str, str]:
        """The headers of one attempt, signed now."""
        timestamp = int(self._clock())
        return {
            "Content-Type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, event.event_id, timestamp, body),
        }

    async def deliver(self, event: Event) -> Outcome:
        """POST ``event`` once; map the answer onto an outcome."""
        if self._session is None:
            raise ArchiverError("the webhook sink is not open")
        body = event.to_bytes()
        try:
            async with self._session.post(
                self.url, data=body, headers=self.headers(event, body), allow_redirects=False
            ) as response:
                await _drain(response)
                status = response.status
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), cap_s=MAX_RETRY_AFTER_S, now=self._clock()
                )
        except TimeoutError:
            return failed(f"no answer within {self.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            # aiohttp may name the URL; its query may hold a token.
            detail = str(exc).replace(self.url, redact_url(self.url))
            return failed(f"{type(exc).__name__}: {detail}")
        if 200 <= status < 300:
            return DELIVERED
        if status == 410:
            return failed("HTTP 410 Gone: the endpoint asked to be disabled", gone=True)
        return failed(f"HTTP {status}", retry_after_s=retry_after)


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read the answer's body so the connection can be reused, but never more than a bound.

    Only the status and headers matter: a receiver that answers with more than
    ``MAX_DRAINED_BYTES`` (or never stops) has its connection closed instead of being read on.
    """
    drained = 0
    while chunk := await response.content.read(64 * 1024):
        drained += len(chunk)
        if drained > MAX_DRAINED_BYTES:
            response.close()
            return
