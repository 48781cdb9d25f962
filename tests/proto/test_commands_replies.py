"""Unit and property tests of the byte-level pieces of the core: CommandReader, format_reply/ReplyParser,
paths.resolve and the TYPE A AsciiEncoder/AsciiDecoder (RFC 959 §3.1.1.1, §4.2, §5.3; RFC 1123
§4.1.2.10-12; RFC 2640 §3.1; RFC 3659 §6)."""

from __future__ import annotations

import itertools
import posixpath
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyftps.proto import paths
from pyftps.proto.ascii import AsciiDecoder, AsciiEncoder, ascii_size
from pyftps.proto.commands import BadLine, Command, CommandReader, LineEvent, TelnetRefusal, parse_line
from pyftps.proto.errors import RemoteProtocolError
from pyftps.proto.replies import MAX_REPLY_LINE, Reply, ReplyParser, format_reply

# Deterministic (fixed seed, no example database) and quick: the whole suite must stay well under 10 s.
FAST = settings(max_examples=75, deadline=None, derandomize=True, database=None)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted, de-duplicated)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[i:j] for i, j in itertools.pairwise(bounds)]


# ============================================================================ CommandReader


def test_simple_lines() -> None:
    reader = CommandReader()
    assert reader.events(b"NOOP\r\nretr a b\r\nUSER  alice\r\n") == [
        Command("NOOP"),
        Command("RETR", "a b"),
        Command("USER", " alice"),  # RFC 2640 §3.1: exactly one space separates, the rest is argument
    ]


def test_trailing_space_gives_an_empty_argument() -> None:
    assert CommandReader().events(b"NOOP \r\n") == [Command("NOOP", "")]


def test_str_of_a_command() -> None:
    assert str(Command("NOOP")) == "NOOP"
    assert str(Command("MKD", " two")) == "MKD  two"


def test_leading_blanks_and_empty_lines() -> None:
    assert CommandReader().events(b"\r\n  \r\n   NOOP\r\n\n") == [Command("NOOP")]


def test_nothing_before_the_line_end() -> None:
    reader = CommandReader()
    assert reader.events(b"NOOP") == []
    assert reader.buffered == 4
    assert reader.events(b"\r") == []
    assert reader.events(b"\n") == [Command("NOOP")]
    assert reader.buffered == 0


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        (b"NO\x00OP", BadLine(501, "NUL bytes are not allowed in commands.")),
        (b"MKD \xc3\x28", BadLine(501, "Command is not valid UTF-8 (RFC 2640).")),
        (b"R2D2", BadLine(500, "Syntax error, command unrecognized.")),
        (b"ABCDEFGHI x", BadLine(500, "Syntax error, command unrecognized.")),
        ("ÉTAT".encode(), BadLine(500, "Syntax error, command unrecognized.")),
        (b"MKD a\tb", BadLine(501, "Control characters are not allowed in arguments.")),
        (b"MKD a\x1bb", BadLine(501, "Control characters are not allowed in arguments.")),
        (b"MKD a\x7fb", Command("MKD", "a\x7fb")),
        ("MKD café".encode(), Command("MKD", "café")),
        (b"ABCDEFGH", Command("ABCDEFGH")),
        (b"   ", None),
    ],
)
def test_parse_line(raw: bytes, event: object) -> None:
    assert parse_line(raw) == event


@pytest.mark.parametrize(
    ("data", "events"),
    [
        (b"\xff\xfd\x01NOOP\r\n", [TelnetRefusal(b"\xff\xfc\x01"), Command("NOOP")]),
        (b"\xff\xfb\x01NOOP\r\n", [TelnetRefusal(b"\xff\xfe\x01"), Command("NOOP")]),
        (b"\xff\xfc\x01\xff\xfe\x01NOOP\r\n", [Command("NOOP")]),
        (b"\xff\xf4\xff\xf2ABOR\r\n", [Command("ABOR")]),  # IP, DM: dropped (RFC 4217 §14)
        (b"AB\xff\xf4OR\r\n", [Command("ABOR")]),
        (b"\xff\xfa\x18\x00xterm\xff\xf0NOOP\r\n", [Command("NOOP")]),  # SB ... SE skipped
        (b"\xff\xfa\x01\xff\xff\x02\xff\xf0NOOP\r\n", [Command("NOOP")]),  # IAC IAC inside SB
        (b"MKD \xff\xff\r\n", [BadLine(501, "Command is not valid UTF-8 (RFC 2640).")]),
        (b"NO\xff\xfd\x01OP\r\n", [TelnetRefusal(b"\xff\xfc\x01"), Command("NOOP")]),
    ],
)
def test_telnet(data: bytes, events: list[object]) -> None:
    assert CommandReader().events(data) == events


