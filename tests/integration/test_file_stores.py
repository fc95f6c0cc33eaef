"""One behavioural suite for every FileStore: local disk, and S3 over HTTP (moto's server, via boto3)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError

from storage.files import FileNotFoundInStore, FileStore, LocalFileStore, S3FileStore
from tests.moto_server import MotoS3Server, moto_s3_endpoint, unique_bucket_name

__all__ = ["moto_s3_endpoint"]  # the imported fixture is used by name

SIGNING_SECRET = b"test-signing-secret-0123456789"
PUBLIC_BASE_URL = "https://pinglass.example/"

UNSAFE_KEYS = [
    "",
    "/absolute/path.jpg",
    "../escape.jpg",
    "avatars/../../etc/passwd",
    "avatars/..",
    "a/./b.jpg",
    "a//b.jpg",
    "trailing/",
    "with space.jpg",
    "back\\slash.jpg",
    "ключ.jpg",
    "query?x=1",
    "percent%2F..",
    "x" * 1025,
]


def make_s3_store(server: MotoS3Server, bucket: str, **options: object) -> S3FileStore:
    return S3FileStore(bucket, server.endpoint_url, server.region, server.access_key, server.secret_key, **options)


@pytest_asyncio.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, moto_s3_endpoint: MotoS3Server
) -> AsyncIterator[FileStore]:
    file_store: FileStore
    if request.param == "local":
        file_store = LocalFileStore(tmp_path / "files", PUBLIC_BASE_URL, SIGNING_SECRET)
    else:
        s3_store = make_s3_store(moto_s3_endpoint, unique_bucket_name())
        await s3_store.ensure_bucket()
        file_store = s3_store
    yield file_store
    await file_store.aclose()


# --- the shared contract -------------------------------------------------------------------


async def test_put_then_get_returns_the_same_bytes(store: FileStore) -> None:
    payload = os.urandom(1024) + b"\x00\xff"
    await store.put("avatars/1/photo_1.jpg", payload)
    assert await store.get("avatars/1/photo_1.jpg") == payload


async def test_put_replaces_the_previous_object(store: FileStore) -> None:
    await store.put("results/7/1.png", b"first version", content_type="image/png")
    await store.put("results/7/1.png", b"second", content_type="image/png")
    assert await store.get("results/7/1.png") == b"second"


async def test_a_multi_megabyte_object_round_trips(store: FileStore) -> None:
    payload = os.urandom(6 * 1024 * 1024)
    await store.put("results/big.png", payload, content_type="image/png")
    assert await store.get("results/big.png") == payload


async def test_empty_object_is_stored(store: FileStore) -> None:
    await store.put("empty.bin", b"", content_type="application/octet-stream")
    assert await store.exists("empty.bin")
    assert await store.get("empty.bin") == b""


async def test_exists_reflects_put_and_delete(store: FileStore) -> None:
    assert not await store.exists("thumbs/1.jpg")
    await store.put("thumbs/1.jpg", b"jpeg")
    assert await store.exists("thumbs/1.jpg")
    await store.delete("thumbs/1.jpg")
    assert not await store.exists("thumbs/1.jpg")


async def test_a_directory_like_prefix_is_not_an_object(store: FileStore) -> None:
    await store.put("avatars/5/photo.jpg", b"jpeg")
    assert not await store.exists("avatars/5")
    with pytest.raises(FileNotFoundInStore):
        await store.get("avatars/5")


async def test_delete_is_idempotent(store: FileStore) -> None:
    await store.put("tmp/x.jpg", b"data")
    await store.delete("tmp/x.jpg")
    await store.delete("tmp/x.jpg")
    await store.delete("never/existed.jpg")
    with pytest.raises(FileNotFoundInStore):
        await store.get("tmp/x.jpg")


async def test_get_of_a_missing_key_raises_file_not_found_in_store(store: FileStore) -> None:
    with pytest.raises(FileNotFoundInStore) as raised:
        await store.get("missing/key.jpg")
    assert isinstance(raised.value, FileNotFoundError)
    assert raised.value.key == "missing/key.jpg"


async def test_list_keys_uses_plain_string_prefixes_and_sorts(store: FileStore) -> None:
    keys = ["a/2.jpg", "a/1.jpg", "a/sub/3.jpg", "ab/4.jpg", "b/5.jpg", "top.jpg"]
    for key in keys:
        await store.put(key, key.encode())
    assert await store.list_keys("a/") == ["a/1.jpg", "a/2.jpg", "a/sub/3.jpg"]
    assert await store.list_keys("a") == ["a/1.jpg", "a/2.jpg", "a/sub/3.jpg", "ab/4.jpg"]
    assert await store.list_keys("a/sub/3") == ["a/sub/3.jpg"]
    assert await store.list_keys("") == sorted(keys)
    assert await store.list_keys("c/") == []
    assert await store.list_keys("a/1.jpg/") == []


async def test_list_objects_gives_each_objects_last_write_time(store: FileStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 keeps whole seconds
    await store.put("age/old.jpg", b"1")
    await store.put("age/new.jpg", b"2")
    listed = await store.list_objects("age/")
    after = datetime.now(UTC) + timedelta(seconds=2)
    assert [item.key for item in listed] == ["age/new.jpg", "age/old.jpg"]
    assert all(before <= item.modified_at <= after and item.modified_at.tzinfo is not None for item in listed)


async def test_list_keys_rejects_unsafe_prefixes(store: FileStore) -> None:
    for prefix in ("/a", "../", "a/../b", "a b", "a//"):
        with pytest.raises(ValueError):
            await store.list_keys(prefix)


@pytest.mark.parametrize("key", UNSAFE_KEYS)
async def test_unsafe_keys_are_refused_by_every_method(store: FileStore, key: str) -> None:
    with pytest.raises(ValueError):
        await store.put(key, b"x")
    with pytest.raises(ValueError):
        await store.get(key)
    with pytest.raises(ValueError):
        await store.delete(key)
    with pytest.raises(ValueError):
        await store.exists(key)
    with pytest.raises(ValueError):
        await store.url_for(key)
    assert await store.list_keys("") == []


async def test_concurrent_puts_all_land(store: FileStore) -> None:
    keys = [f"batch/{index:03d}.jpg" for index in range(40)]
    await asyncio.gather(*(store.put(key, key.encode()) for key in keys))
    assert await store.list_keys("batch/") == keys
    contents = await asyncio.gather(*(store.get(key) for key in keys))
    assert contents == [key.encode() for key in keys]


# --- S3 specifics -----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def s3_store(moto_s3_endpoint: MotoS3Server) -> AsyncIterator[S3FileStore]:
    store = make_s3_store(moto_s3_endpoint, unique_bucket_name())
    await store.ensure_bucket()
    yield store
    await store.aclose()


@pytest.fixture
def raw_s3_client(moto_s3_endpoint: MotoS3Server) -> Iterator[object]:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=moto_s3_endpoint.endpoint_url,
        region_name=moto_s3_endpoint.region,
        aws_access_key_id=moto_s3_endpoint.access_key,
        aws_secret_access_key=moto_s3_endpoint.secret_key,
    )
    yield client
    client.close()


async def test_s3_stores_the_content_type(s3_store: S3FileStore) -> None:
    await s3_store.put("results/1.png", b"png", content_type="image/png")
    await s3_store.put("results/1.jpg", b"jpg")
    assert await s3_store.content_type("results/1.png") == "image/png"
    assert await s3_store.content_type("results/1.jpg") == "image/jpeg"


async def test_s3_presigned_url_serves_the_object_with_its_content_type_and_is_signed(s3_store: S3FileStore) -> None:
    await s3_store.put("results/2.png", b"png bytes", content_type="image/png")
    url = await s3_store.url_for("results/2.png", expires_in=120)
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert "X-Amz-Signature" in query
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b"png bytes"
    assert response.headers["content-type"] == "image/png"


async def test_s3_presigned_url_of_a_missing_key_is_404(s3_store: S3FileStore) -> None:
    url = await s3_store.url_for("missing.jpg")
    assert url is not None
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 404


async def test_s3_list_keys_follows_pagination(moto_s3_endpoint: MotoS3Server) -> None:
    store = make_s3_store(moto_s3_endpoint, unique_bucket_name(), list_page_size=2)
    await store.ensure_bucket()
    try:
        keys = [f"orphans/{index}.jpg" for index in range(7)]
        for key in keys:
            await store.put(key, b"x")
        assert await store.list_keys("orphans/") == sorted(keys)
    finally:
        await store.aclose()


async def test_s3_never_creates_the_bucket_implicitly(moto_s3_endpoint: MotoS3Server, raw_s3_client: object) -> None:
    bucket = unique_bucket_name("absent")
    store = make_s3_store(moto_s3_endpoint, bucket)
    try:
        with pytest.raises(ClientError) as raised:
            await store.put("a.jpg", b"x")
        assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
        # A missing bucket is a configuration error, not a missing file.
        with pytest.raises(ClientError):
            await store.get("a.jpg")
        names = [entry["Name"] for entry in raw_s3_client.list_buckets()["Buckets"]]  # type: ignore[attr-defined]
        assert bucket not in names
    finally:
        await store.aclose()


async def test_s3_ensure_bucket_creates_once_and_is_idempotent(
    moto_s3_endpoint: MotoS3Server, raw_s3_client: object
) -> None:
    bucket = unique_bucket_name("ensure")
    store = make_s3_store(moto_s3_endpoint, bucket)
    try:
        await store.ensure_bucket()
        await store.ensure_bucket()
        names = [entry["Name"] for entry in raw_s3_client.list_buckets()["Buckets"]]  # type: ignore[attr-defined]
        assert bucket in names
        await store.put("a.jpg", b"x")
        assert await store.get("a.jpg") == b"x"
    finally:
        await store.aclose()


async def test_s3_objects_are_visible_to_other_s3_clients(s3_store: S3FileStore, raw_s3_client: object) -> None:
    await s3_store.put("shared/1.jpg", b"seen by others")
    response = raw_s3_client.get_object(Bucket=s3_store.bucket, Key="shared/1.jpg")  # type: ignore[attr-defined]
    assert response["Body"].read() == b"seen by others"


async def test_s3_with_a_given_client_leaves_it_open(moto_s3_endpoint: MotoS3Server, raw_s3_client: object) -> None:
    bucket = unique_bucket_name("shared-client")
    store = S3FileStore(bucket, None, None, None, None, client=raw_s3_client)
    await store.ensure_bucket()
    await store.put("a.jpg", b"x")
    await store.aclose()
    # The caller owns the client: it must still work after the store is closed.
    assert raw_s3_client.get_object(Bucket=bucket, Key="a.jpg")["Body"].read() == b"x"  # type: ignore[attr-defined]


async def test_s3_calls_after_aclose_fail(moto_s3_endpoint: MotoS3Server) -> None:
    store = make_s3_store(moto_s3_endpoint, unique_bucket_name())
    await store.ensure_bucket()
    await store.aclose()
    with pytest.raises(RuntimeError):
        await store.put("a.jpg", b"x")


# --- local specifics --------------------------------------------------------------------------


async def test_local_files_live_under_the_root_with_owner_only_permissions(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "files")
    await store.put("avatars/3/photo_1.jpg", b"jpeg")
    path = tmp_path / "files" / "avatars" / "3" / "photo_1.jpg"
    assert path.read_bytes() == b"jpeg"
    assert store.path_for("avatars/3/photo_1.jpg") == path.resolve()
    assert path.stat().st_mode & 0o077 == 0


async def test_local_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalFileStore(tmp_path)
    await store.put("a/photo.jpg", b"old")

    def failing_replace(source: str, destination: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        await store.put("a/photo.jpg", b"new")
    monkeypatch.undo()
    assert await store.get("a/photo.jpg") == b"old"
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["photo.jpg"]


async def test_local_list_keys_skips_temporary_and_foreign_files(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    await store.put("a/photo.jpg", b"x")
    (tmp_path / "a" / ".~tmp-photo.jpg.abc123").write_bytes(b"half written")
    (tmp_path / "a" / "name with space.jpg").write_bytes(b"not ours")
    assert await store.list_keys("") == ["a/photo.jpg"]


async def test_local_without_public_url_has_no_urls(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    assert await store.url_for("a.jpg") is None
    assert not store.verify_signed_url("a.jpg", 9_999_999_999, "0" * 64)


def test_local_requires_url_and_secret_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalFileStore(tmp_path, public_base_url="https://x.example")
    with pytest.raises(ValueError):
        LocalFileStore(tmp_path, signing_secret=SIGNING_SECRET)
    with pytest.raises(ValueError):
        LocalFileStore(tmp_path, "https://x.example", b"short")


async def test_local_url_signer_and_verifier(tmp_path: Path) -> None:
    """The URL ``url_for`` signs and ``verify_signed_url`` checks, directly: no route of the web app
    serves ``/files/...`` (bot/web.py), so there is no endpoint of ours to fetch these URLs from."""
    now = [1_700_000_000.0]
    store = LocalFileStore(tmp_path, PUBLIC_BASE_URL, SIGNING_SECRET, clock=lambda: now[0])
    url = await store.url_for("avatars/1/photo.jpg", expires_in=600)
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://pinglass.example/files/avatars/1/photo.jpg"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    exp, sig = query["exp"], query["sig"]
    assert int(exp) == 1_700_000_600

    assert store.verify_signed_url(parts.path.removeprefix("/files/"), exp, sig)  # the URL carries its key
    assert store.verify_signed_url("avatars/1/photo.jpg", int(exp), sig)
    assert not store.verify_signed_url("avatars/1/photo.jpg", "", "")  # the query dropped
    assert not store.verify_signed_url("avatars/1/photo.jpg", exp, "")
    assert not store.verify_signed_url("avatars/1/other.jpg", exp, sig)
    assert not store.verify_signed_url("avatars/1/photo.jpg", str(int(exp) + 1), sig)
    assert not store.verify_signed_url("avatars/1/photo.jpg", exp, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    assert not store.verify_signed_url("avatars/1/photo.jpg", "not-a-number", sig)
    assert not store.verify_signed_url("../avatars/1/photo.jpg", exp, sig)

    other_secret = LocalFileStore(tmp_path, PUBLIC_BASE_URL, b"another-secret-0123456789", clock=lambda: now[0])
    assert not other_secret.verify_signed_url("avatars/1/photo.jpg", exp, sig)

    now[0] += 600
    assert store.verify_signed_url("avatars/1/photo.jpg", exp, sig)
    now[0] += 1
    assert not store.verify_signed_url("avatars/1/photo.jpg", exp, sig)
