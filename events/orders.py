"""Orders: events, state and the lifecycle pending -> paid -> shipped -> delivered, or cancelled
(pending or paid), or expired (pending past its payment deadline)."""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

import msgspec

from events import products
from events.base import Event, event
from events.errors import Conflict, Forbidden, Invalid, NotFound
from events.payments import ProviderEvent
from events.products import Product
from events.text import required
from events.users import Actor


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


def shipping_address(*, name: str, line1: str, line2: str, city: str, postal_code: str, country: str) -> Address:
    """An address to ship to, each line without surrounding spaces; a required line that shows nothing
    is Invalid, named as the request names it (`shipping_address.city`)."""
    def line(field: str, value: str) -> str:
        return required(value, f"shipping_address.{field}")
    return Address(name=line("name", name), line1=line("line1", line1), line2=line2.strip(), city=line("city", city),
                   postal_code=line("postal_code", postal_code), country=country.upper())


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
    reference: str  # the provider's payment session (or a test reference of the direct /pay)
    payment_id: str | None = None  # the provider's id of the money moved, which its refunds name


@event("order.payment_requested")
class PaymentRequested(Event, kw_only=True):
    """A payment session was opened with the provider for the order's total."""

    order_id: uuid.UUID
    provider: str
    session_id: str
    amount: Decimal
    currency: str


@event("order.payment_failed")
class PaymentFailed(Event, kw_only=True):
    """The provider says a payment did not go through; the order stays as it was."""

    order_id: uuid.UUID
    session_id: str | None
    detail: str


@event("order.payment_refused")
class PaymentRefused(Event, kw_only=True):
    """The provider took money that the order does not take (it was cancelled or expired meanwhile,
    is paid already, or the amount, currency or session do not match it): to be refunded."""

    order_id: uuid.UUID
    session_id: str | None
    payment_id: str | None
    amount: Decimal | None
    currency: str | None
    reason: str  # order_cancelled, order_expired, order_paid, ..., unknown_session, amount_mismatch, currency_mismatch


@event("order.payment_refunded")
class PaymentRefunded(Event, kw_only=True):
    order_id: uuid.UUID
    payment_id: str | None
    amount: Decimal | None  # refunded so far on that payment, as the provider counts it
    currency: str | None


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


Status = Literal["pending", "paid", "shipped", "delivered", "cancelled", "expired"]


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment session of an order, as the order's events left it."""

    session_id: str | None
    amount: Decimal | None  # requested; for a refused payment, what the provider took
    currency: str | None
    status: Literal["requested", "failed", "paid", "refused"] = "requested"
    payment_id: str | None = None
    refund_due: Decimal | None = None  # taken but refused: owed back to the buyer
    refunded: Decimal | None = None  # refunded so far, as the provider reported
    detail: str = ""


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    buyer_id: uuid.UUID
    status: Status
    lines: list[Line]
    total: Decimal
    currency: str
    shipping_address: Address
    payment_reference: str | None
    refund: Decimal | None
    created_at: datetime
    updated_at: datetime
    version: int
    payments: list[Payment] = []

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
            payments = _noted(state.payments, e.reference, status="paid", payment_id=e.payment_id)
            return msgspec.structs.replace(state, status="paid", payment_reference=e.reference, payments=payments,
                                           updated_at=at, version=version)
        case PaymentRequested() | PaymentFailed() | PaymentRefused() | PaymentRefunded() if state:
            return msgspec.structs.replace(state, payments=_payments(state.payments, e), updated_at=at,
                                           version=version)
        case OrderCancelled() if state:
            return msgspec.structs.replace(state, status="cancelled", refund=e.refund, updated_at=at, version=version)
        case OrderShipped() | OrderDelivered() | OrderExpired() if state:
            return msgspec.structs.replace(state, status=_STATUS[type(e)], updated_at=at, version=version)
    return msgspec.structs.replace(state, updated_at=at, version=version) if state else state


def _noted(payments: list[Payment], session_id: str | None, **changes) -> list[Payment]:
    return [msgspec.structs.replace(p, **changes) if p.session_id == session_id else p for p in payments]


