"""The structured data shops embed for search engines: schema.org JSON-LD and microdata, and OpenGraph."""

import json
import re
from decimal import Decimal

from bs4 import BeautifulSoup, Tag

from workers.scrape_parse import dom
from workers.scrape_parse.availability import availability_fields
from workers.scrape_parse.prices import machine_price, price_fields


_PRODUCT_TYPES = {"Product", "IndividualProduct", "ProductModel", "SomeProducts"}


# -- JSON-LD

def from_json_ld(soup: BeautifulSoup) -> dict:
    for node in _json_ld_nodes(soup):
        if _is_product(node) and node.get("name"):
            return {"name": _first(node["name"]), "sku": _first(node.get("sku")),
                    "image": _ld_image(node.get("image")), "description": _first(node.get("description")),
                    **_ld_offer(node.get("offers"))}
    return {}


def _json_ld_nodes(soup: BeautifulSoup):
    for script in soup.find_all("script", type=True):
        if script["type"].strip().lower() == "application/ld+json":
            yield from _walk(_load_json(script.get_text()))


def _load_json(text: str):
    # parse_float keeps prices exact; strict=False accepts raw newlines in descriptions, which shops emit.
    try:
        return json.loads(text, parse_float=Decimal, strict=False)
    except ValueError:
        return None


def _walk(data):
    """Every node of a JSON-LD document: top-level arrays, @graph, and a page's mainEntity."""
    if isinstance(data, list):
        for element in data:
            yield from _walk(element)
    elif isinstance(data, dict):
        yield data
        for key in ("@graph", "mainEntity"):
            yield from _walk(data.get(key))


def _is_product(node: dict) -> bool:
    return bool(_types(node) & _PRODUCT_TYPES)


def _types(node: dict) -> set[str]:
    types = node.get("@type")
    types = types if isinstance(types, list) else [types]
    # "Product", "schema:Product" and "http://schema.org/Product" all name the same type.
    return {re.split(r"[/:#]", t)[-1] for t in types if isinstance(t, str)}


