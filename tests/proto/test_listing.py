"""Examples from RFC 3659 §7 and property tests for pyftps.proto.listing (MLSx facts, LIST lines)."""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError
from pyftps.proto.grammar import format_time_val
from pyftps.proto.listing import (
    DEFAULT_FACTS,
    SUPPORTED_FACTS,
    RemoteEntry,
    StatLike,
    feat_mlst_line,
    format_facts,
    format_opts_mlst_reply,
    list_line,
    mlsd_line,
    mlst_line,
    parse_list_line,
    parse_mlsx_line,
    parse_opts_mlst,
)
from pyftps.storage.base import FileInfo

NOW = float(calendar.timegm((2024, 3, 15, 12, 0, 0)))  # 2024-03-15 12:00:00 UTC
JAN_1_2024 = float(calendar.timegm((2024, 1, 1, 0, 0, 0)))


@dataclass(frozen=True)
class Entry:
    """A StatLike that is not FileInfo: the formatters only need the attributes."""

    name: str
    is_dir: bool = False
    size: int = 0
    mtime: float = JAN_1_2024
    mode: int | None = None
    unique: str | None = None


def test_filelike_objects_satisfy_statlike() -> None:
    infos: list[StatLike] = [FileInfo("a", False, 1, 0.0), Entry("b")]
    assert [mlsd_line(i, frozenset({"type"}), perm="r") for i in infos] == ["type=file; a", "type=file; b"]


# --- FEAT / OPTS MLST (3659 §7.8, §7.9) ------------------------------------------------------------


def test_feat_mlst_line() -> None:
    assert feat_mlst_line(DEFAULT_FACTS) == "MLST type*;size*;modify*;perm*;unique*;unix.mode;"
    assert feat_mlst_line(frozenset()) == "MLST type;size;modify;perm;unique;unix.mode;"
    assert (
        feat_mlst_line(frozenset({"unix.mode", "size"})) == "MLST type;size*;modify;perm;unique;unix.mode*;"
    )


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("type;size;", {"type", "size"}),
        ("Type;SIZE;", {"type", "size"}),  # fact names are case-insensitive (3659 §7.9)
        ("type;size", {"type", "size"}),
        ("UNIX.mode;", {"unix.mode"}),
        ("type;nosuch;x.private;", {"type"}),  # unknown facts dropped silently
        ("", set()),
        (None, set()),
        (";;", set()),
    ],
)
def test_parse_opts_mlst(arg: str | None, expected: set[str]) -> None:
    assert parse_opts_mlst(arg) == frozenset(expected)


@pytest.mark.parametrize("arg", ["type size;", "type; size;", " type;", "type;\t", "type;\r\n"])
def test_parse_opts_mlst_blank_is_501(arg: str) -> None:
    # Conformance check 84: OPTS MLST type size; -> 501, previous selection kept by the caller.
    with pytest.raises(RemoteProtocolError) as info:
        parse_opts_mlst(arg)
    assert info.value.code == 501


def test_format_opts_mlst_reply() -> None:
    assert format_opts_mlst_reply(parse_opts_mlst("type;size;")) == "MLST OPTS type;size;"
    assert format_opts_mlst_reply(frozenset({"unix.mode", "type"})) == "MLST OPTS type;unix.mode;"
    assert format_opts_mlst_reply(frozenset()) == "MLST OPTS"


# --- MLSx formatting (3659 §7.2, §7.5) ----------------------------------------------------------------


def test_format_facts_canonical_order() -> None:
    info = Entry("f", size=10, mode=0o644, unique="ab12")
    selected = frozenset(SUPPORTED_FACTS)
    expected = "type=file;size=10;modify=20240101000000;perm=adfrw;unique=ab12;unix.mode=0644;"
    assert format_facts(info, selected, perm="adfrw") == expected
    assert format_facts(info, DEFAULT_FACTS, perm="adfrw") == expected.removesuffix("unix.mode=0644;")


def test_format_facts_directories_and_kinds() -> None:
    folder = Entry("d", is_dir=True, size=4096, mode=0o755)
    assert format_facts(folder, DEFAULT_FACTS, perm="el") == "type=dir;modify=20240101000000;perm=el;"
    assert format_facts(folder, frozenset({"type"}), perm="", kind="cdir") == "type=cdir;"
    assert format_facts(folder, frozenset({"type", "size"}), perm="", kind="pdir") == "type=pdir;"
    assert format_facts(Entry("f"), frozenset({"perm"}), perm="") == "perm=;"  # empty perm allowed


