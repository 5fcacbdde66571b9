"""Logins: a login is a token family; its refresh tokens rotate, and a spent one presented again
revokes the whole family (it was stolen or replayed). The API turns a Session into signed tokens."""

import uuid
from datetime import datetime

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events.commands.accounts import load_user, notify_sessions
from events.errors import Unauthorized
from events.passwords import Passwords
from events.users import User, canonical_email

BAD_LOGIN = "invalid email or password"


class Session(msgspec.Struct, frozen=True):
    """A login's newest refresh token: `jti`, valid until `expires_at`."""

    user: User
    family: uuid.UUID
    jti: uuid.UUID
    expires_at: datetime


async def _issue(conn: AsyncConnection, user: User, family: uuid.UUID, expires_at: datetime) -> Session:
    jti = uuid.uuid4()
    await conn.execute("INSERT INTO refresh_tokens (jti, family, expires_at) VALUES (%s, %s, %s)",
                       (jti, family, expires_at))
    return Session(user, family, jti, expires_at)


async def login(pool: AsyncConnectionPool, passwords: Passwords, email: str, password: str,
                expires_at: datetime) -> Session:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.user_id, c.password_hash FROM user_emails e JOIN credentials c USING (user_id)"
            " WHERE e.email = %s", (canonical_email(email),))
        row = await cur.fetchone()
        if row is None:
            await passwords.dummy_verify()
            raise Unauthorized(BAD_LOGIN)
        user_id, hashed = row
        ok, new_hash = await passwords.verify(password, hashed)
        if not ok:
            raise Unauthorized(BAD_LOGIN)
        if new_hash:
            await conn.execute("UPDATE credentials SET password_hash = %s, updated_at = now() WHERE user_id = %s",
                               (new_hash, user_id))
        user = await load_user(conn, user_id)
        if user is None or not user.active:
            raise Unauthorized(BAD_LOGIN)
        async with conn.transaction():
            family = uuid.uuid4()
            await conn.execute("INSERT INTO token_families (family, user_id) VALUES (%s, %s)", (family, user_id))
            return await _issue(conn, user, family, expires_at)


async def rotate(pool: AsyncConnectionPool, jti: uuid.UUID, family: uuid.UUID, user_id: uuid.UUID,
                 expires_at: datetime) -> Session:
    """Spend refresh token `jti` and issue the family's next one."""
    reused = False
    async with pool.connection() as conn:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT r.spent_at IS NOT NULL, f.revoked_at IS NOT NULL, f.user_id FROM refresh_tokens r"
                " JOIN token_families f USING (family) WHERE r.jti = %s FOR UPDATE OF r, f", (jti,))
            row = await cur.fetchone()
            if row is None or row[1] or row[2] != user_id:
                raise Unauthorized("the refresh token is not valid")
            if row[0]:
                reused = True
                await conn.execute("UPDATE token_families SET revoked_at = now() WHERE family = %s", (family,))
                await notify_sessions(conn, f"family {family}")
            else:
                await conn.execute("UPDATE refresh_tokens SET spent_at = now() WHERE jti = %s", (jti,))
                user = await load_user(conn, user_id)
                if user is None or not user.active:
                    raise Unauthorized("the refresh token is not valid")
                session = await _issue(conn, user, family, expires_at)
    if reused:  # raised after the commit, so the revocation sticks
        raise Unauthorized("the refresh token was already used; every session of that login is now revoked")
    return session


async def revoke(pool: AsyncConnectionPool, family: uuid.UUID) -> None:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("UPDATE token_families SET revoked_at = now() WHERE family = %s AND revoked_at IS NULL",
                           (family,))
        await notify_sessions(conn, f"family {family}")
