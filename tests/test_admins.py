"""There is always an active admin: the last one cannot be demoted or deactivated, not even by two admins
removing each other at once; deactivated users come back; the command line makes and promotes admins.
Each test has a database of its own, where its admins are the only ones."""

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from api.app import create_app
from events.base import Meta
from events.commands import accounts
from events.db import make_pool
from tests.support import PASSWORD, account, admin_account, bearer, serve


@pytest.fixture
async def own_pool(own_database):
    pool = make_pool(own_database, min_size=1, max_size=4)
    await pool.open()
    yield pool
    await pool.close()


@pytest.fixture
async def client(services, own_database):
    async with serve(create_app(services.settings(database_url=own_database, ryw_timeout=0))) as c:
        yield c


async def role_of(client, tokens) -> str:
    return (await client.get("/auth/me", headers=bearer(tokens))).json()["role"]


async def active_admins(pool) -> int:
    async with pool.connection() as conn:
        return (await (await conn.execute("SELECT count(*) FROM active_admins")).fetchone())[0]


async def test_the_last_active_admin_cannot_demote_or_deactivate_itself(client, own_pool, services):
    admin = await admin_account(client, own_pool, services.settings())
    for r in (await client.post(f"/users/{admin['id']}/role", json={"role": "buyer"}, headers=bearer(admin)),
              await client.post(f"/users/{admin['id']}/deactivate", headers=bearer(admin))):
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["reason"] == "last_admin"
    assert await role_of(client, admin) == "admin"
    other = await admin_account(client, own_pool, services.settings())
    r = await client.post(f"/users/{admin['id']}/role", json={"role": "seller"}, headers=bearer(admin))
    assert r.status_code == 200  # with another admin it may step down
    r = await client.post(f"/users/{other['id']}/deactivate", headers=bearer(other))
    assert r.status_code == 409 and r.json()["reason"] == "last_admin"


REMOVALS = {"demote": lambda user_id: (f"/users/{user_id}/role", {"role": "buyer"}),
            "deactivate": lambda user_id: (f"/users/{user_id}/deactivate", None)}


@pytest.mark.parametrize("first, second", [("demote", "demote"), ("deactivate", "deactivate"),
                                           ("deactivate", "demote")])
async def test_two_admins_removing_each_other_at_once_leave_one(client, own_pool, services, first, second):
    admins = [await admin_account(client, own_pool, services.settings()) for _ in range(2)]
    for _ in range(4):
        requests = []
        for (by, target), removal in zip(((0, 1), (1, 0)), (first, second), strict=True):
            path, body = REMOVALS[removal](admins[target]["id"])
            requests.append(client.post(path, json=body, headers=bearer(admins[by])))
        codes = sorted(r.status_code for r in await asyncio.gather(*requests))
        # The loser's request is refused by the guard (409), or, when the winner committed before its
        # caller was authenticated, as a caller who is no longer an active admin (401, 403).
        assert codes[0] == 200 and codes[1] in (401, 403, 409), codes
        assert await active_admins(own_pool) == 1
        for i, admin in enumerate(admins):  # put the one removed back, as `orders users promote` does
            user = await accounts.promote(own_pool, uuid.UUID(admin["id"]), Meta(actor="test"))
            if user.version > 1:
                admins[i] = {**(await client.post("/auth/login", json={"email": admin["email"],
                                                                       "password": PASSWORD})).json(), **admin}
        assert await active_admins(own_pool) == 2


