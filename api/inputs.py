"""What a request's input must be before any handler sees it, checked in one place: the app's
`before_request` hook, which runs after authentication and the role guards.

- A route that reads a body (a `data` parameter, or `opt={"form": True}`: JSON or the OAuth2 password
  form) takes `application/json` (or `application/*+json`), and the form only where it says so: 415.
  An upload route (`opt={"multipart": True}`) takes `multipart/form-data` and nothing else: 415.
- No string anywhere, in the body or the query, may hold NUL (PostgreSQL text cannot): 422 naming it.
- A JSON body nests at most MAX_DEPTH objects and arrays (400), and names each key of an object once
  (422 naming it): a reader that keeps the first of two keys and one that keeps the last disagree.
- Numbers are numbers: a count in a body is a JSON integer (not "1", 1.0 or "1e3") and an integer in a
  query is ASCII digits (422). Money is a string, checked by `events.money`.
"""

import json
import re
from typing import Any, get_args
from urllib.parse import parse_qsl

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.params import BodyKwarg, ParameterKwarg

MAX_DEPTH = 32
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_INTEGER = re.compile(r"-?[0-9]+")
_NUL = "must not contain the NUL character"


class UnsupportedMediaType(HTTPException):
    status_code = 415


class _Repeated:
    """An object whose key `key` appears more than once (json's object_pairs_hook makes these)."""

    def __init__(self, key: str):
        self.key = key


async def check(request: Request) -> None:
    handler = request.route_handler
    if request.scope["query_string"]:
        _check_query(request)
    body_type = _body_type(handler)
    takes_form = bool(handler.opt.get("form"))
    if (body_type is None and not takes_form) or not _has_body(request):
        return
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if handler.opt.get("multipart"):  # its parts are the handler's to check (api/images.py)
        if media != MULTIPART:
            raise UnsupportedMediaType(detail=f"send the file as {MULTIPART}, not {media or 'no type'}")
    elif takes_form and media == FORM:
        _check_form(await request.body())
    elif media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        if (tree := _decode(await request.body())) is not None:
            _check_tree(tree)
            if body_type is not None:
                _check_strictly(tree, body_type)
    else:
        also = f" or {FORM} (the OAuth2 password form)" if takes_form else ""
        raise UnsupportedMediaType(detail=f"send the body as application/json{also}, not {media or 'no type'}")


def _body_type(handler) -> Any:
    data = handler.parsed_fn_signature.parameters.get("data")
    return data.annotation if data is not None and isinstance(data.kwarg_definition, BodyKwarg) else None


def _has_body(request: Request) -> bool:
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def _invalid(field: str, source: str, message: str) -> ValidationException:
    """The same 422 as Litestar's own validation makes, so both read alike."""
    return ValidationException(detail="Validation failed", extra=[{"key": field, "source": source, "message": message}])


def _check_query(request: Request) -> None:
    raw = request.scope["query_string"]
    if b"%00" in raw or b"\x00" in raw:
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name + value:
                raise _invalid(name.replace("\x00", ""), "query", _NUL)
    for name, field in _query_params(request.route_handler).items():
        if int in (field.annotation, *get_args(field.annotation)):
            for value in request.query_params.getall(name, []):
                if not _INTEGER.fullmatch(value):
                    raise _invalid(name, "query", "must be a whole number in ASCII digits")


def _query_params(handler) -> dict:
    """The query parameters of a handler, by the name a client sends them under."""
    found = {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if isinstance(kwarg, ParameterKwarg) and not (kwarg.header or kwarg.cookie):
            found[kwarg.query or name] = field
    return found


def _check_form(body: bytes) -> None:
    for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name + value:
            raise _invalid(name.replace("\x00", ""), "body", _NUL)


def _decode(body: bytes) -> Any | None:
    """The body as Python values, objects with a repeated key marked; None when it is no JSON at all
    (Litestar's own decoding then answers 400), or just null (nothing to check)."""
    def pairs(items: list[tuple[str, Any]]) -> Any:
        seen = set()
        for key, _ in items:
            if key in seen:
                return _Repeated(key)
            seen.add(key)
        return dict(items)

    try:
        return json.loads(body, object_pairs_hook=pairs)
    except RecursionError:
        raise ClientException(detail=f"the JSON body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # not JSON, not UTF-8, or an integer too long for Python
        return None


def _check_tree(tree: Any) -> None:
    """Depth, NUL and repeated keys, reported at the first offending place in document order."""
    todo = [(tree, "", 0)]
    while todo:
        value, path, depth = todo.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise _invalid(path or "body", "body", _NUL)
            continue
        if isinstance(value, _Repeated):
            raise _invalid(_join(path, value.key), "body", "this key appears more than once in its object")
        if not isinstance(value, (dict, list)):
            continue
        if depth == MAX_DEPTH:
            raise ClientException(detail=f"the JSON body nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            children = [(_join(path, key), child) for key, child in value.items()]
            if bad := next((key for key in value if "\x00" in key), None):
                raise _invalid(_join(path, bad.replace("\x00", "")), "body", "a key " + _NUL)
        else:
            children = [(f"{path}[{i}]", child) for i, child in enumerate(value)]
        todo.extend((child, where, depth + 1) for where, child in reversed(children))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_strictly(tree: Any, body_type: Any) -> None:
    """Litestar converts bodies leniently ("1" becomes 1); a body that passes only leniently is refused.
    Every other kind of mistake is left to Litestar's own validation."""
    try:
        msgspec.convert(tree, body_type, strict=True)
    except msgspec.ValidationError as strict_error:
        try:
            msgspec.convert(tree, body_type, strict=False)
        except msgspec.ValidationError:
            return
        message, _, where = str(strict_error).partition(" - at `$")
        raise _invalid(where.rstrip("`").lstrip(".") or "body", "body", message) from None
