"""A throwaway PostgreSQL cluster for the bench (Debian's server, from ``tests/support``).

The bench runs from the source tree, where ``tests/support/postgres.py`` starts a cluster in a
temporary folder on a free port; the cluster is stopped and removed with the given stack.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any


def throwaway_cluster(stack: ExitStack, hint: str) -> Callable[[str], str]:
    """``create_database(name) -> url`` on a cluster that ends with ``stack``."""
    try:
        from tests.support.postgres import PostgresCluster
    except ImportError:
        sys.exit(f"no tests/support/postgres.py here (not the source tree): {hint}")
    cluster: Any = stack.enter_context(PostgresCluster())
    create: Callable[[str], str] = cluster.create_database
    return create
