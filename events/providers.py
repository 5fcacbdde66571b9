"""Payment providers behind one small port: open a payment session for an order.

- `TestProvider` (PAYMENT_PROVIDER=test, the default) moves no money and needs no network. It keeps
  its sessions in its own table, as a provider keeps them on its side, and when told that a buyer
  paid, failed or was refunded it sends the webhook a real provider would: Stripe's event shape,
  signed with the webhook secret as Stripe signs, POSTed to this API's own /payments/webhook.
- `StripeProvider` (PAYMENT_PROVIDER=stripe) opens a Stripe Checkout Session through Stripe's HTTP
  API. A thin adapter rather than the `stripe` package: this is one form-encoded POST, and the
  package (30 MB, synchronous `requests` underneath) would bring far more than it does here. Its
  webhooks are verified and read by events/payments.py, exactly as the test provider's are.
"""

import time
import uuid
from decimal import Decimal
from typing import Literal, Protocol

import aiohttp
import msgspec
from psycopg_pool import AsyncConnectionPool

from events.errors import Conflict, Invalid, NotFound
from events.payments import SIGNATURE_HEADER, from_minor, sign, to_minor


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """What a client needs to pay: the session, and where to send the buyer (or the secret an
    embedded payment form takes)."""

    session_id: str
    redirect_url: str | None = None
    client_secret: str | None = None


class ReturnUrls(msgspec.Struct, frozen=True, kw_only=True):
    """Where the provider's payment page sends the buyer back to."""

    success_url: str | None = None
    cancel_url: str | None = None


class ProviderError(Exception):
    """The provider could not open a session (it refused, or could not be reached)."""


class Provider(Protocol):
    name: str

    async def open_session(self, pool: AsyncConnectionPool, order_id: uuid.UUID, amount: Decimal, currency: str,
                           urls: ReturnUrls) -> Session: ...


def _minor(amount: Decimal, currency: str) -> int:
    try:
        return to_minor(amount, currency)
    except ValueError as exc:
        raise Conflict(str(exc)) from None


def event_body(event_id: str, event_type: str, obj: dict, created: int) -> bytes:
    """A webhook body in Stripe's event shape."""
    return msgspec.json.encode({"id": event_id, "object": "event", "type": event_type, "created": created,
                                "livemode": False, "data": {"object": obj}})


Action = Literal["succeed", "fail", "refund"]
# What each action does to a test session: the states it may come from, the one it leaves.
_MOVES = {"succeed": ({"open", "failed"}, "paid"), "fail": ({"open"}, "failed"), "refund": ({"paid"}, "refunded")}


class TestProvider:
    name = "test"
    __test__ = False  # a provider, not a pytest test class

    def __init__(self, webhook_secret: str):
        self.secret = webhook_secret

    async def open_session(self, pool: AsyncConnectionPool, order_id: uuid.UUID, amount: Decimal, currency: str,
                           urls: ReturnUrls) -> Session:
        session_id = f"cs_test_{uuid.uuid4().hex}"
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO test_payment_sessions (session_id, order_id, amount, currency, status)"
                               " VALUES (%s, %s, %s, %s, 'open')", (session_id, order_id, _minor(amount, currency),
                                                                   currency))
        return Session(session_id=session_id, redirect_url=f"/payments/test/{session_id}")

    async def session(self, pool: AsyncConnectionPool, session_id: str) -> dict:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT session_id, order_id, amount, currency, status, payment_id"
                                     " FROM test_payment_sessions WHERE session_id = %s", (session_id,))
            row = await cur.fetchone()
        if row is None:
            raise NotFound("no such test payment session")
        return dict(zip(("session_id", "order_id", "amount", "currency", "status", "payment_id"), row, strict=True))

    async def act(self, pool: AsyncConnectionPool, session_id: str, action: Action) -> tuple[str, bytes]:
        """Move the session as the buyer (or, for a refund, the shop's dashboard) would, and return the
        event id and the body of the webhook that says so."""
        allowed, after = _MOVES[action]
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE test_payment_sessions SET status = %s,"
                "  payment_id = coalesce(payment_id, CASE WHEN %s = 'paid' THEN %s END)"
                " WHERE session_id = %s AND status = ANY(%s)"
                " RETURNING order_id, amount, currency, payment_id",
                (after, after, f"pi_test_{uuid.uuid4().hex}", session_id, list(allowed)))
            row = await cur.fetchone()
        if row is None:
            current = (await self.session(pool, session_id))["status"]  # NotFound when there is none
            raise Conflict(f"the test session is {current}: it cannot {action}", current_status=current)
        order_id, minor, currency, payment_id = row
        return self._event(action, session_id, order_id, minor, currency, payment_id)

    def _event(self, action: Action, session_id: str, order_id: uuid.UUID, minor: int, currency: str,
               payment_id: str | None) -> tuple[str, bytes]:
        event_id = f"evt_test_{uuid.uuid4().hex}"
        metadata = {"order_id": str(order_id)}
        if action == "refund":  # a charge: it names its payment, not the order (Stripe copies no metadata there)
            obj = {"id": f"ch_test_{uuid.uuid4().hex}", "object": "charge", "amount": minor, "amount_refunded": minor,
                   "currency": currency.lower(), "payment_intent": payment_id, "metadata": {}}
            return event_id, event_body(event_id, "charge.refunded", obj, int(time.time()))
        obj = {"id": session_id, "object": "checkout.session", "amount_total": minor, "currency": currency.lower(),
               "payment_status": "paid" if action == "succeed" else "unpaid", "payment_intent": payment_id,
               "client_reference_id": str(order_id), "metadata": metadata}
        kind = "checkout.session.completed" if action == "succeed" else "checkout.session.async_payment_failed"
        return event_id, event_body(event_id, kind, obj, int(time.time()))

    async def deliver(self, url: str, body: bytes) -> tuple[int, object]:
        """POST a webhook to `url`, signed now, as the provider would; (status, answer)."""
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(body, self.secret, int(time.time()))}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)


