"""Read-your-writes: after a command, wait (briefly) until the projection has applied it.

The projection runner NOTIFYs `projected` with lines "<projection> <stream> <version>" in the
transaction that applies a batch of events; each API process keeps one LISTEN connection and wakes
the requests waiting for those streams. A command registers a `watch` on its stream before its
transaction commits: the projection cannot apply an event before it is committed, so while the
LISTEN connection stays up every notification for that commit reaches the watch, and after the
commit `reached` needs no query (it returns at once when the version was already notified).
Notifications sent while the listener is down are lost, so the listener bumps `epoch` on every
(re)connection; a watch registered while not listening, or under another epoch, falls back to
querying the read table's version (through the pool) before it waits, as does `wait`, which
registers only after the commit. Past the deadline the command's answer is still correct (it is
built from the write side); only a list read right after it may not show it yet.
"""

import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

ReadVersion = Callable[[AsyncConnection], Awaitable[int]]
HEARTBEAT_SECONDS = 10.0
# A dead peer is noticed within about half a minute even while nothing is sent.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class Watch:
    """The highest version of one stream notified since the watch was registered."""

    __slots__ = ("epoch", "future", "projection", "seen", "stream", "target")

    def __init__(self, projection: str, stream: str, epoch: int | None):
        self.projection, self.stream = projection, stream
        self.epoch = epoch  # the listener's epoch at registration; None: it was not listening
        self.seen = 0
        self.target = 0
        self.future: asyncio.Future | None = None  # while `reached` waits: True reached, False reconnected


class Projected:
    def __init__(self, database_url: str, on_wait=lambda: None):
        self.database_url = database_url
        self.on_wait = on_wait  # wakes the relay: the wait follows a commit the relay has not seen
        # Other channels this connection listens to, with what to do with their payloads (api/sessions.py).
        self.channels: dict[str, Callable[[str], None]] = {}
        self._watches: dict[tuple[str, str], list[Watch]] = defaultdict(list)
        self._task: asyncio.Task | None = None
        self.epoch = 0  # bumped on every (re)connection of the LISTEN connection
        self.listening = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _listen(self) -> None:
        while True:
            try:
                name = conninfo_to_dict(self.database_url).get("application_name") or f"orders-listener-{os.getpid()}"
                async with await AsyncConnection.connect(self.database_url, autocommit=True, **_KEEPALIVES,
                                                         application_name=name) as conn:
                    for channel in ("projected", *self.channels):
                        await conn.execute(f"LISTEN {channel}")
                    self._connected()
                    while True:
                        async for note in conn.notifies(timeout=HEARTBEAT_SECONDS):
                            if note.channel == "projected":
                                self._wake(note.payload)
                            elif (deliver := self.channels.get(note.channel)) is not None:
                                deliver(note.payload)
                        # Quiet for a while: make sure the connection still answers, so a half-open
                        # one (a network cut) is replaced instead of silently delivering nothing.
                        await asyncio.wait_for(conn.execute("SELECT 1"), HEARTBEAT_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- the database, the network or a bug: never stay down
                self.listening = False
                log.warning("read-your-writes listener lost the database (%r); reconnecting", exc)
                await asyncio.sleep(1)
            finally:
                self.listening = False  # also when the task ends

    def _connected(self) -> None:
        self.epoch += 1
        self.listening = True
        for watches in self._watches.values():  # notifications may have been lost: re-check by query
            for w in watches:
                if w.future is not None and not w.future.done():
                    w.future.set_result(False)

    def _wake(self, payload: str) -> None:
        for line in payload.splitlines():  # one line per stream of the batch a projection committed
            try:
                projection, stream, version = line.split(" ")
                version = int(version)
            except ValueError:
                log.warning("ignoring a malformed notification on 'projected': %r", line[:200])
                continue
            watches = self._watches.get((projection, stream))
            if not watches:
                continue
            for w in watches:
                w.seen = max(w.seen, version)
                if w.future is not None and version >= w.target and not w.future.done():
                    w.future.set_result(True)

    @contextmanager
    def watch(self, projection: str, stream: str) -> Iterator[Watch]:
        """Record the versions of `stream` that `projection` notifies from now on; enter it before the
        command's transaction commits."""
        key = (projection, stream)
        w = Watch(projection, stream, self.epoch if self.listening else None)
        self._watches[key].append(w)
        try:
            yield w
        finally:
            watches = self._watches[key]
            watches.remove(w)
            if not watches:
                del self._watches[key]

    async def reached(self, watch: Watch, version: int, timeout: float, pool, read_version: ReadVersion) -> bool:
        """True once the projection has applied `version` of the watched stream; False when the read
        table does not have it at the deadline (at once with a timeout <= 0: no query, no wait).
        `read_version(conn)` reads the read table's version: needed when the listener was not up the
        whole time since the watch began, and once at the deadline."""
        if timeout <= 0:
            return False
        if watch.seen >= version:
            return True
        self.on_wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        watch.target = version
        check = watch.epoch is None or watch.epoch != self.epoch or not self.listening
        while True:
            if check:
                watch.epoch = self.epoch if self.listening else None
                async with pool.connection() as conn:
                    if await read_version(conn) >= version:
                        return True
                if watch.seen >= version:
                    return True
                if self.listening and watch.epoch != self.epoch:
                    continue  # reconnected during the query: a notification may have been lost again
            watch.future = loop.create_future()
            try:
                if await asyncio.wait_for(watch.future, deadline - loop.time()):
                    return True
            except TimeoutError:
                # The last word is the read table's: a notification may have gone astray (e.g. the
                # projection was applied by a rebuild's swap, which sends none).
                async with pool.connection() as conn:
                    return await read_version(conn) >= version
            finally:
                watch.future = None
            check = True  # the listener reconnected while we waited

    async def applied(self, pool, projector, stream: str, version: int, timeout: float,
                      watch: Watch | None = None) -> bool:
        """Read-your-writes: True once `projector` has applied `version` of `stream`. Through `watch` when
        the command entered it (on this stream) before it committed, else checking the read table first."""
        async def read_version(conn: AsyncConnection) -> int:
            return await projector.version(conn, stream)

        if watch is not None and watch.stream == stream:
            return await self.reached(watch, version, timeout, pool, read_version)
        return await self.wait(pool, projector.name, stream, version, read_version, timeout)

    async def wait(self, pool, projection: str, stream: str, version: int, read_version: ReadVersion,
                   timeout: float) -> bool:
        """`reached` for a command that did not watch before its commit: checks the read table first."""
        if timeout <= 0:
            return False
        with self.watch(projection, stream) as w:
            w.epoch = None  # registered after the commit: a notification may have come before
            return await self.reached(w, version, timeout, pool, read_version)
