"""Shared fixtures; the helpers the tests import live in tests/support."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from archiver.store.db import ArchiveLocation
from archiver.store.postgres import PostgresArchive
from gws_bench.archive_factory import GeneratedArchive, write_archive
from tests.support.postgres import MISSING, PostgresCluster, find_bindir

POSTGRES_BINDIR = find_bindir()
_database_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A command run in one test configures structlog; the next test starts from defaults."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> GeneratedArchive:
    """1,000 sessions, 100,000+ messages; shared by every test, never written to by them."""
    path = tmp_path_factory.mktemp("big") / "archive.sqlite3"
    return asyncio.run(write_archive(path, sessions=1000, messages_per_session=100))


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def big_archives(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> GeneratedArchive:
    """The same archive in each kind (SQLite's is ``big_archive``), for the query tests."""
    if request.param == "sqlite":
        generated: GeneratedArchive = request.getfixturevalue("big_archive")
        return generated
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    path = PostgresArchive(cluster.create_database("big_archive"))
    return asyncio.run(write_archive(path, sessions=1000, messages_per_session=100))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using the PostgreSQL fixtures get the ``postgres`` marker (for ``-m``); without a
    server, every ``postgres`` test is skipped."""
    for item in items:
        if "postgres_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)
        if POSTGRES_BINDIR is None and item.get_closest_marker("postgres") is not None:
            item.add_marker(pytest.mark.skip(reason=f"PostgreSQL: {MISSING}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line on which PostgreSQL server the tests used (shown with ``-q`` too)."""
    terminalreporter.write_line(f"PostgreSQL: {POSTGRES_BINDIR or MISSING}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the whole run (skipped when none is installed)."""
    if POSTGRES_BINDIR is None:
        pytest.skip(f"PostgreSQL: {MISSING}")
    cluster = PostgresCluster(POSTGRES_BINDIR)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(
    postgres_cluster: PostgresCluster, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The URL of a fresh database for this test, dropped after it."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    name = f"t{next(_database_numbers)}_{slug}"[:63]
    url = postgres_cluster.create_database(name)
    yield url
    postgres_cluster.start_server()  # a test that stopped the server leaves it running again
    postgres_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveLocation:
    """An empty archive of each kind: an SQLite file's path, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "archive.sqlite3"
    return PostgresArchive(request.getfixturevalue("postgres_url"))
