"""Prices from text: the amount as an exact `Decimal` and its currency, in any common locale."""

import re
from decimal import ROUND_HALF_UP, Decimal


# Persian and Arabic-Indic digits become ASCII so one number grammar serves all locales. The Arabic
# separators are unambiguous (٬ thousands, ٫ decimal), unlike "." and "," which depend on the locale.
DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_THOUSANDS_ONLY = {" ", "\u00a0", "\u202f", "\u2009", "'", "’", "٬"}
_DECIMAL_ONLY = {"٫"}

# A number: digit groups joined by one separator each. A space joins only when a 3-digit group follows,
# so "USD 20 2 for 1" does not glue unrelated numbers together.
_NUMBER = re.compile(r"[0-9]+(?:(?:[.,'’٬٫]|[ \u00a0\u202f\u2009](?=[0-9]{3}(?![0-9])))[0-9]+)*")
_SEPARATOR = re.compile(r"[^0-9]")

# Currency marks -> (ISO code, factor). Toman is not ISO 4217: it is 10 Rial, so it becomes IRR x 10.
# Longer marks are tried first so "US$" is not read as "$" and "CN¥" not as "¥".
_SYMBOLS = {
    "US$": ("USD", 1), "C$": ("CAD", 1), "CA$": ("CAD", 1), "A$": ("AUD", 1), "AU$": ("AUD", 1),
    "NZ$": ("NZD", 1), "HK$": ("HKD", 1), "S$": ("SGD", 1), "R$": ("BRL", 1), "CN¥": ("CNY", 1),
    "$": ("USD", 1), "€": ("EUR", 1), "£": ("GBP", 1), "¥": ("JPY", 1), "₹": ("INR", 1), "₽": ("RUB", 1),
    "₺": ("TRY", 1), "₩": ("KRW", 1), "₪": ("ILS", 1), "₫": ("VND", 1), "฿": ("THB", 1), "₴": ("UAH", 1),
    "₦": ("NGN", 1), "₱": ("PHP", 1), "﷼": ("IRR", 1), "zł": ("PLN", 1), "Kč": ("CZK", 1), "Ft": ("HUF", 1),
    "lei": ("RON", 1), "Fr.": ("CHF", 1), "Rs": ("INR", 1),
    "تومان": ("IRR", 10), "ریال": ("IRR", 1), "ريال": ("IRR", 1),
}
# Codes shops actually print next to prices; a closed list so that words like "ALL" or "TOP" in
# running text are only read as currencies when they are ISO codes we expect.
_CODES = set("""AED ARS AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR IQD IRR ISK JPY
    KRW KWD MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON RSD RUB SAR SEK SGD THB TRY TWD UAH USD VND ZAR""".split())
# Non-ISO codes some shops still use in their data (IRT is the Toman, see above).
_CODE_ALIASES = {"IRT": ("IRR", 10), "RMB": ("CNY", 1)}
_LETTER = "A-Za-z\u0600-\u06FF"


def _mark_pattern(mark: str) -> str:
    # Marks made of letters ("zł", "Rs", "EUR", "تومان") must stand alone, so "Yours" holds no rupee.
    before = f"(?<![{_LETTER}])" if mark[0].isalpha() else ""
    after = f"(?![{_LETTER}])" if mark[-1].isalpha() else ""
    return before + re.escape(mark) + after


_CURRENCY = re.compile("|".join(_mark_pattern(m) for m in
                                sorted([*_SYMBOLS, *_CODES, *_CODE_ALIASES], key=len, reverse=True)))
_CENTS = Decimal("0.01")
_PLAIN_NUMBER = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*")


def parse_price(text: str, default_currency: str | None = None) -> tuple[Decimal, str | None] | None:
    """The first amount in `text` and its currency (the mark nearest to it, else `default_currency`)."""
    text = (text or "").translate(DIGITS)
    number = _NUMBER.search(text)
    if number is None:
        return None
    amount = _to_decimal(number.group())
    currency, factor = currency_near(text, number.start(), number.end()) or (default_currency, 1)
    return amount * factor, currency


def _to_decimal(number: str) -> Decimal:
    decimal_mark = _decimal_mark(number)
    digits = "".join(ch if ch.isdigit() else "." if ch == decimal_mark else "" for ch in number)
    return _at_most_cents(Decimal(digits))


def _decimal_mark(number: str) -> str | None:
    """Which separator is the decimal point: the last one, if the way it is used allows no other reading."""
    marks = _SEPARATOR.findall(number)
    if not marks:
        return None
    last = marks[-1]
    if last in _DECIMAL_ONLY:
        return last
    if last in _THOUSANDS_ONLY or marks.count(last) > 1:
        return None  # "1'234", "1.234.567": repeated or space-like marks group thousands
    if len(set(marks)) > 1:
        return last  # "1.299,99", "1,23,456.00": the last, different mark is the decimal point
    whole, fraction = number.rsplit(last, 1)
    # A lone mark followed by exactly 3 digits groups thousands ("1,299"), unless the whole part is 0.
    return None if len(fraction) == 3 and whole.lstrip("0") else last


def _at_most_cents(amount: Decimal) -> Decimal:
    # Keep what the shop wrote ("12.5" stays 12.5); only a 3rd+ decimal place is rounded away.
    return amount.quantize(_CENTS, ROUND_HALF_UP) if amount.as_tuple().exponent < -2 else amount


def currency_near(text: str, start: int, end: int) -> tuple[str, int] | None:
    """The currency mark closest to the number at text[start:end] (a range "€10 - €20" has two)."""
    marks = list(_CURRENCY.finditer(text))
    if not marks:
        return None
    nearest = min(marks, key=lambda m: max(start - m.end(), m.start() - end, 0))
    return _currency_of(nearest.group())


def _currency_of(mark: str) -> tuple[str, int] | None:
    mark = mark.strip()
    if mark in _SYMBOLS:
        return _SYMBOLS[mark]
    code = mark.upper()
    return _CODE_ALIASES.get(code) or ((code, 1) if re.fullmatch("[A-Z]{3}", code) else None)


def machine_price(value, currency) -> tuple[Decimal, str | None] | None:
    """A price from structured data: schema.org numbers use "." as the decimal point whatever the locale,
    so "12.990" is twelve; only free text ("1.299,00 €") goes through parse_price."""
    if isinstance(value, list):
        value = value[0] if value else None
    code, factor = (_currency_of(currency) if isinstance(currency, str) and currency.strip() else None) or (None, 1)
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value):
        amount = Decimal(value.strip())
    elif isinstance(value, str) and (found := parse_price(value)):
        return found if found[1] else (found[0] * factor, code)
    else:
        return None
    return _at_most_cents(amount) * factor, code


def price_fields(result: tuple[Decimal, str | None] | None) -> dict:
    return {"price": result[0], "currency": result[1]} if result else {}