def test_format_facts_leaves_out_unknown_values() -> None:
    info = Entry("f", mode=None, unique=None)
    assert format_facts(info, frozenset({"unique", "unix.mode"}), perm="r") == ""
    assert format_facts(Entry("f", unique=""), frozenset({"unique"}), perm="r") == ""
    assert format_facts(Entry("f", size=-5), frozenset({"size"}), perm="r") == "size=0;"
    assert format_facts(Entry("f", mode=0o104755), frozenset({"unix.mode"}), perm="r") == "unix.mode=4755;"


def test_unique_is_sanitised() -> None:
    # Values come from RCHAR: no ';', no blank (3659 §2.1, §7.2); '%' escapes so the map is injective.
    facts = format_facts(Entry("f", unique="a;b c%d=é"), frozenset({"unique"}), perm="")
    assert facts == "unique=a%3Bb%20c%25d%3D%C3%A9;"


def test_format_facts_rejects_caller_bugs() -> None:
    with pytest.raises(LocalProtocolError):
        format_facts(Entry("f"), DEFAULT_FACTS, perm="rwx")  # x is not a 3659 §7.5.5 letter
    for kind in ("", "a;b", "a b"):
        with pytest.raises(LocalProtocolError):
            format_facts(Entry("f"), DEFAULT_FACTS, perm="r", kind=kind)


def test_mlsd_and_mlst_lines() -> None:
    # 3659 §7.7.1 / §7.7.3 shapes: MLSD has no leading blank, MLST exactly one.
    info = Entry("hatch.c", size=1830, mtime=float(calendar.timegm((1994, 9, 16, 5, 56, 48))))
    selected = frozenset({"type", "size", "modify", "perm"})
    assert mlsd_line(info, selected, perm="r") == "type=file;size=1830;modify=19940916055648;perm=r; hatch.c"
    line = mlst_line(info, selected, perm="r", path="/tmp/hatch.c")
    assert line == " type=file;size=1830;modify=19940916055648;perm=r; /tmp/hatch.c"
    # No facts at all: two blanks before the path (3659 §7.9.2), one before an MLSD name.
    assert mlst_line(info, frozenset(), perm="r", path="/tmp/hatch.c") == "  /tmp/hatch.c"
    assert mlsd_line(info, frozenset(), perm="r") == " hatch.c"
    assert mlsd_line(Entry("my file"), frozenset({"type"}), perm="") == "type=file; my file"


@pytest.mark.parametrize("name", ["a\r\nb", "a\nb", "a\rb", "a\0b", ""])
def test_unlistable_names_are_refused(name: str) -> None:
    # 3659 §2.2: names containing CRLF cannot appear in listings; the server must skip them.
    calls: list[Callable[[], str]] = [
        lambda: mlsd_line(Entry(name), DEFAULT_FACTS, perm="r"),
        lambda: mlst_line(Entry("x"), DEFAULT_FACTS, perm="r", path=name),
        lambda: list_line(Entry(name), now=NOW),
    ]
    for call in calls:
        with pytest.raises(LocalProtocolError):
            call()


# --- LIST formatting -----------------------------------------------------------------------------------


def test_list_line_examples() -> None:
    recent = float(calendar.timegm((2024, 1, 2, 15, 4, 59)))
    assert list_line(Entry("name", is_dir=True, size=4096, mtime=recent), now=NOW) == (
        "drwxr-xr-x 1 ftp ftp 4096 Jan 02 15:04 name"
    )
    old = float(calendar.timegm((2023, 7, 4, 10, 0, 0)))
    assert (
        list_line(Entry("old file", size=5, mtime=old), now=NOW)
        == "-rw-r--r-- 1 ftp ftp 5 Jul 04  2023 old file"
    )
    future = NOW + 3600
    assert list_line(Entry("f", mtime=future), now=NOW).endswith(" Mar 15  2024 f")  # future: year
    assert list_line(Entry("f", mode=0o600), now=NOW, owner="alice", group="staff").startswith(
        "-rw------- 1 alice staff 0 "
    )


@pytest.mark.parametrize(
    ("mode", "is_dir", "perms"),
    [
        (0o4755, False, "-rwsr-xr-x"),
        (0o4644, False, "-rwSr--r--"),
        (0o2755, True, "drwxr-sr-x"),
        (0o2745, True, "drwxr-Sr-x"),
        (0o1777, True, "drwxrwxrwt"),
        (0o1776, True, "drwxrwxrwT"),
        (0o000, False, "----------"),
        (None, True, "drwxr-xr-x"),
        (None, False, "-rw-r--r--"),
    ],
)
def test_list_line_permission_string(mode: int | None, is_dir: bool, perms: str) -> None:
    assert list_line(Entry("x", is_dir=is_dir, mode=mode), now=NOW).split(" ")[0] == perms


