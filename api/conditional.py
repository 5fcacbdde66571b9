"""What spares a client a download or a lost update: a resource's ETag is its stream version;
If-None-Match answers 304 when it still matches, If-Match refuses a change with 412 when it does
not; and HEAD answers every GET route with its headers alone."""

from typing import Annotated

from litestar import Response
from litestar.params import HeaderParameter

from events.errors import Invalid

IfMatch = Annotated[str | None, HeaderParameter(
    name="If-Match", description="Change only if the resource is still at this"
    " ETag (as returned by the API, such as \"3\"); otherwise 412. `*` or none: whatever its version.")]
IfNoneMatch = Annotated[str | None, HeaderParameter(
    name="If-None-Match", description="The ETag(s) you hold: 304 without a body while the"
    " resource is still at one of them.")]


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match header demands; None for none or `*`."""
    if if_match is None or if_match.strip() == "*":
        return None
    try:
        return int(if_match.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise Invalid("If-Match", "must be an ETag this API returned, such as \"3\"") from None


def _matches(if_none_match: str | None, tag: str) -> bool:
    """RFC 9110's weak comparison: `*`, or any listed tag equal to `tag` with or without W/."""
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or tag in tags


def tagged(body: object, version: int, if_none_match: str | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    """`body` with its ETag, or 304 with the ETag alone when the client already holds it."""
    tag = etag(version)
    if _matches(if_none_match, tag):
        return Response(None, status_code=304, headers={"ETag": tag})
    return Response(body, status_code=status, headers={"ETag": tag, **(headers or {})})


def head_as_get(app):
    """ASGI middleware: HEAD on any GET route is the GET's answer without its body (RFC 9110);
    Litestar itself answers HEAD only on routes that declare it."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await app(scope, receive, send)
            return

        async def headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server keeps seeing HEAD in its own scope (uvicorn then expects no body).
        as_get = {**scope, "method": "GET"}
        try:
            await app(as_get, receive, headers_only)
        finally:
            if "path_template" in as_get:  # for the request metrics around this middleware
                scope["path_template"] = as_get["path_template"]

    return middleware
