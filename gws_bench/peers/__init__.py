"""Plain pollers of our own: what a contact-centre engineer would write instead of the product.

They sit beside the bench's ceilings, outside the product (they import nothing of `archiver`),
and each runs as its own child process so that its CPU seconds and memory are its own:

- `ingest_peer`: synchronous stdlib (urllib, json, sqlite3), one message log at a time;
- `live_peer`: asyncio and aiohttp, one task per session polling at a fixed interval.

Each writes its own SQLite file (`messages` keyed by session and index, stamped
`archived_at`) and prints JSON lines on stdout; `harness` runs them for the scenarios and
checks their files against the simulator's truth.
"""