def test_iac_iac_is_one_0xff_data_byte() -> None:
    # had the pair been dropped, "MKD " would parse as MKD with an empty argument
    assert CommandReader().events(b"MKD \xff\xff\r\n") == [parse_line(b"MKD \xff")]


def test_telnet_split_across_reads() -> None:
    reader = CommandReader()
    assert reader.events(b"\xff") == []
    assert reader.events(b"\xfd") == []
    assert reader.events(b"\x01") == [TelnetRefusal(b"\xff\xfc\x01")]


def test_overlong_line_is_reported_once_then_parsing_goes_on() -> None:
    reader = CommandReader(max_line=16)
    assert reader.events(b"x" * 40 + b"\r\nNOOP\r\n") == [
        BadLine(500, "Command line too long."),
        Command("NOOP"),
    ]


def test_line_of_max_line_octets_with_lf() -> None:
    reader = CommandReader(max_line=8)
    assert reader.events(b"    NOOP\n") == [Command("NOOP")]
    assert reader.events(b"     NOOP\n") == [BadLine(500, "Command line too long.")]


def test_take_unparsed_hands_over_the_rest_raw() -> None:
    reader = CommandReader()
    reader.feed(b"AUTH TLS\r\n\x16\x03\x01\x00\xffrest")
    assert reader.next_event() == Command("AUTH", "TLS")
    assert reader.take_unparsed() == b"\x16\x03\x01\x00\xffrest"
    assert reader.buffered == 0
    assert reader.events(b"NOOP\r\n") == [Command("NOOP")]


def test_take_unparsed_resets_partial_state() -> None:
    reader = CommandReader()
    reader.feed(b"NOO\xff")
    assert reader.next_event() is None
    assert reader.take_unparsed() == b""
    assert reader.events(b"NOOP\r\n") == [Command("NOOP")]  # no pending IAC eats the "N"


def test_cr_nul_is_a_cr_in_a_pathname() -> None:
    """RFC 2640 §3.1: a CR inside a pathname travels as CR NUL."""
    assert CommandReader().events(b"MKD a\r\x00b\r\x00\r\n") == [Command("MKD", "a\rb\r")]


byte_soup = st.binary(max_size=300) | st.lists(
    st.sampled_from(
        [b"\r", b"\n", b"\r\n", b"\xff", b"\xff\xff", b"\xfd", b"\xfa", b"\xf0", b"\x00", b" ", b"NOOP"]
    )
    | st.binary(max_size=6),
    max_size=60,
).map(b"".join)


@FAST
@given(data=byte_soup, max_line=st.integers(1, 64), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_reader_never_raises_and_respects_max_line(data: bytes, max_line: int, cuts: list[int]) -> None:
    reader = CommandReader(max_line)
    events = []
    for chunk in split(data, cuts):
        events += reader.events(chunk)
    for event in events:
        assert isinstance(event, Command | BadLine | TelnetRefusal)
        if isinstance(event, Command):
            assert len(str(event).encode("utf-8", "surrogatepass")) <= max_line
            assert event.verb.isascii() and event.verb.isalpha() and event.verb.isupper()
            assert "\n" not in str(event) and "\x00" not in str(event)
        elif isinstance(event, TelnetRefusal):
            assert len(event.data) == 3 and event.data[0] == 0xFF
        else:
            assert event.code in (500, 501)


@FAST
@given(data=byte_soup, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_reader_does_not_depend_on_read_boundaries(data: bytes, cuts: list[int]) -> None:
    """RFC 1123 §4.1.2.10: read boundaries are unrelated to line boundaries."""
    whole = CommandReader(32).events(data)
    reader = CommandReader(32)
    pieces = []
    for chunk in split(data, cuts):
        pieces += reader.events(chunk)
    assert pieces == whole


class OctetByOctetReader(CommandReader):
    """The reader without its fast path: every octet through the Telnet/line state machine."""

    def next_event(self) -> LineEvent | None:
        data, pos = self._input, self._pos
        while pos < len(data):
            event = self._byte(data[pos])
            pos += 1
            if event is not None:
                self._compact(pos)
                return event
        self._compact(pos)
        return None


@FAST
@given(data=byte_soup, max_line=st.integers(1, 64), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_fast_path_equals_octet_by_octet_parsing(data: bytes, max_line: int, cuts: list[int]) -> None:
    fast, reference = CommandReader(max_line), OctetByOctetReader(max_line)
    got, want = [], []
    for chunk in split(data, cuts):
        got += fast.events(chunk)
        want += reference.events(chunk)
        assert fast.buffered == reference.buffered
    assert got == want


arg_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, codec="utf-8") | st.just("\r"),
    max_size=40,
)


@FAST
@given(
    verb=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=4),
    arg=st.none() | arg_text,
    cuts=st.lists(st.integers(0, 200), max_size=4),
)
def test_reader_round_trips_well_formed_commands(verb: str, arg: str | None, cuts: list[int]) -> None:
    """What a client sends (CR in a pathname as CR NUL, RFC 2640 §3.1) comes back exactly."""
    line = verb if arg is None else f"{verb} {arg}"
    wire = line.encode().replace(b"\r", b"\r\x00") + b"\r\n"
    reader = CommandReader()
    events = []
    for chunk in split(wire, cuts):
        events += reader.events(chunk)
    assert events == [Command(verb.upper(), arg)]