def _first(value):
    """Scalar of a JSON-LD value that may be a list or a {"@value": ...} object."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("@value") or value.get("name")
    return str(value) if isinstance(value, (str, int, Decimal)) else None


def _ld_image(image) -> str | None:
    if isinstance(image, list):
        image = image[0] if image else None
    if isinstance(image, dict):  # ImageObject
        image = image.get("url") or image.get("contentUrl")
    return image if isinstance(image, str) else None


def _ld_offer(offers) -> dict:
    """Price, currency and availability of the first offer that has a price: an Offer, a list of them, or an
    AggregateOffer (its lowPrice, else the offers it lists)."""
    for offer in offers if isinstance(offers, list) else [offers]:
        fields = (_ld_offer_fields(offer) or _ld_offer(offer.get("offers"))) if isinstance(offer, dict) else {}
        if fields:
            return fields
    return {}


def _ld_offer_fields(offer: dict) -> dict:
    spec = offer.get("priceSpecification")
    spec = (spec[0] if spec else {}) if isinstance(spec, list) else spec if isinstance(spec, dict) else {}
    price = next((v for v in (offer.get("price"), offer.get("lowPrice"), spec.get("price")) if v not in (None, "")),
                 None)
    fields = price_fields(machine_price(price, offer.get("priceCurrency") or spec.get("priceCurrency")))
    if fields and offer.get("availability"):
        fields |= availability_fields(_first(offer["availability"]))
    level = offer.get("inventoryLevel")
    if fields and isinstance(level, dict) and str(level.get("value", "")).isdigit():
        fields["stock"] = int(level["value"])
    return fields


# -- microdata

def from_microdata(soup: BeautifulSoup) -> dict:
    product = next((s for s in soup.find_all(attrs={"itemscope": True, "itemtype": True}) if _is_product_scope(s)),
                   None)
    if product is None:
        return {}
    props = _microdata_props(product)
    fields = {"name": props.get("name"), "sku": props.get("sku"), "image": props.get("image"),
              "description": props.get("description"),
              **price_fields(machine_price(props.get("price") or props.get("lowPrice"), props.get("priceCurrency")))}
    return fields | (availability_fields(props["availability"]) if props.get("availability") else {})


def _is_product_scope(element: Tag) -> bool:
    return any(re.split(r"[/:#]", t)[-1] in _PRODUCT_TYPES for t in element["itemtype"].split())


def _microdata_props(product: Tag) -> dict:
    """First value of each property of this product or of its offers, not of nested brands or related products."""
    props = {}
    for element in product.find_all(attrs={"itemprop": True}):
        owner = _scope_of(element)
        if owner is product or (owner is not None and "offers" in owner.get("itemprop", "").split()
                                and _scope_of(owner) is product):
            for name in element["itemprop"].split():
                props.setdefault(name, _microdata_value(element))
    return props


def _scope_of(element: Tag) -> Tag | None:
    return element.find_parent(attrs={"itemscope": True})


def _microdata_value(element: Tag) -> str:
    # The machine value lives in an attribute for these elements (HTML microdata rules), else in the text.
    if element.has_attr("content"):
        return element["content"]
    attr = {"a": "href", "link": "href", "img": "src", "meta": "content", "time": "datetime",
            "data": "value", "meter": "value", "source": "src"}.get(element.name)
    return (element.get(attr) or "") if attr else dom.text(element)


# -- OpenGraph

_OG = {"name": "og:title", "image": "og:image", "description": "og:description"}


def from_opengraph(soup: BeautifulSoup) -> dict:
    meta = _meta_tags(soup)
    # Facebook's product tags are product:*; some shops write og:price:* / og:availability instead.
    amount = meta.get("product:price:amount") or meta.get("og:price:amount")
    currency = meta.get("product:price:currency") or meta.get("og:price:currency")
    availability = meta.get("product:availability") or meta.get("og:availability")
    fields = {field: meta.get(prop) for field, prop in _OG.items()} | price_fields(machine_price(amount, currency))
    return fields | (availability_fields(availability) if availability else {})


def _meta_tags(soup: BeautifulSoup) -> dict:
    # Shops write OpenGraph with property= (the standard) or name= (common mistake); first one wins.
    meta = {}
    for tag in soup.find_all("meta", content=True):
        key = (tag.get("property") or tag.get("name") or "").strip().lower()
        meta.setdefault(key, tag["content"].strip())
    return meta



# -- what the structured data says the page is

def structured_kind(soup: BeautifulSoup) -> str | None:
    """What the page's structured data says it is: "product" (it describes one product), "listing" (a
    schema.org ItemList, or many Product nodes: WooCommerce marks up every product of a shop page), or
    None when it says neither."""
    nodes = list(_json_ld_nodes(soup))
    products = [n for n in nodes if _is_product(n)]
    if len(products) == 1:
        return "product"
    if len(products) > 1 or _item_list_urls(nodes):
        return "listing"
    scopes = _top_product_scopes(soup)
    h1 = soup.find("h1")
    # Related products marked up on a product page are scopes too; the page's own one holds its h1.
    if len(scopes) == 1 or (h1 is not None and any(p is s for p in h1.parents for s in scopes)):
        return "product"
    if scopes:
        return "listing"
    og_type = _meta_tags(soup).get("og:type", "").lower()
    return "product" if og_type in ("product", "og:product", "product.item") else None


def listed_urls(soup: BeautifulSoup) -> list[str]:
    """The product page links (as written, maybe relative) a listing names in its JSON-LD."""
    nodes = list(_json_ld_nodes(soup))
    if urls := _item_list_urls(nodes):
        return urls
    products = [n for n in nodes if _is_product(n)]
    return [url for n in products if (url := _first(n.get("url")))] if len(products) > 1 else []


def _item_list_urls(nodes: list[dict]) -> list[str]:
    # Elements are ListItems with a url, or with an item that is a URL, a {"@id": url} or a Product.
    urls = []
    for node in nodes:
        if "ItemList" not in _types(node):
            continue
        elements = node.get("itemListElement")
        for element in elements if isinstance(elements, list) else [elements]:
            item = element.get("item", element) if isinstance(element, dict) else element
            url = (element.get("url") if isinstance(element, dict) else None) or (
                (item.get("url") or item.get("@id")) if isinstance(item, dict) else item)
            if isinstance(url, str) and url.strip():
                urls.append(url.strip())
    return urls


def _top_product_scopes(soup: BeautifulSoup) -> list[Tag]:
    scopes = [s for s in soup.find_all(attrs={"itemscope": True, "itemtype": True}) if _is_product_scope(s)]
    return [s for s in scopes if not any(p is o for p in s.parents for o in scopes)]
