"""Rebuild throughput: `orders projections rebuild` of every projection over a seeded event store.

    python -m tests.bench.bench_rebuild [--events 1000000] [--profile 25]

Seeds the `events` table of its own database with COPY: realistic streams of users, products and
orders (each event a real `events.*` Struct encoded with msgspec, versions 1..n per stream, increasing
positions, transaction ids and times), then times `projections.rebuild.rebuild` over all of it and
checks the read tables against what was seeded. `--profile N` also runs the rebuild under cProfile
and prints its top N functions. The database is removed at the end, even on failure.

Not a test (pytest does not collect it): the figures depend on the machine, so it prints them.
"""

import argparse
import asyncio
import cProfile
import io
import math
import os
import pstats
import random
import re
import resource
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import psycopg
from psycopg.conninfo import make_conninfo

from events import orders, products, users
from events.db import drop_database, migrate
from projections.rebuild import rebuild
from tests.support import ADMIN_DATABASE_URL

TARGET = 50_000  # events/s on the 2-core reference machine
START = datetime(2026, 1, 1, tzinfo=UTC)
COPY_CHUNK = 5_000  # rows per write to the COPY stream
COPY_SQL = ("COPY events (position, event_id, stream_id, version, type, data, correlation_id, causation_id,"
            " actor, schema_version, recorded_at, tx_id) FROM STDIN")

# Step weights, chosen so that the *events* come out near 5% user events, 10% product events (created,
# updated, restocked) and the rest orders with their stock moves (an order step averages ~1.5 events).
USER_STEP, PRODUCT_STEP = 0.07, 0.14
NEW_ORDER = 0.28  # of order steps: place a new order (else move an open one along its lifecycle)

ADJECTIVES = "red blue green black white small large soft warm bright plain striped".split()
NOUNS = "mug cup plate lamp chair desk book pen bag shoe hat coat scarf watch ring bowl vase".split()
FIRST = "Ada Alan Grace Linus Barbara Ken Edsger Donald Frances Margaret John Radia".split()
LAST = "Lovelace Turing Hopper Torvalds Liskov Thompson Dijkstra Knuth Allen Hamilton Backus Perlman".split()
ADDRESSES = [orders.Address(name=f"{f} {l}", line1=f"{n} {street}", city=city, postal_code=pc, country=cc)
             for f, l, n, street, city, pc, cc in [
                 ("Ada", "Lovelace", 12, "St James Square", "London", "SW1Y 4JH", "GB"),
                 ("Alan", "Turing", 2, "Adlington Road", "Wilmslow", "SK9 1LZ", "GB"),
                 ("Grace", "Hopper", 4, "Rue de Rivoli", "Paris", "75001", "FR"),
                 ("Linus", "Torvalds", 7, "Unter den Linden", "Berlin", "10117", "DE"),
                 ("Barbara", "Liskov", 77, "Massachusetts Ave", "Cambridge", "02139", "US")]]

_encode = msgspec.json.encode
# uuid4: version nibble 4, variant bits 10
UUID4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


