"""One retry and dead-letter policy for every consumer (projections, the scraper).

A message that failed is never held unacked while it waits: a copy goes either to `<queue>.retry`,
with its backoff as a per-message TTL after which RabbitMQ dead-letters it back to the end of the
queue, or to `<queue>.dlq` (through `orders.dlx`), with the reason in `x-error` and the attempts so far
in `x-attempts`. The original is settled only after the broker has confirmed the copy, so nothing is
lost in between, and the queue keeps flowing behind it.
"""

import logging

import msgspec
from faststream.rabbit import RabbitBroker

from events.broker import DLX, retry_queue

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
# Failures that would repeat on every attempt: a body that is not what the queue carries, event data
# that does not fit its type. They go to the dead-letter queue at once.
PERMANENT = (msgspec.MsgspecError,)


def reason(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return text[:1000]


class RetryPolicy(msgspec.Struct, frozen=True):
    max_attempts: int = 5
    retry_seconds: float = 1.0  # the first backoff; it doubles with each attempt, up to a minute

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`."""
        return min(self.retry_seconds * 2 ** (attempts - 1), MAX_BACKOFF)

    def gives_up(self, exc: BaseException, attempts: int) -> bool:
        return attempts >= self.max_attempts or isinstance(exc, PERMANENT)


async def dead_letter(broker: RabbitBroker, body: bytes, queue: str, why: BaseException | str, *,
                      headers: dict | None = None, attempts: int = 1, **properties) -> None:
    """Publish a copy of a message to `<queue>.dlq` with the reason; raises if the broker refuses it."""
    headers = {**(headers or {}), "x-attempts": attempts, "x-error": reason(why)}
    await broker.publish(body, exchange=DLX, routing_key=queue, persist=True, headers=headers, **properties)
    log.error("dead-lettered a message of %s after %d attempt(s): %s", queue, attempts, headers["x-error"])


async def retry_later(broker: RabbitBroker, body: bytes, queue: str, why: BaseException, delay: float, *,
                      headers: dict | None = None, attempts: int = 1, **properties) -> None:
    """Publish a copy of a message to `<queue>.retry`, back in `queue` after `delay` seconds."""
    headers = {**(headers or {}), "x-attempts": attempts, "x-error": reason(why)}
    await broker.publish(body, routing_key=retry_queue(queue), persist=True, headers=headers,
                         expiration=delay, **properties)
