"""Reply formatting (server) and incremental reply parsing (client): RFC 959 §4.2, RFC 1123 §4.1.2.11."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyftps.proto.errors import RemoteProtocolError

_CODE_LINE = re.compile(rb"^([1-5]\d\d)([ -])(.*)$", re.DOTALL)
# A reply line longer than this is junk, not a reply: clients must survive overlong replies (1123 §4.1.2.11)
MAX_REPLY_LINE = 64 * 1024
MAX_REPLY_LINES = 100_000


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: a code and one or more text lines (multi-line when more than one)."""

    code: int
    lines: tuple[str, ...]

    @classmethod
    def of(cls, code: int, *lines: str) -> Reply:
        return cls(int(code), tuple(lines) or ("",))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def kind(self) -> int:
        """First digit: 1 preliminary, 2 done, 3 need more, 4 transient, 5 permanent (959 §4.2)."""
        return self.code // 100

    @property
    def is_preliminary(self) -> bool:
        return self.kind == 1

    @property
    def is_success(self) -> bool:
        return self.kind == 2

    def to_bytes(self) -> bytes:
        lines = self.lines
        if len(lines) == 1 and "\r" not in (text := lines[0]) and "\n" not in text:
            return f"{self.code} {text}\r\n".encode()  # the usual reply: format_reply's first case
        return format_reply(self.code, lines)


def _clean(text: str) -> str:
    # A file name with CR or LF echoed into a reply must not be able to forge a second reply line.
    return text.replace("\r", " ").replace("\n", " ")


def format_reply(code: int, lines: tuple[str, ...] | list[str]) -> bytes:
    """Encode a reply; multi-line replies use the ``ddd-``…``ddd `` form (959 §4.2)."""
    if len(lines) <= 1:
        return f"{code} {_clean(lines[0] if lines else '')}\r\n".encode()
    out = [f"{code}-{_clean(lines[0])}"]
    prefix = f"{code} "
    for raw in lines[1:-1]:
        line = _clean(raw)
        # Inner lines that look like a final line must be padded (959 §4.2).
        if line.startswith(prefix) or (len(line) >= 4 and line[:3].isdigit() and line[3] == " "):
            line = " " + line
        out.append(line)
    out.append(f"{code} {_clean(lines[-1])}")
    return ("\r\n".join(out) + "\r\n").encode()


class ReplyParser:
    """Turns bytes from a control connection into complete :class:`Reply` objects, in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending_code: int | None = None
        self._pending_lines: list[str] = []
        self._error: RemoteProtocolError | None = None  # found after replies that were handed out

    def feed(self, data: bytes) -> list[Reply]:
        """Complete replies in order; a malformed line raises, after the replies before it were returned."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    raise RemoteProtocolError(500, "reply line too long")
                return replies
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            try:
                reply = self._line(raw)
            except RemoteProtocolError as error:
                if not replies:
                    raise
                self._error = error  # a 226 followed by junk in one segment still delivers the 226
                return replies
            if reply is not None:
                replies.append(reply)

    @property
    def has_partial(self) -> bool:
        return bool(self._buffer) or self._pending_code is not None

    def _line(self, raw: bytes) -> Reply | None:
        text = raw.decode("utf-8", "replace")
        if self._pending_code is not None:
            match = _CODE_LINE.match(raw)
            if match and int(match.group(1)) == self._pending_code and match.group(2) == b" ":
                self._pending_lines.append(match.group(3).decode("utf-8", "replace"))
                reply = Reply(self._pending_code, tuple(self._pending_lines))
                self._pending_code, self._pending_lines = None, []
                return reply
            if len(self._pending_lines) >= MAX_REPLY_LINES:
                raise RemoteProtocolError(500, "multi-line reply too long")
            self._pending_lines.append(text)
            return None
        match = _CODE_LINE.match(raw)
        if not match:
            raise RemoteProtocolError(500, f"malformed reply line: {text[:80]!r}")
        code, sep, rest = int(match.group(1)), match.group(2), match.group(3).decode("utf-8", "replace")
        if sep == b" ":
            return Reply(code, (rest,))
        self._pending_code, self._pending_lines = code, [rest]
        return None
