"""Running one component as a process: a stop event set by SIGINT or SIGTERM, and waits it cuts short."""

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

try:
    import uvloop
except ImportError:  # not built for Windows
    uvloop = None


T = TypeVar("T")


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run `main(stop)` until it returns, and return what it returns; the first SIGINT or SIGTERM sets `stop`."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    # uvloop: a faster event loop for the relay and the workers, as uvicorn picks it for the API.
    return (uvloop.run if uvloop else asyncio.run)(runner())


async def pause(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> bool:
    """Wait `seconds`, less if `stop` (or `wake`) is set meanwhile. True when stopping."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    return stop.is_set()
