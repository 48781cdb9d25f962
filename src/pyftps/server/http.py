"""A tiny asyncio HTTP/1.1 server for Prometheus scrapes (``/metrics``) and health checks (``/healthz``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from email.utils import formatdate

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

log = logging.getLogger("pyftps.http")

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
TEXT = "text/plain; charset=utf-8"
ALLOWED_METHODS = ("GET", "HEAD")


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self, status: int, body: bytes, content_type: str = TEXT, headers: tuple[str, ...] = ()
    ) -> None:
        self.status, self.body, self.content_type, self.headers = status, body, content_type, headers

    def encode(self, *, head: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *self.headers,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else self.body)


def _plain(status: int, text: str | None = None, headers: tuple[str, ...] = ()) -> Response:
    return Response(status, ((text or REASONS[status]) + "\n").encode(), headers=headers)


class MetricsHTTPServer:
    """Serves ``GET``/``HEAD`` on ``/metrics`` and ``/healthz``; one request per connection.

    Each request's head must arrive completely within ``request_timeout`` seconds and fit in
    ``max_header_bytes`` (else 408 or 431), so slow or oversized clients cannot hold it. At most
    ``max_connections`` connections are served at once; more are closed on arrival. The registry is
    rendered in the event loop, so ``set_function`` callbacks may read loop-owned state safely.
    """

    def __init__(
        self,
        registry: Collector,
        healthy: Callable[[], bool],
        *,
        request_timeout: float = 5.0,
        max_header_bytes: int = 8192,
        max_connections: int = 32,
    ) -> None:
        self.registry = registry
        self.healthy = healthy
        self.request_timeout = request_timeout
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.address: tuple[str, int] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host``:``port`` (0 picks a free port); returns the address actually bound."""
        self._server = await asyncio.start_server(
            self._client, host, port, limit=self.max_header_bytes, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        """Stop listening and drop the connections still open."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> MetricsHTTPServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ one connection

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._tasks) >= self.max_connections:
            writer.transport.abort()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            writer.transport.abort()  # the client went away or stopped reading: nothing more to say
        except asyncio.CancelledError:
            writer.transport.abort()  # the server is stopping
            raise
        else:
            writer.close()  # sends what is buffered, then FIN
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = False
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout)
        except asyncio.IncompleteReadError:
            return  # closed before finishing a request
        except asyncio.LimitOverrunError:
            response = _plain(431)
        except TimeoutError:
            response = _plain(408)
        else:
            response, head = self._respond(raw)
        writer.write(response.encode(head=head))
        await asyncio.wait_for(writer.drain(), self.request_timeout)

    def _respond(self, raw: bytes) -> tuple[Response, bool]:
        """The response to one request head, and whether it answers a HEAD (headers only)."""
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _plain(400), False
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            return _plain(505), False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep or not name or name != name.strip():
                    return _plain(400), False
                headers[name.lower()] = value.strip()
        path = target.split("?", 1)[0]
        if path not in ("/metrics", "/healthz"):
            return _plain(404), False
        if method not in ALLOWED_METHODS:
            return _plain(405, headers=(f"Allow: {', '.join(ALLOWED_METHODS)}",)), False
        if path == "/healthz":
            return self._health(), method == "HEAD"
        return self._metrics(headers.get("accept", "")), method == "HEAD"

    def _health(self) -> Response:
        try:
            ok = bool(self.healthy())
        except Exception as error:
            log.error("health check failed", exc_info=error)
            ok = False
        return _plain(200, "ok") if ok else _plain(503, "unavailable")

    def _metrics(self, accept: str) -> Response:
        """The registry in the format the scraper asked for (Prometheus text, or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept)
        try:
            body = encoder(self.registry)
        except Exception as error:
            log.error("rendering metrics failed", exc_info=error)
            return _plain(500)
        return Response(200, body, content_type)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; IPv6 hosts in brackets (``[::1]:9100``); ``:PORT`` means all IPv4.

    Raises ``ValueError`` with a message fit for the command line.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets, as in [::1]:9100 (got {value!r})")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host or "0.0.0.0", int(port_text)
