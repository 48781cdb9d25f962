"""Sequence fuzzing of the sans-IO :class:`~pyftps.proto.session.ServerSession` (issue 4, "Bad input, tried").

Each generated example is a session (explicit or implicit, a random policy, a random starting point:
fresh, secured, logged in as alice or read-only bob, passive mode ready) followed by a sequence of
events: control bytes (every verb of :data:`pyftps.proto.specs.COMMANDS`, junk verbs, hostile
arguments, Telnet IAC noise, overlong lines, random bytes, all split at random read boundaries)
interleaved with what the I/O layer reports back (TLS handshakes, operation results good and bad,
data connections, transfer outcomes, clock ticks) and with calls that break the I/O contract.

The session is driven by :class:`tests.proto.harness.Harness` with every operation, handshake and
transfer held until an event completes it. After every call the actions are checked against the
invariants listed in :class:`Checker`; a violation, or any exception escaping the session other than
the documented :class:`~pyftps.proto.errors.LocalProtocolError` for a contract breach, fails the run
with a shrunk reproducer.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from pyftps.proto import actions as a
from pyftps.proto.errors import LocalProtocolError
from pyftps.proto.permissions import Permission
from pyftps.proto.policy import CCCPolicy, SessionPolicy
from pyftps.proto.replies import MAX_REPLY_LINE, Reply, ReplyParser
from pyftps.proto.security import TLSState
from pyftps.proto.session import LoginState
from pyftps.proto.specs import COMMANDS
from tests.fuzz.conftest import example_count, fuzz_settings
from tests.proto.harness import Harness

SEQUENCES = 2000  # generated sessions per default run (issue 4: thousands per run)
T = TypeVar("T")

# ---------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Feed:
    """Control bytes from the client, delivered in these reads."""

    chunks: tuple[bytes, ...]
    verbs: tuple[str, ...] = dataclasses.field(default=(), compare=False)


@dataclass(frozen=True)
class Handshake:
    """The TLS handshake asked for with StartTLS completes."""


@dataclass(frozen=True)
class Drop:
    """The I/O layer drops the connection (failed handshake, reset): the session hears nothing more."""


@dataclass(frozen=True)
class FinishOp:
    """The pending operation ends: ``code`` None = what the fakes answer, else ``OpFailed(code, text)``."""

    code: int | None = None
    text: str = ""


@dataclass(frozen=True)
class DataConnected:
    """The data connection of the running transfer exists."""


@dataclass(frozen=True)
class TransferDone:
    bytes_done: int
    code: int | None
    text: str
    aborted: bool


@dataclass(frozen=True)
class Tick:
    seconds: float


@dataclass(frozen=True)
class Misuse:
    """A call that breaks the I/O contract: it must raise LocalProtocolError and change nothing."""

    call: str  # "op_done" | "data_connected" | "transfer_done"


Event = Feed | Handshake | Drop | FinishOp | DataConnected | TransferDone | Tick | Misuse

# ---------------------------------------------------------------------------------------- inputs

VERBS = tuple(sorted(COMMANDS))
JUNK_VERBS = (
    "XYZZY", "GET", "HELO", "SITEX", "RETRIEVE", "US3R", "R\u00c9TR", "\u0130", "A" * 9, "CWD\t",
    "\x7f", "-", "1234", "\u0445\u0443", "PASV\x0b", "NOOP;", "S\u0131TE",
)  # fmt: skip

BIG = {
    "4k-name": "a" * 4096,
    "4k-utf8": "\u00e9" * 2048,
    "deep-dots": "../" * 1400 + "etc/passwd",
    "deep-dirs": "d/" * 2100,
    "long-parts": "/".join(["x" * 255] * 17),
    "overlong": "y" * 8200,
}
FIXED_PATHS = (
    "/", ".", "..", "../..", "/..", "../../..", "/../..", "/pub", "pub", "pub/", "pub/data.bin",
    "/readme.txt", "readme.txt", "nope", "nope/deeper", "pub/../readme.txt", "./pub/./data.bin",
    "pub//data.bin", "//", "...", "....//....//", "%2e%2e", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2f",
    "/etc/passwd", "../../../../etc/shadow", "..\\..\\windows", "C:\\boot.ini", "pub\\data.bin",
    "\\\\server\\share", "a\rb", "a\r", "\r", " leading", "trailing ", "dir with spaces/f",
    "\u00e9t\u00e9", "e\u0301te\u0301", "\uff0e\uff0e/\uff0e\uff0e/etc", "\u2025/etc", "\u2024\u2024",
    "..\u2215..\u2215etc", "\uff0e\uff0e\uff0fetc", "\u202etxt.exe", "\ufeffreadme.txt", "\U0001f600.txt",
    "-la", "-la pub", "-R /", '"quoted"', 'a"b', "*", "?", "~", "~root", "$HOME", "x" * 255, "x" * 256,
    "\u00e9" * 128, ".pyftps-upload-0123abcd.tmp", "pub/.pyftps-upload-ff.tmp",
)  # fmt: skip
PATH_PARTS = (
    "..", ".", "", "...", "a", "pub", "readme.txt", "data.bin", "%2e%2e", "%2f", "..\\..", "\\", "C:",
    "\u00e9", "e\u0301", "\uff0e\uff0e", "\u2025", "\u202e", "\ufeff", "\U0001f600", " ", "a b", "*",
    "-la", "x" * 255, "x" * 256, "\u00e9" * 128, "a\rb", "\r", ".pyftps-upload-00.tmp",
)  # fmt: skip
GOOD_ARGS: dict[str, tuple[str, ...]] = {
    "USER": ("alice", "bob", "mallory", "alice ", "root", "anonymous"),
    "PASS": ("secret", "wrong", "secret ", "SECRET"),
    "AUTH": ("TLS", "SSL", "TLS-C", "TLS-P", "tls", "KERBEROS_V4", "GSSAPI"),
    "PBSZ": ("0", "1024", "-1", "4294967296", "9" * 25),
    "PROT": ("P", "C", "S", "E", "X", "p", "PP"),
    "TYPE": ("I", "A", "A N", "L 8", "E", "L 7", "X", "A T", "I I"),
    "MODE": ("S", "B", "C", "Z"),
    "STRU": ("F", "R", "P", "X"),
    "REST": ("0", "5", "100", "100000000000", "-1", "abc", "9" * 25, "18446744073709551615"),
    "EPSV": ("ALL", "1", "2", "3", "x", "all"),
    "PORT": ("127,0,0,1,200,10", "10,0,0,1,200,10", "127,0,0,1,0,21", "256,0,0,1,1,1", "1,2,3",
             "127,0,0,1,0,0"),
    "EPRT": ("|1|127.0.0.1|50000|", "|2|::1|50000|", "|1|10.0.0.1|50000|", "|3|x|1|", "||||",
             "|1|127.0.0.1|21|"),
    "MFMT": ("20231114221320 readme.txt", "20231114221320 ../../etc/passwd", "99999999999999 x", "2023 x"),
    "SITE": ("HELP", "CHMOD 644 readme.txt", "CHMOD 7777 readme.txt", "CHMOD 4755 pub",
             "CHMOD 644 ../../etc/passwd", "CHMOD", "EXEC /bin/sh", "CHMOD abc x", "chmod 600 pub/data.bin"),
    "OPTS": ("UTF8 ON", "UTF8 OFF", "MLST type;size;modify;", "MLST", "MLST bogus;", "FOO", "UTF8 maybe"),
    "HELP": ("RETR", "BOGUS", "site"),
    "LANG": ("EN", "fr", "en-US", "!!"),
    "HOST": ("localhost", "127.0.0.1", "[::1]", "ftp.example.com", "x:21", "xn--abc", "10.0.0.1", "[::1]:21"),
    "STAT": ("pub", "/", "readme.txt", "-la"),
    "LIST": ("-la", "-la pub", "-a readme.txt"),
    "NLST": ("-1", "pub"),
}  # fmt: skip
TELNET_NOISE = (
    b"", b"", b"", b"", b"", b"\xff\xf4\xff\xf2", b"\xff\xfd\x01", b"\xff\xfb\x03", b"\xff\xfe\x18",
    b"\xff\xfc\x01", b"\xff\xff", b"\xff\xfa\x18\x01\xff\xf0", b"\xff", b"\xff\xf1", b"\x00", b"\r\x00",
)  # fmt: skip
BLOBS = (
    b"A" * 9000 + b"\r\n",
    b"NOOP " + b"x" * 8187 + b"\r\n",  # exactly 8192 octets before CRLF: the largest accepted line
    b"NOOP " + b"x" * 8188 + b"\r\n",
    b"\xff" * 5000,
    b"\r\n" * 3000,
    b"NOOP\r\n" * 40,  # more than the default pipelining limit
    b"\xff\xfa" + b"x" * 10000,  # an unterminated subnegotiation
    b"STAT\r\nABOR\r\n" * 20,
    b"\xc0\xae\xc0\xae/etc/passwd",  # overlong UTF-8 for "../"
    b"RETR \xc0\xae\xc0\xae/etc/passwd\r\n",
    b"CWD \xed\xa0\x80\r\n",  # an encoded surrogate
    b"RETR ../x\x00y\r\n",
)
FAIL_CODES = (421, 425, 426, 450, 451, 452, 500, 501, 502, 504, 521, 522, 530, 534, 550, 551, 552, 553, 554)
TEXTS = ("", "x", "evil\r\n230 Login successful.", "a\nb\rc", "\u00e9\u202e", "x" * 300, "226 ", "\x00")


WEIGHTED_VERBS: dict[str, int] = {
    **dict.fromkeys(VERBS, 1),
    **dict.fromkeys(("RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"), 4),
    **dict.fromkeys(("PASV", "EPSV", "PORT", "EPRT", "ABOR", "STAT", "REST"), 3),
    **dict.fromkeys(("CWD", "MKD", "RMD", "DELE", "RNFR", "RNTO", "SIZE", "MDTM", "MFMT", "MLST", "SITE"), 2),
    **dict.fromkeys(("USER", "PASS", "AUTH", "PBSZ", "PROT", "CCC", "REIN", "TYPE", "HOST"), 2),
}
# None: a random verb of ASCII letters.
VERB_TABLE: tuple[str | None, ...] = (
    "NOOP",  # what a zero byte decodes to: harmless
    *(verb for verb, weight in WEIGHTED_VERBS.items() for _ in range(weight)),
    *JUNK_VERBS,
    None, None, None, None,
)  # fmt: skip
TRANSFER_PATHS = (
    "readme.txt",
    "pub/data.bin",
    "pub",
    "/",
    "new.bin",
    "pub/new.bin",
    "nope/x",
    "../../etc/passwd",
)
for _verb in ("RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD", "SIZE", "MDTM", "MLST", "DELE", "RNFR",
              "RNTO", "CWD", "MKD", "RMD"):  # fmt: skip
    GOOD_ARGS.setdefault(_verb, TRANSFER_PATHS)
ALPHABET = (
    *string.ascii_letters, *string.digits, *string.punctuation, *"   ///...\\\\",
    "\r", "\n", "\t", "\x00", "\x1b", "\x7f", "\u00e9", "e\u0301", "\u202e", "\uff0e", "\u2025", "\ufeff",
    "\U0001f600", "\u0130", "\u3000", "\ud7ff", "\ue000", "\ufffd",
)  # fmt: skip
ENDS = (b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"", b"\r", b"\r\x00\r\n")
TICKS = (0.0, 0.5, 1.0, 2.9, 3.0, 30.0, 599.0, 600.0, 601.0, 3600.0)
# The first value of each knob is the default: a zero byte keeps the default policy.
POLICY_KNOBS: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("tls_available", (True, True, True, False)),
    ("require_tls_for_login", (True, True, False)),
    ("require_protected_data", (True, True, False)),
    ("ccc", (CCCPolicy.AFTER_LOGIN, CCCPolicy.ALWAYS, CCCPolicy.NEVER)),
    ("allow_foreign_data_address", (False, True)),
    ("allow_low_data_ports", (False, True)),
    ("max_login_failures", (3, 2, 1)),
    ("login_failure_delay", (3.0, 0.0)),
    ("idle_timeout", (600.0, 1.0)),
    ("passive_address", (None, "10.0.0.1")),
    ("host_names", (frozenset(), frozenset({"ftp.example.com"}))),
    ("ascii_size_limit", (64 * 1024 * 1024, 0)),
    ("stat_list_limit", (2000, 1, 0)),
    ("max_queued_commands", (32, 32, 2, 1)),
    ("max_line", (8192, 8192, 64, 16)),
)
START_POINTS = ("alice-passive", "alice-passive", "alice", "alice", "fresh", "secured", "bob")
MAX_EVENTS = 150
SCRIPTS: tuple[tuple[str, ...], ...] = (
    ("EPSV",), ("PASV",), ("PORT 127,0,0,1,200,10",), ("EPRT |1|127.0.0.1|50000|",), ("EPRT |2|::1|50000|",),
    ("PORT 10,0,0,1,200,10",), ("RNFR readme.txt", "RNTO moved.txt"), ("RNFR pub", "RNTO ../../escaped"),
    ("RNFR pub/data.bin", "RNTO /pub"), ("REST 5", "RETR readme.txt"), ("TYPE I", "SIZE readme.txt"),
    ("TYPE A", "SIZE readme.txt"), ("CCC",), ("REIN",), ("USER alice", "PASS secret"),
    ("USER bob", "PASS nope"),
    ("STAT pub",), ("STAT",), ("ABOR",), ("MLST pub",), ("SITE CHMOD 600 readme.txt",),
    ("MFMT 20231114221320 readme.txt",), ("MKD new", "RMD new"), ("DELE readme.txt",), ("CWD pub", "CDUP"),
    ("OPTS MLST type;", "MLSD"), ("EPSV ALL", "PASV"), ("QUIT",), ("EPSV", "STOR up.bin", "ABOR"),
    ("PASV", "LIST", "STAT"), ("HOST ftp.example.com",), ("PROT C",), ("PBSZ 0", "PROT P"),
)  # fmt: skip


class Source:
    """Turns the bytes hypothesis draws into choices (atheris' FuzzedDataProvider, in small).

    Past the end every choice is 0, which the tables map to their most harmless option, so a
    failure shrinks towards a short prefix; the events are decided one at a time, looking at what
    the session is waiting for, so that sequences get deep (logged in, transfers running).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        if n <= 1:
            return 0
        value = self.byte()
        if n > 256:
            value = value << 8 | self.byte()
        return value % n

    def choice(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def chance(self, per256: int) -> bool:
        return self.byte() >= 256 - per256

    def raw(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def text(self, max_len: int) -> str:
        return "".join(self.choice(ALPHABET) for _ in range(self.below(max_len + 1)))


def decode_scenario(src: Source) -> Scenario:
    overrides = {name: src.choice(values) for name, values in POLICY_KNOBS}
    policy = dataclasses.replace(SessionPolicy(), **overrides)
    return Scenario(policy, implicit=src.chance(64), ipv6=src.chance(32), start=src.choice(START_POINTS))


def decode_arg(src: Source, verb: str) -> str | None:
    good = GOOD_ARGS.get(verb)
    k = src.byte()
    if k < 110:
        return src.choice(good) if good else None
    if k < 140:
        return None
    if k < 192:
        return src.choice(FIXED_PATHS)
    if k < 195:
        return src.choice(tuple(BIG.values()))  # kept rare: the reader parses byte by byte
    if k < 235:
        parts = [src.choice(PATH_PARTS) for _ in range(src.below(9))]
        return src.choice(("", "/", "//")) + "/".join(parts)
    return src.text(24)


def decode_line(src: Source) -> tuple[bytes, str]:
    verb = src.choice(VERB_TABLE)
    if verb is None:
        verb = "".join(src.choice(string.ascii_letters) for _ in range(1 + src.below(10)))
    spelled = src.choice((verb, verb, verb, verb.lower(), verb.title()))
    arg = decode_arg(src, verb.upper())
    sep = src.choice((" ", " ", " ", " ", "  ", "\t"))
    lead = " " if src.chance(16) else ""
    raw = (lead + spelled + ("" if arg is None else sep + arg)).encode("utf-8", "surrogatepass")
    noise = src.choice(TELNET_NOISE)
    if noise:
        at = src.below(len(raw) + 1)
        raw = raw[:at] + noise + raw[at:]
    return raw + src.choice(ENDS), verb.upper()


def decode_feed(src: Source) -> Feed:
    kind = src.byte()
    verbs: tuple[str, ...] = ()
    if kind < 220:
        lines = [decode_line(src) for _ in range(1 + (src.below(3) if src.chance(48) else 0))]
        data = b"".join(line for line, _ in lines)
        verbs = tuple(verb for _, verb in lines)
    elif kind < 254:
        data = src.raw(src.below(65))
    else:
        data = src.choice(BLOBS)
    cuts = (
        sorted({1 + src.below(len(data) - 1) for _ in range(src.choice((0, 0, 0, 1, 2, 3)))})
        if len(data) > 1
        else []
    )
    chunks = tuple(data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True))
    return Feed(chunks or (b"",), verbs)


def decode_event(src: Source, h: Harness, connected: bool) -> Event:
    """The next event, weighted by what the session waits for (a held op, a handshake, a transfer)."""
    kinds = ["tick"] * 3 + ["feed"] * 30 + ["misuse"]
    state = h.session.state
    if state.logged_in and not h.session.busy and not h.handshake_pending:
        kinds += ["script"] * 8  # short valid exchanges that random lines rarely hit
        if state.passive_ready or state.active:
            kinds += ["transfer_cmd"] * 12
    if h.handshake_pending:
        kinds += ["handshake"] * 40
    if h.pending_op is not None:
        kinds += ["finish"] * 40
    if h.running is not None:
        kinds += ["data_connected"] * (0 if connected else 15) + ["transfer_done"] * 20
    kind = src.choice(kinds)
    if kind == "tick":
        return Tick(src.choice(TICKS))
    if kind == "feed":
        return decode_feed(src)
    if kind == "misuse":
        value = src.byte()
        return Drop() if value == 255 else Misuse(("op_done", "data_connected", "transfer_done")[value % 3])
    if kind == "script":
        lines = src.choice(SCRIPTS)
        return Feed(
            ("".join(line + "\r\n" for line in lines).encode(),), tuple(x.split(" ")[0] for x in lines)
        )
    if kind == "transfer_cmd":
        verb = src.choice(("RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"))
        arg = decode_arg(src, verb)
        return Feed((f"{verb} {arg or ''}".rstrip().encode() + b"\r\n",), (verb,))
    if kind == "handshake":
        return Handshake()
    if kind == "finish":
        if src.byte() < 192:
            return FinishOp()
        return FinishOp(src.choice(FAIL_CODES), src.choice(TEXTS) if src.chance(192) else src.text(12))
    if kind == "data_connected":
        return DataConnected()
    value = src.byte()
    if value < 128:
        return TransferDone(src.below(2**16), None, "", False)
    if value < 224:
        return TransferDone(src.below(2**16), src.choice(FAIL_CODES), src.choice(TEXTS), False)
    return TransferDone(src.below(2**16), None, "", True)


@dataclass
class Scenario:
    policy: SessionPolicy
    implicit: bool
    ipv6: bool
    start: str


def _line(text: str) -> Feed:
    return Feed((text.encode() + b"\r\n",), (text.split(" ", maxsplit=1)[0],))


def prefix(start: str, implicit: bool) -> list[Event]:
    """The events that bring a fresh session to ``start`` (checked like every other event)."""
    if start == "fresh":
        return []
    events: list[Event] = (
        [Handshake()] if implicit else [_line("AUTH TLS"), Handshake(), _line("PBSZ 0"), _line("PROT P")]
    )
    if start == "secured":
        return events
    user = "bob" if start == "bob" else "alice"
    events += [_line(f"USER {user}"), _line("PASS secret"), FinishOp()]
    if start == "alice-passive":
        events += [_line("EPSV"), FinishOp()]
    return events


# ---------------------------------------------------------------------------------------- checks

NEEDED: dict[type[Any], Permission] = {
    a.MakeDir: Permission.MKDIR,
    a.RemoveDir: Permission.RMDIR,
    a.DeleteFile: Permission.DELETE,
    a.RenamePath: Permission.RENAME,
    a.SetMtime: Permission.WRITE,
    a.Chmod: Permission.CHMOD,
    a.AsciiSize: Permission.LIST,
    a.ListNames: Permission.LIST,
}
TRANSFER_NEEDS = {
    a.TransferKind.RETR: Permission.READ,
    a.TransferKind.STOR: Permission.WRITE,
    a.TransferKind.STOU: Permission.WRITE,
    a.TransferKind.APPE: Permission.APPEND,
    a.TransferKind.LIST: Permission.LIST,
    a.TransferKind.NLST: Permission.LIST,
    a.TransferKind.MLSD: Permission.LIST,
}
UNPROTECTED_STATES = (TLSState.PLAIN, TLSState.HANDSHAKE, TLSState.IMPLICIT_WAIT)


def check_reply(reply: Reply) -> None:
    """A valid 3-digit code and well-formed bytes: CRLF-terminated lines with no CR or LF inside,
    multi-line framing that a client parses back as exactly this one reply."""
    assert isinstance(reply.code, int) and 100 <= reply.code <= 599, reply
    wire = reply.to_bytes()
    assert wire.endswith(b"\r\n"), wire
    lines = wire[:-2].split(b"\r\n")
    code = str(reply.code).encode()
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, wire
        assert len(line) <= MAX_REPLY_LINE
    if len(lines) == 1:
        assert lines[0].startswith(code + b" "), wire
    else:
        assert lines[0].startswith(code + b"-") and lines[-1].startswith(code + b" "), wire
        assert not any(line.startswith(code + b" ") for line in lines[1:-1]), wire
    parser = ReplyParser()
    parsed = parser.feed(wire)
    assert [p.code for p in parsed] == [reply.code] and not parser.has_partial, wire


def check_path(path: str) -> None:
    """A path handed to the I/O layer is absolute and normalised: no empty, '.' or '..' component."""
    assert isinstance(path, str) and path.startswith("/"), path
    assert "\x00" not in path, path
    if path != "/":
        assert all(part not in ("", ".", "..") for part in path[1:].split("/")), path


def op_paths(op: a.Op) -> list[str]:
    if isinstance(op, a.RenamePath):
        return [op.source, op.target]
    path = getattr(op, "path", None)
    return [] if path is None else [path]


@dataclass(frozen=True)
class Before:
    closed: bool
    logged_in: bool
    tls: TLSState
    tls_up: bool


class Checker:
    """Runs one scenario and checks, after every call into the session:

    * no exception escapes (contract breaches: exactly LocalProtocolError, and nothing changes);
    * every reply has a code in 100-599 and well-formed bytes (no bare CR/LF inside a line);
    * a 1xx reply only as the answer to ``data_connected``, hence at most one per transfer, and the
      transfer's first reply after ``transfer_done`` is final;
    * every ``RunOp`` path is absolute and normalised; storage operations only when logged in and
      permitted; Authenticate only under TLS when the policy wants it; transfers only protected when
      the policy wants it; active data addresses only the client's own and >= 1024 (RFC 2577);
    * ``Close`` and ``StartTLS`` end their batch; after ``Close`` nothing else is ever emitted;
    * StartTLS only into HANDSHAKE/IMPLICIT_WAIT, StopTLS only on a protected channel, the model's
      TLS channel matching the session's TLS state, PBSZ/PROT only after a security exchange;
    * a 230 (and the logged-in state) only in answer to the authenticator's yes; EndLogin whenever
      a logged-in identity goes away;
    * bounded memory: the command queue and the partial line stay within the policy's limits.
    """

    def __init__(self, scenario: Scenario, stats: Counter[str]) -> None:
        self.scenario = scenario
        self.stats = stats
        self.h = Harness(
            policy=scenario.policy,
            implicit=scenario.implicit,
            ipv6=scenario.ipv6,
            peer="::1" if scenario.ipv6 else "127.0.0.1",
            local="::1" if scenario.ipv6 else "127.0.0.1",
            auto_tls=False,
            auto_transfer=False,
        )
        self.h.hold_ops = True
        self.dropped = False
        self.connected = False  # data_connected was reported for the running transfer
        self.log: list[Event] = []
        self.check("start", Before(False, False, self.h.tls_state, False), self.h.last)

    # ------------------------------------------------------------------ driving

    def before(self) -> Before:
        return Before(self.h.closed, self.h.session.state.logged_in, self.h.tls_state, self.h.tls_up)

    def run(self, events: list[Event]) -> None:
        for event in events:
            if self.dropped:
                return
            self.log.append(event)
            self.step(event)

    def run_decoded(self, src: Source) -> None:
        """Decode and run events until the bytes run out (or the connection is gone)."""
        for _ in range(MAX_EVENTS):
            if src.exhausted or self.dropped:
                return
            event = decode_event(src, self.h, self.connected)
            self.log.append(event)
            self.step(event)

    def step(self, event: Event) -> None:
        h = self.h
        match event:
            case Feed(chunks, verbs):
                if h.handshake_pending:
                    return  # these bytes would go to the TLS handshake, not to the session
                self.stats.update(f"verb:{verb}" for verb in verbs)
                for chunk in chunks:
                    before = self.before()
                    h.feed(chunk)
                    self.check("feed", before, h.last)
            case Handshake():
                if h.handshake_pending and not h.closed:
                    before = self.before()
                    h.handshake()
                    self.stats["handshake"] += 1
                    self.check("handshake", before, h.last)
            case Drop():
                self.dropped = True
            case FinishOp(code, text):
                if h.pending_op is not None and not h.closed:
                    self.finish_op(code, text)
            case DataConnected():
                if h.running is not None and not self.connected and not h.closed:
                    self.data_connected()
            case TransferDone(bytes_done, code, text, aborted):
                if h.running is None or h.closed:
                    return
                if code is None and not aborted and not self.connected:
                    self.data_connected()  # the real runner never succeeds without a data connection
                before = self.before()
                h.transfer_done(bytes_done, code, text, aborted)
                self.connected = False
                self.stats["transfer_done"] += 1
                self.check("transfer_done", before, h.last)
            case Tick(seconds):
                before = self.before()
                h.advance(seconds)
                replies = h.tick()
                self.check("tick", before, h.last)
                assert h.kinds() in ([], ["421", "Close"]), h.kinds()
                if replies:
                    self.stats["idle_timeout"] += 1
            case Misuse(call):
                self.misuse(call)

    def finish_op(self, code: int | None, text: str) -> None:
        h = self.h
        op = h.pending_op
        assert op is not None
        result = h._answer(op) if code is None else a.OpFailed(code, text)
        accepted = (
            isinstance(op, a.Authenticate)
            and isinstance(result, a.OpOk)
            and isinstance(result.value, a.LoginAccepted)
        )
        before = self.before()
        h.complete_op(result)
        self.stats[f"op:{type(op).__name__}"] += 1
        self.check("op_done", before, h.last, accepted_login=accepted)
        if accepted:
            self.stats["login"] += 1

    def data_connected(self) -> None:
        before = self.before()
        self.h.data_connected()
        self.connected = True
        self.check("data_connected", before, self.h.last)

    def misuse(self, call: str) -> None:
        h, session = self.h, self.h.session
        snapshot = dataclasses.replace(session.state)
        if call == "op_done" and h.pending_op is None:
            with pytest.raises(LocalProtocolError):
                session.op_done(a.OpOk(), h.now)
        elif call == "data_connected" and h.running is None:
            with pytest.raises(LocalProtocolError):
                session.data_connected(h.now)
        elif call == "transfer_done" and h.running is None:
            with pytest.raises(LocalProtocolError):
                session.transfer_done(a.TransferOutcome(0), h.now)
        else:
            return
        self.stats["misuse"] += 1
        assert session.state == snapshot

    # ------------------------------------------------------------------ invariants

    def check(
        self, cause: str, before: Before, actions: list[a.Action], *, accepted_login: bool = False
    ) -> None:
        h, s = self.h, self.h.session
        policy = s.policy
        if before.closed:
            assert actions == [], f"{cause} after Close emitted {actions!r}"
            return
        for i, action in enumerate(actions):
            if isinstance(action, a.Close | a.StartTLS):
                assert i == len(actions) - 1, f"{type(action).__name__} is not last: {h.kinds(actions)}"
        replies = [action.reply for action in actions if isinstance(action, a.SendReply)]
        for reply in replies:
            check_reply(reply)
        for action in actions:
            if isinstance(action, a.SendRaw):
                data = action.data
                assert len(data) == 3 and data[0] == 0xFF and data[1] in (0xFC, 0xFE), data
            elif isinstance(action, a.RunOp):
                self.check_op(action.op)
            elif isinstance(action, a.StopTLS):
                assert s.state.tls in (TLSState.CLEARED, TLSState.PLAIN, TLSState.IMPLICIT_WAIT) or h.closed
                self.stats["stop_tls"] += 1
            elif isinstance(action, a.StartTLS):
                assert s.state.tls in (TLSState.HANDSHAKE, TLSState.IMPLICIT_WAIT), s.state.tls
                assert h.handshake_pending and not h.tls_up
        codes = [reply.code for reply in replies]
        # 1xx: only the answer to data_connected, exactly one 150 and nothing else.
        if cause == "data_connected":
            assert codes == [150] and len(actions) == 1, h.kinds(actions)
            self.stats["preliminary"] += 1
        else:
            assert all(code >= 200 for code in codes), (
                f"{cause}: preliminary reply outside a transfer {codes}"
            )
        if cause == "transfer_done":
            assert actions and isinstance(actions[0], a.SendReply), h.kinds(actions)
        # A 230 and the logged-in state only in answer to the authenticator's yes.
        if accepted_login:
            assert codes[:1] == [230], codes
        else:
            assert 230 not in codes, f"{cause} produced a 230 without an accepted login"
            assert before.logged_in or not s.state.logged_in, f"{cause} logged the session in"
        if before.logged_in and not s.state.logged_in and not h.closed:
            assert any(isinstance(action, a.EndLogin) for action in actions), h.kinds(actions)
        if s.state.logged_in:
            assert s.state.user is not None and s.state.login is LoginState.LOGGED_IN
        else:
            assert s.state.user is None and s.state.permissions == Permission(0)
        if h.closed or self.dropped:
            assert s.closed or not h.closed
            self.stats["closed"] += 1
            return
        # TLS model and session agree; protection settings only after a security exchange.
        tls = s.state.tls
        assert h.tls_up == tls.protected, (h.tls_up, tls)
        assert h.handshake_pending == (tls in (TLSState.HANDSHAKE, TLSState.IMPLICIT_WAIT)), tls
        if tls in UNPROTECTED_STATES:
            assert not s.state.pbsz_ok and s.state.prot == "C", (tls, s.state.pbsz_ok, s.state.prot)
        if policy.require_tls_for_login and s.state.logged_in:
            assert tls in (TLSState.TLS, TLSState.CLEARED, TLSState.IMPLICIT), tls
        if policy.require_protected_data:
            assert s.state.prot in ("C", "P")
        # The I/O model and the session agree on what is outstanding; memory stays bounded.
        assert (h.pending_op is not None) == (s._continuation is not None)
        assert (h.running is not None) == (s.transfer is not None)
        if s.busy:
            assert s.next_deadline() is None
        assert len(s._queue) <= policy.max_queued_commands
        assert s._reader.buffered <= policy.max_line + 2, s._reader.buffered
        if s.state.logged_in:
            self.stats["logged_in_batches"] += 1

    def check_op(self, op: a.Op) -> None:
        s, policy = self.h.session, self.h.session.policy
        for path in op_paths(op):
            check_path(path)
        self.stats[f"runop:{type(op).__name__}"] += 1
        if isinstance(op, a.Authenticate):
            assert not s.state.logged_in
            if policy.require_tls_for_login:
                assert s.state.tls.protected, s.state.tls
            return
        assert s.state.logged_in, f"{op!r} before login"
        needed = NEEDED.get(type(op))
        if isinstance(op, a.Transfer):
            needed = TRANSFER_NEEDS[op.kind]
            assert op.offset >= 0
            if policy.require_protected_data:
                assert op.protect, op
            if op.active is not None:
                self.stats["active_transfer"] += 1
                if not policy.allow_foreign_data_address:
                    assert op.active.host in ("127.0.0.1", "::1"), op.active
                if not policy.allow_low_data_ports:
                    assert op.active.port >= 1024, op.active
            assert op.progress.bytes_done == 0
        if needed is not None:
            assert needed in s.state.permissions, (op, s.state.permissions)
        if isinstance(op, a.Chmod):
            assert 0 <= op.mode <= 0o777
        if isinstance(op, a.SetMtime):
            assert math.isfinite(op.mtime)


# ---------------------------------------------------------------------------------------- tests


def test_session_sequences_keep_every_invariant(record_property: Any) -> None:
    stats: Counter[str] = Counter()

    @fuzz_settings(SEQUENCES)
    @given(st.binary(min_size=64, max_size=2048))
    def run(data: bytes) -> None:
        src = Source(data)
        scenario = decode_scenario(src)
        checker = Checker(scenario, stats)
        try:
            checker.run(prefix(scenario.start, scenario.implicit))
            checker.run_decoded(src)
        except BaseException:
            note(f"{scenario}\n" + "\n".join(repr(event) for event in checker.log))
            raise
        stats["sequences"] += 1
        stats["events"] += len(checker.log)

    run()
    record_property("sequences", stats["sequences"])
    print(
        f"\nsession fuzz: {stats['sequences']} sequences, {stats['events']} events, "
        f"{stats['login']} logins, {stats['transfer_done']} transfers, {stats['misuse']} contract breaches"
    )
    assert stats["sequences"] >= example_count(SEQUENCES)
    if stats["sequences"] < SEQUENCES:
        return  # a short run (PYFTPS_FUZZ_EXAMPLES) need not reach everything
    # The generator must reach deep states, not only bounce off the login gate.
    missing = [verb for verb in COMMANDS if not stats[f"verb:{verb}"]]
    assert not missing, f"verbs never generated: {missing}"
    for key in (
        "login",
        "transfer_done",
        "preliminary",
        "stop_tls",
        "idle_timeout",
        "misuse",
        "active_transfer",
    ):
        assert stats[key] > 0, f"never reached: {key} ({stats})"
    for op in ("MakeDir", "RemoveDir", "DeleteFile", "RenamePath", "SetMtime", "Chmod", "Transfer"):
        assert stats[f"runop:{op}"] > 0, f"never emitted: {op}"
