"""The hostile scenario: poison served among healthy sessions, and the truth that marks it.

Starting it
    ``gws-archiver simulate --hostile --truth truth.jsonl`` on the command line. In process::

        from gws_simulator import Hostility, Scenario, Simulator, SimulatorOptions

        options = SimulatorOptions(agents=2, seed=5, scenario=Scenario(sessions=20), hostile=True)
        async with Simulator(options) as sim:  # serving on sim.base_url (127.0.0.1, free port)
            await sim.scenario_finished()
            truth = sim.truth()  # the --truth records, poison marked

    ``hostile=Hostility(message_share=0.5, odd_response_every=10)`` serves more of it;
    ``hostile=True`` is ``Hostility()``. The same seed serves the same poison at the same places.

What is served
    Messages: about one in eight (``message_share``) from index 2 on is served as an entry of
    the catalogue in `poison.py` instead of its healthy form. It keeps its place (slot) in the
    log, so the healthy messages after it follow at their usual indices. Entries are dealt
    from one shuffled deck for the whole run, so every entry is served once before any is
    served again, and no session gets the same entry twice.
    Session lists (``?fields=*``): every response ends with the `LIST_CATALOGUE` entries, none
    naming a usable session, each holding its account's name. And now and then
    (``listed_share`` per entry) a real session's entry is served with poisoned fields
    (`LISTED_POISON`), among them a ``userData`` 10,000 arrays deep that makes that one list
    response undecodable.
    Responses: every ``odd_response_every``-th messages or list read is answered the way a proxy
    or load balancer might (`ODD_RESPONSES`): ``Retry-After: inf`` on a 503, lying or duplicate
    headers, a 16 kB header, a 200 HTML page, a BOM. The reads in between are answered normally.

The truth (``Simulator.truth()``, ``--truth``, ``GET /_sim/truth``)
    One record per message created, as in every scenario; ``type``, ``text`` and
    ``visibility`` are the healthy message's, so a poison record describes what was *not*
    served. Poison records add ``poison`` (the entry's name), ``expect`` (below) and ``slot``
    (its place in the log; ``index`` holds the same number whatever the poison claims); a
    ``conflict`` record adds ``claims``, the index it claims. Healthy records have no
    ``poison`` key.

What a correct archiver does (``expect``)
    ``archived``: the index and type are usable (an integer, an integral float, digits in a
    string; a type string, lower case or unknown included), so the message is archived at its
    slot; a field that cannot be read (timestamp, text, ``from``) is left empty or kept as text,
    never the reason to refuse the message. ``malformed``: no usable index or type, not an
    object, or beyond every JSON reader (nesting 10,000 deep, an index of ``1e400``): kept raw
    in ``malformed`` once, no message row at its slot, and the messages around it archived.
    ``conflict``: it duplicates the index of the healthy message before it: that message keeps
    its content and this one is kept in ``conflicts``. List entries of `LIST_CATALOGUE` are kept
    raw in ``malformed`` once per account; a real session whose listing was poisoned is archived
    like any other. An odd response is one failed poll, retried; nothing ever stops archiving.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gws_simulator.poison import ARCHIVED, CATALOGUE, CONFLICT, MALFORMED, Poison

__all__ = [
    "ARCHIVED",
    "CATALOGUE",
    "CONFLICT",
    "LISTED_POISON",
    "LIST_CATALOGUE",
    "MALFORMED",
    "ODD_RESPONSES",
    "Hostility",
    "ListedPoison",
    "OddResponse",
    "Poison",
    "Poisoner",
    "session_list_poison",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Hostility:
    """How much poison the hostile scenario serves.

    Attributes:
        message_share: probability that a message from index 2 on is served as poison.
        odd_response_every: every n-th messages or session-list read gets an odd response
            (0: never).
        listed_share: probability that a real session's entry in a list response is served
            with poisoned fields.
    """

    message_share: float = 0.125
    odd_response_every: int = 50
    listed_share: float = 0.05

    def __post_init__(self) -> None:
        for share in (self.message_share, self.listed_share):
            if not 0.0 <= share <= 1.0:
                raise ValueError("hostile shares must be within 0..1")
        if self.odd_response_every < 0:
            raise ValueError("odd_response_every must be >= 0")


@dataclass(frozen=True, slots=True)
class OddResponse:
    """A response no polite server sends, for a messages or session-list read.

    ``headers`` are added in order (a name may repeat) after the JSON content type, unless they
    bring their own ``Content-Type``. ``body`` is ``same`` (the real answer), ``status`` (a
    statusCode 1 reply), ``html``, ``empty``, ``bom`` (the real answer after a UTF-8 BOM) or
    ``null_items`` (the envelope with its array as null).
    """

    name: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: str = "same"


ODD_RESPONSES: tuple[OddResponse, ...] = (
    OddResponse("retry_after_inf", 503, (("Retry-After", "inf"),), "status"),
    OddResponse("retry_after_negative", 503, (("Retry-After", "-1"),), "status"),
    OddResponse(
        "retry_after_year_9999", 503, (("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),), "status"
    ),
    OddResponse("retry_after_huge", 429, (("Retry-After", "99999999999999999999"),), "status"),
    OddResponse("retry_after_garbage", 429, (("Retry-After", "soon, maybe"),), "status"),
    OddResponse("retry_after_twice", 503, (("Retry-After", "1"), ("Retry-After", "inf")), "status"),
    OddResponse("content_type_html", 200, (("Content-Type", "text/html; charset=utf-8"),)),
    OddResponse(
        "content_type_twice",
        200,
        (("Content-Type", "application/json"), ("Content-Type", "text/html")),
    ),
    OddResponse("charset_utf16", 200, (("Content-Type", "application/json; charset=utf-16"),)),
    OddResponse("content_encoding_lie", 200, (("Content-Encoding", "gzip"),)),
    OddResponse("header_4k", 200, (("X-Padding", "p" * 4000),)),
    # Beyond the 8,190 bytes aiohttp's client reads of one header by default.
    OddResponse("header_16k", 200, (("X-Padding", "p" * 16_000),)),
    # A load balancer handing the client another backend's servlet session.
    OddResponse("cookie_reset", 200, (("Set-Cookie", "JSESSIONID=FOREIGN0000; Path=/"),)),
    OddResponse("waf_page_200", 200, (("Content-Type", "text/html"),), "html"),
    OddResponse("empty_200", 200, (), "empty"),
    OddResponse("bom_prefix", 200, (), "bom"),
    OddResponse("null_items", 200, (), "null_items"),
)
WAF_PAGE = b"<html><head><title>Request Rejected</title></head><body>Support ID: 1</body></html>"


def _entry(**fields: object) -> Callable[[str], bytes]:
    def render(account: str) -> bytes:
        return json.dumps({**fields, "note": f"hostile entry for {account}"}).encode()

    return render


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@dataclass(frozen=True, slots=True)
class ListPoison:
    """A session-list entry naming no usable session; rendered per account (distinct bytes)."""

    name: str
    render: Callable[[str], bytes]


LIST_CATALOGUE: tuple[ListPoison, ...] = (
    ListPoison(
        "id_missing",
        lambda account: (
            b'{"state":{"name":"Chatting"},"participants":"Customer, Agent",'
            b'"userData":' + _deep(600) + b',"note":"' + account.encode() + b'"}'
        ),
    ),
    ListPoison(
        "id_number", lambda account: b'{"id":%d,"state":"Chatting"}' % zlib.crc32(account.encode())
    ),
    ListPoison("id_null", _entry(id=None, state="Chatting")),
    ListPoison("id_empty", _entry(id="")),
    ListPoison("id_whitespace", _entry(id="   ")),
    ListPoison("id_list", _entry(id=["S"])),
    ListPoison("id_object", _entry(id={"value": "0000Na9B26EF002G"})),
    ListPoison("id_nul", _entry(id="0000Na9B\x0026EF002G")),
    ListPoison("id_lone_surrogate", _entry(id="0000\ud800Na9B26EF")),
    ListPoison("id_too_long", _entry(id="0" * 2000)),
    # Deeper than orjson writes (255), not than it reads (1,024).
    ListPoison(
        "id_deep",
        lambda account: b'{"id":{"deep":' + _deep(600) + b'},"note":"' + account.encode() + b'"}',
    ),
    ListPoison("entry_string", lambda account: b'"just a string for ' + account.encode() + b'"'),
    ListPoison("entry_number", lambda account: b"%d" % zlib.crc32(account.encode())),
    ListPoison("entry_list", lambda account: b'["' + account.encode() + b'",1]'),
)


def session_list_poison(account: str) -> list[bytes]:
    """The `LIST_CATALOGUE` entries as `account`'s list serves them (each kept once)."""
    return [poison.render(account) for poison in LIST_CATALOGUE]


