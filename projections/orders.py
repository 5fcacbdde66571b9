"""The `orders` and `order_lines` read tables: each order as `events.orders.evolve` folds its stream."""

import uuid

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from events.base import Event, Recorded
from events.orders import Address, Line, Order, evolve

_COLUMNS = ("id", "buyer_id", "status", "total", "currency", "shipping_address", "payment_reference", "refund",
            "created_at", "updated_at", "version")


def _order_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("order-"))


async def load(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    return (await load_many(conn, [order_id])).get(order_id)


async def load_many(conn: AsyncConnection, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, Order]:
    """The read rows of these orders (two queries, however many)."""
    cur = await conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE id = ANY(%s)", (order_ids,))
    rows = await cur.fetchall()
    if not rows:
        return {}
    lines: dict[uuid.UUID, list[Line]] = {}
    cur = await conn.execute(
        "SELECT order_id, product_id, seller_id, name, quantity, unit_price, line_total FROM order_lines"
        " WHERE order_id = ANY(%s) ORDER BY order_id, line_no", ([r[0] for r in rows],))
    for r in await cur.fetchall():
        lines.setdefault(r[0], []).append(Line(product_id=r[1], seller_id=r[2], name=r[3], quantity=r[4],
                                               unit_price=r[5], line_total=r[6]))
    orders = {}
    for row in rows:
        fields = dict(zip(_COLUMNS, row, strict=True))
        fields["shipping_address"] = msgspec.convert(fields["shipping_address"], Address)
        orders[row[0]] = Order(**fields, lines=lines.get(row[0], []))
    return orders


class OrdersProjector:
    name = "orders"
    tables = ("orders", "order_lines")

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM orders WHERE id = %s", (_order_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict[str, Order]:
        found = await load_many(conn, [_order_id(s) for s in stream_ids])
        return {s: found[i] for s in stream_ids if (i := _order_id(s)) in found}

    def fold(self, state: Order | None, recorded: Recorded, event: Event) -> Order | None:
        return evolve(state, event, recorded.version, recorded.recorded_at)

    def version_of(self, state: Order) -> int:
        return state.version

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
        async with conn.cursor().copy(f"COPY order_lines ({', '.join(_LINE_ROW)}) FROM STDIN") as copy:
            for order in states.values():
                for row in _line_rows(order):
                    await copy.write_row(row)


_ROW = (*_COLUMNS, "seller_ids")
_LINE_ROW = ("order_id", "line_no", "product_id", "seller_id", "name", "quantity", "unit_price", "line_total")
_ROW_TYPES = ("uuid", "uuid", "text", "numeric", "text", "jsonb", "text", "numeric", "timestamptz", "timestamptz",
              "integer", "uuid[]")
_LINE_TYPES = ("uuid", "integer", "uuid", "uuid", "text", "integer", "numeric", "numeric")
_encode = msgspec.json.encode


def _recordset(param: str, columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    typed = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
    return f"SELECT {', '.join(columns)} FROM jsonb_to_recordset(%({param})s::jsonb) AS r({typed})"


_SAVE = f"""
WITH saved AS (
    INSERT INTO orders ({', '.join(_ROW)}) {_recordset("orders", _ROW, _ROW_TYPES)}
    ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _ROW if c != 'id')}
)
INSERT INTO order_lines ({', '.join(_LINE_ROW)}) {_recordset("lines", _LINE_ROW, _LINE_TYPES)}
"""


def _order_doc(order: Order) -> dict:
    return {"id": order.id, "buyer_id": order.buyer_id, "status": order.status, "total": order.total,
            "currency": order.currency, "shipping_address": order.shipping_address,
            "payment_reference": order.payment_reference, "refund": order.refund, "created_at": order.created_at,
            "updated_at": order.updated_at, "version": order.version,
            "seller_ids": [s for s in order.seller_ids if s is not None]}


def _line_doc(order_id: uuid.UUID, line_no: int, ln: Line) -> dict:
    return {"order_id": order_id, "line_no": line_no, "product_id": ln.product_id, "seller_id": ln.seller_id,
            "name": ln.name, "quantity": ln.quantity, "unit_price": ln.unit_price, "line_total": ln.line_total}


def _order_row(order: Order) -> tuple:
    # seller_ids as an array literal: the server parses it for the uuid[] column, several times
    # cheaper than psycopg's Python array dumper (the rebuild writes one row per order).
    sellers = "{" + ",".join(str(s) for s in order.seller_ids if s is not None) + "}"
    return (order.id, order.buyer_id, order.status, order.total, order.currency,
            Jsonb(order.shipping_address, dumps=msgspec.json.encode), order.payment_reference, order.refund,
            order.created_at, order.updated_at, order.version, sellers)


def _line_rows(order: Order) -> list[tuple]:
    return [(order.id, i, ln.product_id, ln.seller_id, ln.name, ln.quantity, ln.unit_price, ln.line_total)
            for i, ln in enumerate(order.lines, start=1)]
