"""A minimal storage layer over local paths and `s3://` URIs.

Every function takes a location string: a local path (absolute or relative) or an
`s3://bucket/key` URI. S3 access goes through boto3; the endpoint honours `AWS_ENDPOINT_URL_S3`
and then `AWS_ENDPOINT_URL` (so tests and local pipelines can point at `moto_server`).

Writes are atomic: a reader never sees a half-written object under its final name.
- local: the bytes go to a temporary sibling (`layout.temp_name`: a dot name no reader lists),
  which is fsync'ed and then `os.replace`d onto the final name;
- S3: a single PUT, or a multipart upload for large output; either becomes visible only when it
  completes (an aborted multipart upload leaves nothing).

The API is deliberately small (the Glue job reuses it):

    is_s3(loc) / split_s3(uri) / join(base, *parts)
    list_files(loc) -> list[str]            # every object/file under a dir or prefix, sorted
    exists(loc) / size(loc)
    open_read(loc, start=0) -> BinaryIO     # streaming read, from byte `start`
    read_bytes(loc) / read_text(loc)
    open_write(loc) -> context manager      # streaming, atomic at close, nothing on error
    write_bytes(loc, data) / write_text(loc, text)
    delete(loc) / copy(src, dst) / move(src, dst)
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from diffcore import layout

S3_SCHEME = "s3://"
# Multipart upload: S3 needs >= 5 MiB per part except the last; output below one part is one PUT.
MULTIPART_PART_SIZE = 16 * 1024 * 1024

_client_lock = threading.Lock()
_clients: dict[tuple[str | None, int], Any] = {}


# --------------------------------------------------------------------------------------------
# Locations


def is_s3(location: str) -> bool:
    """True for an `s3://` URI."""
    return location.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> `("bucket", "a/b")`."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key


def join(base: str, *parts: str) -> str:
    """Join a local path or s3:// URI with `/` (see `layout.join`)."""
    return layout.join(base, *parts)


def basename(location: str) -> str:
    return location.rstrip("/").rpartition("/")[2]


def parent(location: str) -> str:
    return location.rstrip("/").rpartition("/")[0]


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint (one per process and endpoint)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    cache_key = (endpoint, os.getpid())
    with _client_lock:
        client = _clients.get(cache_key)
        if client is None:
            import boto3  # imported lazily: local-only runs never pay for it
            from botocore.config import Config

            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint or None,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
            _clients[cache_key] = client
        return client


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class StoreError(OSError):
    """A storage request failed (S3 refused or could not be reached, a local folder could not be
    listed): the message names the location, and for S3 the bucket and S3's error code.

    An `OSError`, so every caller's I/O handling (`io_error`, exit 8) covers S3 as well."""


def is_aws_error(exc: BaseException) -> bool:
    # botocore's ClientError and BotoCoreError (no credentials, endpoint unreachable, ...),
    # and urllib3's errors while a response body streams; told by module so that local-only
    # runs never import botocore.
    return type(exc).__module__.split(".")[0] in ("botocore", "urllib3", "boto3")


def s3_error(exc: BaseException, location: str, action: str) -> StoreError:
    """A botocore exception as a `StoreError` naming the bucket, the location and the cause."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(error.get("Code", "") or type(exc).__name__)
    text = str(error.get("Message", "") or exc)
    bucket = split_s3(location)[0] if is_s3(location) else ""
    if code == "NoSuchBucket":
        return StoreError(f"cannot {action} {location}: bucket {bucket!r} does not exist")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId"):
        return StoreError(f"cannot {action} {location}: access denied ({code}: {text})")
    return StoreError(f"cannot {action} {location}: {code}: {text}")


@contextmanager
def s3_errors(location: str, action: str) -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into `StoreError`s (not-found ones
    too: callers that expect a missing object catch it first)."""
    try:
        yield
    except Exception as exc:
        if is_aws_error(exc):
            raise s3_error(exc, location, action) from exc
        raise


