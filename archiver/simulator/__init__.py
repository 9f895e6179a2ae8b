"""A faithful fake Genesys Web Services (SMS sessions) for demos, tests and benchmarks.

It follows gws-api.md on its own and imports nothing from the rest of `archiver`, so the
client and the simulator can never agree by accident.
"""

from archiver.simulator.faults import FaultRates
from archiver.simulator.scenario import Scenario
from archiver.simulator.server import Simulator, SimulatorOptions

__all__ = ["FaultRates", "Scenario", "Simulator", "SimulatorOptions"]
