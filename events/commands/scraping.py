"""Scrape commands: record what a shop site shows of a product, and a run's start and end."""

import uuid
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from events import product_state, products, scrapes, store
from events.base import Event, Meta
from events.commands.catalog import commit


async def record_product(pool: AsyncConnectionPool, product_id: uuid.UUID, source: str, url: str,
                         run_id: uuid.UUID, values: dict, meta: Meta) -> str:
    """'new', 'changed' or 'unchanged': what the scrape said of the product (see `products.scrape`)."""
    async with pool.connection() as conn, conn.transaction():
        await product_state.lock(conn, [product_id])
        current = await product_state.load(conn, product_id)
        events = products.scrape(current, product_id, source, url, run_id, values, datetime.now(UTC))
        if not events:
            return "unchanged"
        await commit(conn, current, events, meta)
    return "changed" if current else "new"


async def record_run(pool: AsyncConnectionPool, run_id: uuid.UUID, event: Event, version: int, meta: Meta) -> None:
    async with pool.connection() as conn:
        async with conn.transaction():
            await store.append(conn, scrapes.stream(run_id), version, [event], meta)
        await store.wake_relay(conn)
