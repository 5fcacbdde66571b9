"""Accounts: register, change a role, deactivate, reactivate; the write-side `user_emails`,
`credentials` and `active_admins` tables."""

import uuid
from datetime import UTC, datetime

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events import store, users
from events.base import Meta, advance, decode, fold, replay
from events.errors import Conflict, NotFound
from events.passwords import Passwords, check_password
from events.users import Role, User


# Changes to who may call: a notification in the changing transaction, delivered at its commit to the
# API processes that remember callers (api/sessions.py). Payload lines: "user <id>" or "family <id>".
SESSIONS_CHANNEL = "sessions"


async def notify_sessions(conn: AsyncConnection, line: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (SESSIONS_CHANNEL, line))


async def load_user(conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    return replay(users.evolve, await store.read_stream(conn, users.stream(user_id)))


async def session_user(conn: AsyncConnection, user_id: uuid.UUID, family: uuid.UUID) -> User | None:
    """The active user whose login `family` is not revoked, as their events say now; one round trip."""
    cur = await conn.execute(
        "SELECT type, data::text, version, recorded_at,"
        " (SELECT revoked_at IS NULL FROM token_families WHERE family = %s AND user_id = %s)"
        " FROM events WHERE stream_id = %s ORDER BY version",
        (family, user_id, users.stream(user_id)))
    rows = await cur.fetchall()
    if not rows or not rows[0][4]:
        return None
    user = fold(users.evolve, ((decode(t, d.encode()), v, at) for t, d, v, at, _ in rows))
    return user if user and user.active else None


async def register(pool: AsyncConnectionPool, passwords: Passwords, *, email: str, password: str, name: str,
                   role: Role, meta: Meta) -> User:
    email = users.canonical_email(email)
    check_password(password)
    user_id, now = uuid.uuid4(), datetime.now(UTC)
    events = users.register(user_id, email, name, role, now)  # refuses bad input before the slow hash
    hashed = await passwords.hash(password)  # before the transaction: it is slow and needs no lock
    user = advance(users.evolve, None, events, now)
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO user_emails (email, user_id) VALUES (%s, %s)", (email, user_id))
                await conn.execute("INSERT INTO credentials (user_id, password_hash) VALUES (%s, %s)",
                                   (user_id, hashed))
                await store.append(conn, users.stream(user_id), 0, events, meta)
                await _save_admin(conn, user)
        except psycopg.errors.UniqueViolation:
            raise Conflict("an account with this email already exists", field="email") from None
    return user


async def find(pool: AsyncConnectionPool, email: str) -> uuid.UUID:
    """The id of the account of `email` (in any spelling)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT user_id FROM user_emails WHERE email = %s", (users.canonical_email(email),))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("no account has this email")
    return row[0]


# Every change of a user takes this one lock first, then counts the active admins: two admins demoting
# (or deactivating) each other at once are decided one after the other, so they cannot leave none.
_ADMINS_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('active_admins', 0))"


async def _change(pool: AsyncConnectionPool, user_id: uuid.UUID, decide, meta: Meta) -> User:
    """`decide(user, other_admins)`: the user's new events, knowing how many other active admins there are."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_ADMINS_LOCK)
        cur = await conn.execute("SELECT count(*) FROM active_admins WHERE user_id <> %s", (user_id,))
        other_admins = (await cur.fetchone())[0]
        user = await load_user(conn, user_id)
        events = decide(user, other_admins)
        await store.append(conn, users.stream(user_id), user.version, events, meta)
        after = advance(users.evolve, user, events, datetime.now(UTC))
        await _save_admin(conn, after)
        if any(isinstance(e, users.UserDeactivated) for e in events):
            await conn.execute("UPDATE token_families SET revoked_at = now()"
                               " WHERE user_id = %s AND revoked_at IS NULL", (user_id,))
        if events:
            await notify_sessions(conn, f"user {user_id}")
    return after


async def _save_admin(conn: AsyncConnection, user: User) -> None:
    if users.is_active_admin(user):
        await conn.execute("INSERT INTO active_admins (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (user.id,))
    else:
        await conn.execute("DELETE FROM active_admins WHERE user_id = %s", (user.id,))


async def change_role(pool: AsyncConnectionPool, user_id: uuid.UUID, role: Role, meta: Meta) -> User:
    return await _change(pool, user_id, lambda u, others: users.change_role(u, role, others), meta)


async def deactivate(pool: AsyncConnectionPool, user_id: uuid.UUID, meta: Meta) -> User:
    return await _change(pool, user_id, users.deactivate, meta)


async def reactivate(pool: AsyncConnectionPool, user_id: uuid.UUID, meta: Meta) -> User:
    return await _change(pool, user_id, lambda u, _: users.reactivate(u), meta)


async def promote(pool: AsyncConnectionPool, user_id: uuid.UUID, meta: Meta) -> User:
    return await _change(pool, user_id, lambda u, _: users.promote(u), meta)