async def test_an_admin_reactivates_a_deactivated_user_who_then_logs_in_again(client, own_pool, services):
    admin = await admin_account(client, own_pool, services.settings())
    buyer = await account(client)
    assert (await client.post(f"/users/{buyer['id']}/deactivate", headers=bearer(admin))).status_code == 200
    credentials = {"email": buyer["email"], "password": PASSWORD}
    assert (await client.post("/auth/login", json=credentials)).status_code == 401
    r = await client.post(f"/users/{buyer['id']}/reactivate", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["active"] is True
    assert (await client.post("/auth/login", json=credentials)).status_code == 200
    again = await client.post(f"/users/{buyer['id']}/reactivate", headers=bearer(admin))
    assert again.status_code == 409 and again.json()["current_status"] == "active"
    assert (await client.post(f"/users/{uuid.uuid4()}/reactivate", headers=bearer(admin))).status_code == 404
    assert (await client.post(f"/users/{buyer['id']}/reactivate", headers=bearer(buyer))).status_code == 401


async def test_the_active_admins_guard_equals_what_the_events_say(client, own_pool, services):
    """The migration that filled the guard from the events, run again now, finds what the commands kept."""
    first, second = [await admin_account(client, own_pool, services.settings()) for _ in range(2)]
    buyer = await account(client)
    await client.post(f"/users/{first['id']}/deactivate", headers=bearer(second))
    await client.post(f"/users/{buyer['id']}/role", json={"role": "admin"}, headers=bearer(second))
    await client.post(f"/users/{first['id']}/reactivate", headers=bearer(second))
    await client.post(f"/users/{second['id']}/role", json={"role": "seller"}, headers=bearer(second))
    migration = (Path(__file__).parent.parent / "sql" / "010_active_admins.sql").read_text()
    from_events = migration[migration.index("SELECT"):].rstrip().rstrip(";")
    async with own_pool.connection() as conn:
        derived = {r[0] for r in await (await conn.execute(from_events)).fetchall()}
        kept = {r[0] for r in await (await conn.execute("SELECT user_id FROM active_admins")).fetchall()}
    assert derived == kept == {uuid.UUID(first["id"]), uuid.UUID(buyer["id"])}


def cli(services, database_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", "users", *args], input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          env=services.env(DATABASE_URL=database_url), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, stdin, says", [
    (["--email", "notanemail", "--password-stdin"], PASSWORD + "\n", "email: must be an email address"),
    (["--email", "a@example.com"], None, "--password-stdin"),  # no terminal to ask on
    (["--email", "a@example.com", "--password-stdin"], "short\n", "password: must be 8 to 128 characters"),
    (["--email", "a@example.com", "--name", "  ", "--password-stdin"], PASSWORD + "\n", "name: must not be empty"),
])
def test_create_admin_refuses_what_the_api_refuses_in_one_line_with_exit_2(services, own_database, args, stdin,
                                                                           says):
    result = cli(services, own_database, "create-admin", *args, stdin=stdin)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and says in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_create_admin_and_promote_keep_one_canonical_account(client, services, own_database, own_pool):
    made = cli(services, own_database, "create-admin", "--email", " Root@ＥＸＡＭＰＬＥ.com", "--password-stdin",
               stdin=PASSWORD + "\n")
    assert made.returncode == 0 and "created admin root@example.com" in made.stdout, made
    twice = cli(services, own_database, "create-admin", "--email", "ROOT@example.com", "--password-stdin",
                stdin=PASSWORD + "\n")
    assert twice.returncode == 1 and twice.stderr.count("\n") == 1 and "already exists" in twice.stderr

    root = (await client.post("/auth/login", json={"email": "root@example.com", "password": PASSWORD})).json()
    buyer = await account(client)
    await client.post(f"/users/{buyer['id']}/deactivate", headers=bearer(root))
    promoted = cli(services, own_database, "promote", "--email", buyer["email"].upper())
    assert promoted.returncode == 0 and "is an active admin" in promoted.stdout, promoted
    tokens = (await client.post("/auth/login", json={"email": buyer["email"], "password": PASSWORD})).json()
    assert await role_of(client, tokens) == "admin"

    unknown = cli(services, own_database, "promote", "--email", "nobody@example.com")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "no account" in unknown.stderr
    bad = cli(services, own_database, "promote", "--email", "nobody")
    assert bad.returncode == 2 and bad.stderr.startswith("orders: email: ")
