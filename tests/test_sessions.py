"""Callers are remembered per API process, not queried per request, and still lose their access at
once: a logout, a reused refresh token, a role change and a deactivation each notify every process,
and a process whose listener reconnected forgets everything it remembered."""

import pytest

from api.app import create_app
from events.commands import accounts
from tests.support import account, admin_account, bearer, eventually, serve


@pytest.fixture(scope="module")
async def apps(services, projections_running):
    """Two API processes' apps on one database: what one changes, the other must learn."""
    settings = services.settings()
    first, second = create_app(settings), create_app(settings)
    async with serve(first) as a, serve(second) as b:
        await eventually(lambda: _listening(first, second), what="both listeners")
        yield (first, a), (second, b)


async def _listening(*apps):
    return all(app.state.projected.listening for app in apps)


@pytest.fixture
def queries(monkeypatch):
    """How many times the caller was read from the database."""
    calls = []
    real = accounts.session_user

    async def counting(conn, user_id, family):
        calls.append(user_id)
        return await real(conn, user_id, family)
    monkeypatch.setattr(accounts, "session_user", counting)
    return calls


async def _me(client, tokens) -> int:
    return (await client.get("/auth/me", headers=bearer(tokens))).status_code


async def test_a_callers_repeated_requests_read_it_once(apps, queries):
    (_, a), _ = apps
    buyer = await account(a, "buyer")
    assert [await _me(a, buyer) for _ in range(5)] == [200] * 5
    assert len(queries) == 1


async def test_a_logout_ends_the_login_in_every_process_at_once(apps):
    (_, a), (_, b) = apps
    buyer = await account(a, "buyer")
    assert await _me(a, buyer) == 200 and await _me(b, buyer) == 200  # both remember it now
    assert (await a.post("/auth/logout", headers=bearer(buyer))).status_code == 204
    assert await _me(a, buyer) == 401
    await eventually(lambda: _status(b, buyer, 401), timeout=5, what="the other process to forget the login")


async def _status(client, tokens, expected: int) -> bool:
    return await _me(client, tokens) == expected


async def test_a_reused_refresh_token_revokes_the_login_in_every_process(apps):
    (_, a), (_, b) = apps
    buyer = await account(a, "buyer")
    assert await _me(b, buyer) == 200
    fresh = await a.post("/auth/refresh", json={"refresh_token": buyer["refresh_token"]})
    assert fresh.status_code == 200
    assert (await a.post("/auth/refresh", json={"refresh_token": buyer["refresh_token"]})).status_code == 401
    await eventually(lambda: _status(b, buyer, 401), timeout=5, what="the revoked login refused")
    assert await _me(b, fresh.json()) == 401  # the whole family


async def test_a_role_change_and_a_deactivation_reach_every_process(apps, services, pool):
    (_, a), (_, b) = apps
    admin = await admin_account(a, pool, services.settings())
    user = await account(a, "buyer")
    assert (await b.get("/cart", headers=bearer(user))).status_code == 200  # a buyer's route, remembered
    r = await a.post(f"/users/{user['id']}/role", json={"role": "seller"}, headers=bearer(admin))
    assert r.status_code == 200

    async def seller_now():
        return (await b.get("/cart", headers=bearer(user))).status_code == 403
    await eventually(seller_now, timeout=5, what="the new role in the other process")
    assert (await a.post(f"/users/{user['id']}/deactivate", headers=bearer(admin))).status_code == 200
    assert await _me(a, user) == 401
    await eventually(lambda: _status(b, user, 401), timeout=5, what="the deactivation in the other process")


async def test_a_reconnected_listener_forgets_every_caller_it_remembered(apps, queries):
    (app, a), _ = apps
    buyer = await account(a, "buyer")
    assert await _me(a, buyer) == 200 and len(queries) == 1
    projected = app.state.projected
    epoch = projected.epoch
    await services_cut(app)
    await eventually(lambda: _async(projected.listening and projected.epoch > epoch), timeout=15,
                     what="the listener to reconnect")
    assert await _me(a, buyer) == 200
    assert len(queries) == 2  # read again: a notification may have been lost while it was down


async def test_while_the_listener_is_down_every_request_reads_its_caller(apps, queries):
    (app, a), _ = apps
    buyer = await account(a, "buyer")
    projected = app.state.projected
    projected.listening = False  # as between a lost connection and its replacement
    try:
        assert [await _me(a, buyer) for _ in range(3)] == [200] * 3
        assert len(queries) == 3
    finally:
        projected.listening = True


async def services_cut(app) -> None:
    """End the listeners' database sessions, as a failover or a network cut would."""
    async with app.state.pool.connection() as conn:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND application_name LIKE 'orders-listener-%%'")


async def _async(value):
    return value
