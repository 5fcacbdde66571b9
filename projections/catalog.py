"""The `products` read table: each product as `events.products.evolve` folds its stream (the write
side's `product_state` holds the same fold, so there is one copy of the rules)."""

import uuid

import msgspec
from psycopg import AsyncConnection

from events import rows
from events.products import Product, evolve, from_columns, stream

COLUMNS = rows.columns(Product)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM products"
_SAVE = rows.upsert("products", list(COLUMNS), "id", rows.recordset("rows", COLUMNS))


def product(row: tuple) -> Product:
    """A Product from a row of `SELECT {COLUMNS}`."""
    return from_columns(dict(zip(COLUMNS, row, strict=True)))


async def load_many(conn: AsyncConnection, product_ids) -> dict[uuid.UUID, Product]:
    cur = await conn.execute(f"{_SELECT} WHERE id = ANY(%s)", (list(product_ids),))
    return {p.id: p for p in map(product, await cur.fetchall())}


async def load(conn: AsyncConnection, product_id: uuid.UUID) -> Product | None:
    return (await load_many(conn, [product_id])).get(product_id)


def _product_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("product-"))


class CatalogProjector:
    name = "catalog"
    tables = ("products",)
    evolve = staticmethod(evolve)
    bindings = ("product.#",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM products WHERE id = %s", (_product_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict[str, Product]:
        found = await load_many(conn, [_product_id(s) for s in stream_ids])
        return {stream(i): p for i, p in found.items()}


    async def save(self, conn: AsyncConnection, states: dict[str, Product], before: dict) -> None:
        # One statement for the batch: the rows as one JSON text parameter.
        await conn.execute(_SAVE, {"rows": msgspec.json.encode(list(states.values())).decode()})

    async def write_all(self, conn: AsyncConnection, states: dict) -> None:
        async with conn.cursor().copy(f"COPY products ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for p in states.values():
                await copy.write_row([rows.param(getattr(p, c)) for c in COLUMNS])
