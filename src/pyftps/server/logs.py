"""Operator logs: JSON log lines, one redacted line per command, and the classic xferlog(5) transfer log."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pyftps.proto.actions import Transfer, TransferKind, TransferOutcome
from pyftps.proto.specs import COMMANDS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "****"

# Attributes every LogRecord has: anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO-8601 UTC), ``level``, ``logger``, ``msg``, then extra fields.

    Fields passed with ``extra=`` appear under their own names (an extra may not replace a core
    key); ``exc`` and ``stack`` hold a traceback when there is one. Output is ASCII-only, so file
    names that are not valid UTF-8 (kept as surrogate escapes) still make valid lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        payload: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, separators=(",", ":"))


def configure_logging(json: bool, level: str, *, stream: TextIO | None = None) -> logging.Handler:
    """Send all logging to ``stream`` (stderr) as JSON lines or as text; replaces the root's handlers."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if json else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return handler


# ---------------------------------------------------------------------- command log

# SITE subcommands whose arguments are plain file names and numbers; any other SITE line may be
# a vendor password command (SITE PSWD, SITE CHPASS ...) or a mistyped secret, so it is hidden whole.
SAFE_SITE = frozenset({"HELP", "CHMOD", "UTIME", "IDLE", "UMASK"})
# PASS is the password; ACCT is the RFC 959 "account information", often a second password;
# ADAT carries RFC 2228 security exchange tokens. Their arguments are never logged.
SECRET_VERBS = frozenset({"PASS", "ACCT", "ADAT"})
KNOWN_VERBS = frozenset(COMMANDS)
_VERB_SHAPE = re.compile(r"[A-Z]{3,4}")  # what every RFC 959 family verb looks like


def loggable_verb(verb: str) -> str:
    """The verb as logged: a known or verb-shaped one as is, else ``OTHER``.

    A line that is not a command at all (a password pasted at the wrong prompt) must not reach the
    logs as a "verb"; unknown verbs that look like verbs (XCRC, SITE-less vendor commands) still do.
    """
    verb = verb.upper()
    return verb if verb in KNOWN_VERBS or _VERB_SHAPE.fullmatch(verb) else "OTHER"


def redact(verb: str, arg: str | None) -> str | None:
    """The argument of ``verb`` as it may appear in logs; unknown commands' arguments are hidden too."""
    if arg is None:
        return None
    verb = verb.upper()
    if verb in SECRET_VERBS or verb not in KNOWN_VERBS:
        return REDACTED
    if verb == "SITE":
        sub = arg.split(" ", 1)[0].upper()
        return arg if sub in SAFE_SITE else REDACTED
    return arg


def printable(text: str) -> str:
    """Control and other unprintable characters as escapes, so a file name cannot forge log lines."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def command_log(
    logger: logging.Logger,
    *,
    session: str,
    peer: str,
    user: str | None,
    verb: str,
    arg: str | None,
    code: int,
    seconds: float,
) -> None:
    """Log one command and its final reply at INFO, secrets redacted (see :func:`redact`).

    The JSON form carries ``session``, ``peer``, ``user``, ``command``, ``arg``, ``code`` and
    ``duration_ms`` as fields; the text form has them in the message.
    """
    if not logger.isEnabledFor(logging.INFO):
        return  # every command passes here: skip the redaction and formatting nobody will read
    shown = redact(verb, arg)
    verb = loggable_verb(verb)
    line = printable(verb if shown is None else f"{verb} {shown}")
    ms = round(max(0.0, seconds) * 1000.0, 3)
    logger.info(
        "session %s: %s %s: %s -> %d (%.1f ms)",
        session,
        printable(peer),
        printable(user or "-"),
        line,
        code,
        ms,
        extra={
            "session": session,
            "peer": peer,
            "user": user,
            "command": verb,
            "arg": shown,
            "code": code,
            "duration_ms": ms,
        },
    )


@dataclass(frozen=True, slots=True)
class FinishedCommand:
    """A command and its final reply, ready for :func:`command_log` and ``Metrics.command``."""

    verb: str
    arg: str | None  # already redacted
    code: int
    seconds: float
    user: str | None = None  # who was (or was logging in) when the command arrived


class CommandTracker:
    """Pairs each command with its final reply, fed in the order the I/O layer executes actions.

    FTP answers commands in order, so a final reply belongs to the oldest open command, with the
    one exception RFC 959 §4.1.3 makes during a transfer: STAT is answered at once, so a reply goes
    to a STAT opened behind a running command. ABOR needs no exception: the aborted transfer's
    426/226 comes first, then ABOR's own 226. Preliminary 1xx replies close nothing, and a reply
    with no open command (the greeting, a 421 on idle timeout) belongs to none. Arguments are
    redacted on arrival (:func:`redact`), so no password waits here. One per connection, used from
    the event loop only.
    """

    MAX_OPEN = 16  # far above what the session lets queue up; a bug cannot grow it without bound

    def __init__(self) -> None:
        self._open: deque[tuple[str, str | None, float, str | None]] = deque(maxlen=self.MAX_OPEN)

    def begin(self, verb: str, arg: str | None, now: float, user: str | None = None) -> None:
        self._open.append((verb.upper(), None if arg is None else redact(verb, arg), now, user))

    def reply(self, code: int, now: float) -> FinishedCommand | None:
        if not self._open or 100 <= code < 200:
            return None
        if len(self._open) > 1 and self._open[-1][0] == "STAT":
            verb, arg, started, user = self._open.pop()
        else:
            verb, arg, started, user = self._open.popleft()
        return FinishedCommand(verb, arg, code, max(0.0, now - started), user)

    def clear(self) -> None:
        self._open.clear()


# ---------------------------------------------------------------------- xferlog

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # struct_time.tm_wday: Monday is 0
_UNSAFE_IN_FIELD = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")  # whitespace and control characters (Cc)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class XferEntry:
    """One xferlog(5) line's fields (the current time is added when it is written)."""

    remote_host: str
    size: int  # "file-size": the bytes actually transferred, as ProFTPD logs it
    filename: str
    direction: str  # "o" outgoing (download), "i" incoming (upload), "d" deleted
    username: str
    seconds: float  # "transfer-time": logged in whole seconds, truncated like ProFTPD
    complete: bool  # "completion-status": c or i
    ascii: bool = False  # "transfer-type": a or b
    service: str = "ftp"  # ProFTPD writes "ftps" when the control connection is under TLS
    access_mode: str = "r"  # a anonymous, g guest, r real user
    special_action: str = "_"  # C compressed, U uncompressed, T tar'ed, _ none
    auth_method: int = 0  # 0 none, 1 RFC 931 ident
    auth_user_id: str = "*"  # the ident user id; * when not available


