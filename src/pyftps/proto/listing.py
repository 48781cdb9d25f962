"""MLSx facts and LIST lines in both directions, formatted by the server and parsed by the client
(RFC 3659 §7; RFC 959 §4.1.3 LIST; RFC 1123 §4.1.2.7)."""

# Conventions:
# - format functions raise LocalProtocolError for values our caller must not hand us: a name holding
#   CR, LF or NUL (3659 §2.2: such names cannot appear in a listing; the server skips them), a perm
#   string outside 3659 §7.5.5, an owner with blanks.
# - parse_mlsx_line raises RemoteProtocolError(501, ...) for a structurally broken line; 501 is the
#   closest meaning ("syntax error") and is never sent, the client only logs it.  Unreadable fact
#   *values* (size=abc) leave the derived field None but keep the raw fact.
# - parse_list_line never raises: LIST output has no standard format (959 §4.1.3), so anything it
#   does not recognise is None.
# - Every time is UTC: the server writes LIST times in UTC like MDTM (3659 §2.3) since it cannot
#   know the client's zone, and the client reads them back the same way.

from __future__ import annotations

import calendar
import datetime as _dt
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError
from pyftps.proto.grammar import parse_time_val

__all__ = [
    "DEFAULT_FACTS",
    "SUPPORTED_FACTS",
    "ListFormatter",
    "MlsdFormatter",
    "RemoteEntry",
    "StatLike",
    "StatRow",
    "feat_mlst_line",
    "format_facts",
    "format_opts_mlst_reply",
    "list_line",
    "listable",
    "mlsd_line",
    "mlst_line",
    "parse_list_line",
    "parse_mlsx_line",
    "parse_opts_mlst",
]

SUPPORTED_FACTS: Final = ("type", "size", "modify", "perm", "unique", "unix.mode")
DEFAULT_FACTS: Final = frozenset({"type", "size", "modify", "perm", "unique"})

_PERM_LETTERS: Final = frozenset("acdeflmprw")  # 3659 §7.5.5
# RCHAR (3659 §2.1) without "%", which escapes everything else in a "unique" value; "=" (allowed in
# SCHAR) is escaped too, to be safe with parsers that split facts on every "=".
_UNIQUE_SAFE: Final = frozenset(string.ascii_letters + string.digits + ",.:!@#$^&()-_+?/\\'\"")
_KIND_SAFE: Final = _UNIQUE_SAFE | {"=", "%"}
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER: Final = {name.lower(): number for number, name in enumerate(_MONTHS, start=1)}
_HALF_YEAR: Final = 15778476  # seconds, the cut-off GNU ls uses between "HH:MM" and year
_FUTURE_SLACK: Final = 86400  # a peer's clock or zone may put "recent" files up to a day ahead
_UNIX_TYPES: Final = {"-": "file", "d": "dir", "l": "OS.unix=slink"}
# Listings format thousands of times per command, so times are built from integer arithmetic and
# per-day pieces instead of Decimal and datetime (grammar.format_time_val); tests pin the equality.
_FIRST_SECOND: Final = -30610224000  # 1000-01-01T00:00:00Z: time-val has four year digits (3659 §2.3)
_LAST_SECOND: Final = 253402300799  # 9999-12-31T23:59:59Z
_EPOCH_ORDINAL: Final = _dt.date(1970, 1, 1).toordinal()
_TWO_DIGITS: Final = tuple(f"{n:02d}" for n in range(100))
_CACHE_LIMIT: Final = 4096  # bounds the day and second caches whatever the mtimes of a directory
_days: dict[int, tuple[str, str, str]] = {}  # day number -> ("YYYYMMDD", "Mon DD", " YYYY")
_seconds: dict[int, str] = {}  # whole second -> "YYYYMMDDHHMMSS"; files are often written in bursts

