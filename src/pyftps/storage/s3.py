"""S3-compatible object storage backend (AWS S3, MinIO, SeaweedFS...) on the official SDK, boto3.

The key of ``/a/b`` is ``prefix + "a/b"``. Directories are prefixes: ``make_dir`` writes a zero-byte
marker ``dir/``; a directory exists while its marker or a key below it does (removing its last entry
writes a missing marker first). Listings stream ListObjectsV2 pages, each page's entries HEADed in
parallel for what pages lack: MFMT times and stable unique ids (user metadata).

Uploads keep one part (``part_size``) in memory whatever the file size: one PutObject at commit if
smaller, else a multipart upload completed at commit (10,000 parts at most, then QuotaExceeded).
Nothing is visible before commit; ``abort`` aborts the multipart upload, leaving no object (if the
store is unreachable then, the invisible upload awaits the bucket's AbortIncompleteMultipartUpload
lifecycle rule, which operators should set). REST + STOR and APPE are supported: the new version's
head (the first ``offset`` bytes; the whole object for APPE) is copied server-side (UploadPartCopy)
from 5 MiB on, else read back into the part buffer, both only from the version (ETag) seen at open:
a file changed meanwhile fails the transfer (451). The old version stays readable until commit; as
the storage contract asks, ``abort`` of a continued upload publishes what was received.

Renames copy + delete (multipart copies above ``max_single_copy``, 5 GiB); a directory moves key by
key: NOT atomic, a failure midway leaves the tree split between both names (nothing is lost). MFMT
copies the object onto itself with the metadata ``mtime`` (seconds, as rclone writes it); stores that
keep no metadata on directory markers (SeaweedFS) refuse it on directories. Modes come from the
metadata ``mode`` (st_mode, as s3fs writes it), else 0644. Errors are typed: missing key → NotFound,
AccessDenied → PermissionDenied, EntityTooLarge → QuotaExceeded; connection failures, timeouts,
throttling, 5xx and unknown codes → Unavailable. Keys over 1024 bytes or not UTF-8 are InvalidName,
as are names with ``\\`` when ``allow_backslash=False`` (SeaweedFS stores it as ``/``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import secrets
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from boto3.session import Session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError

from pyftps.storage.base import (
    AlreadyExists,
    DirectoryNotEmpty,
    FileInfo,
    InsufficientStorage,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unavailable,
)
from pyftps.storage.local import display_path, split_virtual_path

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef as Part
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef as Head
    from mypy_boto3_s3.type_defs import ListObjectsV2OutputTypeDef as Page

__all__ = ["S3Storage", "make_client"]

log = logging.getLogger("pyftps.storage.s3")
P = ParamSpec("P")
T = TypeVar("T")
MiB, GiB = 1 << 20, 1 << 30
MIN_PART_SIZE, MAX_PART_SIZE, MAX_PARTS, MAX_KEY_BYTES = 5 * MiB, 5 * GiB, 10_000, 1024
ID_META, MTIME_META, MODE_META = "pyftps-id", "mtime", "mode"
_ID = re.compile(r"[0-9a-f]{16}\Z")
_WORKERS = 8  # parallel requests of a listing's HEADs and of a directory rename's copies
_TRANSPORT_ERRORS = (BotoCoreError, HTTPError, OSError)
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
_QUOTA = (QuotaExceeded, "storage quota exceeded")
_CHANGED = (Unavailable, "file changed meanwhile; try again")
_CODES: dict[str, tuple[type[StorageError], str]] = {
    **dict.fromkeys(("AccessDenied", "AllAccessDisabled", "403"), (PermissionDenied, "permission denied")),
    **dict.fromkeys(("InvalidRange", "416"), (InvalidOffset, "offset beyond end of file")),
    **dict.fromkeys(("QuotaExceeded", "XMinioAdminBucketQuotaExceeded"), _QUOTA),
    "EntityTooLarge": (QuotaExceeded, "file too large for this storage"),
    "XMinioStorageFull": (InsufficientStorage, "insufficient storage space"),
    "KeyTooLongError": (InvalidName, "name too long"),
    "ExistingObjectIsDirectory": (IsADirectory, "is a directory"),
    "ExistingObjectIsFile": (NotADirectory, "not a directory"),
    **dict.fromkeys(("PreconditionFailed", "412"), _CHANGED),
}


def make_client(
    endpoint_url: str | None = None, region: str | None = None, access_key: str | None = None,
    secret_key: str | None = None, *, max_attempts: int = 3, timeouts: tuple[float, float] = (5.0, 60.0),
) -> S3Client:  # fmt: skip
    """A thread-safe client to share between all sessions. Credentials not given come from the usual
    AWS chain; ``max_attempts`` counts the first try; ``timeouts``: connect and read, in seconds."""
    config = Config(
        region_name=region, connect_timeout=timeouts[0], read_timeout=timeouts[1], max_pool_connections=64,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        s3={"addressing_style": "path" if endpoint_url else "auto"},  # explicit endpoints: path style
    )  # fmt: skip
    session = Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def _fail(kind: type[StorageError], path: str, text: str) -> StorageError:
    return kind(f"{display_path(path)}: {text}")  # the virtual path only: never a bucket or a key


def _error(exc: BaseException, path: str) -> StorageError:
    """The typed error for an SDK failure."""
    if not isinstance(exc, ClientError):
        log.warning("object store unreachable (%s): %s", type(exc).__name__, exc)
        return _fail(Unavailable, path, "storage unavailable")
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
        return _fail(NotFound, path, "no such file or directory")
    kind, text = _CODES.get(code) or _CODES.get(str(status)) or (Unavailable, "storage unavailable")
    if kind is Unavailable:
        log.warning("object store error %s (HTTP %s) on %s", code, status, display_path(path))
    return _fail(kind, path, text)


def _call(path: str, method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return method(*args, **kwargs)
    except (ClientError, *_TRANSPORT_ERRORS) as exc:
        raise _error(exc, path) from exc


def _ranges(total: int, part: int) -> list[tuple[int, int]]:
    """``total`` bytes as balanced inclusive ranges of at most ``part`` bytes (none below part/2)."""
    count = max(1, math.ceil(total / part))
    base, extra = divmod(total, count)
    starts = [index * base + min(index, extra) for index in range(count + 1)]
    return [(start, end - 1) for start, end in itertools.pairwise(starts)]


def _abort_upload(client: S3Client, bucket: str, key: str, upload: list[str]) -> None:
    """Abort the multipart upload whose id ``upload`` holds, if any; never raises (a cleanup path)."""
    if upload:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload.pop())
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            log.warning("could not abort a multipart upload of %s: %s", key, exc)


class _S3Reader:
    """A download: one ranged GET, streamed."""

    def __init__(self, store: S3Storage, key: str, path: str, offset: int) -> None:
        self._body, self._path, self._closed = store._get(key, offset, path)[0], path, False

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        if self._closed:
            raise ValueError("read from a closed file")
        target = memoryview(buffer).cast("B")
        data = _call(self._path, self._body.read, len(target)) if self._body and len(target) else b""
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
        self._body, self._closed = None, True


class _S3Writer:
    """An upload: one part buffer; a multipart upload once the file outgrows it."""

    def __init__(self, store: S3Storage, path: str, key: str, meta: dict[str, str], keep: bool) -> None:
        # keep: a continued upload (REST, APPE) publishes what it got when aborted
        self._store, self._path, self._key, self._meta, self._keep = store, path, key, meta, keep
        self._buffer = bytearray()
        self._parts: list[Part] = []
        self._upload: list[str] = []  # the multipart upload id, once started
        self._finalizer = weakref.finalize(self, _abort_upload, store.client, store.bucket, key, self._upload)
        self._state: Literal["open", "committed", "aborted"] = "open"

    def _start(self) -> str:
        if not self._upload:
            create = self._store.client.create_multipart_upload
            reply = _call(self._path, create, Bucket=self._store.bucket, Key=self._key, Metadata=self._meta)
            self._upload.append(reply["UploadId"])
        return self._upload[0]

    def start_with_head(self, source: str, etag: str, size: int) -> None:
        """Begin with the first ``size`` bytes of ``source``: copied server-side, or read back if small."""
        s3, bucket = self._store.client, self._store.bucket
        ranges = _ranges(size, self._store.copy_part) if size >= MIN_PART_SIZE else []
        for number, (start, end) in enumerate(ranges, 1):
            reply = _call(
                self._path, s3.upload_part_copy, Bucket=bucket, Key=self._key, UploadId=self._start(),
                PartNumber=number, CopySource={"Bucket": bucket, "Key": source},
                CopySourceRange=f"bytes={start}-{end}", CopySourceIfMatch=etag,
            )  # fmt: skip
            self._parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"].get("ETag", "")})
        if ranges:
            return
        with cast("StreamingBody", self._store._get(source, 0, self._path, etag, end=size - 1)[0]) as body:
            while len(self._buffer) < size:  # a range inside the object: never None
                if not (chunk := _call(self._path, body.read, size - len(self._buffer))):
                    raise _fail(Unavailable, self._path, "storage unavailable")
                self._buffer += chunk

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._state != "open":
            raise ValueError("write to a finished upload")
        view = memoryview(data).cast("B")
        part_size, done = self._store.part_size, 0
        while done < len(view):
            take = min(len(view) - done, part_size - len(self._buffer))
            self._buffer += view[done : done + take]
            done += take
            if len(self._buffer) >= part_size:
                self._send_part()
        return len(view)

    def _send_part(self) -> None:
        if (number := len(self._parts) + 1) > MAX_PARTS:
            raise _fail(QuotaExceeded, self._path, "file too large for this storage")
        reply = _call(
            self._path, self._store.client.upload_part, Bucket=self._store.bucket, Key=self._key,
            UploadId=self._start(), PartNumber=number, Body=cast(bytes, self._buffer),  # a bytearray is fine
        )  # fmt: skip
        self._parts.append({"PartNumber": number, "ETag": reply["ETag"]})
        self._buffer = bytearray()  # a new one: the SDK may still hold a view of the old one

    def _publish(self) -> None:
        if not self._upload:
            self._store._put(self._key, self._buffer, self._meta, self._path)
        else:
            if self._buffer or not self._parts:
                self._send_part()
            _call(
                self._path, self._store.client.complete_multipart_upload, Bucket=self._store.bucket,
                Key=self._key, UploadId=self._upload[0], MultipartUpload={"Parts": self._parts},
            )  # fmt: skip
            self._upload.clear()
        self._buffer = bytearray()
        self._finalizer.detach()

    def commit(self) -> None:
        if self._state == "committed":
            return
        if self._state == "aborted":
            raise ValueError("commit of an aborted upload")
        self._state = "aborted"  # until publication succeeds, so that a retry cannot report success
        try:
            self._publish()
        except BaseException:
            self._finalizer()  # aborts the multipart upload
            raise
        self._state = "committed"

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        if self._keep:
            try:
                self._publish()
                return
            except Exception as exc:
                log.warning("could not keep the bytes of an interrupted upload to %s: %s", self._key, exc)
        self._buffer = bytearray()
        self._finalizer()


class S3Storage:
    """One user's tree under ``prefix`` of an S3 bucket; see the module documentation."""

    def __init__(
        self, bucket: str, prefix: str = "", *, client: S3Client | None = None,
        endpoint_url: str | None = None, region: str | None = None, part_size: int = 8 * MiB,
        page_size: int = 1000, allow_backslash: bool = True, max_single_copy: int = 5 * GiB,
        copy_part_size: int = 1 * GiB,
    ) -> None:  # fmt: skip
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE or not 10 * MiB <= copy_part_size <= MAX_PART_SIZE:
            raise ValueError("part_size must be 5 MiB..5 GiB, copy_part_size 10 MiB..5 GiB")
        if not (1 <= page_size <= 1000 and 0 < max_single_copy <= 5 * GiB):
            raise ValueError("page_size must be 1..1000 and max_single_copy at most 5 GiB")
        self.client: S3Client = client or make_client(endpoint_url, region)
        self.bucket, self._prefix = bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.part_size, self.copy_part, self._max_copy = part_size, copy_part_size, max_single_copy
        self._page_size, self._allow_backslash = page_size, allow_backslash

    def usage(self) -> tuple[int, int]:
        """Bytes and number of the files under the prefix: one flat listing, no HEADs, no markers."""
        pages, total, files = self._pages(self._prefix, "/", flat=True), 0, 0
        for obj in itertools.chain.from_iterable(page.get("Contents", []) for page in pages):
            if not obj.get("Key", "/").endswith("/"):
                total, files = total + obj.get("Size", 0), files + 1
        return total, files

    def _parts(self, path: str) -> tuple[str, ...]:
        parts = split_virtual_path(path)
        if not self._allow_backslash and any("\\" in part for part in parts):
            raise _fail(InvalidName, path, "names with '\\' are not allowed by this storage")
        try:
            size = len(f"{self._prefix}{'/'.join(parts)}/".encode())
        except UnicodeEncodeError:
            raise _fail(InvalidName, path, "name not allowed") from None
        if size > MAX_KEY_BYTES:
            raise _fail(InvalidName, path, "path too long")
        return parts

    def _key(self, parts: tuple[str, ...]) -> str:
        return self._prefix + "/".join(parts)

    def _named(self, path: str) -> tuple[tuple[str, ...], str]:
        if not (parts := self._parts(path)):
            raise _fail(PermissionDenied, path, "permission denied")
        return parts, self._key(parts)

    def _info(self, name: str, key: str, head: Head | None, is_dir: bool) -> FileInfo:
        """Facts from a HEAD (a directory without a marker has none: time 0)."""
        facts = head or cast("Head", {})
        meta = facts.get("Metadata", {})
        mtime = modified.timestamp() if (modified := facts.get("LastModified")) else 0.0
        mode = 0o755 if is_dir else 0o644
        with suppress(KeyError, ValueError):
            mtime = stored if math.isfinite(stored := float(meta[MTIME_META])) else mtime
        with suppress(KeyError, ValueError):
            mode = int(meta[MODE_META]) & 0o777
        ident = "" if is_dir else meta.get(ID_META, "")
        if not _ID.match(ident):
            ident = hashlib.blake2b(f"{self.bucket}/{key}{'/' * is_dir}".encode(), digest_size=8).hexdigest()
        size = 0 if is_dir else facts.get("ContentLength", 0)
        return FileInfo(name, is_dir, size, mtime, mode, ident)

    def _head(self, key: str, path: str) -> Head | None:
        try:
            return _call(path, self.client.head_object, Bucket=self.bucket, Key=key)
        except NotFound:
            return None

    def _get(
        self, key: str, offset: int, path: str, etag: str = "", end: int | None = None
    ) -> tuple[StreamingBody | None, str]:
        """A ranged GET from ``offset`` (of version ``etag`` if given); no body at the very end."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={offset}-{end or ''}"}
        request.update({"IfMatch": etag} if etag else {})
        try:
            reply = _call(path, self.client.get_object, **request)
        except InvalidOffset:  # 416: the offset is the end of the object, or beyond it
            if (head := self._head(key, path)) is None:
                raise _fail(NotFound, path, "no such file or directory") from None
            if etag and head.get("ETag") != etag:
                raise _fail(_CHANGED[0], path, _CHANGED[1]) from None
            if offset > head.get("ContentLength", 0):
                raise
            return None, head.get("ETag", "")
        return reply["Body"], reply.get("ETag", "")

    def _put(self, key: str, body: bytes | bytearray, meta: Mapping[str, str], path: str) -> None:
        data = cast(bytes, body)  # the SDK takes a bytearray as it is
        _call(path, self.client.put_object, Bucket=self.bucket, Key=key, Body=data, Metadata=dict(meta))

    def _pages(
        self, prefix: str, path: str, flat: bool = False, size: int = 0, after: str = ""
    ) -> Iterator[Page]:
        """ListObjectsV2 pages under ``prefix`` (by directory unless ``flat``), fetched as consumed."""
        query: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": size or self._page_size}
        query.update({"Delimiter": "/"} if not flat else {}, **({"StartAfter": after} if after else {}))
        while True:
            page = _call(path, self.client.list_objects_v2, **query)
            yield page
            if not page.get("IsTruncated") or not (token := page.get("NextContinuationToken")):
                return
            query["ContinuationToken"] = token

    def _dir_head(self, key: str, path: str) -> tuple[bool, Head | None]:
        """Whether ``key`` is a directory (a marker, or keys under it), and its marker if any."""
        if (marker := self._head(key + "/", path)) is not None:
            return True, marker
        page = next(self._pages(key + "/", path, flat=True, size=1))
        return bool(page.get("KeyCount") or page.get("Contents")), None

    def _probe(self, key: str, path: str) -> tuple[Head | None, bool]:
        """The HEAD of the file ``key`` if there is one, else whether it is a directory."""
        if (head := self._head(key, path)) is not None:
            return head, False
        return None, self._dir_head(key, path)[0]

    def _missing(self, parts: tuple[str, ...], path: str) -> StorageError:
        """The error for a name below ``parts`` that does not exist: some ancestor may be a file."""
        for depth in range(1, len(parts) + 1):
            if self._head(key := self._key(parts[:depth]), path) is not None:
                return _fail(NotADirectory, path, "not a directory")
            if depth < len(parts) and not self._dir_head(key, path)[0]:
                break
        return _fail(NotFound, path, "no such file or directory")

    def _require_dir(self, parts: tuple[str, ...], path: str) -> None:
        if parts and not self._dir_head(self._key(parts), path)[0]:
            raise self._missing(parts, path)

    def _keep_parent(self, parts: tuple[str, ...], path: str) -> None:
        """Write the parent's marker if it has none, so that removing ``parts`` cannot remove it."""
        if len(parts) > 1 and self._head(marker := self._key(parts[:-1]) + "/", path) is None:
            self._put(marker, b"", {}, path)

    def _delete(self, keys: list[str], path: str) -> None:
        for start in range(0, len(keys), 1000):
            delete: Any = {"Objects": [{"Key": key} for key in keys[start : start + 1000]], "Quiet": True}
            reply = _call(path, self.client.delete_objects, Bucket=self.bucket, Delete=delete)
            for failure in reply.get("Errors", []):
                raise _error(ClientError({"Error": {"Code": failure.get("Code", "")}}, "DeleteObjects"), path)

    def _copy(self, src: str, dst: str, head: Head, path: str, meta: dict[str, str] | None = None) -> None:
        """Server-side copy of ``src`` as it is at ``head``; ``meta`` replaces the metadata if given."""
        size, etag = head.get("ContentLength", 0), head.get("ETag", "")
        if size > self._max_copy:  # beyond CopyObject's limit: a multipart upload of copied parts
            writer = _S3Writer(self, path, dst, head.get("Metadata", {}) if meta is None else meta, False)
            writer.start_with_head(src, etag, size)
            writer.commit()
            return
        ctype = head.get("ContentType") or "binary/octet-stream"
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": dst, "CopySourceIfMatch": etag}
        if meta is not None:
            request.update(Metadata=meta, MetadataDirective="REPLACE", ContentType=ctype)
        _call(path, self.client.copy_object, CopySource={"Bucket": self.bucket, "Key": src}, **request)

    def stat(self, path: str) -> FileInfo:
        if not (parts := self._parts(path)):
            return self._info("/", self._prefix, None, True)
        if (head := self._head(key := self._key(parts), path)) is not None:
            return self._info(parts[-1], key, head, False)
        exists, marker = self._dir_head(key, path)
        if exists:
            return self._info(parts[-1], key, marker, True)
        raise self._missing(parts[:-1], path)

    def list_dir(self, path: str) -> Iterator[FileInfo]:
        parts = self._parts(path)
        prefix = self._key(parts) + "/" if parts else self._prefix
        pages = self._pages(prefix, path)
        first = next(pages)  # errors and a missing directory surface at the call
        empty = not (first.get("KeyCount") or first.get("Contents") or first.get("CommonPrefixes"))
        if parts and empty and self._head(prefix, path) is None:
            raise self._missing(parts, path)
        return self._scan(prefix, itertools.chain([first], pages), path.rstrip("/"))

    def _scan(self, prefix: str, pages: Iterator[Page], directory: str) -> Iterator[FileInfo]:
        pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="s3-list")
        try:
            for page in pages:
                dirs = [
                    common.get("Prefix", "")[len(prefix) : -1] for common in page.get("CommonPrefixes", [])
                ]
                entries = [(name, True) for name in dirs]
                entries += [(obj.get("Key", "")[len(prefix) :], False) for obj in page.get("Contents", [])]
                entries = [entry for entry in entries if entry[0] not in ("", ".", "..")]
                infos = pool.map(partial(self._entry_info, prefix, directory), entries)
                yield from [info for info in infos if info is not None]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _entry_info(self, prefix: str, path: str, entry: tuple[str, bool]) -> FileInfo | None:
        name, is_dir = entry
        head = self._head(prefix + name + "/" * is_dir, path)
        deleted = head is None and not is_dir  # since the listing
        return None if deleted else self._info(name, prefix + name, head, is_dir)

    def open_read(self, path: str, offset: int = 0) -> _S3Reader:
        parts = self._parts(path)
        if offset < 0:
            raise _fail(InvalidOffset, path, "invalid offset")
        if not parts:
            raise _fail(IsADirectory, path, "is a directory")
        try:
            return _S3Reader(self, key := self._key(parts), path, offset)
        except NotFound:
            if self._dir_head(key, path)[0]:
                raise _fail(IsADirectory, path, "is a directory") from None
            raise self._missing(parts[:-1], path) from None

    def open_write(self, path: str, *, offset: int = 0, append: bool = False) -> _S3Writer:
        parts = self._parts(path)
        if offset < 0 or (append and offset):
            raise _fail(InvalidOffset, path, "invalid offset")
        head, is_dir = self._probe(key := self._key(parts), path) if parts else (None, True)
        if is_dir:
            raise _fail(IsADirectory, path, "is a directory")
        if head is None:
            if offset:
                raise self._missing(parts[:-1], path)
            self._require_dir(parts[:-1], path)
        if head is None or not (offset or append):
            return _S3Writer(self, path, key, {ID_META: secrets.token_hex(8)}, keep=append)
        if offset > (size := head.get("ContentLength", 0)):
            raise _fail(InvalidOffset, path, "offset beyond end of file")
        meta = {name: value for name, value in head.get("Metadata", {}).items() if name != MTIME_META}
        writer = _S3Writer(self, path, key, meta, keep=True)
        if start := size if append else offset:
            writer.start_with_head(key, head.get("ETag", ""), start)
        return writer

    def make_dir(self, path: str) -> None:
        parts, key = self._named(path)
        if any(self._probe(key, path)):
            raise _fail(AlreadyExists, path, "already exists")
        self._require_dir(parts[:-1], path)
        self._put(key + "/", b"", {}, path)

    def remove_dir(self, path: str) -> None:
        parts, key = self._named(path)
        page = next(self._pages(key + "/", path, flat=True, size=2))
        keys = [obj.get("Key", "") for obj in page.get("Contents", [])]
        if any(name != key + "/" for name in keys):
            raise _fail(DirectoryNotEmpty, path, "directory not empty")
        if not keys and self._head(key + "/", path) is None:
            raise self._missing(parts, path)
        self._keep_parent(parts, path)
        self._delete([key + "/"], path)

    def delete(self, path: str) -> None:
        parts, key = self._named(path)
        head, is_dir = self._probe(key, path)
        if head is None:
            raise _fail(IsADirectory, path, "is a directory") if is_dir else self._missing(parts[:-1], path)
        self._keep_parent(parts, path)
        self._delete([key], path)

    def rename(self, source: str, target: str) -> None:
        src_parts, dst_parts = self._parts(source), self._parts(target)
        if not src_parts or not dst_parts:
            raise _fail(PermissionDenied, target if src_parts else source, "permission denied")
        src, dst = self._key(src_parts), self._key(dst_parts)
        head, is_dir = self._probe(src, source)
        if head is None and not is_dir:
            raise self._missing(src_parts[:-1], source)
        if src_parts == dst_parts:
            return
        if is_dir and dst_parts[: len(src_parts)] == src_parts:
            raise _fail(PermissionDenied, target, "cannot move a directory into itself")
        dst_head, dst_is_dir = self._probe(dst, target)
        if dst_is_dir:  # never clobber a directory, even an empty one
            raise _fail(AlreadyExists if is_dir else IsADirectory, target, "is an existing directory")
        if dst_head is not None and is_dir:
            raise _fail(NotADirectory, target, "not a directory")
        if dst_head is None:
            self._require_dir(dst_parts[:-1], target)
        self._keep_parent(src_parts, source)
        if head is not None:
            self._copy(src, dst, head, target)
            self._delete([src], source)
        else:
            self._rename_dir(src + "/", dst + "/", source)

    def _rename_dir(self, src: str, dst: str, path: str) -> None:
        """Copy the keys under ``src`` to ``dst`` a page at a time, deleting each page's files once
        copied; the directory markers go last, deepest first. Not atomic (see the module docs)."""
        marker = self._head(src, path)
        self._put(dst, b"", marker.get("Metadata", {}) if marker else {}, path)
        markers, after = {src}, ""
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="s3-rename") as pool:
            while True:  # StartAfter rather than a continuation token: the listed keys are deleted
                page = next(self._pages(src, path, flat=True, after=after))
                keys = [obj.get("Key", "") for obj in page.get("Contents", [])]
                list(pool.map(partial(self._copy_key, src, dst, path), keys))
                markers.update(key for key in keys if key.endswith("/"))
                self._delete([key for key in keys if not key.endswith("/")], path)
                if not keys or not page.get("IsTruncated"):
                    break
                after = keys[-1]
        self._delete(sorted(markers, reverse=True), path)

    def _copy_key(self, src: str, dst: str, path: str, key: str) -> None:
        if key == src or (head := self._head(key, path)) is None:  # None: deleted meanwhile
            return
        if key.endswith("/"):  # a marker: written anew, as some stores cannot copy a directory
            self._put(dst + key[len(src) :], b"", head.get("Metadata", {}), path)
        else:
            self._copy(key, dst + key[len(src) :], head, path)

    def set_mtime(self, path: str, mtime: float) -> None:
        parts, key = self._named(path)
        name, value = MTIME_META, f"{mtime:.6f}"
        head, is_dir = self._probe(key, path)
        if head is not None:
            self._copy(key, key, head, path, {**head.get("Metadata", {}), name: value})
            return
        if not is_dir:
            raise self._missing(parts[:-1], path)
        marker = self._head(key + "/", path)
        self._put(key + "/", b"", {**(marker.get("Metadata", {}) if marker else {}), name: value}, path)
        kept = self._head(key + "/", path)
        if kept is None or kept.get("Metadata", {}).get(name) != value:
            raise _fail(PermissionDenied, path, "this storage keeps no attributes on directories")
