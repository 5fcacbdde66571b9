"""Product image commands: check and re-encode an upload, store its files, record it; remove one.

Files are stored before the event is appended (an event must never name a file that is not there),
and removed again when the append is refused, so a refused upload leaves nothing behind. Each image
has keys of its own (its id is in them), so removing one never takes a file another image uses.
"""

import asyncio
import hashlib
import uuid

from psycopg_pool import AsyncConnectionPool

from events import images, media, product_state, products
from events.base import Meta
from events.commands import catalog
from events.media import Storage
from events.products import ImageAdded, ImageFile, Product
from events.users import Actor

# Decoding holds the image in memory (up to MAX_IMAGE_PIXELS x 4 bytes) and a core busy: two at once
# per process at most, off the event loop.
_DECODING = asyncio.Semaphore(2)


async def add(pool: AsyncConnectionPool, storage: Storage, product_id: uuid.UUID, actor: Actor, data: bytes,
              limits: tuple[int, int], meta: Meta) -> Product:
    """`limits`: (MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS)."""
    async with pool.connection() as conn:
        products.may_change(await product_state.load(conn, product_id), actor)  # refused before any work
    async with _DECODING:
        processed = await asyncio.to_thread(images.process, data, *limits)
    image_id = uuid.uuid4()
    files = {size: _file(product_id, image_id, size, encoded) for size, encoded in processed.sizes.items()}
    added = ImageAdded(product_id=product_id, image_id=image_id, sha256=hashlib.sha256(data).hexdigest(),
                       bytes=len(data), width=processed.width, height=processed.height, **files)
    stored = []
    try:
        for size, file in files.items():
            await storage.put(file.key, processed.sizes[size].data, file.content_type)
            stored.append(file.key)
        return await catalog.change(pool, product_id, lambda p: products.add_image(p, actor, added), meta)
    except BaseException:
        await asyncio.shield(storage.delete(stored))
        raise


def _file(product_id: uuid.UUID, image_id: uuid.UUID, size: str, encoded: images.Encoded) -> ImageFile:
    digest = hashlib.sha256(encoded.data).hexdigest()
    return ImageFile(key=media.key(product_id, image_id, digest, size, encoded.extension), sha256=digest,
                     bytes=len(encoded.data), width=encoded.width, height=encoded.height,
                     content_type=encoded.content_type)


async def remove(pool: AsyncConnectionPool, storage: Storage, product_id: uuid.UUID, image_id: uuid.UUID,
                 actor: Actor, meta: Meta) -> Product:
    """Record the removal, then delete its files (a file left by a failed delete is never shown again)."""
    gone: list[str] = []

    def decide(product: Product) -> list:
        events = products.remove_image(product, actor, image_id)
        gone.extend(f.key for i in product.images if i.id == image_id for f in (i.thumbnail, i.display))
        return events

    product = await catalog.change(pool, product_id, decide, meta)
    await storage.delete(gone)
    return product
