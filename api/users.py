"""Administration of users (admin only)."""

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import UserOut, event_meta, requires
from api.pagination import Pager, Sort
from events.commands import accounts
from events.users import Role


class UserRow(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime
    version: int


class UserPage(msgspec.Struct):
    items: list[UserRow]
    next_cursor: str | None


class RoleIn(msgspec.Struct, forbid_unknown_fields=True):
    role: Role


class AdminUserOut(UserOut):
    active: bool = True
    version: int = 0


ADMIN = [requires("admin")]


_OLDEST_FIRST = Sort(("created_at", "id"), ("timestamptz", "uuid"))


NO_USER = "No such user."
CHANGED_OR_LAST_ADMIN = ("The user was changed by another request meanwhile (reload and retry), or it is the last"
                         " active admin.")


@get("/users", guards=ADMIN, operation_id="listUsers", tags=["users"], summary="All users, oldest first")
async def list_users(
    state: State,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    cursor: FromQuery[str | None] = None,
) -> UserPage:
    """Pages of `limit`; pass `next_cursor` back as `cursor` for the next one."""
    pager = Pager(state.settings.jwt_secret, _OLDEST_FIRST, limit, cursor, listing="users")
    where, params = pager.condition() or ("true", [])
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, email, name, role, active, created_at, updated_at, version FROM users"
            f" WHERE {where} ORDER BY {_OLDEST_FIRST.order_by} LIMIT %s", [*params, pager.fetch])
        items, next_cursor = pager.page([UserRow(*r) for r in await cur.fetchall()])
    return UserPage(items=items, next_cursor=next_cursor)


def _admin_out(user) -> AdminUserOut:
    return AdminUserOut(id=user.id, email=user.email, name=user.name, role=user.role, created_at=user.created_at,
                        active=user.active, version=user.version)


@post("/users/{user_id:uuid}/role", guards=ADMIN, operation_id="changeRole", tags=["users"], status_code=200,
      summary="Give a user another role", opt={"problems": {404: NO_USER, 409: CHANGED_OR_LAST_ADMIN}})
async def change_role(user_id: FromPath[uuid.UUID], data: JSONBody[RoleIn], request: Request,
                      state: State) -> AdminUserOut:
    """It takes effect on the user's next request, with the tokens it holds."""
    user = await accounts.change_role(state.pool, user_id, data.role, event_meta(request))
    state.sessions.forget(f"user {user_id}")  # this process at once; the others by notification
    return _admin_out(user)


@post("/users/{user_id:uuid}/deactivate", guards=ADMIN, operation_id="deactivateUser", tags=["users"],
      status_code=200, summary="Deactivate a user; their tokens stop working at once",
      opt={"problems": {404: NO_USER, 409: "The user is already deactivated, is the last active admin, or was"
                                           " changed meanwhile."}})
async def deactivate(user_id: FromPath[uuid.UUID], request: Request, state: State) -> AdminUserOut:
    """Every request with the user's tokens is refused from now on; the account and its orders stay."""
    user = await accounts.deactivate(state.pool, user_id, event_meta(request))
    state.sessions.forget(f"user {user_id}")
    return _admin_out(user)


@post("/users/{user_id:uuid}/reactivate", guards=ADMIN, operation_id="reactivateUser", tags=["users"],
      status_code=200, summary="Reactivate a deactivated user; they log in again",
      opt={"problems": {404: NO_USER, 409: "The user is active already, or was changed meanwhile."}})
async def reactivate(user_id: FromPath[uuid.UUID], request: Request, state: State) -> AdminUserOut:
    """The user's next login works again; tokens revoked by the deactivation stay revoked."""
    user = await accounts.reactivate(state.pool, user_id, event_meta(request))
    state.sessions.forget(f"user {user_id}")
    return _admin_out(user)


ROUTES = [list_users, change_role, deactivate, reactivate]
