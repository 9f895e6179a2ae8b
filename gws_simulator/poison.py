"""The hostile scenario's catalogue of poison messages, each with its expected outcome.

Each entry renders one element of a ``messages`` array for the place it occupies in a log
(its slot) and names what a correct archiver does with it (`hostile.py` has the rules):

- ``archived``: the index and type are usable, so it is a message row at its slot, with the
  fields that cannot be read left empty (or as text) and ``raw_json`` keeping what was sent;
- ``malformed``: no usable index or type, or not an object, or no strict JSON reader can
  decode it: kept raw in ``malformed`` once, its slot passed over, the neighbours archived;
- ``conflict``: a usable index that is already taken by other content (it claims the slot
  before its own): the first content stays, this one is kept in ``conflicts``.

Names are stable: tests and the truth file refer to them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

ARCHIVED = "archived"
MALFORMED = "malformed"
CONFLICT = "conflict"

Render = Callable[[int, str], bytes]  # (slot, session id) -> the element's bytes


@dataclass(frozen=True, slots=True)
class Poison:
    """One catalogue entry: its name, the expected outcome, and its wire form at a slot.

    ``claims_previous`` entries carry the index of the slot before theirs, so they are only
    served right after a healthy message (whose index they then duplicate).
    """

    name: str
    expect: str
    render: Render
    claims_previous: bool = False


def _text(**fields: object) -> Render:
    """A Text message with these fields overriding the healthy ones."""

    def render(index: int, session_id: str) -> bytes:
        element: dict[str, object] = {
            "index": index,
            "type": "Text",
            "text": f"poison {session_id} {index}",
            "from": {"type": "Customer", "nickname": "Customer", "participantId": "c1"},
            "visibility": "All",
            "timestampSeconds": 1_767_225_600_000 + index,
        }
        element.update(fields)
        # The standard library writes what orjson refuses (integers beyond 64 bits, NUL keys).
        return json.dumps(element, separators=(",", ":")).encode()

    return render


def _raw(template: bytes) -> Render:
    """Bytes no JSON library would write: ``{i}`` and ``{s}`` stand for slot and session."""

    def render(index: int, session_id: str) -> bytes:
        return template.replace(b"{i}", str(index).encode()).replace(b"{s}", session_id.encode())

    return render


def _index_as(literal: bytes) -> Render:
    """The healthy Text with its index written as ``literal`` (``%d`` stands for the slot)."""

    def render(index: int, session_id: str) -> bytes:
        healthy = _text()(index, session_id)
        return healthy.replace(
            b'"index":%d' % index, b'"index":' + literal.replace(b"%d", b"%d" % index)
        )

    return render


def _claiming_previous(index: int, session_id: str) -> bytes:
    """A Text that claims the previous slot's index, with other content."""
    return _text(text=f"a second message {index - 1} in {session_id}")(index - 1, session_id)


_BASE = b'"from":{"type":"Customer","nickname":"Customer"},"visibility":"All"'
_STAMP = "timestampSeconds"

