"""The `users` read table."""

from psycopg import AsyncConnection

from events.base import Event, Recorded
from events.users import UserDeactivated, UserRegistered, UserRoleChanged


class UsersProjector:
    name = "users"
    tables = ("users",)

    async def version(self, conn: AsyncConnection, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM users WHERE id = %s", (stream_id.removeprefix("user-"),))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def apply(self, conn: AsyncConnection, recorded: Recorded, event: Event) -> None:
        match event:
            case UserRegistered():
                await conn.execute(
                    "INSERT INTO users (id, email, name, role, active, created_at, updated_at, version)"
                    " VALUES (%s, %s, %s, %s, true, %s, %s, %s)",
                    (event.user_id, event.email, event.name, event.role, event.registered_at,
                     recorded.recorded_at, recorded.version),
                )
            case UserRoleChanged():
                await self._update(conn, recorded, "role = %s", event.role)
            case UserDeactivated():
                await self._update(conn, recorded, "active = %s", False)
            case _:
                await self._update(conn, recorded, "version = version")  # no visible change

    async def _update(self, conn: AsyncConnection, recorded: Recorded, assignment: str, *values) -> None:
        await conn.execute(
            f"UPDATE users SET {assignment}, updated_at = %s, version = %s WHERE id = %s",
            (*values, recorded.recorded_at, recorded.version, recorded.stream_id.removeprefix("user-")),
        )
