"""Products: events, state and decisions. Stock moves are events on the product's own stream.

Stock has one owner per meaning. `on_hand` is what the seller or the scraped site says exists: set
by `product.created` and `product.scraped`, raised by `product.restocked`. `reserved` is what open
orders hold: raised by `product.stock_reserved`, lowered by `product.stock_released` (a cancelled or
expired order) and by `product.stock_shipped` (the units leave, so on-hand falls with it). What can
be ordered is `stock = on_hand - reserved`, never below zero. So a re-scrape that states the site's
count again never undoes a reservation, and a cancellation gives back exactly what it held.
"""

import uuid
from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import UNSET, UnsetType

from events.base import Event, event
from events.errors import Conflict, Forbidden, Invalid, NotFound
from events.text import required
from events.users import Actor

MANUAL = "manual"
MAX_STOCK = 1_000_000_000  # on-hand units a product may have: the tables hold 32-bit integers


def stream(product_id: uuid.UUID) -> str:
    return f"product-{product_id}"


@event("product.created")
class ProductCreated(Event, kw_only=True):
    product_id: uuid.UUID
    seller_id: uuid.UUID | None
    name: str
    description: str = ""
    price: Decimal
    currency: str
    stock: int
    sku: str | None = None
    image_url: str | None = None
    source: str = MANUAL
    created_at: datetime


@event("product.updated")
class ProductUpdated(Event, kw_only=True):
    """Only the fields that changed are present."""

    product_id: uuid.UUID
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    price: Decimal | UnsetType = UNSET
    currency: str | UnsetType = UNSET
    sku: str | None | UnsetType = UNSET
    image_url: str | None | UnsetType = UNSET


@event("product.restocked")
class ProductRestocked(Event, kw_only=True):
    product_id: uuid.UUID
    quantity: int


@event("product.discontinued")
class ProductDiscontinued(Event, kw_only=True):
    product_id: uuid.UUID


@event("product.stock_reserved")
class StockReserved(Event, kw_only=True):
    product_id: uuid.UUID
    order_id: uuid.UUID
    quantity: int


@event("product.stock_released")
class StockReleased(Event, kw_only=True):
    """An order no longer holds these units (cancelled or expired): they can be ordered again."""

    product_id: uuid.UUID
    order_id: uuid.UUID
    quantity: int


@event("product.stock_shipped")
class StockShipped(Event, kw_only=True):
    """An order's reserved units left with its shipment: neither reserved nor on hand any more."""

    product_id: uuid.UUID
    order_id: uuid.UUID
    quantity: int


@event("product.scraped")
class ProductScraped(Event, kw_only=True):
    """A shop website shows this product with these values: new, or changed since the last scrape.
    `stock` is the site's on-hand count; reservations of our orders are kept apart."""

    product_id: uuid.UUID
    source: str
    url: str
    run_id: uuid.UUID
    name: str
    description: str = ""
    price: Decimal
    currency: str
    stock: int
    sku: str | None = None
    image_url: str | None = None
    scraped_at: datetime


class ImageFile(msgspec.Struct, frozen=True, kw_only=True):
    """One stored size of a product image. The key names the content's hash, so a file never changes."""

    key: str
    sha256: str
    bytes: int
    width: int
    height: int
    content_type: str


@event("product.image_added")
class ImageAdded(Event, kw_only=True):
    """An upload, decoded and re-encoded without its metadata into the sizes a client shows."""

    product_id: uuid.UUID
    image_id: uuid.UUID
    sha256: str  # of the bytes uploaded: the same picture twice on one product is refused
    bytes: int
    width: int
    height: int
    thumbnail: ImageFile
    display: ImageFile


@event("product.image_removed")
class ImageRemoved(Event, kw_only=True):
    product_id: uuid.UUID
    image_id: uuid.UUID


