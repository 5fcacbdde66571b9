"""Payment commands: open a payment session for an order, and apply what the provider's webhooks say.

A provider event is applied once, whatever the number of deliveries: its id is claimed in
`payment_events` in the transaction that appends what it does, so a concurrent delivery of the same
event waits on that key and then finds it taken. The order's lock is taken first, before anything is
written (see events/product_state.lock_query for why the order of those two matters).
"""

import uuid
from datetime import UTC, datetime

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events import orders, store
from events.base import Event, Meta, advance
from events.commands import ordering
from events.errors import NotFound
from events.orders import Order
from events.payments import TOLERANCE_SECONDS, ProviderEvent
from events.providers import Provider, ReturnUrls, Session
from events.store import WrongExpectedVersion
from events.users import Actor

ATTEMPTS = 5  # a cancellation or an expiry that commits between our read and our append: decide again


class Replayed(Exception):
    """This exact signed request was received before: someone is replaying it."""


async def request(pool: AsyncConnectionPool, provider: Provider, order_id: uuid.UUID, actor: Actor, urls: ReturnUrls,
                  meta: Meta) -> tuple[Order, Session]:
    """Open a session with the provider for a pending order of the caller's, and record it."""
    async with pool.connection() as conn:
        order = await ordering.load(conn, order_id)
    if not orders.visible(order, actor):
        raise NotFound("no such order")
    order = orders.payable(order, actor)  # checked before asking the provider: a refusal opens no session
    session = await provider.open_session(pool, order.id, order.total, order.currency, urls)
    order = await ordering.transition(
        pool, order_id, actor, lambda o: orders.request_payment(o, actor, provider.name, session.session_id), meta,
        moves_stock=False)
    return order, session


async def receive(pool: AsyncConnectionPool, provider: str, event: ProviderEvent, signature: str,
                  meta: Meta) -> tuple[list[Event] | None, Order]:
    """Apply a verified provider event: (the events it recorded, None when it was applied before; the
    order after it). Raises Replayed for a signature seen before, NotFound for an event that names no
    order we know."""
    for attempt in range(ATTEMPTS):
        try:
            return await _receive_once(pool, provider, event, signature, meta)
        except WrongExpectedVersion:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


_PAID_ORDER = "SELECT order_id FROM payment_orders WHERE provider = %s AND payment_id = %s"
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('order:' || %s::text, 0))"
_SEEN = "INSERT INTO webhook_signatures (signature) VALUES (%s) ON CONFLICT DO NOTHING RETURNING 1"
_FORGET = "DELETE FROM webhook_signatures WHERE seen_at < now() - make_interval(secs => %s)"
_CLAIM = ("INSERT INTO payment_events (provider, event_id, order_id) VALUES (%s, %s, %s)"
          " ON CONFLICT DO NOTHING RETURNING 1")
_PAID_BY = "INSERT INTO payment_orders (provider, payment_id, order_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"


async def _receive_once(pool: AsyncConnectionPool, provider: str, event: ProviderEvent, signature: str,
                        meta: Meta) -> tuple[list[Event] | None, Order]:
    async with pool.connection() as conn, conn.transaction():
        order_id = event.order_id or await _order_paid_by(conn, provider, event.payment_id)
        if order_id is None:
            raise NotFound("the event names no order and no payment of one")
        await conn.execute(_LOCK, (order_id,))  # before the first write, which takes the transaction's id
        if await (await conn.execute(_SEEN, (signature,))).fetchone() is None:
            raise Replayed
        await conn.execute(_FORGET, (2 * TOLERANCE_SECONDS,))  # older ones are refused as stale anyway
        order = await ordering.load(conn, order_id)
        if order is None:
            raise NotFound(f"the event names order {order_id}, which does not exist")
        if await (await conn.execute(_CLAIM, (provider, event.event_id, order_id))).fetchone() is None:
            return None, order  # applied before: the provider delivered it again
        events = orders.settle(order, event)
        await store.append(conn, orders.stream(order_id), order.version, events, meta)
        if event.outcome == "succeeded" and event.payment_id:
            await conn.execute(_PAID_BY, (provider, event.payment_id, order_id))
    return events, advance(orders.evolve, order, events, datetime.now(UTC))


async def _order_paid_by(conn: AsyncConnection, provider: str, payment_id: str | None) -> uuid.UUID | None:
    if payment_id is None:
        return None
    row = await (await conn.execute(_PAID_ORDER, (provider, payment_id))).fetchone()
    return row[0] if row else None