class Seeder:
    """Generates a consistent history, one command (= one transaction, one correlation id) at a time,
    as COPY text rows. Entity state is kept in plain lists, indexed by entity number."""

    def __init__(self, events: int, xmin: int, seed: int = 7):
        self.target = events
        self.rng = random.Random(seed)
        self.rows: list[str] = []
        self.position = 0
        self.commands = 0
        # One transaction id per command, unless that would reach the server's real ids: readers only
        # see rows below the snapshot's xmin.
        self.per_tx = max(1, math.ceil(2 * events / max(xmin - 1, 1)))
        self.at = START
        self.types: Counter[str] = Counter()
        # users
        self.user_ids: list[uuid.UUID] = []
        self.user_roles: list[str] = []
        self.user_versions: list[int] = []
        self.user_text: list[str] = []  # str(id), made once: str(uuid.UUID) is slow
        self.admin = ""
        # products
        self.p_ids: list[uuid.UUID] = []
        self.p_stream: list[str] = []
        self.p_actor: list[str] = []  # the seller
        self.p_seller: list[uuid.UUID] = []
        self.p_name: list[str] = []
        self.p_price: list[Decimal] = []
        self.p_currency: list[str] = []
        self.p_stock: list[int] = []
        self.p_version: list[int] = []
        self.by_currency: dict[str, list[int]] = {"USD": [], "EUR": []}
        # orders: [id, stream, buyer actor, status, version, lines [(product index, quantity)], total]
        self.open_orders: list[list] = []
        self.placed = self.lines = 0
        self.status: Counter[str] = Counter()

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def uuid_text(self) -> str:
        """A version 4 UUID as 32 hex digits (PostgreSQL reads it), cheaper than str(uuid.UUID)."""
        return f"{(self.rng.getrandbits(128) & UUID4_MASK) | UUID4_BITS:032x}"

    def tick(self) -> datetime:
        self.at += timedelta(milliseconds=self.rng.randint(1, 3000))
        return self.at

    def emit(self, actor: str | None, events: list[tuple[str, int, object]], now: datetime) -> None:
        """One command's events: (stream id, version, event), in one transaction."""
        tx = 1 + self.commands // self.per_tx
        self.commands += 1
        correlation, at, actor = self.uuid_text(), now.isoformat(), actor or "\\N"
        for stream, version, e in events:
            self.position += 1
            data = _encode(e).decode()
            if "\\" in data:  # COPY text format: a backslash is an escape
                data = data.replace("\\", "\\\\")
            self.rows.append(f"{self.position}\t{self.uuid_text()}\t{stream}\t{version}\t{e.type}\t{data}\t"
                             f"{correlation}\t\\N\t{actor}\t1\t{at}\t{tx}\n")
            self.types[e.type] += 1

    # users ---------------------------------------------------------------------------------------

    def register(self, role: str | None = None, actor: bool = True) -> int:
        rng, now = self.rng, self.tick()
        role = role or ("seller" if rng.random() < 0.2 else "buyer")
        user_id, i = self.uuid(), len(self.user_ids)
        text = str(user_id)
        e = users.UserRegistered(user_id=user_id, email=f"user{i}@example.com",
                                 name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", role=role, registered_at=now)
        self.user_ids.append(user_id)
        self.user_roles.append(role)
        self.user_versions.append(1)
        self.user_text.append(text)
        self.emit(f"user:{text}" if actor else None, [(f"user-{text}", 1, e)], now)
        return i

    def change_role(self) -> None:
        i = self.rng.randrange(len(self.user_ids))
        old = self.user_roles[i]
        if old == "admin":
            return self.register()
        new = "admin" if self.rng.random() < 0.02 else ("seller" if old == "buyer" else "buyer")
        self.user_roles[i] = new
        self.user_versions[i] += 1
        e = users.UserRoleChanged(user_id=self.user_ids[i], role=new, previous_role=old)
        self.emit(self.admin, [(f"user-{self.user_text[i]}", self.user_versions[i], e)], self.tick())

    def user_step(self) -> None:
        if len(self.user_ids) > 20 and self.rng.random() < 0.15:
            self.change_role()
        else:
            self.register()

    def pick_user(self, role: str) -> int:
        for _ in range(20):
            i = self.rng.randrange(len(self.user_ids))
            if self.user_roles[i] == role:
                return i
        return self.register(role)

    # products ------------------------------------------------------------------------------------

    def product_event(self, p: int, e) -> tuple[str, int, object]:
        """The next event of product `p`'s stream."""
        self.p_version[p] += 1
        return self.p_stream[p], self.p_version[p], e

    def create_product(self) -> None:
        rng, now = self.rng, self.tick()
        u = self.pick_user("seller")
        seller = self.user_ids[u]
        p, product_id = len(self.p_ids), self.uuid()
        name = f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS)}"
        currency = "EUR" if rng.random() < 0.15 else "USD"
        price = Decimal(rng.randint(100, 50_000)).scaleb(-2)
        stock = rng.randint(20, 500)
        e = products.ProductCreated(
            product_id=product_id, seller_id=seller, name=name,
            description=f"A {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}, item {p}", price=price,
            currency=currency, stock=stock, sku=f"SKU-{p}" if rng.random() < 0.6 else None,
            image_url=f"https://img.example.com/{product_id}.jpg" if rng.random() < 0.3 else None,
            created_at=now)
        for lst, v in ((self.p_ids, product_id), (self.p_stream, products.stream(product_id)),
                       (self.p_actor, f"user:{self.user_text[u]}"), (self.p_seller, seller), (self.p_name, name),
                       (self.p_price, price), (self.p_currency, currency), (self.p_stock, stock),
                       (self.p_version, 0)):
            lst.append(v)
        self.by_currency[currency].append(p)
        self.emit(self.p_actor[p], [self.product_event(p, e)], now)

    def update_product(self, p: int) -> None:
        rng, changes = self.rng, {}
        if rng.random() < 0.7:
            price = Decimal(rng.randint(100, 50_000)).scaleb(-2)
            if price != self.p_price[p]:
                changes["price"] = self.p_price[p] = price
        if rng.random() < 0.3:
            changes["name"] = self.p_name[p] = f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS)} v2"
        if rng.random() < 0.3 or not changes:
            changes["description"] = f"Now {rng.choice(ADJECTIVES)}, item {p}"
        e = products.ProductUpdated(product_id=self.p_ids[p], **changes)
        self.emit(self.p_actor[p], [self.product_event(p, e)], self.tick())

    def restock(self, p: int, at_least: int = 0) -> None:
        quantity = max(at_least, self.rng.randint(10, 200))
        self.p_stock[p] += quantity
        e = products.ProductRestocked(product_id=self.p_ids[p], quantity=quantity)
        self.emit(self.p_actor[p], [self.product_event(p, e)], self.tick())

    def product_step(self) -> None:
        r = self.rng.random()
        if len(self.p_ids) < 10 or r < 0.4:
            self.create_product()
        elif r < 0.75:
            self.update_product(self.popular())
        else:
            self.restock(self.popular())

    def popular(self, among: list[int] | None = None) -> int:
        """Older products sell more: a skewed pick."""
        n = len(among) if among is not None else len(self.p_ids)
        i = int(n * self.rng.random() ** 1.5)
        return among[i] if among is not None else i

    # orders --------------------------------------------------------------------------------------

    def place_order(self) -> None:
        rng = self.rng
        u = self.pick_user("buyer")
        buyer = self.user_ids[u]
        first = self.popular()
        same = self.by_currency[self.p_currency[first]]
        wanted = {first: rng.choice((1, 1, 1, 2, 2, 3))}
        for _ in range(rng.choices((0, 1, 2), (50, 35, 15))[0]):
            wanted.setdefault(self.popular(same), rng.choice((1, 1, 2, 5)))
        for p, q in wanted.items():  # the seller restocks before a sale would oversell
            if self.p_stock[p] < q:
                self.restock(p, q)
        now, order_id = self.tick(), self.uuid()
        events, lines = [], []
        for p, q in wanted.items():
            self.p_stock[p] -= q
            events.append(self.product_event(
                p, products.StockReserved(product_id=self.p_ids[p], order_id=order_id, quantity=q)))
            lines.append(orders.Line(product_id=self.p_ids[p], seller_id=self.p_seller[p], name=self.p_name[p],
                                     quantity=q, unit_price=self.p_price[p], line_total=self.p_price[p] * q))
        total = sum((ln.line_total for ln in lines), Decimal("0.00"))
        placed = orders.OrderPlaced(order_id=order_id, buyer_id=buyer, lines=lines, total=total,
                                    currency=self.p_currency[first], shipping_address=rng.choice(ADDRESSES),
                                    placed_at=now)
        stream, actor = orders.stream(order_id), f"user:{self.user_text[u]}"
        events.append((stream, 1, placed))
        self.emit(actor, events, now)
        self.open_orders.append([order_id, stream, actor, "pending", 1, list(wanted.items()), total])
        self.placed += 1
        self.lines += len(lines)

    def advance_order(self) -> None:
        rng = self.rng
        k = rng.randrange(len(self.open_orders))
        o = self.open_orders[k]
        order_id, stream, actor, status, version, lines, total = o
        now = self.tick()
        if status == "pending" and rng.random() < 0.9:
            e, status = orders.OrderPaid(order_id=order_id, amount=total, reference=f"test_{self.uuid_text()}"), "paid"
        elif status == "paid" and rng.random() < 0.95:
            e, status, actor = orders.OrderShipped(order_id=order_id), "shipped", self.admin
        elif status == "shipped":
            e, status, actor = orders.OrderDelivered(order_id=order_id), "delivered", self.admin
        else:  # pending or paid: cancelled, the stock goes back
            refund = total if status == "paid" else None
            e = orders.OrderCancelled(order_id=order_id, refund=refund, reason=rng.choice(("", "changed my mind")))
            status = "cancelled"
        events = []
        if status == "cancelled":
            for p, q in sorted(lines, key=lambda pq: self.p_stream[pq[0]]):
                self.p_stock[p] += q
                events.append(self.product_event(
                    p, products.StockReleased(product_id=self.p_ids[p], order_id=order_id, quantity=q)))
        events.append((stream, version + 1, e))
        self.emit(actor, events, now)
        o[3], o[4] = status, version + 1
        if status in ("delivered", "cancelled"):
            self.status[status] += 1
            self.open_orders[k] = self.open_orders[-1]
            self.open_orders.pop()

    def order_step(self) -> None:
        if not self.open_orders or self.rng.random() < NEW_ORDER:
            self.place_order()
        else:
            self.advance_order()

    # the whole history ---------------------------------------------------------------------------

    def chunks(self):
        """Yields COPY text of about COPY_CHUNK rows at a time, exactly `target` rows in all."""
        self.admin = f"user:{self.user_text[self.register('admin', actor=False)]}"
        while self.position < self.target:
            if self.target - self.position < 12:  # the last few: one-event steps, to land on the target
                self.register()
            else:
                r = self.rng.random()
                if r < USER_STEP:
                    self.user_step()
                elif r < USER_STEP + PRODUCT_STEP or len(self.p_ids) < 10:
                    self.product_step()
                else:
                    self.order_step()
            if len(self.rows) >= COPY_CHUNK:
                yield "".join(self.rows).encode()
                self.rows.clear()
        if self.rows:
            yield "".join(self.rows).encode()
            self.rows.clear()

    def expected(self) -> dict:
        open_status = Counter(o[3] for o in self.open_orders)
        return {
            "users": len(self.user_ids),
            "products": len(self.p_ids),
            "stock": sum(self.p_stock),
            "orders": self.placed,
            "order_lines": self.lines,
            "statuses": dict(sorted((self.status + open_status).items())),
        }


