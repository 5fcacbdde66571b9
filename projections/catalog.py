"""The `products` read table, and the row IO it shares with the write side's `product_state`.

Both tables hold a product as `events.products.evolve` folds it, so there is one copy of the rules.
"""

import uuid

import msgspec
from psycopg import AsyncConnection

from events.base import Event, Recorded
from events.products import Product, evolve, stream

COLUMNS = tuple(Product.__struct_fields__)
_KEY = {"products": "id", "product_state": "product_id"}


async def lock(conn: AsyncConnection, product_ids) -> None:
    """Serialise the commands on these products until the transaction ends, always in one order.

    An advisory lock, not SELECT ... FOR UPDATE: locking a row takes a transaction id at once, and a
    transaction that took its id before the one it queued behind would append the product's next
    event with a lower id, which the event store refuses (events/store.py). Here the id is taken by
    the first write, after the lock, so it is always above that of the previous holder.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT hashtextextended('product:' || id, 0) AS k"
        " FROM unnest(%s::text[]) AS t(id) ORDER BY 1) AS keys",
        ([str(i) for i in product_ids],))


async def load(conn: AsyncConnection, table: str, product_id: uuid.UUID) -> Product | None:
    return (await load_many(conn, table, [product_id])).get(product_id)


async def load_many(conn: AsyncConnection, table: str, product_ids) -> dict[uuid.UUID, Product]:
    key = _KEY[table]
    cols = ", ".join(key if c == "id" else c for c in COLUMNS)
    cur = await conn.execute(f"SELECT {cols} FROM {table} WHERE {key} = ANY(%s)", (list(product_ids),))
    return {p.id: p for p in (Product(**dict(zip(COLUMNS, r, strict=True))) for r in await cur.fetchall())}


async def save(conn: AsyncConnection, table: str, *products: Product) -> None:
    if len(products) == 1:  # typed parameters: the cheapest for the one row of most commands
        await conn.execute(_upsert(table), [getattr(products[0], c) for c in COLUMNS])
    elif products:  # a projection's batch: one statement, the rows as one JSON text parameter
        await conn.execute(_upsert_many(table), (msgspec.json.encode(products).decode(),))


_TYPES = ("uuid", "uuid", "text", "text", "numeric", "text", "integer", "integer", "text", "text", "text",
          "boolean", "timestamptz", "timestamptz", "integer")


def _upsert(table: str, source: str | None = None) -> str:
    """INSERT ... ON CONFLICT DO UPDATE of every column, from parameters or from `source` (a SELECT
    of the columns in COLUMNS' order)."""
    key = _KEY[table]
    cols = [key if c == "id" else c for c in COLUMNS]
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    rows = source or f"VALUES ({', '.join(['%s'] * len(cols))})"
    return f"INSERT INTO {table} ({', '.join(cols)}) {rows} ON CONFLICT ({key}) DO UPDATE SET {updates}"


def _upsert_many(table: str) -> str:
    typed = ", ".join(f"{c} {t}" for c, t in zip(COLUMNS, _TYPES, strict=True))
    return _upsert(table, f"SELECT {', '.join(COLUMNS)} FROM jsonb_to_recordset(%s::jsonb) AS r({typed})")


def _product_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("product-"))


class CatalogProjector:
    name = "catalog"
    tables = ("products",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM products WHERE id = %s", (_product_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict[str, Product]:
        found = await load_many(conn, "products", [_product_id(s) for s in stream_ids])
        return {stream(i): p for i, p in found.items()}

    def fold(self, state: Product | None, recorded: Recorded, event: Event) -> Product | None:
        return evolve(state, event, recorded.version, recorded.recorded_at)

    def version_of(self, state: Product) -> int:
        return state.version

    async def save(self, conn: AsyncConnection, states: dict[str, Product], before: dict) -> None:
        await save(conn, "products", *states.values())

    async def write_all(self, conn: AsyncConnection, states: dict) -> None:
        async with conn.cursor().copy(f"COPY products ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for product in states.values():
                await copy.write_row([getattr(product, c) for c in COLUMNS])
