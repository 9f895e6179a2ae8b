"""Guarantee 7 end to end: the daemon against the simulator's hostile scenario, several accounts.

The simulator serves its catalogue of poison (``gws_simulator/hostile.py``) among healthy
sessions, plus odd headers now and then. The daemon must never stop by itself, archive every
healthy message exactly as the truth has it, archive each poison message whose index and type
are usable at its index, and keep each of the others raw in ``malformed`` exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from archiver.daemon import Daemon
from archiver.store.db import ArchiveLocation
from gws_simulator import Scenario, Simulator, SimulatorOptions
from gws_simulator.hostile import CATALOGUE, session_list_poison
from tests.support import compare, daemon_config, ended_sessions, query, wait_for

# Sessions stay readable after they end (linger_s): vanishing sessions are another test's case.
SCENARIO = Scenario(
    sessions=18, concurrent_per_agent=3, messages=(40, 60), interval_s=0.003, linger_s=60.0
)
AGENTS = 3


async def test_hostile_scenario_costs_only_the_poison(archive: ArchiveLocation) -> None:
    """Every healthy message exact; each poison archived, malformed once or a conflict."""
    options = SimulatorOptions(agents=AGENTS, seed=5, scenario=SCENARIO, hostile=True)
    async with Simulator(options) as sim:
        # The scenario's odd headers include Retry-After dates in year 9999: capped to 1 s here.
        config = daemon_config(
            sim.base_url, archive, agents=AGENTS, page_size=25, max_retry_after_s=1.0
        )
        task = asyncio.create_task(Daemon(config).run())
        try:
            await sim.scenario_finished()
            await wait_for(lambda: ended_sessions(archive) == SCENARIO.sessions, 120)
            assert not task.done(), "the daemon stopped by itself"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        truth = sim.truth()

    poison = [r for r in truth if r.get("poison")]
    served = {r["poison"] for r in poison}
    assert len(served) >= len(CATALOGUE) * 0.8, sorted({p.name for p in CATALOGUE} - served)

    result = compare(archive, [r for r in truth if not r.get("poison")])
    archived_poison = {(r["session_id"], r["index"]) for r in poison if r["expect"] == "archived"}
    unexpected = [key for key in result.extra if (key[0], key[1]) not in archived_poison]
    assert not result.missing, result.missing
    assert not unexpected, unexpected
    assert not result.duplicated_events

    rows = set(query(archive, "SELECT session_id, message_index FROM messages"))
    assert archived_poison <= rows
    malformed_poison = [r for r in poison if r["expect"] == "malformed"]
    assert not {(r["session_id"], r["index"]) for r in malformed_poison} & rows
    expected = Counter(r["session_id"] for r in malformed_poison)
    recorded = Counter(
        session_id
        for (session_id,) in query(
            archive, "SELECT session_id FROM malformed WHERE session_id != ''"
        )
    )
    assert recorded == expected
    # A message claiming a taken index leaves the first content and is kept as a conflict.
    claimed = {(r["session_id"], r["claims"]) for r in poison if r["expect"] == "conflict"}
    assert claimed, "no conflict served"
    assert claimed <= set(query(archive, "SELECT session_id, message_index FROM conflicts"))
    listed = query(archive, "SELECT count(*) FROM malformed WHERE session_id = ''")[0][0]
    assert listed == AGENTS * len(session_list_poison("agent1"))


async def test_hostile_truth_is_deterministic_by_seed() -> None:
    """The same seed poisons the same messages with the same entries."""
    scenario = Scenario(sessions=6, concurrent_per_agent=2, messages=(30, 40), interval_s=0.001)
    marks = []
    for _ in range(2):
        options = SimulatorOptions(agents=2, seed=9, scenario=scenario, hostile=True)
        async with Simulator(options) as sim:
            await sim.scenario_finished()
            marks.append([(r["index"], r.get("poison")) for r in sim.truth()])
    assert marks[0] == marks[1]
    assert any(poison for _, poison in marks[0])
