"""Account use cases: load, decide, append; plus the write-side credential and token tables."""

import uuid
from datetime import UTC, datetime

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.security import ACCESS, REFRESH, Passwords, TokenPair, Tokens
from events import store, users
from events.base import Meta, decode
from events.errors import Conflict, Unauthorized
from events.users import Role, User

BAD_LOGIN = "invalid email or password"


def normalise_email(email: str) -> str:
    return email.strip().lower()


class Caller(msgspec.Struct, frozen=True):
    """The authenticated user of a request, as its events say now (not as the token said)."""

    user: User
    family: uuid.UUID

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def role(self) -> str:
        return self.user.role


async def load_user(conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    events = await store.read_stream(conn, users.stream(user_id))
    return users.fold([(e.event(), e.version) for e in events])


async def load_caller(conn: AsyncConnection, user_id: uuid.UUID, family: uuid.UUID) -> Caller | None:
    """One round trip: the user's events and whether the token's login was revoked."""
    cur = await conn.execute(
        "SELECT type, data::text, version,"
        " (SELECT revoked_at IS NULL FROM token_families WHERE family = %s AND user_id = %s)"
        " FROM events WHERE stream_id = %s ORDER BY version",
        (family, user_id, users.stream(user_id)),
    )
    rows = await cur.fetchall()
    if not rows or not rows[0][3]:
        return None
    user = users.fold([(decode(t, d.encode()), v) for t, d, v, _ in rows])
    return Caller(user, family) if user and user.active else None


async def register(pool: AsyncConnectionPool, passwords: Passwords, *, email: str, password: str, name: str,
                   role: Role, meta: Meta) -> User:
    email = normalise_email(email)
    hashed = await passwords.hash(password)  # before the transaction: it is slow and needs no lock
    user_id = uuid.uuid4()
    events = users.register(user_id, email, name.strip(), role, datetime.now(UTC))
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO user_emails (email, user_id) VALUES (%s, %s)", (email, user_id))
                await conn.execute("INSERT INTO credentials (user_id, password_hash) VALUES (%s, %s)",
                                   (user_id, hashed))
                await store.append(conn, users.stream(user_id), 0, events, meta)
        except psycopg.errors.UniqueViolation:
            raise Conflict("an account with this email already exists", field="email") from None
    return users.fold([(e, i + 1) for i, e in enumerate(events)])


async def login(pool: AsyncConnectionPool, passwords: Passwords, tokens: Tokens, email: str, password: str) -> TokenPair:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.user_id, c.password_hash FROM user_emails e JOIN credentials c USING (user_id)"
            " WHERE e.email = %s", (normalise_email(email),))
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
            return await _issue_pair(conn, tokens, user, family)


async def _issue_pair(conn: AsyncConnection, tokens: Tokens, user: User, family: uuid.UUID) -> TokenPair:
    jti = uuid.uuid4()
    access, _ = tokens.issue(ACCESS, user.id, user.role, family)
    refresh, expires = tokens.issue(REFRESH, user.id, user.role, family, jti)
    await conn.execute("INSERT INTO refresh_tokens (jti, family, expires_at) VALUES (%s, %s, %s)",
                       (jti, family, expires))
    return TokenPair(access, refresh, int(tokens.access_ttl.total_seconds()))


async def refresh(pool: AsyncConnectionPool, tokens: Tokens, claims: dict) -> TokenPair:
    """Rotate: spend the presented refresh token and issue a new pair in the same family. A token
    presented a second time means it was stolen or replayed: the whole family is revoked."""
    reused = False
    async with pool.connection() as conn:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT r.spent_at IS NOT NULL, f.revoked_at IS NOT NULL, f.user_id FROM refresh_tokens r"
                " JOIN token_families f USING (family) WHERE r.jti = %s FOR UPDATE OF r, f", (claims["jti"],))
            row = await cur.fetchone()
            if row is None or row[1] or row[2] != claims["sub"]:
                raise Unauthorized("the refresh token is not valid")
            if row[0]:
                reused = True
                await conn.execute("UPDATE token_families SET revoked_at = now() WHERE family = %s",
                                   (claims["fam"],))
            else:
                await conn.execute("UPDATE refresh_tokens SET spent_at = now() WHERE jti = %s", (claims["jti"],))
                user = await load_user(conn, claims["sub"])
                if user is None or not user.active:
                    raise Unauthorized("the refresh token is not valid")
                pair = await _issue_pair(conn, tokens, user, claims["fam"])
    if reused:  # raised after the commit, so the revocation sticks
        raise Unauthorized("the refresh token was already used; every session of that login is now revoked")
    return pair


async def revoke_family(pool: AsyncConnectionPool, caller: Caller) -> None:
    async with pool.connection() as conn:
        await conn.execute("UPDATE token_families SET revoked_at = now() WHERE family = %s AND revoked_at IS NULL",
                           (caller.family,))


async def _change(pool: AsyncConnectionPool, user_id: uuid.UUID, decide, meta: Meta) -> User:
    async with pool.connection() as conn:
        async with conn.transaction():
            user = await load_user(conn, user_id)
            events = decide(user)
            await store.append(conn, users.stream(user_id), user.version, events, meta)
            if any(isinstance(e, users.UserDeactivated) for e in events):
                await conn.execute("UPDATE token_families SET revoked_at = now()"
                                   " WHERE user_id = %s AND revoked_at IS NULL", (user_id,))
    state = user
    for i, e in enumerate(events, start=user.version + 1):
        state = users.evolve(state, e, i)
    return state


async def change_role(pool: AsyncConnectionPool, user_id: uuid.UUID, role: Role, meta: Meta) -> User:
    return await _change(pool, user_id, lambda u: users.change_role(u, role), meta)


async def deactivate(pool: AsyncConnectionPool, user_id: uuid.UUID, meta: Meta) -> User:
    return await _change(pool, user_id, users.deactivate, meta)