async def seed(url: str, events: int) -> Seeder:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        xmin = (await (await conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).fetchone())[0]
        seeder = Seeder(events, xmin)
        async with conn.transaction():
            async with conn.cursor().copy(COPY_SQL) as copy:
                for chunk in seeder.chunks():
                    await copy.write(chunk)
        # Later appends must not reuse positions; the planner needs statistics, as autovacuum would give.
        await conn.execute("SELECT setval(pg_get_serial_sequence('events', 'position'), %s)", (seeder.position,))
        await conn.execute("VACUUM (ANALYZE) events")
        tx = (await (await conn.execute("SELECT max(tx_id) FROM events")).fetchone())[0]
        assert tx < xmin, f"seeded tx_id {tx} is not below the snapshot xmin {xmin}: readers would not see it"
    return seeder


async def check(url: str, seeder: Seeder, result: dict) -> None:
    """The rebuilt read tables hold exactly what was seeded."""
    want = seeder.expected()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        async def one(sql: str):
            return (await (await conn.execute(sql)).fetchone())[0]
        got = {
            "users": await one("SELECT count(*) FROM users"),
            "products": await one("SELECT count(*) FROM products"),
            "stock": await one("SELECT coalesce(sum(stock), 0) FROM products"),
            "orders": await one("SELECT count(*) FROM orders"),
            "order_lines": await one("SELECT count(*) FROM order_lines"),
            "statuses": dict(await (await conn.execute(
                "SELECT status, count(*) FROM orders GROUP BY status ORDER BY status")).fetchall()),
        }
    assert result["events"] == seeder.target, f"rebuild replayed {result['events']} of {seeder.target} events"
    assert got == want, f"read tables differ from the seeded history:\n got  {got}\n want {want}"


