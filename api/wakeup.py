"""Wakes the relay after successful commands, coalescing bursts into one NOTIFY at a time."""

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from events.store import wake_relay

log = logging.getLogger(__name__)

_READS = {"GET", "HEAD", "OPTIONS"}


class RelayWaker:
    def __init__(self) -> None:
        self._poked = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self, pool: AsyncConnectionPool) -> None:
        self._task = asyncio.create_task(self._run(pool))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def poke(self) -> None:
        self._poked.set()

    async def _run(self, pool: AsyncConnectionPool) -> None:
        while True:
            await self._poked.wait()
            self._poked.clear()  # pokes during the NOTIFY below make one more NOTIFY, not many
            try:
                async with pool.connection() as conn:
                    await wake_relay(conn)
            except Exception as exc:  # the relay polls anyway; a lost wake-up costs latency only
                log.debug("could not wake the relay: %s", exc)


def wake_relay_after_commands(app):
    """ASGI middleware: a successful non-read request has committed events; wake the relay."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http" or scope["method"] in _READS:
            await app(scope, receive, send)
            return

        async def watch(message):
            if message["type"] == "http.response.start" and message["status"] < 400:
                scope["app"].state.waker.poke()
            await send(message)

        await app(scope, receive, watch)

    return middleware
