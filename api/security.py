"""Tokens: PyJWT, HS256, typed access and refresh tokens that are never interchangeable."""

import logging
import re
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import jwt
import msgspec

from events.commands.sessions import Session
from events.settings import Settings, check_secret, weak_secret

log = logging.getLogger(__name__)

ACCESS, REFRESH = "access", "refresh"
_REQUIRED = ["sub", "role", "typ", "jti", "fam", "iat", "exp", "iss", "aud"]
VERIFIED_CACHE_SIZE = 4096  # access tokens whose signature and claims were verified (LRU)
_CANONICAL = re.compile(r"[A-Za-z0-9_-]{1,1000}\.[A-Za-z0-9_-]{1,2000}\.[A-Za-z0-9_-]{1,200}")


class InvalidToken(Exception):
    pass


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


class Tokens:
    def __init__(self, settings: Settings):
        check_secret(settings)  # refuses a weak secret outside dev mode
        secret = settings.jwt_secret
        if weak_secret(secret):  # so in dev mode
            log.warning("DEV MODE: using a development JWT secret; never run like this in production")
        self.secret, self.issuer, self.audience = secret, settings.jwt_issuer, settings.jwt_audience
        self.access_ttl = timedelta(minutes=settings.access_token_minutes)
        self.refresh_ttl = timedelta(days=settings.refresh_token_days)
        # Verified access tokens by their exact text: HMAC verification is deterministic, so the same
        # string verifies the same way again, save for the expiry, checked on every hit. Revocation and
        # deactivation are checked per request elsewhere (api/auth.py), never cached here.
        self._verified: OrderedDict[str, tuple[dict, int]] = OrderedDict()
        self.clock = time.time  # seconds since the epoch, as PyJWT compares `exp`

    def issue(self, typ: str, user_id: uuid.UUID, role: str, family: uuid.UUID,
              jti: uuid.UUID | None = None, expires: datetime | None = None) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires = expires or now + (self.access_ttl if typ == ACCESS else self.refresh_ttl)
        claims = {"sub": str(user_id), "role": role, "typ": typ, "jti": str(jti or uuid.uuid4()),
                  "fam": str(family), "iat": now, "exp": expires, "iss": self.issuer, "aud": self.audience}
        return jwt.encode(claims, self.secret, algorithm="HS256"), expires

    def refresh_expiry(self) -> datetime:
        return datetime.now(UTC) + self.refresh_ttl

    def pair(self, session: Session) -> TokenPair:
        """The access token and the refresh token of a login's newest refresh token."""
        user = session.user
        access, _ = self.issue(ACCESS, user.id, user.role, session.family)
        refresh, _ = self.issue(REFRESH, user.id, user.role, session.family, session.jti, session.expires_at)
        return TokenPair(access, refresh, int(self.access_ttl.total_seconds()))

    def decode(self, token: str, typ: str) -> dict:
        """Verify signature, algorithm, expiry, issuer, audience, required claims and the token type.
        Access tokens verified once are remembered (bounded LRU; failures never are); the answer is a
        copy the caller may change."""
        if typ == ACCESS and (hit := self._verified.get(token)) is not None:
            claims, expires = hit
            if expires <= self.clock():
                self._verified.pop(token, None)
                raise InvalidToken("Signature has expired")
            if claims["typ"] != typ:  # only access tokens are stored; checked all the same
                raise InvalidToken(f"a {claims['typ']} token cannot be used as a {typ} token")
            self._verified.move_to_end(token)
            return dict(claims)  # the values are str, UUID and int: a shallow copy is a full one
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], audience=self.audience,
                                issuer=self.issuer, options={"require": _REQUIRED})
            claims["sub"], claims["jti"], claims["fam"] = (
                uuid.UUID(claims["sub"]), uuid.UUID(claims["jti"]), uuid.UUID(claims["fam"]))
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc)) from None
        if claims["typ"] != typ:
            raise InvalidToken(f"a {claims['typ']} token cannot be used as a {typ} token")
        if typ == ACCESS and _CANONICAL.fullmatch(token):  # no padding or junk: a few spellings per token at most
            self._verified[token] = (dict(claims), int(claims["exp"]))
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return claims
