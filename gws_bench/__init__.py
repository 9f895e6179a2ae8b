"""`gws-archiver bench`: the daemon's throughput, freshness and cost, beside their ceilings.

The simulator and the daemon run as child processes (`processes`), so the daemon's CPU
seconds and peak memory are its own. Scenarios: `ingest` (a backlog, against the fetch-only
and minimal-pipeline `ceilings`), `live` (thousands of sessions talking at once: freshness,
CPU share, the cost of an idle poll), `storage` (the archive writer against plain
`executemany`) and `webhooks`. Ingest and live also run a plain peer of ours (`peers`: what a
contact-centre engineer would write), in its own process and checked against the truth too.
`runner` runs them, `report` prints the table and `summary` the issue-15 side-by-side table;
`profile` adds py-spy profiles of the children.
"""
