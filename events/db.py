"""Connections and migrations."""

import asyncio
import logging
import select

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from sql import MIGRATIONS_DIR

log = logging.getLogger(__name__)

# Any fixed number: serialises concurrent `orders migrate` runs against one database.
MIGRATE_LOCK = 7_420_001


def make_pool(url: str, *, min_size: int = 2, max_size: int = 10, name: str | None = None, check: bool = False,
              timeout: float = 30.0) -> AsyncConnectionPool:
    """A pool of autocommit connections; transactions are explicit (`async with conn.transaction()`).

    Sessions are in UTC whatever the server's time zone, so every time read back is UTC (`...Z`).
    `name` is the connections' application_name (pg_stat_activity shows it). With `check`, a connection
    the server ended while it sat idle (a restart, a failover, pg_terminate_backend) is replaced as it
    leaves the pool, before anyone uses it; no statement is ever retried, so a command cannot be applied
    twice. `timeout` is how long a caller waits for a connection before PoolTimeout."""
    kwargs = {"autocommit": True, "options": "-c TimeZone=UTC", **({"application_name": name} if name else {})}
    checker = _Check() if check else None
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False, kwargs=kwargs, timeout=timeout,
                               check=checker)
    if checker:
        checker.pool = pool
    return pool


class _Check:
    """The pool's check of a connection leaving it."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None
        self._sweep: asyncio.Task | None = None

    async def __call__(self, conn: AsyncConnection) -> None:
        # An idle connection has nothing to read: a server that ended it has sent its goodbye (an error
        # message, or the socket's end), so a readable socket is the only case worth a round trip.
        # Checking every connection by query would add a round trip to every request.
        if not conn.closed and not select.select([conn.pgconn.socket], [], [], 0)[0]:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            # The same restart has most likely ended every idle connection, and the pool makes a caller
            # whose checks keep failing wait 1 s, then 2, then 4 before each next one: a caller could
            # spend its whole timeout on them. So the idle ones are all checked (and replaced) now.
            if self._sweep is None or self._sweep.done():
                self._sweep = asyncio.create_task(self.pool.check())
            raise


async def create_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. True when it was created."""
    params = conninfo_to_dict(url)
    name = params.get("dbname") or params.get("user") or "postgres"
    admin = make_conninfo(url, dbname="postgres")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        exists = await (await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))).fetchone()
        if exists:
            return False
        try:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            return False  # another `orders migrate` created it a moment ago
        return True


async def drop_database(url: str) -> None:
    params = conninfo_to_dict(url)
    admin = make_conninfo(url, dbname="postgres")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(params["dbname"])))


async def migrate(url: str) -> list[str]:
    """Create the database if missing and apply the new `sql/NNN_*.sql` files in order, each in its
    own transaction. Returns the names applied; a second run applies nothing."""
    if await create_database(url):
        log.info("created database %s", conninfo_to_dict(url).get("dbname"))
    files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in await (await conn.execute("SELECT name FROM schema_migrations")).fetchall()}
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                log.info("applied migration %s", path.name)
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return applied
