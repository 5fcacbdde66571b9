"""The `users` read table: each user as `events.users.evolve` folds their stream."""

import uuid

import msgspec
from psycopg import AsyncConnection

from events import rows
from events.users import User, evolve, stream

COLUMNS = rows.columns(User)
_SAVE = rows.upsert("users", list(COLUMNS), "id", rows.recordset("rows", COLUMNS))


def _user_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("user-"))


class UsersProjector:
    name = "users"
    tables = ("users",)
    evolve = staticmethod(evolve)
    bindings = ("user.#",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM users WHERE id = %s", (_user_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict[str, User]:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM users WHERE id = ANY(%s)",
                                 ([_user_id(s) for s in stream_ids],))
        return {stream(r[0]): User(**dict(zip(COLUMNS, r, strict=True))) for r in await cur.fetchall()}


    async def save(self, conn: AsyncConnection, states: dict[str, User], before: dict) -> None:
        await conn.execute(_SAVE, {"rows": msgspec.json.encode(list(states.values())).decode()})

    async def write_all(self, conn: AsyncConnection, states: dict) -> None:
        async with conn.cursor().copy(f"COPY users ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for user in states.values():
                await copy.write_row([getattr(user, c) for c in COLUMNS])
