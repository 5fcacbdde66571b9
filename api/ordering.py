"""Order use cases. Placing an order reserves stock on the write side in the same transaction that
appends `order.placed`: the product rows are locked in id order (no deadlocks), every line is checked,
and any refusal rolls back every line."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events import orders, products, store
from events.base import Event, Meta
from events.errors import Invalid, NotFound
from events.orders import Address, Line, Order
from projections import catalog


def visible(order: Order | None, caller) -> bool:
    """Who may see an order: its buyer, a seller with a line in it, an admin."""
    return order is not None and (
        caller.role == "admin" or order.buyer_id == caller.id
        or (caller.role == "seller" and caller.id in order.seller_ids))


async def load(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    state = None
    for e in await store.read_stream(conn, orders.stream(order_id)):
        state = orders.evolve(state, e.event(), e.version, e.recorded_at)
    return state


MAX_TOTAL = Decimal("999999999999.99")  # what the read tables' numeric(14,2) holds


def merge(items: list[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, int]:
    merged: dict[uuid.UUID, int] = {}
    for product_id, quantity in items:
        merged[product_id] = merged.get(product_id, 0) + quantity
    for product_id, quantity in merged.items():
        if quantity > 1000:
            raise Invalid("items", f"at most 1000 of product {product_id} in one order", product_id=str(product_id))
    return dict(sorted(merged.items(), key=lambda kv: str(kv[0])))


async def _claim_key(conn: AsyncConnection, buyer_id: uuid.UUID, key: str, digest: bytes,
                     order_id: uuid.UUID) -> uuid.UUID | None:
    """Record the key for this order; if a committed order already holds it, return that order's id."""
    cur = await conn.execute(
        "INSERT INTO idempotency_keys (buyer_id, key, request_hash, order_id) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING order_id", (buyer_id, key, digest, order_id))
    if await cur.fetchone():
        return None
    cur = await conn.execute("SELECT request_hash, order_id FROM idempotency_keys WHERE buyer_id = %s AND key = %s",
                             (buyer_id, key))
    held_hash, held_order = await cur.fetchone()
    if bytes(held_hash) != digest:
        raise Invalid("Idempotency-Key", "this key was already used with another request body")
    return held_order


async def place(pool: AsyncConnectionPool, buyer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]], address: Address,
                meta: Meta, *, idempotency: tuple[str, bytes] | None = None, from_cart: bool = False
                ) -> tuple[Order, bool]:
    """Returns the order and whether it was created now (False: an idempotent replay)."""
    wanted = merge(items)
    order_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        # Locks first, writes after (see projections/catalog.py: lock). Two retries with one
        # Idempotency-Key queue on the same locks, so the second finds the first's key.
        await catalog.lock(conn, wanted)
        if idempotency and (held := await _claim_key(conn, buyer_id, *idempotency, order_id)):
            return await load(conn, held), False
        if not wanted:
            raise Invalid("cart" if from_cart else "items", "there is nothing to order")
        lines, currencies = [], set()
        for i, (product_id, quantity) in enumerate(wanted.items()):
            product = await catalog.load(conn, "product_state", product_id)
            if product is None or not product.active:
                raise Invalid(f"items[{i}].product_id", f"product {product_id} does not exist or is discontinued",
                              product_id=str(product_id))
            reserved = products.reserve(product, product_id, order_id, quantity)
            await _append_product(conn, product, reserved, meta, now)
            currencies.add(product.currency)
            lines.append(Line(product_id=product_id, seller_id=product.seller_id, name=product.name,
                              quantity=quantity, unit_price=product.price, line_total=product.price * quantity))
        if len(currencies) > 1:
            raise Invalid("items", f"an order cannot mix currencies ({', '.join(sorted(currencies))})")
        if sum(ln.line_total for ln in lines) > MAX_TOTAL:
            raise Invalid("items", f"an order's total may be at most {MAX_TOTAL}")
        placed = orders.OrderPlaced(order_id=order_id, buyer_id=buyer_id, lines=lines,
                                    total=sum((ln.line_total for ln in lines), Decimal("0.00")),
                                    currency=currencies.pop(), shipping_address=address, placed_at=now)
        await store.append(conn, orders.stream(order_id), 0, [placed], meta)
        if from_cart:
            await conn.execute("DELETE FROM cart_items WHERE buyer_id = %s", (buyer_id,))
    return orders.evolve(None, placed, 1, now), True


async def _append_product(conn: AsyncConnection, product, events: list[Event], meta: Meta, now: datetime) -> None:
    after = product
    for n, e in enumerate(events, start=1):
        after = products.evolve(after, e, product.version + n, now)
    await store.append(conn, products.stream(product.id), product.version, events, meta)
    await catalog.save(conn, "product_state", after)


async def transition(pool: AsyncConnectionPool, order_id: uuid.UUID, caller, decide, meta: Meta) -> Order:
    """Run a lifecycle decision; a cancellation also gives every line's stock back."""
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        order = await load(conn, order_id)
        if not visible(order, caller):
            raise NotFound("no such order")  # existence does not leak to whoever may not see it
        events = decide(order)
        if any(isinstance(e, orders.OrderCancelled) for e in events):
            await catalog.lock(conn, {ln.product_id for ln in order.lines})
            for product_id in sorted({ln.product_id for ln in order.lines}, key=str):
                product = await catalog.load(conn, "product_state", product_id)
                quantity = sum(ln.quantity for ln in order.lines if ln.product_id == product_id)
                await _append_product(conn, product, products.release(product, order_id, quantity), meta, now)
        await store.append(conn, orders.stream(order_id), order.version, events, meta)
    for e in events:
        order = orders.evolve(order, e, order.version + 1, now)
    return order
