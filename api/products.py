"""/products routes: create, change, restock, discontinue (sellers and admins); list and read (anyone)."""

import uuid
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated

import msgspec
from litestar import Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from msgspec import UNSET, Meta, UnsetType

from api.auth import PUBLIC, event_meta, requires
from api.conditional import IfMatch, IfNoneMatch, expected_version, tagged
from api.openapi import ETAG, LOCATION, NOT_MODIFIED
from api.pagination import Pager, Sort
from api.problems import pattern
from events import product_state, products
from events.commands import catalog
from events.errors import Invalid, NotFound
from events.money import parse_bound, parse_currency, parse_price
from events.products import Image, ImageFile, Product
from projections import catalog as rows

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=5000)]
Sku = Annotated[str, pattern(r"^\S(.*\S)?$", "a code without spaces at either end, such as MUG-1",
                             min_length=1, max_length=64)]
ImageUrl = Annotated[str, pattern(r"^https?://[^\s/$.?#][^\s]*$",
                                  "an http(s) URL such as https://shop.example/mug.jpg", max_length=2048)]
Quantity = Annotated[int, Meta(ge=1, le=1_000_000)]


Price = Annotated[str, Meta(description="An exact decimal string of ASCII digits, at most two places, above 0"
                                        " (a JSON number is refused: money is never a float).",
                            examples=["19.99"])]
Currency = Annotated[str, Meta(description="An ISO 4217 code.", examples=["EUR"])]


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[Name, Meta(examples=["Blue mug"])]
    price: Price
    stock: Annotated[int, Meta(ge=0, le=1_000_000_000, description="Units on hand.", examples=[12])]
    currency: Currency | None = None  # DEFAULT_CURRENCY when left out
    description: Description = ""
    sku: Sku | None = None
    image_url: ImageUrl | None = None


class ProductPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    price: Price | UnsetType = UNSET
    currency: Currency | UnsetType = UNSET
    sku: Sku | None | UnsetType = UNSET
    image_url: ImageUrl | None | UnsetType = UNSET


