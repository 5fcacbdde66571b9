import asyncio
import base64
import json
import logging
import subprocess
import sys
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from tests.support import serve

from api.app import create_app
from events.settings import DEV_SECRET

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
async def client(services):
    app = create_app(services.settings(login_rate_limit=10_000, register_rate_limit=10_000))
    async with serve(app) as c:
        yield c


def email() -> str:
    return f"User.{uuid.uuid4().hex[:12]}@Example.COM "


async def register(client, role: str | None = None, address: str | None = None, password: str = PASSWORD) -> dict:
    body = {"email": address or email(), "password": password, "name": "Ada"}
    if role:
        body["role"] = role
    r = await client.post("/auth/register", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def login(client, address: str, password: str = PASSWORD) -> dict:
    r = await client.post("/auth/login", json={"email": address, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def bearer(tokens: dict | str) -> dict:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_register_answers_the_account_without_any_password_or_hash(client):
    address = email()
    r = await client.post("/auth/register", json={"email": address, "password": PASSWORD, "name": " Ada "})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"id", "email", "name", "role", "created_at"}
    assert body["email"] == address.strip().lower() and body["role"] == "buyer" and body["name"] == "Ada"
    assert PASSWORD not in r.text and "argon2" not in r.text


@pytest.mark.parametrize("change, field", [
    ({"role": "admin"}, "role"),
    ({"role": "superuser"}, "role"),
    ({"password": "short"}, "password"),
    ({"password": "x" * 129}, "password"),
    ({"email": "not-an-email"}, "email"),
    ({"name": ""}, "name"),
])
async def test_register_refuses_bad_input_with_422_naming_the_field(client, change, field):
    body = {"email": email(), "password": PASSWORD, "name": "Ada", **change}
    r = await client.post("/auth/register", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert (await client.post("/auth/login", json={"email": body["email"], "password": body["password"]})).status_code in (401, 422)


@pytest.mark.parametrize("spelling", [
    "jose{u}@example.com",
    "JOSE{u}@EXAMPLE.COM",
    "ｊｏｓｅ{u}＠ｅｘａｍｐｌｅ．ｃｏｍ",  # full-width
    "jo\u200bse{u}@exam\u00adple.com\ufeff",  # a zero-width space, a soft hyphen, a byte-order mark
    " jose{u}@example.com\u2060 ",
])
async def test_every_spelling_of_an_email_is_one_account(client, spelling):
    local = uuid.uuid4().hex[:8]
    first = await register(client, address=f"jose{local}@example.com")
    again = await client.post("/auth/register", json={"email": spelling.format(u=local), "password": PASSWORD,
                                                      "name": "Ada"})
    assert again.status_code == 409 and again.json()["field"] == "email"
    assert (await login(client, spelling.format(u=local)))["access_token"]
    assert first["email"] == f"jose{local}@example.com"


async def test_nfc_and_nfd_spellings_of_an_email_are_one_account(client):
    local = uuid.uuid4().hex[:8]
    nfc, nfd = f"jos\u00e9{local}@example.com", f"jose\u0301{local}@example.com"
    assert (await register(client, address=nfd))["email"] == nfc
    again = await client.post("/auth/register", json={"email": nfc, "password": PASSWORD, "name": "Ada"})
    assert again.status_code == 409
    await login(client, nfc)


@pytest.mark.parametrize("name", ["   ", "\t\n", "\u200b", " \u00a0\u3000 "])
async def test_a_name_of_only_spaces_is_refused(client, name):
    r = await client.post("/auth/register", json={"email": email(), "password": PASSWORD, "name": name})
    assert r.status_code == 422 and r.json()["field"] == "name", r.text


async def test_twenty_concurrent_registrations_of_one_email_give_one_account(client):
    address = email()
    results = await asyncio.gather(*(
        client.post("/auth/register", json={"email": address.upper() if i % 2 else address, "password": PASSWORD,
                                            "name": "Ada"}) for i in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 19
    conflict = next(r for r in results if r.status_code == 409)
    assert conflict.headers["content-type"].startswith("application/problem+json")
    assert conflict.json()["field"] == "email"


async def test_login_with_json_or_the_oauth2_form_and_then_me_at_once(client):
    address = email()
    user = await register(client, role="seller", address=address)
    tokens = await login(client, address.upper())
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 15 * 60
    me = await client.get("/auth/me", headers=bearer(tokens))  # no waiting for the projection
    assert me.status_code == 200 and me.json()["id"] == user["id"] and me.json()["role"] == "seller"
    form = await client.post("/auth/login", data={"username": address, "password": PASSWORD})
    assert form.status_code == 200 and form.json()["access_token"]


async def test_unknown_email_and_wrong_password_get_the_same_401(client):
    address = email()
    await register(client, address=address)
    wrong = await client.post("/auth/login", json={"email": address, "password": "wrong password"})
    unknown = await client.post("/auth/login", json={"email": email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def forge(claims: dict, key: str = DEV_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_forged_expired_and_mistyped_tokens_are_refused(client):
    address = email()
    await register(client, address=address)
    tokens = await login(client, address)
    good = claims_of(tokens["access_token"])
    now = datetime.now(UTC)
    header, payload, _ = tokens["access_token"].split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).decode().rstrip("=")
    tampered_payload = base64.urlsafe_b64encode(
        json.dumps({**good, "role": "admin"}).encode()).decode().rstrip("=")
    cases = {
        "alg none": f"{none_header}.{payload}.",
        "wrong key": forge(good, key="another-secret-that-is-long-enough-to-pass!"),
        "expired": forge({**good, "iat": now - timedelta(hours=1), "exp": now - timedelta(minutes=1)}),
        "missing jti": forge({k: v for k, v in good.items() if k != "jti"}),
        "missing typ": forge({k: v for k, v in good.items() if k != "typ"}),
        "wrong audience": forge({**good, "aud": "someone-else"}),
        "tampered role": f"{header}.{tampered_payload}.{tokens['access_token'].split('.')[2]}",
        "refresh as access": tokens["refresh_token"],
        "garbage": "not.a.token",
    }
    for name, token in cases.items():
        r = await client.get("/auth/me", headers=bearer(token))
        assert r.status_code == 401, name
        assert r.headers["content-type"].startswith("application/problem+json"), name
    assert (await client.get("/auth/me")).status_code == 401
    # and the access token is no refresh token
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert r.status_code == 401
    assert (await client.get("/auth/me", headers=bearer(tokens))).status_code == 200


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(client):
    address = email()
    await register(client, address=address)
    first = await login(client, address)
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/auth/me", headers=bearer(second))).status_code == 200
    other_login = await login(client, address)

    reuse = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    # every token descended from that login is dead now, access tokens included
    assert (await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(second))).status_code == 401
    # another login of the same user is another family and keeps working
    assert (await client.get("/auth/me", headers=bearer(other_login))).status_code == 200


async def test_logout_revokes_the_callers_refresh_family(client):
    address = email()
    await register(client, address=address)
    tokens = await login(client, address)
    assert (await client.post("/auth/logout", headers=bearer(tokens))).status_code == 204
    assert (await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(tokens))).status_code == 401


def create_admin(services, address: str) -> str:
    result = subprocess.run([sys.executable, "-m", "workers.cli", "users", "create-admin", "--email", address,
                             "--password-stdin"], input=PASSWORD + "\n", env=services.env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
async def admin(services, client):
    address = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    assert "created admin" in create_admin(services, address)
    return await login(client, address)


async def test_only_admins_list_users_page_by_page_with_a_signed_cursor(client, admin, services, pool):
    from projections.users import UsersProjector
    from tests.test_projection import pipeline_for

    buyer = await login(client, (await register(client))["email"])
    assert (await client.get("/users", headers=bearer(buyer))).status_code == 403
    async with pipeline_for(services, UsersProjector()):
        async def projected():
            async with pool.connection() as conn:
                users = (await (await conn.execute("SELECT count(*) FROM users")).fetchone())[0]
                registered = (await (await conn.execute(
                    "SELECT count(*) FROM events WHERE type = 'user.registered'")).fetchone())[0]
            return users == registered
        await asyncio.wait_for(_until(projected), 30)
    seen, cursor = [], None
    while True:
        r = await client.get("/users", params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                             headers=bearer(admin))
        assert r.status_code == 200
        seen += [u["id"] for u in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
        assert len(r.json()["items"]) == 3
    async with pool.connection() as conn:
        total = (await (await conn.execute("SELECT count(*) FROM users")).fetchone())[0]
    assert len(seen) == len(set(seen)) == total
    bad = await client.get("/users", params={"cursor": "eyJ0YW1wZXJlZCI6dHJ1ZX0"}, headers=bearer(admin))
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    assert (await client.get("/users", params={"limit": 1000}, headers=bearer(admin))).status_code == 422


async def test_admin_changes_roles_and_deactivation_cuts_off_live_tokens(client, admin):
    user = await register(client)
    tokens = await login(client, user["email"])
    r = await client.post(f"/users/{user['id']}/role", json={"role": "seller"}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["role"] == "seller"
    assert (await client.get("/auth/me", headers=bearer(tokens))).json()["role"] == "seller"
    assert (await client.post(f"/users/{user['id']}/role", json={"role": "admin"},
                              headers=bearer(tokens))).status_code == 403  # no self-promotion
    r = await client.post(f"/users/{user['id']}/deactivate", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await client.get("/auth/me", headers=bearer(tokens))).status_code == 401
    assert (await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    assert (await client.post("/auth/login", json={"email": user["email"], "password": PASSWORD})).status_code == 401
    again = await client.post(f"/users/{user['id']}/deactivate", headers=bearer(admin))
    assert again.status_code == 409
    assert (await client.post(f"/users/{uuid.uuid4()}/deactivate", headers=bearer(admin))).status_code == 404


async def test_no_password_or_hash_reaches_a_response_or_a_log_line(client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "a-very-distinctive-password"
    user = await register(client, password=secret)
    tokens = await login(client, user["email"], password=secret)
    responses = [await client.get("/auth/me", headers=bearer(tokens)),
                 await client.post("/auth/login", json={"email": user["email"], "password": secret + "x"})]
    text = caplog.text + "".join(r.text for r in responses) + json.dumps(tokens) + json.dumps(user)
    assert secret not in text and "$argon2" not in text


async def test_login_and_register_are_rate_limited_per_client_with_retry_after(services):
    app = create_app(services.settings(login_rate_limit=3))
    async with serve(app) as c:
        codes = []
        for _ in range(8):  # a minute boundary in between resets the window once at most
            r = await c.post("/auth/login", json={"email": email(), "password": PASSWORD})
            codes.append(r.status_code)
            if r.status_code == 429:
                break
    assert codes[-1] == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(r.headers["retry-after"]) <= 60


@pytest.fixture(scope="module")
async def limited(services):
    """An API behind a trusted local proxy (so each request may come from another address) that allows
    three failed logins per account."""
    app = create_app(services.settings(login_failure_limit=3, forwarded_allow_ips="127.0.0.1"))
    async with serve(app) as c:
        yield c


def from_address(i: int) -> dict:
    return {"X-Forwarded-For": f"198.51.100.{i}"}


async def test_failed_logins_are_limited_per_account_whatever_the_address(limited):
    victim, bystander = await register(limited), await register(limited)
    for i in range(3):
        r = await limited.post("/auth/login", json={"email": victim["email"], "password": "guess"},
                               headers=from_address(i))
        assert r.status_code == 401
    r = await limited.post("/auth/login", json={"email": victim["email"], "password": PASSWORD},
                           headers=from_address(9))
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(r.headers["retry-after"]) <= 15 * 60
    await login(limited, bystander["email"])  # another account is not held back


async def test_an_unknown_email_is_limited_like_an_account(limited):
    nobody = email()
    codes = [(await limited.post("/auth/login", json={"email": nobody, "password": "guess"},
                                 headers=from_address(i))).status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]


async def test_successful_logins_are_not_counted_as_failures(limited):
    user = await register(limited)
    for i in range(5):
        await login(limited, user["email"])


async def test_ended_rate_limit_windows_are_deleted(limited, pool):
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO rate_limits (key, window_start, hits, expires_at)"
                           " SELECT 'login:203.0.113.' || i, 1, 1, 1 FROM generate_series(1, 50) AS i")
    await limited.post("/auth/login", json={"email": email(), "password": "guess"})
    async with pool.connection() as conn:
        ended = (await (await conn.execute("SELECT count(*) FROM rate_limits WHERE expires_at <= extract(epoch"
                                           " FROM now())")).fetchone())[0]
    assert ended == 0


async def test_oversized_bodies_are_refused_with_413(services):
    app = create_app(services.settings(max_body_bytes=2048))
    async with serve(app) as c:
        r = await c.post("/auth/register", content=b'{"email": "' + b"a" * 5000 + b'"}',
                         headers={"content-type": "application/json"})
    assert r.status_code == 413


async def test_a_short_jwt_secret_is_refused_outside_dev_mode(services):
    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        create_app(services.settings(dev_mode=False, jwt_secret="short"))
    create_app(services.settings(dev_mode=False, jwt_secret="x" * 32))


async def test_cors_allows_the_configured_origins_only(services):
    app = create_app(services.settings(cors_origins=("https://shop.example",)))
    async with serve(app) as c:
        ok = await c.options("/auth/login", headers={"Origin": "https://shop.example",
                                                     "Access-Control-Request-Method": "POST"})
        other = await c.options("/auth/login", headers={"Origin": "https://evil.example",
                                                        "Access-Control-Request-Method": "POST"})
    assert ok.headers.get("access-control-allow-origin") == "https://shop.example"
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


async def _until(probe):
    from tests.support import eventually
    return await eventually(probe, what="the users projection")


async def test_the_users_read_table_equals_what_the_events_say(client, admin, services, pool):
    from events.commands.accounts import load_user
    from projections.users import UsersProjector
    from tests.test_projection import pipeline_for

    changed = await register(client)
    await client.post(f"/users/{changed['id']}/role", json={"role": "seller"}, headers=bearer(admin))
    await client.post(f"/users/{changed['id']}/deactivate", headers=bearer(admin))

    async def caught_up():
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM (SELECT stream_id, max(version) v FROM events"
                " WHERE stream_id LIKE 'user-%%' GROUP BY stream_id) e"
                " LEFT JOIN users u ON u.id::text = substr(e.stream_id, 6) WHERE u.version IS DISTINCT FROM e.v")
            return (await cur.fetchone())[0] == 0

    async with pipeline_for(services, UsersProjector()):
        await _until(caught_up)
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT id, email, name, role, active, created_at, version FROM users")).fetchall()
        for row in rows:
            user = await load_user(conn, row[0])
            assert row == (user.id, user.email, user.name, user.role, user.active, user.created_at, user.version)
    assert any(r[0] == uuid.UUID(changed["id"]) and r[3] == "seller" and r[4] is False for r in rows)


# The verified-token cache (api/security.py Tokens.decode)

@pytest.fixture(scope="module")
async def served(services):
    """An API of its own whose Tokens a test may look into and whose clock it may move."""
    app = create_app(services.settings(login_rate_limit=10_000, register_rate_limit=10_000))
    async with serve(app) as c:
        yield app, c


def counting_verifications(monkeypatch) -> list[str]:
    verified, real = [], jwt.decode

    def decode(token, *args, **kwargs):
        verified.append(token)
        return real(token, *args, **kwargs)
    monkeypatch.setattr(jwt, "decode", decode)
    return verified


async def test_a_cached_access_token_is_verified_once_and_tampering_still_fails(served, monkeypatch):
    app, c = served
    address = email()
    await register(c, address=address)
    tokens = await login(c, address)
    verified = counting_verifications(monkeypatch)
    for _ in range(3):
        assert (await c.get("/auth/me", headers=bearer(tokens))).status_code == 200
    assert verified.count(tokens["access_token"]) == 1
    header, payload, signature = tokens["access_token"].split(".")
    tampered_payload = base64.urlsafe_b64encode(
        json.dumps({**claims_of(tokens["access_token"]), "role": "admin"}).encode()).decode().rstrip("=")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    for bad in (f"{header}.{tampered_payload}.{signature}", f"{header}.{payload}.{flipped}",
                tokens["access_token"] + "x", tokens["refresh_token"]):
        for _ in range(2):  # a failure is never cached: the second try is refused by verification again
            assert (await c.get("/auth/me", headers=bearer(bad))).status_code == 401
        assert bad not in app.state.tokens._verified
    # a refresh token verified as a refresh token is not an access token either
    r = await c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    assert (await c.get("/auth/me", headers=bearer(r.json()["refresh_token"]))).status_code == 401
    assert tokens["refresh_token"] not in app.state.tokens._verified
    assert (await c.get("/auth/me", headers=bearer(tokens))).status_code == 200


async def test_a_cached_access_token_is_refused_once_it_expires(served, monkeypatch):
    app, c = served
    address = email()
    await register(c, address=address)
    tokens = await login(c, address)
    assert (await c.get("/auth/me", headers=bearer(tokens))).status_code == 200
    assert tokens["access_token"] in app.state.tokens._verified
    expires = claims_of(tokens["access_token"])["exp"]
    monkeypatch.setattr(app.state.tokens, "clock", lambda: expires)
    r = await c.get("/auth/me", headers=bearer(tokens))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert tokens["access_token"] not in app.state.tokens._verified


async def test_a_revoked_login_is_refused_though_its_access_token_is_cached(served):
    app, c = served
    address = email()
    await register(c, address=address)
    tokens = await login(c, address)
    assert (await c.get("/auth/me", headers=bearer(tokens))).status_code == 200
    assert (await c.post("/auth/logout", headers=bearer(tokens))).status_code == 204
    assert tokens["access_token"] in app.state.tokens._verified
    assert (await c.get("/auth/me", headers=bearer(tokens))).status_code == 401


def test_the_cache_is_bounded_and_answers_copies(services, monkeypatch):
    from api import security

    tokens = security.Tokens(services.settings())
    monkeypatch.setattr(security, "VERIFIED_CACHE_SIZE", 2)
    issued = [tokens.issue(security.ACCESS, uuid.uuid4(), "buyer", uuid.uuid4())[0] for _ in range(3)]
    for token in issued:
        tokens.decode(token, security.ACCESS)
    assert list(tokens._verified) == issued[1:]
    claims = tokens.decode(issued[2], security.ACCESS)
    claims["role"] = "admin"
    assert tokens.decode(issued[2], security.ACCESS)["role"] == "buyer"
    with pytest.raises(security.InvalidToken):
        tokens.decode(issued[2], security.REFRESH)


def test_only_the_canonical_spelling_of_a_token_is_cached(services):
    """base64 decoders may accept padding or stray characters; such spellings still verify (or not) in
    full every time, and never take a place in the cache, so one token cannot flood it."""
    from api import security

    tokens = security.Tokens(services.settings())
    token = tokens.issue(security.ACCESS, uuid.uuid4(), "buyer", uuid.uuid4())[0]
    for variant in (token + "=", token + "==", token.replace(".", ".=", 1)):
        with suppress(security.InvalidToken):
            tokens.decode(variant, security.ACCESS)
        assert variant not in tokens._verified
    tokens.decode(token, security.ACCESS)
    assert list(tokens._verified) == [token]
