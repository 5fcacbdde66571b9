"""Every error as application/problem+json (RFC 9457), with a stable `type` and, for 422, the fields."""

import logging
from http import HTTPStatus

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from api.transport import ClientDisconnected
from events import errors
from events.store import WrongExpectedVersion

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
RETRY_AFTER = "2"  # seconds, on a 503

_STATUS = {
    errors.Invalid: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.Unauthorized: 401,
    errors.PreconditionFailed: 412,
}


def problem(code: int, detail: str | None = None, *, title: str | None = None,
            headers: dict[str, str] | None = None, **extra: object) -> Response:
    phrase = HTTPStatus(code).phrase
    body = {"type": f"/problems/{phrase.lower().replace(' ', '-')}", "title": title or phrase, "status": code}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=code, media_type=PROBLEM, headers=headers)


def _validation(_: Request, exc: ValidationException) -> Response:
    fields = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            fields.append({"field": item.get("key"), "source": item.get("source"), "message": item.get("message")})
    return problem(422 if fields else 400, exc.detail, title="Invalid input" if fields else None,
                   errors=fields or None, field=fields[0]["field"] if fields else None)


def _http(_: Request, exc: HTTPException) -> Response:
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return problem(exc.status_code, exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None,
                   headers=headers or None, **extra)


def _domain(_: Request, exc: errors.DomainError) -> Response:
    status = next(code for cls, code in _STATUS.items() if isinstance(exc, cls))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(status, exc.detail, title=exc.title, headers=headers, **exc.extra)


def _version_conflict(_: Request, exc: WrongExpectedVersion) -> Response:
    return problem(409, "the resource was changed by another request; reload and retry", title="Conflict")


def _database_unavailable(request: Request, exc: psycopg.OperationalError) -> Response:
    # No connection within DATABASE_TIMEOUT (PoolTimeout), or the server ended the connection under a
    # statement: the database is down, restarting or failing over. Nothing is retried here: the client
    # may retry (an order with its Idempotency-Key is placed once, however often it is sent).
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, str(exc).strip())
    return problem(503, "the database is unavailable; try again shortly", headers={"Retry-After": RETRY_AFTER})


def _client_disconnected(request: Request, _: ClientDisconnected) -> Response:
    # Nobody reads this answer; its status is what the metrics count (499, as nginx names it), so that a
    # client that leaves is not taken for a server error.
    log.info("the client disconnected while sending the body of %s %s", request.method, request.url.path)
    return Response(None, status_code=499)


def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "an unexpected error occurred")


HANDLERS = {
    ValidationException: _validation,
    HTTPException: _http,
    errors.DomainError: _domain,
    WrongExpectedVersion: _version_conflict,
    ClientDisconnected: _client_disconnected,
    psycopg.OperationalError: _database_unavailable,  # PoolTimeout included
    Exception: _unexpected,
}

__all__ = ["HANDLERS", "PROBLEM", "MediaType", "problem"]
