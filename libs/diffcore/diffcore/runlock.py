"""One run owns a date: the lock of `<diffs>/<D>/` (docs/decisions.md, "two runs for one date").

Two runs for one date at once (the CLI twice, a manual backfill beside the schedule, the CLI
beside the Glue job) would delete each other's parts and the last manifest would win over files
it does not describe. So a run takes `<D>/_lock.json` before its first write, checks that it
still holds it before it deletes anything or writes the manifest, and gives it back at the end.
A second run fails at once with `concurrent_run`, naming the owner; the owner's day is exactly
its own.

- Local folder: an exclusive `flock` on the lock file. The kernel releases it when the process
  dies, even by SIGKILL, so a dead run never blocks the next one.
- S3: a conditional PUT (`If-None-Match: *`) creates the lock object only if it is absent; its
  ETag is the owner's token. A lock whose `expires` has passed (a run killed without cleaning
  up) is taken over by a PUT conditional on its ETag (`If-Match`), so of two runs taking over,
  one wins. The release is a DELETE conditional on the owner's ETag.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from diffcore import layout, store
from diffcore.errors import DiffError, ErrorClass

# A run older than this is presumed dead if it still holds an S3 lock (local locks need no
# expiry). Longer than any run the Glue job's timeout allows (infra: `glue_timeout_minutes`).
DEFAULT_S3_LOCK_TTL = timedelta(hours=12)


def new_run_id() -> str:
    """`20261125T020001-1a2b3c4d`: sortable by start time, unique."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Owner:
    """Who holds a date (the lock file's content)."""

    run_id: str
    host: str
    pid: int
    started: str
    expires: str

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> Owner | None:
        try:
            obj = json.loads(data)
            return cls(**{k: obj[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.started})"


def _owner(run_id: str, ttl: timedelta) -> Owner:
    now = datetime.now(UTC)
    return Owner(
        run_id=run_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        started=now.isoformat(timespec="seconds"),
        expires=(now + ttl).isoformat(timespec="seconds"),
    )


def _refused(folder: str, holder: Owner | None, lock: str, hint: str) -> DiffError:
    who = holder.describe() if holder else "another run"
    return DiffError(
        ErrorClass.CONCURRENT_RUN,
        f"{who} is writing {folder}; this run wrote nothing. {hint}",
        file=lock,
    )


class RunLock:
    """The lock of one run folder, held by one run (`acquire`, `verify`, `release`)."""

    def __init__(self, folder: str, run_id: str, ttl: timedelta = DEFAULT_S3_LOCK_TTL) -> None:
        self.folder = folder.rstrip("/")
        self.location = store.join(self.folder, layout.LOCK_NAME)
        self.owner = _owner(run_id, ttl)
        self._fd: int | None = None  # local: the flock'ed descriptor
        self._etag: str | None = None  # S3: the lock object's ETag while held

    @property
    def held(self) -> bool:
        return self._fd is not None or self._etag is not None

    # -- acquire ----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the date or raise `DiffError(concurrent_run)` naming the owner."""
        if store.is_s3(self.location):
            self._acquire_s3()
        else:
            self._acquire_local()

    def _acquire_local(self) -> None:
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.location, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Owner.parse(os.pread(fd, 4096, 0))
                os.close(fd)
                raise _refused(
                    self.folder, holder, self.location, "Wait for it to finish, then rerun."
                ) from None
            # The holder before us may have unlinked the file between our open and our flock:
            # then we hold a lock on a file nobody else sees; start again on the current one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.location))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.owner.to_json(), 0)
        self._fd = fd

    def _acquire_s3(self) -> None:
        bucket, key = store.split_s3(self.location)
        client = store.s3_client()
        body = self.owner.to_json()
        try:
            self._etag = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")[
                "ETag"
            ]
            return
        except Exception as exc:
            if not _precondition_failed(exc):
                raise _storage_error(exc, self.location) from exc
        try:
            current = client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _not_found(exc):  # released between our PUT and GET: try once more
                return self._acquire_s3()
            raise _storage_error(exc, self.location) from exc
        holder = Owner.parse(current["Body"].read())
        if holder is not None and not _expired(holder):
            raise _refused(
                self.folder,
                holder,
                self.location,
                f"Wait for it to finish; if it died, its lock expires at {holder.expires}, "
                f"or delete {self.location} once you are sure it is not running.",
            )
        try:  # expired (or unreadable): take it over, unless another run did just now
            self._etag = client.put_object(
                Bucket=bucket, Key=key, Body=body, IfMatch=current["ETag"]
            )["ETag"]
        except Exception as exc:
            if _precondition_failed(exc):
                raise _refused(
                    self.folder, None, self.location, "Another run took over the expired lock."
                ) from None
            raise _storage_error(exc, self.location) from exc

    # -- verify -----------------------------------------------------------------------------
    def verify(self) -> None:
        """Raise `concurrent_run` unless this run still holds the date (checked before the
        run deletes anything or writes its manifest)."""
        if not self.held:
            raise RuntimeError("verify() before acquire()")
        if self._fd is not None:
            try:
                same = os.path.samestat(os.fstat(self._fd), os.stat(self.location))
            except FileNotFoundError:
                same = False
            if same:
                return
            holder = None
        else:
            bucket, key = store.split_s3(self.location)
            try:
                head = store.s3_client().head_object(Bucket=bucket, Key=key)
                if head["ETag"] == self._etag:
                    return
                holder = Owner.parse(store.read_bytes(self.location))
            except FileNotFoundError:
                holder = None
            except Exception as exc:
                if not _not_found(exc):
                    raise _storage_error(exc, self.location) from exc
                holder = None
        raise _refused(
            self.folder,
            holder,
            self.location,
            "This run lost its lock (it expired or was removed).",
        )

    # -- release ----------------------------------------------------------------------------
    def release(self) -> None:
        """Give the date back (idempotent). Never removes a lock another run holds."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.location)):
                    os.unlink(self.location)  # while still locked: nobody holds the name
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
        elif self._etag is not None:
            etag, self._etag = self._etag, None
            bucket, key = store.split_s3(self.location)
            try:
                store.s3_client().delete_object(Bucket=bucket, Key=key, IfMatch=etag)
            except Exception as exc:
                if not (_precondition_failed(exc) or _not_found(exc)):
                    raise _storage_error(exc, self.location) from exc


def _storage_error(exc: Exception, location: str) -> Exception:
    """A failed S3 request on the lock as the store's `StoreError` (an OSError: `io_error`)."""
    return store.s3_error(exc, location, "lock the date at") if store.is_aws_error(exc) else exc


def _error_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _precondition_failed(exc: Exception) -> bool:
    # 412 PreconditionFailed; 409 ConditionalRequestConflict: a concurrent conditional write
    return _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _not_found(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


def _expired(holder: Owner) -> bool:
    try:
        return datetime.fromisoformat(holder.expires) <= datetime.now(UTC)
    except ValueError:
        return True
