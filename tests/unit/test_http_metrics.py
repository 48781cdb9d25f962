"""Unit tests for pyftps.server.http: scrapes over real loopback sockets, health, errors and limits."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import pytest

from pyftps.server.http import MetricsHTTPServer, parse_listen
from pyftps.server.metrics import Metrics

Scenario = Callable[[MetricsHTTPServer, Metrics, str], Awaitable[None]]


def run(scenario: Scenario, *, healthy: Callable[[], bool] = lambda: True, **options: float) -> None:
    """Start a server on 127.0.0.1:0, run the scenario against its base URL, stop the server."""

    async def main() -> None:
        metrics = Metrics(process_metrics=False)
        server = MetricsHTTPServer(metrics.registry, healthy, **options)  # type: ignore[arg-type]
        host, port = await server.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(scenario(server, metrics, f"http://{host}:{port}"), 8)
        finally:
            await server.stop()

    asyncio.run(main())


def fetch(url: str, *, method: str = "GET", accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, data=b"x" if method == "POST" else None)
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


async def get(url: str, **kwargs: str) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, url, **kwargs)


async def raw_exchange(address: tuple[str, int] | None, data: bytes) -> bytes:
    assert address is not None
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()  # the server always closes after one response
    writer.close()
    return answer


def sample(body: bytes, line_start: str) -> float:
    for line in body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in scrape")


def test_metrics_scrape_moves() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        status, headers, body = await get(base + "/metrics")
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert headers["Connection"] == "close"
        assert int(headers["Content-Length"]) == len(body)
        assert sample(body, 'pyftps_logins_total{result="ok"}') == 0  # exported before any login
        metrics.login(True)
        metrics.transfer("RETR", "ok", bytes_in=0, bytes_out=4096, prot="P", seconds=0.1)
        _, _, body = await get(base + "/metrics?ignored=1")
        assert sample(body, 'pyftps_logins_total{result="ok"}') == 1
        assert sample(body, 'pyftps_sent_bytes_total{kind="RETR"}') == 4096
        metrics.login(True)
        _, _, body = await get(base + "/metrics")
        assert sample(body, 'pyftps_logins_total{result="ok"}') == 2

    run(scenario)


def test_openmetrics_negotiated() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        status, headers, body = await get(
            base + "/metrics", accept="application/openmetrics-text; version=1.0.0"
        )
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")

    run(scenario)


def test_head_has_headers_only() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        answer = await raw_exchange(server.address, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        length = next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Length: "))
        assert int(length.split(b" ")[1]) > 0  # the length a GET would have
        assert body == b""

    run(scenario)


def test_healthz_follows_callable() -> None:
    state = {"up": True}

    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        status, headers, body = await get(base + "/healthz")
        assert (status, body) == (200, b"ok\n")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        state["up"] = False
        status, _, _ = await get(base + "/healthz")
        assert status == 503

    run(scenario, healthy=lambda: state["up"])


def test_healthz_failing_check_is_503() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        status, _, _ = await get(base + "/healthz")
        assert status == 503

    run(scenario, healthy=broken)


def test_not_found_and_method_not_allowed() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        status, _, _ = await get(base + "/")
        assert status == 404
        status, _, _ = await get(base + "/metrics/extra")
        assert status == 404
        status, headers, _ = await get(base + "/metrics", method="POST")
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"
        status, _, _ = await get(base + "/healthz", method="DELETE")
        assert status == 405

    run(scenario)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /metrics\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
    ],
)
def test_malformed_requests(request_bytes: bytes, status: bytes) -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        answer = await raw_exchange(server.address, request_bytes)
        assert answer.startswith(b"HTTP/1.1 " + status)

    run(scenario)


def test_oversized_request_refused() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        big = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * 4000 + b"\r\n\r\n"
        answer = await raw_exchange(server.address, big)
        assert answer.startswith(b"HTTP/1.1 431 ")
        # just under the limit is still served
        fits = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * 900 + b"\r\n\r\n"
        assert (await raw_exchange(server.address, fits)).startswith(b"HTTP/1.1 200 ")

    run(scenario, max_header_bytes=1024)


def test_slow_request_times_out() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        assert server.address is not None
        reader, writer = await asyncio.open_connection(*server.address)
        started = asyncio.get_running_loop().time()
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        await writer.drain()
        for _ in range(5):  # keep dribbling: the deadline is for the whole head, not per byte
            await asyncio.sleep(0.05)
            writer.write(b"X")
        answer = await reader.read()
        elapsed = asyncio.get_running_loop().time() - started
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.3 <= elapsed < 2.0

    run(scenario, request_timeout=0.4)


def test_connection_cap() -> None:
    async def scenario(server: MetricsHTTPServer, metrics: Metrics, base: str) -> None:
        assert server.address is not None
        idle = [await asyncio.open_connection(*server.address) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        try:
            answer = await reader.read()
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # refused on arrival
        for _, idle_writer in idle:
            idle_writer.close()
        await asyncio.sleep(0.05)
        status, _, _ = await get(base + "/healthz")
        assert status == 200

    run(scenario, max_connections=2)


def test_stop_drops_idle_clients() -> None:
    async def main() -> None:
        server = MetricsHTTPServer(Metrics(process_metrics=False).registry, lambda: True)
        address = await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*address)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.stop(), 2)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(*address)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("[::1]:9100", ("::1", 9100)),
        (":9100", ("0.0.0.0", 9100)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9100", "::1:9100", "host:", "host:http", "host:70000", "host:-1"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)
