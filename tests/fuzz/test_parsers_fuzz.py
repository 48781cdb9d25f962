"""Raw-input fuzzing of the parsers that see attacker bytes first (issue 4, "Bad input, tried").

:class:`~pyftps.proto.commands.CommandReader` (control bytes), :class:`~pyftps.proto.replies.ReplyParser`
(reply bytes, client side), :func:`pyftps.proto.paths.resolve` and the backend's own containment check
(:class:`~pyftps.storage.local.LocalStorage` on a tree with symlinks pointing out), and every argument
and reply-text parser of :mod:`pyftps.proto.grammar` and :mod:`pyftps.proto.listing`. Each must return a
value of the documented shape or raise its documented error; nothing else may escape.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyftps.proto import grammar, listing, paths
from pyftps.proto.commands import BadLine, Command, CommandReader, LineEvent, TelnetRefusal
from pyftps.proto.errors import RemoteProtocolError
from pyftps.proto.replies import Reply, ReplyParser, format_reply
from pyftps.storage.base import StorageError
from pyftps.storage.local import LocalStorage, split_virtual_path
from tests.fuzz.conftest import fuzz_settings

# ------------------------------------------------------------------------------------- inputs

CONTROL_TOKENS = (
    b"\r\n", b"\n", b"\r", b"\r\x00", b"\x00", b"\xff", b"\xff\xff", b"\xff\xfd", b"\xff\xfb", b"\xff\xfe",
    b"\xff\xfc", b"\xff\xfa", b"\xff\xf0", b"\xff\xf4\xff\xf2", b"\xff\xfa\x18\x01\xff\xf0", b"USER alice",
    b"RETR ", b"AUTH TLS\r\n", b"  ", b" ", b"\t", b"\xc3\xa9", b"\xed\xa0\x80", b"\xc0\xae", b"A" * 70,
    b"../", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # the start of a TLS ClientHello
)  # fmt: skip
PATH_ALPHABET = (
    "/", "/", ".", ".", "..", "\\", "%2e", "%2f", "a", "b", "\u00e9", "e\u0301", "\uff0e", "\u2025", " ",
    "\r", "\x00", "x" * 100, "\U0001f600", "~", "*", "\u202e", "\ufeff", "c",
)  # fmt: skip
GRAMMAR_TOKENS = (
    "0", "1", "9", "255", "256", ",", "|", ".", ":", "[", "]", "%", "-", " ", "\t", "A", "I", "L", "N", "S",
    "P", "C", "E", "F", "ALL", "::1", "127", "xn--", "\u0661", "\u00b2", "(", ")", "20231114", "221320", "60",
    "99999999999999999999999", ";", "=", "type", "size", "modify", "drwxr-xr-x", "Nov 14 22:13", "<DIR>",
    "\n",
)  # fmt: skip


def tokens(raw: bytes, table: tuple[bytes, ...]) -> bytes:
    """Raw bytes with the low values standing for interesting tokens (cheaper than a composite strategy)."""
    n = len(table)
    return b"".join(table[b] if b < n else bytes((b,)) for b in raw)


def text_from(raw: bytes, table: tuple[str, ...]) -> str:
    """Text from raw bytes: token bytes as tokens, the rest decoded as UTF-8 (invalid input replaced)."""
    first = raw[:1]
    if first and first[0] >= 0xF0:  # a sixteenth of the inputs: plain UTF-8, no tokens at all
        return raw[1:].decode("utf-8", "replace")
    n = len(table)
    out, run = [], bytearray()
    for b in raw:
        if b < n:
            out.append(run.decode("utf-8", "replace") + table[b])
            run.clear()
        else:
            run.append(b)
    out.append(run.decode("utf-8", "replace"))
    return "".join(out)


CONTROL_BYTES = st.binary(max_size=240).map(lambda raw: tokens(raw, CONTROL_TOKENS))
PATH_TEXT = st.binary(max_size=48).map(lambda raw: text_from(raw, PATH_ALPHABET))
GRAMMAR_TEXT = st.binary(max_size=48).map(lambda raw: text_from(raw, GRAMMAR_TOKENS))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[i:j] for i, j in zip([0, *points], [*points, len(data)], strict=True)]


# ------------------------------------------------------------------------------------- CommandReader


def drain(reader: CommandReader) -> list[LineEvent]:
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def check_event(event: LineEvent, max_line: int) -> None:
    if isinstance(event, Command):
        assert event.verb.isascii() and event.verb.isalpha() and event.verb.isupper(), event
        assert 1 <= len(event.verb) <= 8
        if event.arg is not None:
            assert not any(ord(c) < 0x20 and c != "\r" for c in event.arg), event
            assert len(event.arg.encode()) <= max_line
    elif isinstance(event, BadLine):
        assert event.code in (500, 501), event
    else:
        assert isinstance(event, TelnetRefusal), event
        assert len(event.data) == 3 and event.data[:2] in (b"\xff\xfc", b"\xff\xfe"), event


@fuzz_settings(2500)
@given(data=CONTROL_BYTES)
def test_command_reader_any_bytes(data: bytes) -> None:
    max_line = (4, 16, 64, 8192)[len(data) % 4]
    cuts = list(data[-3:])  # read boundaries, taken from the input itself
    whole = CommandReader(max_line).events(data)
    # RFC 1123 §4.1.2.10: read boundaries are not line boundaries, the events must not depend on them.
    reader = CommandReader(max_line)
    pieces: list[LineEvent] = []
    for chunk in split(data, cuts):
        reader.feed(chunk)
        pieces += drain(reader)
        assert reader.buffered <= max_line + 1  # a partial line never holds more than the limit
    assert pieces == whole
    for event in whole:
        check_event(event, max_line)


@fuzz_settings(1000)
@given(data=CONTROL_BYTES)
def test_command_reader_hands_over_exactly_the_bytes_behind_a_line(data: bytes) -> None:
    """What AUTH relies on: the bytes after a command line, raw, parse exactly as the rest would."""
    max_line = (16, 8192)[len(data) % 2]
    whole = CommandReader(max_line).events(data)
    for i, event in enumerate(whole):
        if isinstance(event, TelnetRefusal):
            continue  # mid-line: the partial line is not part of the unparsed bytes by design
        reader = CommandReader(max_line)
        reader.feed(data)
        assert [reader.next_event() for _ in range(i + 1)] == whole[: i + 1]
        rest = reader.take_unparsed()
        assert reader.buffered == 0 and reader.next_event() is None
        assert CommandReader(max_line).events(rest) == whole[i + 1 :]
        break


# ------------------------------------------------------------------------------------- ReplyParser


def collect(parser: ReplyParser, chunks: list[bytes]) -> tuple[list[Reply], int | None]:
    """Every reply handed out before the first error, and that error's code (None if none).

    A last empty feed lets a parser that reports an error one call late (after handing out the
    replies that preceded it) do so.
    """
    replies: list[Reply] = []
    for chunk in [*chunks, b""]:
        try:
            replies += parser.feed(chunk)
        except RemoteProtocolError as error:
            return replies, error.code
    return replies, None


REPLY_TOKENS = (
    b"220 ", b"220-", b"150 ", b"226 ", b"999 ", b"099 ", b"22 ", b"2200", b"\r\n", b"\n", b"\r", b"ok", b" ",
    b"\xff", b"\xc3\xa9", b"-", b"230 Login successful.\r\n",
)  # fmt: skip
REPLY_BYTES = st.binary(max_size=240).map(lambda raw: tokens(raw, REPLY_TOKENS))
REPLY_TEXT_TOKENS = ("220 ", "220-", "226 ", "\r", "\n", "\r\n", " ", "\u00e9", "230", "x")


@fuzz_settings(1500)
@given(data=REPLY_BYTES)
def test_reply_parser_any_bytes(data: bytes) -> None:
    whole, error = collect(ReplyParser(), [data])
    pieces, piece_error = collect(ReplyParser(), split(data, list(data[-3:])))
    assert piece_error == error
    if error is None:
        assert pieces == whole
    else:
        assert error == 500
        # Replies complete before a malformed line are dropped when they share its read; the
        # dedicated test below shows it. Until then: what one read hands out, smaller reads do too.
        assert pieces[: len(whole)] == whole
    for reply in pieces:
        assert 100 <= reply.code <= 599 and reply.lines
        # LF always ends a line; a bare CR is not a line end (NVT) and stays in the text.
        assert not any("\n" in line for line in reply.lines)


def test_reply_parser_hands_out_replies_that_precede_a_malformed_line() -> None:
    data = b"226 Transfer complete.\r\n999 not a reply\r\n"
    whole = collect(ReplyParser(), [data])
    byte_by_byte = collect(ReplyParser(), [data[i : i + 1] for i in range(len(data))])
    assert byte_by_byte == ([Reply(226, ("Transfer complete.",))], 500)
    assert whole == byte_by_byte


@fuzz_settings(1500)
@given(raw=st.binary(max_size=160))
def test_formatted_replies_parse_back(raw: bytes) -> None:
    """Whatever text the server puts in replies, a client reads back exactly those replies: no text
    (a file name with CR/LF, a line that looks like a final line) forges or hides one."""
    replies: list[tuple[int, list[str]]] = []
    for block in raw.split(b"\xfe")[:4]:
        code = 100 + int.from_bytes(block[:2] or b"\0", "big") % 500
        lines = text_from(block[2:], REPLY_TEXT_TOKENS).split("\x1f")[:6]
        replies.append((code, lines))
    wire = b"".join(format_reply(code, lines) for code, lines in replies)
    parsed, error = collect(ReplyParser(), split(wire, list(raw[-3:])))
    assert error is None
    assert [reply.code for reply in parsed] == [code for code, _ in replies]
    for reply, (code, lines) in zip(parsed, replies, strict=True):
        assert format_reply(reply.code, reply.lines) == format_reply(code, lines)


# ------------------------------------------------------------------------------------- paths.resolve


def check_normalised(path: str) -> None:
    assert path.startswith("/") and "\x00" not in path, path
    if path != "/":
        parts = path[1:].split("/")
        assert all(part not in ("", ".", "..") for part in parts), path
        assert all(len(part.encode("utf-8", "surrogatepass")) <= paths.MAX_NAME_BYTES for part in parts)
    assert len(path.encode("utf-8", "surrogatepass")) <= paths.MAX_PATH_BYTES


@fuzz_settings(2000)
@given(text=PATH_TEXT)
def test_resolve_always_gives_a_normalised_path_inside_the_root(text: str) -> None:
    cwd_arg, sep, rest = text.partition("*")
    arg = rest if sep else None
    try:
        cwd = paths.resolve("/", cwd_arg)
    except RemoteProtocolError as error:
        assert error.code == 553
        cwd = "/"
    check_normalised(cwd)
    try:
        result = paths.resolve(cwd, arg)
    except RemoteProtocolError as error:
        assert error.code == 553 and arg is not None
        return
    check_normalised(result)
    assert paths.resolve("/elsewhere", result) == result  # absolute results ignore the cwd
    assert paths.resolve(result, ".") == result
    assert paths.resolve(result, "..") == paths.parent(result)
    if arg and arg.startswith("/"):
        assert paths.resolve("/", arg) == result
    # Every component comes from what the client sent: nothing is invented, "..", "\\" or "%2e" included.
    source = set((cwd + "/" + (arg or "")).split("/"))
    assert all(part in source for part in result.split("/") if part)


@fuzz_settings(1000)
@given(path=PATH_TEXT)
def test_split_virtual_path_refuses_rather_than_escapes(path: str) -> None:
    try:
        parts = split_virtual_path(path)
    except StorageError:
        return
    assert path.startswith("/")
    assert all(part not in ("", ".", "..") and "/" not in part and "\x00" not in part for part in parts)


@pytest.fixture(scope="module")
def contained_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStorage, Path, Path]:
    """A root with symlinks pointing inside and out, and a sentinel directory next to it."""
    base = tmp_path_factory.mktemp("contain")
    root, outside = base / "root", base / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (root / "a" / "f").write_text("inside")
    os.symlink("../outside", root / "out")
    os.symlink(str(outside / "secret"), root / "a" / "abs-out")
    os.symlink("../../outside/secret", root / "a" / "b" / "rel-out")
    os.symlink("a/b", root / "in")
    os.symlink("/", root / "slash")
    os.symlink("loop", root / "loop")
    return LocalStorage(root), root.resolve(), outside


TREE_PARTS = (
    "a", "b", "f", "out", "abs-out", "rel-out", "in", "slash", "loop", "secret", "etc", "passwd", "..", ".",
    "", "x",
)  # fmt: skip


@fuzz_settings(1500)
@given(raw=st.binary(max_size=6))
def test_local_storage_never_resolves_outside_its_root(
    contained_tree: tuple[LocalStorage, Path, Path], raw: bytes
) -> None:
    storage, root, _ = contained_tree
    path = "/" + "/".join(TREE_PARTS[b % len(TREE_PARTS)] for b in raw)
    prefix = str(root) + os.sep
    for resolver in (storage._real, storage._entry):
        try:
            real = resolver(path)
        except StorageError:
            continue
        resolved = os.path.realpath(os.path.dirname(real)) if resolver is storage._entry else real
        assert resolved == str(root) or resolved.startswith(prefix), (path, real)
    try:
        info = storage.stat(path)
    except StorageError:
        return
    assert info.name != "secret" or "out" not in path, (path, info)


# ------------------------------------------------------------------------------------- grammar

GRAMMAR_CODES = (501, 504, 522)


def check_port(value: tuple[str, int]) -> None:
    host, port = value
    ipaddress.IPv4Address(host)
    assert 1 <= port <= 65535


def check_eprt(value: tuple[int, str, int]) -> None:
    af, host, port = value
    assert af in (1, 2) and 1 <= port <= 65535
    assert ipaddress.ip_address(host).version == (4 if af == 1 else 6)


def check_time(value: float) -> None:
    assert math.isfinite(value)
    grammar.format_time_val(value)


def check_mfmt(value: tuple[float, str]) -> None:
    check_time(value[0])
    assert value[1]


def check_entry(value: Any) -> None:
    assert value is None or isinstance(value, listing.RemoteEntry)


PARSERS: dict[str, tuple[Callable[[str], Any], Callable[[Any], None]]] = {
    "port": (grammar.parse_port_arg, check_port),
    "eprt": (grammar.parse_eprt_arg, check_eprt),
    "epsv": (grammar.parse_epsv_arg, lambda v: v in (None, "ALL", 1, 2) or pytest.fail(repr(v))),
    "pasv_reply": (grammar.parse_pasv_reply, check_port),
    "epsv_reply": (grammar.parse_epsv_reply, lambda v: 1 <= v <= 65535 or pytest.fail(repr(v))),
    "time_val": (grammar.parse_time_val, check_time),
    "mfmt": (grammar.parse_mfmt_arg, check_mfmt),
    "type": (grammar.parse_type_arg, lambda v: isinstance(v, grammar.TransferType) or pytest.fail(repr(v))),
    "mode": (grammar.parse_mode_arg, lambda v: v == "S" or pytest.fail(repr(v))),
    "stru": (grammar.parse_stru_arg, lambda v: v == "F" or pytest.fail(repr(v))),
    "rest": (grammar.parse_rest_arg, lambda v: 0 <= v < 10**20 or pytest.fail(repr(v))),
    "pbsz": (grammar.parse_pbsz_arg, lambda v: 0 <= v < 2**32 or pytest.fail(repr(v))),
    "prot": (grammar.parse_prot_arg, lambda v: v in ("C", "S", "E", "P") or pytest.fail(repr(v))),
    "chmod": (grammar.parse_chmod_mode, lambda v: 0 <= v <= 0o777 or pytest.fail(repr(v))),
    "host": (grammar.parse_host_arg, lambda v: (isinstance(v, str) and bool(v)) or pytest.fail(repr(v))),
    "opts_mlst": (
        listing.parse_opts_mlst,
        lambda v: v <= set(listing.SUPPORTED_FACTS) or pytest.fail(repr(v)),
    ),
    "mlsx_line": (listing.parse_mlsx_line, check_entry),
    "list_line": (lambda text: listing.parse_list_line(text, now=1_700_000_000.0), check_entry),
    "feat_reply": (lambda text: grammar.parse_feat_reply(text.split("\n")), lambda v: isinstance(v, dict)),
}


@fuzz_settings(1500)
@given(text=GRAMMAR_TEXT)
def test_grammar_parsers_any_text(text: str) -> None:
    """Every parser gets every generated text: a value of the documented shape or a 501/504/522."""
    for name, (parse, check) in PARSERS.items():
        try:
            value = parse(text)
        except RemoteProtocolError as error:
            assert error.code in GRAMMAR_CODES, (name, text, error)
            continue
        check(value)


@fuzz_settings(300)
@given(host=st.ip_addresses(v=4).map(str), port=st.integers(1, 65535))
def test_port_and_pasv_round_trip(host: str, port: int) -> None:
    arg = grammar.format_port_arg(host, port)
    assert grammar.parse_port_arg(arg) == (host, port)
    assert grammar.parse_pasv_reply(grammar.format_pasv_reply_text(host, port)) == (host, port)
    assert grammar.parse_epsv_reply(grammar.format_epsv_reply_text(port)) == port