def vm(key: str) -> int:
    """A /proc/self/status figure in kB (VmRSS, VmHWM)."""
    return int(re.search(rf"^{key}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M).group(1))


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is the rebuild's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


async def server_cpu(url: str, stop: asyncio.Event, seen: dict[int, float]) -> None:
    """CPU seconds of this database's other backends (the rebuild's), sampled until `stop`. The last
    sample before a backend exits is kept, so up to one interval of its CPU goes uncounted."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        me = conn.info.backend_pid
        while not stop.is_set():
            cur = await conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                     " AND pid <> %s", (me,))
            for (pid,) in await cur.fetchall():
                try:
                    seen[pid] = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
                except OSError:
                    pass  # ended, or the server is on another host
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass


async def timed_rebuild(url: str, profile: cProfile.Profile | None) -> dict:
    stop, seen = asyncio.Event(), {}
    sampler = asyncio.create_task(server_cpu(url, stop, seen))
    await asyncio.sleep(0.05)
    rss_before, reset = vm("VmRSS"), reset_peak()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the rebuild's folding processes
    cpu, start = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    try:
        result = await rebuild(url, None, verify=False, dry_run=False, progress=None)
    finally:
        if profile:
            profile.disable()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        stop.set()
        await sampler
    return {**result, "wall": wall, "client_cpu": cpu + child_cpu, "child_cpu": child_cpu,
            "server_cpu": sum(seen.values()), "rss_before_mb": rss_before / 1024, "peak_mb": vm("VmHWM") / 1024,
            "child_peak_mb": after.ru_maxrss / 1024 if child_cpu else 0.0, "peak_is_rebuild": reset}


async def main(events: int, profile_lines: int) -> None:
    url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_bench_{uuid.uuid4().hex[:8]}")
    try:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            pg = (await (await conn.execute("SHOW server_version")).fetchone())[0]
        load = f"load average {os.getloadavg()[0]:.2f} before"

        start = time.perf_counter()
        seeder = await seed(url, events)
        seed_s = time.perf_counter() - start
        mix = seeder.types
        share = lambda prefix, skip=(): sum(v for k, v in mix.items() if k.startswith(prefix) and k not in skip)
        stock_moves = ("product.stock_reserved", "product.stock_released")
        print(f"seeded {events:,} events in {seed_s:.1f}s ({events / seed_s:,.0f} events/s, COPY + VACUUM ANALYZE):"
              f" users {share('user.') / events:.1%}, products {share('product.', stock_moves) / events:.1%},"
              f" orders {share('order.') / events:.1%}, stock moves {sum(mix[t] for t in stock_moves) / events:.1%};"
              f" {seeder.commands:,} commands, tx_id 1..{(seeder.commands - 1) // seeder.per_tx + 1:,}")
        print("  " + ", ".join(f"{t} {n:,}" for t, n in sorted(mix.items())))

        profile = cProfile.Profile() if profile_lines else None
        r = await timed_rebuild(url, profile)
        load += f", {os.getloadavg()[0]:.2f} after"
        await check(url, seeder, r)
        want = seeder.expected()
        print(f"rebuild checked: {want['users']:,} users, {want['products']:,} products, {want['orders']:,} orders,"
              f" {want['order_lines']:,} order lines, statuses {want['statuses']}")

        rate = r["events"] / r["wall"]
        print(f"\nnproc {os.cpu_count()}, PostgreSQL {pg}, {load}{', under cProfile' if profile else ''}\n")
        print("| events | seed s | rebuild s | events/s | peak RSS MB, rebuild process | largest folding process"
              " | target ≥ 50,000 events/s |")
        print("|---:|---:|---:|---:|---:|---:|---|")
        print(f"| {r['events']:,} | {seed_s:.1f} | {r['wall']:.1f} | {rate:,.0f} | {r['peak_mb']:.0f} "
              f"| {r['child_peak_mb']:.0f} | {'PASS' if rate >= TARGET else 'MISS'} |")
        print(f"\nrebuild: client CPU {r['client_cpu']:.1f}s, {r['child_cpu']:.1f}s of it in folding processes"
              f" ({r['client_cpu'] / r['wall']:.0%} of wall,"
              f" {r['client_cpu'] / r['events'] * 1e6:.0f} µs/event), PostgreSQL backend CPU {r['server_cpu']:.1f}s"
              f" ({r['server_cpu'] / r['wall']:.0%}, {r['server_cpu'] / r['events'] * 1e6:.0f} µs/event);"
              f" RSS {r['rss_before_mb']:.0f} MB at the start"
              f"{'' if r['peak_is_rebuild'] else ' (peak is the whole process: VmHWM could not be reset)'}")
        if profile:
            for key in ("cumulative", "tottime"):
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats(key).print_stats(profile_lines)
                print(f"\nrebuild profile, by {key}:\n" + out.getvalue().split("\n\n", 2)[-1].rstrip())
    finally:
        await drop_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="run the rebuild under cProfile and print its top N functions")
    args = parser.parse_args()
    if args.events < 100:
        parser.error("--events must be at least 100")
    asyncio.run(main(args.events, args.profile))
