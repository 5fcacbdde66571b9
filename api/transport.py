"""Around the application: the HTTP server's options, and the ASGI layers that guard the connection
itself (which proxies may name the client, how long a request body may take, a client that leaves
mid-body, the security headers of every response)."""

import asyncio
import logging

from litestar.exceptions import HTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

log = logging.getLogger(__name__)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # frame-ancestors only: a stricter policy would stop the docs page at /schema from loading its scripts
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]


def server_options() -> dict:
    """uvicorn's options for every API server (`orders api` and the tests' server alike): it names
    no server software, and it trusts no X-Forwarded-For itself (`trust_proxies` does, when told)."""
    return {"server_header": False, "proxy_headers": False}


def trust_proxies(app, allowed: str):
    """X-Forwarded-For and X-Forwarded-Proto are believed only from the proxies in `allowed`
    (FORWARDED_ALLOW_IPS: addresses or networks, comma separated, or `*`); with none, from nobody, so
    a client cannot pick the address its rate limits are counted under."""
    return ProxyHeadersMiddleware(app, trusted_hosts=allowed) if allowed.strip() else app


class ClientDisconnected(Exception):
    """The client closed the connection before it had sent its whole request body."""


class BodyTimeout(HTTPException):
    status_code = 408


def guard_body(app, timeout: float, max_bytes: int):
    """A request's body must arrive whole within `timeout` seconds of the application asking for it
    (else 408), and a client that leaves meanwhile ends the request as a ClientDisconnected (499 in
    the metrics), not as a server error.

    A response that starts before its request's body was read (a 401, a 415) first reads and drops
    the rest of it, within the same deadline and up to `max_bytes`: closing a socket with unread input
    resets it, and the client could lose the answer. A body that does not come in time or is too long
    closes the connection instead of holding it."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        deadline: float | None = None
        complete = False

        async def read():
            nonlocal deadline, complete
            if complete:  # after the body: the application may wait for a disconnect, unhurried
                return await receive()
            deadline = deadline or asyncio.get_running_loop().time() + timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(detail=f"the request body did not arrive within {timeout:g}s") from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            complete = not message.get("more_body", False)
            return message

        async def drop_rest() -> bool:
            dropped = 0
            try:
                while not complete and dropped <= max_bytes:
                    dropped += len((await read()).get("body", b""))
            except (BodyTimeout, ClientDisconnected):
                return False
            return complete

        async def answer(message):
            if message["type"] == "http.response.start" and not complete and _has_body(scope) \
                    and not await drop_rest():
                message.setdefault("headers", []).append((b"connection", b"close"))
            await send(message)

        await app(scope, read, answer)

    return middleware


def _has_body(scope) -> bool:
    headers = dict(scope["headers"])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


def security_headers(app):
    """Every response, errors included, says: no sniffing, no framing, no referrer."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def add(message):
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
            await send(message)

        await app(scope, receive, add)

    return middleware
