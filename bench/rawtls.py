"""Raw TLS baseline: one Python process sends a file over TLS 1.3 to another over loopback.

Same chunk size as the servers' copy loops (256 KiB), same certificate, same file. Two shapes:

- ``download``: the sender reads the file (``readinto``) and ``sendall``s it, the receiver discards;
  this is what a server does for RETR;
- ``upload``: the sender reads the file, the receiver ``recv_into``s and writes to a file (no fsync);
  this is what a server does for STOR.

Usage: ``rawtls.py receive CERT KEY OUT`` prints its port, then one JSON line with the data phase;
``rawtls.py send PORT FILE``.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time

CHUNK = 256 * 1024


def receive(cert: str, key: str, out: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    raw, _ = listener.accept()
    conn = context.wrap_socket(raw, server_side=True)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    total, first, last = 0, 0.0, 0.0
    sink = None if out == "-" else open(out, "wb")  # noqa: SIM115 (closed below)
    try:
        while True:
            count = conn.recv_into(buffer)
            if not count:
                break
            if not total:
                first = time.perf_counter()
            total += count
            if sink is not None:
                sink.write(view[:count])
        if sink is not None:
            sink.flush()
        last = time.perf_counter()
        conn.unwrap()
    finally:
        if sink is not None:
            sink.close()
        conn.close()
        listener.close()
    print(json.dumps({"bytes": total, "seconds": last - first, "cipher": conn.cipher()}), flush=True)


def send(port: int, path: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw) as conn:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        with open(path, "rb", buffering=0) as source:
            while count := source.readinto(buffer):
                conn.sendall(view[:count])
        conn.unwrap()


if __name__ == "__main__":
    if sys.argv[1] == "receive":
        receive(*sys.argv[2:5])
    else:
        send(int(sys.argv[2]), sys.argv[3])
