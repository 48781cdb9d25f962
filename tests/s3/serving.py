"""An in-process pyftps server for the S3 end-to-end tests: its loop in a thread, its errors collected.

The server must not log an error while a test drives it: leaving :func:`serving` fails the test if it did.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyftps.auth.base import Principal
from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.client import SyncClient
from pyftps.config import ServerConfig
from pyftps.server.app import Server
from pyftps.server.context import StorageFactory
from pyftps.tls.contexts import server_context
from tests.support.ports import LOOPBACK

PASSWORD = "wonderland"


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def serving(
    config: ServerConfig,
    users: dict[str, Principal],
    tls: tuple[Path, Path],
    storage_for: StorageFactory | None = None,
) -> Iterator[Server]:
    """A started server whose ``users`` all have :data:`PASSWORD`; stopped (and checked) on leaving."""
    cert, key = tls
    errors = _Errors()
    logging.getLogger("pyftps").addHandler(errors)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="s3-server-loop", daemon=True)
    thread.start()
    plain = {name: (PASSWORD, principal) for name, principal in users.items()}
    server = Server(
        config,
        authenticator=StaticAuthenticator.from_plain(plain, hasher=cheap_hasher()),
        ssl_context=server_context(cert, key, num_tickets=1),
        storage_for=storage_for,
    )
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        assert server.explicit_address is not None
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        logging.getLogger("pyftps").removeHandler(errors)
    assert [errors.format(r) for r in errors.records] == []


def connect(server: Server, cafile: Path, user: str = "alice") -> SyncClient:
    """An explicit-FTPS client session logged in as ``user``."""
    assert server.explicit_address is not None
    return SyncClient.connect(
        LOOPBACK,
        server.explicit_address[1],
        mode="explicit",
        user=user,
        password=PASSWORD,
        cafile=cafile,
        timeout=20.0,
    )
