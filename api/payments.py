"""Payments: open a session with the provider, receive its signed webhooks, and the test provider's
stand-in payment page (whose buttons send the webhooks a real provider would)."""

import time
import uuid
from enum import Enum
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, HTTPException
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from api.auth import PUBLIC, event_meta
from api.orders import NO_ORDER, read_your_write
from api.problems import pattern
from events import payments
from events.commands import payments as commands
from events.orders import Status
from events.payments import SIGNATURE_HEADER
from events.providers import ProviderError, ReturnUrls, describe
from events.settings import Settings

Url = Annotated[str, pattern(r"^https?://[^\s/$.?#][^\s]*$", "an http(s) URL such as https://shop.example/thanks",
                             max_length=2048)]
SessionId = Annotated[str, pattern(r"^[A-Za-z0-9_]{1,200}$", "a session id such as cs_test_...")]


class PaymentIn(msgspec.Struct, forbid_unknown_fields=True):
    success_url: Url | None = None  # where the provider's page sends the buyer after paying (Stripe needs it)
    cancel_url: Url | None = None  # ... and after giving up


class SessionOut(msgspec.Struct):
    order_id: uuid.UUID
    provider: str
    session_id: str
    redirect_url: str | None  # send the buyer here to pay ...
    client_secret: str | None  # ... or give this to the provider's embedded form
    amount: str
    currency: str


class BadGateway(HTTPException):
    status_code = 502


@post("/orders/{order_id:uuid}/payment", operation_id="requestPayment", tags=["payments"], status_code=201,
      summary="Open a payment session with the provider for a pending order (the buyer)",
      opt={"problems": {403: "Only the order's buyer pays for it.", 404: NO_ORDER,
                        409: "The order is not pending (`current_status` says what it is), or changed meanwhile.",
                        422: "A URL is not valid, or the provider needs a `success_url`.",
                        502: "The payment provider refused or could not be reached; nothing was recorded."}})
async def request_payment(order_id: FromPath[uuid.UUID], request: Request, state: State,
                          data: JSONBody[PaymentIn | None] = None) -> SessionOut:
    """Answers what the client needs to pay: the provider's session, and a URL to send the buyer to
    (or a client secret). The order becomes paid when the provider's webhook says the money came."""
    urls = ReturnUrls(success_url=data.success_url, cancel_url=data.cancel_url) if data else ReturnUrls()
    try:
        order, session = await commands.request(state.pool, state.provider, order_id, request.user.actor, urls,
                                                event_meta(request))
    except ProviderError as exc:
        raise BadGateway(detail=str(exc)) from None
    await read_your_write(state, order)
    return SessionOut(order_id=order.id, provider=state.provider.name, session_id=session.session_id,
                      redirect_url=session.redirect_url, client_secret=session.client_secret,
                      amount=f"{order.total:.2f}", currency=order.currency)


class WebhookEvent(msgspec.Struct):
    """A provider event, in Stripe's shape: `checkout.session.completed` and
    `checkout.session.async_payment_succeeded` pay an order, `checkout.session.async_payment_failed` and
    `checkout.session.expired` record a failure, `charge.refunded` a refund; other types are ignored."""

    id: Annotated[str, Meta(examples=["evt_1Q..."])]
    type: Annotated[str, Meta(examples=["checkout.session.completed"])]
    data: dict[str, Any]


class WebhookAnswer(msgspec.Struct):
    outcome: str  # applied, duplicate (applied before: a redelivery), or ignored (a type that changes no order)
    event_id: str | None = None
    order_id: uuid.UUID | None = None
    order_status: Status | None = None
    recorded: list[str] = []  # the types of the events it recorded


@post("/payments/webhook", operation_id="paymentWebhook", tags=["payments"], status_code=200,
      summary="The payment provider's events, signed (Stripe-Signature)",
      opt={**PUBLIC, "body": {"application/json": WebhookEvent},
           "problems": {400: "Unsigned, signed with another secret, stale (over 5 minutes), a replay of a request"
                             " received before, or not a provider event; nothing was changed.",
                        404: "The event names no order (nor a payment of one) that exists."}})
