"""What a payment provider says, in our terms: the signature on its webhooks, and its events read as
a `ProviderEvent`. Pure: no IO, so it is tested without a provider.

Both providers speak Stripe's shapes. The signature header is `t=<unix time>,v1=<hex>` where v1 is
HMAC-SHA256, keyed with the webhook secret, over "<t>.<raw body>"; the events are Stripe's
`checkout.session.*` and `charge.refunded`, amounts in the currency's minor unit. The built-in test
provider (events/providers.py) signs and shapes its webhooks exactly so, so the demo and the tests go
through the same verification and parsing as a real payment.
"""

import hashlib
import hmac
import uuid
from decimal import Decimal
from typing import Literal

import msgspec

SIGNATURE_HEADER = "Stripe-Signature"
TOLERANCE_SECONDS = 300  # Stripe's own default: a signature older (or newer) than this is stale

# Currencies whose minor unit is not the cent (Stripe's list); every other has two decimals.
_EXPONENT = {**dict.fromkeys("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
             **dict.fromkeys("BHD JOD KWD OMR TND".split(), 3)}


class BadSignature(ValueError):
    """The webhook cannot be believed: unsigned, signed with another key, or stale."""


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The signature header a provider sends with `body` at `timestamp`."""
    return f"t={timestamp},v1={_mac(secret, str(timestamp), body)}"


def verify(body: bytes, header: str | None, secret: str, now: float, tolerance: float = TOLERANCE_SECONDS) -> str:
    """The v1 signature of `header` that matches `body`; raises BadSignature otherwise.

    What it returns identifies this exact delivery: a provider signs each attempt anew (a new `t`), so
    the same signature seen twice is someone replaying a captured request, not a redelivery."""
    if not header:
        raise BadSignature(f"the {SIGNATURE_HEADER} header is missing")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or not signatures:
        raise BadSignature(f"the {SIGNATURE_HEADER} header must be t=<unix time>,v1=<signature>")
    expected = _mac(secret, timestamp, body).encode()
    # Every candidate is compared in constant time, so the answer's timing tells nothing of the key.
    matched = [s for s in signatures if hmac.compare_digest(expected, s.encode("utf-8", "replace"))]
    if not matched:
        raise BadSignature("no v1 signature matches the body with the webhook secret")
    if abs(now - int(timestamp)) > tolerance:
        raise BadSignature(f"the signature's time is more than {tolerance:g}s from now: stale (or replayed)")
    return matched[0]


def to_minor(amount: Decimal, currency: str) -> int:
    """`amount` in the currency's smallest unit, as providers count; an amount that unit cannot
    express exactly (cents of yen) is a ValueError."""
    minor = amount.scaleb(_EXPONENT.get(currency, 2))
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} {currency} cannot be charged: {currency} has no unit that small")
    return int(minor)


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-_EXPONENT.get(currency, 2)).quantize(Decimal("0.01"))


Outcome = Literal["succeeded", "failed", "refunded"]


class ProviderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One provider event that changes an order, in our terms."""

    event_id: str  # the provider's: each is applied once
    outcome: Outcome
    order_id: uuid.UUID | None  # from the metadata we sent; a refund may name only its payment
    session_id: str | None  # the payment session (the reference an order's payment is checked against)
    payment_id: str | None  # the provider's id of the money moved (a Stripe PaymentIntent)
    amount: Decimal | None  # succeeded: paid; refunded: refunded so far on that payment
    currency: str | None
    detail: str = ""  # the provider's event type, and why a payment failed


class _Object(msgspec.Struct):
    id: str
    object: str
    amount_total: int | None = None
    amount_refunded: int | None = None
    currency: str | None = None
    payment_status: str | None = None
    payment_intent: str | None = None
    client_reference_id: str | None = None
    metadata: dict[str, str] = {}


class _Data(msgspec.Struct):
    object: _Object


class _Event(msgspec.Struct):
    id: str
    type: str
    data: _Data


_SUCCEEDED = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
_FAILED = {"checkout.session.async_payment_failed", "checkout.session.expired"}
_REFUNDED = {"charge.refunded"}


def parse(body: bytes) -> ProviderEvent | None:
    """The event a verified webhook body carries; None for a type that changes no order (a provider
    sends many). A body that is no event at all is a ValueError."""
    try:
        e = msgspec.json.decode(body, type=_Event)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ValueError(f"the body is not a provider event: {exc}") from None
    o = e.data.object
    if e.type in _SUCCEEDED and o.payment_status != "paid":
        return None  # paid later by a slower method: async_payment_succeeded or _failed will say
    if e.type not in _SUCCEEDED | _FAILED | _REFUNDED:
        return None
    currency = o.currency.upper() if o.currency else None
    minor = o.amount_refunded if e.type in _REFUNDED else o.amount_total
    is_session = o.object == "checkout.session"
    return ProviderEvent(
        event_id=e.id, outcome="succeeded" if e.type in _SUCCEEDED else "failed" if e.type in _FAILED else "refunded",
        order_id=_order_id(o.metadata.get("order_id") or o.client_reference_id),
        session_id=o.id if is_session else None, payment_id=o.payment_intent,
        amount=from_minor(minor, currency) if minor is not None and currency else None, currency=currency,
        detail=e.type)


def _order_id(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None