def test_list_line_rejects_bad_owner() -> None:
    for owner in ("", "a b", "a\nb"):
        with pytest.raises(LocalProtocolError):
            list_line(Entry("x"), now=NOW, owner=owner)
        with pytest.raises(LocalProtocolError):
            list_line(Entry("x"), now=NOW, group=owner)


# --- MLSx parsing ------------------------------------------------------------------------------------


def test_parse_mlsx_rfc_examples() -> None:
    entry = parse_mlsx_line(" Type=file;Size=1024990;Perm=r; /tmp/cap60.pl198.tar.gz")  # 3659 §7.7.1
    assert entry == RemoteEntry(
        name="/tmp/cap60.pl198.tar.gz",
        is_dir=False,
        size=1024990,
        mtime=None,
        facts={"type": "file", "size": "1024990", "perm": "r"},
    )
    cdir = parse_mlsx_line("Type=cdir;Modify=19981107085215;Perm=el; /tmp")  # 3659 §7.7.3
    assert (cdir.name, cdir.is_dir, cdir.mtime, cdir.facts["type"]) == ("/tmp", True, 910428735.0, "cdir")
    pdir = parse_mlsx_line("Type=pdir;Modify=19990112030508;Perm=el; ..")
    assert (pdir.name, pdir.is_dir, pdir.facts["type"]) == ("..", True, "pdir")
    fraction = parse_mlsx_line("type=file;modify=19990929003355.192; f\r\n")
    assert (fraction.name, fraction.mtime) == ("f", 938565235.192)


def test_parse_mlsx_other_shapes() -> None:
    assert parse_mlsx_line("type=file;size=1; name with  spaces ").name == "name with  spaces "
    assert parse_mlsx_line("type=file; leading").name == "leading"
    assert parse_mlsx_line("type=file;  leading").name == " leading"
    assert parse_mlsx_line("  /tmp") == RemoteEntry("/tmp", None, None, None, {})  # MLST, no facts
    assert parse_mlsx_line(" plain") == RemoteEntry("plain", None, None, None, {})  # MLSD, no facts
    link = parse_mlsx_line("type=OS.unix=slink:/etc/x;UNIX.mode=0777; x")
    assert (link.is_dir, link.facts) == (None, {"type": "OS.unix=slink:/etc/x", "unix.mode": "0777"})
    odd = parse_mlsx_line("type=file;size=big;modify=yesterday; f")
    assert (odd.size, odd.mtime, odd.facts["size"]) == (None, None, "big")  # raw values kept


