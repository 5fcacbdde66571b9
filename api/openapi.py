"""The OpenAPI document at /schema/openapi.json, and the Swagger UI page at /schema, served offline.

Litestar writes the document from the routes: paths, parameters, bodies, success responses and their
headers, descriptions from the handlers' docstrings. `finish` then adds what follows from how every
route is served rather than from its signature, so that no route can forget it:

- the errors: each route's own (`opt["problems"]`, status -> when), and those that its shape implies:
  401 without `opt["public"]`, 403 with guards, 404 with a path parameter, 400/413/415/422 with a
  body, 422 with a query parameter, 503 unless `opt["database"]` is False. All are
  problem+json; Litestar's own error schema (its 400 for every parameter) is dropped, since this API
  answers validation errors with 422;
- security on the routes that need a token, and none on the public ones;
- X-Correlation-ID on every request and response, Retry-After on 429 and 503, WWW-Authenticate on 401,
  ETag on 304;
- a body that may be left out (`data: ... = None`) as not required, a body that refuses unknown
  fields as closed (`additionalProperties: false`), and bodies a handler reads itself (`opt["body"]`,
  media type -> Struct: the login's JSON and form).
"""

import msgspec
from litestar import Litestar, Router
from litestar.datastructures import ResponseHeader
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, Operation, SecurityScheme, Tag
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from api.problems import PROBLEM, Problem, problem_type, title

ASSETS = "/schema/assets"

# What a route's success answers carry, for its `response_headers`.
ETAG = ResponseHeader(name="ETag", value='"3"', documentation_only=True,
                      description="The resource's version: send it in If-Match or If-None-Match.")
LOCATION = ResponseHeader(name="Location", value="/products/0b7f...", documentation_only=True,
                          description="Where the created resource is.")
REPLAYED = ResponseHeader(name="Idempotent-Replayed", value="true", documentation_only=True,
                          description="`true` when this answers an earlier request with the same Idempotency-Key.")
NOT_MODIFIED = {304: ResponseSpec(None, description="Not modified: If-None-Match holds the current ETag.")}

DESCRIPTION = """\
An event-sourced order backend: accounts, a catalog, carts and orders. Every change is an event;
the read side answers from tables built from those events.

**Logging in.** `POST /auth/login` with `{"email", "password"}` (or the OAuth2 password form, as the
Authorize button of this page sends it) returns an access token (15 minutes) and a refresh token (7
days). Send the access token as `Authorization: Bearer <token>`; `POST /auth/refresh` rotates the
refresh token. Routes without a lock need no token.

**Errors** are `application/problem+json` (RFC 9457): `type` and `title` are fixed per status;
`detail` says what happened; a 422 names the first field at fault in `field` and every one in
`errors`. 503 means PostgreSQL is unreachable: retry after `Retry-After` seconds.

**Conventions.** Times are UTC, `2026-01-31T12:00:00Z`. Prices are exact decimals sent and returned
as strings (`"19.99"`). Lists answer `{items, next_cursor}`: pass `next_cursor` back as `cursor`
with the same filters and sort for the next page. Products and orders carry an `ETag` (their
version): `If-Match` makes a change fail with 412 if someone changed the resource since, and
`If-None-Match` answers 304 while you hold the current one. Every GET route also answers `HEAD`.
`POST /orders` and `/cart/checkout` honour `Idempotency-Key`. Every answer carries `X-Correlation-ID`
(yours, if you sent a UUID), which the events of the request carry too.
"""

TAGS = [
    Tag(name="auth", description="Accounts, logging in and out, tokens."),
    Tag(name="users", description="User administration (admin)."),
    Tag(name="products", description="The catalog: anyone reads, sellers and admins write."),
    Tag(name="cart", description="A buyer's cart, checked out into an order."),
    Tag(name="orders", description="Orders and their lifecycle: pending, paid, shipped, delivered,"
                                   " cancelled or expired."),
    Tag(name="payments", description="Payment sessions with the provider, and its signed webhooks."),
    Tag(name="admin", description="Operators: the event log and the projections."),
    Tag(name="operations", description="Health, readiness and metrics."),
]

# Why each status happens, where the route does not say it better itself.
_WHEN = {
    400: "The body is not JSON at all.",
    401: "No valid access token: it is missing, expired, revoked or of a deactivated user. Log in again.",
    403: "The caller's role may not do this.",
    404: "No such resource (a path that is not a UUID included), or one the caller may not see.",
    409: "The resource was changed by another request meanwhile; reload and retry.",
    412: "If-Match names an older version of the resource: reload it and retry.",
    413: "The body is larger than the server accepts (MAX_BODY_BYTES).",
    415: "The body is not application/json.",
    422: "A field, parameter or header is not valid: `field` names the first, `errors` each.",
    429: "Too many attempts from this address: wait Retry-After seconds.",
    503: "PostgreSQL is unreachable: retry after Retry-After seconds.",
}
# What an answer of a status says whichever route gave it; the rest depends on the route.
_EXAMPLES = {
    400: {"detail": "JSON is malformed: expected value (byte 1)"},
    401: {"detail": "a bearer access token is required"},
    413: {},
    429: {"detail": "too many login attempts; try again in 42s"},
    503: {"detail": "the database is unreachable"},
}

