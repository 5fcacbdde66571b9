"""The cart: plain mutable state of the write side, not events; checkout turns it into an order
(see ordering.place, which takes the lines it orders out of the cart in the order's transaction)."""

import uuid

from psycopg_pool import AsyncConnectionPool

from events.errors import NotFound


async def set_item(pool: AsyncConnectionPool, buyer_id: uuid.UUID, product_id: uuid.UUID, quantity: int) -> None:
    """Put `quantity` of a live product in the cart; 0 takes it out."""
    if quantity == 0:
        await remove_item(pool, buyer_id, product_id)
        return
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO cart_items (buyer_id, product_id, quantity)"
            " SELECT %s, product_id, %s FROM product_state WHERE product_id = %s AND active"
            " ON CONFLICT (buyer_id, product_id) DO UPDATE SET quantity = excluded.quantity RETURNING 1",
            (buyer_id, quantity, product_id))
        if await cur.fetchone() is None:
            raise NotFound("no such product")


async def remove_item(pool: AsyncConnectionPool, buyer_id: uuid.UUID, product_id: uuid.UUID) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM cart_items WHERE buyer_id = %s AND product_id = %s", (buyer_id, product_id))


async def empty(pool: AsyncConnectionPool, buyer_id: uuid.UUID) -> None:
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM cart_items WHERE buyer_id = %s", (buyer_id,))
