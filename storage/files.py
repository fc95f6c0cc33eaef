"""The file store: where photos, results and thumbnails live — local disk or S3 (any S3-compatible store).

Both stores expose the same async :class:`FileStore` interface and the same key rules, so
the rest of the code never knows which one it has. Blocking I/O (disk, boto3) runs in threads.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_T = TypeVar("_T")

MAX_KEY_LENGTH = 1024  # S3's own limit, applied to both stores so keys stay portable
_KEY_SEGMENT = r"[A-Za-z0-9_.\-]+"
_KEY_PATTERN = re.compile(rf"{_KEY_SEGMENT}(?:/{_KEY_SEGMENT})*")
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_./\-]*")
# Temporary files of LocalFileStore contain "~", which no valid key can, so they can never
# collide with a key nor show up in ``list_keys``.
_TEMP_FILE_MARKER = ".~tmp-"

_S3_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class FileNotFoundInStore(FileNotFoundError):
    """No object under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no file stored under key {key!r}")
        self.key = key


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe for every backend, else raise ValueError.

    Safe: 1–1024 characters of ``[A-Za-z0-9/_.-]``, no leading or trailing ``/``, no empty,
    ``.`` or ``..`` segment, and no ``..`` at all, so a key can never leave the store's root.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"invalid file key {key!r}: must be 1..{MAX_KEY_LENGTH} characters")
    if ".." in key or not _KEY_PATTERN.fullmatch(key) or "." in key.split("/"):
        raise ValueError(f"unsafe file key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Like :func:`validate_key`, but may be empty and may end with ``/`` (a 'directory')."""
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise ValueError(f"invalid key prefix {prefix!r}")
    if prefix.startswith("/") or ".." in prefix or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"unsafe key prefix {prefix!r}")
    if "//" in prefix or "." in prefix.split("/")[:-1]:
        raise ValueError(f"unsafe key prefix {prefix!r}")
    return prefix


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    modified_at: datetime  # aware UTC: when the object was last written


