"""Typed client errors that carry the FTP reply code and a one-line message (RFC 959 §4.2; RFC 4217 §10-§15).

Reply errors follow the first digit (RFC 1123 §4.1.2.11): 4yz is :class:`TransientError` (retrying
later may work), 5yz is :class:`PermanentError`. Failures that are not a reply (TLS, truncation,
a lost connection, a timeout) have ``code`` None unless a reply explains them.
"""

from __future__ import annotations

from pyftps.proto.replies import Reply

__all__ = [
    "CertificateMismatch",
    "CertificateRejected",
    "ConnectionClosed",
    "FTPError",
    "FTPTimeout",
    "PermanentError",
    "ProtocolViolation",
    "TLSFailure",
    "TransferTruncated",
    "TransientError",
    "UsageError",
    "error_for_reply",
]


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class FTPError(Exception):
    """Base of every client error: ``code`` is the FTP reply code when a reply caused it, else None."""

    def __init__(self, code: int | None, text: str) -> None:
        self.code = code
        self.text = _one_line(text)
        super().__init__(f"{code} {self.text}" if code is not None else self.text)


class TransientError(FTPError):
    """A 4yz reply: the action was not taken, but may succeed later (RFC 959 §4.2)."""


class PermanentError(FTPError):
    """A 5yz reply: the action was refused (RFC 959 §4.2), e.g. 550 for a missing file."""


class ProtocolViolation(FTPError):
    """The server broke the protocol: a malformed or unexpected reply, 334 to AUTH (RFC 4217 §4.2)."""


class UsageError(FTPError):
    """The caller asked for something this session must not do (e.g. CCC on implicit FTPS)."""


class TLSFailure(FTPError):
    """TLS could not be set up or broke on the control or a data connection."""


class CertificateRejected(TLSFailure):
    """The server's certificate failed verification (unknown CA, expired, wrong host name)."""


class CertificateMismatch(TLSFailure):
    """A certificate is not the pinned one, or differs from the control connection's (4217 §15.1.1)."""


class TransferTruncated(FTPError):
    """The data connection ended without TLS close_notify: the data may be incomplete (RFC 8446 §6.1)."""


class ConnectionClosed(FTPError):
    """The control connection is gone (closed by the server, reset, or abandoned after an error)."""


class FTPTimeout(FTPError, TimeoutError):
    """Nothing arrived from the server within the configured timeout."""


def error_for_reply(reply: Reply, context: str = "") -> FTPError:
    """The error for an unwanted reply, by its first digit (RFC 1123 §4.1.2.11)."""
    text = " ".join(line.strip() for line in reply.lines if line.strip())
    if context:
        text = f"{text} ({context})" if text else context
    if reply.kind == 4:
        return TransientError(reply.code, text)
    if reply.kind == 5:
        return PermanentError(reply.code, text)
    return ProtocolViolation(reply.code, f"unexpected reply: {text}" if text else "unexpected reply")
