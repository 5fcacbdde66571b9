import asyncio
import subprocess
import sys
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from events.db import drop_database
from sql import MIGRATIONS_DIR
from tests.support import ADMIN_DATABASE_URL


def orders_migrate(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.cli", "migrate"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def applied(url: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT name FROM schema_migrations ORDER BY name")
        return [r[0] for r in await cur.fetchall()]


async def test_migrate_creates_the_database_and_a_second_run_changes_nothing(services):
    url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_test_migrate_{uuid.uuid4().hex[:8]}")
    env = services.env(DATABASE_URL=url)
    try:
        first = orders_migrate(env)
        out1 = first.communicate(timeout=60)[0]
        second = orders_migrate(env)
        out2 = second.communicate(timeout=60)[0]
        assert first.returncode == 0 and second.returncode == 0, out1 + out2
        files = sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
        assert f"applied {len(files)} migration(s)" in out1
        assert "applied 0 migration(s)" in out2
        assert await applied(url) == files
    finally:
        await drop_database(url)


async def test_two_migrates_at_once_both_succeed_and_apply_each_file_once(services):
    url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_test_migrate_{uuid.uuid4().hex[:8]}")
    env = services.env(DATABASE_URL=url)
    try:
        runs = [orders_migrate(env), orders_migrate(env)]
        outputs = await asyncio.gather(*(asyncio.to_thread(r.communicate, timeout=60) for r in runs))
        assert [r.returncode for r in runs] == [0, 0], outputs
        files = sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
        assert await applied(url) == files
    finally:
        await drop_database(url)
