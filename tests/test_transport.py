"""The connection itself: bodies that are late, short or abandoned, and the headers of every response."""

import asyncio
import logging
import time

import pytest

from api.app import create_app
from tests.support import account, eventually, raw_request, serve

BODY_TIMEOUT = 0.5


@pytest.fixture(scope="module")
async def client(services):
    async with serve(create_app(services.settings(request_body_timeout=BODY_TIMEOUT))) as c:
        yield c


def login_head(port: int, length: int) -> str:
    return (f"POST /auth/login HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json\n"
            f"Content-Length: {length}")


async def test_a_body_shorter_than_its_content_length_gets_408_and_the_connection_closes(client):
    started = time.monotonic()
    answer = await raw_request(client.base_url.port, login_head(client.base_url.port, 100), b'{"email": ',
                               timeout=BODY_TIMEOUT + 5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"application/problem+json" in answer and b"connection: close" in answer.lower()
    assert time.monotonic() - started < BODY_TIMEOUT + 3


async def test_a_body_the_application_never_reads_does_not_hold_the_connection(client):
    head = "POST /orders HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 100"
    answer = await raw_request(client.base_url.port, head, b'{"items": [', timeout=3)  # 401: no token
    assert answer.startswith(b"HTTP/1.1 401 "), answer
    assert b"connection: close" in answer.lower()


async def test_a_client_that_leaves_mid_body_is_counted_as_499_with_a_log_line(client, caplog):
    caplog.set_level(logging.INFO, logger="api.problems")
    port = client.base_url.port
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((login_head(port, 100).replace("\n", "\r\n") + "\r\n\r\n").encode() + b'{"email": ')
    await writer.drain()
    writer.close()

    async def counted():
        text = (await client.get("/metrics")).text
        return 'route="/auth/login",status="499"' in text and text
    text = await eventually(counted, what="the disconnect in /metrics")
    assert 'route="/auth/login",status="500"' not in text
    assert "disconnected while sending the body of POST /auth/login" in caplog.text


async def test_every_response_says_nosniff_deny_no_referrer_and_names_no_server(client):
    tokens = await account(client)
    for r in (await client.get("/health"), await client.get("/nowhere"), await client.get("/auth/me"),
              await client.post("/auth/login", json={"email": tokens["email"], "password": "wrong password"})):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "server" not in r.headers


async def test_token_responses_are_never_stored(client):
    tokens = await account(client)
    login = await client.post("/auth/login", json={"email": tokens["email"], "password": "correct horse battery"})
    refreshed = await client.post("/auth/refresh", json={"refresh_token": login.json()["refresh_token"]})
    assert login.status_code == refreshed.status_code == 200
    assert login.headers["cache-control"] == refreshed.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("trusted, limited", [("", True), ("127.0.0.1", False)])
async def test_x_forwarded_for_is_believed_only_from_configured_proxies(services, trusted, limited):
    app = create_app(services.settings(login_rate_limit=2, forwarded_allow_ips=trusted))
    async with serve(app) as c:
        codes = [(await c.post("/auth/login", json={"email": "nobody@example.com", "password": "x"},
                               headers={"X-Forwarded-For": f"203.0.113.{i}"})).status_code for i in range(5)]
    assert (429 in codes) is limited, codes  # five tries: a new minute's window may start between two