# ls -l: perms, 1-3 columns (links, owner, [group]), size, "Mon DD HH:MM" or "Mon DD YYYY", name.
# The middle columns are matched lazily, so the size is the first number followed by a month.
_UNIX_LINE: Final = re.compile(
    r"(?P<type>[-bcdlpsDn?])(?P<perm>[-rwxsStTlL]{9})[.+@]?[ ]+"
    r"(?P<mid>(?:\S+[ ]+){1,3}?)(?P<size>[0-9]{1,20})[ ]+"
    r"(?P<month>(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))[ ]+(?P<day>[0-9]{1,2})[ ]+"
    r"(?:(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})|(?P<year>[0-9]{4})) (?P<name>.+)"
)
# MS-DOS / IIS: "MM-DD-YY  hh:mmAM  <DIR> name" or "... 1234 name"; 4-digit years and 24 h times too.
# No two blank runs may be adjacent without a mandatory token between them: that backtracks
# quadratically on a line of blanks (a hostile server can send one).
_DOS_LINE: Final = re.compile(
    r"(?P<month>[0-9]{2})-(?P<day>[0-9]{2})-(?P<year>[0-9]{4}|[0-9]{2})[ ]+"
    r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?:[ ]*(?P<ampm>[AaPp][Mm]))?[ ]+"
    r"(?:(?P<dir><DIR>)|(?P<size>[0-9][0-9,]{0,26}))[ ]+(?P<name>.+)"
)