# ============================================================================ replies


def test_single_line_reply() -> None:
    assert format_reply(200, ("NOOP OK.",)) == b"200 NOOP OK.\r\n"
    assert format_reply(200, ()) == b"200 \r\n"
    assert Reply.of(226).to_bytes() == b"226 \r\n"


def test_multi_line_reply_pads_inner_lines_that_look_final() -> None:
    data = format_reply(211, ("Features:", " UTF8", "211 sneaky", "123 other", "211-fine", "213", "End"))
    assert data == (b"211-Features:\r\n UTF8\r\n 211 sneaky\r\n 123 other\r\n211-fine\r\n213\r\n211 End\r\n")
    (reply,) = ReplyParser().feed(data)
    assert reply.code == 211
    assert reply.lines[2] == " 211 sneaky"


def test_reply_text_cannot_smuggle_a_line_break() -> None:
    assert format_reply(550, ("a\r\n250 forged",)) == b"550 a  250 forged\r\n"
    assert format_reply(211, ("x\ny", "z\rw", "e\nf")) == b"211-x y\r\nz w\r\n211 e f\r\n"


def test_reply_properties() -> None:
    reply = Reply.of(150, "Opening.")
    assert (reply.kind, reply.is_preliminary, reply.is_success) == (1, True, False)
    reply = Reply.of(211, "a", "b")
    assert (reply.text, reply.is_success) == ("a\nb", True)


def test_parser_handles_split_input_and_bare_lf() -> None:
    parser = ReplyParser()
    assert parser.feed(b"220-Welcome\r\n") == []
    assert parser.has_partial
    assert parser.feed(b" hi\n220 ") == []
    assert parser.feed(b"ready\r\n331 Password\r") == [Reply(220, ("Welcome", " hi", "ready"))]
    assert parser.feed(b"\n") == [Reply(331, ("Password",))]
    assert not parser.has_partial


def test_parser_inner_line_with_another_code_does_not_end_the_reply() -> None:
    assert ReplyParser().feed(b"211-a\r\n220 b\r\n211 End\r\n") == [Reply(211, ("a", "220 b", "End"))]


@pytest.mark.parametrize("data", [b"hello\r\n", b"99 x\r\n", b"600 x\r\n", b"2000 x\r\n", b"200x\r\n"])
def test_parser_rejects_malformed_lines(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ReplyParser().feed(data)


def test_parser_rejects_an_endless_line() -> None:
    with pytest.raises(RemoteProtocolError):
        ReplyParser().feed(b"2" * (MAX_REPLY_LINE + 1))


reply_line = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)
looks_final = st.builds(lambda code, text: f"{code} {text}", st.integers(100, 599), reply_line)
reply_lines = st.lists(reply_line | looks_final, min_size=1, max_size=8)
FINAL = re.compile(r"[0-9]{3} ")


