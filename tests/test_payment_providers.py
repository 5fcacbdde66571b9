"""The provider side, offline: signatures checked against Stripe's own library, Stripe's event shapes
read in our terms, the Stripe adapter's request compared with what the official `stripe` package
sends (both to a local server: no test here reaches Stripe), and the provider settings."""

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
import stripe
from aiohttp import web

from api.app import create_app
from events import orders
from events.base import advance
from events.payments import BadSignature, ProviderEvent, from_minor, parse, sign, to_minor, verify
from events.providers import ProviderError, ReturnUrls, StripeProvider, event_body
from events.settings import ConfigError, Settings, from_env
from events.users import Actor
from tests.support import free_port

SECRET = "whsec_" + "k" * 32
BODY = b'{"id": "evt_1", "type": "checkout.session.completed"}'


def test_stripe_verifies_our_signature_and_we_verify_stripes():
    now = int(time.time())
    assert stripe.WebhookSignature.verify_header(BODY.decode(), sign(BODY, SECRET, now), SECRET, tolerance=300)
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=now)
    assert verify(BODY, header, SECRET, time.time()) == header.split("v1=")[1]


def test_any_of_several_signatures_may_match_as_while_a_secret_is_rolled():
    t = int(time.time())
    header = f"t={t},v1={'0' * 64},v1={sign(BODY, SECRET, t).split('v1=')[1]},v0=old"
    assert verify(BODY, header, SECRET, t)


@pytest.mark.parametrize("header", [None, "", "t=1", "v1=ab", "t=-1,v1=ab", "t=１２,v1=ab", "t=1,v1=é"])
def test_a_header_without_a_matching_signature_is_refused(header):
    with pytest.raises(BadSignature):
        verify(BODY, header, SECRET, time.time())


def test_a_signature_outside_the_tolerance_is_stale_either_way():
    t = int(time.time())
    assert verify(BODY, sign(BODY, SECRET, t - 300), SECRET, t)
    for off in (-301, 301):
        with pytest.raises(BadSignature, match="stale"):
            verify(BODY, sign(BODY, SECRET, t + off), SECRET, t)


def test_amounts_go_to_and_from_each_currencys_minor_unit():
    assert to_minor(Decimal("39.98"), "EUR") == 3998 and from_minor(3998, "EUR") == Decimal("39.98")
    assert to_minor(Decimal("1200"), "JPY") == 1200 and from_minor(1200, "JPY") == Decimal("1200.00")
    assert to_minor(Decimal("1.5"), "BHD") == 1500
    with pytest.raises(ValueError, match="JPY has no unit that small"):
        to_minor(Decimal("12.50"), "JPY")


def _session_event(kind: str, status: str = "paid") -> bytes:
    return event_body("evt_9", kind, {"id": "cs_1", "object": "checkout.session", "amount_total": 1250,
                                      "currency": "eur", "payment_status": status, "payment_intent": "pi_1",
                                      "metadata": {"order_id": "8d3c7f0e-9f43-4f3e-8f55-d2f3c4b2a111"}}, 1)


def test_stripe_events_read_in_our_terms():
    paid = parse(_session_event("checkout.session.completed"))
    assert paid == ProviderEvent(event_id="evt_9", outcome="succeeded", order_id=uuid.UUID(
        "8d3c7f0e-9f43-4f3e-8f55-d2f3c4b2a111"), session_id="cs_1", payment_id="pi_1", amount=Decimal("12.50"),
        currency="EUR", detail="checkout.session.completed")
    assert parse(_session_event("checkout.session.completed", "unpaid")) is None  # a slow method: wait for it
    assert parse(_session_event("checkout.session.async_payment_failed", "unpaid")).outcome == "failed"
    assert parse(_session_event("checkout.session.expired", "unpaid")).outcome == "failed"
    refund = parse(event_body("evt_r", "charge.refunded", {"id": "ch_1", "object": "charge", "amount_refunded": 500,
                                                           "currency": "eur", "payment_intent": "pi_1"}, 1))
    assert (refund.outcome, refund.order_id, refund.payment_id, refund.amount) == ("refunded", None, "pi_1",
                                                                                   Decimal("5.00"))
    assert parse(event_body("evt_c", "customer.created", {"id": "cus_1", "object": "customer"}, 1)) is None
    with pytest.raises(ValueError):
        parse(b'{"id": "evt_1"}')


BUYER = Actor(uuid.uuid4(), "buyer")


def _pending() -> orders.Order:
    placed = orders.OrderPlaced(order_id=uuid.uuid4(), buyer_id=BUYER.id, lines=[], total=Decimal("10.00"),
                                currency="EUR", shipping_address=orders.Address(
                                    name="A", line1="B", city="C", postal_code="D", country="GB"),
                                placed_at=datetime(2026, 1, 1, tzinfo=UTC))
    order = advance(orders.evolve, None, [placed], placed.placed_at)
    return advance(orders.evolve, order, orders.request_payment(order, BUYER, "test", "cs_1"), placed.placed_at)


def _succeeded(order: orders.Order, **changes) -> ProviderEvent:
    return ProviderEvent(**{"event_id": "evt_1", "outcome": "succeeded", "order_id": order.id, "session_id": "cs_1",
                            "payment_id": "pi_1", "amount": Decimal("10.00"), "currency": "EUR", **changes})