def describe(session: dict) -> dict:
    """A test session as its stand-in payment page shows it."""
    return {**session, "amount": str(from_minor(session["amount"], session["currency"])),
            "actions": {a: f"/payments/test/{session['session_id']}/{a}" for a in _MOVES}}


STRIPE_API = "https://api.stripe.com"
STRIPE_VERSION = "2024-06-20"  # pinned: the shapes events/payments.py reads are this version's


class StripeProvider:
    name = "stripe"

    def __init__(self, api_key: str, base_url: str = STRIPE_API, timeout: float = 20.0):
        self.api_key, self.base_url, self.timeout = api_key, base_url.rstrip("/"), timeout

    def checkout_request(self, order_id: uuid.UUID, amount: Decimal, currency: str, urls: ReturnUrls,
                         idempotency_key: str) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
        """(URL, headers, form fields) of the Checkout Session for an order: one line of the order's
        total, the order's id in the metadata of the session and of its PaymentIntent (the webhooks
        name the order by it)."""
        if not urls.success_url:
            raise Invalid("success_url", "the stripe provider needs a success_url to send the buyer back to")
        form = [("mode", "payment"), ("client_reference_id", str(order_id)), ("metadata[order_id]", str(order_id)),
                ("payment_intent_data[metadata][order_id]", str(order_id)),
                ("line_items[0][quantity]", "1"),
                ("line_items[0][price_data][currency]", currency.lower()),
                ("line_items[0][price_data][unit_amount]", str(_minor(amount, currency))),
                ("line_items[0][price_data][product_data][name]", f"Order {order_id}"),
                ("success_url", urls.success_url)]
        if urls.cancel_url:
            form.append(("cancel_url", urls.cancel_url))
        headers = {"Authorization": f"Bearer {self.api_key}", "Stripe-Version": STRIPE_VERSION,
                   "Idempotency-Key": idempotency_key}
        return f"{self.base_url}/v1/checkout/sessions", headers, form

    async def open_session(self, pool: AsyncConnectionPool, order_id: uuid.UUID, amount: Decimal, currency: str,
                           urls: ReturnUrls) -> Session:
        url, headers, form = self.checkout_request(order_id, amount, currency, urls, str(uuid.uuid4()))
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
                async with http.post(url, data=form, headers=headers) as resp:
                    answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderError(f"Stripe could not be reached: {exc!r}") from None
        if resp.status >= 400 or not isinstance(answer, dict) or "id" not in answer:
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
            raise ProviderError(f"Stripe refused the session ({resp.status}): {message or repr(answer)}")
        return Session(session_id=answer["id"], redirect_url=answer.get("url"), client_secret=answer.get("client_secret"))
