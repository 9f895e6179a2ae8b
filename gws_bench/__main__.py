"""`python -m gws_bench`: the same as `gws-archiver bench`."""

from __future__ import annotations

import argparse
import sys

from gws_bench.cli import add_arguments, cmd_bench


def main() -> int:
    """Parse the bench options and run it."""
    parser = argparse.ArgumentParser(
        prog="python -m gws_bench",
        description="measure ingest, live freshness and storage against their ceilings",
    )
    add_arguments(parser)
    return cmd_bench(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
