"""Catalog use cases: lock the product's write-side row, decide, append, save the row."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from events import products, store
from events.base import Event, Meta
from events.errors import Conflict, NotFound, PreconditionFailed
from events.products import Product
from projections import catalog


def _apply(state: Product | None, events: list[Event], now: datetime) -> Product | None:
    version = state.version if state else 0
    for e in events:
        version += 1
        state = products.evolve(state, e, version, now)
    return state


async def _commit(conn, before: Product | None, events: list[Event], meta: Meta) -> Product:
    now = datetime.now(UTC)
    after = _apply(before, events, now)
    try:
        await store.append(conn, products.stream(after.id), before.version if before else 0, events, meta)
        await catalog.save(conn, "product_state", after)
    except psycopg.errors.UniqueViolation:
        raise Conflict("this seller already has a product with that SKU", field="sku") from None
    return after


async def create(pool: AsyncConnectionPool, seller_id: uuid.UUID, fields: dict, meta: Meta) -> Product:
    product_id = uuid.uuid4()
    event = products.ProductCreated(product_id=product_id, seller_id=seller_id, created_at=datetime.now(UTC), **fields)
    async with pool.connection() as conn, conn.transaction():
        return await _commit(conn, None, [event], meta)


async def change(pool: AsyncConnectionPool, product_id: uuid.UUID, decide: Callable[[Product | None], list[Event]],
                 meta: Meta, if_match: int | None = None) -> Product:
    """Run one decision on a product under its row lock: concurrent commands on one product queue up
    instead of conflicting, and If-Match is compared with the version they queued behind."""
    async with pool.connection() as conn, conn.transaction():
        await catalog.lock(conn, [product_id])
        before = await catalog.load(conn, "product_state", product_id)
        if before is None or not before.active:
            raise NotFound("no such product")
        if if_match is not None and if_match != before.version:
            raise PreconditionFailed(f"the product is at version {before.version}, not {if_match}",
                                     current_version=before.version)
        events = decide(before)
        if not events:
            return before
        return await _commit(conn, before, events, meta)


async def current(pool: AsyncConnectionPool, product_id: uuid.UUID) -> Product | None:
    """The read row, or the write-side row when the projection has not caught up with it yet, so a
    client always reads its own writes of a single product."""
    async with pool.connection() as conn:
        row = await catalog.load(conn, "products", product_id)
        cur = await conn.execute("SELECT version FROM product_state WHERE product_id = %s", (product_id,))
        head = await cur.fetchone()
        if head and (row is None or row.version < head[0]):
            row = await catalog.load(conn, "product_state", product_id)
    return row if row and row.active else None
