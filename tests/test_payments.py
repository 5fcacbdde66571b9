"""Payments through the provider's signed webhook, against the real API, PostgreSQL and RabbitMQ: the
built-in test provider opens sessions and sends webhooks signed as Stripe signs them."""

import asyncio
import time
import uuid

import pytest

from events.payments import SIGNATURE_HEADER, sign
from events.providers import event_body
from events.settings import TEST_WEBHOOK_SECRET
from tests.support import account, bearer, eventually

ADDRESS = {"name": "Bea Buyer", "line1": "1 High St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"}


@pytest.fixture(scope="module")
async def product(system, seller) -> dict:
    r = await system.post("/products", headers=bearer(seller),
                          json={"name": "Paid mug", "price": "19.99", "currency": "EUR", "stock": 1000})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
async def buyer(system) -> dict:
    return await account(system, "buyer")


async def place(system, buyer, product, quantity: int = 2) -> dict:
    r = await system.post("/orders", headers=bearer(buyer), json={
        "items": [{"product_id": product["id"], "quantity": quantity}], "shipping_address": ADDRESS})
    assert r.status_code == 201, r.text
    return r.json()


async def open_session(system, buyer, order) -> dict:
    r = await system.post(f"/orders/{order['id']}/payment", headers=bearer(buyer))
    assert r.status_code == 201, r.text
    return r.json()


def completed(order_id: str, session_id: str, minor: int = 3998, currency: str = "eur") -> tuple[str, bytes]:
    """A provider's `checkout.session.completed` for a session, as the test provider (and Stripe) shape it."""
    event_id = f"evt_test_{uuid.uuid4().hex}"
    return event_id, event_body(event_id, "checkout.session.completed", {
        "id": session_id, "object": "checkout.session", "amount_total": minor, "currency": currency,
        "payment_status": "paid", "payment_intent": f"pi_test_{uuid.uuid4().hex}", "client_reference_id": order_id,
        "metadata": {"order_id": order_id}}, int(time.time()))


def signed(body: bytes, *, at: int | None = None, secret: str = TEST_WEBHOOK_SECRET) -> dict:
    return {"content-type": "application/json", SIGNATURE_HEADER: sign(body, secret, int(time.time()) if at is None
                                                                        else at)}


async def deliver(system, body: bytes, headers: dict):
    return await system.post("/payments/webhook", content=body, headers=headers)


async def recorded(pool, order_id: str) -> list[tuple[str, dict]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT type, data FROM events WHERE stream_id = %s ORDER BY version",
                                 (f"order-{order_id}",))
        return await cur.fetchall()


def types(events: list[tuple[str, dict]]) -> list[str]:
    return [t for t, _ in events]


