"""The hostile scenario over real HTTP: every poison served at its slot, marked in the truth.

Served bytes are read one message at a time (``startIndex=N&count=1``) with plain aiohttp and
judged by the rule of ``gws_simulator/hostile.py``, written out again here so the catalogue's
``expect`` cannot drift from it: usable index and type at the slot -> archived, the previous
slot's index -> conflict, anything else -> malformed.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gws_simulator import Hostility, Scenario, Simulator, SimulatorOptions
from gws_simulator.cli import add_arguments, options_from
from gws_simulator.hostile import (
    CATALOGUE,
    LIST_CATALOGUE,
    LISTED_POISON,
    ODD_RESPONSES,
    session_list_poison,
)

# Enough poison draws (about 20 a session) to deal the whole catalogue more than once.
SCENARIO = Scenario(
    sessions=8, concurrent_per_agent=2, messages=(40, 40), interval_s=0.001, linger_s=60
)
MESSAGES_ONLY = Hostility(message_share=0.5, odd_response_every=0, listed_share=0.0)
PREFIX = b'{"statusCode":0,"messages":['
SUFFIX = b"]}"
_JAVA_LONG = re.compile(r'("(?:[^"\\]|\\.)*")|(?<=\d)L(?=\s*[,}\]])', re.DOTALL)


def auth(account: str) -> dict[str, str]:
    """Basic credentials of a simulated agent."""
    return {"Authorization": "Basic " + base64.b64encode(f"{account}:password".encode()).decode()}


@dataclass
class Served:
    """A finished hostile run: its truth (read over HTTP) and each slot's served bytes."""

    truth: list[dict[str, Any]]
    elements: dict[tuple[str, int], bytes]
    stats: dict[str, Any]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client that reads long headers and leaves bodies as they are."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, max_field_size=32_768, auto_decompress=False
    ) as session:
        yield session


async def read_truth(http: aiohttp.ClientSession, base_url: str) -> list[dict[str, Any]]:
    async with http.get(f"{base_url}/_sim/truth") as response:
        return [orjson.loads(line) for line in (await response.read()).splitlines()]


async def read_element(
    http: aiohttp.ClientSession, base_url: str, account: str, session_id: str, slot: int
) -> bytes:
    """The bytes of the one message at `slot`, TranscriptSaveDone (riding along) cut off."""
    url = f"{base_url}/api/v2/me/smssessions/{session_id}/messages"
    params = {"startIndex": str(slot), "count": "1"}
    async with http.get(url, params=params, headers=auth(account)) as response:
        assert response.status == 200
        body = await response.read()
    assert body.startswith(PREFIX)
    assert body.endswith(SUFFIX)
    element = body[len(PREFIX) : -len(SUFFIX)]
    tail = element.rfind(b',{"index":-1,')
    return element[:tail] if tail > 0 else element


async def serve(http: aiohttp.ClientSession, seed: int) -> Served:
    """Play the hostile scenario to its end, then read every slot of every session."""
    options = SimulatorOptions(agents=2, seed=seed, scenario=SCENARIO, hostile=MESSAGES_ONLY)
    async with Simulator(options) as sim:
        await sim.scenario_finished()
        truth = await read_truth(http, sim.base_url)
        elements = {}
        for record in truth:
            if record["index"] >= 1:
                key = (record["session_id"], record["index"])
                elements[key] = await read_element(http, sim.base_url, record["account"], *key)
        return Served(truth, elements, sim.stats())


def lenient(element: bytes) -> Any:
    """JSON as a tolerant reader takes it: invalid UTF-8 escaped, Java ``L`` dropped, NaN."""
    text = element.decode("utf-8", "surrogateescape")
    return json.loads(_JAVA_LONG.sub(lambda match: match.group(1) or "", text))


