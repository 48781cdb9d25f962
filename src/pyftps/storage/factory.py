"""Which backend serves a user: the scheme of their home (a directory, or ``s3://bucket/prefix``).

Per-user choice comes for free: a user whose home is a path gets the local disk, one whose home is
an ``s3://`` URL gets that bucket and prefix. The S3 client is built once per server and shared
(boto3 clients are thread-safe); it is imported only when an ``s3://`` home is first used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pyftps.storage.base import Storage, Unavailable
from pyftps.storage.local import LocalStorage

if TYPE_CHECKING:
    from pyftps.storage.s3 import S3Storage


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

    def for_home(self, home: str) -> Storage:
        if home.startswith("s3://"):
            return self._s3(S3Location.parse(home))
        return LocalStorage(home, fsync=self.fsync)

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
