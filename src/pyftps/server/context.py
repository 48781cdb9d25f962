"""What every connection of one server shares: configuration, TLS context, backends, pools, counters."""

from __future__ import annotations

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
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def next_session_id(self) -> str:
        return f"{next(self._ids):x}"
