"""The catalog's write side: one `product_state` row per product, as its events fold, changed in the
transaction that appends them. Commands lock it, decide from it (no stream replay) and save it; the
lock serialises the writers of a product, so stock can never be oversold."""

import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
from psycopg import AsyncConnection

from events import products as product_events
from events import rows
from events.products import Product

_COLUMNS = rows.columns(Product)  # the Struct's `id` is the table's `product_id`
_NAMES = ["product_id" if c == "id" else c for c in _COLUMNS]
SELECT = f"SELECT {', '.join(_NAMES)} FROM product_state"  # rows for `from_rows()`
_SAVE_ONE = rows.upsert("product_state", _NAMES, "product_id", f"VALUES ({', '.join(['%s'] * len(_NAMES))})")
_SAVE_MANY = rows.upsert("product_state", _NAMES, "product_id", rows.recordset("rows", _COLUMNS))


async def lock(conn: AsyncConnection, product_ids: Iterable[uuid.UUID]) -> None:
    """Serialise the commands on these products until the transaction ends (see `lock_query`)."""
    await lock_query(conn, "SELECT unnest(%s::uuid[])", ([*product_ids],))


async def lock_query(conn: AsyncConnection, ids_query: str, params: tuple) -> None:
    """Serialise the commands on the products `ids_query` selects, until the transaction ends, always
    in one order.

    An advisory lock, not SELECT ... FOR UPDATE: locking a row takes a transaction id at once, and a
    transaction that took its id before the one it queued behind would append the product's next
    event with a lower id, which the event store refuses (events/store.py). Here the id is taken by
    the first write, after the lock, so it is always above that of the previous holder.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT hashtextextended('product:' || id::text, 0) AS k"
        f" FROM ({ids_query}) AS t(id) ORDER BY 1) AS keys", params)


def from_rows(fetched: Iterable[tuple]) -> dict[uuid.UUID, Product]:
    """Products from rows of `SELECT`."""
    return {r[0]: product_events.from_columns(dict(zip(_COLUMNS, r, strict=True))) for r in fetched}


async def load_many(conn: AsyncConnection, product_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Product]:
    cur = await conn.execute(f"{SELECT} WHERE product_id = ANY(%s)", (list(product_ids),))
    return from_rows(await cur.fetchall())


async def load(conn: AsyncConnection, product_id: uuid.UUID) -> Product | None:
    return (await load_many(conn, [product_id])).get(product_id)


async def save(conn: AsyncConnection, *products: Product) -> None:
    if len(products) == 1:  # typed parameters: the cheapest for the one row of most commands
        await conn.execute(_SAVE_ONE, [rows.param(getattr(products[0], c)) for c in _COLUMNS])
    elif products:  # one statement, the rows as one JSON text parameter
        await conn.execute(_SAVE_MANY, {"rows": msgspec.json.encode(products).decode()})


# Pieces of one statement that appends stock moves (events/store.append_statement): `LOCKS` takes the
# products' locks first (the same keys as `lock`; a transaction that holds them takes them again at
# no cost), `MOVED` writes their stock figures and version.
LOCKS = """prior AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(k) FROM (SELECT hashtextextended('product:' || id::text, 0) AS k
    FROM unnest(%(locked)s::uuid[]) AS t(id) ORDER BY 1) AS keys)"""
MOVED = """moved AS (
    UPDATE product_state AS p
    SET on_hand = r.on_hand, reserved = r.reserved, version = r.version, updated_at = r.updated_at
    FROM jsonb_to_recordset(%(moved)s::jsonb)
         AS r(id uuid, on_hand integer, reserved integer, version integer, updated_at timestamptz)
    WHERE p.product_id = r.id)"""


class _Moved(msgspec.Struct):
    id: uuid.UUID
    on_hand: int
    reserved: int
    version: int
    updated_at: datetime


def moved(products: Iterable[Product]) -> str:
    """The `%(moved)s` parameter of `MOVED`."""
    return msgspec.json.encode([_Moved(p.id, p.on_hand, p.reserved, p.version, p.updated_at)
                                for p in products]).decode()
