"""A faithful fake Genesys Web Services (SMS sessions) for demos, tests and benchmarks.

It follows gws-api.md on its own and imports nothing from the rest of `archiver`, so the
client and the simulator can never agree by accident.
"""

from gws_simulator.faults import FaultRates
from gws_simulator.hostile import Hostility
from gws_simulator.scenario import Scenario
from gws_simulator.server import Simulator, SimulatorOptions

__all__ = ["FaultRates", "Hostility", "Scenario", "Simulator", "SimulatorOptions"]
