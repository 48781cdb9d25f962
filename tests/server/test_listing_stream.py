"""A huge directory is listed over a real TLS data connection without ever being held whole.

The listing is produced lazily in the transfer worker (scandir -> one line per entry -> 64 KiB
batches), so the server's memory stays at a few batches whatever the directory size. tracemalloc sees
the in-process server and this client alike; the client only keeps one 16 KiB receive buffer and a
one-byte-per-file tally, allocated before tracing starts.

PYFTPS_TEST_LISTING_FILES raises the entry count (the issue's figure is 100,000; the default keeps
the suite quick).
"""

from __future__ import annotations

import contextlib
import os
import tracemalloc
from pathlib import Path

from tests.server.conftest import StartServer

FILES = int(os.environ.get("PYFTPS_TEST_LISTING_FILES", "20000"))


def _make_files(directory: Path, count: int) -> None:
    directory.mkdir()
    flags = os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC
    for index in range(count):
        os.close(os.open(directory / f"f{index:06d}", flags, 0o644))


def test_mlsd_of_a_huge_directory_streams_in_bounded_memory(start_server: StartServer) -> None:
    handle = start_server()
    _make_files(handle.root / "big", FILES)
    client = handle.login()
    seen = bytearray(FILES)
    buffer = bytearray(16 * 1024)
    view = memoryview(buffer)
    tail = b""
    received = lines = 0
    plan = client.epsv()
    sock = client.open_tcp(plan)
    tracemalloc.start()
    try:
        assert client.send("MLSD big").code == 150
        data = client.secure_data(sock)
        while count := data.recv_into(buffer):
            received += count
            *complete, tail = (tail + bytes(view[:count])).split(b"\r\n")
            for line in complete:
                facts, _, name = line.partition(b" ")
                assert facts.startswith(b"type=file;size=0;modify="), line
                seen[int(name[1:])] += 1
                lines += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with contextlib.suppress(OSError, ValueError):
        data.unwrap()
    data.close()
    assert client.read_reply().code == 226
    assert tail == b""
    assert lines == FILES
    assert seen == bytes([1]) * FILES  # every file exactly once
    # Held whole, the text alone (str and encoded bytes) would take twice the listing's size and the
    # entries far more; streamed, the peak is a few 64 KiB batches.
    assert peak < received / 2, f"peak traced memory {peak} B for a {received} B listing"