CATALOGUE: tuple[Poison, ...] = (
    # Timestamps that cannot be read: archived with sent_at empty.
    Poison(
        "offset_24h", ARCHIVED, _text(**{_STAMP: None}, timestamp="2024-03-01T10:00:00.000+24:00")
    ),
    Poison(
        "offset_minus_24h",
        ARCHIVED,
        _text(**{_STAMP: None}, timestamp="2024-03-01 10:00:00.000-2400"),
    ),
    Poison("offset_99", ARCHIVED, _text(**{_STAMP: None}, timestamp="2024-03-01T10:00:00+99:99")),
    Poison("year_zero", ARCHIVED, _text(**{_STAMP: None}, timestamp="0000-01-01T00:00:00Z")),
    Poison("year_99999", ARCHIVED, _text(**{_STAMP: None}, timestamp="99999-01-01T00:00:00Z")),
    Poison("month_13", ARCHIVED, _text(**{_STAMP: None}, timestamp="2024-13-01T00:00:00Z")),
    Poison("hour_25", ARCHIVED, _text(**{_STAMP: None}, timestamp="2024-03-01 25:61:61.000+0000")),
    Poison("timestamp_number", ARCHIVED, _text(**{_STAMP: None}, timestamp=1_709_287_200)),
    Poison("epoch_huge", ARCHIVED, _text(**{_STAMP: 1e30})),
    Poison("epoch_negative", ARCHIVED, _text(**{_STAMP: -5e15})),
    Poison("epoch_nan_string", ARCHIVED, _text(**{_STAMP: "NaN"})),
    Poison("epoch_infinity_string", ARCHIVED, _text(**{_STAMP: "-Infinity"})),
    # The docs' Java long, quoted: readable (sent_at may be filled).
    Poison("epoch_long_string", ARCHIVED, _text(**{_STAMP: "1389261492035L"})),
    # Jackson with ALLOW_NON_NUMERIC_NUMBERS: not strict JSON, but every lenient reader takes it.
    Poison(
        "epoch_nan_literal",
        ARCHIVED,
        _raw(
            b'{"index":{i},"type":"Text","text":"nan stamp {s}",'
            + _BASE
            + b',"timestampSeconds":NaN}'
        ),
    ),
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
    # An unquoted Java long on the same page as text holding "2L,": the repair must skip strings.
    Poison(
        "java_long_beside_text",
        ARCHIVED,
        _raw(
            b'{"index":{i},"type":"Text","text":"Please send 2L, thanks {s}",'
            b'"timestampSeconds":1389261492035L,' + _BASE + b"}"
        ),
    ),
    # Text that is hard to hold, show or export: archived (replaced or escaped where shown).
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
    Poison("ansi_escapes", ARCHIVED, _text(text="\x1b[2K\x1b[1Afake: Priya: yes, refunded")),
    Poison("line_separators", ARCHIVED, _text(text="ok\u2028Priya: refund confirmed\u2029\x85")),
    Poison("invisible_characters", ARCHIVED, _text(text="\u200b\u200e\ufeff\uffff\U0010ffff")),
    Poison("combining_flood", ARCHIVED, _text(text="Z" + "\u0301" * 10_000)),
    Poison(
        "bidi_nickname",
        ARCHIVED,
        _text(**{"from": {"type": "Customer", "nickname": "\u202eremmaS"}}),
    ),
    Poison("csv_formula", ARCHIVED, _text(text='=HYPERLINK("http://x.invalid","click")')),
    Poison("csv_formula_plus", ARCHIVED, _text(text="+cmd|' /C calc'!A0")),
    Poison("csv_formula_at", ARCHIVED, _text(text="@SUM(1)")),
    Poison("csv_formula_minus", ARCHIVED, _text(text="-2+3+cmd|' /C notepad'!'A1'")),
    Poison(
        "script_text", ARCHIVED, _text(text='<script>alert(1)</script><a href="javascript:x">y</a>')
    ),
    Poison("text_empty", ARCHIVED, _text(text="")),
    Poison("text_number", ARCHIVED, _text(text=12345)),
    Poison("text_list", ARCHIVED, _text(text=[1, "two"])),
    Poison("text_object", ARCHIVED, _text(text={"nested": True})),
    Poison("huge_text", ARCHIVED, _text(text="x" * 1_000_000)),
    # Other fields of the wrong shape or size.
    Poison("from_string", ARCHIVED, _text(**{"from": "Mallory"})),
    Poison("from_null", ARCHIVED, _text(**{"from": None})),
    Poison("from_list", ARCHIVED, _text(**{"from": ["Customer", "Mallory"]})),
    Poison("huge_participant_number", ARCHIVED, _text(**{"from": {"participantId": 10**30}})),
    Poison(
        "huge_nickname",
        ARCHIVED,
        _text(**{"from": {"type": "Customer", "nickname": "N" * 100_000}}),
    ),
    Poison("visibility_number", ARCHIVED, _text(visibility=3)),
    Poison("nul_in_key", ARCHIVED, _text(**{"te\x00xt": "shadow", "\x00": 0})),
    Poison("many_keys", ARCHIVED, _text(**{f"k{n}": n for n in range(5000)})),
    Poison(
        "duplicate_keys",
        ARCHIVED,
        _raw(b'{"index":{i},"type":"Text","text":"first {s}","text":"second {s}",' + _BASE + b"}"),
    ),
    # Readers keep the last of duplicate keys: the usable index wins.
    Poison(
        "duplicate_index_key",
        ARCHIVED,
        _raw(
            b'{"index":"bogus","index":{i},"type":"Text","text":"two indices {s}",' + _BASE + b"}"
        ),
    ),
    # Index and type written oddly but usable.
    Poison("index_as_string", ARCHIVED, _index_as(b'"%d"')),
    Poison("index_java_long_string", ARCHIVED, _index_as(b'"%dL"')),
    Poison("index_as_float", ARCHIVED, _index_as(b"%d.0")),
    Poison("index_exponent", ARCHIVED, _index_as(b"%de0")),
    Poison("unknown_type", ARCHIVED, _text(type="Hologram")),
    Poison("type_lowercase", ARCHIVED, _text(type="text")),
    # A usable index that is already taken: the first content stays.
    Poison("duplicate_index", CONFLICT, _claiming_previous, claims_previous=True),
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
    Poison("index_fraction", MALFORMED, _index_as(b"%d.5")),
    Poison("index_overflow_float", MALFORMED, _index_as(b"1e400")),
    Poison("index_nan_literal", MALFORMED, _index_as(b"NaN")),
    Poison("index_bool", MALFORMED, _text(index=True)),
    Poison("index_null", MALFORMED, _text(index=None)),
    Poison("index_object", MALFORMED, _text(index={"value": 1})),
    Poison(
        "index_missing",
        MALFORMED,
        _raw(b'{"type":"Text","text":"no index {s} {i}",' + _BASE + b"}"),
    ),
    Poison(
        "index_4400_digit_literal",
        MALFORMED,
        _raw(b'{"index":' + b"7" * 4400 + b',"type":"Text","text":"{s} {i}"}'),
    ),
    Poison("type_missing", MALFORMED, _raw(b'{"index":{i},"text":"no type {s}"}')),
    Poison("type_empty", MALFORMED, _text(type="")),
    Poison("type_number", MALFORMED, _text(type=17)),
    Poison("type_list", MALFORMED, _text(type=["Text"])),
    Poison("type_huge", MALFORMED, _text(type="T" * 5000)),
    Poison("element_number", MALFORMED, _raw(b"4200{i}")),
    Poison("element_string", MALFORMED, _raw(b'"message {s} {i}"')),
    Poison("element_null", MALFORMED, _raw(b"null")),
    Poison("element_bool", MALFORMED, _raw(b"true")),
    Poison("element_list", MALFORMED, _raw(b'[{i},"{s}"]')),
    Poison("element_empty_object", MALFORMED, _raw(b"{}")),
    # Deeper than any JSON reader goes (orjson stops at 1,024, the standard library at its
    # recursion limit): the page cannot be decoded until it is read down to this message.
    Poison(
        "deep_nesting",
        MALFORMED,
        _raw(
            b'{"index":{i},"type":"Text","text":"{s}","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
        ),
    ),
)
POISON_BY_NAME = {poison.name: poison for poison in CATALOGUE}
