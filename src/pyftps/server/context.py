"""What every connection of one server shares: configuration, TLS context, backends, pools, counters."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyftps.auth.base import Authenticator, Principal
from pyftps.auth.stores import BanGuard
from pyftps.config import ServerConfig
from pyftps.server.data import PassivePorts
from pyftps.server.guard import ConnectionCounter
from pyftps.server.logs import XferLog
from pyftps.server.memory import TrimWhenQuiet
from pyftps.server.metrics import Metrics
from pyftps.server.quota import QuotaTracker
from pyftps.server.throttle import SharedBandwidth
from pyftps.server.vhosts import VirtualHosts
from pyftps.storage.base import Storage

StorageFactory = Callable[[Principal], Storage]


@dataclass
class ServerContext:
    config: ServerConfig
    ssl_context: ssl.SSLContext | None
    authenticator: Authenticator
    storage_for: StorageFactory
    passive_ports: PassivePorts
    op_executor: ThreadPoolExecutor
    transfer_executor: ThreadPoolExecutor
    guard: BanGuard
    counter: ConnectionCounter
    quotas: QuotaTracker = field(default_factory=QuotaTracker)
    upload_bandwidth: SharedBandwidth = field(default_factory=lambda: SharedBandwidth(None))
    download_bandwidth: SharedBandwidth = field(default_factory=lambda: SharedBandwidth(None))
    on_login: Callable[[Principal], None] = lambda principal: None
    connections: set[object] = field(default_factory=set)
    metrics: Metrics = field(default_factory=lambda: Metrics(process_metrics=False))
    xferlog: XferLog | None = None
    vhosts: VirtualHosts = field(default_factory=VirtualHosts)  # RFC 7151; empty: one host
    running_transfers: int = 0  # read by the pyftps_transfers_active gauge
    trimmer: TrimWhenQuiet = field(default_factory=TrimWhenQuiet)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def next_session_id(self) -> str:
        return f"{next(self._ids):x}"

    def went_quiet(self, loop: asyncio.AbstractEventLoop) -> None:
        """A transfer or session ended: once nothing runs, hand the burst's memory back to the system."""
        if self.running_transfers == 0:
            self.trimmer.went_quiet(loop, lambda: self.running_transfers == 0, self.op_executor)
