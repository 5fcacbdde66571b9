"""Every error as application/problem+json (RFC 9457): one `type` and one `title` per status, and for
a 422 the fields at fault, each with a sentence a person can act on."""

import logging
import re
from http import HTTPStatus

import msgspec
import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from msgspec import Meta

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

# Where the RFC's name reads better than Python's (413), or says what went wrong here (422).
_TITLES = {413: "Content too large", 422: "Invalid input"}


def title(code: int) -> str:
    return _TITLES.get(code) or HTTPStatus(code).phrase.capitalize()


def problem_type(code: int) -> str:
    return f"/problems/{HTTPStatus(code).phrase.lower().replace(' ', '-')}"


class FieldError(msgspec.Struct):
    field: str  # a body field (`items[0].quantity`), a query or path parameter, or a header
    message: str
    source: str | None = None  # body, query, path or header


class Problem(msgspec.Struct, omit_defaults=True):
    """An error. Some carry more members: `current_status` (409 of an order), `available` (409 of
    stock), `checks` (503 of /ready), ..."""

    type: str  # /problems/<status phrase>, stable
    title: str  # one per status
    status: int
    detail: str | None = None
    field: str | None = None  # the first field at fault (422), or the one in conflict (409)
    errors: list[FieldError] | None = None  # every field at fault (422)


def problem(code: int, detail: str | None = None, *, headers: dict[str, str] | None = None,
            **extra: object) -> Response:
    body = {"type": problem_type(code), "title": title(code), "status": code}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=code, media_type=PROBLEM, headers=headers)


_MEANINGS: dict[str, str] = {}


def pattern(regex: str, means: str, **constraints: object) -> Meta:
    """A string pattern whose refusal says what it means ("an email address such as ...") rather than
    showing the regex."""
    _MEANINGS[repr(regex)] = means  # msgspec's message shows the pattern's repr
    return Meta(pattern=regex, description=f"{means[0].upper()}{means[1:]}.", **constraints)


_KINDS = {"str": "a string", "int": "a whole number", "float": "a number", "bool": "true or false",
          "object": "a JSON object", "array": "a list", "uuid": "a UUID", "decimal": "a decimal number",
          "datetime": "a date and time such as 2026-01-31T12:00:00Z"}
_SENTENCES = [
    (re.compile(r"Expected `str` matching regex (.*)$"),
     lambda m: f"must be {_MEANINGS.get(m[1], 'in the expected format')}"),
    (re.compile(r"Expected `str` of length >= (\d+)$"), lambda m: f"must be at least {m[1]} characters long"),
    (re.compile(r"Expected `str` of length <= (\d+)$"), lambda m: f"must be at most {m[1]} characters long"),
    (re.compile(r"Expected `array` of length >= (\d+)$"), lambda m: f"must have at least {m[1]} item(s)"),
    (re.compile(r"Expected `array` of length <= (\d+)$"), lambda m: f"must have at most {m[1]} items"),
    (re.compile(r"Expected `\w+` >= (\S+)$"), lambda m: f"must be at least {m[1]}"),
    (re.compile(r"Expected `\w+` <= (\S+)$"), lambda m: f"must be at most {m[1]}"),
    (re.compile(r"Expected `(\w+)(?: \| null)?`, got `\w+`$"), lambda m: f"must be {_KINDS.get(m[1], m[1])}"),
    (re.compile(r"Invalid enum value (.*)$"), lambda m: f"{m[1]} is not one of the allowed values"),
    (re.compile(r"Invalid UUID"), lambda m: f"must be {_KINDS['uuid']}"),
    (re.compile(r"Invalid RFC3339 encoded datetime"), lambda m: f"must be {_KINDS['datetime']}"),
]
_FIELD_NAMED = re.compile(r"Object (contains unknown|missing required) field `([^`]+)`$")


def field_error(key: str, message: str, source: str | None = None) -> FieldError:
    """A validation message of msgspec (as Litestar passes it on) in the client's terms: the field it
    is about, even when the message names it (`unknown field` at the body's root is that field, not
    `data`), and a sentence instead of a type or a regex."""
    key = "" if key in ("data", "body") else key
    if named := _FIELD_NAMED.match(message):
        key = f"{key}.{named[2]}" if key else named[2]
        return FieldError(key, "is not a field of this request" if named[1] == "contains unknown" else "is required",
                          source)
    if message == "'data'":  # Litestar's way of saying there was no body at all
        return FieldError("body", "a JSON body is required", source)
    for regex, sentence in _SENTENCES:
        if found := regex.match(message):
            return FieldError(key or "body", sentence(found), source)
    return FieldError(key or "body", message, source)


def _validation(_: Request, exc: ValidationException) -> Response:
    fields = [field_error(str(item.get("key") or ""), str(item.get("message") or ""), item.get("source"))
              for item in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(item, dict)]
    if not fields:  # not a field at fault but the body as a whole (not JSON at all)
        return problem(400, exc.detail)
    return problem(422, f"{fields[0].field}: {fields[0].message}", field=fields[0].field,
                   errors=[msgspec.to_builtins(f) for f in fields])


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
    extra = dict(exc.extra)
    if isinstance(exc, errors.Invalid):  # every 422 lists its fields, as a refused body does
        extra["errors"] = [msgspec.to_builtins(FieldError(exc.field, exc.detail))]
    return problem(status, exc.detail, headers=headers, **extra)


def _version_conflict(_: Request, exc: WrongExpectedVersion) -> Response:
    return problem(409, "the resource was changed by another request; reload and retry")


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

__all__ = ["HANDLERS", "PROBLEM", "MediaType", "Problem", "field_error", "pattern", "problem", "problem_type", "title"]