@FAST
@given(code=st.integers(100, 599), lines=reply_lines, cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_format_then_parse_round_trips(code: int, lines: list[str], cuts: list[int]) -> None:
    """parse(format(code, lines)) gives the code and the lines back, except that an inner line that
    could be read as a final line (three digits and a space) comes back with one leading space."""
    data = format_reply(code, lines)
    parser = ReplyParser()
    replies = []
    for chunk in split(data, cuts):
        replies += parser.feed(chunk)
    assert not parser.has_partial
    assert len(replies) == 1
    reply = replies[0]
    assert reply.code == code
    assert len(reply.lines) == len(lines)
    assert (reply.lines[0], reply.lines[-1]) == (lines[0], lines[-1])
    for sent, got in zip(lines[1:-1], reply.lines[1:-1], strict=True):
        if FINAL.match(sent):
            assert got == " " + sent  # must be padded (RFC 959 §4.2)
        else:
            assert got in (sent, " " + sent)  # padding is the only change ever made
            assert got == sent or sent[:3].isdigit()


@FAST
@given(data=st.binary(max_size=200))
def test_parser_only_raises_remote_protocol_errors(data: bytes) -> None:
    try:
        ReplyParser().feed(data)
    except RemoteProtocolError as error:
        assert error.code == 500


@FAST
@given(
    replies=st.lists(
        st.tuples(st.integers(100, 599), st.lists(reply_line, min_size=1, max_size=3)), max_size=4
    )
)
def test_parser_splits_a_stream_of_replies(replies: list[tuple[int, list[str]]]) -> None:
    data = b"".join(format_reply(code, lines) for code, lines in replies)
    assert [r.code for r in ReplyParser().feed(data)] == [code for code, _ in replies]


# ============================================================================ paths


@pytest.mark.parametrize(
    ("cwd", "arg", "result"),
    [
        ("/", None, "/"),
        ("/a", "", "/a"),
        ("/a", "b", "/a/b"),
        ("/a", "/b", "/b"),
        ("/a/b", "..", "/a"),
        ("/a/b", "../..", "/"),
        ("/", "../../..", "/"),
        ("/a", "../../../etc/passwd", "/etc/passwd"),
        ("/", "a//b/./c/", "/a/b/c"),
        ("/", "...", "/..."),
        ("/", "a..b/..c", "/a..b/..c"),
        ("/", "a\\..\\b", "/a\\..\\b"),  # TVFS: only "/" separates (RFC 3659 §6)
        ("/", " two", "/ two"),
    ],
)
def test_resolve_examples(cwd: str, arg: str | None, result: str) -> None:
    assert paths.resolve(cwd, arg) == result


@pytest.mark.parametrize(
    "arg", ["a\x00b", "x" * (paths.MAX_NAME_BYTES + 1), "é" * 128, "/".join(["abcdefgh"] * 600)]
)
def test_resolve_refuses_with_553(arg: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        paths.resolve("/", arg)
    assert info.value.code == 553


def test_path_helpers() -> None:
    assert (paths.parent("/a/b"), paths.parent("/a"), paths.parent("/")) == ("/a", "/", "/")
    assert (paths.basename("/a/b"), paths.basename("/")) == ("b", "/")
    assert (paths.join("/", "x"), paths.join("/a", "x")) == ("/x", "/a/x")
    assert paths.quote('/a"b') == '"/a""b"'


segment = st.sampled_from(["..", ".", "", "a", "b", "...", "..a", " x", "\\", "é"]) | st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=6
)
relative = st.lists(segment, max_size=12).map("/".join)
any_path = st.tuples(st.booleans(), relative).map(lambda t: ("/" if t[0] else "") + t[1])


def model(cwd: str, arg: str) -> str:
    """Resolution by hand: a stack of names that ``..`` pops and that never goes below empty."""
    stack = [] if arg.startswith("/") else [p for p in cwd.split("/") if p]
    for part in arg.split("/"):
        if part == "..":
            if stack:
                stack.pop()
        elif part not in ("", "."):
            stack.append(part)
    return "/" + "/".join(stack)


@FAST
@given(cwd_arg=any_path, arg=any_path)
def test_resolve_properties(cwd_arg: str, arg: str) -> None:
    cwd = paths.resolve("/", cwd_arg)
    result = paths.resolve(cwd, arg)
    # absolute, normalised: no "", "." or ".." component (names like "..." or "a..b" are fine)
    assert result.startswith("/")
    assert result == "/" or all(part not in ("", ".", "..") for part in result[1:].split("/"))
    assert "/../" not in result + "/"
    assert result == model(cwd, arg)
    # never escapes: mapped under any root it stays inside it
    root = "/srv/ftp/root"
    assert posixpath.commonpath([root, posixpath.normpath(root + result)]) == root
    # stable: resolving the result again, from anywhere, changes nothing
    assert paths.resolve("/elsewhere", result) == result
    assert paths.resolve(result, ".") == result


# ============================================================================ TYPE A conversion


def encode_all(data: bytes, cuts: list[int], skip: int = 0) -> bytes:
    encoder = AsciiEncoder(skip)
    return b"".join(encoder.encode(chunk) for chunk in split(data, cuts))


def decode_all(data: bytes, cuts: list[int]) -> bytes:
    decoder = AsciiDecoder()
    return b"".join(decoder.decode(chunk) for chunk in split(data, cuts)) + decoder.flush()


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\r\nb", b"a\r\nb"),  # an existing CRLF is not doubled
        (b"\n\n", b"\r\n\r\n"),
        (b"a\rb", b"a\rb"),
        (b"", b""),
    ],
)
def test_encode_examples(data: bytes, wire: bytes) -> None:
    assert AsciiEncoder().encode(data) == wire


