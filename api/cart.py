"""/cart routes (buyers): a plain table of lines; checkout turns it into an order."""

import uuid
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from api.auth import event_meta, requires
from api.openapi import ETAG, LOCATION, REPLAYED
from api.orders import PLACING, AddressIn, IdempotencyKey, OrderOut, idempotency, placed, watch_order
from events.commands import cart, ordering


class QuantityIn(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Annotated[int, Meta(ge=0, le=1000)]


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True):
    shipping_address: AddressIn


class CartLine(msgspec.Struct):
    product_id: uuid.UUID
    name: str
    quantity: int
    unit_price: str
    currency: str
    line_total: str
    in_stock: int


class Cart(msgspec.Struct):
    items: list[CartLine]
    total: str | None  # null when the lines are in several currencies


BUYERS = [requires("buyer")]


async def _cart(state: State, buyer_id: uuid.UUID) -> Cart:
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.product_id, p.name, c.quantity, p.price, p.currency, p.stock FROM cart_items c"
            " JOIN products p ON p.id = c.product_id AND p.active WHERE c.buyer_id = %s ORDER BY c.added_at",
            (buyer_id,))
        rows = await cur.fetchall()
    lines = [CartLine(product_id=r[0], name=r[1], quantity=r[2], unit_price=f"{r[3]:.2f}", currency=r[4],
                      line_total=f"{r[3] * r[2]:.2f}", in_stock=r[5]) for r in rows]
    total = f"{sum((r[3] * r[2] for r in rows), Decimal('0')):.2f}" if len({r[4] for r in rows}) <= 1 else None
    return Cart(items=lines, total=total)


@get("/cart", guards=BUYERS, operation_id="getCart", tags=["cart"], summary="The caller's cart")
async def get_cart(request: Request, state: State) -> Cart:
    """At today's prices and stock; a discontinued product drops out of it."""
    return await _cart(state, request.user.id)


@put("/cart/items/{product_id:uuid}", guards=BUYERS, operation_id="setCartItem", tags=["cart"],
     summary="Set a product's quantity in the cart (0 removes it)", opt={"problems": {404: "No such product."}})
async def set_item(product_id: FromPath[uuid.UUID], data: JSONBody[QuantityIn], request: Request,
                   state: State) -> Cart:
    """Nothing is reserved until checkout."""
    await cart.set_item(state.pool, request.user.id, product_id, data.quantity)
    return await _cart(state, request.user.id)


@delete("/cart/items/{product_id:uuid}", guards=BUYERS, operation_id="removeCartItem", tags=["cart"],
        summary="Remove a product from the cart")
async def remove_item(product_id: FromPath[uuid.UUID], request: Request, state: State) -> None:
    """Removing what is not in the cart is no error."""
    await cart.remove_item(state.pool, request.user.id, product_id)


@delete("/cart", guards=BUYERS, operation_id="emptyCart", tags=["cart"], summary="Empty the cart")
async def empty_cart(request: Request, state: State) -> None:
    """Every line goes; checking out does this too."""
    await cart.empty(state.pool, request.user.id)


@post("/cart/checkout", guards=BUYERS, operation_id="checkout", tags=["cart"],
      summary="Place an order with the cart's lines and empty it (honours Idempotency-Key)",
      response_headers=[ETAG, LOCATION, REPLAYED],
      opt={"problems": {**PLACING, 422: "The cart is empty, the address is not valid, a product was"
                                        " discontinued, or the Idempotency-Key was used with another body."}})
async def checkout(data: JSONBody[CheckoutIn], request: Request, state: State,
                   idempotency_key: IdempotencyKey = None) -> Response[OrderOut]:
    """As POST /orders with the cart's lines; the cart is emptied in the same transaction."""
    order_id = uuid.uuid4()
    with watch_order(state, order_id) as watch:
        order, created = await ordering.place(state.pool, request.user.id, None, data.shipping_address.address(),
                                              event_meta(request), idempotency=idempotency(idempotency_key, data),
                                              order_id=order_id)
        return await placed(state, order, created, request.user.actor, watch)


ROUTES = [get_cart, set_item, remove_item, empty_cart, checkout]
