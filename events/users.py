"""User accounts: events, state and decisions. Passwords never enter an event (events are published
to the broker); hashes live in the write-side `credentials` table."""

import re
import unicodedata
import uuid
from datetime import datetime
from typing import Literal

import msgspec

from events.base import Event, event
from events.errors import Conflict, Invalid, NotFound
from events.text import invisible, required

Role = Literal["buyer", "seller", "admin"]


class Actor(msgspec.Struct, frozen=True):
    """Who a decision is made for: a user in a role, or a worker of the system acting as an admin."""

    id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


SYSTEM = Actor(uuid.UUID(int=0), "admin")  # expiry, fulfilment: workers that may do what an admin may


def stream(user_id: uuid.UUID) -> str:
    return f"user-{user_id}"


@event("user.registered")
class UserRegistered(Event, kw_only=True):
    user_id: uuid.UUID
    email: str
    name: str
    role: Role
    registered_at: datetime


@event("user.role_changed")
class UserRoleChanged(Event, kw_only=True):
    user_id: uuid.UUID
    role: Role
    previous_role: Role


@event("user.deactivated")
class UserDeactivated(Event, kw_only=True):
    user_id: uuid.UUID


@event("user.reactivated")
class UserReactivated(Event, kw_only=True):
    user_id: uuid.UUID


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    active: bool
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def actor(self) -> Actor:
        return Actor(self.id, self.role)


def evolve(state: User | None, e: Event, version: int, at: datetime) -> User | None:
    match e:
        case UserRegistered():
            return User(id=e.user_id, email=e.email, name=e.name, role=e.role, active=True,
                        created_at=e.registered_at, updated_at=at, version=version)
        case UserRoleChanged() if state:
            return msgspec.structs.replace(state, role=e.role, updated_at=at, version=version)
        case UserDeactivated() if state:
            return msgspec.structs.replace(state, active=False, updated_at=at, version=version)
        case UserReactivated() if state:
            return msgspec.structs.replace(state, active=True, updated_at=at, version=version)
    return msgspec.structs.replace(state, updated_at=at, version=version) if state else state


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL = 254


def canonical_email(raw: str) -> str:
    """The one spelling under which an account is kept and found, whatever the spelling typed: NFKC
    (full-width and other compatibility forms become plain letters, NFD becomes NFC), invisible
    characters (zero-width spaces and joiners, soft hyphens, ...) removed, case folded. Register, login
    and the command line all go through it; Invalid("email") for what is then no email address."""
    text = "".join(c for c in unicodedata.normalize("NFKC", raw) if not invisible(c)).strip()
    text = unicodedata.normalize("NFKC", text.casefold())  # folding can undo NFKC (e.g. "ǅ" -> "ǆ")
    if len(text) > MAX_EMAIL or not _EMAIL.fullmatch(text) or any(unicodedata.category(c) == "Cc" for c in text):
        raise Invalid("email", "must be an email address such as ada@example.com")
    return text


def register(user_id: uuid.UUID, email: str, name: str, role: Role, now: datetime) -> list[Event]:
    """`email` in its canonical form (the caller has reserved it)."""
    return [UserRegistered(user_id=user_id, email=email, name=required(name, "name"), role=role,
                           registered_at=now)]


def change_role(user: User | None, role: Role, other_admins: int) -> list[Event]:
    """`other_admins`: how many active admins there are besides `user`."""
    if user is None:
        raise NotFound("no such user")
    if user.role == role:
        return []
    if role != "admin":
        _keep_an_admin(user, other_admins)
    return [UserRoleChanged(user_id=user.id, role=role, previous_role=user.role)]


def deactivate(user: User | None, other_admins: int) -> list[Event]:
    if user is None:
        raise NotFound("no such user")
    if not user.active:
        raise Conflict("the user is already deactivated", current_status="deactivated")
    _keep_an_admin(user, other_admins)
    return [UserDeactivated(user_id=user.id)]


def reactivate(user: User | None) -> list[Event]:
    if user is None:
        raise NotFound("no such user")
    if user.active:
        raise Conflict("the user is active", current_status="active")
    return [UserReactivated(user_id=user.id)]


def promote(user: User | None) -> list[Event]:
    """Make `user` an active admin (the command line's way back in): admin, and reactivated if need be."""
    events = change_role(user, "admin", other_admins=0)
    return events + ([UserReactivated(user_id=user.id)] if not user.active else [])


def is_active_admin(user: User | None) -> bool:
    return user is not None and user.active and user.role == "admin"


def _keep_an_admin(user: User, other_admins: int) -> None:
    """The last active admin may not be demoted or deactivated, by itself or anyone: nobody could then
    administer the shop, nor give the role back through the API."""
    if is_active_admin(user) and other_admins == 0:
        raise Conflict("this is the last active admin; make another user an admin first", reason="last_admin")
