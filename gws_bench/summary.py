"""One run's ingest and live measures side by side, in the shape of issue 15's table.

One row per scenario that ran: the work, the minimal pipeline (ingest only), the plain peer,
gws-archiver, and daemon / peer. Cells are built from the measures by key, so a scenario run
without its peer shows a dash there.
"""

from __future__ import annotations

from gws_bench.report import Report, ScenarioResult

COLUMNS = ("work", "minimal pipeline", "a plain peer", "gws-archiver", "daemon / peer")
NONE = "—"


def side_by_side(report: Report) -> str:
    """A Markdown table, or an empty string when neither ingest nor live ran."""
    rows = []
    for result in report.scenarios:
        values = {m.key: m.value for m in result.measures}
        if result.name == "ingest":
            rows.append(_ingest_row(values))
        elif result.name.startswith("live"):
            rows.append(_live_row(result, values))
    if not rows:
        return ""
    lines = [_line(COLUMNS), _line(tuple("---" for _ in COLUMNS))]
    return "\n".join(lines + [_line(row) for row in rows])


def _ingest_row(values: dict[str, float]) -> tuple[str, ...]:
    messages = values["messages"]
    work = f"ingest, {values['sessions']:,.0f} sessions × {messages / values['sessions']:,.0f}"
    minimal_s = messages / values["minimal_rate"]
    minimal = (
        f"{minimal_s:.2f} s ({values['minimal_cpu_per_10k_s'] * messages / 10_000:.2f} CPU-s),"
        f" simulator {values['minimal_simulator_cpu_share']:.2f} core"
    )
    daemon = (
        f"{values['time_s']:.2f} s ({values['cpu_per_10k_s'] * messages / 10_000:.2f} CPU-s),"
        f" {values['requests_per_s']:,.0f} req/s, simulator"
        f" {values['simulator_cpu_share']:.2f} core = **{values['ratio_minimal']:.2f}×**"
        " the pipeline"
    )
    if "peer_rate" not in values:
        return (work, minimal, NONE, daemon, NONE)
    peer = (
        f"sync stdlib: {values['peer_time_s']:.2f} s"
        f" ({values['peer_cpu_per_10k_s'] * messages / 10_000:.2f} CPU-s),"
        f" {values['peer_requests_per_s']:,.0f} req/s, simulator"
        f" {values['peer_simulator_cpu_share']:.2f} core, {_lost(values, 'peer_')}"
    )
    return (
        work,
        minimal,
        peer,
        f"{daemon}, {_lost(values, '')}",
        f"{values['ratio_peer']:.2f}× the peer's rate",
    )


def _live_row(result: ScenarioResult, values: dict[str, float]) -> tuple[str, ...]:
    mode = "with push" if result.name.endswith("push") else "polling only"
    work = f"{values['sessions']:,.0f} live sessions for {values['duration_s']:.0f} s, {mode}"
    daemon = _freshness(values, "") + f", {values['peak_rss_mb']:.0f} MB"
    if "peer_freshness_p99_s" not in values:
        return (work, NONE, NONE, daemon, NONE)
    peer = "asyncio: " + _freshness(values, "peer_") + f", {values['peer_peak_rss_mb']:.0f} MB"
    ratios = (
        f"p99 {values['ratio_p99_peer']:.2f}×, CPU {values['ratio_cpu_peer']:.2f}×"
        " (below 1: the daemon is fresher, cheaper)"
    )
    return (work, NONE, peer, daemon, ratios)


def _freshness(values: dict[str, float], prefix: str) -> str:
    return (
        f"p50 {values[f'{prefix}freshness_p50_s']:.2f} s,"
        f" p99 {values[f'{prefix}freshness_p99_s']:.2f} s,"
        f" max {values[f'{prefix}freshness_max_s']:.2f} s,"
        f" {values[f'{prefix}cpu_share']:.2f} core,"
        f" {values[f'{prefix}requests_per_s']:,.0f} req/s,"
        f" simulator {values[f'{prefix}simulator_cpu_share']:.2f} core,"
        f" {_lost(values, prefix)}"
    )


def _lost(values: dict[str, float], prefix: str) -> str:
    missing, extra = values[f"{prefix}missing"], values[f"{prefix}extra"]
    return f"{missing:.0f} missing, {extra:.0f} extra"


def _line(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"