def test_encode_cr_lf_split_across_chunks() -> None:
    encoder = AsciiEncoder()
    assert encoder.encode(b"a\r") + encoder.encode(b"") + encoder.encode(b"\nb") == b"a\r\nb"


def test_encode_skip() -> None:
    encoder = AsciiEncoder(skip=3)
    assert encoder.encode(b"a\n") == b""  # "a\r\n" is three wire octets: skipped in full
    assert encoder.pending_skip == 0
    assert encoder.encode(b"b\n") == b"b\r\n"


def test_decode_examples() -> None:
    assert AsciiDecoder().decode(b"a\r\nb\r\n") == b"a\nb\n"
    decoder = AsciiDecoder()
    assert decoder.decode(b"a\r") == b"a"
    assert decoder.decode(b"\nb\r") == b"\nb"
    assert decoder.decode(b"c") == b"\rc"  # a lone CR is data
    assert decoder.decode(b"\r") == b""
    assert decoder.flush() == b"\r"
    assert decoder.flush() == b""


ascii_data = st.binary(max_size=200) | st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"\r\r", b"\n\r"]), max_size=40
).map(b"".join)
cut_list = st.lists(st.integers(0, 600), max_size=8)


@FAST
@given(data=ascii_data, enc_cuts=cut_list, dec_cuts=cut_list)
def test_ascii_round_trip(data: bytes, enc_cuts: list[int], dec_cuts: list[int]) -> None:
    """The precise guarantee, whatever the chunking on either side:

        decode(encode(x)) == x.replace(CRLF, LF)

    So the round trip is the identity exactly for data holding no CRLF pair (no CR at all, or only
    CRs not followed by LF). Data whose CRs are all followed by LF does NOT come back unchanged:
    the encoder leaves an existing CRLF alone and the decoder turns it into LF (b"a\\r\\nb" ->
    b"a\\nb"); such files are normalised to LF line ends.
    """
    wire = encode_all(data, enc_cuts)
    assert wire == AsciiEncoder().encode(data)  # chunking never changes the encoding
    assert b"\n" not in wire.replace(b"\r\n", b"")  # no bare LF on the wire
    back = decode_all(wire, dec_cuts)
    assert back == data.replace(b"\r\n", b"\n")
    if b"\r\n" not in data:
        assert back == data


def test_ascii_round_trip_normalises_crlf_files() -> None:
    data = b"a\r\nb\r\n"
    assert decode_all(encode_all(data, []), []) == b"a\nb\n" != data


@FAST
@given(
    lines=st.lists(
        st.binary(max_size=10).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=10
    ),
    cuts=cut_list,
)
def test_ascii_wire_round_trip(lines: list[bytes], cuts: list[int]) -> None:
    """The other direction: canonical NVT text (CRLF line ends, no other CR or LF) survives
    decode then encode."""
    wire = b"".join(line + b"\r\n" for line in lines)
    assert encode_all(decode_all(wire, cuts), cuts) == wire


@FAST
@given(data=ascii_data, cuts=cut_list, skip=st.integers(0, 500))
def test_ascii_skip_and_size(data: bytes, cuts: list[int], skip: int) -> None:
    full = AsciiEncoder().encode(data)
    encoder = AsciiEncoder(skip)
    out = b"".join(encoder.encode(chunk) for chunk in split(data, cuts))
    assert out == full[skip:]  # REST in TYPE A counts wire octets (RFC 3659 §5.2)
    assert encoder.pending_skip == max(0, skip - len(full))
    assert ascii_size(split(data, cuts)) == len(full)
