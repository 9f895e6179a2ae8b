"""The Bayeux message format: POST bodies, reply skeletons, advice and channel names.

Channel globbing as the Bayeux spec defines it: a trailing `*` matches one segment, `**` any
depth, so `/v2/me/*` matches `/v2/me/smssessions` but not `/v2/me/a/b`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

BROWSER_COOKIE = "BAYEUX_BROWSER"
CONNECTION_TYPE = "long-polling"
UNKNOWN_CLIENT = "402::Unknown client"
HANDSHAKE_ADVICE: dict[str, Any] = {"reconnect": "handshake", "interval": 0}
MULTIPLE_CLIENTS_ADVICE: dict[str, Any] = {
    "reconnect": "retry",
    "interval": 2000,
    "multiple-clients": True,
}
NONE_ADVICE: dict[str, Any] = {"reconnect": "none"}


@lru_cache(maxsize=64)
def matching_names(channel: str) -> frozenset[str]:
    """Every subscription that matches `channel`: itself, `<parent>/*`, `<ancestor>/**`."""
    segments = channel.split("/")[1:]
    prefixes = ["/".join(["", *segments[:depth]]) for depth in range(len(segments))]
    return frozenset({channel, prefixes[-1] + "/*", *(prefix + "/**" for prefix in prefixes)})


def valid_name(name: str) -> bool:
    """A channel name or pattern: `/a/b`, `/a/*`, `/a/**` (wildcards only as the last segment)."""
    head, *segments = name.split("/")
    if head or not segments:
        return False
    *parents, last = segments
    if not all(segment and "*" not in segment for segment in parents):
        return False
    return bool(last) and ("*" not in last or last in ("*", "**"))


def subscription_error(names: list[Any]) -> str | None:
    """The Bayeux error for a bad subscription list, or None when all names are allowed."""
    if not names:
        return "400::Missing subscription"
    for name in names:
        if not isinstance(name, str):
            return "400::Missing subscription"
        if name == "/meta" or name.startswith("/meta/"):
            return f"403:{name}:Forbidden channel"
        if not valid_name(name):
            return f"400:{name}:Invalid channel"
    return None


def reply_to(message: dict[str, Any]) -> dict[str, Any]:
    """A reply skeleton echoing the request's `id` and `channel`."""
    reply: dict[str, Any] = {"id": message["id"]} if "id" in message else {}
    reply["channel"] = message["channel"]
    return reply


def client_timeout_s(message: dict[str, Any]) -> float | None:
    """The connect's own `advice.timeout` in seconds, if it sent a usable one."""
    advice = message.get("advice")
    timeout = advice.get("timeout") if isinstance(advice, dict) else None
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout >= 0:
        return timeout / 1000
    return None


def parse_messages(body: bytes) -> list[dict[str, Any]] | None:
    """The messages of a POST body, or None when it breaks the protocol."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    messages = payload if isinstance(payload, list) else [payload]
    if not messages or not all(
        isinstance(message, dict) and isinstance(message.get("channel"), str)
        for message in messages
    ):
        return None
    # A handshake must travel alone (CometD answers a batched one as a protocol violation).
    if len(messages) > 1 and any(m["channel"] == "/meta/handshake" for m in messages):
        return None
    return messages
