"""Exact money: decimal prices with at most two places, and ISO 4217 currency codes."""

import re
from decimal import ROUND_HALF_UP, Decimal

from events.errors import Invalid

# Active ISO 4217 codes (2024), minus precious metals and fund codes.
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ
GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR
LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL
THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())

MAX_PRICE = Decimal("9999999999.99")


CENT = Decimal("0.01")


# Money a client writes is a string of ASCII digits: never a JSON number (a binary float in most clients),
# nor the underscores, exponents, spaces or other scripts' digits Python's Decimal would also read.
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
_AMOUNT_HELP = 'must be a decimal string in ASCII digits with at most two places, such as "19.99"'


def parse_price(value: object, field: str = "price", *, round_to_cents: bool = False) -> Decimal:
    """A positive decimal with at most two places: a string as `_AMOUNT` says, or an exact Decimal.

    A client must send cents exactly; `round_to_cents` is for what we did not choose (a shop site
    showing 12.345), rounded half up as shops do, then held to the same rules."""
    price = _decimal(value, field)
    if round_to_cents and price.is_finite() and abs(price) < MAX_PRICE * 10:
        price = price.quantize(CENT, rounding=ROUND_HALF_UP)
    if not price.is_finite() or price <= 0:
        raise Invalid(field, "must be greater than 0")
    return _cents(price, field)


def parse_bound(text: str, field: str) -> Decimal:
    """A price bound of a query (`min_price`): zero or more, written as a price is."""
    return _cents(_decimal(text, field), field)


def _decimal(value: object, field: str) -> Decimal:
    if isinstance(value, str) and _AMOUNT.fullmatch(value):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    raise Invalid(field, _AMOUNT_HELP)


def _cents(amount: Decimal, field: str) -> Decimal:
    if amount > MAX_PRICE:
        raise Invalid(field, f"must be at most {MAX_PRICE}")
    if amount.as_tuple().exponent < -2:
        raise Invalid(field, "must have at most two decimal places")
    return amount.quantize(CENT)


def parse_currency(value: str, field: str = "currency") -> str:
    code = value.strip().upper()
    if code not in CURRENCIES:
        raise Invalid(field, f"{value!r} is not an ISO 4217 currency code")
    return code