class Image(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    sha256: str
    thumbnail: ImageFile
    display: ImageFile


MAX_IMAGES = 20


class Product(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    seller_id: uuid.UUID | None
    name: str
    description: str
    price: Decimal
    currency: str
    on_hand: int
    reserved: int
    sku: str | None
    image_url: str | None
    source: str
    active: bool
    created_at: datetime
    updated_at: datetime
    version: int
    images: list[Image] = []  # uploaded ones, in order; a scraped product has its site's image_url instead

    @property
    def stock(self) -> int:
        """What can be ordered now."""
        return max(self.on_hand - self.reserved, 0)


EDITABLE = ("name", "description", "price", "currency", "sku", "image_url")


def evolve(state: Product | None, e: Event, version: int, at: datetime) -> Product | None:
    match e:
        case ProductCreated():
            return Product(id=e.product_id, seller_id=e.seller_id, name=e.name, description=e.description,
                           price=e.price, currency=e.currency, on_hand=e.stock, reserved=0, sku=e.sku,
                           image_url=e.image_url, source=e.source, active=True, created_at=e.created_at, updated_at=at, version=version)
        case ProductScraped() if state is None:
            # Created when recorded, not when scraped: the scraper reads its clock inside the recording
            # transaction, after the store's recorded time was taken, so scraped_at would make a new
            # product look updated before it was created.
            return Product(id=e.product_id, seller_id=None, name=e.name, description=e.description, price=e.price,
                           currency=e.currency, on_hand=e.stock, reserved=0, sku=e.sku, image_url=e.image_url,
                           source=e.source, active=True, created_at=at, updated_at=at, version=version)
        case ProductScraped():
            return msgspec.structs.replace(state, name=e.name, description=e.description, price=e.price,
                                           currency=e.currency, on_hand=e.stock, sku=e.sku, image_url=e.image_url,
                                           updated_at=at, version=version)
        case ProductUpdated() if state:
            changes = {f: getattr(e, f) for f in EDITABLE if getattr(e, f) is not UNSET}
            return msgspec.structs.replace(state, **changes, updated_at=at, version=version)
        case ProductRestocked() if state:
            return msgspec.structs.replace(state, on_hand=state.on_hand + e.quantity, updated_at=at, version=version)
        case StockReserved() if state:
            return msgspec.structs.replace(state, reserved=state.reserved + e.quantity, updated_at=at, version=version)
        case StockReleased() if state:
            return msgspec.structs.replace(state, reserved=max(state.reserved - e.quantity, 0), updated_at=at,
                                           version=version)
        case StockShipped() if state:
            # A scrape may have lowered on-hand below what was reserved meanwhile: floor at zero.
            return msgspec.structs.replace(state, on_hand=max(state.on_hand - e.quantity, 0),
                                           reserved=max(state.reserved - e.quantity, 0), updated_at=at, version=version)
        case ImageAdded() if state:
            image = Image(id=e.image_id, sha256=e.sha256, thumbnail=e.thumbnail, display=e.display)
            return msgspec.structs.replace(state, images=[*state.images, image], updated_at=at, version=version)
        case ImageRemoved() if state:
            return msgspec.structs.replace(state, images=[i for i in state.images if i.id != e.image_id],
                                           updated_at=at, version=version)
        case ProductDiscontinued() if state:
            return msgspec.structs.replace(state, active=False, updated_at=at, version=version)
    return msgspec.structs.replace(state, updated_at=at, version=version) if state else state


def from_columns(values: dict) -> Product:
    """A Product from a table row's columns by name (`images` comes back from jsonb as plain data)."""
    return Product(**{**values, "images": msgspec.convert(values["images"], list[Image])})


def create(product_id: uuid.UUID, seller_id: uuid.UUID, fields: dict, now: datetime) -> list[Event]:
    fields = {**fields, "name": required(fields["name"], "name")}
    return [ProductCreated(product_id=product_id, seller_id=seller_id, created_at=now, **fields)]


def _owned(product: Product | None, actor: Actor) -> Product:
    if product is None or not product.active:
        raise NotFound("no such product")
    if not actor.is_admin and product.seller_id != actor.id:
        raise Forbidden("only the seller who owns this product or an admin may change it")
    return product


def may_change(product: Product | None, actor: Actor) -> Product:
    """The product, if `actor` may change it: the owning seller or an admin."""
    return _owned(product, actor)


def add_image(product: Product | None, actor: Actor, added: ImageAdded) -> list[Event]:
    product = _owned(product, actor)
    if same := next((i for i in product.images if i.sha256 == added.sha256), None):
        raise Conflict("this image is on the product already", field="file", image_id=str(same.id))
    if len(product.images) >= MAX_IMAGES:
        raise Conflict(f"a product has at most {MAX_IMAGES} images; remove one first", field="file",
                       limit=MAX_IMAGES)
    return [added]


def remove_image(product: Product | None, actor: Actor, image_id: uuid.UUID) -> list[Event]:
    product = _owned(product, actor)
    if not any(i.id == image_id for i in product.images):
        raise NotFound("no such image of this product")
    return [ImageRemoved(product_id=product.id, image_id=image_id)]


def update(product: Product | None, actor: Actor, changes: dict) -> list[Event]:
    product = _owned(product, actor)
    if "name" in changes:
        changes = {**changes, "name": required(changes["name"], "name")}
    changed = {k: v for k, v in changes.items() if getattr(product, k) != v}
    return [ProductUpdated(product_id=product.id, **changed)] if changed else []


def restock(product: Product | None, actor: Actor, quantity: int) -> list[Event]:
    product = _owned(product, actor)
    if quantity <= 0:
        raise Invalid("quantity", "must be a positive whole number")
    if product.on_hand + quantity > MAX_STOCK:
        raise Conflict(f"a product holds at most {MAX_STOCK} units on hand; it has {product.on_hand}",
                       field="quantity", on_hand=product.on_hand, limit=MAX_STOCK)
    return [ProductRestocked(product_id=product.id, quantity=quantity)]


def discontinue(product: Product | None, actor: Actor) -> list[Event]:
    product = _owned(product, actor)
    return [ProductDiscontinued(product_id=product.id)]


_SCRAPED_AS = {"stock": "on_hand"}  # a scraped count is the site's on-hand figure; reservations are ours


def scrape(product: Product | None, product_id: uuid.UUID, source: str, url: str, run_id: uuid.UUID, values: dict,
           now: datetime) -> list[Event]:
    """What a scrape records: nothing when the site shows what the product already says, or when an
    admin discontinued the product (it stays discontinued)."""
    if product is not None and (not product.active or all(
            getattr(product, _SCRAPED_AS.get(k, k)) == v for k, v in values.items())):
        return []
    return [ProductScraped(product_id=product_id, source=source, url=url, run_id=run_id, scraped_at=now, **values)]


def reserve(product: Product | None, product_id: uuid.UUID, order_id: uuid.UUID, quantity: int) -> list[Event]:
    """All-or-nothing is the caller's transaction; this refuses one line that cannot be served."""
    if product is None or not product.active:
        raise Conflict(f"product {product_id} does not exist or is discontinued", product_id=str(product_id))
    if product.stock < quantity:
        raise Conflict(f"not enough stock of product {product_id}: {product.stock} left, {quantity} asked",
                       product_id=str(product_id), available=product.stock)
    return [StockReserved(product_id=product_id, order_id=order_id, quantity=quantity)]


def release(product: Product, order_id: uuid.UUID, quantity: int) -> list[Event]:
    """Stock goes back even to a discontinued product: its count stays true."""
    return [StockReleased(product_id=product.id, order_id=order_id, quantity=quantity)]


def ship(product: Product, order_id: uuid.UUID, quantity: int) -> list[Event]:
    """The reserved units leave with the shipment, from a discontinued product too."""
    return [StockShipped(product_id=product.id, order_id=order_id, quantity=quantity)]