@pytest.mark.parametrize(
    "line",
    [
        "",
        "nospace",
        "type=file;",
        "type=file ",
        "type=file name",
        "type file; name",
        "=x; name",
        "a=b;;c=d; n",
    ],
)
def test_parse_mlsx_malformed_is_501(line: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_mlsx_line(line)
    assert info.value.code == 501


# --- LIST parsing ------------------------------------------------------------------------------------------


def ts(*fields: int) -> float:
    return float(calendar.timegm((*fields, 0, 0, 0, 0)[:9]))


@pytest.mark.parametrize(
    ("line", "name", "is_dir", "size", "mtime"),
    [
        ("drwxr-xr-x 1 ftp ftp 4096 Jan 02 15:04 name", "name", True, 4096, ts(2024, 1, 2, 15, 4, 0)),
        (
            "-rw-r--r--   1 owner    group        1234 Jul  4  2023 my  file.txt",
            "my  file.txt",
            False,
            1234,
            ts(2023, 7, 4, 0, 0, 0),
        ),
        ("-rw-r--r-- 1 ftp 12 Mar 01 09:00 nogroup", "nogroup", False, 12, ts(2024, 3, 1, 9, 0, 0)),
        ("-rw-r--r-- 1 1000 1000 12 Mar 01 09:00 numeric", "numeric", False, 12, ts(2024, 3, 1, 9, 0, 0)),
        ("lrwxrwxrwx 1 root root 7 Jan  2  2023 bin -> usr/bin", "bin", None, 7, ts(2023, 1, 2, 0, 0, 0)),
        ("-rw-r--r--+ 1 a b 1 DEC 24 23:59 acl", "acl", False, 1, ts(2023, 12, 24, 23, 59, 0)),
        ("-rw-r--r-- 1 a b 1 Mar 16 08:00 skew", "skew", False, 1, ts(2024, 3, 16, 8, 0, 0)),  # < 1 day ahead
        ("-rw-r--r-- 1 a b 1 Mar 20 08:00 prev", "prev", False, 1, ts(2023, 3, 20, 8, 0, 0)),
        ("-rw-r--r-- 1 a b 1 Feb 30 08:00 bad", "bad", False, 1, None),  # impossible date: no mtime
        ("prw-r--r-- 1 a b 0 Jan 02 15:04 fifo", "fifo", None, 0, ts(2024, 1, 2, 15, 4, 0)),
        ("01-02-24  03:04PM       <DIR>          some dir", "some dir", True, None, ts(2024, 1, 2, 15, 4, 0)),
        ("01-02-24  03:04PM              1234 file.txt", "file.txt", False, 1234, ts(2024, 1, 2, 15, 4, 0)),
        ("12-31-99  12:00AM  1,234 old", "old", False, 1234, ts(1999, 12, 31, 0, 0, 0)),
        ("07-04-2023  12:30PM  5 noon", "noon", False, 5, ts(2023, 7, 4, 12, 30, 0)),
        ("07-04-2023  17:30  5 h24", "h24", False, 5, ts(2023, 7, 4, 17, 30, 0)),
    ],
)
def test_parse_list_line(
    line: str, name: str, is_dir: bool | None, size: int | None, mtime: float | None
) -> None:
    entry = parse_list_line(line + "\r\n", now=NOW)
    assert entry is not None
    assert (entry.name, entry.is_dir, entry.size, entry.mtime) == (name, is_dir, size, mtime)


def test_parse_list_line_facts() -> None:
    entry = parse_list_line("-rwsr-x--T 1 alice staff 1 Jan 02 15:04 f", now=NOW)
    assert entry is not None
    assert entry.facts == {"unix.mode": "5750", "unix.owner": "alice", "unix.group": "staff", "type": "file"}
    link = parse_list_line("lrwxrwxrwx 1 root root 7 Jan  2  2023 bin -> usr/bin", now=NOW)
    assert link is not None and link.facts["type"] == "OS.unix=slink:usr/bin"


@pytest.mark.parametrize(
    "line",
    [
        "total 12",
        "",
        "garbage",
        "drwxr-xr-x 1 ftp ftp 4096 Foo 02 15:04 name",  # localised or unknown month
        "drwxr-xr-x 1 ftp ftp 4096 Jan 02 15:04",  # no name
        "13-45-24  03:04PM  1 bad date",
        "01-02-24  13:04PM  1 bad hour",
    ],
)
def test_parse_list_line_unparseable_is_none(line: str) -> None:
    assert parse_list_line(line, now=NOW) is None


# --- round trips and robustness ----------------------------------------------------------------------------

LISTABLE = st.characters(exclude_characters="\r\n\0")  # lone surrogates included: surrogateescape names
NAMES = st.text(LISTABLE, min_size=1, max_size=40)
TIMES = st.integers(calendar.timegm((1000, 1, 1, 0, 0, 0)), calendar.timegm((9999, 12, 31, 23, 59, 59)))
MODES = st.one_of(st.none(), st.integers(0, 0o7777))


@st.composite
def entries(draw: st.DrawFn, names: st.SearchStrategy[str] = NAMES) -> Entry:
    return Entry(
        name=draw(names),
        is_dir=draw(st.booleans()),
        size=draw(st.integers(0, 2**63)),
        mtime=draw(st.one_of(TIMES, st.floats(0, 2e9))),
        mode=draw(MODES),
        unique=draw(st.one_of(st.none(), st.text(max_size=12))),
    )


@settings(max_examples=50)
@given(
    entries(),
    st.sets(st.sampled_from(SUPPORTED_FACTS)).map(lambda s: frozenset(s | {"type"})),
    st.text("acdeflmprw", max_size=10),
)
def test_mlsd_and_mlst_round_trip(info: Entry, selected: frozenset[str], perm: str) -> None:
    facts = format_facts(info, selected, perm=perm)
    assert " " not in facts and all(part.count("=") == 1 for part in facts[:-1].split(";"))
    for line, name in (
        (mlsd_line(info, selected, perm=perm), info.name),
        (mlst_line(info, selected, perm=perm, path="/d/" + info.name), "/d/" + info.name),
    ):
        entry = parse_mlsx_line(line)
        assert entry.name == name
        assert entry.is_dir is info.is_dir
        assert entry.size == (info.size if "size" in selected and not info.is_dir else None)
        if "modify" in selected:
            assert entry.mtime == math.floor(info.mtime)
        else:
            assert entry.mtime is None
        assert set(entry.facts) == {fact for fact in selected if f"{fact}=" in facts}
        if "perm" in selected:
            assert entry.facts["perm"] == perm
        if "unix.mode" in selected and info.mode is not None:
            assert int(entry.facts["unix.mode"], 8) == info.mode


@settings(max_examples=50)
@given(st.lists(st.text(max_size=6), min_size=2, max_size=2, unique=True))
def test_unique_sanitising_is_injective(values: list[str]) -> None:
    first, second = (format_facts(Entry("f", unique=v), frozenset({"unique"}), perm="") for v in values)
    assert first != second


@settings(max_examples=50)
@given(
    entries(NAMES.filter(lambda name: not name.startswith(" "))),  # a leading blank is ambiguous in ls
    st.integers(calendar.timegm((1980, 1, 1, 0, 0, 0)), calendar.timegm((2100, 1, 1, 0, 0, 0))),
    st.integers(-400 * 86400, 400 * 86400),
)
def test_list_line_round_trip(info: Entry, now: int, offset: int) -> None:
    info = Entry(info.name, info.is_dir, info.size, float(now + offset), info.mode, info.unique)
    line = list_line(info, now=now)
    entry = parse_list_line(line, now=now)
    assert entry is not None, line
    assert (entry.name, entry.is_dir, entry.size) == (info.name, info.is_dir, info.size)
    default_mode = 0o755 if info.is_dir else 0o644
    assert int(entry.facts["unix.mode"], 8) == (default_mode if info.mode is None else info.mode)
    stamp = format_time_val(info.mtime)
    fields = [int(stamp[i : i + 2]) for i in range(4, 14, 2)]
    if now - 15778476 < info.mtime <= now:  # "Mon DD HH:MM": minute precision
        expected = calendar.timegm((int(stamp[:4]), *fields[:4], 0))
    else:  # "Mon DD  YYYY": day precision
        expected = calendar.timegm((int(stamp[:4]), fields[0], fields[1], 0, 0, 0))
    assert entry.mtime == expected


def _tokens(*choices: str) -> st.SearchStrategy[str]:
    return st.sampled_from(choices)


# Lines assembled from the tokens the parsers look for, so the fuzzing gets past the first checks.
MLSX_LIKE = st.lists(
    _tokens("type=", "file", "dir", ";", "=", " ", "size=", "12", "x", "modify=", "2024"), max_size=12
)
LIST_LIKE = st.lists(
    _tokens(
        "drwxr-xr-x",
        "-rwsr-x--T",
        "l---------",
        " ",
        "  ",
        "1",
        "ftp",
        "Jan",
        "DEC",
        "Foo",
        "02",
        "31",
        "15:04",
        "99:99",
        "2024",
        "0999",
        "01-02-24",
        "13-45-2024",
        "03:04PM",
        "13:04AM",
        "<DIR>",
        "1,234",
        "a -> b",
        "x",
    ),
    max_size=14,
)


@settings(max_examples=80)
@given(st.one_of(st.text(), MLSX_LIKE.map("".join)))
def test_parse_mlsx_raises_only_remote_protocol_error(line: str) -> None:
    try:
        parse_mlsx_line(line)
    except RemoteProtocolError as exc:
        assert exc.code == 501


@settings(max_examples=100)
@given(st.one_of(st.text(), LIST_LIKE.map(" ".join), LIST_LIKE.map("".join)), st.floats())
def test_parse_list_line_never_raises(line: str, now: float) -> None:
    entry = parse_list_line(line, now=now)
    assert entry is None or isinstance(entry, RemoteEntry)


@pytest.mark.parametrize(
    "line",
    [
        "01-02-24  01:00" + " " * 20000 + "x",  # adjacent blank runs once took quadratic time
        "drwxr-xr-x" + " " * 20000 + "x",
        "drwxr-xr-x 1 " + "1 " * 10000 + "Jan",
        "drwxr-xr-x 1 a b " + "1 Jan 1 1:1 " * 2000,
    ],
)
def test_parse_list_line_is_linear_on_hostile_lines(line: str) -> None:
    started = time.perf_counter()
    parse_list_line(line, now=NOW)
    assert time.perf_counter() - started < 0.5


@given(st.text())
def test_parse_opts_mlst_raises_only_remote_protocol_error(arg: str) -> None:
    try:
        assert parse_opts_mlst(arg) <= frozenset(SUPPORTED_FACTS)
    except RemoteProtocolError as exc:
        assert exc.code == 501
