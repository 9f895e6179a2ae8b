"""The bench's results: measures per scenario, the machine they ran on, as a table or JSON."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ("scenario", "measure", "value", "unit")


@dataclass(frozen=True, slots=True)
class Measure:
    """One number: a stable key (JSON), a label (table), its value, unit and shown decimals."""

    key: str
    label: str
    value: float
    unit: str
    decimals: int = 0

    def shown(self) -> str:
        """The value as the table prints it."""
        return f"{self.value:.{self.decimals}f}"


@dataclass(slots=True)
class ScenarioResult:
    """The measures of one scenario, in table order."""

    name: str
    measures: list[Measure] = field(default_factory=list)

    def add(self, key: str, label: str, value: float, unit: str, decimals: int = 0) -> None:
        """Append a measure."""
        self.measures.append(Measure(key, label, float(value), unit, decimals))


@dataclass(slots=True)
class Report:
    """Everything one `gws-archiver bench` run found."""

    command: str
    machine: dict[str, Any]
    scenarios: list[ScenarioResult] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: command, machine, {scenario: {key: value}}, and any profiles."""
        return {
            "command": self.command,
            "machine": self.machine,
            "scenarios": {
                result.name: {m.key: m.value for m in result.measures} for result in self.scenarios
            },
            "units": {
                result.name: {m.key: m.unit for m in result.measures} for result in self.scenarios
            },
            "profiles": self.profiles,
        }

    def table(self) -> str:
        """A Markdown table: one row per measure."""
        rows = [
            (result.name, m.label, m.shown(), m.unit)
            for result in self.scenarios
            for m in result.measures
        ]
        widths = [max(len(row[n]) for row in [COLUMNS, *rows]) for n in range(len(COLUMNS))]

        def line(cells: tuple[str, ...]) -> str:
            padded = [
                cell.rjust(width) if n == 2 else cell.ljust(width)
                for n, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            return "| " + " | ".join(padded) + " |"

        rule = (
            "|"
            + "|".join(
                "-" * (width + 1) + ":" if n == 2 else "-" * (width + 2)
                for n, width in enumerate(widths)
            )
            + "|"
        )
        return "\n".join([line(COLUMNS), rule, *(line(row) for row in rows)])

    def header(self) -> str:
        """One line about the machine and its load."""
        machine = self.machine
        before, after = machine["load_before"], machine["load_after"]
        return (
            f"gws-archiver bench on {machine['cores']} cores ({machine['cpu']}), "
            f"Python {machine['python']}, SQLite {machine['sqlite']}, "
            f"revision {machine['revision']}; "
            f"load average {before[0]:.2f} before, {after[0]:.2f} after"
            + (" (profiled: numbers include py-spy's overhead)" if machine["profiled"] else "")
        )


def machine_info(*, profiled: bool) -> dict[str, Any]:
    """The machine: cores, CPU model, Python and SQLite versions, load now."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "revision": _revision(),
        "load_before": list(os.getloadavg()),
        "load_after": list(os.getloadavg()),
        "profiled": profiled,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _revision() -> str:
    """The checkout's commit (`-dirty` with uncommitted changes), or `unknown`."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"
