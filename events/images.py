"""What an uploaded product image must be, and what is kept of it. Pure: bytes in, bytes out.

An upload is judged by its bytes, never by the name or type the client gave it: it must be a JPEG,
PNG or WebP whose own structure ends where the file ends, with nothing else riding along (a
polyglot, which another program would read as HTML, a script or an archive); its header must not
claim more pixels than MAX_IMAGE_PIXELS, checked before a single pixel is decoded, so a small file
cannot make us allocate gigabytes (a decompression bomb). Only then is it decoded, turned upright
by its EXIF orientation, and re-encoded by Pillow into two sizes: nothing of the upload's bytes,
its EXIF (camera, GPS position), XMP, ICC or text chunks is kept.
"""

import io
import re

import msgspec
from PIL import Image, ImageOps, UnidentifiedImageError

from events.errors import DomainError, Invalid

SIZES = {"thumbnail": 320, "display": 1600}  # the longest side of each size; smaller images are not enlarged
KINDS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}


class UnsupportedImage(DomainError):
    """The bytes are no JPEG, PNG or WebP image (415)."""


class ImageTooLarge(DomainError):
    """The file is larger than MAX_IMAGE_BYTES (413)."""


class Encoded(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes
    width: int
    height: int
    content_type: str
    extension: str


class Processed(msgspec.Struct, frozen=True, kw_only=True):
    width: int  # as uploaded
    height: int
    sizes: dict[str, Encoded]  # by the names of SIZES


def sniff(data: bytes) -> str | None:
    """The image kind the bytes begin as, by their magic numbers."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def process(data: bytes, max_bytes: int, max_pixels: int) -> Processed:
    """Check an upload and re-encode it into SIZES; refuses with ImageTooLarge (413), UnsupportedImage
    (415) or Invalid (422, naming `file`)."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the image is {len(data)} bytes; at most {max_bytes} (MAX_IMAGE_BYTES)")
    kind = sniff(data)
    if kind is None:
        raise UnsupportedImage("the file is not a JPEG, PNG or WebP image (judged by its bytes, not its name or type)")
    _refuse_riders(kind, data)
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as image:  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise _too_many_pixels(f"{width}x{height} = {width * height}", max_pixels)
            if kind == "JPEG":  # decode at the smallest scale that still gives the display size: cheaper
                image.draft("RGB", (SIZES["display"], SIZES["display"]))
            image.load()
            upright = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours, met as it reads the header
        raise _too_many_pixels("far more", max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Invalid("file", f"the {kind} image cannot be decoded: {exc}") from None
    upright = upright.convert("RGBA" if _has_alpha(upright) and kind != "JPEG" else "RGB")
    return Processed(width=width, height=height, sizes={name: _encode(upright, kind, edge)
                                                        for name, edge in SIZES.items()})


def _too_many_pixels(claimed: str, max_pixels: int) -> Invalid:
    return Invalid("file", f"the image is {claimed} pixels; at most {max_pixels} (MAX_IMAGE_PIXELS)", limit=max_pixels)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _encode(image: Image.Image, kind: str, edge: int) -> Encoded:
    resized = image.copy()
    resized.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # No exif=, icc_profile= or pnginfo= is passed: the new file carries pixels and nothing else.
    options = {"JPEG": {"quality": 85, "optimize": True, "progressive": True},
               "PNG": {"optimize": True}, "WEBP": {"quality": 85, "method": 4}}[kind]
    resized.save(out, kind, **options)
    content_type, extension = KINDS[kind]
    return Encoded(data=out.getvalue(), width=resized.width, height=resized.height, content_type=content_type,
                   extension=extension)


# What marks content that a browser, an interpreter or an unzipper would take up. Looked for in the
# metadata only (comments, EXIF, XMP, text chunks), where text hides; compressed pixels would match by
# chance now and then.
_ACTIVE = re.compile(rb"<\s*(script|html|svg|iframe|object|embed|\?php|!doctype)|PK\x03\x04|%PDF-", re.IGNORECASE)


def _refuse_riders(kind: str, data: bytes) -> None:
    """A polyglot: bytes past the image's own end, or markup, script or an archive in its metadata.
    Nothing of the upload is stored (it is re-encoded), but a file that is two things at once is not
    an honest image, and refusing it says so to whoever sent it."""
    end, metadata = _structure(kind, data)
    if end is None:
        raise Invalid("file", f"the {kind} image is truncated: its structure does not end")
    rest = data[end:]
    # A JPEG may be followed by more JPEGs of the same picture (MPF: phones store depth and HDR maps so).
    if rest and not (kind == "JPEG" and rest.startswith(b"\xff\xd8\xff")):
        raise Invalid("file", f"the file goes on for {len(rest)} bytes after its {kind} image ends (a polyglot?)")
    for blob in metadata:
        if found := _ACTIVE.search(blob):
            raise Invalid("file", f"the image's metadata holds {found[0][:12]!r}, which is no image data (a polyglot?)")


def _structure(kind: str, data: bytes) -> tuple[int | None, list[bytes]]:
    """Where the image's own structure ends (None: it never does), and its metadata blocks."""
    if kind == "WEBP":
        return _webp(data)
    if kind == "PNG":
        return _png(data)
    return _jpeg(data)


_WEBP_IMAGE = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"}


def _webp(data: bytes) -> tuple[int | None, list[bytes]]:
    end = 8 + int.from_bytes(data[4:8], "little")
    if end > len(data):
        return None, []
    metadata, at = [], 12
    while at + 8 <= end:
        size = int.from_bytes(data[at + 4:at + 8], "little")
        if data[at:at + 4] not in _WEBP_IMAGE:
            metadata.append(data[at + 8:at + 8 + size])
        at += 8 + size + size % 2
    return end, metadata


_PNG_IMAGE = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"acTL", b"fcTL", b"fdAT"}


def _png(data: bytes) -> tuple[int | None, list[bytes]]:
    metadata, at = [], 8
    while at + 12 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunk, body, at = data[at + 4:at + 8], data[at + 8:at + 8 + length], at + 12 + length
        if chunk == b"IEND":
            return (at if at <= len(data) else None), metadata
        if chunk not in _PNG_IMAGE:
            metadata.append(body)
    return None, metadata


def _jpeg(data: bytes) -> tuple[int | None, list[bytes]]:
    """Segments are skipped by their lengths (an EXIF thumbnail holds an end marker of its own); inside
    entropy-coded data a 0xFF is followed by 0x00 (a stuffed byte) or a restart marker, never an end."""
    metadata, at = [], 2
    while at + 2 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xD9:
            return at + 2, metadata
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, or a marker without length
            at += 1 if marker == 0xFF else 2
            continue
        end = at + 2 + int.from_bytes(data[at + 2:at + 4], "big")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn (EXIF, XMP, ...) and comments
            metadata.append(data[at + 4:end])
        at = _scan_end(data, end) if marker == 0xDA else end  # after a start of scan: its coded data
    return None, metadata


def _scan_end(data: bytes, at: int) -> int:
    while (at := data.find(b"\xff", at)) != -1 and at + 1 < len(data):
        following = data[at + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return at
        at += 2
    return len(data)
