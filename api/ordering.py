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
from events.products import Product
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


async def place(pool: AsyncConnectionPool, buyer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]], address: Address,
                meta: Meta, *, idempotency: tuple[str, bytes] | None = None, from_cart: bool = False,
                order_id: uuid.UUID | None = None) -> tuple[Order, bool]:
    """Returns the order and whether it was created now (False: an idempotent replay, whose order has
    another id than `order_id`, the id a new order gets: the caller may pick it to watch its stream)."""
    wanted = merge(items)
    order_id = uuid.uuid4() if order_id is None else order_id
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        # Locks first, reads after (see projections/catalog.py: lock). Two retries with one
        # Idempotency-Key queue on the same locks, so the second finds the first's key.
        await catalog.lock(conn, wanted)
        claim = await conn.execute(_CLAIM, (buyer_id, *idempotency, order_id)) if idempotency else None
        found = await catalog.load_many(conn, "product_state", wanted)
        if claim and not await claim.fetchone():
            return await load(conn, await _held_order(conn, buyer_id, *idempotency)), False
        if not wanted:
            raise Invalid("cart" if from_cart else "items", "there is nothing to order")
        lines, currencies, reserved = [], set(), []
        for i, (product_id, quantity) in enumerate(wanted.items()):
            product = found.get(product_id)
            if product is None or not product.active:
                raise Invalid(f"items[{i}].product_id", f"product {product_id} does not exist or is discontinued",
                              product_id=str(product_id))
            reserved.append((product, products.reserve(product, product_id, order_id, quantity)))
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
        await _append_with_products(conn, reserved, (orders.stream(order_id), 0, [placed]), meta, now)
        if from_cart:
            await conn.execute("DELETE FROM cart_items WHERE buyer_id = %s", (buyer_id,))
    return orders.evolve(None, placed, 1, now), True


async def _append_with_products(conn: AsyncConnection, moves: list[tuple[Product, list[Event]]],
                                order_append: tuple[str, int, list[Event]], meta: Meta, now: datetime) -> None:
    """Stock moves on the products and the order's events in one append, then the products'
    write-side rows."""
    await store.append_many(conn, [*((products.stream(p.id), p.version, events) for p, events in moves), order_append],
                            meta)
    await catalog.save(conn, "product_state", *(_evolved(p, events, now) for p, events in moves))


def _evolved(product: Product, events: list[Event], now: datetime) -> Product:
    version = product.version
    for e in events:
        version += 1
        product = products.evolve(product, e, version, now)
    return product


async def transition(pool: AsyncConnectionPool, order_id: uuid.UUID, caller, decide, meta: Meta) -> Order:
    """Run a lifecycle decision. An order that ends unshipped (cancelled, expired) gives every line's
    reserved stock back; a shipment takes it out of on-hand stock for good."""
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        order = await load(conn, order_id)
        if not visible(order, caller):
            raise NotFound("no such order")  # existence does not leak to whoever may not see it
        events = decide(order)
        moves = []
        stock_move = (products.release if orders.releases_stock(events)
                      else products.ship if orders.ships_stock(events) else None)
        if stock_move is not None:
            quantities = {}
            for ln in order.lines:
                quantities[ln.product_id] = quantities.get(ln.product_id, 0) + ln.quantity
            await catalog.lock(conn, quantities)
            found = await catalog.load_many(conn, "product_state", quantities)
            moves = [(found[pid], stock_move(found[pid], order_id, q)) for pid, q in sorted(
                quantities.items(), key=lambda kv: str(kv[0]))]
        await _append_with_products(conn, moves, (orders.stream(order_id), order.version, events), meta, now)
    for e in events:
        order = orders.evolve(order, e, order.version + 1, now)
    return order