@dataclass(frozen=True, slots=True)
class ListedPoison:
    """Poisoned fields for a real session's list entry; the session stays archivable."""

    name: str
    fields: dict[str, Any]


_DEEP_MARK = "\x00deep\x00"  # stands for nesting as deep as the number after it
_DEEP_MARK_JSON = json.dumps(_DEEP_MARK).encode()[:-1]  # its JSON form, opening quote included
LISTED_POISON: tuple[ListedPoison, ...] = (
    ListedPoison("state_object", {"state": {"name": "Chatting", "since": 0}}),
    ListedPoison("state_number", {"state": 3}),
    ListedPoison("participants_string", {"participants": "Customer, Agent"}),
    ListedPoison("participants_huge_number", {"participants": [{"participantId": 10**40}]}),
    ListedPoison("capabilities_object", {"capabilities": {"Complete": True}}),
    ListedPoison("user_data_list", {"userData": ["not", "an", "object"]}),
    ListedPoison("user_data_huge_number", {"userData": {"balance": 10**400}}),
    ListedPoison("user_data_deep_readable", {"userData": {"x": _DEEP_MARK + "900"}}),
    # Beyond every reader: this list response cannot be decoded at all.
    ListedPoison("user_data_deep_10000", {"userData": {"x": _DEEP_MARK + "10000"}}),
)


