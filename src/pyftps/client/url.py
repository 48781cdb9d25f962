"""FTP URLs for the client: ``ftps://`` implicit (MS-FTPS §1.9, port 990), ``ftpes://`` explicit
(RFC 4217, port 21), ``ftp://`` plain only on request (RFC 1738 §3.2; RFC 3986 §3.2.1, §2.1)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FTPURL", "parse_url"]

_SCHEMES: dict[str, tuple[Literal["explicit", "implicit", "plain"], int]] = {
    "ftps": ("implicit", 990),  # curl and lftp spell implicit FTPS this way
    "ftpes": ("explicit", 21),
    "ftp": ("plain", 21),
}


@dataclass(frozen=True, slots=True)
class FTPURL:
    """A parsed FTP URL; ``user`` None means none was given (RFC 1738 §3.2.1: anonymous)."""

    scheme: str
    mode: Literal["explicit", "implicit", "plain"]
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    path: str  # percent-decoded, relative to the login directory; "" is the login directory itself

    @property
    def login(self) -> tuple[str, str]:
        """``(user, password)``, with RFC 1738's anonymous convention when the URL names no user."""
        if self.user is None:
            return "anonymous", self.password or "anonymous@"
        return self.user, self.password or ""


def parse_url(url: str, *, allow_plain: bool = False) -> FTPURL:
    """Split an FTP URL; user, password and path are percent-decoded (RFC 3986 §2.1).

    The path is relative to the login directory as in RFC 1738 §3.2.2 (``ftps://h/a/b`` is ``a/b``,
    ``ftps://h//a`` is ``/a``), without a ``;type=`` suffix. ``ftp://`` means no TLS at all, so it is
    refused unless ``allow_plain`` is set. Raises ValueError with a one-line reason.
    """
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported URL scheme {parts.scheme!r}: use ftps:// (implicit) or ftpes:// (explicit)"
        )
    mode, default_port = _SCHEMES[scheme]
    if mode == "plain" and not allow_plain:
        raise ValueError(
            "ftp:// sends passwords and data in clear; use ftpes:// or ftps://, or allow plain FTP"
        )
    if parts.query or parts.fragment:
        raise ValueError("FTP URLs take no query or fragment")
    host = parts.hostname
    if not host:
        raise ValueError("the URL names no host")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError("the URL's port is not a number from 1 to 65535") from None
    user = urllib.parse.unquote(parts.username, errors="strict") if parts.username is not None else None
    password = urllib.parse.unquote(parts.password, errors="strict") if parts.password is not None else None
    path = parts.path.removeprefix("/")
    head, sep, typecode = path.rpartition(";")
    if sep and typecode.lower() in ("type=a", "type=i", "type=d"):  # RFC 1738 §3.2.2
        path = head
    return FTPURL(scheme, mode, host, port, user, password, urllib.parse.unquote(path, errors="strict"))