async def test_a_buyer_pays_through_the_test_provider_from_session_to_webhook_to_paid(system, buyer, product, pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    assert session["provider"] == "test" and session["session_id"].startswith("cs_test_")
    assert session["amount"] == "39.98" and session["currency"] == "EUR"
    page = (await system.get(session["redirect_url"])).json()
    assert page["status"] == "open" and page["amount"] == "39.98" and page["order_id"] == order["id"]

    paid = await system.post(page["actions"]["succeed"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["webhook_status"] == 200 and paid.json()["session"]["status"] == "paid"
    assert paid.json()["webhook_answer"]["outcome"] == "applied"
    assert paid.json()["webhook_answer"]["recorded"] == ["order.paid"]

    # Read-your-writes: the answer came once the orders table showed it, so a listing right after has it.
    listed = (await system.get("/orders", params={"status": "paid"}, headers=bearer(buyer))).json()["items"]
    assert [o["id"] for o in listed] == [order["id"]]
    got = (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()
    assert got["status"] == "paid" and got["payment_reference"] == session["session_id"]
    assert got["payments"] == [{"session_id": session["session_id"], "status": "paid", "amount": "39.98",
                                "currency": "EUR", "payment_id": paid.json()["session"]["payment_id"],
                                "refund_due": None, "refunded": None, "detail": ""}]
    events = await recorded(pool, order["id"])
    assert types(events) == ["order.placed", "order.payment_requested", "order.paid"]
    assert events[2][1]["amount"] == "39.98" and events[2][1]["reference"] == session["session_id"]


async def test_the_same_webhook_delivered_twice_applies_once(system, buyer, product, pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    _, body = completed(order["id"], session["session_id"])
    first = await deliver(system, body, signed(body))
    again = await deliver(system, body, signed(body, at=int(time.time()) - 1))  # a redelivery is signed anew
    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert types(await recorded(pool, order["id"])).count("order.paid") == 1


async def test_the_same_webhook_delivered_twenty_times_at_once_pays_once(system, buyer, product, pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    _, body = completed(order["id"], session["session_id"])
    now = int(time.time())
    answers = await asyncio.gather(*(deliver(system, body, signed(body, at=now - i)) for i in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert sorted(a.json()["outcome"] for a in answers) == ["applied"] + ["duplicate"] * 19
    assert types(await recorded(pool, order["id"])).count("order.paid") == 1
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM payment_events WHERE order_id = %s", (order["id"],))
        assert (await cur.fetchone())[0] == 1


@pytest.mark.parametrize("headers, says", [
    (lambda body: {"content-type": "application/json"}, "header is missing"),
    (lambda body: signed(body, secret="whsec_someone_else"), "no v1 signature matches"),
    (lambda body: signed(b'{"id": "evt_other"}'), "no v1 signature matches"),  # signed, but another body
    (lambda body: {SIGNATURE_HEADER: "v1=" + "0" * 64}, "must be t=<unix time>,v1=<signature>"),
    (lambda body: {SIGNATURE_HEADER: "t=soon,v1=abc"}, "must be t=<unix time>,v1=<signature>"),
    (lambda body: signed(body, at=int(time.time()) - 301), "stale"),
    (lambda body: signed(body, at=int(time.time()) + 301), "stale"),
], ids=["unsigned", "another secret", "another body", "no time", "bad time", "stale", "from the future"])
async def test_unsigned_bad_and_stale_webhooks_are_a_400_and_change_nothing(system, buyer, product, pool, headers,
                                                                             says):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    event_id, body = completed(order["id"], session["session_id"])
    r = await deliver(system, body, headers(body))
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert says in r.json()["detail"]
    assert types(await recorded(pool, order["id"])) == ["order.placed", "order.payment_requested"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM payment_events WHERE event_id = %s", (event_id,))
        assert (await cur.fetchone())[0] == 0


async def test_a_replayed_request_is_a_400_and_changes_nothing(system, buyer, product, pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    _, body = completed(order["id"], session["session_id"])
    captured = signed(body)
    assert (await deliver(system, body, captured)).json()["outcome"] == "applied"
    replays = await asyncio.gather(*(deliver(system, body, captured) for _ in range(3)))
    assert [r.status_code for r in replays] == [400] * 3 and "replay" in replays[0].json()["detail"]
    assert types(await recorded(pool, order["id"])) == ["order.placed", "order.payment_requested", "order.paid"]


async def test_a_replay_racing_its_original_applies_once_and_the_other_is_refused(system, buyer, product, pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    _, body = completed(order["id"], session["session_id"])
    captured = signed(body)
    answers = await asyncio.gather(*(deliver(system, body, captured) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400]
    assert types(await recorded(pool, order["id"])).count("order.paid") == 1


@pytest.mark.parametrize("minor, currency, reason", [(3999, "eur", "amount_mismatch"), (3998, "usd", "currency_mismatch")])
async def test_a_payment_of_another_amount_or_currency_is_refused_and_recorded(system, buyer, product, pool, minor,
                                                                               currency, reason):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    _, body = completed(order["id"], session["session_id"], minor, currency)
    r = await deliver(system, body, signed(body))
    assert r.status_code == 200 and r.json()["recorded"] == ["order.payment_refused"]
    assert r.json()["order_status"] == "pending"
    got = (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()
    assert got["status"] == "pending"
    assert got["payments"][0]["status"] == "refused" and got["payments"][0]["detail"] == reason
    assert got["payments"][0]["refund_due"] == f"{minor / 100:.2f}" and got["payments"][0]["currency"] == currency.upper()
    refused = (await recorded(pool, order["id"]))[-1]
    assert refused[0] == "order.payment_refused" and refused[1]["reason"] == reason


async def test_a_payment_for_a_session_the_order_never_opened_is_refused_for_refund(system, buyer, product, pool):
    order = await place(system, buyer, product)
    _, body = completed(order["id"], f"cs_test_{uuid.uuid4().hex}")
    r = await deliver(system, body, signed(body))
    assert r.json()["recorded"] == ["order.payment_refused"] and r.json()["order_status"] == "pending"
    assert (await recorded(pool, order["id"]))[-1][1]["reason"] == "unknown_session"


async def test_a_payment_after_a_cancellation_is_recorded_for_refund_and_its_refund_recorded(system, buyer, product,
                                                                                             pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    assert (await system.post(f"/orders/{order['id']}/cancel", headers=bearer(buyer))).status_code == 200
    late = (await system.post(f"/payments/test/{session['session_id']}/succeed")).json()
    assert late["webhook_answer"]["recorded"] == ["order.payment_refused"]
    assert late["webhook_answer"]["order_status"] == "cancelled"
    got = (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()
    assert got["status"] == "cancelled"
    assert got["payments"][0]["status"] == "refused" and got["payments"][0]["detail"] == "order_cancelled"
    assert got["payments"][0]["refund_due"] == "39.98"

    refund = (await system.post(f"/payments/test/{session['session_id']}/refund")).json()
    # The refund names only its payment: the order is found by the payment it was refused by.
    assert refund["webhook_answer"]["recorded"] == ["order.payment_refunded"]
    got = (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()
    assert got["payments"][0]["refunded"] == "39.98"
    assert types(await recorded(pool, order["id"]))[-2:] == ["order.payment_refused", "order.payment_refunded"]


async def test_a_failed_payment_is_recorded_and_the_order_stays_pending_until_paid(system, buyer, product, pool):
    order = await place(system, buyer, product)
    session = await open_session(system, buyer, order)
    failed = (await system.post(f"/payments/test/{session['session_id']}/fail")).json()
    assert failed["webhook_answer"]["recorded"] == ["order.payment_failed"]
    got = (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()
    assert got["status"] == "pending" and got["payments"][0]["status"] == "failed"
    retried = (await system.post(f"/payments/test/{session['session_id']}/succeed")).json()
    assert retried["webhook_answer"]["order_status"] == "paid"
    again = await system.post(f"/payments/test/{session['session_id']}/succeed")
    assert again.status_code == 409 and again.json()["current_status"] == "paid"


async def test_only_the_buyer_opens_a_session_and_only_for_a_pending_order(system, buyer, product, seller, pool):
    order = await place(system, buyer, product)
    stranger = await account(system, "buyer")
    assert (await system.post(f"/orders/{order['id']}/payment", headers=bearer(stranger))).status_code == 404
    assert (await system.post(f"/orders/{order['id']}/payment", headers=bearer(seller))).status_code == 403
    assert (await system.post(f"/orders/{order['id']}/pay", headers=bearer(buyer))).status_code == 200
    refused = await system.post(f"/orders/{order['id']}/payment", headers=bearer(buyer))
    assert refused.status_code == 409 and refused.json()["current_status"] == "paid"
    assert types(await recorded(pool, order["id"])) == ["order.placed", "order.paid"]
    async with pool.connection() as conn:  # a refused request opened no session with the provider
        cur = await conn.execute("SELECT count(*) FROM test_payment_sessions WHERE order_id = %s", (order["id"],))
        assert (await cur.fetchone())[0] == 0


async def test_a_webhook_for_no_known_order_is_a_404_and_an_unknown_type_is_ignored(system):
    _, body = completed(str(uuid.uuid4()), "cs_test_nobody")
    assert (await deliver(system, body, signed(body))).status_code == 404
    other = event_body("evt_test_x", "customer.created", {"id": "cus_1", "object": "customer"}, int(time.time()))
    r = await deliver(system, other, signed(other))
    assert r.status_code == 200 and r.json()["outcome"] == "ignored"
    assert (await deliver(system, b"[1, 2]", signed(b"[1, 2]"))).status_code == 400


async def test_an_open_session_does_not_push_the_deadline_back_and_a_late_payment_is_kept_for_refund(
        system, buyer, product, pool, services):
    from workers.expiry import Expiry

    expiry = Expiry(services.database_url, timeout=1.0)
    await expiry.pool.open()
    try:
        async def nothing_is_due():  # what earlier tests left pending expires first: it comes before ours
            async with expiry.pool.connection() as conn:
                if not await expiry.due(conn):
                    return True
            await expiry.step()
            return False
        await eventually(nothing_is_due, what="earlier tests' unpaid orders to expire")
        await _the_deadline_stays(system, buyer, product, pool, expiry)
    finally:
        await expiry.pool.close()


async def _the_deadline_stays(system, buyer, product, pool, expiry):
    order = await place(system, buyer, product)

    async def older_than_a_second():  # the database's clock, as the expiry's query reads it
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT now() - created_at > interval '1 second' FROM orders WHERE id = %s",
                                     (order["id"],))
            return (row := await cur.fetchone()) is not None and row[0]
    await eventually(older_than_a_second, what="the order to be over a second old")
    session = await open_session(system, buyer, order)  # the order's last change is now, its deadline is not

    async def session_projected():
        got = (await system.get("/orders", params={"status": "pending", "limit": 100}, headers=bearer(buyer))).json()
        return any(o["id"] == order["id"] and o["payments"] for o in got["items"])
    await eventually(session_projected, what="the session in the orders table")
    async with expiry.pool.connection() as conn:
        assert order["id"] in {str(order_id) for order_id, _ in await expiry.due(conn)}
    assert await expiry.step() >= 1

    async def expired():
        return (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()["status"] == "expired"
    await eventually(expired, what="the expiry in the orders table")

    late = (await system.post(f"/payments/test/{session['session_id']}/succeed")).json()
    assert late["webhook_answer"]["recorded"] == ["order.payment_refused"]
    got = (await system.get(f"/orders/{order['id']}", headers=bearer(buyer))).json()
    assert got["status"] == "expired" and got["payments"][0]["detail"] == "order_expired"
    assert got["payments"][0]["refund_due"] == "39.98"
