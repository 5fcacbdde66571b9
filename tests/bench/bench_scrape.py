"""Scraper throughput: parsing alone, a whole crawl of a local shop into PostgreSQL, and plain fetching of
the same pages as the ceiling, in one run. Run by hand: python -m tests.bench.bench_scrape [--details 1000]

Not a test: the numbers depend on the machine, so it prints rather than asserts. The shop is made from the
project's fixtures (tests/fixtures/scrape), padded to the size of real shop pages, with name, price, SKU and
stock varied so every page is distinct. Its database is its own and is dropped, even when the run fails.
"""

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web
from psycopg.conninfo import make_conninfo

from events.db import drop_database, make_pool, migrate
from tests.support import ADMIN_DATABASE_URL
from workers.fetch import USER_AGENT
from workers.scrape_parse import parse_detail, parse_listing
from workers.scraper import Scraper, ScrapeRequest
from workers.sources import load

FIXTURES = Path(__file__).parents[1] / "fixtures" / "scrape"
PER_LISTING, CONCURRENCY, RELATED = 50, 16, 12
WORDS = ("attic velvet river garden shadow winter harbor silent golden empire letters midnight orchard"
         " northern glass paper storm quiet engine lantern crown salt cedar marble").split()
# Real shop pages carry a menu, related products, a footer and inline scripts around the product, and the
# parser walks all of it: the bare fixtures (1-4 KB) would flatter parsing.
MENU = '<nav class="mega-menu"><ul>' + "".join(
    f'<li class="menu-item"><a href="/catalogue/category/{w}_{i}/index.html">{w.title()} &amp; more</a></li>'
    for i, w in enumerate(WORDS * 2)) + "</ul></nav>"
FOOTER = ("<footer><ul>" + "".join(f'<li><a href="/help/{w}">{w.title()}</a></li>' for w in WORDS) + "</ul></footer>"
          "<script>window.dataLayer = " + msgspec.json.encode(
              [{"event": "view", "slot": i, "tags": WORDS[i % 9:i % 9 + 6]} for i in range(30)]).decode()
          + ";</script>")
POD = ('<li class="col-xs-6 col-sm-4 col-md-3 col-lg-3"><article class="product_pod"><div class="image_container">'
       '<a href="{up}{slug}/index.html"><img src="../media/cache/{sku}.jpg" alt="{name}" class="thumbnail"></a></div>'
       '<p class="star-rating Three"><i class="icon-star"></i></p><h3><a href="{up}{slug}/index.html" title="{name}">'
       '{short}</a></h3><div class="product_price"><p class="price_color">£{price}</p><p class="instock availability">'
       '<i class="icon-ok"></i> In stock</p></div></article></li>\n')
BODY = '<body id="default" class="default">'


def products(count: int) -> list[dict]:
    rng, made = random.Random(7), []
    for i in range(count):
        name = " ".join(rng.sample(WORDS, 4)).title() + f" {i}"
        made.append({"i": i, "name": name, "short": name[:18] + "...", "slug": f"{name.lower().replace(' ', '-')}_{i}",
                     "sku": f"{i:04d}{rng.getrandbits(48):012x}", "price": f"{rng.randint(500, 9999) / 100:.2f}",
                     "stock": rng.randint(1, 40), "blurb": " ".join(rng.choices(WORDS, k=250))})
    return made


def filled(fixture: str, *replacements: tuple[str, str]) -> str:
    page = (FIXTURES / fixture).read_text()
    for old, new in replacements + (("</body>", FOOTER + "</body>"),):
        page = page.replace(old, new)
    return page


def books_detail(p: dict, made: list[dict]) -> str:
    related = "".join(POD.format(up="../", **q) for q in made[p["i"] + 1:][:RELATED])
    return filled("books_detail.html", ("A Light in the Attic", p["name"]), ("£51.77", f"£{p['price']}"),
                  ("a897fe39b1053632", p["sku"]), ("22 available", f"{p['stock']} available"),
                  ("special edition.", p["blurb"]), ('<ul class="row">', '<ul class="row">' + related),
                  (BODY, BODY + MENU))