# --------------------------------------------------------------------------------------------
# Reading


def list_files(location: str) -> list[str]:
    """Every file under a directory or S3 prefix (recursively), as full locations, sorted.

    A local file (or an S3 object whose key is exactly `location`) lists as itself. An S3
    location is a folder-like prefix: `s3://b/x` lists `s3://b/x` itself if it exists, and the
    objects under `s3://b/x/` (never `s3://b/x2/...`). A missing location lists as empty.
    Nothing is filtered here: callers decide which names matter.
    """
    if is_s3(location):
        bucket, key = split_s3(location)
        out: list[str] = []
        if key and not key.endswith("/") and exists(location):
            out.append(location)
        prefix = key if (not key or key.endswith("/")) else key + "/"
        with s3_errors(location, "list"):
            paginator = s3_client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if not obj["Key"].endswith("/"):  # "folder" placeholder objects
                        out.append(f"{S3_SCHEME}{bucket}/{obj['Key']}")
        return sorted(set(out))
    if os.path.isdir(location):
        return _walk(location)
    if os.path.lexists(location):
        return [location]  # a file, or something else that callers refuse by name
    return []


def _walk(top: str) -> list[str]:
    """Every non-directory entry under a local folder, following symlinked folders.

    Nothing is skipped silently: a folder that cannot be listed, a symlink loop, or a second
    link to a folder already listed (its records would be read twice) raise `StoreError`
    naming the path."""
    seen = {os.path.realpath(top): top}

    def fail(exc: OSError) -> None:
        raise StoreError(f"cannot list {exc.filename or top}: {exc.strerror or exc}") from exc

    found = []
    for root, dirs, files in os.walk(top, onerror=fail, followlinks=True):
        dirs.sort()
        for name in dirs:
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if real in seen:
                raise StoreError(
                    f"{path} leads to {real}, already listed as {seen[real]}: a symlink loop or "
                    "a second link to one folder (its files would be read twice)"
                )
            seen[real] = path
        found.extend(os.path.join(root, name) for name in files)
    return sorted(found)


def exists(location: str) -> bool:
    """Whether a file/object exists (a local directory does not count)."""
    if is_s3(location):
        bucket, key = split_s3(location)
        if not key:
            return False
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:  # botocore.exceptions.ClientError
            if _is_not_found(exc):
                return False
            if is_aws_error(exc):
                raise s3_error(exc, location, "look up") from exc
            raise
    return os.path.isfile(location)


