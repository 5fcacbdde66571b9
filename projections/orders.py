"""The `orders` and `order_lines` read tables: each order as `events.orders.evolve` folds its stream."""

import uuid

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from events.base import Event, Recorded
from events.orders import Address, Line, Order, OrderPlaced, evolve

_COLUMNS = ("id", "buyer_id", "status", "total", "currency", "shipping_address", "payment_reference", "refund",
            "created_at", "updated_at", "version")


def _order_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("order-"))


async def load(conn: AsyncConnection, order_id: uuid.UUID) -> Order | None:
    cur = await conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM orders WHERE id = %s", (order_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    lines = await conn.execute(
        "SELECT product_id, seller_id, name, quantity, unit_price, line_total FROM order_lines"
        " WHERE order_id = %s ORDER BY line_no", (order_id,))
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields["shipping_address"] = msgspec.convert(fields["shipping_address"], Address)
    fields["lines"] = [Line(product_id=r[0], seller_id=r[1], name=r[2], quantity=r[3], unit_price=r[4],
                            line_total=r[5]) for r in await lines.fetchall()]
    return Order(**fields)


class OrdersProjector:
    name = "orders"
    tables = ("orders", "order_lines")

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM orders WHERE id = %s", (_order_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def apply(self, conn: AsyncConnection, recorded: Recorded, event: Event) -> None:
        current = None if isinstance(event, OrderPlaced) else await load(conn, _order_id(recorded.stream_id))
        order = evolve(current, event, recorded.version, recorded.recorded_at)
        if order is None:
            return
        await conn.execute(
            f"INSERT INTO orders ({', '.join(_ROW)}) VALUES ({', '.join(['%s'] * len(_ROW))})"
            f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _ROW if c != 'id')}",
            _order_row(order),
        )
        if isinstance(event, OrderPlaced):
            async with conn.cursor() as cur:
                await cur.executemany(f"INSERT INTO order_lines ({', '.join(_LINE_ROW)})"
                                      f" VALUES ({', '.join(['%s'] * len(_LINE_ROW))})", _line_rows(order))

    # The rebuild's bulk path: fold every stream in memory with the same `evolve`, then COPY.
    def fold(self, state: Order | None, recorded: Recorded, event: Event) -> Order | None:
        return evolve(state, event, recorded.version, recorded.recorded_at) or state

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


def _order_row(order: Order) -> list:
    values = {c: getattr(order, c) for c in _COLUMNS}
    values["shipping_address"] = Jsonb(msgspec.to_builtins(order.shipping_address))
    return [*values.values(), [s for s in order.seller_ids if s is not None]]


def _line_rows(order: Order) -> list[tuple]:
    return [(order.id, i, ln.product_id, ln.seller_id, ln.name, ln.quantity, ln.unit_price, ln.line_total)
            for i, ln in enumerate(order.lines, start=1)]
