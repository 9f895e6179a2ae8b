"""What a GWS server puts on the wire, read defensively: bounded bodies and JSON.

A body larger than ``max_body_bytes`` is refused before it is held in memory, and a body that
is not JSON at all raises :class:`~archiver.errors.UndecodableError`, which the client answers
by reading the same messages in smaller pages. ``Retry-After`` is read by
:func:`archiver.retry_after.parse_retry_after`, capped at ``max_retry_after_s``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import orjson

from archiver.errors import UndecodableError

# A JSON string (kept whole), or the Java ``L`` after the digits of an unquoted number.
_STRING_OR_JAVA_LONG = re.compile(rb'"(?:[^"\\]|\\.)*"|(?<=[0-9])L(?=\s*[,}\]])', re.DOTALL)
# How much of a refused body an error keeps (the malformed table keeps the whole of a small one).
KEPT_BODY_BYTES = 64 * 1024


async def read_body(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The whole body, or UndecodableError as soon as it is known to exceed ``limit`` bytes."""
    length = response.content_length
    if length is not None and length <= limit:
        return await response.read()
    if length is not None:
        raise UndecodableError(
            f"body of {length} bytes exceeds max_body_bytes ({limit})",
            url=url,
            body=b"",
            truncated=True,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            head = b"".join(chunks)[:KEPT_BODY_BYTES]
            raise UndecodableError(
                f"body exceeds max_body_bytes ({limit})", url=url, body=head, truncated=True
            )
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes, url: str) -> Any:
    """Parse a JSON body; UndecodableError if no reading of it is JSON.

    Tolerated on the slow path only: the Java ``L`` after unquoted numbers (never inside
    strings), lone surrogate escapes, invalid UTF-8 (kept as surrogate escapes, which the models
    replace in the columns they fill), integers beyond 64 bits.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first = exc
    repaired = repair_java_longs(body)
    if repaired != body:
        try:
            return orjson.loads(repaired)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(repaired.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        raise UndecodableError(
            f"body is not JSON ({len(body)} bytes): {first}", url=url, body=body
        ) from first


def repair_java_longs(body: bytes) -> bytes:
    """Drop the ``L`` of Java longs written unquoted (``1389261492035L``); strings untouched."""
    if b"L" not in body:
        return body
    return _STRING_OR_JAVA_LONG.sub(
        lambda match: match.group(0) if match.group(0).startswith(b'"') else b"", body
    )
