"""Which backend serves a user: the scheme of their home (a directory, or ``s3://bucket/prefix``).

Per-user choice comes for free: a user whose home is a path gets the local disk, one whose home is
an ``s3://`` URL gets that bucket and prefix. The S3 client is built once per server and shared
(boto3 clients are thread-safe); it is imported only when an ``s3://`` home is first used.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pyftps.storage.base import Storage, Unavailable
from pyftps.storage.local import LocalStorage

if TYPE_CHECKING:
    from pyftps.storage.s3 import S3Storage

_MAX_CACHED_HOMES = 4096  # distinct local homes remembered; past it the cache starts over


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, prefix + "/" if prefix else "")


class StorageFactory:
    """Builds each logged-in user's backend from their home."""

    def __init__(
        self,
        *,
        fsync: bool = True,
        s3_endpoint: str | None = None,
        s3_region: str | None = None,
        s3_allow_backslash: bool = True,
    ) -> None:
        self.fsync = fsync
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        self.s3_allow_backslash = s3_allow_backslash  # False where a backslash becomes '/' (SeaweedFS)
        self._client: Any = None
        self._lock = threading.Lock()
        # home -> (its LocalStorage, (st_dev, st_ino) of its root): LocalStorage holds nothing but
        # its resolved root, so logins to one home share one. Building one costs makedirs + realpath
        # (~7 system calls); a cached one is checked with one stat of the home at each login.
        self._local: dict[str, tuple[LocalStorage, tuple[int, int]]] = {}

    def for_home(self, home: str) -> Storage:
        if home.startswith("s3://"):
            return self._s3(S3Location.parse(home))
        return self._local_storage(home)

    def _local_storage(self, home: str) -> LocalStorage:
        """The home's cached storage while the home still leads to the same directory, else a new one.

        A deleted home fails the stat and is created again; a home replaced by another directory, or
        a symlinked home pointed elsewhere, shows another inode and is resolved again. Containment
        never depends on this cache: every operation resolves its path and checks it against the root.
        """
        known = self._local.get(home)
        if known is not None:
            try:
                info = os.stat(home)
            except OSError:
                pass
            else:
                if (info.st_dev, info.st_ino) == known[1]:
                    return known[0]
        storage = LocalStorage(home, fsync=self.fsync)
        info = os.stat(storage.root)
        if len(self._local) >= _MAX_CACHED_HOMES:
            self._local.clear()
        self._local[home] = (storage, (info.st_dev, info.st_ino))
        return storage

    def s3_usage(self, home: str) -> tuple[int, int]:
        """Bytes and files under an ``s3://`` home (for quotas), listed with the shared client."""
        return self._s3(S3Location.parse(home)).usage()

    def _s3(self, location: S3Location) -> S3Storage:
        try:
            from pyftps.storage.s3 import S3Storage, make_client
        except ImportError as error:
            raise Unavailable("S3 storage needs the 's3' extra (pip install 'pyftps[s3]')") from error
        with self._lock:
            if self._client is None:
                self._client = make_client(endpoint_url=self.s3_endpoint, region=self.s3_region)
        return S3Storage(
            location.bucket, location.prefix, client=self._client, allow_backslash=self.s3_allow_backslash
        )
