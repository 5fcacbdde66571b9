"""The `users` read table: each user as `events.users.evolve` folds their stream."""

import uuid

from psycopg import AsyncConnection

from events.base import Event, Recorded
from events.users import User, evolve, stream

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

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict[str, tuple[User, object]]:
        cur = await conn.execute(f"SELECT {', '.join(_FIELDS)}, updated_at FROM users WHERE id = ANY(%s)",
                                 ([_user_id(s) for s in stream_ids],))
        return {stream(r[0]): (User(**dict(zip(_FIELDS, r[:-1], strict=True))), r[-1]) for r in await cur.fetchall()}

    def fold(self, state, recorded: Recorded, event: Event):
        """The state is the user and when it last changed (the read row's updated_at)."""
        user = evolve(state[0] if state else None, event, recorded.version)
        return (user, recorded.recorded_at) if user else None

    def version_of(self, state) -> int:
        return state[0].version

    async def save(self, conn: AsyncConnection, states: dict, before: dict) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO users ({', '.join(_FIELDS)}, updated_at) VALUES ({', '.join(['%s'] * len(_FIELDS))}, %s)"
                f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in _FIELDS if f != 'id')},"
                " updated_at = excluded.updated_at",
                [_row(state) for state in states.values()])

    async def write_all(self, conn: AsyncConnection, states: dict) -> None:
        async with conn.cursor().copy(f"COPY users ({', '.join(_FIELDS)}, updated_at) FROM STDIN") as copy:
            for state in states.values():
                await copy.write_row(_row(state))


def _row(state: tuple[User, object]) -> list:
    user, updated_at = state
    return [*(getattr(user, f) for f in _FIELDS), updated_at]
