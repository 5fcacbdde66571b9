"""What /ready and /metrics ask of RabbitMQ and PostgreSQL, asked once however many call at once: one
AMQP connection per API process, kept and reused, and each answer shared for a second."""

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractConnection

from projections.status import connect


class Broker:
    """The API process's one connection for looking at RabbitMQ, opened on first use and again after
    it is lost. (It publishes nothing: the relay does.)"""

    def __init__(self, url: str):
        self.url = url
        self.connects = 0  # connections opened, for the curious and the tests
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def connection(self) -> AbstractConnection | None:
        """The open connection, or None when RabbitMQ cannot be reached."""
        async with self._lock:
            # `connected` is cleared when the broker closes the connection; `is_closed` only when we do.
            if self._connection is None or not self._connection.connected.is_set():
                await self.close()
                self._connection = await connect(self.url, timeout=2,
                                                 client_properties={"connection_name": f"orders-api-{os.getpid()}"})
                self.connects += self._connection is not None
            return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # one the broker already closed may say so
                await self._connection.close()
            self._connection = None


class Recent:
    """One answer of `load`, shared by every caller while it is computed and for `ttl` seconds after."""

    def __init__(self, ttl: float = 1.0):
        self.ttl = ttl
        self.loads = 0
        self._task: asyncio.Task | None = None
        self._at = 0.0

    async def get(self, load: Callable[[], Awaitable[Any]]) -> Any:
        if self._task is None or (self._task.done() and time.monotonic() - self._at > self.ttl):
            self._at = time.monotonic()
            self._task = asyncio.ensure_future(load())
            self.loads += 1
        # shield: a caller who leaves does not cancel the answer the others wait for
        return await asyncio.shield(self._task)
