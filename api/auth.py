"""Authentication: the bearer-token middleware, role guards and the /auth routes."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Request, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, State
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import JSONBody
from msgspec import Meta

from api import ratelimit
from api.problems import field_error
from api.security import ACCESS, REFRESH, InvalidToken, TokenPair
from events.base import Meta as EventMeta
from events.commands import accounts, sessions
from events.errors import Invalid, Unauthorized
from events.passwords import MAX_LENGTH, MIN_LENGTH
from events.users import Actor, Role, User, canonical_email

# Checked by events.users.canonical_email: what is an address shows only after NFKC ("ａ＠ｂ.ｃｏ"), and the
# bound leaves room for the spaces and invisible characters it drops.
Email = Annotated[str, Meta(min_length=1, max_length=1000, description="an email address",
                            examples=["ada@example.com"])]
Password = Annotated[str, Meta(min_length=MIN_LENGTH, max_length=MAX_LENGTH,  # events.passwords checks it too
                               examples=["correct horse battery"])]


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

    @property
    def actor(self) -> Actor:
        return self.user.actor


class BearerAuth(AbstractAuthenticationMiddleware):
    """Every route not marked `public` needs a valid access token of a user who is still active and
    whose login was not revoked; role and status come from the user's events, not from the token."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise NotAuthorizedException("a bearer access token is required")
        state = connection.app.state
        try:
            claims = state.tokens.decode(token.strip(), ACCESS)
        except InvalidToken as exc:
            raise NotAuthorizedException(f"invalid token: {exc}") from None
        user = await state.sessions.user(state.pool, claims["sub"], claims["fam"])
        if user is None:
            raise NotAuthorizedException("the token's user is deactivated or its session was revoked")
        return AuthenticationResult(user=Caller(user, claims["fam"]), auth=claims)


def requires(*roles: str):
    """A guard admitting only callers with one of `roles`."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # async: a sync guard runs in a thread
        if connection.user.role not in roles:
            raise PermissionDeniedException(f"this needs the role {' or '.join(roles)}")

    guard.__name__ = f"requires_{'_or_'.join(roles)}"
    return guard


def event_meta(request: Request, actor: str | None = None) -> EventMeta:
    """Correlation id from the request (X-Correlation-ID) or a new one; the actor who caused it."""
    correlation = request.scope.get("correlation_id") or uuid.uuid4()
    if actor is None and isinstance(request.scope.get("user"), Caller):
        actor = f"user:{request.scope['user'].id}"
    return EventMeta(correlation_id=correlation, actor=actor)


class RegisterIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Annotated[str, Meta(min_length=1, max_length=100, examples=["Ada Lovelace"])]
    role: Literal["buyer", "seller"] = "buyer"


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    created_at: datetime


def user_out(user) -> UserOut:
    return UserOut(id=user.id, email=user.email, name=user.name, role=user.role, created_at=user.created_at)


class LoginIn(msgspec.Struct):
    email: Email
    password: Annotated[str, Meta(min_length=1, max_length=128, examples=["correct horse battery"])]


class LoginForm(msgspec.Struct):
    """The OAuth2 password form, as the docs page's Authorize button sends it."""

    username: Email
    password: Annotated[str, Meta(min_length=1, max_length=128)]


class RefreshIn(msgspec.Struct):
    refresh_token: str


PUBLIC = {"public": True}
NO_STORE = CacheControlHeader(no_store=True)  # tokens must not stay in a browser's or a proxy's cache
RATE_LIMITED = "Too many attempts from this address in the last minute: wait Retry-After seconds."


@post("/auth/register", operation_id="register", tags=["auth"], summary="Create a buyer or seller account",
      opt={**PUBLIC, "problems": {409: "An account with this email exists.", 429: RATE_LIMITED}})
async def register(data: JSONBody[RegisterIn], request: Request, state: State) -> UserOut:
    """Nobody registers as an admin: `orders users create-admin` makes the first one. Limited to
    REGISTER_RATE_LIMIT a minute per client address."""
    await ratelimit.limit(state.pool, request, "register", state.settings.register_rate_limit)
    user = await accounts.register(state.pool, state.passwords, email=data.email, password=data.password,
                                   name=data.name, role=data.role, meta=event_meta(request, "anonymous"))
    return user_out(user)


