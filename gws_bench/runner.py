"""Runs the chosen scenarios in order and gathers their results into one report."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from gws_bench.ingest import run_ingest
from gws_bench.live import run_live
from gws_bench.postgres import throwaway_cluster
from gws_bench.profile import Profiler
from gws_bench.report import Report, ScenarioResult, machine_info
from gws_bench.settings import BenchContext, BenchSettings, Progress
from gws_bench.storage import run_storage
from gws_bench.webhooks import run_webhooks

Scenario = Callable[[BenchSettings, BenchContext], ScenarioResult]
RUNNERS: dict[str, Scenario] = {
    "ingest": run_ingest,
    "live": run_live,
    "storage": run_storage,
    "webhooks": run_webhooks,
}


def run_bench(
    settings: BenchSettings,
    workdir: Path,
    progress: Progress,
    *,
    command: str,
    profile_dir: Path | None = None,
) -> Report:
    """Run every scenario of `settings`, keeping their files in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(profile_dir) if profile_dir is not None else None
    report = Report(command=command, machine=machine_info(profiled=profiler is not None))
    with ExitStack() as stack:
        create_database = (
            throwaway_cluster(stack, "run without --postgres") if settings.postgres else None
        )
        context = BenchContext(
            workdir=workdir, progress=progress, profiler=profiler, create_database=create_database
        )
        for name in settings.scenarios:
            report.scenarios.append(RUNNERS[name](settings, context))
    report.machine["load_after"] = list(os.getloadavg())
    if profiler is not None:
        for profile in profiler.summaries():
            report.profiles[profile.name] = profile.to_json()
            progress(profile.text())
    return report
