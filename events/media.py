"""Where product image files go: a local folder (MEDIA_ROOT, served by the API at /media/...) or an
S3-compatible bucket (S3_BUCKET and its settings). Keys carry the content's hash, so a stored file
never changes and may be cached for good; what a product shows is in its events, not in a listing
of the store."""

import asyncio
import os
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol

from aiobotocore.session import get_session

from events.settings import Settings

CACHE_FOREVER = "public, max-age=31536000, immutable"  # a key names its content: it never changes


class Storage(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def delete(self, keys: list[str]) -> None: ...

    def url(self, key: str) -> str: ...


def key(product_id: object, image_id: object, sha256: str, size: str, extension: str) -> str:
    return f"products/{product_id}/{image_id}/{sha256}-{size}.{extension}"


class LocalStorage:
    """Files under `root`; the API serves them at /media/<key>."""

    def __init__(self, root: str):
        self.root = Path(root).resolve()

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        pass

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self.root / key, data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Written aside and renamed: a reader sees no file or the whole file, never a part of one.
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, path)

    async def delete(self, keys: list[str]) -> None:
        await asyncio.to_thread(lambda: [(self.root / k).unlink(missing_ok=True) for k in keys])

    def url(self, key: str) -> str:
        return f"/media/{key}"


class S3Storage:
    """Objects in an S3-compatible bucket through aiobotocore; one client for the process's life."""

    def __init__(self, settings: Settings):
        self.settings, self.bucket = settings, settings.s3_bucket
        endpoint = settings.s3_endpoint_url.rstrip("/")
        self.public = (settings.s3_public_url.rstrip("/") or (f"{endpoint}/{self.bucket}" if endpoint else
                       f"https://{self.bucket}.s3.{settings.s3_region}.amazonaws.com"))
        self._stack = AsyncExitStack()
        self._client = None

    async def start(self) -> None:
        s = self.settings
        credentials = {"aws_access_key_id": s.s3_access_key_id, "aws_secret_access_key": s.s3_secret_access_key} \
            if s.s3_access_key_id else {}  # otherwise botocore's own chain: AWS_* variables, a role, ...
        self._client = await self._stack.enter_async_context(get_session().create_client(
            "s3", region_name=s.s3_region, endpoint_url=s.s3_endpoint_url or None, **credentials))

    async def close(self) -> None:
        await self._stack.aclose()

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                      CacheControl=CACHE_FOREVER)

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self._client.delete_objects(Bucket=self.bucket,
                                              Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})

    def url(self, key: str) -> str:
        return f"{self.public}/{key}"


def storage(settings: Settings) -> Storage:
    return S3Storage(settings) if settings.s3_bucket else LocalStorage(settings.media_root)