def jsonld_detail(p: dict, made: list[dict]) -> str:
    related = "".join(f'<div class="card"><a href="/products/{q["slug"]}">{q["name"]}</a> <span class="price">'
                      f'${q["price"]}</span></div>' for q in made[p["i"] + 1:][:RELATED])
    return filled("jsonld_product.html", ("Chemex Classic 6-Cup Coffee Maker", p["name"]),
                  ("Chemex Classic 6-Cup", p["name"]), ("chemex-classic-6-cup", p["slug"]), ("49.95", p["price"]),
                  ("CM-6A", p["sku"]), ('"value": 14', f'"value": {p["stock"]}'),
                  ("wood collar &amp; leather tie.", p["blurb"]), ("<body>", "<body>" + MENU),
                  ("</h2>", "</h2>" + related))


def listing(n: int, last: int, pods: list[dict]) -> str:
    nxt = '<li class="next"><a href="page-2.html">next</a></li>'  # the last page has no next link
    page = filled("books_listing.html", (BODY, BODY + MENU), ("Page 1 of 50", f"Page {n} of {last}"),
                  (nxt, nxt.replace("page-2", f"page-{n + 1}") if n < last else ""))
    head, rest = page.split('<ol class="row">')
    return head + '<ol class="row">' + "".join(POD.format(up="", **p) for p in pods) + "</ol>" + rest.split("</ol>")[1]


def shop(made: list[dict]) -> dict[str, bytes]:
    """Path -> body: robots.txt, the paginated listing (`next` links), the books-style detail pages."""
    last = -(-len(made) // PER_LISTING)
    pages = {"/robots.txt": "User-agent: *\nAllow: /\n"}
    pages |= {f"/catalogue/page-{n}.html": listing(n, last, made[(n - 1) * PER_LISTING:n * PER_LISTING])
              for n in range(1, last + 1)}
    pages |= {f"/catalogue/{p['slug']}/index.html": books_detail(p, made) for p in made}
    return {path: body.encode() for path, body in pages.items()}


def serve(sock: socket.socket, pages: dict[str, bytes]) -> None:
    """The shop, in a process of its own so that serving takes no time from the scraper's event loop."""
    async def page(request: web.Request) -> web.Response:
        if (body := pages.get(request.path)) is None:
            raise web.HTTPNotFound()
        kind = "text/plain" if request.path == "/robots.txt" else "text/html"
        return web.Response(body=body, content_type=kind, charset="utf-8")  # a charset: no encoding sniffing

    app = web.Application()
    app.router.add_get("/{path:.*}", page)
    web.run_app(app, sock=sock, access_log=None, print=None)


def timed_parse(label: str, parse, pages: list[tuple[str, str]], check) -> tuple:
    times, results, cpu = [], [], time.process_time()
    for url, html in pages:
        t = time.perf_counter()
        results.append(parse(html, url))
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu  # below the wall time: another process had our core
    assert all(check(r, i) for i, r in enumerate(results)), f"{label}: a page parsed wrongly"
    times.sort()
    p50, p99 = statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1] * 1000
    return label, len(pages), sum(times), cpu, f"{p50:.1f}", f"{p99:.1f}", "", "", ""


async def plain_fetch(urls: list[str]) -> tuple[float, float]:
    """The ceiling: the same pages at the same concurrency, decoded as the Fetcher does, then dropped."""
    slots, cpu, start = asyncio.Semaphore(CONCURRENCY), time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async def get(url: str) -> None:
            async with slots, session.get(url, headers={"User-Agent": USER_AGENT}) as resp:
                assert resp.status == 200, url
                await resp.text(errors="replace")
        await asyncio.gather(*(get(u) for u in urls))
    return time.perf_counter() - start, time.process_time() - cpu