class StatLike(Protocol):
    """What the formatters read from a directory entry (``pyftps.storage.base.FileInfo`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def is_dir(self) -> bool: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def mode(self) -> int | None: ...
    @property
    def unique(self) -> str | None: ...


# StatLike's fields as plain values, in its order (a storage's listing rows): formatting a row costs
# no attribute lookups and its producer builds no object per entry.
StatRow = tuple[str, bool, int, float, int | None, str | None]


@dataclass(frozen=True)
class RemoteEntry:
    """One entry of a remote listing; fields the listing did not tell are None."""

    name: str
    is_dir: bool | None
    size: int | None
    mtime: float | None
    facts: Mapping[str, str]


# --- FEAT / OPTS MLST (3659 §7.8, §7.9) ----------------------------------------------------------


def feat_mlst_line(selected: frozenset[str]) -> str:
    """The FEAT line (without its leading space): every supported fact, ``*`` on the selected ones."""
    return "MLST " + "".join(f"{fact}{'*' if fact in selected else ''};" for fact in SUPPORTED_FACTS)


def parse_opts_mlst(arg: str | None) -> frozenset[str]:
    """The facts named by ``OPTS MLST fact;fact;`` that we support, lower-cased (3659 §7.9).

    Unknown facts are dropped silently and an empty list selects none; a blank inside the list is a
    syntax error (501), after which the caller keeps the previous selection (3659 §7.9.1).
    """
    if not arg:
        return frozenset()
    if any(ch.isspace() or not ch.isprintable() for ch in arg):
        raise RemoteProtocolError(501, "OPTS MLST takes fact names separated by ';' and no spaces")
    requested = {name.lower() for name in arg.split(";")}
    return frozenset(fact for fact in SUPPORTED_FACTS if fact in requested)


def format_opts_mlst_reply(selected: frozenset[str]) -> str:
    """The 200 text ``MLST OPTS type;size;`` in canonical order; ``MLST OPTS`` when none (3659 §7.9)."""
    facts = "".join(f"{fact};" for fact in SUPPORTED_FACTS if fact in selected)
    return f"MLST OPTS {facts}" if facts else "MLST OPTS"


# --- times ------------------------------------------------------------------------------------------


def _whole_second(ts: float) -> int:
    """floor(ts) clamped to years 1000-9999: the second ``format_time_val(ts)`` prints.

    Flooring the float itself equals flooring its shortest repr (format_time_val's reading): a float
    whose repr is a whole number N is exactly N, and the next float above N has a repr above N.
    """
    if ts >= _LAST_SECOND:  # also +inf
        return _LAST_SECOND
    if ts < _FIRST_SECOND:  # also -inf
        return _FIRST_SECOND
    if math.isnan(ts):
        raise LocalProtocolError("timestamp is NaN")
    return math.floor(ts)


def _day(day: int) -> tuple[str, str, str]:
    """("YYYYMMDD", "Mon DD", " YYYY") of a day counted from the epoch, cached."""
    pieces = _days.get(day)
    if pieces is None:
        date = _dt.date.fromordinal(_EPOCH_ORDINAL + day)
        pieces = (
            f"{date.year:04d}{date.month:02d}{date.day:02d}",
            f"{_MONTHS[date.month - 1]} {date.day:02d}",
            f" {date.year:04d}",
        )
        if len(_days) >= _CACHE_LIMIT:
            _days.clear()
        _days[day] = pieces
    return pieces


def _modify_text(ts: float) -> str:
    """``format_time_val(ts)`` (``YYYYMMDDHHMMSS``, UTC) without Decimal or datetime per call."""
    second = _whole_second(ts)
    text = _seconds.get(second)
    if text is None:
        day, rest = divmod(second, 86400)
        hour, rest = divmod(rest, 3600)
        minute, sec = divmod(rest, 60)
        text = _day(day)[0] + _TWO_DIGITS[hour] + _TWO_DIGITS[minute] + _TWO_DIGITS[sec]
        if len(_seconds) >= _CACHE_LIMIT:
            _seconds.clear()
        _seconds[second] = text
    return text


# --- MLSx formatting (3659 §7.2, §7.5) ------------------------------------------------------------


def _sanitise_unique(value: str) -> str:
    """Percent-encode (UTF-8) every character outside RCHAR; injective since "%" is escaped as well."""
    if value.isascii() and value.isalnum():
        return value  # the usual hex digest: nothing to escape
    return "".join(
        ch if ch in _UNIQUE_SAFE else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        for ch in value
    )


def listable(name: str) -> bool:
    """Whether a name can appear in a listing line (servers skip the others, RFC 3659 §2.2)."""
    return bool(name) and "\r" not in name and "\n" not in name and "\0" not in name


def _check_listable_name(name: str, what: str = "name") -> None:
    # 3659 §2.2: names containing CRLF cannot be listed; lone CR/LF or NUL would break line framing.
    if not listable(name):
        raise LocalProtocolError(f"{what} cannot appear in a listing: {name!r}")


def _fact_value(fact: str, info: StatLike, perm: str, kind: str | None) -> str | None:
    if fact == "type":
        return kind or ("dir" if info.is_dir else "file")
    if fact == "size":
        # Omitted for directories: their "size" means nothing to a client (digest §4.6).
        return None if info.is_dir or kind in ("dir", "cdir", "pdir") else str(max(info.size, 0))
    if fact == "modify":
        return _modify_text(info.mtime)
    if fact == "perm":
        return perm
    if fact == "unique":
        return _sanitise_unique(info.unique) if info.unique else None
    # unix.mode: octal like the common servers (digest §7 item 18); never invented when unknown.
    return None if info.mode is None else f"{info.mode & 0o7777:04o}"


def format_facts(info: StatLike, selected: frozenset[str], *, perm: str, kind: str | None = None) -> str:
    """``type=file;size=10;...;`` for the selected facts in canonical order (3659 §7.2, §7.5).

    ``kind`` replaces the type value (``cdir``, ``pdir``, ``OS.unix=slink``, 3659 §7.5.1); ``perm`` is
    the caller's decision for this user (3659 §7.5.5).  Values never contain ``;`` or a blank.
    """
    if not set(perm) <= _PERM_LETTERS:
        raise LocalProtocolError(f"perm may only hold the letters acdeflmprw: {perm!r}")
    if kind is not None and (not kind or not set(kind) <= _KIND_SAFE):
        raise LocalProtocolError(f"invalid type value: {kind!r}")
    parts = []
    for fact in SUPPORTED_FACTS:
        value = _fact_value(fact, info, perm, kind) if fact in selected else None
        if value is not None:
            parts.append(f"{fact}={value};")
    return "".join(parts)


def mlsd_line(info: StatLike, selected: frozenset[str], *, perm: str, kind: str | None = None) -> str:
    """One MLSD data line ``<facts> <name>``: no leading blank, no CRLF (3659 §7.2)."""
    _check_listable_name(info.name)
    return f"{format_facts(info, selected, perm=perm, kind=kind)} {info.name}"


class MlsdFormatter:
    """MLSD lines for one listing: the fact selection is read once and each perm value checked once.

    ``line(info, perm)`` equals ``mlsd_line(info, selected, perm=perm)``; it is the per-entry path of a
    directory listing, where that function's per-call checks and lookups would dominate.  ``row`` is
    the same from plain values (a storage's listing rows), for a caller that has checked the name
    with :func:`listable` already; without a perm it uses the listing-wide ``file_perm`` or
    ``dir_perm`` (one call per entry when every entry of a type has the same perm).
    """

    __slots__ = (
        "_default_perms",
        "_mode",
        "_modify",
        "_modify_facts",
        "_perm",
        "_perm_facts",
        "_size",
        "_types",
        "_unique",
    )

    def __init__(self, selected: frozenset[str], *, file_perm: str = "", dir_perm: str = "") -> None:
        self._types = ("type=file;", "type=dir;") if "type" in selected else ("", "")
        self._size = "size" in selected
        self._modify = "modify" in selected
        self._perm = "perm" in selected
        self._unique = "unique" in selected
        self._mode = "unix.mode" in selected
        self._perm_facts: dict[str, str] = {}  # perm value -> "perm=...;"
        self._modify_facts: dict[float, str] = {}  # mtime // 1 -> "modify=...;" (see _modify_fact)
        self._default_perms = (self._perm_fact(file_perm), self._perm_fact(dir_perm))

    def line(self, info: StatLike, perm: str) -> str:
        name = info.name
        if not listable(name):
            raise LocalProtocolError(f"name cannot appear in a listing: {name!r}")
        return self.row((name, info.is_dir, info.size, info.mtime, info.mode, info.unique), perm)

    def row(self, row: StatRow, perm: str | None = None) -> str:
        # One f-string at the end: each "+=" of a fact would copy the line built so far.
        name, is_dir, size, mtime, mode, unique = row
        if perm is None:
            perm_fact = self._default_perms[is_dir]
        else:
            perm_fact = self._perm_facts.get(perm) or self._perm_fact(perm)
        if is_dir or not self._size:
            head = self._types[is_dir]
        else:
            head = f"{self._types[0]}size={size if size > 0 else 0};"
        # Keyed by the float floor: equal keys are one whole second, so one text (files are written
        # in bursts); NaN never matches a key and reaches _modify_text, which refuses it.
        modify = (self._modify_facts.get(mtime // 1) or self._modify_fact(mtime)) if self._modify else ""
        if not (self._unique and unique):
            unique_fact = ""
        elif unique.isascii() and unique.isalnum():  # the usual hex digest: nothing to escape
            unique_fact = f"unique={unique};"
        else:
            unique_fact = f"unique={_sanitise_unique(unique)};"
        if self._mode and mode is not None:
            return f"{head}{modify}{perm_fact}{unique_fact}unix.mode={mode & 0o7777:04o}; {name}"
        return f"{head}{modify}{perm_fact}{unique_fact} {name}"

    def _perm_fact(self, perm: str) -> str:
        """``perm=...;`` (empty when the fact is not selected), checked once per perm value."""
        fact = self._perm_facts.get(perm)
        if fact is None:
            if not set(perm) <= _PERM_LETTERS:
                raise LocalProtocolError(f"perm may only hold the letters acdeflmprw: {perm!r}")
            fact = self._perm_facts[perm] = f"perm={perm};" if self._perm else ""
        return fact

    def _modify_fact(self, mtime: float) -> str:
        fact = f"modify={_modify_text(mtime)};"
        if len(self._modify_facts) >= _CACHE_LIMIT:
            self._modify_facts.clear()
        self._modify_facts[mtime // 1] = fact
        return fact


def mlst_line(info: StatLike, selected: frozenset[str], *, perm: str, path: str) -> str:
    """The middle line of an MLST reply: exactly one leading blank, facts, blank, path (3659 §7.2)."""
    _check_listable_name(path, "path")
    return f" {format_facts(info, selected, perm=perm)} {path}"


# --- LIST formatting --------------------------------------------------------------------------------


def _permission_string(mode: int) -> str:
    """The nine ``rwx`` columns of ``ls -l``, with s/S/t/T for setuid, setgid and sticky."""
    columns = []
    for shift, special, letter in ((6, 0o4000, "s"), (3, 0o2000, "s"), (0, 0o1000, "t")):
        bits = (mode >> shift) & 0o7
        execute = "x" if bits & 1 else "-"
        if mode & special:
            execute = letter if bits & 1 else letter.upper()
        columns.append(("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + execute)
    return "".join(columns)


class ListFormatter:
    """``ls -l`` style LIST lines (no CRLF), the de-facto format clients parse (959 §4.1.3).

    Times are UTC; the time of day is shown for files modified in the last half year, the year
    otherwise (also for future times), as ls does.  Months are English whatever the locale.  One
    formatter serves one listing: owner and group are checked once, the columns before the size are
    cached per (type, mode), since a directory holds few distinct ones, and the date columns per
    minute.  ``row`` formats plain values (a storage's listing rows) for a caller that has checked
    the name with :func:`listable` already.
    """

    __slots__ = ("_heads", "_now", "_owner_group", "_recent", "_recent_after")

    def __init__(self, *, now: float, owner: str = "ftp", group: str = "ftp") -> None:
        for label, value in (("owner", owner), ("group", group)):
            if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
                raise LocalProtocolError(f"{label} must be a non-empty word: {value!r}")
        self._now = now
        self._recent_after = now - _HALF_YEAR
        self._owner_group = f" 1 {owner} {group} "
        # mode -> "drwxr-xr-x 1 ftp ftp ", files first then directories: an int key hashes cheaper
        # than a (type, mode) tuple built for every entry.
        self._heads: tuple[dict[int | None, str], dict[int | None, str]] = ({}, {})
        self._recent: dict[float, str] = {}  # mtime // 60 -> "Mon DD HH:MM", for recent times only

    def line(self, info: StatLike) -> str:
        name = info.name
        if not listable(name):
            raise LocalProtocolError(f"name cannot appear in a listing: {name!r}")
        return self.row((name, info.is_dir, info.size, info.mtime, info.mode, None))

    def row(self, row: StatRow) -> str:
        name, is_dir, size, mtime, mode, _ = row
        heads = self._heads[is_dir]
        head = heads.get(mode)
        if head is None:
            bits = mode if mode is not None else (0o755 if is_dir else 0o644)
            head = heads[mode] = ("d" if is_dir else "-") + _permission_string(bits) + self._owner_group
        if self._recent_after < mtime <= self._now:
            # Equal float floors are one minute of one day, so one text; the key needs no clamping
            # (a recent time is not NaN) and equal keys give equal text even past year 9999.
            when = self._recent.get(mtime // 60)
            if when is None:
                when = self._recent_text(mtime)
        else:
            _, month_day, year = _day(_whole_second(mtime) // 86400)
            when = f"{month_day} {year}"
        return f"{head}{size if size > 0 else 0} {when} {name}"

    def _recent_text(self, mtime: float) -> str:
        day, rest = divmod(_whole_second(mtime), 86400)
        hour, rest = divmod(rest, 3600)
        text = f"{_day(day)[1]} {_TWO_DIGITS[hour]}:{_TWO_DIGITS[rest // 60]}"
        if len(self._recent) >= _CACHE_LIMIT:
            self._recent.clear()
        self._recent[mtime // 60] = text
        return text


def list_line(info: StatLike, *, now: float, owner: str = "ftp", group: str = "ftp") -> str:
    """One LIST line; see :class:`ListFormatter`, which a listing of many entries should reuse."""
    _check_listable_name(info.name)
    return ListFormatter(now=now, owner=owner, group=group).line(info)


# --- client-side parsing ----------------------------------------------------------------------------


def _looks_like_facts(text: str) -> bool:
    return text.endswith(";") and all(fact.find("=") > 0 for fact in text[:-1].split(";"))


def _split_mlsx(line: str) -> tuple[str, str]:
    """(facts, name) of an MLSD line ``facts name`` or an MLST line `` facts name``.

    A line starting with a blank is an MLST line, or an MLSD line with no facts at all (3659 §7.2):
    two blanks are MLST without facts (3659 §7.9.2); after one blank, facts-like text means MLST.
    The leftover ambiguity (an MLSD line without facts for a name like ``a=b; c``) cannot be resolved
    from the line alone; it needs an empty OPTS MLST selection, which clients do not send.
    """
    if not line.startswith(" "):
        facts, sep, name = line.partition(" ")
        if not sep:
            raise RemoteProtocolError(501, "MLSx line without a blank before the name")
        return facts, name
    if line.startswith("  "):
        return "", line[2:]
    rest = line[1:]
    facts, sep, name = rest.partition(" ")
    if sep and _looks_like_facts(facts):
        return facts, name
    return "", rest


def _parse_facts(text: str) -> dict[str, str]:
    if not text:
        return {}
    if not text.endswith(";"):
        raise RemoteProtocolError(501, "MLSx facts must end with ';'")
    facts: dict[str, str] = {}
    for item in text[:-1].split(";"):
        name, sep, value = item.partition("=")  # values may hold "=" (OS.unix=slink, 3659 §7.2)
        if not sep or not name:
            raise RemoteProtocolError(501, f"malformed MLSx fact: {item!r}")
        facts[name.lower()] = value  # fact names are case-insensitive (3659 §7.2)
    return facts


def parse_mlsx_line(line: str) -> RemoteEntry:
    """A :class:`RemoteEntry` from one MLSD data line or one MLST reply line (3659 §7.2, §7.5).

    Fact names come back lower-cased, values verbatim.  ``type`` ``dir``/``cdir``/``pdir`` give
    ``is_dir`` True, ``file`` False, anything else (or no type fact) None.  Structural errors raise
    RemoteProtocolError(501); a size or modify value that does not parse only leaves its field None.
    """
    facts_text, name = _split_mlsx(line.removesuffix("\n").removesuffix("\r"))
    if not name:
        raise RemoteProtocolError(501, "MLSx line without a name")
    facts = _parse_facts(facts_text)
    kind = facts.get("type", "").lower()
    is_dir = True if kind in ("dir", "cdir", "pdir") else False if kind == "file" else None
    size_text = facts.get("size", "")
    size = int(size_text) if size_text.isascii() and size_text.isdigit() and len(size_text) <= 20 else None
    mtime: float | None = None
    if "modify" in facts:
        try:
            mtime = parse_time_val(facts["modify"])
        except RemoteProtocolError:
            mtime = None
    return RemoteEntry(name=name, is_dir=is_dir, size=size, mtime=mtime, facts=facts)


def _timestamp(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float | None:
    try:
        _dt.datetime(year, month, day, hour, minute)
    except ValueError:
        return None
    return float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)))


def _recent_timestamp(month: int, day: int, hour: int, minute: int, now: float) -> float | None:
    """A year-less ``Mon DD HH:MM`` is within the last half year: the latest such date not after now."""
    if math.isnan(now):
        return None
    this_year = _dt.datetime.fromtimestamp(min(max(now, 0.0), 253402300799.0), _dt.UTC).year
    for year in (this_year + 1, this_year, this_year - 1):
        if not 1 <= year <= 9999:
            continue
        stamp = _timestamp(year, month, day, hour, minute)
        if stamp is not None and stamp <= now + _FUTURE_SLACK:
            return stamp
    return None


def _mode_from_perm(perm: str) -> int:
    """Inverse of :func:`_permission_string` (nine columns -> permission bits)."""
    mode = 0
    for index, ch in enumerate(perm):
        if ch in "rwxst":
            mode |= 1 << (8 - index)
        if ch in "sStT":
            mode |= (0o4000, 0o2000, 0o1000)[index // 3]
    return mode


def _parse_unix(match: re.Match[str], now: float) -> RemoteEntry:
    kind, name = match["type"], match["name"]
    facts = {"unix.mode": f"{_mode_from_perm(match['perm']):04o}"}
    mid = match["mid"].split()
    if mid[0].isascii() and mid[0].isdigit():
        mid = mid[1:]  # the link count
    facts.update(zip(("unix.owner", "unix.group"), mid, strict=False))
    if kind == "l" and " -> " in name:
        name, target = name.split(" -> ", 1)
        facts["type"] = f"OS.unix=slink:{target}"
    elif kind in _UNIX_TYPES:
        facts["type"] = _UNIX_TYPES[kind]
    month, day = _MONTH_NUMBER[match["month"].lower()], int(match["day"])
    if match["year"] is not None:
        mtime = _timestamp(int(match["year"]), month, day)
    else:
        mtime = _recent_timestamp(month, day, int(match["hour"]), int(match["minute"]), now)
    is_dir = {"d": True, "-": False}.get(kind)
    return RemoteEntry(name=name, is_dir=is_dir, size=int(match["size"]), mtime=mtime, facts=facts)


def _parse_dos(match: re.Match[str]) -> RemoteEntry | None:
    year, hour = int(match["year"]), int(match["hour"])
    if len(match["year"]) == 2:
        year += 2000 if year < 69 else 1900  # POSIX strptime %y pivot
    if match["ampm"] is not None:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ampm"].upper() == "PM" else 0)
    mtime = _timestamp(year, int(match["month"]), int(match["day"]), hour, int(match["minute"]))
    if mtime is None:
        return None
    is_dir = match["dir"] is not None
    size = None if is_dir else int(match["size"].replace(",", ""))
    facts = {"type": "dir" if is_dir else "file"}
    return RemoteEntry(name=match["name"], is_dir=is_dir, size=size, mtime=mtime, facts=facts)


def parse_list_line(line: str, *, now: float) -> RemoteEntry | None:
    """A :class:`RemoteEntry` from a Unix ``ls -l`` or MS-DOS/IIS LIST line, else None.

    ``total N`` lines and anything unrecognised give None; ``.`` and ``..`` are returned like any
    name.  Facts carry ``type`` (``file``, ``dir``, ``OS.unix=slink:<target>``) and, for Unix lines,
    ``unix.mode``/``unix.owner``/``unix.group``.  ``now`` picks the year of ``Mon DD HH:MM`` dates;
    an impossible date on a Unix line only leaves ``mtime`` None.  A symlink's ``is_dir`` is None:
    the line does not say what it points to.
    """
    text = line.removesuffix("\n").removesuffix("\r")
    unix = _UNIX_LINE.fullmatch(text)
    if unix is not None:
        return _parse_unix(unix, now)
    dos = _DOS_LINE.fullmatch(text)
    if dos is not None:
        return _parse_dos(dos)
    return None
