"""The two protocol error types (h11 style): whose fault it is decides what happens next."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the core's errors."""


class LocalProtocolError(ProtocolError):
    """The caller misused the core (a bug on our side, never the peer's)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; ``code`` is the FTP reply that tells it so."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