def size(location: str) -> int:
    """Size in bytes of a file/object."""
    if is_s3(location):
        bucket, key = split_s3(location)
        with s3_errors(location, "look up"):
            return int(s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
    return os.path.getsize(location)


class _S3Reader(io.RawIOBase):
    """A readable, non-seekable binary stream over an S3 GetObject body."""

    def __init__(self, body: Any, location: str) -> None:
        self._body = body
        self._location = location

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with s3_errors(self._location, "read"):  # a connection lost mid-stream
            data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()


def open_read(location: str, start: int = 0) -> BinaryIO:
    """Open a file/object for streaming binary reading (close it, or use `with`), positioned
    at byte `start` (S3: a ranged GET; `start` must be below the size, or S3 refuses it).

    Raises `FileNotFoundError` when it does not exist.
    """
    if is_s3(location):
        bucket, key = split_s3(location)
        ranged = {"Range": f"bytes={start}-"} if start > 0 else {}
        try:
            body = s3_client().get_object(Bucket=bucket, Key=key, **ranged)["Body"]
        except Exception as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(location) from None
            if is_aws_error(exc):
                raise s3_error(exc, location, "read") from exc
            raise
        return io.BufferedReader(_S3Reader(body, location), buffer_size=1024 * 1024)  # type: ignore[return-value]
    f = open(location, "rb")  # noqa: SIM115 - the caller closes it
    f.seek(start)
    return f


def read_bytes(location: str) -> bytes:
    """The whole content of a file/object."""
    with open_read(location) as f:
        return f.read()


def read_text(location: str, encoding: str = "utf-8") -> str:
    return read_bytes(location).decode(encoding)


# --------------------------------------------------------------------------------------------
# Writing


class _LocalAtomicWriter(io.RawIOBase):
    def __init__(self, final: str) -> None:
        directory, name = os.path.split(os.path.abspath(final))
        os.makedirs(directory, exist_ok=True)
        self.final = final
        self.temp = os.path.join(
            directory, layout.temp_name(name, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        )
        self._f = open(self.temp, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._f.write(data)

    def commit(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.temp, self.final)

    def abort(self) -> None:
        try:
            self._f.close()
        except OSError:  # a full disk fails the close's flush too; the file goes anyway
            pass
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


class _S3AtomicWriter(io.RawIOBase):
    """Buffers up to one part; a small object is one PUT, a large one a multipart upload."""

    def __init__(self, uri: str, part_size: int = MULTIPART_PART_SIZE) -> None:
        self.bucket, self.key = split_s3(uri)
        self.part_size = max(part_size, 5 * 1024 * 1024)
        self._client = s3_client()
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) >= self.part_size:
            self._upload_part(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(data)

    def _upload_part(self, chunk: bytes) -> None:
        with s3_errors(f"{S3_SCHEME}{self.bucket}/{self.key}", "write"):
            self._upload_part_unchecked(chunk)

    def _upload_part_unchecked(self, chunk: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key
            )["UploadId"]
        number = len(self._parts) + 1
        etag = self._client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=chunk,
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def commit(self) -> None:
        with s3_errors(f"{S3_SCHEME}{self.bucket}/{self.key}", "write"):
            self._commit()

    def _commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._upload_part_unchecked(bytes(self._buffer))
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer = bytearray()

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )
            except Exception:  # best effort; S3 lifecycle rules clean up the rest
                pass


@contextmanager
def open_write(location: str) -> Iterator[BinaryIO]:
    """Write a file/object as a stream; it appears under its name only if the block succeeds.

        with store.open_write("s3://b/2026-11-25/part-00000.jsonl") as f:
            f.write(b"...")

    On an exception nothing is left behind (temporary file removed / multipart upload aborted).
    """
    writer: _LocalAtomicWriter | _S3AtomicWriter
    writer = _S3AtomicWriter(location) if is_s3(location) else _LocalAtomicWriter(location)
    try:
        yield writer  # type: ignore[misc]
        writer.commit()
    except BaseException:
        writer.abort()  # also when the commit fails (a full disk at fsync): no temporary stays
        raise


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file/object atomically (replacing any previous one)."""
    with open_write(location) as f:
        f.write(data)


def write_text(location: str, text: str, encoding: str = "utf-8") -> None:
    write_bytes(location, text.encode(encoding))


def delete(location: str) -> None:
    """Delete a file/object; deleting something that does not exist is not an error."""
    if is_s3(location):
        bucket, key = split_s3(location)
        with s3_errors(location, "delete"):
            s3_client().delete_object(Bucket=bucket, Key=key)
        return
    try:
        os.unlink(location)
    except FileNotFoundError:
        pass


def copy(src: str, dst: str) -> None:
    """Copy a file/object. S3 to S3 is a server-side copy (multipart for large objects);
    anything else streams the bytes through an atomic write."""
    if is_s3(src) and is_s3(dst):
        sb, sk = split_s3(src)
        db, dk = split_s3(dst)
        with s3_errors(dst, f"copy {src} to"):
            s3_client().copy({"Bucket": sb, "Key": sk}, db, dk)
        return
    with open_read(src) as fin, open_write(dst) as fout:
        shutil.copyfileobj(fin, fout, 8 * 1024 * 1024)


def move(src: str, dst: str) -> None:
    """Rename a file/object: `os.replace` locally (atomic), copy then delete elsewhere."""
    if not is_s3(src) and not is_s3(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        os.replace(src, dst)
        return
    copy(src, dst)
    delete(src)