def usable_index(value: object) -> int | None:
    """An integer, an integral float or digits in a string (``"5"``, ``"5L"``); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        digits = value.strip().removesuffix("L")
        return int(digits) if re.fullmatch(r"-?\d{1,19}", digits) else None
    return value if isinstance(value, int) else None


def outcome(element: bytes, slot: int) -> str:
    """What a correct archiver makes of the element served at `slot`."""
    try:
        obj = lenient(element)
    except (ValueError, RecursionError):
        return "malformed"
    if not isinstance(obj, dict):
        return "malformed"
    index = usable_index(obj.get("index"))
    kind = obj.get("type")
    if not isinstance(kind, str) or not 0 < len(kind) <= 1024 or index is None:
        return "malformed"
    if index == slot:
        return "archived"
    return "conflict" if index == slot - 1 else "malformed"


def _too_deep(element: bytes) -> bool:
    try:
        lenient(element)
    except RecursionError:
        return True
    return False


def _not_utf8(element: bytes) -> bool:
    try:
        element.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _field(name: str, check: Callable[[Any], bool]) -> Callable[[bytes], bool]:
    return lambda element: check(lenient(element).get(name))


def _text(check: Callable[[str], bool]) -> Callable[[bytes], bool]:
    return _field("text", lambda text: isinstance(text, str) and check(text))


def _stamp(check: Callable[[Any], bool]) -> Callable[[bytes], bool]:
    return _field("timestampSeconds", check)


# The cases issue 12 names, checked on the served bytes (not on how the simulator built them).
LOOKS: dict[str, Callable[[bytes], bool]] = {
    "offset_24h": lambda e: b"+24:00" in e,
    "offset_minus_24h": lambda e: b"-2400" in e,
    "offset_99": lambda e: b"+99:99" in e,
    "year_zero": lambda e: b'"0000-01-01' in e,
    "year_99999": lambda e: b'"99999-01-01' in e,
    "month_13": lambda e: b'"2024-13-' in e,
    "epoch_huge": _stamp(lambda value: value == 1e30),
    "epoch_negative": _stamp(lambda value: value < 0),
    "epoch_nan_string": _stamp(lambda value: value == "NaN"),
    "epoch_long_string": _stamp(lambda value: value == "1389261492035L"),
    "epoch_nan_literal": lambda e: b":NaN}" in e,
    "index_5000_digits": _field("index", lambda value: value == "9" * 5000),
    "index_2_63": _field("index", lambda value: value >= 2**63),
    "index_far_ahead": _field("index", lambda value: value == 1_389_261_492_035),
    "index_negative": _field("index", lambda value: value < 0),
    "index_as_float": _field("index", lambda value: isinstance(value, float)),
    "index_fraction": _field("index", lambda value: value % 1 == 0.5),
    "index_bool": _field("index", lambda value: value is True),
    "index_null": lambda e: b'"index":null' in e,
    "index_object": _field("index", lambda value: isinstance(value, dict)),
    "type_missing": lambda e: "type" not in lenient(e),
    "type_number": _field("type", lambda value: isinstance(value, int)),
    "type_list": _field("type", lambda value: isinstance(value, list)),
    "type_huge": _field("type", lambda value: len(value) >= 5000),
    "unknown_type": _field("type", lambda value: value == "Hologram"),
    "text_number": _field("text", lambda value: isinstance(value, int)),
    "text_list": _field("text", lambda value: isinstance(value, list)),
    "text_object": _field("text", lambda value: isinstance(value, dict)),
    "huge_text": _text(lambda text: len(text) >= 1_000_000),
    "lone_surrogate": lambda e: re.search(rb"\\ud83d(?!\\ud[c-f])", e) is not None,
    "nul_text": _text(lambda text: "\x00" in text),
    "forged_lines": _text(lambda text: "\r\nPriya:" in text),
    "ansi_escapes": _text(lambda text: text.startswith("\x1b[2K\x1b[1A")),
    "java_long_beside_text": lambda e: b"2L," in e and b":1389261492035L," in e,
    "csv_formula": _text(lambda text: text.startswith("=HYPERLINK(")),
    "csv_formula_plus": _text(lambda text: text.startswith("+cmd")),
    "csv_formula_at": _text(lambda text: text == "@SUM(1)"),
    "deep_nesting": lambda e: b"[" * 10_000 in e and _too_deep(e),
    "invalid_utf8": lambda e: b"\xff\xfe" in e and _not_utf8(e),
    "element_number": lambda e: isinstance(lenient(e), int),
    "element_string": lambda e: isinstance(lenient(e), str),
    "element_null": lambda e: lenient(e) is None,
    "element_list": lambda e: isinstance(lenient(e), list),
    "from_string": _field("from", lambda value: isinstance(value, str)),
    "huge_participant_number": _field("from", lambda value: value["participantId"] >= 10**30),
}


def poison_records(truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in truth if record.get("poison")]


async def test_every_catalogue_entry_is_served_and_marked(http: aiohttp.ClientSession) -> None:
    """Each catalogue entry is served at least once, and the truth names it at its slot."""
    served = await serve(http, seed=3)
    poison = poison_records(served.truth)
    assert {record["poison"] for record in poison} == {entry.name for entry in CATALOGUE}
    assert set(LOOKS) <= {entry.name for entry in CATALOGUE}
    for record in poison:
        element = served.elements[record["session_id"], record["slot"]]
        assert record["slot"] == record["index"]
        check = LOOKS.get(record["poison"])
        assert check is None or check(element), (record["poison"], element[:200])


async def test_expectations_follow_the_rule(http: aiohttp.ClientSession) -> None:
    """Each poison's `expect` is what the usable-index-and-type rule makes of its bytes."""
    served = await serve(http, seed=3)
    wrong = [
        (record["poison"], record["expect"], judged)
        for record in poison_records(served.truth)
        if record["expect"]
        != (
            judged := outcome(served.elements[record["session_id"], record["slot"]], record["slot"])
        )
    ]
    assert wrong == []
    conflicts = [r for r in poison_records(served.truth) if r["expect"] == "conflict"]
    assert conflicts
    assert all(r["claims"] == r["slot"] - 1 for r in conflicts)