@runtime_checkable
class FileStore(Protocol):
    """Binary objects under slash-separated keys. Every method validates its key (ValueError)."""

    async def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        """Store ``data`` under ``key``, replacing any previous object; readers never see a partial one."""
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; :class:`FileNotFoundInStore` if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def list_keys(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix`` (plain string prefix, as in S3), sorted."""
        ...

    async def list_objects(self, prefix: str = "") -> list[StoredObject]:
        """Like :meth:`list_keys`, with each object's last-modified time (housekeeping needs the age)."""
        ...

    async def url_for(self, key: str, expires_in: int = 3600) -> str | None:
        """A URL that fetches the object for ``expires_in`` seconds, or None if this store has none."""
        ...

    async def aclose(self) -> None: ...


class SignedFileUrls:
    """``{base_url}/files/{key}?exp=<unix time>&sig=<hex>`` links that our own web app answers.

    The signature is an HMAC of the key and the expiry with a server secret, so a link names exactly
    one object until one moment and cannot be turned into another: whoever holds it (a provider
    fetching a reference photo) reads that object through ``GET /files/{key}`` and nothing else,
    whichever store holds the bytes. ``base_url`` is only needed to make links; checking them needs
    the secret alone.
    """

    def __init__(self, secret: bytes, base_url: str = "", *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("signing_secret must be at least 16 bytes")
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    def with_base_url(self, base_url: str) -> SignedFileUrls:
        return SignedFileUrls(self._secret, base_url, clock=self._clock)

    def url_for(self, key: str, expires_in: int) -> str:
        validate_key(key)
        if not self._base_url:
            raise ValueError("signed file URLs need a base URL to point at")
        expires_at = int(self._clock()) + expires_in
        return f"{self._base_url}/files/{key}?exp={expires_at}&sig={self._signature(key, expires_at)}"

    def verify(self, key: str, exp: int | str, sig: str) -> bool:
        """True if (key, exp, sig) came from :meth:`url_for` with the same secret and has not expired."""
        if not _is_valid_key(key):
            return False
        try:
            expires_at = int(exp)
        except (TypeError, ValueError):
            return False
        if expires_at < self._clock():
            return False
        return hmac.compare_digest(self._signature(key, expires_at), str(sig))

    def _signature(self, key: str, expires_at: int) -> str:
        message = f"{key}\n{expires_at}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


class LocalFileStore:
    """Files under a root directory; optionally serves them through HMAC-signed URLs.

    With ``public_base_url`` and ``signing_secret``, :meth:`url_for` returns
    ``{public_base_url}/files/{key}?exp=<unix time>&sig=<hex>`` and the web app serving
    ``GET /files/{key}`` checks the query with :meth:`verify_signed_url` before returning
    :meth:`get`. That is how a provider can fetch a photo without S3 and without ever seeing
    a Telegram file URL.
    """

    def __init__(
        self,
        root: str | Path,
        public_base_url: str | None = None,
        signing_secret: bytes | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (public_base_url is None) != (signing_secret is None):
            raise ValueError("public_base_url and signing_secret must be given together")
        self._root = Path(root).resolve()
        self._signed_urls = (
            SignedFileUrls(signing_secret, public_base_url or "", clock=clock) if signing_secret is not None else None
        )

    @property
    def root(self) -> Path:
        return self._root

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (validated, always inside the root)."""
        return self._root.joinpath(*validate_key(key).split("/"))

    async def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        # The content type is not stored: the web app derives it from the key's extension.
        path = self.path_for(key)
        await asyncio.to_thread(self._write_atomically, path, bytes(data))

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file 0600: these are people's photos, only our user reads them.
        descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{_TEMP_FILE_MARKER}{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as temp_file:
                temp_file.write(data)
                temp_file.flush()
                # Without fsync a crash right after the rename can leave an empty file behind.
                os.fsync(temp_file.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise FileNotFoundInStore(key) from error

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            return  # a 'directory' is not an object; nothing stored under this key

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def list_keys(self, prefix: str = "") -> list[str]:
        return [stored.key for stored in await self.list_objects(prefix)]

    async def list_objects(self, prefix: str = "") -> list[StoredObject]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list_objects_blocking, prefix)

    def _list_objects_blocking(self, prefix: str) -> list[StoredObject]:
        # Walk only the deepest directory the prefix names, not the whole tree.
        directory_part = prefix.rpartition("/")[0]
        start = self._root.joinpath(*directory_part.split("/")) if directory_part else self._root
        found: list[StoredObject] = []
        for current, _dirs, files in os.walk(start):
            relative_dir = Path(current).relative_to(self._root).as_posix()
            for name in files:
                key = name if relative_dir == "." else f"{relative_dir}/{name}"
                if key.startswith(prefix) and _is_valid_key(key):
                    try:
                        modified = os.stat(os.path.join(current, name)).st_mtime
                    except FileNotFoundError:
                        continue  # deleted while we walked
                    found.append(StoredObject(key, datetime.fromtimestamp(modified, UTC)))
        found.sort(key=lambda stored: stored.key)
        return found

    async def url_for(self, key: str, expires_in: int = 3600) -> str | None:
        validate_key(key)
        if self._signed_urls is None:
            return None
        return self._signed_urls.url_for(key, expires_in)

    def verify_signed_url(self, key: str, exp: int | str, sig: str) -> bool:
        """True if (key, exp, sig) came from :meth:`url_for` of a store with the same secret and has not expired."""
        return self._signed_urls is not None and self._signed_urls.verify(key, exp, sig)

    async def aclose(self) -> None:
        return None


class S3FileStore:
    """Objects in one S3 bucket, through boto3 (blocking) on a small private thread pool.

    The pool is separate from asyncio's default executor so that slow S3 calls cannot starve
    the image processing that also runs in threads, and so its size matches boto3's
    connection pool. The bucket is never created implicitly; see :meth:`ensure_bucket`.
    """

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str | None,
        access_key: str | None,
        secret_key: str | None,
        *,
        client: Any = None,
        max_concurrency: int = 8,
        list_page_size: int = 1000,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is required")
        self._bucket = bucket
        self._region = region
        self._list_page_size = list_page_size
        self._owns_client = client is None
        if client is None:
            config = Config(
                signature_version="s3v4",
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=max_concurrency,
                # S3-compatible servers (MinIO, moto, most VPS offerings) expect path-style URLs.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            # An own Session, not boto3's module-level default one.
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
        self._client = client
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="s3-file-store")

    @property
    def bucket(self) -> str:
        return self._bucket

    async def _run(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (an explicit step for setup scripts and tests)."""
        await self._run(self._ensure_bucket_blocking)

    def _ensure_bucket_blocking(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
            return
        except ClientError as error:
            if _error_code(error) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        create_arguments: dict[str, Any] = {"Bucket": self._bucket}
        if self._region and self._region != "us-east-1":
            create_arguments["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**create_arguments)
        except ClientError as error:
            if _error_code(error) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    async def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
        validate_key(key)
        # A single PUT is atomic in S3: readers see the old object or the new one, never a part.
        await self._run(
            self._client.put_object, Bucket=self._bucket, Key=key, Body=bytes(data), ContentType=content_type
        )

    async def get(self, key: str) -> bytes:
        validate_key(key)
        return await self._run(self._get_blocking, key)

    def _get_blocking(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _S3_MISSING_KEY_CODES:
                raise FileNotFoundInStore(key) from error
            raise
        with response["Body"] as body:
            data: bytes = body.read()
            return data

    async def delete(self, key: str) -> None:
        validate_key(key)
        # DeleteObject already succeeds for a missing key.
        await self._run(self._client.delete_object, Bucket=self._bucket, Key=key)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        return await self._run(self._exists_blocking, key)

    def _exists_blocking(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _S3_MISSING_KEY_CODES:
                return False
            raise
        return True

    async def content_type(self, key: str) -> str:
        """The Content-Type stored with the object (S3 keeps it; used by tests and diagnostics)."""
        validate_key(key)
        return await self._run(self._content_type_blocking, key)

    def _content_type_blocking(self, key: str) -> str:
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _S3_MISSING_KEY_CODES:
                raise FileNotFoundInStore(key) from error
            raise
        return str(response.get("ContentType", ""))

    async def list_keys(self, prefix: str = "") -> list[str]:
        return [stored.key for stored in await self.list_objects(prefix)]

    async def list_objects(self, prefix: str = "") -> list[StoredObject]:
        validate_prefix(prefix)
        return await self._run(self._list_objects_blocking, prefix)

    def _list_objects_blocking(self, prefix: str) -> list[StoredObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": self._list_page_size}
        )
        found = [
            StoredObject(item["Key"], item["LastModified"].astimezone(UTC))
            for page in pages
            for item in page.get("Contents", ())
        ]
        found.sort(key=lambda stored: stored.key)
        return found

    async def url_for(self, key: str, expires_in: int = 3600) -> str | None:
        validate_key(key)
        # Presigning is local computation (no request), but boto3 may resolve credentials or
        # endpoints on first use, so it stays off the event loop like every other call.
        return await self._run(
            self._client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self._bucket, "Key": key},
            ExpiresIn=expires_in,
        )

    async def aclose(self) -> None:
        # Let calls already in flight finish, then release the threads and connections.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._owns_client:
            self._client.close()


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
