"""A webhook receiver for the bench, run as a child: `python -m gws_bench.receiver MODE LOG`.

It prints `listening on PORT`, answers every POST, and appends one line per request answered
2xx to LOG (`webhook-id`, then the Unix time it arrived). `healthy` answers 204 after 5 ms;
`flaky` answers half the attempts 500 and lets a sixth hang for 20 s (the sender times out),
the rest as `healthy`. SIGTERM stops it, with LOG flushed.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from typing import TextIO

from aiohttp import web

ANSWER_S = 0.005
HANG_S = 20.0


async def serve(mode: str, log: TextIO) -> None:
    """Serve until SIGTERM, noting each request answered 2xx in ``log``."""
    rng = random.Random(1)

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        arrived = time.time()
        draw = rng.random()
        if mode == "flaky" and draw < 1 / 6:
            await asyncio.sleep(HANG_S)
            return web.Response(status=500)
        if mode == "flaky" and draw < 1 / 2:
            return web.Response(status=500)
        await asyncio.sleep(ANSWER_S)
        log.write(f"{request.headers.get('webhook-id', '')} {arrived:.6f}\n")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    with open(sys.argv[2], "w", buffering=1 << 16) as received:
        asyncio.run(serve(sys.argv[1], received))
