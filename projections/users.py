"""The `users` read table: each user as `events.users.evolve` folds their stream."""

import uuid

from psycopg import AsyncConnection

from events.base import Event, Recorded
from events.users import User, evolve

_FIELDS = tuple(User.__struct_fields__)  # id, email, name, role, active, created_at, version


def _user_id(stream_id: str) -> uuid.UUID:
    return uuid.UUID(stream_id.removeprefix("user-"))


class UsersProjector:
    name = "users"
    tables = ("users",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM users WHERE id = %s", (_user_id(stream_id),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def apply(self, conn: AsyncConnection, recorded: Recorded, event: Event) -> None:
        cur = await conn.execute(f"SELECT {', '.join(_FIELDS)} FROM users WHERE id = %s",
                                 (_user_id(recorded.stream_id),))
        row = await cur.fetchone()
        user = evolve(User(**dict(zip(_FIELDS, row, strict=True))) if row else None, event, recorded.version)
        if user is None:
            return
        await conn.execute(
            f"INSERT INTO users ({', '.join(_FIELDS)}, updated_at) VALUES ({', '.join(['%s'] * len(_FIELDS))}, %s)"
            f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in _FIELDS if f != 'id')},"
            " updated_at = excluded.updated_at",
            _row((user, recorded.recorded_at)),
        )

    # The rebuild's bulk path: fold every stream in memory with the same `evolve`, then COPY.
    def fold(self, state, recorded: Recorded, event: Event):
        user = evolve(state[0] if state else None, event, recorded.version)
        return (user, recorded.recorded_at) if user else state

    async def write_all(self, conn: AsyncConnection, states: dict) -> None:
        async with conn.cursor().copy(f"COPY users ({', '.join(_FIELDS)}, updated_at) FROM STDIN") as copy:
            for state in states.values():
                await copy.write_row(_row(state))


def _row(state: tuple[User, object]) -> list:
    user, updated_at = state
    return [*(getattr(user, f) for f in _FIELDS), updated_at]
