"""Each test run gets its own PostgreSQL database and RabbitMQ vhost, removed at the end."""

import os
import shutil
import tempfile
import uuid

import pytest
from psycopg.conninfo import make_conninfo

from events.db import drop_database, make_pool, migrate
from events.settings import Settings
from tests.support import ADMIN_DATABASE_URL, RABBITMQ_HOST, RabbitAdmin


class Services:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.database_url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_test_{run_id}")
        self.vhost = f"orders_test_{run_id}"
        self.rabbitmq_url = f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{self.vhost}"
        self.admin = RabbitAdmin()
        self.media_root = tempfile.mkdtemp(prefix=f"orders_test_{run_id}_media_")  # never the working tree's

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess of this test run."""
        return {**os.environ, "DATABASE_URL": self.database_url, "RABBITMQ_URL": self.rabbitmq_url,
                "ORDERS_DEV_MODE": "1", "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", **extra}

    def settings(self, **overrides) -> Settings:
        # Every test client comes from 127.0.0.1: limits high unless a test is about them.
        values = dict(database_url=self.database_url, rabbitmq_url=self.rabbitmq_url, dev_mode=True,
                      argon2_time_cost=1, argon2_memory_kib=1024, login_rate_limit=100_000,
                      register_rate_limit=100_000, login_failure_limit=100_000, media_root=self.media_root)
        return Settings(**{**values, **overrides})


@pytest.fixture(scope="session")
async def services():
    s = Services(uuid.uuid4().hex[:10])
    await s.admin.create_vhost(s.vhost)
    await migrate(s.database_url)
    try:
        yield s
    finally:
        await drop_database(s.database_url)
        await s.admin.delete_vhost(s.vhost)
        shutil.rmtree(s.media_root, ignore_errors=True)


@pytest.fixture
async def own_database(services):
    """A migrated database of the test's own: for a test that needs the whole system to itself (the
    only admins in it) or makes its database unreachable without disturbing the others."""
    from psycopg.conninfo import conninfo_to_dict

    url = make_conninfo(services.database_url, dbname=f"{conninfo_to_dict(services.database_url)['dbname']}_own")
    await migrate(url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture(scope="session")
async def pool(services):
    p = make_pool(services.database_url, min_size=2, max_size=20)
    await p.open()
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def projections_running(services):
    """The relay and the real projection workers (users, catalog, ...), for one test module."""
    import asyncio

    from projections import registry
    from workers.consumer import ProjectionConsumer
    from workers.relay import Relay

    consumers = [ProjectionConsumer(p, services.database_url, services.rabbitmq_url) for p in registry().values()]
    for c in consumers:
        await c.start()
    stop = asyncio.Event()
    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=0.2)
    task = asyncio.create_task(relay.run(stop))
    yield consumers
    stop.set()
    await task
    for c in consumers:
        await c.stop()


@pytest.fixture(scope="module")
async def system(services, projections_running):
    """An HTTP client of the real API (uvicorn), with the relay and every projection running."""
    from api.app import create_app
    from tests.support import serve

    settings = services.settings(login_rate_limit=100_000, register_rate_limit=100_000)
    async with serve(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
async def seller(system):
    from tests.support import account

    return await account(system, "seller")


@pytest.fixture(scope="module")
async def admin(system, pool, services):
    from tests.support import admin_account

    return await admin_account(system, pool, services.settings())