async def test_healthy_messages_keep_their_indices_around_poison(
    http: aiohttp.ClientSession,
) -> None:
    """Every healthy message is served as itself at its index; poison never shifts the log."""
    served = await serve(http, seed=3)
    healthy = [r for r in served.truth if not r.get("poison") and r["index"] >= 1]
    after_poison = 0
    poisoned = {(r["session_id"], r["slot"]) for r in poison_records(served.truth)}
    for record in healthy:
        message = orjson.loads(served.elements[record["session_id"], record["index"]])
        words = message.get("text", message.get("noticeText", message.get("url")))
        assert (message["index"], message["type"], words) == (
            record["index"],
            record["type"],
            record["text"],
        )
        after_poison += (record["session_id"], record["index"] - 1) in poisoned
    assert after_poison > 20
    slots = sorted(served.elements)
    for session_id in {r["session_id"] for r in served.truth}:
        indices = [slot for sid, slot in slots if sid == session_id]
        assert indices == list(range(1, len(indices) + 1))


async def test_same_seed_same_poison(http: aiohttp.ClientSession) -> None:
    """A seed serves the same poison at the same slots, byte for byte; another seed does not."""

    def marks(served: Served) -> list[tuple[Any, ...]]:
        return sorted(
            (r["session_id"], r["index"], r.get("poison"), r.get("expect")) for r in served.truth
        )

    one, two, three = await serve(http, 11), await serve(http, 11), await serve(http, 12)
    assert marks(one) == marks(two)
    # Healthy messages carry wall-clock timestamps; poison is bytes of its own.
    slots = [(r["session_id"], r["slot"]) for r in poison_records(one.truth)]
    assert [one.elements[slot] for slot in slots] == [two.elements[slot] for slot in slots]
    assert marks(one) != marks(three)


