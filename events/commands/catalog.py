"""Catalog commands: lock the product's write-side row, decide, append, save the row."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events import product_state, products, store
from events.base import Event, Meta, advance
from events.errors import Conflict, NotFound, PreconditionFailed
from events.products import Product


async def commit(conn: AsyncConnection, before: Product | None, events: list[Event], meta: Meta) -> Product:
    """Append a product's new events and save its write-side row, in the caller's transaction."""
    after = advance(products.evolve, before, events, datetime.now(UTC))
    try:
        await store.append(conn, products.stream(after.id), before.version if before else 0, events, meta)
        await product_state.save(conn, after)
    except psycopg.errors.UniqueViolation:
        raise Conflict("this seller already has a product with that SKU", field="sku") from None
    return after


async def create(pool: AsyncConnectionPool, seller_id: uuid.UUID, fields: dict, meta: Meta) -> Product:
    events = products.create(uuid.uuid4(), seller_id, fields, datetime.now(UTC))
    async with pool.connection() as conn, conn.transaction():
        return await commit(conn, None, events, meta)


async def change(pool: AsyncConnectionPool, product_id: uuid.UUID, decide: Callable[[Product | None], list[Event]],
                 meta: Meta, if_match: int | None = None) -> Product:
    """Run one decision on a product under its row lock: concurrent commands on one product queue up
    instead of conflicting, and If-Match is compared with the version they queued behind."""
    async with pool.connection() as conn, conn.transaction():
        await product_state.lock(conn, [product_id])
        before = await product_state.load(conn, product_id)
        if before is None or not before.active:
            raise NotFound("no such product")
        if if_match is not None and if_match != before.version:
            raise PreconditionFailed(f"the product is at version {before.version}, not {if_match}",
                                     current_version=before.version)
        events = decide(before)
        if not events:
            return before
        return await commit(conn, before, events, meta)
