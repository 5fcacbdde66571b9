"""A small tea shop's website, saved under tests/fixtures/shop: 64 products on 4 listing pages of 16.

Built the way plain shop themes build pages, with no structured data, so the scraper must read what
the page shows: a header with navigation and the cart, a category menu, breadcrumbs, product cards
(image and title linking to the product, a price, an add-to-cart link), numbered pagination with a
"Next" link, and detail pages with an h1, a price (some on sale), availability, a SKU and four related
products. Deterministic: `python -m tests.shop_pages` rewrites the saved pages, and
tests/test_scrape_parse.py checks that they are what this module makes.
"""

import html
from pathlib import Path

SAVED = Path(__file__).parent / "fixtures" / "shop"
PER_PAGE = 16
TEAS = ["Sencha", "Gyokuro", "Matcha", "Genmaicha", "Darjeeling", "Assam", "Ceylon", "Keemun",
        "Tieguanyin", "Da Hong Pao", "Pu-erh", "Rooibos", "Chamomile", "Peppermint", "Earl Grey", "Lapsang"]
GRADES = ["Classic", "Spring Harvest", "Reserve", "Organic"]
CATEGORIES = {"green-tea": "Green tea", "black-tea": "Black tea", "oolong": "Oolong", "herbal": "Herbal",
              "blends": "Blends"}
INFO_PAGES = {"about.html": "About us", "contact.html": "Contact", "shipping.html": "Shipping",
              "returns.html": "Returns"}


def products() -> list[dict]:
    made = []
    for n in range(64):
        name = f"{TEAS[n % 16]} {GRADES[n // 16]}"
        slug = name.lower().replace(" ", "-")
        price = f"{6 + (n * 7) % 31}.{(n * 45) % 100:02d}"
        made.append({"n": n, "name": name, "slug": slug, "sku": f"LK-{n + 1:04d}", "price": price,
                     "was": f"{int(price.split('.')[0]) + 4}.00" if n % 9 == 4 else None,
                     "stock": 0 if n % 13 == 7 else 3 + n % 20, "category": list(CATEGORIES)[n % 5]})
    return made


def page(title: str, body: str, head: str = "") -> str:
    menu = "".join(f'<li><a href="/category/{slug}.html">{name}</a></li>' for slug, name in CATEGORIES.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{html.escape(title)} | Leaf &amp; Kettle</title>{head}
</head>
<body>
  <header class="site-header">
    <a class="logo" href="/index.html">Leaf &amp; Kettle</a>
    <nav class="main-nav"><ul>
      <li><a href="/index.html">Home</a></li><li><a href="/shop/page-1.html">Shop</a></li>
      <li><a href="/about.html">About</a></li><li><a href="/contact.html">Contact</a></li>
    </ul></nav>
    <div class="header-cart"><a href="/cart">Cart</a> <span class="cart-total">€0.00</span></div>
    <a href="/account">My account</a>
  </header>
  <div class="container">
    <aside class="sidebar"><h3>Categories</h3><ul class="categories">{menu}</ul></aside>
    <main class="content">
{body}
    </main>
  </div>
  <footer class="site-footer">
    <a href="/shipping.html">Shipping</a> · <a href="/returns.html">Returns</a> · © Leaf &amp; Kettle
  </footer>
</body>
</html>
"""


def price_html(p: dict) -> str:
    if p["was"]:
        return f'<span class="price"><del>€{p["was"]}</del> <ins>€{p["price"]}</ins></span>'
    return f'<span class="price">€{p["price"]}</span>'


def card(p: dict) -> str:
    link = f'/product/{p["slug"]}.html'
    return f"""        <li class="product-card">
          <a class="thumb" href="{link}"><img src="/img/{p["slug"]}.jpg" alt="{p["name"]}"></a>
          <h2 class="card-title"><a href="{link}">{p["name"]}</a></h2>
          {price_html(p)}
          <a class="button add-to-cart" href="/cart?add={p["sku"]}">Add to cart</a>
        </li>
"""


def grid(items: list[dict]) -> str:
    return f'      <ul class="products">\n{"".join(card(p) for p in items)}      </ul>\n'


def listing(number: int, last: int, items: list[dict]) -> str:
    numbers = " ".join(f'<span class="current">{n}</span>' if n == number else f'<a href="page-{n}.html">{n}</a>'
                       for n in range(1, last + 1))
    previous = f'<a class="prev" href="page-{number - 1}.html">‹ Previous</a> ' if number > 1 else ""
    following = f' <a class="next" href="page-{number + 1}.html">Next ›</a>' if number < last else ""
    head = f'\n  <link rel="next" href="/shop/page-{number + 1}.html">' if number < last else ""
    body = (f'      <nav class="breadcrumbs"><a href="/index.html">Home</a> › Shop</nav>\n'
            f'      <h1>All teas</h1>\n      <p class="result-count">Showing {len(items)} of 64 teas</p>\n'
            f'{grid(items)}      <nav class="pagination">{previous}{numbers}{following}</nav>')
    return page(f"All teas, page {number}", body, head)


def detail(p: dict, made: list[dict]) -> str:
    related = [made[(p["n"] + k) % len(made)] for k in (1, 5, 17, 33)]
    stock = f'In stock ({p["stock"]} available)' if p["stock"] else "Out of stock"
    body = f"""      <nav class="breadcrumbs"><a href="/index.html">Home</a> › <a href="/shop/page-1.html">Shop</a> ›
        <a href="/category/{p["category"]}.html">{CATEGORIES[p["category"]]}</a></nav>
      <div class="product-main">
        <img class="product-photo" src="/img/{p["slug"]}.jpg" alt="{p["name"]}">
        <h1>{p["name"]}</h1>
        <p class="product-price">{price_html(p)}</p>
        <p class="availability {"in-stock" if p["stock"] else "out-of-stock"}">{stock}</p>
        <p class="sku">SKU: <span>{p["sku"]}</span></p>
        <form class="add-to-cart" method="post" action="/cart"><button>Add to cart</button></form>
        <div class="description"><p>{p["name"]}: loose leaf, 100 g, packed in a resealable tin.</p></div>
      </div>
      <section class="related"><h2>You may also like</h2>
{grid(related)}      </section>"""
    return page(p["name"], body)


def pages() -> dict[str, str]:
    """Every saved page by its path on the site."""
    made = products()
    last = len(made) // PER_PAGE
    site = {"robots.txt": "User-agent: *\nDisallow: /cart\nDisallow: /account\n",
            "index.html": page("Fine loose leaf tea", "      <h1>Welcome to Leaf &amp; Kettle</h1>\n"
                               "      <p><a href=\"/shop/page-1.html\">Shop all teas</a></p>\n"
                               "      <h2>Featured</h2>\n" + grid(made[:4]))}
    site |= {f"shop/page-{n}.html": listing(n, last, made[(n - 1) * PER_PAGE:n * PER_PAGE]) for n in range(1, last + 1)}
    site |= {f"product/{p['slug']}.html": detail(p, made) for p in made}
    site |= {f"category/{slug}.html": page(name, f"      <h1>{name}</h1>\n" + grid([p for p in made if p["category"] == slug]))
             for slug, name in CATEGORIES.items()}
    site |= {path: page(title, f"      <h1>{title}</h1>\n      <p>Tea from small gardens since 2009.</p>")
             for path, title in INFO_PAGES.items()}
    return site


def main() -> None:
    for path, text in pages().items():
        target = SAVED / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