def _payments(payments: list[Payment], e: Event) -> list[Payment]:
    """The order's payments after a payment event."""
    match e:
        case PaymentRequested():
            return [*payments, Payment(session_id=e.session_id, amount=e.amount, currency=e.currency)]
        case PaymentFailed():
            return _noted(payments, e.session_id, status="failed", detail=e.detail)
        case PaymentRefused():
            refused = {"status": "refused", "payment_id": e.payment_id, "refund_due": e.amount, "detail": e.reason}
            if e.session_id is not None and any(p.session_id == e.session_id for p in payments):
                return _noted(payments, e.session_id, **refused, amount=e.amount, currency=e.currency)
            return [*payments, Payment(session_id=e.session_id, amount=e.amount, currency=e.currency, **refused)]
        case PaymentRefunded():
            return [msgspec.structs.replace(p, refunded=e.amount) if p.payment_id == e.payment_id else p
                    for p in payments]
    return payments


MAX_LINE_QUANTITY = 1000
MAX_TOTAL = Decimal("999999999999.99")  # what the read tables' numeric(14,2) holds


def merge(items: list[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, int]:
    """Repeated products as one line each, in product id order (the order their locks are taken in)."""
    merged: dict[uuid.UUID, int] = {}
    for product_id, quantity in items:
        merged[product_id] = merged.get(product_id, 0) + quantity
    for product_id, quantity in merged.items():
        if quantity > MAX_LINE_QUANTITY:
            raise Invalid("items", f"at most {MAX_LINE_QUANTITY} of product {product_id} in one order",
                          product_id=str(product_id))
    return dict(sorted(merged.items(), key=lambda kv: str(kv[0])))


def place(order_id: uuid.UUID, buyer_id: uuid.UUID, wanted: dict[uuid.UUID, int], found: dict[uuid.UUID, Product],
          address: Address, now: datetime) -> tuple[OrderPlaced, dict[uuid.UUID, list[Event]]]:
    """The order, at the catalog's prices, and each product's reservation. Any line that cannot be
    served refuses the whole order: one currency, live products, enough stock, a total that fits."""
    lines, currencies, reservations = [], set(), {}
    for i, (product_id, quantity) in enumerate(wanted.items()):
        product = found.get(product_id)
        if product is None or not product.active:
            raise Invalid(f"items[{i}].product_id", f"product {product_id} does not exist or is discontinued",
                          product_id=str(product_id))
        reservations[product_id] = products.reserve(product, product_id, order_id, quantity)
        currencies.add(product.currency)
        lines.append(Line(product_id=product_id, seller_id=product.seller_id, name=product.name,
                          quantity=quantity, unit_price=product.price, line_total=product.price * quantity))
    if not lines:
        raise Invalid("items", "there is nothing to order")
    if len(currencies) > 1:
        raise Invalid("items", f"an order cannot mix currencies ({', '.join(sorted(currencies))})")
    total = sum((ln.line_total for ln in lines), Decimal("0.00"))
    if total > MAX_TOTAL:
        raise Invalid("items", f"an order's total may be at most {MAX_TOTAL}")
    placed = OrderPlaced(order_id=order_id, buyer_id=buyer_id, lines=lines, total=total, currency=currencies.pop(),
                         shipping_address=address, placed_at=now)
    return placed, reservations


# Who may see an order, written once: an order names its viewers, a caller holds keys, and the order is
# visible when they meet. The orders read table stores the viewers, so a listing asks the same question.
def viewers(order: Order) -> list[str]:
    """The buyer, and the seller of each line."""
    return [f"buyer:{order.buyer_id}", *sorted({f"seller:{ln.seller_id}" for ln in order.lines if ln.seller_id})]


def keys(actor: Actor) -> list[str] | None:
    """What `actor` sees by: None sees everything (admins and the system's workers)."""
    if actor.is_admin:
        return None
    return [f"buyer:{actor.id}", *([f"seller:{actor.id}"] if actor.role == "seller" else [])]


def visible(order: Order | None, actor: Actor) -> bool:
    if order is None:
        return False
    held = keys(actor)
    return held is None or not set(held).isdisjoint(viewers(order))


# What of an order a viewer sees. The buyer, admins and a seller of every line see all of it. A seller of
# some lines of a mixed order sees those lines only: not the other sellers' products, prices and
# quantities, nor the buyer's address and payment, which it does not need: a mixed order is shipped by
# an admin (see may_fulfil), never by one of its sellers.
def sees_whole(order: Order, actor: Actor) -> bool:
    return actor.is_admin or order.buyer_id == actor.id or may_fulfil(order, actor)


def lines_seen(order: Order, actor: Actor) -> list[Line]:
    return order.lines if sees_whole(order, actor) else [ln for ln in order.lines if ln.seller_id == actor.id]


def _require(order: Order | None, *statuses: str) -> Order:
    if order is None:
        raise NotFound("no such order")
    if order.status not in statuses:
        raise Conflict(f"the order is {order.status}", current_status=order.status)
    return order


def payable(order: Order | None, actor: Actor) -> Order:
    """The order, if `actor` may pay it now: its buyer, while it is pending."""
    if order is not None and order.buyer_id != actor.id:
        raise Forbidden("only the buyer pays for an order")
    return _require(order, "pending")


def pay(order: Order | None, actor: Actor, reference: str) -> list[Event]:
    """A payment recorded directly (the test provider's /pay): no provider is asked."""
    order = payable(order, actor)
    return [OrderPaid(order_id=order.id, amount=order.total, reference=reference)]


def request_payment(order: Order | None, actor: Actor, provider: str, session_id: str) -> list[Event]:
    order = payable(order, actor)
    return [PaymentRequested(order_id=order.id, provider=provider, session_id=session_id, amount=order.total,
                             currency=order.currency)]


def settle(order: Order, e: ProviderEvent) -> list[Event]:
    """What a verified provider event does to the order. A success pays it only if it is pending and
    the session, amount and currency are the ones it asked for; any other success is money to give
    back, recorded as refused (never dropped). A failure or a refund is recorded as it is."""
    if e.outcome == "failed":
        return [PaymentFailed(order_id=order.id, session_id=e.session_id, detail=e.detail)]
    if e.outcome == "refunded":
        return [PaymentRefunded(order_id=order.id, payment_id=e.payment_id, amount=e.amount, currency=e.currency)]
    if e.session_id is not None and order.payment_reference == e.session_id:
        return []  # another event of the payment that paid it (a session's completion, then its async success)
    if reason := _refusal(order, e):
        return [PaymentRefused(order_id=order.id, session_id=e.session_id, payment_id=e.payment_id, amount=e.amount,
                               currency=e.currency, reason=reason)]
    return [OrderPaid(order_id=order.id, amount=e.amount, reference=e.session_id, payment_id=e.payment_id)]


def _refusal(order: Order, e: ProviderEvent) -> str | None:
    if order.status != "pending":
        return f"order_{order.status}"
    if not any(p.session_id == e.session_id for p in order.payments):
        return "unknown_session"
    if e.currency != order.currency:
        return "currency_mismatch"
    if e.amount != order.total:
        return "amount_mismatch"
    return None


def may_fulfil(order: Order, actor: Actor) -> bool:
    """Admins, and a seller whose products make up the whole order."""
    return actor.is_admin or (actor.role == "seller" and order.seller_ids == {actor.id})


def ship(order: Order | None, actor: Actor) -> list[Event]:
    if order is not None and not may_fulfil(order, actor):
        raise Forbidden("only an admin or the seller of every line may ship this order")
    order = _require(order, "paid")
    return [OrderShipped(order_id=order.id)]


def deliver(order: Order | None, actor: Actor) -> list[Event]:
    if order is not None and not may_fulfil(order, actor):
        raise Forbidden("only an admin or the seller of every line may mark this order delivered")
    order = _require(order, "shipped")
    return [OrderDelivered(order_id=order.id)]


def cancel(order: Order | None, actor: Actor, reason: str = "") -> list[Event]:
    if order is not None and not actor.is_admin and order.buyer_id != actor.id:
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


StockMove = Callable[[Product, uuid.UUID, int], list[Event]]


def stock_moves(order: Order, events: list[Event]) -> tuple[StockMove, dict[uuid.UUID, int]] | None:
    """What `events` do to the stock the order holds, per product (in lock order): an order that ends
    unshipped (cancelled, expired) releases it; a shipment takes it out of on-hand for good."""
    if any(isinstance(e, (OrderCancelled, OrderExpired)) for e in events):
        move = products.release
    elif any(isinstance(e, OrderShipped) for e in events):
        move = products.ship
    else:
        return None
    quantities: dict[uuid.UUID, int] = {}
    for ln in order.lines:
        quantities[ln.product_id] = quantities.get(ln.product_id, 0) + ln.quantity
    return move, dict(sorted(quantities.items(), key=lambda kv: str(kv[0])))
