"""`gws-archiver bench`: the daemon's throughput, freshness and cost, beside their ceilings.

The simulator and the daemon run as child processes (`processes`), so the daemon's CPU
seconds and peak memory are its own. Scenarios: `ingest` (a backlog, against the fetch-only
and minimal-pipeline `ceilings`), `live` (thousands of sessions talking at once: freshness,
CPU share, the cost of an idle poll) and `storage` (the archive writer against plain
`executemany`). `runner` runs them and `report` prints the table; `profile` adds py-spy
profiles of the children.
"""
