"""Who the command-line client logs in as and how it connects: the URL, ``--user``, the environment,
a netrc file or a prompt (RFC 1738 §3.1; netrc(5)), never echoing or printing a password."""

from __future__ import annotations

import argparse
import getpass
import netrc
import os
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyftps.client.connection import Client
from pyftps.client.url import FTPURL, parse_url

__all__ = [
    "PASSWORD_ENV",
    "USER_ENV",
    "CommandFailure",
    "Endpoint",
    "connect",
    "endpoint_for",
    "login_for",
    "redact_url",
]

PASSWORD_ENV = "PYFTPS_PASSWORD"
USER_ENV = "PYFTPS_USER"
EXIT_USAGE = 2


class CommandFailure(Exception):
    """A failure the command line reports as one line with its own exit code (no FTP reply behind it)."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to open one more connection to the same server as the same user."""

    url: FTPURL
    user: str
    password: str = field(repr=False)
    cafile: str | None
    insecure: bool
    fingerprint: str | None
    auth: Literal["TLS", "SSL"]
    passive: bool
    timeout: float

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach the terminal (the password and its URL-encoded form)."""
        if not self.password or self.user == "anonymous":
            return ()
        return tuple({self.password, urllib.parse.quote(self.password, safe="")})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages; the user name stays)."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparsable URL>"


def _netrc_entry(url: FTPURL, netrc_file: str | None) -> tuple[str, str] | None:
    """``(login, password)`` for the URL's host from a netrc file (``~/.netrc`` by default)."""
    if netrc_file is None and not (Path.home() / ".netrc").is_file():
        return None
    try:
        found = netrc.netrc(netrc_file).authenticators(url.host)
    except FileNotFoundError:
        raise CommandFailure(EXIT_USAGE, f"netrc file not found: {netrc_file}") from None
    except netrc.NetrcParseError as error:
        # The parser's message may quote a token of the file, which could be a password: not shown.
        where = error.filename or netrc_file or "~/.netrc"
        reason = "permissions too open" if "access too permissive" in error.msg else "malformed"
        raise CommandFailure(EXIT_USAGE, f"cannot use {where} (line {error.lineno}): {reason}") from None
    except OSError as error:
        raise CommandFailure(EXIT_USAGE, f"cannot read netrc file: {error.strerror}") from None
    if found is None:
        return None
    login, _account, password = found
    return login, password


def _password_for(user: str, url: FTPURL, netrc_file: str | None) -> str:
    """The URL's password, else ``$PYFTPS_PASSWORD``, else netrc, else a prompt on a terminal."""
    if url.password is not None and url.user == user:
        return url.password
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    entry = _netrc_entry(url, netrc_file)
    if entry is not None and entry[0] in ("", user):
        return entry[1]
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            return getpass.getpass(f"Password for {user}@{url.host}: ")
        except EOFError:
            pass
    raise CommandFailure(
        EXIT_USAGE,
        f"no password for {user}: set {PASSWORD_ENV}, add a netrc entry for {url.host}, or run on a terminal",
    )


def login_for(url: FTPURL, user_option: str | None, netrc_file: str | None) -> tuple[str, str]:
    """``(user, password)``: ``--user``, the URL, ``$PYFTPS_USER``, a netrc entry, else anonymous."""
    user = user_option or url.user or os.environ.get(USER_ENV)
    if user:
        return user, _password_for(user, url, netrc_file)
    entry = _netrc_entry(url, netrc_file)
    if entry is not None and entry[0]:
        return entry
    return url.login  # RFC 1738 §3.1: anonymous


def endpoint_for(args: argparse.Namespace, raw_url: str) -> Endpoint:
    """Parse ``raw_url`` and settle the login and TLS options from the command line."""
    try:
        url = parse_url(raw_url, allow_plain=bool(getattr(args, "plain", False)))
    except ValueError as error:
        hint = " (add --plain to allow it)" if "allow plain" in str(error) else ""
        raise CommandFailure(EXIT_USAGE, f"{error}{hint}") from None
    user, password = login_for(url, args.user, args.netrc_file)
    return Endpoint(
        url=url,
        user=user,
        password=password,
        cafile=args.cafile,
        insecure=args.insecure,
        fingerprint=args.fingerprint,
        auth="SSL" if args.auth_ssl else "TLS",
        passive=not args.active,
        timeout=args.timeout,
    )


async def connect(endpoint: Endpoint) -> Client:
    """A logged-in :class:`Client` for ``endpoint`` (each call opens a new control connection)."""
    url = endpoint.url
    return await Client.connect(
        url.host,
        url.port,
        mode=url.mode,
        user=endpoint.user,
        password=endpoint.password,
        cafile=endpoint.cafile,
        insecure=endpoint.insecure,
        fingerprint=endpoint.fingerprint,
        auth=endpoint.auth,
        passive=endpoint.passive,
        timeout=endpoint.timeout,
    )
