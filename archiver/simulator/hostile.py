"""The hostile scenario: a catalogue of poison payloads served among healthy sessions.

``simulate --hostile`` (``SimulatorOptions(hostile=True)`` in process) turns it on. Every
message keeps its place in its session's log, but about one in eight is served as a poison
entry from the catalogue below instead of its healthy form; each session gets each entry at
most once, so a correct archiver records each poison entry of a session once. Session lists
carry poison entries that name no usable session, and a small share of message reads answer
with odd headers (``Retry-After: inf`` on a 503, a lying ``Content-Type``, a 4 kB header).

The truth says what a correct archiver does with each message: ``poison`` names the catalogue
entry (absent for healthy messages) and ``expect`` is ``archived`` (the index and type are
usable: a message row at that index, with the unreadable fields empty) or ``malformed`` (kept
raw in the ``malformed`` table, its place in the log passed over). ``index`` stays the message's
true place in the log, whatever the poison claims.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import orjson

ARCHIVED = "archived"
MALFORMED = "malformed"
SHARE = 0.125  # of messages served as poison
ODD_HEADER_SHARE = 0.02  # of message reads answered with odd headers


@dataclass(frozen=True, slots=True)
class Poison:
    """One catalogue entry: its name, the expected outcome, and its wire form at an index."""

    name: str
    expect: str
    render: Callable[[int, str], bytes]  # (index, session id) -> the element's bytes


def _text(**fields: object) -> Callable[[int, str], bytes]:
    """A Text message with these fields overriding the healthy ones."""

    def render(index: int, session_id: str) -> bytes:
        element: dict[str, object] = {
            "index": index,
            "type": "Text",
            "text": f"poison {session_id} {index}",
            "from": {"type": "Client", "nickname": "Customer", "participantId": "c1"},
            "visibility": "All",
            "timestampSeconds": 1_767_225_600_000 + index,
        }
        element.update(fields)
        # The standard library writes what orjson refuses (integers beyond 64 bits).
        return json.dumps(element, separators=(",", ":")).encode()

    return render


def _raw(template: bytes) -> Callable[[int, str], bytes]:
    """Bytes no JSON library would write: ``{i}`` and ``{s}`` stand for index and session."""

    def render(index: int, session_id: str) -> bytes:
        return template.replace(b"{i}", str(index).encode()).replace(b"{s}", session_id.encode())

    return render


_BASE = b'"from":{"type":"Client","nickname":"Customer"},"visibility":"All"'
CATALOGUE: tuple[Poison, ...] = (
    # Fields that cannot be read: the message is archived with them empty.
    Poison(
        "offset_24h",
        ARCHIVED,
        _text(timestampSeconds=None, timestamp="2024-03-01T10:00:00.000+24:00"),
    ),
    Poison(
        "offset_99", ARCHIVED, _text(timestampSeconds=None, timestamp="2024-03-01T10:00:00+99:99")
    ),
    Poison("year_zero", ARCHIVED, _text(timestampSeconds=None, timestamp="0000-01-01T00:00:00Z")),
    Poison("month_13", ARCHIVED, _text(timestampSeconds=None, timestamp="2024-13-01T00:00:00Z")),
    Poison("epoch_huge", ARCHIVED, _text(timestampSeconds=1e30)),
    Poison("epoch_negative", ARCHIVED, _text(timestampSeconds=-5e15)),
    Poison("epoch_nan_string", ARCHIVED, _text(timestampSeconds="NaN")),
    Poison(
        "epoch_bigint",
        ARCHIVED,
        _raw(
            b'{"index":{i},"type":"Text","text":"big epoch {s} {i}","timestampSeconds":1'
            + b"0" * 400
            + b","
            + _BASE
            + b"}"
        ),
    ),
    Poison(
        "java_long_beside_text",
        ARCHIVED,
        _raw(
            b'{"index":{i},"type":"Text","text":"Please send 2L, thanks {s}",'
            b'"timestampSeconds":1389261492035L,' + _BASE + b"}"
        ),
    ),
    Poison(
        "lone_surrogate",
        ARCHIVED,
        _raw(b'{"index":{i},"type":"Text","text":"half \\ud83d emoji {s}",' + _BASE + b"}"),
    ),
    Poison(
        "invalid_utf8",
        ARCHIVED,
        _raw(b'{"index":{i},"type":"Text","text":"bad \xff\xfe bytes {s}",' + _BASE + b"}"),
    ),
    Poison("nul_text", ARCHIVED, _text(text="nul \x00 inside")),
    Poison("forged_lines", ARCHIVED, _text(text="ok\r\nPriya: I confirm the refund")),
    Poison("ansi_escapes", ARCHIVED, _text(text="\x1b[2K\x1b[1APriya: yes, refunded")),
    Poison(
        "bidi_nickname", ARCHIVED, _text(**{"from": {"type": "Client", "nickname": "\u202eremmaS"}})
    ),
    Poison("csv_formula", ARCHIVED, _text(text='=HYPERLINK("http://x.invalid","click")')),
    Poison(
        "script_text", ARCHIVED, _text(text='<script>alert(1)</script><a href="javascript:x">y</a>')
    ),
    Poison("text_number", ARCHIVED, _text(text=12345)),
    Poison("text_list", ARCHIVED, _text(text=[1, "two"])),
    Poison("text_object", ARCHIVED, _text(text={"nested": True})),
    Poison("huge_text", ARCHIVED, _text(text="x" * 1_000_000)),
    Poison("from_string", ARCHIVED, _text(**{"from": "Mallory"})),
    Poison("huge_participant_number", ARCHIVED, _text(**{"from": {"participantId": 10**30}})),
    Poison(
        "index_as_string",
        ARCHIVED,
        lambda i, s: _text()(i, s).replace(b'"index":%d' % i, b'"index":"%d"' % i),
    ),
    Poison(
        "index_as_float",
        ARCHIVED,
        lambda i, s: _text()(i, s).replace(b'"index":%d' % i, b'"index":%d.0' % i),
    ),
    Poison("unknown_type", ARCHIVED, _text(type="Hologram")),
    Poison(
        "duplicate_keys",
        ARCHIVED,
        _raw(b'{"index":{i},"type":"Text","text":"first {s}","text":"second {s}",' + _BASE + b"}"),
    ),
    # No usable index or type, or not an object: kept raw in `malformed`.
    Poison("index_5000_digits", MALFORMED, _text(index="9" * 5000)),
    Poison(
        "index_2_63",
        MALFORMED,
        _raw(b'{"index":9223372036854775808,"type":"Text","text":"{s} {i}"}'),
    ),
    Poison("index_far_ahead", MALFORMED, _text(index=1_389_261_492_035)),
    Poison("index_negative", MALFORMED, _text(index=-7)),
    Poison("index_zero", MALFORMED, _text(index=0)),
    Poison(
        "index_fraction",
        MALFORMED,
        lambda i, s: _text()(i, s).replace(b'"index":%d' % i, b'"index":%d.5' % i),
    ),
    Poison("index_bool", MALFORMED, _text(index=True)),
    Poison("index_null", MALFORMED, _text(index=None)),
    Poison("index_object", MALFORMED, _text(index={"value": 1})),
    Poison("type_missing", MALFORMED, _raw(b'{"index":{i},"text":"no type {s}"}')),
    Poison("type_number", MALFORMED, _text(type=17)),
    Poison("type_list", MALFORMED, _text(type=["Text"])),
    Poison("type_huge", MALFORMED, _text(type="T" * 5000)),
    Poison("element_number", MALFORMED, _raw(b"4200{i}")),
    Poison("element_string", MALFORMED, _raw(b'"message {s} {i}"')),
    Poison("element_list", MALFORMED, _raw(b'[{i},"{s}"]')),
    Poison(
        "deep_nesting",
        MALFORMED,
        _raw(b'{"index":{i},"type":"Text","text":"{s}","x":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ),
    Poison(
        "index_4400_digit_literal",
        MALFORMED,
        _raw(b'{"index":' + b"7" * 4400 + b',"type":"Text","text":"{s} {i}"}'),
    ),
)


class Poisoner:
    """Decides, by seed, which messages are served as poison, each entry once per session."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"hostile/{seed}")
        self._left: dict[str, list[Poison]] = {}

    def choose(self, session_id: str, index: int) -> Poison | None:
        """The poison for this message, or None to serve it healthy."""
        if index < 2 or self._rng.random() >= SHARE:
            return None
        left = self._left.get(session_id)
        if left is None:
            left = self._left[session_id] = list(CATALOGUE)
            self._rng.shuffle(left)
        return left.pop() if left else None

    def odd_headers(self) -> tuple[int, dict[str, str]] | None:
        """Now and then, a status and headers no polite server sends (None: answer normally)."""
        if self._rng.random() >= ODD_HEADER_SHARE:
            return None
        return self._rng.choice(
            [
                (503, {"Retry-After": "inf"}),
                (503, {"Retry-After": "-1"}),
                (503, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}),
                (429, {"Retry-After": "99999999999999999999"}),
                (429, {"Retry-After": "soon, maybe"}),
                (200, {"Content-Type": "text/html; charset=utf-8"}),
                (200, {"X-Padding": "p" * 4000}),
            ]
        )


def session_list_poison(account: str) -> list[bytes]:
    """Session list entries that name no usable session (each account's its own)."""
    deep = b"[" * 600 + b"]" * 600  # deeper than orjson writes, not than it reads
    return [
        orjson.dumps({"state": "Chatting", "note": f"no id for {account}"}),
        orjson.dumps({"id": 12345, "note": account}),
        orjson.dumps({"id": "", "note": account}),
        orjson.dumps({"id": ["S"], "note": account}),
        b'"just a string for ' + account.encode() + b'"',
        b'{"id":{"deep":' + deep + b'},"note":"' + account.encode() + b'"}',
    ]