class RestockIn(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Quantity


class ImageFileOut(msgspec.Struct):
    url: str  # the file's name carries its content's hash: cache it for good
    width: int
    height: int
    bytes: int
    content_type: str


class ImageOut(msgspec.Struct):
    id: uuid.UUID
    sha256: str  # of the file uploaded
    thumbnail: ImageFileOut
    display: ImageFileOut


class ProductOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str
    price: str  # exact decimal as a string: "19.99"
    currency: str
    stock: int  # what can be ordered now: on_hand - reserved, never below zero
    on_hand: int  # what the seller or the scraped site says exists
    reserved: int  # what open orders hold
    sku: str | None
    image_url: str | None
    seller_id: uuid.UUID | None
    source: str
    version: int
    created_at: datetime
    updated_at: datetime
    images: list[ImageOut] = []  # uploaded images, in order (a scraped product has its site's image_url)


class ProductPage(msgspec.Struct):
    items: list[ProductOut]
    next_cursor: str | None


def out(p: Product, url: Callable[[str], str]) -> ProductOut:
    """`url`: where the image storage serves a key."""
    return ProductOut(id=p.id, name=p.name, description=p.description, price=f"{p.price:.2f}", currency=p.currency,
                      stock=p.stock, on_hand=p.on_hand, reserved=p.reserved, sku=p.sku, image_url=p.image_url,
                      seller_id=p.seller_id, source=p.source, version=p.version, created_at=p.created_at,
                      updated_at=p.updated_at, images=[_image(i, url) for i in p.images])


def _image(i: Image, url: Callable[[str], str]) -> ImageOut:
    def file(f: ImageFile) -> ImageFileOut:
        return ImageFileOut(url=url(f.key), width=f.width, height=f.height, bytes=f.bytes, content_type=f.content_type)
    return ImageOut(id=i.id, sha256=i.sha256, thumbnail=file(i.thumbnail), display=file(i.display))


def respond(state: State, p: Product, status: int = 200, if_none_match: str | None = None) -> Response[ProductOut]:
    created = {"Location": f"/products/{p.id}"} if status == 201 else None
    return tagged(out(p, state.storage.url), p.version, if_none_match, status=status, headers=created)


async def read_your_write(state: State, p: Product) -> None:
    await state.projected.applied(state.pool, state.catalog_projector, products.stream(p.id), p.version,
                                  state.settings.ryw_timeout)


SELLERS = [requires("seller", "admin")]
NO_PRODUCT = "No such product, or it was discontinued."
NOT_YOURS = "Not a seller or admin, or not the seller who owns this product."
SKU_TAKEN = "This seller already has a product with that SKU."
BAD_IF_MATCH = "A field is not valid, or If-Match is not an ETag this API returned."


@post("/products", guards=SELLERS, operation_id="createProduct", tags=["products"], summary="Add a product",
      response_headers=[ETAG, LOCATION], opt={"problems": {409: SKU_TAKEN}})
async def create_product(data: JSONBody[ProductIn], request: Request, state: State) -> Response[ProductOut]:
    """The caller becomes its seller. `currency` defaults to DEFAULT_CURRENCY; `stock` is what is on
    hand. Answers once the catalog shows it, so a listing right after includes it."""
    fields = {
        "name": data.name, "description": data.description, "price": parse_price(data.price),
        "currency": parse_currency(data.currency or state.settings.default_currency), "stock": data.stock,
        "sku": data.sku, "image_url": data.image_url,
    }
    product = await catalog.create(state.pool, request.user.id, fields, event_meta(request))
    await read_your_write(state, product)
    return respond(state, product, 201)


@patch("/products/{product_id:uuid}", guards=SELLERS, operation_id="updateProduct", tags=["products"],
       summary="Change some fields (owner or admin); honours If-Match", response_headers=[ETAG],
       opt={"problems": {403: NOT_YOURS, 404: NO_PRODUCT, 409: SKU_TAKEN, 412: None, 422: BAD_IF_MATCH}})
async def update_product(product_id: FromPath[uuid.UUID], data: JSONBody[ProductPatch], request: Request,
                         state: State, if_match: IfMatch = None) -> Response[ProductOut]:
    """Only the fields sent change; `sku` and `image_url` may be set to null. Stock changes by
    restocking, and by orders."""
    changes = {f: getattr(data, f) for f in products.EDITABLE if getattr(data, f) is not UNSET}
    if not changes:
        raise Invalid("body", "name at least one field to change")
    if "price" in changes:
        changes["price"] = parse_price(changes["price"])
    if "currency" in changes:
        changes["currency"] = parse_currency(changes["currency"])
    caller = request.user
    product = await catalog.change(
        state.pool, product_id, lambda p: products.update(p, caller.actor, changes),
        event_meta(request), if_match=expected_version(if_match))
    await read_your_write(state, product)
    return respond(state, product)


@post("/products/{product_id:uuid}/restock", guards=SELLERS, operation_id="restockProduct", tags=["products"],
      status_code=200, summary="Add stock (owner or admin)", response_headers=[ETAG],
      opt={"problems": {403: NOT_YOURS, 404: NO_PRODUCT,
                        409: "On hand would pass 1,000,000,000 units (`limit`), or the product changed meanwhile."}})
async def restock_product(product_id: FromPath[uuid.UUID], data: JSONBody[RestockIn], request: Request,
                          state: State) -> Response[ProductOut]:
    """Adds to what is on hand; what open orders reserved stays reserved."""
    caller = request.user
    product = await catalog.change(
        state.pool, product_id, lambda p: products.restock(p, caller.actor, data.quantity),
        event_meta(request))
    await read_your_write(state, product)
    return respond(state, product)


@delete("/products/{product_id:uuid}", guards=SELLERS, operation_id="discontinueProduct", tags=["products"],
        summary="Discontinue a product (owner or admin): it leaves listings and cannot be ordered",
        opt={"problems": {403: NOT_YOURS, 404: NO_PRODUCT, 409: None, 412: None,
                          422: "If-Match is not an ETag this API returned."}})
async def discontinue_product(product_id: FromPath[uuid.UUID], request: Request, state: State,
                              if_match: IfMatch = None) -> None:
    """Orders that hold it keep it; it is gone from listings and GET /products/{id} answers 404."""
    caller = request.user
    product = await catalog.change(
        state.pool, product_id, lambda p: products.discontinue(p, caller.actor),
        event_meta(request), if_match=expected_version(if_match))
    await read_your_write(state, product)


async def _current(state: State, product_id: uuid.UUID) -> Product | None:
    """The read row, or the write-side row when the projection has not caught up with it yet, so a
    client always reads its own writes of a single product."""
    async with state.pool.connection() as conn:
        row = await rows.load(conn, product_id)
        cur = await conn.execute("SELECT version FROM product_state WHERE product_id = %s", (product_id,))
        head = await cur.fetchone()
        if head and (row is None or row.version < head[0]):
            row = await product_state.load(conn, product_id)
    return row if row and row.active else None


@get("/products/{product_id:uuid}", operation_id="getProduct", tags=["products"], summary="One product",
     response_headers=[ETAG], responses=NOT_MODIFIED, opt={**PUBLIC, "problems": {404: NO_PRODUCT}})
async def get_product(product_id: FromPath[uuid.UUID], state: State,
                      if_none_match: IfNoneMatch = None) -> Response[ProductOut]:
    """Never older than your own last change to it, even while the catalog catches up."""
    product = await _current(state, product_id)
    if product is None:
        raise NotFound("no such product")
    return respond(state, product, if_none_match=if_none_match)


class SortBy(str, Enum):
    NEWEST = "-created_at"
    PRICE = "price"
    PRICE_DESC = "-price"
    NAME = "name"


_SORTS = {
    SortBy.NEWEST: Sort(("created_at", "id"), ("timestamptz", "uuid"), descending=True),
    SortBy.PRICE: Sort(("price", "id"), ("numeric", "uuid")),
    SortBy.PRICE_DESC: Sort(("price", "id"), ("numeric", "uuid"), descending=True),
    SortBy.NAME: Sort(("name", "id"), ("text", "uuid")),
}


@get("/products", opt=PUBLIC, operation_id="listProducts", tags=["products"],
     summary="Live products, filtered, sorted and paged by an opaque cursor")
async def list_products(
    state: State,
    q: Annotated[str | None, QueryParameter(max_length=200, description="words in name and description")] = None,
    min_price: FromQuery[str | None] = None,
    max_price: FromQuery[str | None] = None,
    currency: FromQuery[str | None] = None,
    seller_id: FromQuery[uuid.UUID | None] = None,
    in_stock: FromQuery[bool | None] = None,
    source: Annotated[str | None, QueryParameter(max_length=100)] = None,
    sort: FromQuery[SortBy] = SortBy.NEWEST,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    cursor: FromQuery[str | None] = None,
) -> ProductPage:
    """`q` matches words of the name and description. A cursor continues only the query that made
    it: send it with the same filters and sort (otherwise 422, naming `cursor`)."""
    where, params = ["active"], []
    if q and q.strip():
        where.append("search @@ websearch_to_tsquery('simple', %s)")
        params.append(q)
    for bound, op, field in ((min_price, ">=", "min_price"), (max_price, "<=", "max_price")):
        if bound is not None:
            where.append(f"price {op} %s")
            params.append(parse_bound(bound, field))
    if currency:
        where.append("currency = %s")
        params.append(parse_currency(currency))
    if seller_id:
        where.append("seller_id = %s")
        params.append(seller_id)
    if in_stock is not None:
        where.append("stock > 0" if in_stock else "stock = 0")
    if source:
        where.append("source = %s")
        params.append(source)
    pager = Pager(state.settings.jwt_secret, _SORTS[sort], limit, cursor, listing="products", q=q,
                  min_price=min_price, max_price=max_price, currency=currency, seller_id=seller_id,
                  in_stock=in_stock, source=source, sort=sort.value)
    if (after := pager.condition()) is not None:
        where.append(after[0])
        params += after[1]
    async with state.pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(rows.COLUMNS)} FROM products WHERE {' AND '.join(where)}"
                                 f" ORDER BY {_SORTS[sort].order_by} LIMIT %s", [*params, pager.fetch])
        found, next_cursor = pager.page([rows.product(r) for r in await cur.fetchall()])
    return ProductPage(items=[out(p, state.storage.url) for p in found], next_cursor=next_cursor)


ROUTES = [create_product, update_product, restock_product, discontinue_product, get_product, list_products]
