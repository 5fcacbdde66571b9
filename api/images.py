"""/products/{id}/images: upload a picture of a product (multipart), remove one (owner or admin)."""

import uuid
from dataclasses import dataclass
from typing import Annotated

from litestar import Request, Response, delete, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body, FromPath

from api.auth import event_meta
from api.inputs import UnsupportedMediaType
from api.openapi import ETAG, LOCATION
from api.products import NO_PRODUCT, NOT_YOURS, SELLERS, ProductOut, read_your_write, respond
from events.commands import images as commands
from events.images import ImageTooLarge, UnsupportedImage

FORM_OVERHEAD = 64 * 1024  # bytes a multipart body may carry besides the file: boundaries and part headers


class ContentTooLarge(HTTPException):
    status_code = 413


@dataclass
class ImageUpload:
    file: UploadFile  # a JPEG, PNG or WebP image: its bytes decide which, not its name or content type


@post("/products/{product_id:uuid}/images", guards=SELLERS, operation_id="addProductImage", tags=["products"],
      summary="Upload a picture of a product (owner or admin); multipart/form-data with a `file` part",
      response_headers=[ETAG, LOCATION], opt={"multipart": True, "problems": {
          403: NOT_YOURS, 404: NO_PRODUCT,
          409: "This picture is on the product already (`image_id`), it has 20 already, or it changed meanwhile.",
          413: "The file is larger than MAX_IMAGE_BYTES.",
          415: "The body is not multipart/form-data, or the file is not a JPEG, PNG or WebP image (by its bytes).",
          422: "No `file` part; or the image claims more pixels than MAX_IMAGE_PIXELS, cannot be decoded, or"
               " carries something else too (bytes after its end, markup or an archive in its metadata)."}})
async def add_image(product_id: FromPath[uuid.UUID],
                    data: Annotated[ImageUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
                    request: Request, state: State) -> Response[ProductOut]:
    """The picture is decoded, turned upright and re-encoded without any metadata (EXIF, GPS, ...)
    into a `thumbnail` and a `display` size, stored under names that carry their content's hash. The
    answer is the product, with its images."""
    settings = state.settings
    try:
        product = await commands.add(state.pool, state.storage, product_id, request.user.actor, await data.file.read(),
                                     (settings.max_image_bytes, settings.max_image_pixels), event_meta(request))
    except ImageTooLarge as exc:
        raise ContentTooLarge(detail=exc.detail) from None
    except UnsupportedImage as exc:
        raise UnsupportedMediaType(detail=exc.detail) from None
    await read_your_write(state, product)
    return respond(state, product, 201)


@delete("/products/{product_id:uuid}/images/{image_id:uuid}", guards=SELLERS, operation_id="removeProductImage",
        tags=["products"], status_code=200, summary="Remove a picture of a product (owner or admin)",
        response_headers=[ETAG], opt={"problems": {403: NOT_YOURS, 404: f"{NO_PRODUCT} Or no such image of it.",
                          409: "The product changed meanwhile."}})
async def remove_image(product_id: FromPath[uuid.UUID], image_id: FromPath[uuid.UUID], request: Request,
                       state: State) -> Response[ProductOut]:
    """Its files are deleted; the answer is the product without it."""
    product = await commands.remove(state.pool, state.storage, product_id, image_id, request.user.actor,
                                    event_meta(request))
    await read_your_write(state, product)
    return respond(state, product)


def upload_limit(max_image_bytes: int) -> int:
    """The body size an upload route takes: the file and the form around it."""
    return max_image_bytes + FORM_OVERHEAD


ROUTES = [remove_image]
UPLOADS = [add_image]  # the app gives these a body limit of their own (upload_limit)