async def _login_fields(request: Request) -> LoginIn:
    """JSON `{email, password}`, or the OAuth2 password form (`username`, `password`) of the docs page."""
    try:
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = msgspec.convert(dict(await request.form()), LoginForm)
            return LoginIn(email=form.username, password=form.password)
        return msgspec.json.decode(await request.body(), type=LoginIn)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$")
        error = field_error(at.rstrip("`").lstrip("."), message)
        raise Invalid(error.field, error.message) from None
    except msgspec.DecodeError:
        raise Invalid("body", "the body must be JSON {email, password} or a form with username and password") from None


@post("/auth/login", operation_id="login", tags=["auth"], status_code=200, cache_control=NO_STORE,
      summary="Exchange email and password for an access and a refresh token",
      opt={**PUBLIC, "form": True,
           "body": {"application/json": LoginIn, "application/x-www-form-urlencoded": LoginForm},
           "problems": {401: "Wrong email or password, or a deactivated account (the same answer for each).",
                        415: "The body is neither JSON nor a form.", 429: RATE_LIMITED}})
async def login(request: Request, state: State) -> TokenPair:
    """JSON, or the OAuth2 password form with the email as `username`. Each login starts a session
    whose refresh tokens rotate. Limited to LOGIN_RATE_LIMIT a minute per client address."""
    await ratelimit.limit(state.pool, request, "login", state.settings.login_rate_limit)
    fields = await _login_fields(request)
    # Failed logins are counted per account too, whatever the address. The hit is taken before the
    # password is checked, so concurrent guesses cannot overrun the limit, and a success gives it back.
    # Over the limit even the right password gets 429 (else guessing would go on), and unknown emails
    # are counted alike, so a 429 does not tell whether an account exists.
    failures = f"login-failed:{canonical_email(fields.email)}"
    window = ratelimit.FAILED_LOGIN_WINDOW_SECONDS
    await ratelimit.hit(state.pool, failures, state.settings.login_failure_limit, window,
                        "too many failed logins for this account")
    session = await sessions.login(state.pool, state.passwords, fields.email, fields.password,
                                   state.tokens.refresh_expiry())
    await ratelimit.forgive(state.pool, failures, window)
    return state.tokens.pair(session)


@post("/auth/refresh", operation_id="refresh", tags=["auth"], status_code=200, cache_control=NO_STORE,
      summary="Rotate a refresh token into a new token pair",
      opt={**PUBLIC, "problems": {401: "The refresh token is invalid or expired, was already used (which revokes"
                                       " every token of its login), or its user was deactivated."}})
async def refresh(data: JSONBody[RefreshIn], state: State) -> TokenPair:
    """The refresh token is spent: the answer carries its successor. Presenting a spent one again
    revokes the whole login, since only a thief would."""
    try:
        claims = state.tokens.decode(data.refresh_token, REFRESH)
    except InvalidToken as exc:
        raise Unauthorized(f"invalid refresh token: {exc}") from None
    return state.tokens.pair(await sessions.rotate(state.pool, claims["jti"], claims["fam"], claims["sub"],
                                                   state.tokens.refresh_expiry()))


@post("/auth/logout", operation_id="logout", tags=["auth"], status_code=204,
      summary="Revoke this login's refresh tokens")
async def logout(request: Request[Caller, dict, State], state: State) -> None:
    """Every refresh token of this login stops working; its access tokens at once too."""
    await sessions.revoke(state.pool, request.user.family)
    state.sessions.forget(f"family {request.user.family}")  # this process at once; the others by notification


@get("/auth/me", operation_id="me", tags=["auth"], summary="The caller's account")
async def me(request: Request[Caller, dict, State]) -> UserOut:
    """As the user's events say now: a role change shows at once, without a new token."""
    return user_out(request.user.user)


ROUTES = [register, login, refresh, logout, me]