def render_listed(resource: dict[str, Any], poison: ListedPoison) -> bytes:
    """A session resource with the poison's fields in place of its own."""
    body = json.dumps({**resource, **poison.fields}, separators=(",", ":")).encode()
    marker = _DEEP_MARK_JSON
    while marker in body:
        start = body.index(marker)
        end = body.index(b'"', start + len(marker))
        body = body[:start] + _deep(int(body[start + len(marker) : end])) + body[end + 1 :]
    return body


class Poisoner:
    """Decides, by seed, what is served as poison: messages, list entries, odd responses.

    Each kind draws from its own seeded generator, so how often a client reads lists or pages
    never changes which messages are poison.
    """

    def __init__(self, seed: int, hostility: Hostility) -> None:
        self.hostility = hostility
        self._rng = random.Random(f"hostile/{seed}")
        self._lists = random.Random(f"hostile-lists/{seed}")
        self._responses = random.Random(f"hostile-responses/{seed}")
        self._deck: list[Poison] = []
        self._odd_deck: list[OddResponse] = []
        self._used: dict[str, set[str]] = {}
        self._last_slot: dict[str, int] = {}
        self._reads = 0

    def choose(self, session_id: str, slot: int) -> Poison | None:
        """The poison for the message at `slot` of a session, or None to serve it healthy."""
        if slot < 2 or self._rng.random() >= self.hostility.message_share:
            return None
        if not self._deck:
            self._deck = _shuffled(self._rng, CATALOGUE)
        used = self._used.setdefault(session_id, set())
        after_poison = self._last_slot.get(session_id) == slot - 1
        position = next(
            (
                number
                for number, poison in enumerate(self._deck)
                if poison.name not in used and not (poison.claims_previous and after_poison)
            ),
            None,
        )
        if position is None:
            return None
        poison = self._deck.pop(position)
        used.add(poison.name)
        self._last_slot[session_id] = slot
        return poison

    def forget(self, session_id: str) -> None:
        """Drop what is remembered of a session that left the world."""
        self._used.pop(session_id, None)
        self._last_slot.pop(session_id, None)

    def odd_response(self) -> OddResponse | None:
        """For one messages or list read: the odd response to give, or None to answer normally."""
        every = self.hostility.odd_response_every
        if not every:
            return None
        self._reads += 1
        if self._reads % every:
            return None
        if not self._odd_deck:
            self._odd_deck = _shuffled(self._responses, ODD_RESPONSES)
        return self._odd_deck.pop()

    def listed(self) -> ListedPoison | None:
        """For one real session's entry in a list response: its poison, or None."""
        if self._lists.random() >= self.hostility.listed_share:
            return None
        return self._lists.choice(LISTED_POISON)


def _shuffled(rng: random.Random, items: Sequence[T]) -> list[T]:
    deck = list(items)
    rng.shuffle(deck)
    return deck
