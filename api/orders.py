"""/orders routes: place (buyers), read (by visibility), and the lifecycle transitions."""

import hashlib
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from msgspec import Meta

from api.auth import event_meta, requires
from api.conditional import IfNoneMatch, tagged
from api.openapi import ETAG, LOCATION, NOT_MODIFIED, REPLAYED
from api.consistency import Watch
from api.pagination import Pager, Sort
from api.problems import pattern
from events import orders
from events.commands import ordering
from events.errors import Invalid, NotFound
from events.orders import Address, Order, Payment, Status
from events.users import Actor
from projections import orders as order_rows

Text = Annotated[str, Meta(min_length=1, max_length=200)]


class AddressIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[Text, Meta(examples=["Ada Lovelace"])]
    line1: Annotated[Text, Meta(examples=["12 St James Square"])]
    city: Annotated[Text, Meta(examples=["London"])]
    postal_code: Annotated[str, Meta(min_length=1, max_length=20, examples=["SW1Y 4JH"])]
    country: Annotated[str, pattern(r"^[A-Za-z]{2}$", "a two-letter country code such as GB")]
    line2: Annotated[str, Meta(max_length=200)] = ""

    def address(self) -> Address:
        return orders.shipping_address(name=self.name, line1=self.line1, line2=self.line2, city=self.city,
                                       postal_code=self.postal_code, country=self.country)


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Annotated[int, Meta(ge=1, le=1000)]


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[ItemIn], Meta(min_length=1, max_length=100)]
    shipping_address: AddressIn


class PayIn(msgspec.Struct, forbid_unknown_fields=True):
    reference: Annotated[str, Meta(min_length=1, max_length=100)] | None = None


class CancelIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] = ""


class LineOut(msgspec.Struct):
    product_id: uuid.UUID
    seller_id: uuid.UUID | None
    name: str
    quantity: int
    unit_price: str
    line_total: str


class PaymentOut(msgspec.Struct):
    session_id: str | None
    status: str  # requested, failed, paid, or refused (taken by the provider but not by the order: refund due)
    amount: str | None
    currency: str | None
    payment_id: str | None
    refund_due: str | None
    refunded: str | None
    detail: str


class OrderOut(msgspec.Struct):
    id: uuid.UUID
    status: Status
    items: list[LineOut]
    total: str  # of the items shown
    currency: str
    buyer_id: uuid.UUID
    shipping_address: Address | None  # null for a seller of only some lines (events.orders.sees_whole)
    payment_reference: str | None
    refund: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    partial: bool = False  # a seller of some lines: only its lines, their total, no address or payment
    payments: list[PaymentOut] = []  # the payment sessions opened for it, and what became of each


class OrderPage(msgspec.Struct):
    items: list[OrderOut]
    next_cursor: str | None


def _money(d: Decimal | None) -> str | None:
    return None if d is None else f"{d:.2f}"


def out(o: Order, viewer: Actor) -> OrderOut:
    """The order as `viewer` may see it (events.orders.sees_whole)."""
    whole = orders.sees_whole(o, viewer)
    lines = orders.lines_seen(o, viewer)
    return OrderOut(
        id=o.id, status=o.status, total=_money(o.total if whole else sum(ln.line_total for ln in lines)),
        currency=o.currency, buyer_id=o.buyer_id,
        items=[LineOut(product_id=ln.product_id, seller_id=ln.seller_id, name=ln.name, quantity=ln.quantity,
                       unit_price=_money(ln.unit_price), line_total=_money(ln.line_total)) for ln in lines],
        shipping_address=o.shipping_address if whole else None,
        payment_reference=o.payment_reference if whole else None, refund=_money(o.refund) if whole else None,
        version=o.version, created_at=o.created_at, updated_at=o.updated_at, partial=not whole,
        payments=[_payment(p) for p in o.payments] if whole else [])


def _payment(p: Payment) -> PaymentOut:
    return PaymentOut(session_id=p.session_id, status=p.status, amount=_money(p.amount), currency=p.currency,
                      payment_id=p.payment_id, refund_due=_money(p.refund_due), refunded=_money(p.refunded),
                      detail=p.detail)


IdempotencyKey = Annotated[str | None, HeaderParameter(
    name="Idempotency-Key", description="Any string of 1 to 200 characters, such as a UUID. The same key with"
    " the same body answers the first order again (with Idempotent-Replayed: true) instead of placing another;"
    " with another body it is a 422.")]


