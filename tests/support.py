"""Helpers shared by the tests: waiting on conditions, the RabbitMQ admin API, a test event type."""

import asyncio
import base64
import os
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

import aiohttp

from events.base import Event, Recorded, event, unpack

T = TypeVar("T")

ADMIN_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_HOST = os.environ.get("TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_ADMIN = os.environ.get("TEST_RABBITMQ_ADMIN", f"http://{RABBITMQ_HOST}:15672")


@event("test.happened")
class Happened(Event, kw_only=True):
    writer: int = 0
    seq: int = 0
    n: int = 1


@event("test.poisoned")
class Poisoned(Event, kw_only=True):
    reason: str = "always fails"


async def eventually(probe: Callable[[], Awaitable[T]], *, timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        await asyncio.sleep(delay)  # polling interval of a deadline-bounded wait, not a synchronisation
        delay = min(delay * 2, 0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RabbitAdmin:
    """Vhosts and connections through the management HTTP API, with rabbitmqctl as a fallback."""

    def __init__(self, base: str = RABBITMQ_ADMIN, user: str = "guest", password: str = "guest"):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.base, self.headers = base, {"Authorization": f"Basic {token}"}

    async def _call(self, method: str, path: str, json: object | None = None) -> object:
        async with aiohttp.ClientSession(headers=self.headers) as session:
            async with session.request(method, self.base + path, json=json) as resp:
                resp.raise_for_status()
                return await resp.json() if resp.content_type == "application/json" else None

    async def available(self) -> bool:
        try:
            await self._call("GET", "/api/overview")
            return True
        except Exception:
            return False

    async def create_vhost(self, vhost: str) -> None:
        if await self.available():
            q = urllib.parse.quote(vhost, safe="")
            await self._call("PUT", f"/api/vhosts/{q}")
            await self._call("PUT", f"/api/permissions/{q}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        else:
            subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True)
            subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                           check=True, capture_output=True)

    async def delete_vhost(self, vhost: str) -> None:
        if await self.available():
            await self._call("DELETE", f"/api/vhosts/{urllib.parse.quote(vhost, safe='')}")
        else:
            subprocess.run(["rabbitmqctl", "delete_vhost", vhost], check=False, capture_output=True)

    async def connections(self, vhost: str) -> list[dict]:
        q = urllib.parse.quote(vhost, safe="")
        return await self._call("GET", f"/api/vhosts/{q}/connections")

    async def close_connections(self, vhost: str, name_prefix: str = "") -> list[str]:
        """Cut the client connections of the vhost whose connection_name starts with `name_prefix`,
        as a broker restart or a network failure would. Returns the names cut."""
        cut = []
        for c in await self.connections(vhost):
            if c.get("client_properties", {}).get("connection_name", "").startswith(name_prefix):
                await self._call("DELETE", f"/api/connections/{urllib.parse.quote(c['name'], safe='')}")
                cut.append(c["name"])
        return cut

    async def queue(self, vhost: str, name: str) -> dict:
        q = urllib.parse.quote(vhost, safe="")
        return await self._call("GET", f"/api/queues/{q}/{urllib.parse.quote(name, safe='')}")


class Tapped(NamedTuple):
    """One event as a message on orders.events brought it (a message may bring several)."""

    message: object
    event: Recorded


class Tap:
    """A private queue bound to orders.events that records every event it receives."""

    def __init__(self, rabbitmq_url: str, binding: str = "#"):
        self.url, self.binding = rabbitmq_url, binding
        self.messages: list = []
        self.events: list[Tapped] = []
        self._connection = None

    async def __aenter__(self) -> "Tap":
        import aio_pika

        from workers import topology

        self._connection = await aio_pika.connect(self.url, client_properties={"connection_name": "test-tap"})
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        await topology.declare(channel)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(topology.EVENTS, routing_key=self.binding)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message) -> None:
        self.messages.append(message)
        self.events.extend(Tapped(message, e) for e in unpack(message.body))

    async def __aexit__(self, *exc) -> None:
        await self._connection.close()

    def for_streams(self, streams: set[str]) -> list[Tapped]:
        return [t for t in self.events if t.event.stream_id in streams]


PASSWORD = "correct horse battery"


def bearer(tokens: dict | str) -> dict:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def account(client, role: str = "buyer") -> dict:
    """Register and log in through the API; returns the login's tokens plus the user's `id`."""
    import uuid

    address = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
    r = await client.post("/auth/register", json={"email": address, "password": PASSWORD, "name": role.title(),
                                                  "role": role})
    assert r.status_code == 201, r.text
    tokens = (await client.post("/auth/login", json={"email": address, "password": PASSWORD})).json()
    return {**tokens, "id": r.json()["id"], "email": address}


async def admin_account(client, pool, settings) -> dict:
    """An admin, made as `orders users create-admin` makes one (the API cannot)."""
    import uuid

    from events.base import Meta
    from events.commands.accounts import register
    from events.passwords import Passwords

    address = f"admin-{uuid.uuid4().hex[:12]}@example.com"
    user = await register(pool, Passwords(settings), email=address, password=PASSWORD, name="Admin",
                          role="admin", meta=Meta(actor="test"))
    tokens = (await client.post("/auth/login", json={"email": address, "password": PASSWORD})).json()
    return {**tokens, "id": str(user.id), "email": address}


import contextlib


@contextlib.asynccontextmanager
async def serve(app):
    """Run `app` under a real uvicorn server on a free local port, in this event loop (so it shares the
    loop with in-process workers), and yield an HTTP client for it."""
    import httpx
    import uvicorn

    from api.transport import server_options

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", access_log=False, **server_options()))
    server.install_signal_handlers = lambda: None  # uvicorn < 0.29 API
    server.capture_signals = contextlib.nullcontext  # keep pytest's own signal handling
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _done(server.started or task.done()), timeout=20, what="the API server to start")
    if task.done():
        task.result()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits()) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def limits():
    """Idle connections expire well before uvicorn's keep-alive (5 s) closes them: at equal times (httpx's
    default) a request can go out on a connection the server is closing, and fail with a ReadError."""
    import httpx

    return httpx.Limits(keepalive_expiry=1.0)


async def _done(value):
    return value


async def raw_request(port: int, head: str, body: bytes = b"", *, timeout: float = 10.0) -> bytes:
    """Send `head` (request line and headers, without the blank line) and `body` on a fresh socket,
    and return everything the server writes until it closes the connection; fail after `timeout`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
