"""Order commands. Placing an order reserves stock on the write side in the same transaction that
appends `order.placed`: the product rows are locked in id order (no deadlocks), every line is checked,
and any refusal rolls back every line."""

import uuid
from datetime import UTC, datetime

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events import orders, product_state, products, store
from events.base import Event, Meta, advance, replay
from events.errors import Invalid, NotFound
from events.orders import Address, Order
from events.products import Product
from events.users import Actor


async def load(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    return replay(orders.evolve, await store.read_stream(conn, orders.stream(order_id)))


_CLAIM = ("INSERT INTO idempotency_keys (buyer_id, key, request_hash, order_id) VALUES (%s, %s, %s, %s)"
          " ON CONFLICT DO NOTHING RETURNING order_id")


async def _held_order(conn: AsyncConnection, buyer_id: uuid.UUID, key: str, digest: bytes) -> uuid.UUID:
    """The order a committed request with this key created; the key may not name another body."""
    cur = await conn.execute("SELECT request_hash, order_id FROM idempotency_keys WHERE buyer_id = %s AND key = %s",
                             (buyer_id, key))
    held_hash, held_order = await cur.fetchone()
    if bytes(held_hash) != digest:
        raise Invalid("Idempotency-Key", "this key was already used with another request body")
    return held_order


async def _take_cart(conn: AsyncConnection, buyer_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    """Empty the buyer's cart and return what it held: the lines ordered are exactly the lines removed,
    so a line added meanwhile stays in the cart."""
    cur = await conn.execute("DELETE FROM cart_items WHERE buyer_id = %s RETURNING product_id, quantity", (buyer_id,))
    items = await cur.fetchall()
    if not items:
        raise Invalid("cart", "the cart is empty")
    return items


async def place(pool: AsyncConnectionPool, buyer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]] | None,
                address: Address, meta: Meta, *, idempotency: tuple[str, bytes] | None = None,
                order_id: uuid.UUID | None = None) -> tuple[Order, bool]:
    """Place an order of `items`, or of the buyer's cart when `items` is None. Returns the order and
    whether it was created now (False: an idempotent replay, whose order has another id than
    `order_id`, the id a new order gets: the caller may pick it to watch its stream)."""
    order_id = uuid.uuid4() if order_id is None else order_id
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        # The key first: a retry waits here until the first request commits, then finds its order
        # (and, for a checkout, leaves the cart alone).
        if idempotency and not await (await conn.execute(_CLAIM, (buyer_id, *idempotency, order_id))).fetchone():
            return await load(conn, await _held_order(conn, buyer_id, *idempotency)), False
        wanted = orders.merge(items if items is not None else await _take_cart(conn, buyer_id))
        await product_state.lock(conn, wanted)  # locks first, reads after (see product_state.lock)
        found = await product_state.load_many(conn, wanted)
        placed, reservations = orders.place(order_id, buyer_id, wanted, found, address, now)
        await _append(conn, [(found[pid], events) for pid, events in reservations.items()],
                      (orders.stream(order_id), 0, [placed]), meta, now)
    return advance(orders.evolve, None, [placed], now), True


async def _append(conn: AsyncConnection, moves: list[tuple[Product, list[Event]]],
                  order_append: tuple[str, int, list[Event]], meta: Meta, now: datetime) -> None:
    """Stock moves on the products and the order's events in one append, then the products'
    write-side rows."""
    await store.append_many(conn, [*((products.stream(p.id), p.version, events) for p, events in moves), order_append],
                            meta)
    await product_state.save(conn, *(advance(products.evolve, p, events, now) for p, events in moves))


async def transition(pool: AsyncConnectionPool, order_id: uuid.UUID, actor: Actor, decide, meta: Meta) -> Order:
    """Run a lifecycle decision, with the stock moves it makes (see `orders.stock_moves`)."""
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        order = await load(conn, order_id)
        if not orders.visible(order, actor):
            raise NotFound("no such order")  # existence does not leak to whoever may not see it
        events = decide(order)
        moves = []
        if (stock := orders.stock_moves(order, events)) is not None:
            move, quantities = stock
            await product_state.lock(conn, quantities)
            found = await product_state.load_many(conn, quantities)
            moves = [(found[pid], move(found[pid], order_id, q)) for pid, q in quantities.items()]
        await _append(conn, moves, (orders.stream(order_id), order.version, events), meta, now)
    return advance(orders.evolve, order, events, now)