def idempotency(key: str | None, body: object) -> tuple[str, bytes] | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise Invalid("Idempotency-Key", "must be 1 to 200 characters")
    return key, hashlib.sha256(msgspec.json.encode(body, order="sorted")).digest()


async def read_your_write(state: State, order: Order, watch: Watch | None = None) -> None:
    await state.projected.applied(state.pool, state.orders_projector, orders.stream(order.id), order.version,
                                  state.settings.ryw_timeout, watch)


def watch_order(state: State, order_id: uuid.UUID):
    """Enter before the command that writes the order's stream commits (see api/consistency.py)."""
    return state.projected.watch("orders", orders.stream(order_id))


async def placed(state: State, order: Order, created: bool, viewer: Actor,
                 watch: Watch | None = None) -> Response[OrderOut]:
    await read_your_write(state, order, watch if created else None)  # a replay's order is an earlier one
    headers = {"Location": f"/orders/{order.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return tagged(out(order, viewer), order.version, status=201, headers=headers)


NO_ORDER = "No such order, or not one the caller may see."
PLACING = {
    409: "Not enough stock of a product (`available` says how much is left), or it changed meanwhile.",
    422: "An item or the address is not valid, a product does not exist or is discontinued, the currencies"
         " differ, or the Idempotency-Key was used with another body.",
}


def transition_problems(who: str, statuses: str) -> dict:
    return {"problems": {403: f"Only {who} may do this.", 404: NO_ORDER,
                         409: f"The order is not {statuses} (`current_status` says what it is), or it changed"
                              " meanwhile."}}


@post("/orders", guards=[requires("buyer")], operation_id="placeOrder", tags=["orders"],
      summary="Place an order; stock is reserved at once (honours Idempotency-Key)",
      response_headers=[ETAG, LOCATION, REPLAYED], opt={"problems": PLACING})
async def place_order(data: JSONBody[OrderIn], request: Request, state: State,
                      idempotency_key: IdempotencyKey = None) -> Response[OrderOut]:
    """At the catalog's prices, in one currency, all lines or none. The order is pending until paid;
    unpaid after ORDER_PAYMENT_TIMEOUT, it expires and its stock goes back."""
    order_id = uuid.uuid4()
    with watch_order(state, order_id) as watch:
        order, created = await ordering.place(
            state.pool, request.user.id, [(i.product_id, i.quantity) for i in data.items],
            data.shipping_address.address(), event_meta(request), idempotency=idempotency(idempotency_key, data),
            order_id=order_id)
        return await placed(state, order, created, request.user.actor, watch)


async def _current(state: State, order_id: uuid.UUID) -> Order | None:
    """The read row, or the stream folded when the projection is behind (read-your-writes)."""
    async with state.pool.connection() as conn:
        row = await order_rows.load(conn, order_id)
        cur = await conn.execute("SELECT max(version) FROM events WHERE stream_id = %s", (orders.stream(order_id),))
        head = (await cur.fetchone())[0]
        if head and (row is None or row.version < head):
            row = await ordering.load(conn, order_id)
    return row


@get("/orders/{order_id:uuid}", operation_id="getOrder", tags=["orders"],
     summary="One order (404 to anyone who may not see it)", response_headers=[ETAG], responses=NOT_MODIFIED,
     opt={"problems": {404: NO_ORDER}})
async def get_order(order_id: FromPath[uuid.UUID], request: Request, state: State,
                    if_none_match: IfNoneMatch = None) -> Response[OrderOut]:
    """Its buyer, the seller of any of its lines and admins see it. Never older than your own last
    change to it."""
    order = await _current(state, order_id)
    if not orders.visible(order, request.user.actor):
        raise NotFound("no such order")
    return tagged(out(order, request.user.actor), order.version, if_none_match)


_NEWEST_FIRST = Sort(("created_at", "id"), ("timestamptz", "uuid"), descending=True)


@get("/orders", operation_id="listOrders", tags=["orders"],
     summary="Orders the caller may see: a buyer its own, a seller those with its products, an admin all")
async def list_orders(
    request: Request,
    state: State,
    status: FromQuery[Status | None] = None,
    created_from: FromQuery[datetime | None] = None,
    created_to: FromQuery[datetime | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    cursor: FromQuery[str | None] = None,
) -> OrderPage:
    """Newest first; `created_to` is exclusive. Pages as every list: `next_cursor` back as `cursor`."""
    pager = Pager(state.settings.jwt_secret, _NEWEST_FIRST, limit, cursor, listing="orders", status=status,
                  created_from=created_from, created_to=created_to)
    where, params = [], []
    if (keys := orders.keys(request.user.actor)) is not None:
        where.append("viewers && %s::text[]")  # the same rule as orders.visible
        params.append(keys)
    for value, clause in ((status, "status = %s"), (created_from, "created_at >= %s"), (created_to, "created_at < %s")):
        if value is not None:
            where.append(clause)
            params.append(value)
    if (after := pager.condition()) is not None:
        where.append(after[0])
        params += after[1]
    query = f"{order_rows.SELECT} WHERE {' AND '.join(where) or 'true'} ORDER BY {_NEWEST_FIRST.order_by} LIMIT %s"
    async with state.pool.connection() as conn:  # two queries a page: the orders, then their lines
        cur = await conn.execute(query, [*params, pager.fetch])
        found, next_cursor = pager.page((await order_rows.orders_of(conn, await cur.fetchall())).values())
    return OrderPage(items=[out(o, request.user.actor) for o in found], next_cursor=next_cursor)


async def _transition(request: Request, state: State, order_id: uuid.UUID, decide,
                      moves_stock: bool) -> Response[OrderOut]:
    with watch_order(state, order_id) as watch:
        order = await ordering.transition(state.pool, order_id, request.user.actor, decide, event_meta(request),
                                          moves_stock=moves_stock)
        await read_your_write(state, order, watch)
    return tagged(out(order, request.user.actor), order.version)


@post("/orders/{order_id:uuid}/pay", operation_id="payOrder", tags=["orders"], status_code=200,
      summary="Record a test payment of a pending order at once (the buyer; only with PAYMENT_PROVIDER=test)",
      response_headers=[ETAG], opt=transition_problems("the order's buyer", "pending"))
async def pay(order_id: FromPath[uuid.UUID], request: Request, state: State,
              data: JSONBody[PayIn | None] = None) -> Response[OrderOut]:
    """No provider is asked and no money moves: a shortcut for demos and tests, served only while the
    test provider is configured. Real payments go through POST /orders/{id}/payment and the provider's
    webhook. The body is optional: a payment `reference` of your own, or one is made up (`test_...`)."""
    reference = (data.reference if data and data.reference else None) or f"test_{uuid.uuid4().hex}"
    actor = request.user.actor
    return await _transition(request, state, order_id, lambda o: orders.pay(o, actor, reference), False)


@post("/orders/{order_id:uuid}/ship", operation_id="shipOrder", tags=["orders"], status_code=200,
      summary="Ship a paid order (admin, or the seller of every line)", response_headers=[ETAG],
      opt=transition_problems("an admin or the seller of every line", "paid"))
async def ship(order_id: FromPath[uuid.UUID], request: Request, state: State) -> Response[OrderOut]:
    """Its reserved units leave the stock for good."""
    actor = request.user.actor
    return await _transition(request, state, order_id, lambda o: orders.ship(o, actor), True)


@post("/orders/{order_id:uuid}/deliver", operation_id="deliverOrder", tags=["orders"], status_code=200,
      summary="Mark a shipped order delivered (admin, or the seller of every line)", response_headers=[ETAG],
      opt=transition_problems("an admin or the seller of every line", "shipped"))
async def deliver(order_id: FromPath[uuid.UUID], request: Request, state: State) -> Response[OrderOut]:
    """The end of an order's life."""
    actor = request.user.actor
    return await _transition(request, state, order_id, lambda o: orders.deliver(o, actor), False)


@post("/orders/{order_id:uuid}/cancel", operation_id="cancelOrder", tags=["orders"], status_code=200,
      summary="Cancel a pending or paid order (the buyer, or an admin); stock goes back, a payment is refunded",
      response_headers=[ETAG], opt=transition_problems("the order's buyer or an admin", "pending or paid"))
async def cancel(order_id: FromPath[uuid.UUID], request: Request, state: State,
                 data: JSONBody[CancelIn | None] = None) -> Response[OrderOut]:
    """The body is optional: a `reason`. A paid order's `refund` is its total."""
    actor = request.user.actor
    reason = data.reason if data else ""
    return await _transition(request, state, order_id, lambda o: orders.cancel(o, actor, reason), True)


ROUTES = [place_order, get_order, list_orders, ship, deliver, cancel]
TEST_PROVIDER_ROUTES = [pay]  # only while PAYMENT_PROVIDER=test: a payment no provider took
