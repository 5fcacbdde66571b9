"""Pure parsing of shop pages (workers/scrape_parse/): no database, no network.

Fixtures are small pages in tests/fixtures/scrape."""

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from workers.scrape_parse import (
    DetailSelectors,
    Item,
    Listing,
    ListingSelectors,
    auto_listing,
    classify,
    parse_availability,
    parse_detail,
    parse_listing,
    parse_price,
    same_host_links,
)

FIXTURES = Path(__file__).parent / "fixtures" / "scrape"

BOOK_URL = "https://books.toscrape.com/catalogue/a-light-in-the-attic_1000/index.html"
BOOK_SELECTORS = DetailSelectors(
    name="div.product_main h1",
    price="p.price_color",
    availability="p.instock.availability",
    sku='table.table-striped tr:has(th:-soup-contains("UPC")) td',
    image="#product_gallery img",
    description="#product_description ~ p",
)
GANTOUM_URL = "https://gantoum.ir/Search/3/دسته-بندی-محصولات?pageId=1"
GANTOUM_SELECTORS = ListingSelectors(
    item="div.col-product-pg", item_name="h3.ti-pr-pg", item_price="span.price-bx",
    item_image="img[src]", item_link="a[href]", next_page="ul.pagination li.next a",
)


def page(name: str) -> str:
    return (FIXTURES / f"{name}.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ parse_price

@pytest.mark.parametrize("text, amount, currency", [
    ("$1,299.99", "1299.99", "USD"),
    ("1.299,99 €", "1299.99", "EUR"),
    ("€ 12,50", "12.50", "EUR"),
    ("£7.99", "7.99", "GBP"),
    ("CHF 1'234.50", "1234.50", "CHF"),
    ("CHF 1’234.50", "1234.50", "CHF"),
    ("12 345,67 zł", "12345.67", "PLN"),
    ("USD 20", "20", "USD"),
    ("20 EUR", "20", "EUR"),
    ("¥1,200", "1200", "JPY"),
    ("₹ 1,23,456.00", "123456.00", "INR"),
    ("1\u202f234,56\u00a0€", "1234.56", "EUR"),   # French: narrow no-break space groups, comma decimal
    ("1 234 567,89 €", "1234567.89", "EUR"),
    ("US$ 5.00", "5.00", "USD"),
    ("R$ 1.234,56", "1234.56", "BRL"),
    ("Price: 49,90 € incl. VAT", "49.90", "EUR"),
])
def test_price_reads_symbols_codes_and_separators_of_common_locales(text, amount, currency):
    assert parse_price(text) == (Decimal(amount), currency)


@pytest.mark.parametrize("text, amount", [
    ("1,299", "1299"),          # a lone comma before exactly 3 digits groups thousands
    ("12,50", "12.50"),         # ... before 2 digits it is the decimal point
    ("1.299", "1299"),
    ("7.5", "7.5"),
    ("1.234.567", "1234567"),   # repeated marks always group
    ("1,234,567.89", "1234567.89"),
    ("0,500", "0.50"),          # "0" before the mark: a decimal, rounded to cents
])
def test_price_decides_the_decimal_separator_by_position_and_digit_count(text, amount):
    assert parse_price(text) == (Decimal(amount), None)


@pytest.mark.parametrize("text, amount", [
    ("۱۲۳٬۰۰۰ تومان", "1230000"),     # Toman is 10 Rial: converted to IRR
    ("۴۸۵٬۰۰۰ تومان", "4850000"),
    ("٤٥٬٠٠٠ تومان", "450000"),        # Arabic-Indic digits
    ("۲٬۵۰۰٬۰۰۰ ریال", "2500000"),    # Rial is IRR as is
    ("١٢٫٥٠ ريال", "12.50"),            # Arabic spelling of Rial, ٫ is the decimal point
    ("قیمت: ۹۹٬۰۰۰ تومان", "990000"),
])
def test_price_reads_persian_and_arabic_digits_toman_and_rial(text, amount):
    assert parse_price(text) == (Decimal(amount), "IRR")


def test_price_is_an_exact_decimal_keeping_the_places_given():
    amount, _ = parse_price("€0.10")
    assert type(amount) is Decimal and str(amount) == "0.10"
    assert str(parse_price("12.5 €")[0]) == "12.5"
    assert parse_price("$0.105") == (Decimal("0.11"), "USD")  # a 3rd place is rounded, half up


def test_price_without_a_mark_takes_the_default_currency():
    assert parse_price("1.299,00", default_currency="EUR") == (Decimal("1299.00"), "EUR")
    assert parse_price("£3", default_currency="EUR") == (Decimal("3"), "GBP")


def test_price_takes_the_first_amount_and_its_nearest_currency():
    assert parse_price("€10,00 – $12.00") == (Decimal("10.00"), "EUR")


@pytest.mark.parametrize("text", ["", "Free", "Call for price", "تماس بگیرید", "EUR"])
def test_price_without_a_number_is_none(text):
    assert parse_price(text) is None


def test_letters_inside_words_are_not_currencies():
    assert parse_price("Yours for 12") == (Decimal("12"), None)


# ----------------------------------------------------------------------------------- parse_availability

@pytest.mark.parametrize("text, expected", [
    ("In stock", (True, None)),
    ("in stock (22 available)", (True, 22)),
    ("  In stock (22 available)\n", (True, 22)),
    ("Only 3 left in stock", (True, 3)),
    ("5 in stock", (True, 5)),
    ("0 available", (False, 0)),
    ("Out of stock", (False, 0)),
    ("Sold out", (False, 0)),
    ("Currently unavailable", (False, 0)),
    ("ناموجود", (False, 0)),
    ("موجود", (True, None)),
    ("https://schema.org/InStock", (True, None)),
    ("http://schema.org/OutOfStock", (False, 0)),
    ("https://schema.org/SoldOut", (False, 0)),
    ("https://schema.org/Discontinued", (False, 0)),
    ("https://schema.org/PreOrder", (False, None)),
    ("https://schema.org/BackOrder", (False, None)),
    ("https://schema.org/LimitedAvailability", (True, None)),
    ("InStock", (True, None)),
    ("instock", (True, None)),
    ("oos", (False, 0)),
    ("Ask us", (None, None)),
    ("", (None, None)),
])
def test_availability_phrases_and_schema_org_urls(text, expected):
    assert parse_availability(text) == expected


# ------------------------------------------------------------------------------------ parse_detail: JSON-LD

def test_json_ld_product_with_offer_gives_every_field():
    url = "https://shop.example.com/products/chemex-classic-6-cup?variant=2#reviews"
    item = parse_detail(page("jsonld_product"), url)
    assert item == Item(
        url="https://shop.example.com/products/chemex-classic-6-cup",
        name="Chemex Classic 6-Cup Coffee Maker", price=Decimal("49.95"), currency="USD", in_stock=True, stock=14,
        sku="CM-6A", image_url="https://shop.example.com/media/catalog/chemex-6-cup.jpg",
        description="Hand-blown borosilicate glass with a wood collar & leather tie.",
    )


def test_json_ld_number_price_is_exact_not_float():
    item = parse_detail(page("jsonld_product"), "https://shop.example.com/p")
    assert type(item.price) is Decimal and str(item.price) == "49.95"


def test_json_ld_inside_graph_gives_the_product():
    item = parse_detail(page("jsonld_graph"), "https://kaffeehaus.example.de/produkt/bianca-v3/")
    assert item.name == "Lelit Bianca V3 PL162T"           # not the WebPage, WebSite or breadcrumb names
    assert (item.price, item.currency, item.in_stock) == (Decimal("2899.00"), "EUR", True)  # first of the offers
    assert item.sku == "PL162T-V3"
    assert item.image_url == "https://kaffeehaus.example.de/wp-content/uploads/bianca-v3.jpg"  # ImageObject


def test_json_ld_top_level_array_gives_the_product():
    item = parse_detail(page("jsonld_array"), "https://bonenbar.example.nl/comandante-c40")
    assert item.name == "Comandante C40 MK4 Nitro Blade"
    assert (item.price, item.currency) == (Decimal("1299.00"), "EUR")  # a locale string price
    assert (item.in_stock, item.stock) == (False, 0)                  # bare "OutOfStock"
    assert item.sku == "400123"                                        # a number sku
    assert item.image_url == "https://cdn.bonenbar.example.nl/img/c40-mk4.jpg"  # protocol-relative contentUrl


def test_json_ld_aggregate_offer_gives_the_low_price():
    item = parse_detail(page("jsonld_aggregate_offer"), "https://roastworks.example.co.uk/products/sampler")
    assert (item.price, item.currency) == (Decimal("15.00"), "GBP")
    assert item.image_url == "https://roastworks.example.co.uk/img/sampler-1.jpg"  # first of an image list


def test_json_ld_aggregate_offer_without_low_price_uses_its_offers():
    html = """<script type="application/ld+json">{"@type": "Product", "name": "Kit",
      "offers": {"@type": "AggregateOffer", "offers": [{"@type": "Offer", "price": 8, "priceCurrency": "EUR"}]}}
    </script>"""
    assert parse_detail(html, "https://s.example/kit").price == Decimal("8")


def test_json_ld_type_list_is_a_product_and_broken_blocks_are_skipped():
    item = parse_detail(page("jsonld_type_list"), "https://pageturners.example.com/books/crc.html")
    assert item.name == "The Coffee Roaster's Companion"
    assert (item.price, item.currency) == (Decimal("35"), "USD")    # lower-case "usd"
    assert (item.in_stock, item.stock) == (False, 0)
    assert item.description == "Scott Rao's guide to roasting."     # raw newline inside the JSON string
    assert item.image_url == "https://pageturners.example.com/books/covers/roasters-companion.jpg"


def test_json_ld_without_price_currency_takes_the_symbol_of_the_visible_price():
    item = parse_detail(page("jsonld_no_currency"), "https://cafe-lumiere.example.fr/moulin-c3")
    assert item.name == "Timemore Chestnut C3"  # JSON-LD name wins over the h1
    assert (item.price, item.currency, item.in_stock) == (Decimal("69.90"), "EUR", True)


def test_json_ld_toman_currency_code_becomes_rial():
    html = """<script type="application/ld+json">{"@type": "Product", "name": "زعفران",
      "offers": {"@type": "Offer", "price": "485000", "priceCurrency": "IRT"}}</script>"""
    item = parse_detail(html, "https://shop.example.ir/p/1")
    assert (item.price, item.currency) == (Decimal("4850000"), "IRR")


# ------------------------------------------------------------------------- parse_detail: microdata and OpenGraph

def test_microdata_product_gives_its_own_props_not_the_brand_or_related_ones():
    item = parse_detail(page("microdata"), "https://drip.example.eu/v60-02-white")
    assert item == Item(
        url="https://drip.example.eu/v60-02-white", name="V60 Ceramic Dripper 02 - White",
        price=Decimal("24.50"), currency="EUR", in_stock=True, sku="VDC-02W",
        image_url="https://drip.example.eu/images/products/v60-02-white.jpg",
        description="The classic cone: spiral ribs and one large hole.",
    )


def test_opengraph_product_tags_alone_give_the_product():
    item = parse_detail(page("opengraph"), "https://gear.example.com/aeropress-go?utm_source=x#top")
    assert item == Item(
        url="https://gear.example.com/aeropress-go?utm_source=x", name="AeroPress Go Travel Coffee Press",
        price=Decimal("39.95"), currency="USD", in_stock=True,
        image_url="https://cdn.gear.example.com/aeropress-go.jpg?v=3",
        description="Everything you need for great coffee on the go, packed in its own mug.",
    )


# --------------------------------------------------------------------------------- parse_detail: visible data

def test_visible_sale_price_wins_over_struck_price_related_products_and_mini_cart():
    item = parse_detail(page("visible_sale"), "https://barista.example.ie/product/gooseneck-kettle/")
    assert item.name == "Gooseneck Kettle 1L"
    assert (item.price, item.currency) == (Decimal("59.00"), "EUR")
    assert (item.in_stock, item.stock) == (True, 5)


def test_visible_special_price_wins_over_an_old_price_listed_first():
    item = parse_detail(page("visible_special_price"), "https://outdoor.example.com/trail-jacket.html")
    assert item.name == "Trail Running Jacket"
    assert (item.price, item.currency) == (Decimal("89.00"), "USD")


def test_page_without_a_product_name_gives_none():
    assert parse_detail("<html><body><p class='price'>€5</p></body></html>", "https://s.example/") is None
    assert parse_detail("", "https://s.example/") is None


def test_default_currency_fills_a_price_without_one():
    html = "<h1>Ceramic Mug</h1><span class='price'>12,00</span>"
    item = parse_detail(html, "https://s.example/mug", default_currency="EUR")
    assert (item.price, item.currency) == (Decimal("12.00"), "EUR")
    assert parse_detail("<h1>Mug</h1>", "https://s.example/mug", default_currency="EUR").currency is None


def test_relative_canonical_and_links_resolve_against_base_href():
    html = """<head><base href="https://cdn.example.com/shop/"><link rel="canonical" href="p/7"></head>
    <h1>Tea Tin</h1>"""
    assert parse_detail(html, "https://www.example.com/x").url == "https://cdn.example.com/shop/p/7"


# ---------------------------------------------------------------------------------- parse_detail: selectors

def test_books_detail_with_selectors_gives_every_field():
    item = parse_detail(page("books_detail"), BOOK_URL, BOOK_SELECTORS)
    assert item == Item(
        url=BOOK_URL, name="A Light in the Attic", price=Decimal("51.77"), currency="GBP", in_stock=True, stock=22,
        sku="a897fe39b1053632",
        image_url="https://books.toscrape.com/media/cache/fe/72/fe72f0532301ec28892ae79a629a293c.jpg",
        description="It's hard to imagine a world without A Light in the Attic. This now-classic collection of "
                    "poetry and drawings from Shel Silverstein celebrates its 20th anniversary with this special "
                    "edition.",
    )


def test_selectors_fall_back_to_automatic_extraction_for_fields_they_do_not_give():
    item = parse_detail(page("books_detail"), BOOK_URL, DetailSelectors(sku=BOOK_SELECTORS.sku))
    assert item.name == "A Light in the Attic"                     # h1
    assert (item.price, item.currency) == (Decimal("51.77"), "GBP")  # not the recently-viewed £53.74
    assert (item.in_stock, item.stock, item.sku) == (True, 22, "a897fe39b1053632")


def test_selector_that_matches_nothing_falls_back_too():
    item = parse_detail(page("books_detail"), BOOK_URL, DetailSelectors(name="h1.missing", price=".missing"))
    assert (item.name, item.price) == ("A Light in the Attic", Decimal("51.77"))


def test_currency_selector_and_lazy_image():
    html = """<h1>Saffron 4.6 g</h1><span class="amount">485٬000</span><span class="unit">تومان</span>
    <img class="main" src="data:image/gif;base64,R0lGOD" data-src="/img/saffron.jpg">"""
    selectors = DetailSelectors(price="span.amount", currency="span.unit", image="img.main")
    item = parse_detail(html, "https://shop.example.ir/p/9", selectors)
    assert (item.price, item.currency) == (Decimal("4850000"), "IRR")
    assert item.image_url == "https://shop.example.ir/img/saffron.jpg"


def test_item_encodes_to_json_with_exact_price():
    item = parse_detail(page("books_detail"), BOOK_URL, BOOK_SELECTORS)
    assert msgspec.json.decode(msgspec.json.encode(item))["price"] == "51.77"


# ------------------------------------------------------------------------------------------- parse_listing

def test_books_listing_gives_absolute_product_links_and_next_page():
    listing = parse_listing(page("books_listing"), "https://books.toscrape.com/catalogue/page-1.html",
                            ListingSelectors(product_links="article.product_pod h3 a", next_page="li.next a"))
    assert listing == Listing(
        product_links=["https://books.toscrape.com/catalogue/a-light-in-the-attic_1000/index.html",
                       "https://books.toscrape.com/catalogue/tipping-the-velvet_999/index.html",
                       "https://books.toscrape.com/catalogue/soumission_998/index.html"],
        next_page="https://books.toscrape.com/catalogue/page-2.html",
        items=[],
    )


def test_listing_links_are_deduplicated_in_page_order():
    listing = parse_listing(page("books_listing"), "https://books.toscrape.com/catalogue/page-1.html",
                            ListingSelectors(product_links="article.product_pod a"))  # image link + title link
    assert [link.rsplit("/", 2)[1] for link in listing.product_links] == [
        "a-light-in-the-attic_1000", "tipping-the-velvet_999", "soumission_998"]
    assert listing.next_page is None


def test_listing_items_use_the_full_title_of_a_shortened_name():
    selectors = ListingSelectors(item="article.product_pod", item_name="h3 a", item_price="p.price_color",
                                 item_image="img", item_link="h3 a")
    items = parse_listing(page("books_listing"), "https://books.toscrape.com/catalogue/page-1.html", selectors).items
    assert items[0] == Item(
        url="https://books.toscrape.com/catalogue/a-light-in-the-attic_1000/index.html", name="A Light in the Attic",
        price=Decimal("51.77"), currency="GBP",
        image_url="https://books.toscrape.com/media/cache/2c/da/2cdad67c44b002e7ead0cc35693c0e8b.jpg",
    )
    assert len(items) == 3


def test_gantoum_listing_gives_items_priced_in_rial():
    listing = parse_listing(page("gantoum_listing"), GANTOUM_URL, GANTOUM_SELECTORS)
    assert listing.product_links == []
    assert listing.next_page == "https://gantoum.ir/Search/3/دسته-بندی-محصولات?pageId=2"
    assert [(i.name, i.price, i.currency) for i in listing.items] == [
        ("زعفران سرگل یک مثقالی", Decimal("4850000"), "IRR"),
        ("چای سیاه قلم ممتاز ۴۵۰ گرمی", Decimal("1985000"), "IRR"),   # the sale price, not the struck one
        ("عسل طبیعی کنار یک کیلویی", None, None),                       # "ناموجود" instead of a price
    ]
    first, second = listing.items[:2]
    assert first.url == "https://gantoum.ir/Product/10234/زعفران-سرگل-یک-مثقالی"
    assert first.image_url == "https://gantoum.ir/Images/Products/Thumb/10234.jpg"
    assert second.url == "https://gantoum.ir/Product/10871/چای-سیاه-قلم-ممتاز-۴۵۰-گرمی"


def test_gantoum_empty_page_has_no_items_and_no_next_page():
    assert parse_listing(page("gantoum_empty"), GANTOUM_URL, GANTOUM_SELECTORS) == Listing([], None, [])


def test_listing_item_without_link_uses_the_page_url():
    html = "<div class='p'><b>Green Tea</b><i>$4.00</i></div>"
    selectors = ListingSelectors(item="div.p", item_name="b", item_price="i", item_link="a")
    [item] = parse_listing(html, "https://s.example/teas?page=2#top", selectors).items
    assert (item.url, item.name, item.price, item.currency) == ("https://s.example/teas?page=2", "Green Tea",
                                                                Decimal("4.00"), "USD")


def test_listing_price_without_a_mark_takes_the_default_currency():
    html = "<div class='p'><b>Green Tea</b><i>4,00</i></div>"
    selectors = ListingSelectors(item="div.p", item_name="b", item_price="i")
    [item] = parse_listing(html, "https://s.example/teas", selectors, default_currency="EUR").items
    assert (item.price, item.currency) == (Decimal("4.00"), "EUR")


def test_selected_price_block_ignores_its_struck_list_price():
    html = '<div class="card"><b>Cezve</b><p class="cost"><s>€30,00</s> €24,00</p></div>'
    [item] = parse_listing(html, "https://s.example/", ListingSelectors(item="div.card", item_name="b",
                                                                        item_price="p.cost")).items
    assert item.price == Decimal("24.00")
    detail = parse_detail("<h1>Cezve</h1>" + html, "https://s.example/cezve", DetailSelectors(price="p.cost"))
    assert detail.price == Decimal("24.00")


def test_visible_stock_line_is_the_one_nearest_the_title():
    html = """<div class="related"><span class="stock">Out of stock</span></div>
    <div class="product"><h1>Moka Pot 3-cup</h1><span class="stock">Only 2 left in stock</span></div>"""
    item = parse_detail(html, "https://s.example/moka")
    assert (item.in_stock, item.stock) == (True, 2)


# ------------------------------------------------------------------------------ the shipped sources' rules

def test_the_shipped_books_toscrape_source_reads_its_pages():
    from workers.sources import load

    source = load()["books-toscrape"]
    item = parse_detail(page("books_detail"), BOOK_URL, source.detail, source.currency)
    assert (item.name, item.price, item.currency, item.stock, item.sku) == (
        "A Light in the Attic", Decimal("51.77"), "GBP", 22, "a897fe39b1053632")
    assert item.description.startswith("It's hard to imagine a world without A Light in the Attic")
    listing = parse_listing(page("books_listing"), "https://books.toscrape.com/catalogue/page-1.html",
                            source.listing, source.currency)
    assert len(listing.product_links) == 3 and listing.next_page.endswith("/catalogue/page-2.html")


def test_the_shipped_gantoum_source_reads_its_listing():
    from workers.sources import load

    source = load()["gantoum"]
    items = parse_listing(page("gantoum_listing"), GANTOUM_URL, source.listing, source.currency).items
    assert [(i.price, i.currency) for i in items[:2]] == [(Decimal("4850000"), "IRR"), (Decimal("1985000"), "IRR")]
    assert parse_listing(page("gantoum_empty"), GANTOUM_URL, source.listing, source.currency).items == []


# --------------------------------------------------------------------- automatic: what a page is, where it leads

SHOP = Path(__file__).parent / "fixtures" / "shop"
SHOP_URL = "https://leaf-and-kettle.example/"


def shop_page(path: str) -> str:
    return (SHOP / path).read_text(encoding="utf-8")


def test_saved_shop_pages_are_what_the_generator_makes():
    from tests.shop_pages import pages

    made = pages()
    assert {str(p.relative_to(SHOP)) for p in SHOP.rglob("*") if p.is_file()} == set(made)
    assert all(shop_page(path) == text for path, text in made.items()), "run: python -m tests.shop_pages"


@pytest.mark.parametrize("name", ["books_detail", "jsonld_product", "jsonld_graph", "jsonld_array",
                                  "jsonld_aggregate_offer", "jsonld_type_list", "jsonld_no_currency", "microdata",
                                  "opengraph", "visible_sale", "visible_special_price"])
def test_a_page_of_one_product_is_a_product_page(name):
    assert classify(page(name), "https://s.example/p") == "product"


def test_related_product_cards_do_not_make_a_product_page_a_listing():
    html = shop_page("product/darjeeling-classic.html")  # its h1 and sale price, four related products' cards
    assert classify(html, SHOP_URL + "product/darjeeling-classic.html") == "product"
    item = parse_detail(html, SHOP_URL + "product/darjeeling-classic.html")
    assert (item.name, item.price, item.in_stock, item.stock) == ("Darjeeling Classic", Decimal("34.80"), True, 7)


@pytest.mark.parametrize("name", ["books_listing", "gantoum_listing"])
def test_repeated_product_cards_make_a_listing(name):
    assert classify(page(name), "https://s.example/list") == "listing"


@pytest.mark.parametrize("path", ["shop/page-1.html", "shop/page-4.html", "category/oolong.html", "index.html"])
def test_the_shops_listings_are_listings(path):
    assert classify(shop_page(path), SHOP_URL + path) == "listing"


@pytest.mark.parametrize("html", [shop_page("about.html"), page("gantoum_empty"), "", "<h1>Hello</h1><p>Nothing to buy</p>"])
def test_a_page_without_products_is_unknown(html):
    assert classify(html, "https://s.example/") == "unknown"


def test_structured_data_says_listing_by_an_item_list_or_several_products():
    item_list = """<h1>Teas</h1><script type="application/ld+json">{"@type": "ItemList", "itemListElement": [
      {"@type": "ListItem", "position": 1, "url": "/p/sencha"},
      {"@type": "ListItem", "position": 2, "item": {"@id": "https://s.example/p/gyokuro"}},
      {"@type": "ListItem", "position": 3, "item": {"@type": "Product", "url": "p/matcha", "name": "Matcha"}}]}
    </script>"""
    assert classify(item_list, "https://s.example/teas/") == "listing"
    assert auto_listing(item_list, "https://s.example/teas/").product_links == [
        "https://s.example/p/sencha", "https://s.example/p/gyokuro", "https://s.example/teas/p/matcha"]
    several = """<script type="application/ld+json">{"@graph": [
      {"@type": "Product", "name": "A", "url": "https://s.example/a"},
      {"@type": "Product", "name": "B", "url": "https://s.example/b"}]}</script>"""
    assert classify(several, "https://s.example/shop/") == "listing"
    assert auto_listing(several, "https://s.example/shop/").product_links == ["https://s.example/a", "https://s.example/b"]


def test_automatic_listing_gives_the_product_cards_and_the_next_page_only():
    listing = auto_listing(shop_page("shop/page-2.html"), SHOP_URL + "shop/page-2.html")
    from tests.shop_pages import products

    assert listing.product_links == [f"{SHOP_URL}product/{p['slug']}.html" for p in products()[16:32]]
    assert listing.next_page == SHOP_URL + "shop/page-3.html"  # not the categories, the cart or "Previous"
    assert auto_listing(shop_page("shop/page-4.html"), SHOP_URL + "shop/page-4.html").next_page is None


def test_automatic_listing_of_books_to_scrape_matches_its_selectors():
    url = "https://books.toscrape.com/catalogue/page-1.html"
    by_selectors = parse_listing(page("books_listing"), url, ListingSelectors(product_links="article.product_pod h3 a",
                                                                             next_page="li.next a"))
    assert auto_listing(page("books_listing"), url) == by_selectors


@pytest.mark.parametrize("html, expected", [
    ('<link rel="next" href="/list?page=2"><a href="/list?page=9">9</a>', "/list?page=2"),
    ('<a rel="next" href="p2.html">2</a>', "/shop/p2.html"),
    ('<ul class="pager"><li class="next"><a href="page-2.html">more</a></li></ul>', "/shop/page-2.html"),
    ('<a class="pagination__next" href="?p=2"><svg></svg></a>', "/shop/list?p=2"),
    ('<a href="?p=2">Next ›</a>', "/shop/list?p=2"),
    ('<a href="?p=2">›</a>', "/shop/list?p=2"),
    ('<a href="?p=2" aria-label="Next page"><i></i></a>', "/shop/list?p=2"),
    ('<a href="?seite=2">Weiter</a>', "/shop/list?seite=2"),
    ('<a href="?pageId=2">بعدی</a>', "/shop/list?pageId=2"),
    ('<a class="next disabled" href="#">Next</a>', None),           # on the last page
    ('<a href="?p=9">»</a>', None),                                  # often the last page, not the next
    ('<a href="/p/next-gen-kettle">Next Gen Kettle</a>', None),      # a product named "Next ..."
    ('<a href="list">Next</a>', None),                               # this very page
])
def test_next_page_by_rel_class_label_or_text(html, expected):
    listing = auto_listing(html, "https://s.example/shop/list")
    assert listing.next_page == (f"https://s.example{expected}" if expected else None)


def test_same_host_links_keep_to_the_host_in_page_order():
    html = """<a href="/b">b</a><a href="https://other.example/x">x</a><a href="/a#top">a</a><a href="/b">b</a>
    <a href="mailto:x@s.example">mail</a><a href="javascript:void(0)">js</a>"""
    assert same_host_links(html, "https://s.example/", "s.example") == ["https://s.example/b", "https://s.example/a"]
