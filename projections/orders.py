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
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO orders ({', '.join(_ROW)}) VALUES ({', '.join(['%s'] * len(_ROW))})"
                f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _ROW if c != 'id')}",
                [_order_row(o) for o in states.values()])
            # An order's lines are fixed when it is placed: written once, with the order's first row.
            await cur.executemany(
                f"INSERT INTO order_lines ({', '.join(_LINE_ROW)}) VALUES ({', '.join(['%s'] * len(_LINE_ROW))})",
                [row for s, o in states.items() if s not in before for row in _line_rows(o)])

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