async def webhook(request: Request, state: State) -> WebhookAnswer:
    """Each provider event is applied once, however often it is delivered: a redelivery answers
    `duplicate`. The signature is checked over the raw body before anything else is read."""
    body = await request.body()
    try:
        signature = payments.verify(body, request.headers.get(SIGNATURE_HEADER), state.webhook_secret, time.time())
        event = payments.parse(body)
    except ValueError as exc:  # BadSignature included
        raise ClientException(detail=str(exc)) from None
    if event is None:
        return WebhookAnswer(outcome="ignored")
    try:
        recorded, order = await commands.receive(state.pool, state.provider.name, event, signature,
                                                 event_meta(request, f"provider:{state.provider.name}"))
    except commands.Replayed:
        raise ClientException(detail="this signed request was received before: a replay; nothing changed") from None
    if recorded:
        await read_your_write(state, order)
    return WebhookAnswer(outcome="duplicate" if recorded is None else "applied", event_id=event.event_id,
                         order_id=order.id, order_status=order.status, recorded=[e.type for e in recorded or []])


class TestAction(str, Enum):
    SUCCEED = "succeed"
    FAIL = "fail"
    REFUND = "refund"


class TestSessionOut(msgspec.Struct):
    session_id: str
    order_id: uuid.UUID
    amount: str
    currency: str
    status: str  # open, paid, failed, refunded
    payment_id: str | None
    actions: dict[str, str]  # POST one to pay, fail or refund the session


class TestDelivery(msgspec.Struct):
    session: TestSessionOut
    event_id: str
    webhook_status: int  # what /payments/webhook answered the test provider
    webhook_answer: Any


NO_SESSION = "No such test payment session."


@get("/payments/test/{session_id:str}", operation_id="getTestPaymentSession", tags=["payments"],
     summary="The test provider's stand-in payment page (only with PAYMENT_PROVIDER=test)",
     opt={**PUBLIC, "problems": {404: NO_SESSION, 422: "The session id is not one."}})
async def test_session(session_id: FromPath[SessionId], state: State) -> TestSessionOut:
    """Where the test provider's `redirect_url` points. Anyone holding the session id may pay it, as
    with a real provider's payment page."""
    return msgspec.convert(describe(await state.provider.session(state.pool, session_id)),
                           TestSessionOut)


@post("/payments/test/{session_id:str}/{action:str}", operation_id="actOnTestPaymentSession", tags=["payments"],
      status_code=200, summary="Pay, fail or refund a test session: the test provider sends its signed webhook",
      opt={**PUBLIC, "problems": {404: NO_SESSION, 409: "The session cannot do that now (`current_status`).",
                                  422: "The session id or the action is not one."}})
async def act_on_test_session(session_id: FromPath[SessionId], action: FromPath[TestAction], request: Request,
                              state: State) -> TestDelivery:
    """The buyer pays (`succeed`) or fails to pay (`fail`) on the provider's page, or the shop refunds
    it (`refund`): the test provider records it, signs the webhook a real provider would send, POSTs it
    to this API's /payments/webhook and answers with what that said."""
    provider = state.provider
    event_id, body = await provider.act(state.pool, session_id, action.value)
    host, port = request.scope["server"]  # this server's own address: never a host a client names
    status, answer = await provider.deliver(f"http://{_host(host)}:{port}/payments/webhook", body)
    session = msgspec.convert(describe(await provider.session(state.pool, session_id)), TestSessionOut)
    return TestDelivery(session=session, event_id=event_id, webhook_status=status, webhook_answer=answer)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def routes(settings: Settings) -> list:
    """The payment routes; the test provider's pages only while it is the configured provider."""
    return [request_payment, webhook, *([test_session, act_on_test_session]
                                        if settings.payment_provider == "test" else [])]

