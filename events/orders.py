"""Orders: events, state and the lifecycle pending -> paid -> shipped -> delivered, or cancelled
(pending or paid), or expired (pending past its payment deadline)."""

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import msgspec

from events.base import Event, event
from events.errors import Conflict, Forbidden, NotFound


def stream(order_id: uuid.UUID) -> str:
    return f"order-{order_id}"


class Line(msgspec.Struct, frozen=True, kw_only=True):
    product_id: uuid.UUID
    seller_id: uuid.UUID | None
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


class Address(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    line1: str
    line2: str = ""
    city: str
    postal_code: str
    country: str


@event("order.placed")
class OrderPlaced(Event, kw_only=True):
    order_id: uuid.UUID
    buyer_id: uuid.UUID
    lines: list[Line]
    total: Decimal
    currency: str
    shipping_address: Address
    placed_at: datetime


@event("order.paid")
class OrderPaid(Event, kw_only=True):
    order_id: uuid.UUID
    amount: Decimal
    reference: str


@event("order.shipped")
class OrderShipped(Event, kw_only=True):
    order_id: uuid.UUID


@event("order.delivered")
class OrderDelivered(Event, kw_only=True):
    order_id: uuid.UUID


@event("order.cancelled")
class OrderCancelled(Event, kw_only=True):
    order_id: uuid.UUID
    refund: Decimal | None = None  # the amount refunded when the order had been paid
    reason: str = ""


@event("order.expired")
class OrderExpired(Event, kw_only=True):
    """Not paid in time: the order ends and gives its stock back, as a cancellation does."""

    order_id: uuid.UUID
    deadline: datetime  # when payment was due


STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "expired")


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    buyer_id: uuid.UUID
    status: str
    lines: list[Line]
    total: Decimal
    currency: str
    shipping_address: Address
    payment_reference: str | None
    refund: Decimal | None
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def seller_ids(self) -> set:
        return {line.seller_id for line in self.lines}


_STATUS = {OrderPaid: "paid", OrderShipped: "shipped", OrderDelivered: "delivered", OrderCancelled: "cancelled",
           OrderExpired: "expired"}


def evolve(state: Order | None, e: Event, version: int, at: datetime) -> Order | None:
    match e:
        case OrderPlaced():
            return Order(id=e.order_id, buyer_id=e.buyer_id, status="pending", lines=e.lines, total=e.total,
                         currency=e.currency, shipping_address=e.shipping_address, payment_reference=None,
                         refund=None, created_at=e.placed_at, updated_at=at, version=version)
        case OrderPaid() if state:
            return msgspec.structs.replace(state, status="paid", payment_reference=e.reference, updated_at=at,
                                           version=version)
        case OrderCancelled() if state:
            return msgspec.structs.replace(state, status="cancelled", refund=e.refund, updated_at=at, version=version)
        case OrderShipped() | OrderDelivered() | OrderExpired() if state:
            return msgspec.structs.replace(state, status=_STATUS[type(e)], updated_at=at, version=version)
    return msgspec.structs.replace(state, updated_at=at, version=version) if state else state


def _require(order: Order | None, *statuses: str) -> Order:
    if order is None:
        raise NotFound("no such order")
    if order.status not in statuses:
        raise Conflict(f"the order is {order.status}", current_status=order.status)
    return order


def pay(order: Order | None, actor_id: uuid.UUID, reference: str) -> list[Event]:
    if order is not None and order.buyer_id != actor_id:
        raise Forbidden("only the buyer pays for an order")
    order = _require(order, "pending")
    return [OrderPaid(order_id=order.id, amount=order.total, reference=reference)]


def may_fulfil(order: Order, actor_id: uuid.UUID, role: str) -> bool:
    """Admins, and a seller whose products make up the whole order."""
    return role == "admin" or (role == "seller" and order.seller_ids == {actor_id})


def ship(order: Order | None, actor_id: uuid.UUID, role: str) -> list[Event]:
    if order is not None and not may_fulfil(order, actor_id, role):
        raise Forbidden("only an admin or the seller of every line may ship this order")
    order = _require(order, "paid")
    return [OrderShipped(order_id=order.id)]


def deliver(order: Order | None, actor_id: uuid.UUID, role: str) -> list[Event]:
    if order is not None and not may_fulfil(order, actor_id, role):
        raise Forbidden("only an admin or the seller of every line may mark this order delivered")
    order = _require(order, "shipped")
    return [OrderDelivered(order_id=order.id)]


def cancel(order: Order | None, actor_id: uuid.UUID, role: str, reason: str = "") -> list[Event]:
    if order is not None and role != "admin" and order.buyer_id != actor_id:
        raise Forbidden("only the buyer or an admin may cancel this order")
    order = _require(order, "pending", "paid")
    refund = order.total if order.status == "paid" else None
    return [OrderCancelled(order_id=order.id, refund=refund, reason=reason)]


def expire(order: Order | None, now: datetime, timeout: timedelta) -> list[Event]:
    """A pending order whose payment is overdue expires; any other is left alone (Conflict)."""
    order = _require(order, "pending")
    deadline = order.created_at + timeout
    if now < deadline:
        raise Conflict(f"the order's payment is due at {deadline.isoformat()}", current_status=order.status)
    return [OrderExpired(order_id=order.id, deadline=deadline)]


def releases_stock(events: list[Event]) -> bool:
    """The order ends without shipping: its reserved units go back."""
    return any(isinstance(e, (OrderCancelled, OrderExpired)) for e in events)


def ships_stock(events: list[Event]) -> bool:
    return any(isinstance(e, OrderShipped) for e in events)
