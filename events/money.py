"""Exact money: decimal prices with at most two places, and ISO 4217 currency codes."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

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


def parse_price(value: object, field: str = "price", *, round_to_cents: bool = False) -> Decimal:
    """A positive decimal with at most two places, from a string (or a JSON number read exactly).

    A client must send cents exactly; `round_to_cents` is for what we did not choose (a shop site
    showing 12.345), rounded half up as shops do, then held to the same rules."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise Invalid(field, "must be a decimal string such as \"19.99\"")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise Invalid(field, "must be a decimal string such as \"19.99\"") from None
    if round_to_cents and price.is_finite() and abs(price) < MAX_PRICE * 10:
        price = price.quantize(CENT, rounding=ROUND_HALF_UP)
    if not price.is_finite() or price <= 0:
        raise Invalid(field, "must be greater than 0")
    if price.as_tuple().exponent < -2:
        raise Invalid(field, "must have at most two decimal places")
    if price > MAX_PRICE:
        raise Invalid(field, f"must be at most {MAX_PRICE}")
    return price.quantize(CENT)


def parse_currency(value: str, field: str = "currency") -> str:
    code = value.strip().upper()
    if code not in CURRENCIES:
        raise Invalid(field, f"{value!r} is not an ISO 4217 currency code")
    return code
