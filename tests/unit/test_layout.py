"""The product apart from its simulator and benchmarks (issue 13): what each part may import."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# The demo is the one place the product meets its simulator; the CLI loads it only for `demo`.
MEETING_POINT = ROOT / "archiver" / "cli" / "demo.py"


def imported_modules(package: str) -> set[str]:
    """Every module a package's files import, by name (the demo's meeting point aside)."""
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        if path == MEETING_POINT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return names


def test_the_simulator_imports_nothing_of_the_archiver() -> None:
    """gws_simulator follows the GWS documentation on its own: no archiver import at all."""
    assert not {name for name in imported_modules("gws_simulator") if name.startswith("archiver")}


def test_the_product_never_imports_its_harnesses() -> None:
    """archiver/ imports neither the simulator nor the benchmarks (the CLI loads them by name)."""
    harnesses = ("gws_simulator", "gws_bench")
    assert not {name for name in imported_modules("archiver") if name.startswith(harnesses)}


def test_running_the_daemon_loads_no_simulator_and_no_aiohttp_web() -> None:
    """`gws-archiver run` (its CLI and daemon) loads neither gws_simulator nor aiohttp.web."""
    probe = (
        "import sys, archiver.cli, archiver.daemon;"
        "print(sorted(m for m in sys.modules if m.startswith(('gws_', 'aiohttp.web', 'psutil'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_daemon_alone_installs_no_benchmark_dependency() -> None:
    """pip install . pulls neither psutil nor py-spy: they are the bench extra's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "psutil" not in runtime
    assert "py-spy" not in runtime
    assert any("psutil" in spec for spec in project["optional-dependencies"]["bench"])


def test_exactly_one_module_opens_sqlite_connections() -> None:
    """Every connection to the archive is opened by archiver/store/db.py, under one policy."""
    openers = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "archiver").rglob("*.py")
        if "sqlite3.connect(" in path.read_text() or "aiosqlite.connect(" in path.read_text()
    }
    assert openers == {"archiver/store/db.py"}


def test_no_product_module_is_longer_than_a_sitting() -> None:
    """No module of the product over 450 lines: each can be read in one go."""
    long = {
        path.relative_to(ROOT).as_posix(): lines
        for path in (ROOT / "archiver").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 450
    }
    assert not long
