"""Control-connection command parsing: CRLF framing, Telnet IAC handling, line-length limit, UTF-8.

RFC 959 §4.1/§5.3 (syntax), RFC 1123 §4.1.2.10 (read boundaries are not line boundaries) and
§4.1.2.12 (refuse Telnet option negotiation), RFC 2640 §3.1 (exactly one space after the verb;
further spaces belong to the pathname; ``CR NUL`` stands for a CR in a pathname), RFC 4217 §14
(``IAC IP``/``IAC DM`` arrive in-band under TLS and are dropped before parsing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyftps.proto.codes import ReplyCode

IAC, DONT, DO, WONT, WILL, SB, SE, IP, DM = 255, 254, 253, 252, 251, 250, 240, 244, 242
DEFAULT_MAX_LINE = 8192  # CONFORMANCE §3.4: pathnames up to 4096 bytes plus the command
_CONTROL_CHARS = re.compile(r"[\x00-\x0c\x0e-\x1f]")  # C0 controls but CR (RFC 2640 §3.1 "CR NUL")


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command: verb upper-cased, argument exactly as sent after the first space."""

    verb: str
    arg: str | None = None

    def __str__(self) -> str:
        return self.verb if self.arg is None else f"{self.verb} {self.arg}"


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that cannot be a command; the session answers it with ``code``."""

    code: int
    text: str


@dataclass(frozen=True, slots=True)
class TelnetRefusal:
    """Bytes to send back to refuse a Telnet option (``DO x`` → ``WONT x``, ``WILL x`` → ``DONT x``)."""

    data: bytes


LineEvent = Command | BadLine | TelnetRefusal


class CommandReader:
    """Incremental parser: feed raw control bytes (already decrypted), take events one at a time.

    Events are handed out one by one so that the caller can stop right after a command that
    switches the channel (AUTH, CCC, REIN) and take the bytes behind it raw with :meth:`take_unparsed`.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.max_line = max_line
        self._input = bytearray()
        self._pos = 0
        self._line = bytearray()
        self._iac_state: int | None = None  # None, IAC, SB, SE, or the negotiation verb awaiting its option
        self._overlong = False

    def feed(self, data: bytes) -> None:
        self._input += data

    def next_event(self) -> LineEvent | None:
        """The next complete event, or None when more bytes are needed."""
        data, pos, end = self._input, self._pos, len(self._input)
        event: LineEvent | None = None
        while pos < end:
            if self._iac_state is None and not self._overlong:
                # Fast path: a run of plain octets (no LF, no IAC) that fits the limit is copied in one
                # slice; per-octet handling is then needed only for IAC and over-long lines.
                lf = data.find(b"\n", pos, end)  # the run ends at the next LF or IAC
                limit = end if lf == -1 else lf
                iac = data.find(b"\xff", pos, limit)
                stop = limit if iac == -1 else iac
                if stop > pos and len(self._line) + (stop - pos) <= self.max_line:
                    self._line += data[pos:stop]
                    pos = stop
                    if pos == end:
                        break
                if data[pos] == 0x0A:  # the line is complete: what _byte() would do with this LF
                    pos += 1
                    event = self._end_line()
                    if event is not None:
                        break
                    continue
            event = self._byte(data[pos])
            pos += 1
            if event is not None:
                break
        # Drop what was consumed (twice per command, so not in a helper)
        if pos >= len(data):
            data.clear()
            self._pos = 0
        else:
            self._pos = pos
        return event

    def events(self, data: bytes = b"") -> list[LineEvent]:
        """Feed ``data`` and return every complete event (convenience for tests and the client)."""
        self.feed(data)
        out: list[LineEvent] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out

    def take_unparsed(self) -> bytes:
        """Bytes received but not yet part of a returned event, raw; the reader is left empty."""
        raw = bytes(self._input[self._pos :])
        self._input.clear()
        self._pos = 0
        self._line.clear()
        self._iac_state = None
        self._overlong = False
        return raw

    @property
    def buffered(self) -> int:
        return len(self._line) + len(self._input) - self._pos

    def _compact(self, pos: int) -> None:
        if pos >= len(self._input):
            self._input.clear()
            self._pos = 0
        else:
            self._pos = pos

    def _byte(self, byte: int) -> LineEvent | None:
        state = self._iac_state
        if state is not None:
            return self._telnet(state, byte)
        if byte == IAC:
            self._iac_state = IAC
            return None
        if byte == 0x0A:  # LF ends the line; a preceding CR is stripped below
            return self._end_line()
        self._append(byte)
        return None

    def _append(self, byte: int) -> None:
        if self._overlong:
            return
        # The limit counts the command, not its line end: a CR right after max_line octets is fine.
        if len(self._line) >= self.max_line + (byte == 0x0D):
            self._overlong = True  # keep discarding until the next LF, then report it once
            self._line.clear()
            return
        self._line.append(byte)

    def _telnet(self, state: int, byte: int) -> LineEvent | None:
        if state == IAC:
            self._iac_state = None
            if byte == IAC:  # escaped 0xFF data byte
                self._append(0xFF)
            elif byte in (DO, DONT, WILL, WONT, SB):
                self._iac_state = byte
            # IP, DM, AYT, NOP...: dropped (RFC 4217 §14)
            return None
        if state == SB:  # subnegotiation: skip until IAC SE
            if byte == IAC:
                self._iac_state = SE
            return None
        if state == SE:
            self._iac_state = None if byte == SE else SB
            return None
        self._iac_state = None
        if state == DO:
            return TelnetRefusal(bytes((IAC, WONT, byte)))
        if state == WILL:
            return TelnetRefusal(bytes((IAC, DONT, byte)))
        return None  # WONT/DONT need no answer

    def _end_line(self) -> LineEvent | None:
        if self._overlong:
            self._overlong = False
            self._line.clear()
            return BadLine(ReplyCode.SYNTAX_ERROR, "Command line too long.")
        raw = bytes(self._line)
        self._line.clear()
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return parse_line(raw.replace(b"\r\x00", b"\r"))


def parse_line(raw: bytes) -> Command | BadLine | None:
    """Parse one line without its CRLF; ``None`` for an empty line (ignored, as most servers do)."""
    if not raw.strip():
        return None
    if b"\x00" in raw:
        return BadLine(ReplyCode.SYNTAX_ERROR_ARGS, "NUL bytes are not allowed in commands.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadLine(ReplyCode.SYNTAX_ERROR_ARGS, "Command is not valid UTF-8 (RFC 2640).")
    text = text.lstrip(" ")
    verb, sep, arg = text.partition(" ")
    if not verb.isascii() or not verb.isalpha() or len(verb) > 8:
        return BadLine(ReplyCode.SYNTAX_ERROR, "Syntax error, command unrecognized.")
    if _CONTROL_CHARS.search(arg):
        return BadLine(ReplyCode.SYNTAX_ERROR_ARGS, "Control characters are not allowed in arguments.")
    return Command(verb.upper(), arg if sep else None)
