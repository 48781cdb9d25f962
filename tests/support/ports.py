"""Pick free TCP ports on loopback for listeners started by tests (never 21/990)."""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack

LOOPBACK = "127.0.0.1"

# Passive ranges are drawn from below Linux's default ephemeral range (32768-60999), so the
# kernel never hands one of these ports to an outgoing connection or a bind(0) meanwhile.
PASSIVE_LOW = 20000
PASSIVE_HIGH = 30000


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free on ``host`` a moment ago (bind to port 0, read it, close)."""
    with _bound(host, 0) as sock:
        port: int = sock.getsockname()[1]
        return port


def free_port_range(
    n: int,
    host: str = LOOPBACK,
    low: int = PASSIVE_LOW,
    high: int = PASSIVE_HIGH,
    attempts: int = 200,
) -> tuple[int, int]:
    """Return ``(first, last)``, a random block of ``n`` consecutive ports in ``[low, high]`` that all bind.

    Meant for a server's passive-port range. Every port of the block is bound at the same time
    before the block is accepted, then all are released.
    """
    if not 1 <= n <= high - low + 1:
        raise ValueError(f"cannot fit {n} ports into {low}-{high}")
    rng = random.SystemRandom()
    for _ in range(attempts):
        first = rng.randint(low, high - n + 1)
        with ExitStack() as stack:
            try:
                for port in range(first, first + n):
                    stack.enter_context(_bound(host, port))
            except OSError:
                continue
            return first, first + n - 1
    raise RuntimeError(f"no {n} consecutive free ports in {low}-{high} after {attempts} attempts")
