"""Accounts: register, change a role, deactivate; the write-side `user_emails` and `credentials` tables."""

import uuid
from datetime import UTC, datetime

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events import store, users
from events.base import Meta, advance, decode, fold, replay
from events.errors import Conflict
from events.passwords import Passwords
from events.users import Role, User


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
    user_id, now = uuid.uuid4(), datetime.now(UTC)
    events = users.register(user_id, email, name, role, now)  # refuses bad input before the slow hash
    hashed = await passwords.hash(password)  # before the transaction: it is slow and needs no lock
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO user_emails (email, user_id) VALUES (%s, %s)", (email, user_id))
                await conn.execute("INSERT INTO credentials (user_id, password_hash) VALUES (%s, %s)",
                                   (user_id, hashed))
                await store.append(conn, users.stream(user_id), 0, events, meta)
        except psycopg.errors.UniqueViolation:
            raise Conflict("an account with this email already exists", field="email") from None
    return advance(users.evolve, None, events, now)


async def _change(pool: AsyncConnectionPool, user_id: uuid.UUID, decide, meta: Meta) -> User:
    async with pool.connection() as conn, conn.transaction():
        user = await load_user(conn, user_id)
        events = decide(user)
        await store.append(conn, users.stream(user_id), user.version, events, meta)
        if any(isinstance(e, users.UserDeactivated) for e in events):
            await conn.execute("UPDATE token_families SET revoked_at = now()"
                               " WHERE user_id = %s AND revoked_at IS NULL", (user_id,))
    return advance(users.evolve, user, events, datetime.now(UTC))


async def change_role(pool: AsyncConnectionPool, user_id: uuid.UUID, role: Role, meta: Meta) -> User:
    return await _change(pool, user_id, lambda u: users.change_role(u, role), meta)


async def deactivate(pool: AsyncConnectionPool, user_id: uuid.UUID, meta: Meta) -> User:
    return await _change(pool, user_id, users.deactivate, meta)