_HEADERS = {
    "X-Correlation-ID": {"description": "The request's correlation id: the one it sent (a UUID) or a new one;"
                                        " its events carry it.", "schema": {"type": "string", "format": "uuid"}},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}},
    "WWW-Authenticate": {"description": "`Bearer`: how to authenticate.", "schema": {"type": "string"}},
    "ETag": {"description": "The resource's version, still the current one.", "schema": {"type": "string"}},
}
_HEADER_ON = {"304": ["ETag"], "401": ["WWW-Authenticate"], "429": ["Retry-After"], "503": ["Retry-After"]}
_CORRELATION = {"name": "X-Correlation-ID", "in": "header", "required": False, "schema": {
    "type": "string", "format": "uuid"}, "description": "A UUID to trace this request by (in its events and logs);"
    " anything else, or none, gets a new one."}
_BEARER = "bearer"
_REF = "#/components/schemas/{name}"


def config() -> OpenAPIConfig:
    assets = f"{ASSETS}/swagger-ui"
    return OpenAPIConfig(
        title="Orders API", version="0.1.0", description=DESCRIPTION, tags=TAGS, path="/schema",
        use_handler_docstrings=True,
        render_plugins=[SwaggerRenderPlugin(  # from the installed swagger-ui-bundle-v2, never a CDN
            path=["/", "/swagger"], js_url=f"{assets}-bundle.js", css_url=f"{assets}.css",
            standalone_preset_js_url=f"{assets}-standalone-preset.js", favicon="")],
        components=Components(security_schemes={_BEARER: SecurityScheme(
            type="oauth2", flows=OAuthFlows(password=OAuthFlow(token_url="/auth/login", scopes={})),
            description="Log in with your email as the username; the page then sends the access token.",
        )}),
    )


def assets() -> Router:
    """Swagger UI's files, as the pinned package installed them."""
    return create_static_files_router(ASSETS, directories=[swagger_ui_path], opt={"public": True},
                                      include_in_schema=False)


def _problem(code: int, when: str) -> dict:
    example = {"type": problem_type(code), "title": title(code), "status": code, **_EXAMPLES.get(code, {})}
    return {"description": when, "content": {PROBLEM: {"schema": {"$ref": _REF.format(name="Problem")},
                                                       "example": example}}}


def _implied(handler, operation: dict) -> set[int]:
    """The errors a route can answer because of how it is served, whatever it does."""
    codes = set()
    if not handler.opt.get("public"):
        codes.add(401)
    if handler.guards:
        codes.add(403)
    places = {p.get("in") for p in operation.get("parameters", [])}
    if "path" in places:
        codes.add(404)
    if "query" in places:  # a header that can be wrong is the route's to say (If-Match, Idempotency-Key)
        codes.add(422)
    if "requestBody" in operation:
        codes |= {400, 413, 415, 422}
    if handler.opt.get("database", True):
        codes.add(503)
    return codes


def _body(handler, operation: dict, schemas: dict) -> None:
    if declared := handler.opt.get("body"):
        _, found = msgspec.json.schema_components(declared.values(), ref_template=_REF)
        schemas.update(found)
        operation["requestBody"] = {"required": True, "content": {
            media: {"schema": {"$ref": _REF.format(name=struct.__name__)}} for media, struct in declared.items()}}
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is not None:
        _close(data.annotation, schemas)
        if data.has_default:
            operation["requestBody"]["required"] = False


def _close(body: object, schemas: dict) -> None:
    """A body Struct that refuses unknown fields (`forbid_unknown_fields`: 422) says so with
    `additionalProperties: false`, as msgspec's own schema of it does. Litestar's leaves it out, which
    tells a client that any extra field is welcome. A multipart body (an uploaded file) has no JSON
    schema of msgspec's and is left as Litestar documents it."""
    try:
        _, found = msgspec.json.schema_components([body], ref_template=_REF)
    except TypeError:
        return
    for name, schema in found.items():  # Litestar's components are objects (msgspec's, dicts, have it already)
        if schema.get("additionalProperties") is False and hasattr(schemas.get(name), "additional_properties"):
            schemas[name].additional_properties = False


def _finish(handler, operation: dict, schemas: dict) -> None:
    _body(handler, operation, schemas)
    responses = operation.setdefault("responses", {})
    for status in [s for s, r in responses.items() if int(s) >= 400 and PROBLEM not in r.get("content", {})]:
        del responses[status]  # Litestar's own error schema: not what this API answers
    own = handler.opt.get("problems", {})
    for code in sorted(_implied(handler, operation) | set(own)):
        responses[str(code)] = _problem(code, own.get(code) or _WHEN[code])
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        for name in ["X-Correlation-ID", *_HEADER_ON.get(status, [])]:
            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
    operation.setdefault("parameters", []).append({"$ref": "#/components/parameters/X-Correlation-ID"})
    if not handler.opt.get("public"):
        operation["security"] = [{_BEARER: []}]


def finish(app: Litestar) -> None:
    """Complete the document Litestar generated from the routes (see the module's docstring).
    Litestar builds it once and serves that object from then on, so this runs before the first request."""
    document = app.openapi_schema
    schemas = document.components.schemas
    schemas.update(msgspec.json.schema_components([Problem], ref_template=_REF)[1])
    document.components.headers = _HEADERS
    document.components.parameters = {"X-Correlation-ID": _CORRELATION}
    handlers = {h.operation_id: h for route in app.routes if isinstance(route, HTTPRoute)
                for h in route.route_handlers if h.include_in_schema}
    for item in document.paths.values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation: Operation | None = getattr(item, method)
            if operation is not None and operation.operation_id in handlers:
                # As plain JSON from here on: Litestar serialises dicts inside its objects as they are.
                finished = operation.to_schema()
                _finish(handlers[operation.operation_id], finished, schemas)
                setattr(item, method, finished)
