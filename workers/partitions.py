"""Which partitions of a projection a worker consumes, when PROJECTION_PARTITIONS = P > 1.

Each partition queue has a single active consumer anyway (RabbitMQ's single-active-consumer); this
decides who subscribes at all, so that P workers of one projection each take their share instead of
the first one taking everything. A worker holds a PostgreSQL advisory lock for each partition it
consumes, and one as a member of the projection's group; every `interval` it counts the members and
takes free partitions up to its fair share, ceil(P / members), or gives back what it holds beyond it.
A worker that dies loses its locks with its session, so the others see fewer members and take its
partitions within an interval; one that joins makes the others give some back.
"""

import asyncio
import logging
import math
import os
import zlib
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import AsyncConnection

from workers.runtime import pause

log = logging.getLogger(__name__)


def _space(kind: str, projection: str) -> int:
    """The first key of a two-key advisory lock: one space per projection and kind (an int4)."""
    return zlib.crc32(f"orders-{kind}:{projection}".encode()) - 2**31


class PartitionLease:
    def __init__(self, database_url: str, projection: str, partitions: int,
                 take: Callable[[int], Awaitable[None]], give: Callable[[int], Awaitable[None]],
                 interval: float = 1.0):
        self.database_url, self.partitions, self.interval = database_url, partitions, interval
        self.take, self.give = take, give  # start and stop consuming a partition's queue
        self.members_space, self.partition_space = _space("member", projection), _space("partition", projection)
        self.held: set[int] = set()
        self._conn: AsyncConnection | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a fair share until `stop`; on a lost database, give everything back and start over."""
        while not stop.is_set():
            try:
                async with await AsyncConnection.connect(self.database_url, autocommit=True,
                                                         application_name=f"orders-lease-{os.getpid()}") as conn:
                    self._conn = conn
                    await self._join(conn)
                    while not stop.is_set():
                        await self.balance(conn)
                        await pause(stop, self.interval)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("partition lease lost the database (%s); giving its partitions back", exc)
            except Exception:  # the broker, or a bug: never stop balancing for good
                log.exception("partition lease failed; giving its partitions back")
            finally:
                await self._give_all()
                self._conn = None
            await pause(stop, self.interval)

    async def _join(self, conn: AsyncConnection) -> None:
        for slot in range(10_000):
            if await self._try_lock(conn, self.members_space, slot):
                return
        raise RuntimeError("no free member slot")

    async def balance(self, conn: AsyncConnection) -> None:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = %s",
            (self.members_space % 2**32,))
        members = max(1, (await cur.fetchone())[0])
        fair = math.ceil(self.partitions / members)
        for partition in sorted(self.held, reverse=True)[:max(0, len(self.held) - fair)]:
            await self._give(conn, partition)
        for partition in range(self.partitions):
            if len(self.held) >= fair:
                break
            if partition not in self.held and await self._try_lock(conn, self.partition_space, partition):
                self.held.add(partition)
                log.info("consuming partition %d (%d member(s), %d each)", partition, members, fair)
                await self.take(partition)

    async def _give(self, conn: AsyncConnection, partition: int) -> None:
        await self.give(partition)  # stop consuming first, then let another worker take it
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.partition_space, partition))
        self.held.discard(partition)
        log.info("gave partition %d back", partition)

    async def _give_all(self) -> None:
        for partition in sorted(self.held):
            try:
                await self.give(partition)
            except Exception:  # noqa: BLE001 -- stopping: the broker returns what is unacked anyway
                log.exception("could not stop consuming partition %d", partition)
        self.held.clear()  # the locks went, or go, with the session

    @staticmethod
    async def _try_lock(conn: AsyncConnection, space: int, key: int) -> bool:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (space, key))
        return (await cur.fetchone())[0]
