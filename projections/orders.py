"""The `orders` and `order_lines` read tables: each order as `events.orders.evolve` folds its stream."""

import uuid
from operator import attrgetter

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from events import rows
from events.orders import Address, Line, Order, Payment, evolve, viewers

# An order's row: its fields but the lines (a table of their own), and who may see it.
_ROW = {**rows.columns(Order, exclude=("lines",)), "viewers": "text[]"}
_LINE_FIELDS = rows.columns(Line)
_LINE = {"order_id": "uuid", "line_no": "integer", **_LINE_FIELDS}
_READ = [c for c in _ROW if c != "viewers"]
SELECT = f"SELECT {', '.join(_READ)} FROM orders"  # rows for `orders_of`


def _order_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("order-"))


async def load(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    return (await load_many(conn, [order_id])).get(order_id)


async def load_many(conn: AsyncConnection, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, Order]:
    """The read rows of these orders (two queries, however many)."""
    cur = await conn.execute(f"{SELECT} WHERE id = ANY(%s)", (order_ids,))
    return await orders_of(conn, await cur.fetchall())


async def orders_of(conn: AsyncConnection, order_rows: list[tuple]) -> dict[uuid.UUID, Order]:
    """Orders from rows of `SELECT`, with their lines (one query), in the rows' order."""
    if not order_rows:
        return {}
    lines: dict[uuid.UUID, list[Line]] = {}
    cur = await conn.execute(
        f"SELECT order_id, {', '.join(_LINE_FIELDS)} FROM order_lines"
        " WHERE order_id = ANY(%s) ORDER BY order_id, line_no", ([r[0] for r in order_rows],))
    for r in await cur.fetchall():
        lines.setdefault(r[0], []).append(Line(**dict(zip(_LINE_FIELDS, r[1:], strict=True))))
    found = {}
    for row in order_rows:
        fields = dict(zip(_READ, row, strict=True))
        fields["shipping_address"] = msgspec.convert(fields["shipping_address"], Address)
        fields["payments"] = msgspec.convert(fields["payments"], list[Payment])
        found[row[0]] = Order(**fields, lines=lines.get(row[0], []))
    return found


class OrdersProjector:
    name = "orders"
    tables = ("orders", "order_lines")
    evolve = staticmethod(evolve)
    bindings = ("order.#",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM orders WHERE id = %s", (_order_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict[str, Order]:
        found = await load_many(conn, [_order_id(s) for s in stream_ids])
        return {s: found[i] for s in stream_ids if (i := _order_id(s)) in found}


    async def save(self, conn: AsyncConnection, states: dict[str, Order], before: dict[str, Order]) -> None:
        # One statement for the batch (orders, then the lines of the new ones): a round trip and a
        # JSON text parameter each, instead of a pipelined executemany per table.
        await conn.execute(_SAVE, {
            "orders": _encode([_order_doc(o) for o in states.values()]).decode(),
            # An order's lines are fixed when it is placed: written once, with the order's first row.
            "lines": _encode([_line_doc(o.id, i, ln) for s, o in states.items() if s not in before
                              for i, ln in enumerate(o.lines, start=1)]).decode()})

    async def write_all(self, conn: AsyncConnection, states: dict) -> None:
        async with conn.cursor().copy(f"COPY orders ({', '.join(_ROW)}) FROM STDIN") as copy:
            for order in states.values():
                await copy.write_row(_order_row(order))
        async with conn.cursor().copy(f"COPY order_lines ({', '.join(_LINE)}) FROM STDIN") as copy:
            for order in states.values():
                for i, ln in enumerate(order.lines, start=1):
                    await copy.write_row((order.id, i, *(getattr(ln, c) for c in _LINE_FIELDS)))


_encode = msgspec.json.encode

_SAVE = f"""
WITH saved AS (
    {rows.upsert("orders", list(_ROW), "id", rows.recordset("orders", _ROW))}
)
INSERT INTO order_lines ({', '.join(_LINE)}) {rows.recordset("lines", _LINE)}
"""


def _order_doc(order: Order) -> dict:
    doc = msgspec.structs.asdict(order)
    del doc["lines"]
    doc["viewers"] = viewers(order)
    return doc


def _line_doc(order_id: uuid.UUID, line_no: int, ln: Line) -> dict:
    return {"order_id": order_id, "line_no": line_no, **msgspec.structs.asdict(ln)}


def _column(name: str):
    if _ROW[name] == "jsonb":  # shipping_address, payments
        return lambda o: Jsonb(getattr(o, name), dumps=msgspec.json.encode)
    if name == "viewers":
        # An array literal: the server parses it for the text[] column, several times cheaper than
        # psycopg's Python array dumper (the rebuild writes one row per order).
        return lambda o: "{" + ",".join(viewers(o)) + "}"
    return attrgetter(name)


_COPY_ROW = [_column(c) for c in _ROW]


def _order_row(order: Order) -> tuple:
    return tuple(get(order) for get in _COPY_ROW)