async def test_truth_file_marks_poison(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The --truth file holds the same records, poison marked, healthy records unmarked."""
    path = tmp_path / "truth.jsonl"
    scenario = Scenario(sessions=2, messages=(20, 20), interval_s=0.001, linger_s=60)
    options = SimulatorOptions(
        agents=1, seed=4, scenario=scenario, hostile=MESSAGES_ONLY, truth_path=path
    )
    async with Simulator(options) as sim:
        await sim.scenario_finished()
        truth = await read_truth(http, sim.base_url)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines == truth
    poison = poison_records(lines)
    assert poison
    assert all({"poison", "expect", "slot"} <= set(r) for r in poison)
    assert all(r["expect"] in ("archived", "malformed", "conflict") for r in poison)
    assert all("poison" not in r and "slot" not in r for r in lines if r not in poison)


async def test_session_lists_carry_poison_entries(http: aiohttp.ClientSession) -> None:
    """Each list names every real session and ends with the account's own poison entries."""
    scenario = Scenario(sessions=4, messages=(3, 3), interval_s=0.001, linger_s=60)
    options = SimulatorOptions(agents=2, seed=5, scenario=scenario, hostile=MESSAGES_ONLY)
    async with Simulator(options) as sim:
        await sim.scenario_finished()
        for account in ("agent1", "agent2"):
            url = f"{sim.base_url}/api/v2/me/smssessions?fields=*"
            async with http.get(url, headers=auth(account)) as response:
                body = await response.read()
            entries = session_list_poison(account)
            assert len(entries) == len(LIST_CATALOGUE)
            assert body.endswith(b",".join(entries) + b"]}")
            # json, not orjson: one entry's id holds a lone surrogate escape.
            listed = json.loads(body)["smssessions"][: -len(entries)]
            owned = {s.id for s in sim.world.sessions.values() if s.account == account}
            assert {session["id"] for session in listed} == owned
    assert len({*session_list_poison("agent1"), *session_list_poison("agent2")}) == 2 * len(
        LIST_CATALOGUE
    )


async def test_listed_sessions_get_poisoned_fields(http: aiohttp.ClientSession) -> None:
    """With every entry poisoned, each listed poison is served, the deepest undecodable."""
    hostile = Hostility(message_share=0.0, odd_response_every=0, listed_share=1.0)
    options = SimulatorOptions(agents=1, seed=6, hostile=hostile)
    async with Simulator(options) as sim:
        for _ in range(3):
            sim.world.create_session("agent1")
        undecodable = 0
        for _ in range(10 * len(LISTED_POISON)):
            url = f"{sim.base_url}/api/v2/me/smssessions?fields=*"
            async with http.get(url, headers=auth("agent1")) as response:
                body = await response.read()
            assert body.count(b'"id":"0000') == 3
            try:
                json.loads(body)
            except RecursionError:
                undecodable += 1
        async with http.get(f"{sim.base_url}/_sim/stats") as response:
            hostile_stats = (await response.json())["hostile"]
    assert {f"listed:{p.name}" for p in LISTED_POISON} == set(hostile_stats)
    assert undecodable > 0


async def test_odd_responses_each_served_then_normal(http: aiohttp.ClientSession) -> None:
    """Every n-th read is one of the odd responses, each once per round; the others are clean."""
    hostile = Hostility(message_share=0.0, odd_response_every=2, listed_share=0.0)
    async with Simulator(SimulatorOptions(agents=1, seed=7, hostile=hostile)) as sim:
        session_id = sim.world.create_session("agent1")
        sim.world.append_message(session_id, "Text", text="hello")
        url = f"{sim.base_url}/api/v2/me/smssessions/{session_id}/messages"
        seen: list[tuple[int, list[tuple[str, str]], bytes]] = []
        for read in range(1, 2 * len(ODD_RESPONSES) + 1):
            async with http.get(url, headers=auth("agent1")) as response:
                status, body = response.status, await response.read()
                headers = list(response.headers.items())
            if read % 2:
                assert (status, orjson.loads(body)["messages"][0]["text"]) == (200, "hello")
            else:
                seen.append((status, headers, body))
        async with http.get(f"{sim.base_url}/_sim/stats") as response:
            counts = (await response.json())["hostile"]
    assert counts == {f"response:{odd.name}": 1 for odd in ODD_RESPONSES}
    statuses = sorted(status for status, _, _ in seen)
    assert statuses == sorted(odd.status for odd in ODD_RESPONSES)
    pairs = [pair for _, headers, _ in seen for pair in headers]
    assert ("Retry-After", "inf") in pairs
    assert ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT") in pairs
    assert ("Content-Encoding", "gzip") in pairs
    assert any(len(value) > 8190 for _, value in pairs)
    assert any(
        [v for k, v in headers if k == "Content-Type"] == ["application/json", "text/html"]
        for _, headers, _ in seen
    )
    bodies = [body for _, _, body in seen]
    assert b"" in bodies
    assert any(body.startswith(b"\xef\xbb\xbf{") for body in bodies)
    assert any(body.startswith(b"<html>") for body in bodies)


def test_the_command_line_switch_turns_it_on() -> None:
    """`simulate --hostile` builds options with the hostile scenario on; without it, off."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options_from(parser.parse_args(["--hostile"])).hostile is True
    assert options_from(parser.parse_args([])).hostile is False
