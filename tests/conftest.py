"""Shared fixtures; the helpers the tests import live in tests/support."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import structlog

from gws_bench.archive_factory import GeneratedArchive, write_archive


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
