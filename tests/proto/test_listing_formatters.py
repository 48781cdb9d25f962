"""The per-listing formatters (ListFormatter, MlsdFormatter) and the cached time text are byte-identical
to the straightforward formatting they replace: ``format_time_val`` (Decimal + datetime), the generic
``format_facts``, and the LIST line as it was built before (kept below as the reference)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyftps.proto import listing
from pyftps.proto.errors import LocalProtocolError
from pyftps.proto.grammar import format_time_val
from pyftps.proto.listing import (
    SUPPORTED_FACTS,
    ListFormatter,
    MlsdFormatter,
    StatLike,
    format_facts,
    list_line,
    mlsd_line,
)

NOW = 1710504000.0  # 2024-03-15 12:00:00 UTC
FIRST, LAST = -30610224000, 253402300799  # the seconds time-val can express (years 1000-9999)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool = False
    size: int = 0
    mtime: float = NOW
    mode: int | None = None
    unique: str | None = None


def reference_list_line(info: StatLike, *, now: float, owner: str = "ftp", group: str = "ftp") -> str:
    """The LIST line as pyftps built it before the formatters (one format_time_val per entry)."""
    mode = info.mode if info.mode is not None else (0o755 if info.is_dir else 0o644)
    columns = []
    for shift, special, letter in ((6, 0o4000, "s"), (3, 0o2000, "s"), (0, 0o1000, "t")):
        bits = (mode >> shift) & 0o7
        execute = "x" if bits & 1 else "-"
        if mode & special:
            execute = letter if bits & 1 else letter.upper()
        columns.append(("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + execute)
    perms = ("d" if info.is_dir else "-") + "".join(columns)
    stamp = format_time_val(info.mtime)
    month, day = MONTHS[int(stamp[4:6]) - 1], stamp[6:8]
    recent = now - 15778476 < info.mtime <= now
    when = f"{stamp[8:10]}:{stamp[10:12]}" if recent else f" {stamp[:4]}"
    return f"{perms} 1 {owner} {group} {max(info.size, 0)} {month} {day} {when} {info.name}"


times = st.one_of(
    st.floats(allow_nan=False),
    st.floats(min_value=FIRST - 2, max_value=LAST + 2, allow_nan=False),
    st.floats(min_value=-1e6, max_value=4e9),
    st.integers(min_value=FIRST - 10, max_value=LAST + 10).map(float),
    st.integers(min_value=-(10**6), max_value=4 * 10**9).map(lambda n: math.nextafter(float(n), -math.inf)),
)
names = st.text(st.characters(blacklist_characters="\r\n\0"), min_size=1, max_size=20)
entries = st.builds(
    Entry,
    name=names,
    is_dir=st.booleans(),
    size=st.integers(min_value=-5, max_value=2**64),
    mtime=times,
    mode=st.none() | st.integers(min_value=0, max_value=0o7777),
    unique=st.none() | st.text(max_size=12),
)
perms = st.text(alphabet="acdeflmprw", max_size=10)
selections = st.frozensets(st.sampled_from(SUPPORTED_FACTS))


@settings(max_examples=500)
@given(times)
@example(0.0)
@example(-0.5)
@example(-1e-300)
@example(float(LAST) + 0.999)
@example(float(FIRST) - 0.001)
@example(math.inf)
@example(-math.inf)
@example(1e300)
def test_modify_text_equals_format_time_val(ts: float) -> None:
    assert listing._modify_text(ts) == format_time_val(ts)


def test_modify_text_refuses_nan() -> None:
    with pytest.raises(LocalProtocolError):
        listing._modify_text(math.nan)
    with pytest.raises(LocalProtocolError):
        ListFormatter(now=NOW).line(Entry("a", mtime=math.nan))


@settings(max_examples=300)
@given(entries, times)
@example(Entry("a", mtime=NOW), NOW)  # exactly now: still "recent"
@example(Entry("a", mtime=NOW - 15778476), NOW)  # exactly half a year ago: the year
@example(Entry("a", mtime=NOW + 1), NOW)  # the future: the year
def test_list_formatter_equals_reference(info: Entry, now: float) -> None:
    expected = reference_list_line(info, now=now)
    assert ListFormatter(now=now).line(info) == expected
    assert list_line(info, now=now) == expected
    assert list_line(info, now=now, owner="alice", group="staff") == reference_list_line(
        info, now=now, owner="alice", group="staff"
    )


@settings(max_examples=300)
@given(entries, selections, perms)
def test_mlsd_formatter_equals_generic_facts(info: Entry, selected: frozenset[str], perm: str) -> None:
    formatter = MlsdFormatter(selected)
    line = formatter.line(info, perm)
    assert line == mlsd_line(info, selected, perm=perm)
    assert line == f"{format_facts(info, selected, perm=perm)} {info.name}"
    assert formatter.line(info, perm) == line  # the cached perm fact gives the same again


@settings(max_examples=300)
@given(entries, times, selections, perms)
@example(Entry("a", mtime=NOW - 15778476 + 0.5), NOW, frozenset(), "")  # recent by half a second
@example(Entry("a", mtime=float(LAST) + 30), float(LAST) + 90, frozenset({"modify"}), "")  # clamped, recent
@example(Entry("a", mtime=-0.5), 0.0, frozenset({"modify"}), "")  # negative: floors to -1
def test_rows_format_like_entries(info: Entry, now: float, selected: frozenset[str], perm: str) -> None:
    """``row`` (a storage's plain values) gives ``line``'s text, also from a formatter's warm caches."""
    row = (info.name, info.is_dir, info.size, info.mtime, info.mode, info.unique)
    lister, mlsd = ListFormatter(now=now), MlsdFormatter(selected)
    for _ in range(2):
        assert lister.row(row) == reference_list_line(info, now=now)
        assert mlsd.row(row, perm) == mlsd_line(info, selected, perm=perm)


def test_row_caches_never_mix_neighbouring_times() -> None:
    """One formatter over times a second, a minute and a day apart, near each boundary."""
    lister, mlsd = ListFormatter(now=NOW), MlsdFormatter(frozenset({"modify"}))
    for base in (NOW - 3600, NOW - 86400 * 300, 0.0, -86400.0):
        for delta in (-60.0, -1.0, -0.25, 0.0, 0.25, 59.75, 60.0, 86399.5, 86400.0):
            info = Entry("n", mtime=base + delta)
            row = (info.name, info.is_dir, info.size, info.mtime, info.mode, info.unique)
            assert lister.row(row) == reference_list_line(info, now=NOW)
            assert mlsd.row(row, "") == mlsd_line(info, frozenset({"modify"}), perm="")


def test_one_formatter_serves_a_whole_listing() -> None:
    infos = [
        Entry("dir", is_dir=True, mode=0o755, mtime=NOW - 60, unique="d1"),
        Entry("file", size=12, mode=0o644, mtime=NOW - 86400 * 400, unique="f1"),
        Entry("x", size=1, mode=0o4755, mtime=NOW - 3600),
        Entry("y", size=2, mode=0o644, mtime=NOW - 7200),
    ]
    lister = ListFormatter(now=NOW)
    assert [lister.line(i) for i in infos] == [reference_list_line(i, now=NOW) for i in infos]
    mlsd = MlsdFormatter(frozenset(SUPPORTED_FACTS))
    for info in infos:
        perm = "el" if info.is_dir else "r"
        assert mlsd.line(info, perm) == mlsd_line(info, frozenset(SUPPORTED_FACTS), perm=perm)
    assert mlsd.line(infos[0], "el") == (
        "type=dir;modify=20240315115900;perm=el;unique=d1;unix.mode=0755; dir"
    )


def test_formatters_check_their_input() -> None:
    with pytest.raises(LocalProtocolError):
        ListFormatter(now=NOW, owner="two words")
    with pytest.raises(LocalProtocolError):
        ListFormatter(now=NOW, group="")
    for bad in ("a\r\nb", "a\nb", "a\rb", "a\0b", ""):
        with pytest.raises(LocalProtocolError):
            ListFormatter(now=NOW).line(Entry(bad))
        with pytest.raises(LocalProtocolError):
            MlsdFormatter(frozenset({"type"})).line(Entry(bad), "r")
    with pytest.raises(LocalProtocolError):
        MlsdFormatter(frozenset({"perm"})).line(Entry("a"), "rx")


def test_time_caches_stay_bounded() -> None:
    lister = ListFormatter(now=NOW)
    for day in range(listing._CACHE_LIMIT + 10):
        info = Entry("a", mtime=day * 86400.0 + 1)
        assert lister.line(info) == reference_list_line(info, now=NOW)
        assert listing._modify_text(info.mtime) == format_time_val(info.mtime)
    assert len(listing._days) <= listing._CACHE_LIMIT
    assert len(listing._seconds) <= listing._CACHE_LIMIT
    mlsd = MlsdFormatter(frozenset({"modify"}))
    for minute in range(listing._CACHE_LIMIT + 10):
        info = Entry("a", mtime=NOW - 60.0 * minute)
        row = (info.name, info.is_dir, info.size, info.mtime, info.mode, info.unique)
        assert lister.row(row) == reference_list_line(info, now=NOW)
        assert mlsd.row(row, "") == f"modify={format_time_val(info.mtime)}; a"
    assert len(lister._recent) <= listing._CACHE_LIMIT
    assert len(mlsd._modify_facts) <= listing._CACHE_LIMIT
