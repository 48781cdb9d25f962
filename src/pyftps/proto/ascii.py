"""TYPE A conversion between the server's LF line ends and the wire's CRLF (RFC 959 §3.1.1.1, RFC 3659 §4.4).

Sending, each LF becomes CRLF (a CR already before an LF is left alone, so files that already use
CRLF are not doubled). Receiving, each CRLF becomes LF; a CR at the end of one chunk is held back
until the next chunk shows whether an LF follows.
"""

from __future__ import annotations


class AsciiEncoder:
    """LF → CRLF for downloads, with an optional number of output octets to skip (REST in TYPE A)."""

    def __init__(self, skip: int = 0) -> None:
        self._skip = skip
        self._last_cr = False

    def encode(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = bytearray()
        start = 0
        while True:
            index = chunk.find(b"\n", start)
            if index < 0:
                out += chunk[start:]
                break
            out += chunk[start:index]
            before = chunk[index - 1 : index] if index > 0 else (b"\r" if self._last_cr else b"")
            out += b"\n" if before == b"\r" else b"\r\n"
            start = index + 1
        self._last_cr = chunk.endswith(b"\r")
        if self._skip:
            dropped = min(self._skip, len(out))
            self._skip -= dropped
            del out[:dropped]
        return bytes(out)

    @property
    def pending_skip(self) -> int:
        return self._skip


class AsciiDecoder:
    """CRLF → LF for uploads; call :meth:`flush` at the end to release a trailing CR."""

    def __init__(self) -> None:
        self._held_cr = False

    def decode(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        data = (b"\r" + chunk) if self._held_cr else chunk
        self._held_cr = data.endswith(b"\r")
        if self._held_cr:
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        held, self._held_cr = self._held_cr, False
        return b"\r" if held else b""


def ascii_size(chunks: list[bytes] | tuple[bytes, ...]) -> int:
    """Octets a TYPE A download of these chunks puts on the wire (for SIZE, RFC 3659 §4)."""
    encoder = AsciiEncoder()
    return sum(len(encoder.encode(c)) for c in chunks)