def xferlog_field(text: str) -> str:
    """A file or user name as one xferlog field: whitespace and control characters become ``_``.

    ProFTPD does the same (``xferlog_write``), so ``/a b.txt`` is logged as ``/a_b.txt``: lossy,
    but the line keeps its 14 space-separated fields. An empty name is logged as ``*``.
    """
    if not text:
        return "*"
    return _UNSAFE_IN_FIELD.sub("_", text)


def format_xferlog(entry: XferEntry, when: time.struct_time) -> str:
    """The line, without its newline; ``when`` is the current time (local time in ProFTPD)."""
    stamp = (
        f"{_DAYS[when.tm_wday]} {_MONTHS[when.tm_mon - 1]} {when.tm_mday:02d} "
        f"{when.tm_hour:02d}:{when.tm_min:02d}:{when.tm_sec:02d} {when.tm_year}"
    )
    fields = (
        stamp,
        str(max(0, int(entry.seconds))),
        entry.remote_host or "*",
        str(max(0, entry.size)),
        xferlog_field(entry.filename),
        "a" if entry.ascii else "b",
        entry.special_action,
        entry.direction,
        entry.access_mode,
        xferlog_field(entry.username),
        entry.service,
        str(entry.auth_method),
        xferlog_field(entry.auth_user_id),
        "c" if entry.complete else "i",
    )
    return " ".join(fields)


def xfer_entry(
    transfer: Transfer,
    outcome: TransferOutcome,
    *,
    remote_host: str,
    username: str,
    seconds: float,
    tls: bool,
) -> XferEntry | None:
    """The entry for a finished RETR/STOR/STOU/APPE; ``None`` for listings, which xferlog omits."""
    if transfer.kind.listing:
        return None
    return XferEntry(
        remote_host=remote_host,
        size=outcome.bytes_done,
        filename=transfer.path,
        direction="o" if transfer.kind is TransferKind.RETR else "i",
        username=username,
        seconds=seconds,
        complete=outcome.ok,
        ascii=transfer.ascii,
        service="ftps" if tls else "ftp",
    )


class XferLog:
    """Appends xferlog lines to a file; safe to call from the event loop and worker threads alike.

    The file is opened with ``O_APPEND`` (created mode 0640) and each line goes out in one
    ``write(2)`` as soon as it is logged, so lines from several processes do not interleave. Text
    is UTF-8; bytes of non-UTF-8 names are written as ``\\udcXX`` escapes. A failing write is
    reported once on the ``pyftps.xferlog`` logger and never reaches the transfer.
    """

    def __init__(self, path: str | os.PathLike[str], *, utc: bool = False) -> None:
        self.path = Path(path)
        self.utc = utc
        self._lock = threading.Lock()
        self._failing = False
        self._fd: int | None = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, entry: XferEntry, *, now: float | None = None) -> None:
        stamp = time.time() if now is None else now
        when = time.gmtime(stamp) if self.utc else time.localtime(stamp)
        data = (format_xferlog(entry, when) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            if self._fd is None:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as error:
                if not self._failing:
                    logging.getLogger("pyftps.xferlog").error("cannot write %s: %s", self.path, error)
                self._failing = True
            else:
                self._failing = False

    def reopen(self) -> None:
        """Open the path again (after logrotate moved the file away), e.g. on SIGHUP."""
        fd = self._open()
        with self._lock:
            old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> XferLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