async def crawl(pool, base: str, books) -> list[tuple]:
    # The shipped books-toscrape selectors, with the per-host politeness lifted.
    source = msgspec.structs.replace(books, name="benchshop", start_urls=[f"{base}/catalogue/page-1.html"],
                                     allowed_host="127.0.0.1", delay_seconds=0.0, concurrency=CONCURRENCY)
    scraper, rows = Scraper(pool, {"benchshop": source}, timeout=10, retries=1), []
    for label, kind in (("first run", "new"), ("second, identical run", "unchanged")):
        cpu, start = time.process_time(), time.perf_counter()
        run = await scraper.run(ScrapeRequest(source="benchshop", max_pages=2000))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        async with pool.connection() as conn:  # each new or changed product records exactly one event
            cur = await conn.execute("SELECT count(*) FROM events WHERE type = 'product.scraped'")
            events = f"{(await cur.fetchone())[0]:,}"
        rows.append((f"Scraper.run, {label} (products/s = {kind}/s)", run.pages, wall, cpu, "", "",
                     f"{getattr(run, f'products_{kind}') / wall:,.1f}",
                     f"{run.products_new} / {run.products_changed} / {run.products_unchanged} / {run.errors}",
                     events))
    return rows


async def main(details: int) -> None:
    made, books = products(details), load()["books-toscrape"]
    pages = shop(made)
    sock = socket.create_server(("127.0.0.1", 0), backlog=256)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = multiprocessing.get_context("fork").Process(target=serve, args=(sock, pages), daemon=True)
    server.start()
    sock.close()  # the child has the listening socket; connections wait in its backlog until it accepts
    database_url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_bench_{uuid.uuid4().hex[:8]}")
    pool = make_pool(database_url, min_size=1, max_size=4)  # as the scraper worker opens it
    try:
        load_before, urls = os.getloadavg()[0], [base + path for path in pages]
        listings = [(base + k, v.decode()) for k, v in pages.items() if "/page-" in k]
        books_pages = [(base + k, pages[k].decode()) for k in (f"/catalogue/{p['slug']}/index.html" for p in made)]
        ld_pages = [(f"https://shop.example.com/products/{p['slug']}", jsonld_detail(p, made)) for p in made]
        kb = statistics.mean(len(h) for _, h in books_pages + ld_pages) / 1024

        def same(item, i) -> bool:  # the page's own product was found, not a related one
            p = made[i]
            return (item.name, item.price, item.sku, item.stock) == (
                p["name"], Decimal(p["price"]), p["sku"], p["stock"])
        rows = [timed_parse(f"parse_listing, selectors ({PER_LISTING} links/page)",
                            lambda h, u: parse_listing(h, u, books.listing, "GBP"), listings,
                            lambda r, i: len(r.product_links) == min(PER_LISTING, details - i * PER_LISTING)),
                timed_parse("parse_detail, selectors (books-style)",
                            lambda h, u: parse_detail(h, u, books.detail, "GBP"), books_pages, same),
                timed_parse("parse_detail, automatic (JSON-LD)",
                            lambda h, u: parse_detail(h, u, None, "USD"), ld_pages, same)]
        await migrate(database_url)
        await pool.open(wait=True)
        ceilings = [await plain_fetch(urls)]  # before and after the crawls, as the load may change: the best counts
        rows += await crawl(pool, base, books)
        ceilings.append(await plain_fetch(urls))
    finally:
        server.terminate()
        server.join()
        await pool.close()
        await drop_database(database_url)
    rows.append(("plain aiohttp GET, no parse/record (ceiling, best of 2)", len(urls), *min(ceilings), *[""] * 5))
    ceiling = len(urls) / min(ceilings)[0]
    print(f"\nnproc {os.cpu_count()}, load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"{details:,} distinct detail pages, {kb:.1f} KB on average; concurrency {CONCURRENCY}, delay 0\n")
    print("| measure | pages | wall s | pages/s | p50 ms/page | p99 ms/page | products/s | new / changed / unchanged"
          " / errors | product.scraped events in the log | client CPU % | × ceiling pages/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for label, n, wall, cpu, p50, p99, rate, counts, events in rows:
        versus = f"{n / wall / ceiling:.3f}" if label.startswith(("Scraper", "plain")) else ""
        print(f"| {label} | {n:,} | {wall:.2f} | {n / wall:,.0f} | {p50} | {p99} | {rate} | {counts} | {events} "
              f"| {cpu / wall * 100:.0f} | {versus} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--details", type=int, default=1000)
    asyncio.run(main(parser.parse_args().details))
