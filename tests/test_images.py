"""Product images against the real API, PostgreSQL and RabbitMQ: uploads judged by their bytes,
re-encoded without metadata into two sizes, stored in a local folder (or an S3-compatible bucket:
moto's server, started here), listed by the catalog and reproduced by a rebuild."""

import hashlib
import io
import uuid
import zlib
from pathlib import Path

import pytest
from PIL import Image

from api.app import create_app
from projections.rebuild import rebuild
from tests.support import account, bearer, free_port, serve

MAX_BYTES = 400_000
MAX_PIXELS = 5_000_000


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
async def client(services, projections_running, media):
    settings = services.settings(media_root=str(media), max_image_bytes=MAX_BYTES, max_image_pixels=MAX_PIXELS)
    async with serve(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
async def owner(client) -> dict:
    return await account(client, "seller")


async def new_product(client, seller) -> dict:
    r = await client.post("/products", headers=bearer(seller), json={"name": "Mug", "price": "9.50", "stock": 3})
    assert r.status_code == 201, r.text
    return r.json()


def picture(kind: str, size: tuple[int, int] = (64, 48), **save) -> bytes:
    """A picture with EXIF that says who took it and that it lies on its side."""
    image = Image.new("RGBA" if kind == "PNG" else "RGB", size, (10, 120, 200))
    exif = image.getexif()
    exif[0x013B] = "Ada Lovelace"  # Artist
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to show it upright
    out = io.BytesIO()
    image.save(out, kind, exif=exif, **save)
    return out.getvalue()


async def upload(client, seller, product_id: str, data: bytes, name: str = "photo.gif",
                 content_type: str = "text/plain"):
    """The client's name and type for the file are wrong on purpose: only its bytes count."""
    return await client.post(f"/products/{product_id}/images", headers=bearer(seller),
                             files={"file": (name, data, content_type)})


def stored(media: Path, product_id: str) -> list[Path]:
    return [p for p in (media / "products" / product_id).rglob("*") if p.is_file()]


@pytest.mark.parametrize("kind, content_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
async def test_an_upload_of_each_allowed_type_is_served_in_both_sizes_without_its_metadata(client, owner, media, kind,
                                                                                          content_type):
    product = await new_product(client, owner)
    data = picture(kind, (2400, 1800))
    r = await upload(client, owner, product["id"], data)
    assert r.status_code == 201, r.text
    (image,) = r.json()["images"]
    assert image["sha256"] == hashlib.sha256(data).hexdigest()
    # Turned upright by its EXIF orientation, then fitted into each size.
    assert (image["thumbnail"]["width"], image["thumbnail"]["height"]) == (240, 320)
    assert (image["display"]["width"], image["display"]["height"]) == (1200, 1600)
    for size in ("thumbnail", "display"):
        file = image[size]
        served = await client.get(file["url"])
        assert served.status_code == 200 and served.headers["content-type"] == content_type == file["content_type"]
        assert "max-age=31536000" in served.headers["cache-control"] and "immutable" in served.headers["cache-control"]
        digest = hashlib.sha256(served.content).hexdigest()
        assert file["url"] == f"/media/products/{product['id']}/{image['id']}/{digest}-{size}.{kind.lower()[:4]}" \
            .replace(".jpeg", ".jpg").replace(".jpe", ".jpg")
        assert len(served.content) == file["bytes"]
        shown = Image.open(io.BytesIO(served.content))
        assert shown.format == kind and shown.size == (file["width"], file["height"])
        assert not shown.getexif() and b"Ada Lovelace" not in served.content
    # Read-your-writes: the listing shows it at once.
    listed = (await client.get("/products", params={"seller_id": owner["id"], "limit": 100})).json()["items"]
    assert next(p for p in listed if p["id"] == product["id"])["images"] == [image]


def png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A real PNG of width x height grey pixels, a few kilobytes that decode to width x height bytes; or,
    with `rows`, one that claims that size but holds only so many rows."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])  # 8-bit greyscale
    pixels = zlib.compress(b"\0" * ((width + 1) * (height if rows is None else rows)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def claims_only(width: int, height: int) -> bytes:
    return png_bomb(width, height, rows=1)


def jpeg_with_comment(comment: bytes) -> bytes:
    data = picture("JPEG")
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


REFUSED = {
    "a text file": (b"just some words, not a picture\n" * 10, 415, "not a JPEG, PNG or WebP"),
    "a GIF": (b"GIF89a" + bytes(100), 415, "not a JPEG, PNG or WebP"),
    "an HTML page after a PNG": (picture("PNG") + b"<html><script>alert(1)</script></html>", 422, "after its PNG"),
    "a script in a JPEG comment": (jpeg_with_comment(b"<script>alert(1)</script>"), 422, "metadata holds"),
    "a zip after a JPEG": (picture("JPEG") + b"PK\x03\x04" + bytes(64), 422, "after its JPEG"),
    "a truncated PNG": (picture("PNG")[:-20], 422, "truncated"),
    "an oversized file": (picture("PNG", (600, 600)) + bytes(MAX_BYTES), 413, "MAX_IMAGE_BYTES"),
    "a pixel bomb": (png_bomb(3000, 3000), 422, "9000000 pixels"),
    "a header claiming 10^10 pixels": (claims_only(100_000, 100_000), 422, "MAX_IMAGE_PIXELS"),
}


@pytest.mark.parametrize("what", list(REFUSED))
async def test_an_upload_that_is_not_an_honest_image_is_refused_and_nothing_is_stored(client, owner, media, pool,
                                                                                      what):
    data, status, says = REFUSED[what]
    product = await new_product(client, owner)
    r = await upload(client, owner, product["id"], data, "photo.png", "image/png")
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json" and says in r.json()["detail"]
    assert stored(media, product["id"]) == []
    assert await versions(pool, product["id"]) == 1


async def versions(pool, product_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT max(version) FROM events WHERE stream_id = %s", (f"product-{product_id}",))
        return (await cur.fetchone())[0]


async def test_a_body_that_is_not_multipart_is_a_415(client, owner):
    product = await new_product(client, owner)
    r = await client.post(f"/products/{product['id']}/images", headers=bearer(owner), json={"file": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]


async def test_only_the_owner_or_an_admin_adds_or_removes_images_and_a_refusal_stores_nothing(client, owner, media,
                                                                                            pool, services):
    from tests.support import admin_account

    product = await new_product(client, owner)
    other, buyer = await account(client, "seller"), await account(client, "buyer")
    assert (await upload(client, other, product["id"], picture("PNG"))).status_code == 403
    assert (await upload(client, buyer, product["id"], picture("PNG"))).status_code == 403
    assert (await upload(client, owner, str(uuid.uuid4()), picture("PNG"))).status_code == 404
    assert stored(media, product["id"]) == [] and await versions(pool, product["id"]) == 1
    admin = await admin_account(client, pool, services.settings())
    image = (await upload(client, admin, product["id"], picture("PNG"))).json()["images"][0]
    gone = await client.delete(f"/products/{product['id']}/images/{image['id']}", headers=bearer(other))
    assert gone.status_code == 403 and len(stored(media, product["id"])) == 2


async def test_the_same_picture_twice_on_a_product_is_a_409(client, owner):
    product = await new_product(client, owner)
    first = (await upload(client, owner, product["id"], picture("JPEG"))).json()["images"][0]
    again = await upload(client, owner, product["id"], picture("JPEG"))
    assert again.status_code == 409 and again.json()["image_id"] == first["id"]


async def test_removing_an_image_deletes_its_files_and_the_catalog_forgets_it(client, owner, media):
    product = await new_product(client, owner)
    kept = (await upload(client, owner, product["id"], picture("WEBP"))).json()["images"][0]
    image = (await upload(client, owner, product["id"], picture("PNG"))).json()["images"][1]
    r = await client.delete(f"/products/{product['id']}/images/{image['id']}", headers=bearer(owner))
    assert r.status_code == 200 and r.json()["images"] == [kept]
    assert (await client.get(image["display"]["url"])).status_code == 404
    assert (await client.get(kept["display"]["url"])).status_code == 200
    assert len(stored(media, product["id"])) == 2
    listed = (await client.get(f"/products/{product['id']}")).json()
    assert [i["id"] for i in listed["images"]] == [kept["id"]]
    again = await client.delete(f"/products/{product['id']}/images/{image['id']}", headers=bearer(owner))
    assert again.status_code == 404


async def test_a_rebuild_reproduces_the_catalog_with_its_images_and_the_orders_with_their_payments(client, owner,
                                                                                                 services):
    product = await new_product(client, owner)
    await upload(client, owner, product["id"], picture("JPEG"))
    await upload(client, owner, product["id"], picture("PNG"))
    buyer = await account(client, "buyer")
    order = (await client.post("/orders", headers=bearer(buyer), json={
        "items": [{"product_id": product["id"], "quantity": 1}],
        "shipping_address": {"name": "B", "line1": "1", "city": "C", "postal_code": "1", "country": "GB"}})).json()
    session = (await client.post(f"/orders/{order['id']}/payment", headers=bearer(buyer))).json()
    await client.post(f"/payments/test/{session['session_id']}/succeed")
    result = await rebuild(services.database_url, verify=True, dry_run=True)
    assert result["differences"] == {"users": 0, "products": 0, "orders": 0, "order_lines": 0}, result.get("examples")


PUBLIC_READ = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",'
               ' "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shop-images/*"}]}')


@pytest.fixture(scope="module")
def s3():
    """moto's S3-compatible server, on this machine, for this module."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


async def test_images_go_to_an_s3_compatible_bucket_when_one_is_configured(services, projections_running, s3):
    from aiobotocore.session import get_session

    keys = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    async with get_session().create_client("s3", region_name="us-east-1", endpoint_url=s3, **keys) as bucket:
        await bucket.create_bucket(Bucket="shop-images")
        await bucket.put_bucket_policy(Bucket="shop-images", Policy=PUBLIC_READ)  # as the README asks of a bucket
        settings = services.settings(s3_bucket="shop-images", s3_endpoint_url=s3, s3_access_key_id="test",
                                     s3_secret_access_key="test", max_image_bytes=MAX_BYTES)
        async with serve(create_app(settings)) as client:
            seller = await account(client, "seller")
            product = await new_product(client, seller)
            refused = await upload(client, seller, product["id"], picture("PNG") + b"<html></html>")
            assert refused.status_code == 422
            assert (await bucket.list_objects_v2(Bucket="shop-images")).get("KeyCount") == 0
            image = (await upload(client, seller, product["id"], picture("JPEG", (900, 700)))).json()["images"][0]
            url = image["display"]["url"]
            assert url.startswith(f"{s3}/shop-images/products/{product['id']}/{image['id']}/")
            served = await client.get(url)  # from the bucket itself, not the API
            assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() in url
            key = url.removeprefix(f"{s3}/shop-images/")
            head = await bucket.head_object(Bucket="shop-images", Key=key)
            assert head["ContentType"] == "image/jpeg" and "immutable" in head["CacheControl"]
            assert (await client.get(url.replace(s3, str(client.base_url)).replace("/shop-images", "/media"))
                    ).status_code == 404  # with a bucket, the API serves no /media
            r = await client.delete(f"/products/{product['id']}/images/{image['id']}", headers=bearer(seller))
            assert r.status_code == 200
            assert (await bucket.list_objects_v2(Bucket="shop-images")).get("KeyCount") == 0
