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
from events.store import WrongExpectedVersion
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


_CART = "SELECT product_id, quantity FROM cart_items WHERE buyer_id = %s"
_TAKE_CART = "DELETE FROM cart_items WHERE buyer_id = %s AND product_id = ANY(%s) RETURNING product_id, quantity"


class _Replay(Exception):
    """The Idempotency-Key names an order placed before: roll back what this request did so far."""

    def __init__(self, order_id: uuid.UUID):
        self.order_id = order_id


async def place(pool: AsyncConnectionPool, buyer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]] | None,
                address: Address, meta: Meta, *, idempotency: tuple[str, bytes] | None = None,
                order_id: uuid.UUID | None = None) -> tuple[Order, bool]:
    """Place an order of `items`, or of the buyer's cart when `items` is None. Returns the order and
    whether it was created now (False: an idempotent replay, whose order has another id than
    `order_id`, the id a new order gets: the caller may pick it to watch its stream)."""
    order_id = uuid.uuid4() if order_id is None else order_id
    if items is not None and idempotency is None:
        try:
            return await _place_at_once(pool, buyer_id, items, address, meta, order_id), True
        except WrongExpectedVersion:
            pass  # a product moved on between the read and the write: once more, under its lock
    return await _place_locked(pool, buyer_id, items, address, meta, idempotency, order_id)


async def _place_at_once(pool: AsyncConnectionPool, buyer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]],
                         address: Address, meta: Meta, order_id: uuid.UUID) -> Order:
    """The common case in two statements and no explicit transaction: read the products, decide, then
    one statement that takes their locks and appends the order and the reservations on the products'
    versions as read. Should a product have moved on meanwhile, the append is refused as a whole
    (WrongExpectedVersion), and the caller places the order under the locks instead. Taking the locks
    in the statement keeps a locked placement from ever being refused by one of these."""
    now = datetime.now(UTC)
    wanted = orders.merge(items)
    async with pool.connection() as conn:
        found = await product_state.load_many(conn, wanted)
        placed, reservations = orders.place(order_id, buyer_id, wanted, found, address, now)
        await _write(conn, [(found[pid], events) for pid, events in reservations.items()],
                     (orders.stream(order_id), 0, [placed]), meta, now)
    return advance(orders.evolve, None, [placed], now)


async def _place_locked(pool: AsyncConnectionPool, buyer_id: uuid.UUID, items: list[tuple[uuid.UUID, int]] | None,
                        address: Address, meta: Meta, idempotency: tuple[str, bytes] | None,
                        order_id: uuid.UUID) -> tuple[Order, bool]:
    """Under the products' locks, in two round trips: the locks, the key and the product rows in one;
    the write and the COMMIT in the other. A checkout reads its cart first, one round trip more, and
    orders exactly the lines it then removes under the locks, so a line added meanwhile stays in the
    cart. Nothing is written before the locks are held: a write takes a transaction id, and one taken
    before queueing on a lock would sort before the event it follows (events/store.py refuses that)."""
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        if items is None:
            cart = await (await conn.execute(_CART, (buyer_id,))).fetchall()
        try:
            async with store.pipelined(conn):
                wanted = orders.merge(items if items is not None else cart)
                await product_state.lock(conn, wanted)  # locks first, reads after (see product_state.lock)
                # The key: a retry queued on the same locks finds the first request's order (and, for a
                # checkout, leaves the cart alone: this transaction rolls back).
                claim = await conn.execute(_CLAIM, (buyer_id, *idempotency, order_id)) if idempotency else None
                if items is None:
                    taken = await conn.execute(_TAKE_CART, (buyer_id, list(wanted)))
                found = await product_state.load_many(conn, wanted)
                await _check_claim(conn, claim, buyer_id, idempotency)
                if items is None:
                    if not (taken := await taken.fetchall()):
                        raise Invalid("cart", "the cart is empty")
                    wanted = orders.merge(taken)  # what was in the cart as it was emptied
                placed, reservations = orders.place(order_id, buyer_id, wanted, found, address, now)
                await _write(conn, [(found[pid], events) for pid, events in reservations.items()],
                             (orders.stream(order_id), 0, [placed]), meta, now)
        except _Replay as replay:
            async with conn.transaction():
                return await load(conn, replay.order_id), False
    return advance(orders.evolve, None, [placed], now), True


async def _check_claim(conn: AsyncConnection, claim, buyer_id: uuid.UUID, idempotency) -> None:
    """Raise _Replay when the Idempotency-Key was claimed by an earlier request; None: checked."""
    if claim is not None and await claim.fetchone() is None:
        raise _Replay(await _held_order(conn, buyer_id, *idempotency))


# One statement: the products' locks, the stock moves and the order's events, the products' stock
# figures. All of it or none, in a transaction or on its own.
_WRITE = store.append_statement(prior=product_state.LOCKS, after=product_state.MOVED)


async def _write(conn: AsyncConnection, moves: list[tuple[Product, list[Event]]],
                 order_append: tuple[str, int, list[Event]], meta: Meta, now: datetime) -> None:
    params = store.append_params([*((products.stream(p.id), p.version, events) for p, events in moves),
                                  order_append], meta)
    params["locked"] = [p.id for p, _ in moves]
    params["moved"] = product_state.moved(advance(products.evolve, p, events, now) for p, events in moves)
    await store.execute_append(conn, _WRITE, params)


# The product rows of an order's lines, locked in id order, from its `order.placed` event: a command
# that may move stock takes them in its first round trip, before it has decided anything.
_ORDER_PRODUCTS = ("SELECT DISTINCT (line->>'product_id')::uuid FROM events e,"
                   " jsonb_array_elements(e.data->'lines') AS line WHERE e.stream_id = %s AND e.type = 'order.placed'")


async def transition(pool: AsyncConnectionPool, order_id: uuid.UUID, actor: Actor, decide, meta: Meta, *,
                     moves_stock: bool = True) -> Order:
    """Run a lifecycle decision, with the stock moves it makes (see `orders.stock_moves`), in two round
    trips: the order's events (and, when the command `moves_stock`, its products, locked) in one, the
    new events, the products' rows and the COMMIT in the other."""
    now = datetime.now(UTC)
    stream = orders.stream(order_id)
    async with pool.connection() as conn, store.pipelined(conn):
        history = await conn.execute(_READ_STREAM, (stream,))
        if moves_stock:
            await product_state.lock_query(conn, _ORDER_PRODUCTS, (stream,))
            rows = await conn.execute(f"{product_state.SELECT} WHERE product_id IN ({_ORDER_PRODUCTS})", (stream,))
        order = replay(orders.evolve, map(store.recorded, await history.fetchall()))
        if not orders.visible(order, actor):
            raise NotFound("no such order")  # existence does not leak to whoever may not see it
        events = decide(order)
        moves = []
        if (stock := orders.stock_moves(order, events)) is not None:
            move, quantities = stock
            if moves_stock:
                found = product_state.from_rows(await rows.fetchall())
            else:  # not taken in advance: lock and read them now, one round trip more
                await product_state.lock(conn, quantities)
                found = await product_state.load_many(conn, quantities)
            moves = [(found[pid], move(found[pid], order_id, q)) for pid, q in quantities.items()]
        await _write(conn, moves, (stream, order.version, events), meta, now)
    return advance(orders.evolve, order, events, now)


_READ_STREAM = f"SELECT {store.COLUMNS} FROM events WHERE stream_id = %s ORDER BY version"
