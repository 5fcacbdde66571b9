"""Read-your-writes: after a command, wait (briefly) until the projection has applied it.

The projection runner NOTIFYs `projected` with lines "<projection> <stream> <version>" in the
transaction that applies a batch of events; each API process keeps one LISTEN connection and wakes
the requests waiting for those streams. A request registers its wait before it checks the read
table, so a notification cannot slip between the check and the wait. Past the deadline the
command's answer is still correct (it is built from the write side); only a list read right after
it may not show it yet.
"""

import asyncio
import logging
from collections import defaultdict

import psycopg
from psycopg import AsyncConnection

log = logging.getLogger(__name__)


class Projected:
    def __init__(self, database_url: str, on_wait=lambda: None):
        self.database_url = database_url
        self.on_wait = on_wait  # wakes the relay: the wait follows a commit the relay has not seen
        self._waiters: dict[tuple[str, str], list[tuple[int, asyncio.Future]]] = defaultdict(list)
        self._task: asyncio.Task | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _listen(self) -> None:
        while True:
            try:
                async with await AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                    await conn.execute("LISTEN projected")
                    self._listening.set()
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.OperationalError as exc:
                self._listening.clear()
                log.warning("read-your-writes listener lost the database (%s)", exc)
                await asyncio.sleep(1)

    def _wake(self, payload: str) -> None:
        for line in payload.splitlines():  # one line per stream of the batch a projection committed
            projection, stream, version = line.split(" ")
            for target, future in self._waiters.get((projection, stream), ()):
                if int(version) >= target and not future.done():
                    future.set_result(None)

    async def wait(self, pool, projection: str, stream: str, version: int, read_version, timeout: float) -> bool:
        """True once `read_version(conn)` (the read table's version) reaches `version`; False at the deadline."""
        self.on_wait()
        future = asyncio.get_running_loop().create_future()
        key = (projection, stream)
        self._waiters[key].append((version, future))
        try:
            async with pool.connection() as conn:
                if await read_version(conn) >= version:
                    return True
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._waiters[key] = [w for w in self._waiters[key] if w[1] is not future]
            if not self._waiters[key]:
                del self._waiters[key]