def test_a_success_pays_a_pending_order_once_and_any_other_is_refused_for_refund():
    order = _pending()
    (paid,) = orders.settle(order, _succeeded(order))
    assert isinstance(paid, orders.OrderPaid) and paid.reference == "cs_1" and paid.payment_id == "pi_1"
    after = advance(orders.evolve, order, [paid], order.updated_at)
    assert orders.settle(after, _succeeded(after, event_id="evt_2")) == []  # the same payment, said again
    for event, reason in [(_succeeded(after, session_id="cs_2"), "order_paid"),
                          (_succeeded(order, amount=Decimal("9.99")), "amount_mismatch"),
                          (_succeeded(order, currency="USD"), "currency_mismatch"),
                          (_succeeded(order, session_id="cs_9"), "unknown_session")]:
        state = after if reason == "order_paid" else order
        (refused,) = orders.settle(state, event)
        assert isinstance(refused, orders.PaymentRefused) and refused.reason == reason


@pytest.fixture
async def fake_stripe():
    """A local stand-in for api.stripe.com that records each request and answers a session."""
    seen: list[dict] = []

    async def sessions(request: web.Request) -> web.Response:
        form = parse_qsl((await request.read()).decode())
        seen.append({"path": request.path, "headers": dict(request.headers), "form": form})
        if dict(form)["line_items[0][price_data][unit_amount]"] == "1":  # as Stripe refuses a charge of 0.01
            return web.json_response({"error": {"message": "Amount too small"}}, status=400)
        return web.json_response({"id": "cs_test_1", "object": "checkout.session",
                                  "url": "https://checkout.stripe.com/c/pay/cs_test_1"})

    app = web.Application()
    app.router.add_post("/v1/checkout/sessions", sessions)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


URLS = ReturnUrls(success_url="https://shop.example/thanks", cancel_url="https://shop.example/cart")


async def test_the_stripe_adapter_sends_what_the_official_library_sends(fake_stripe):
    base, seen = fake_stripe
    order_id = uuid.uuid4()
    session = await StripeProvider("sk_test_abc", base_url=base).open_session(None, order_id, Decimal("39.98"), "EUR",
                                                                              URLS)
    assert session.session_id == "cs_test_1" and session.redirect_url.startswith("https://checkout.stripe.com/")
    client = stripe.StripeClient("sk_test_abc", base_addresses={"api": base}, http_client=stripe.HTTPXClient(),
                                 stripe_version="2024-06-20")
    await client.v1.checkout.sessions.create_async({
        "mode": "payment", "client_reference_id": str(order_id), "metadata": {"order_id": str(order_id)},
        "payment_intent_data": {"metadata": {"order_id": str(order_id)}},
        "line_items": [{"quantity": 1, "price_data": {"currency": "eur", "unit_amount": 3998,
                                                      "product_data": {"name": f"Order {order_id}"}}}],
        "success_url": URLS.success_url, "cancel_url": URLS.cancel_url})
    ours, official = seen
    assert ours["path"] == official["path"] == "/v1/checkout/sessions"
    assert sorted(ours["form"]) == sorted(official["form"])
    for name in ("Authorization", "Stripe-Version"):
        assert ours["headers"][name] == official["headers"][name]
    assert ours["headers"]["Idempotency-Key"]  # a retry of this request could not open a second session


async def test_a_refusal_by_stripe_is_a_provider_error_and_stripe_needs_a_success_url(fake_stripe):
    base, _ = fake_stripe
    provider = StripeProvider("sk_test_abc", base_url=base)
    with pytest.raises(ProviderError, match=r"refused the session \(400\): Amount too small"):
        await provider.open_session(None, uuid.uuid4(), Decimal("0.01"), "EUR", URLS)
    with pytest.raises(ProviderError, match="could not be reached"):
        await StripeProvider("sk_test_abc", base_url=f"http://127.0.0.1:{free_port()}").open_session(
            None, uuid.uuid4(), Decimal("1.00"), "EUR", URLS)
    with pytest.raises(orders.Invalid, match="success_url"):
        provider.checkout_request(uuid.uuid4(), Decimal("1.00"), "EUR", ReturnUrls(), "k")


def test_stripe_without_its_key_or_webhook_secret_is_refused_at_startup():
    with pytest.raises(ConfigError, match="^PAYMENT_API_KEY is not set: PAYMENT_PROVIDER=stripe needs it"):
        create_app(Settings(dev_mode=True, payment_provider="stripe", payment_webhook_secret=SECRET))
    with pytest.raises(ConfigError, match="^PAYMENT_WEBHOOK_SECRET is not set"):
        create_app(Settings(dev_mode=True, payment_provider="stripe", payment_api_key="sk_test_abc"))
    with pytest.raises(ConfigError, match="^PAYMENT_PROVIDER='paypal' is not valid: expected one of test, stripe"):
        from_env({"PAYMENT_PROVIDER": "paypal"})


def test_with_stripe_the_direct_pay_and_the_test_pages_are_gone():
    app = create_app(Settings(dev_mode=True, payment_provider="stripe", payment_api_key="sk_test_abc",
                              payment_webhook_secret=SECRET))
    paths = set(app.openapi_schema.paths)
    assert "/orders/{order_id}/payment" in paths and "/payments/webhook" in paths
    assert "/orders/{order_id}/pay" not in paths and not any(p.startswith("/payments/test") for p in paths)
    assert app.state.webhook_secret == SECRET and app.state.provider.name == "stripe"
