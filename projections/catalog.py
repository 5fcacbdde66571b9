"""The `products` read table, and the row IO it shares with the write side's `product_state`.

Both tables hold a product as `events.products.evolve` folds it, so there is one copy of the rules.
"""

import uuid

from psycopg import AsyncConnection

from events.base import Event, Recorded
from events.products import Product, evolve

COLUMNS = tuple(Product.__struct_fields__)
_KEY = {"products": "id", "product_state": "product_id"}


async def load(conn: AsyncConnection, table: str, product_id: uuid.UUID, *, lock: bool = False) -> Product | None:
    key = _KEY[table]
    cols = ", ".join(key if c == "id" else c for c in COLUMNS)
    cur = await conn.execute(f"SELECT {cols} FROM {table} WHERE {key} = %s{' FOR UPDATE' if lock else ''}",
                             (product_id,))
    row = await cur.fetchone()
    return Product(**dict(zip(COLUMNS, row, strict=True))) if row else None


async def save(conn: AsyncConnection, table: str, product: Product) -> None:
    key = _KEY[table]
    cols = [key if c == "id" else c for c in COLUMNS]
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}",
        [getattr(product, c) for c in COLUMNS],
    )


class CatalogProjector:
    name = "catalog"
    tables = ("products",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM products WHERE id = %s", (stream_id.removeprefix("product-"),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def apply(self, conn: AsyncConnection, recorded: Recorded, event: Event) -> None:
        current = await load(conn, "products", uuid.UUID(recorded.stream_id.removeprefix("product-")))
        new = evolve(current, event, recorded.version, recorded.recorded_at)
        if new is not None:
            await save(conn, "products", new)
