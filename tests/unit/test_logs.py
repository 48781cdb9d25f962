"""Unit tests for pyftps.server.logs: JSON lines, redaction of secrets, and the xferlog(5) format."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyftps.proto.actions import Transfer, TransferKind, TransferOutcome
from pyftps.server.logs import (
    CommandTracker,
    FinishedCommand,
    JSONFormatter,
    XferEntry,
    XferLog,
    command_log,
    configure_logging,
    format_xferlog,
    loggable_verb,
    redact,
    xfer_entry,
    xferlog_field,
)

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"pyftps.test.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# ---------------------------------------------------------------------- JSON formatter


def test_json_lines_parse_with_core_and_extra_fields(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("hello %s", "world", extra={"session": "1f", "peer": "192.0.2.1", "level": "forged"})
    logger.warning("second")
    first, second = lines(stream)
    assert first["msg"] == "hello world"
    assert first["level"] == "INFO"  # an extra cannot replace a core key
    assert first["logger"] == logger.name
    assert first["session"] == "1f"
    assert first["peer"] == "192.0.2.1"
    ts = first["ts"]
    assert isinstance(ts, str)
    assert ts.endswith("Z")
    assert time.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert second["level"] == "WARNING"
    assert "args" not in first
    assert "exc" not in first


def test_json_exception_stays_on_one_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("failed\nhere")
    (record,) = lines(stream)
    assert record["msg"] == "failed\nhere"
    exc = record["exc"]
    assert isinstance(exc, str)
    assert "ValueError: bad" in exc


def test_json_odd_values(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("name", extra={"path": "/caf\udce9", "obj": object(), "peer": ("::1", 21)})
    raw = stream.getvalue()
    assert raw.isascii()
    (record,) = lines(stream)
    assert record["path"] == "/caf\udce9"
    assert record["peer"] == ["::1", 21]
    assert str(record["obj"]).startswith("<object")


def test_configure_logging_json_and_text() -> None:
    # A logger of this test's own: other tests set levels on "pyftps.*" and their threads may log.
    name = "logs_test_only.x"
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        stream = io.StringIO()
        configure_logging(True, "info", stream=stream)
        logging.getLogger(name).debug("hidden")
        logging.getLogger(name).info("shown")
        (record,) = [r for r in lines(stream) if r["logger"] == name]
        assert record["msg"] == "shown"
        text = io.StringIO()
        configure_logging(False, "DEBUG", stream=text)
        logging.getLogger(name).debug("plain")
        assert f"DEBUG {name}: plain" in text.getvalue()
        assert stream.getvalue().count(name) == 1  # the JSON handler was replaced
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


# ---------------------------------------------------------------------- command log


def test_pass_is_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    command_log(
        logger, session="a", peer="192.0.2.7", user="alice", verb="PASS", arg=SECRET, code=230, seconds=0.0123
    )
    assert SECRET not in stream.getvalue()
    (record,) = lines(stream)
    assert record["command"] == "PASS"
    assert record["arg"] == "****"
    assert record["code"] == 230
    assert record["duration_ms"] == 12.3
    assert record["session"] == "a"
    assert record["peer"] == "192.0.2.7"
    assert record["user"] == "alice"
    assert record["msg"] == "session a: 192.0.2.7 alice: PASS **** -> 230 (12.3 ms)"


def test_text_form_is_redacted_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("pyftps.test.text")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        command_log(logger, session="b", peer="p", user=None, verb="pass", arg=SECRET, code=530, seconds=3)
        command_log(logger, session="b", peer="p", user=None, verb="RETR", arg="a\r\nb", code=226, seconds=0)
        command_log(logger, session="b", peer="p", user="x\ny", verb="NOOP", arg=None, code=200, seconds=0)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue().splitlines()
    assert out == [
        "session b: p -: PASS **** -> 530 (3000.0 ms)",
        "session b: p -: RETR a\\r\\nb -> 226 (0.0 ms)",
        "session b: p x\\ny: NOOP -> 200 (0.0 ms)",
    ]


@pytest.mark.parametrize(
    ("verb", "arg", "shown"),
    [
        ("PASS", SECRET, "****"),
        ("PASS", "", "****"),
        ("pass", SECRET, "****"),
        ("ACCT", SECRET, "****"),
        ("ADAT", "YIIB...", "****"),
        ("SITE", f"PSWD old {SECRET}", "****"),
        ("SITE", SECRET, "****"),
        ("SITE", "CHMOD 755 /a b", "CHMOD 755 /a b"),
        ("site", "help", "help"),
        ("USER", "alice", "alice"),
        ("RETR", "/file", "/file"),
        ("PASS", None, None),
        ("NOOP", None, None),
        ("FROB", "anything", "****"),  # unknown commands: the argument may be anything
        ("PASSWORD", SECRET, "****"),
    ],
)
def test_redact(verb: str, arg: str | None, shown: str | None) -> None:
    assert redact(verb, arg) == shown


@pytest.mark.parametrize(
    ("verb", "shown"),
    [("retr", "RETR"), ("XCRC", "XCRC"), ("FOO", "FOO"), ("HUNTER2", "OTHER"), ("S3CR3T-PA55", "OTHER")],
)
def test_loggable_verb(verb: str, shown: str) -> None:
    assert loggable_verb(verb) == shown


def test_pasted_password_is_not_logged(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    command_log(logger, session="d", peer="p", user="al", verb=SECRET.upper(), arg=None, code=500, seconds=0)
    command_log(logger, session="d", peer="p", user="al", verb="ZZZZ", arg=SECRET, code=500, seconds=0)
    assert SECRET.upper() not in stream.getvalue()
    assert SECRET not in stream.getvalue()
    first, second = lines(stream)
    assert first["command"] == "OTHER"
    assert (second["command"], second["arg"]) == ("ZZZZ", "****")


def test_command_without_argument(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    command_log(logger, session="c", peer="p", user="bob", verb="noop", arg=None, code=200, seconds=0.0)
    (record,) = lines(stream)
    assert record["command"] == "NOOP"
    assert record["arg"] is None
    assert "NOOP -> 200" in str(record["msg"])


def test_tracker_pairs_in_order() -> None:
    tracker = CommandTracker()
    assert tracker.reply(220, 0.0) is None  # the greeting answers no command
    tracker.begin("user", "alice", 1.0)
    tracker.begin("PASS", SECRET, 1.0, user="alice")  # pipelined: both open before either reply
    assert tracker.reply(331, 1.5) == FinishedCommand("USER", "alice", 331, 0.5)
    assert tracker.reply(230, 4.0) == FinishedCommand(
        "PASS", "****", 230, 3.0, "alice"
    )  # redacted on arrival
    assert tracker.reply(421, 5.0) is None


def test_tracker_transfer_with_stat_and_abor() -> None:
    tracker = CommandTracker()
    tracker.begin("RETR", "/big", 10.0)
    assert tracker.reply(150, 10.1) is None  # preliminary: RETR stays open
    tracker.begin("STAT", None, 11.0)  # answered at once during the transfer (RFC 959 §4.1.3)
    assert tracker.reply(213, 11.25) == FinishedCommand("STAT", None, 213, 0.25)
    tracker.begin("ABOR", None, 12.0)
    assert tracker.reply(426, 12.5) == FinishedCommand("RETR", "/big", 426, 2.5)
    assert tracker.reply(226, 12.5) == FinishedCommand("ABOR", None, 226, 0.5)
    assert tracker.reply(200, 13.0) is None


def test_tracker_is_bounded_and_clears() -> None:
    tracker = CommandTracker()
    for i in range(100):
        tracker.begin("NOOP", str(i), float(i))
    first = tracker.reply(200, 100.0)
    assert first is not None
    assert first.arg == str(100 - CommandTracker.MAX_OPEN)
    tracker.clear()
    assert tracker.reply(200, 101.0) is None


# ---------------------------------------------------------------------- xferlog

# Fields as wu-ftpd and ProFTPD write them (xferlog(5)); 25 Nov 2024 was a Monday.
KNOWN_GOOD = "Mon Nov 25 14:00:00 2024 1 127.0.0.1 1024 /path b _ i r alice ftp 0 * c"
WHEN = time.struct_time((2024, 11, 25, 14, 0, 0, 0, 330, 0))


def entry(**changes: object) -> XferEntry:
    fields: dict[str, object] = {
        "remote_host": "127.0.0.1",
        "size": 1024,
        "filename": "/path",
        "direction": "i",
        "username": "alice",
        "seconds": 1.7,
        "complete": True,
    }
    fields.update(changes)
    return XferEntry(**fields)  # type: ignore[arg-type]


def test_xferlog_line_matches_known_good() -> None:
    assert format_xferlog(entry(), WHEN) == KNOWN_GOOD


def test_xferlog_variants() -> None:
    when = time.struct_time((2025, 3, 5, 9, 7, 3, 2, 64, 0))  # a Wednesday, single-digit day and hour
    line = format_xferlog(
        entry(
            filename="/dir/my file\tv2.txt",
            direction="o",
            ascii=True,
            complete=False,
            seconds=0.2,
            size=0,
            service="ftps",
        ),
        when,
    )
    assert line == "Wed Mar 05 09:07:03 2025 0 127.0.0.1 0 /dir/my_file_v2.txt a _ o r alice ftps 0 * i"
    assert len(line.split(" ")) == 18  # 14 fields, the time taking 5


def test_xferlog_field_escaping() -> None:
    assert xferlog_field("/a b\nc\x7fd") == "/a_b_c_d"
    assert xferlog_field("/café") == "/café"
    assert xferlog_field("") == "*"


def test_xfer_entry_from_transfer() -> None:
    retr = Transfer(TransferKind.RETR, "/x y", ascii=True)
    got = xfer_entry(retr, TransferOutcome(10), remote_host="::1", username="al", seconds=2.5, tls=True)
    assert got is not None
    assert (got.direction, got.size, got.complete, got.ascii, got.service) == ("o", 10, True, True, "ftps")
    stor = Transfer(TransferKind.APPE, "/up")
    got = xfer_entry(
        stor, TransferOutcome(5, aborted=True), remote_host="h", username="u", seconds=0, tls=False
    )
    assert got is not None
    assert (got.direction, got.complete, got.service) == ("i", False, "ftp")
    failed = TransferOutcome(5, 451, "disk")
    got = xfer_entry(stor, failed, remote_host="h", username="u", seconds=0, tls=False)
    assert got is not None
    assert not got.complete
    listing = Transfer(TransferKind.MLSD, "/")
    assert (
        xfer_entry(listing, TransferOutcome(10), remote_host="h", username="u", seconds=0, tls=True) is None
    )


def test_xferlog_file_appends(tmp_path: Path) -> None:
    path = tmp_path / "xferlog"
    path.write_text("existing line\n")
    stamp = 1732543200.0  # 2024-11-25 14:00:00 UTC
    with XferLog(path, utc=True) as xferlog:
        xferlog.write(entry(), now=stamp)
        xferlog.write(entry(filename="/a b", complete=False), now=stamp)
    assert path.read_text().splitlines() == [
        "existing line",
        KNOWN_GOOD,
        KNOWN_GOOD.replace("/path", "/a_b")[:-1] + "i",
    ]


def test_xferlog_new_file_mode_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "xferlog"
    old_umask = os.umask(0o022)
    try:
        xferlog = XferLog(path, utc=True)
    finally:
        os.umask(old_umask)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        xferlog.write(entry())
        path.rename(tmp_path / "xferlog.1")  # logrotate
        xferlog.reopen()
        xferlog.write(entry(username="bob"))
    finally:
        xferlog.close()
    xferlog.write(entry())  # after close: dropped, no error
    assert "alice" in (tmp_path / "xferlog.1").read_text()
    assert " bob " in path.read_text()
    assert path.read_text().count("\n") == 1


def test_xferlog_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "xferlog"
    xferlog = XferLog(path)
    long_name = "/" + "n" * 5000  # longer than one stdio buffer: still one write per line

    def work(n: int) -> None:
        for i in range(200):
            xferlog.write(entry(filename=f"{long_name}{n}-{i}", username=f"user{n}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    xferlog.close()
    written = path.read_text().splitlines()
    assert len(written) == 1600
    assert all(len(line.split(" ")) == 18 and line.endswith(" ftp 0 * c") for line in written)


def test_xferlog_write_failure_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    xferlog = XferLog(tmp_path / "xferlog")
    read_only = os.open(tmp_path / "xferlog", os.O_RDONLY)
    xferlog._fd, good = read_only, xferlog._fd  # simulate a file that can no longer be written
    with caplog.at_level(logging.ERROR, logger="pyftps.xferlog"):
        xferlog.write(entry())
        xferlog.write(entry())
    assert len([r for r in caplog.records if r.name == "pyftps.xferlog"]) == 1
    assert good is not None
    os.close(good)
    xferlog.close()
