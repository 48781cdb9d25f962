"""Prometheus metrics of one server, kept in its own registry and fed by typed calls at each event."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from pyftps.proto.actions import TransferKind
from pyftps.proto.specs import COMMANDS
from pyftps.tls.contexts import ReuseVerdict

# Label values are always taken from closed sets (or collapsed into a fallback value), so a client
# sending random verbs or a bug passing odd strings cannot grow the number of series without bound.
KNOWN_VERBS = frozenset(COMMANDS)
TRANSFER_KINDS = frozenset(kind.value for kind in TransferKind)
TRANSFER_RESULTS = frozenset({"ok", "failed", "aborted"})
PROT_LEVELS = frozenset({"C", "P"})
TLS_CHANNELS = frozenset({"control", "data"})
TLS_VERSIONS = frozenset({"SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})
REUSE_VERDICTS = frozenset(verdict.name.lower() for verdict in ReuseVerdict)
REFUSAL_REASONS = frozenset({"banned", "limit"})
MAX_LABEL = 64  # listener names and cipher suites are short; anything longer is cut

COMMAND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TRANSFER_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)

CountFunction = Callable[[], int]


def _pick(value: str, allowed: Iterable[str], fallback: str) -> str:
    return value if value in allowed else fallback


def _free(value: str, fallback: str = "unknown") -> str:
    """A label value from a small but open set (listener names, cipher suites): bounded in length."""
    return value[:MAX_LABEL] if value else fallback


class Metrics:
    """Every metric the server exports; methods are cheap, thread-safe and never raise on odd input.

    Counters are exposed with the ``_total`` suffix by ``prometheus_client`` (``pyftps_logins`` is
    scraped as ``pyftps_logins_total``). The registry is private to the instance, so several servers
    (or tests) in one process each have their own numbers.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # listener -> sessions opened and not yet closed
        self._sessions_fn: CountFunction | None = None
        self._transfers_fn: CountFunction | None = None
        # labels() hashes, locks and looks up on every call (~10 us); the per-session paths keep their
        # children here instead. The label values are drawn from small fixed sets.
        self._children: dict[tuple[object, ...], Any] = {}
        # The two calls made for every reply skip even that: children by reply code and by verb.
        self._reply_children: dict[int, Any] = {}
        self._command_children: dict[str, Any] = {}
        self._build_session_metrics()
        self._build_tls_metrics()
        self._build_transfer_metrics()
        self._build_command_metrics()
        self._zero_known_series()
        if process_metrics:
            ProcessCollector(registry=self.registry)  # memory, CPU, open files (Linux /proc)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # ------------------------------------------------------------------ construction

    def _build_session_metrics(self) -> None:
        r = self.registry
        self._sessions = Counter(
            "pyftps_sessions",
            "Control connections accepted (past the ban and limit checks).",
            ["listener"],
            registry=r,
        )
        self._sessions_closed = Counter(
            "pyftps_sessions_closed", "Control connections that ended.", ["listener"], registry=r
        )
        self._refused = Counter(
            "pyftps_connections_refused", "Control connections refused on arrival.", ["reason"], registry=r
        )
        self._active_sessions = Gauge("pyftps_sessions_active", "Control connections open now.", registry=r)
        self._active_sessions.set_function(self._count_sessions)
        self._active_transfers = Gauge(
            "pyftps_transfers_active", "Data transfers running now (0 until a callback is set).", registry=r
        )
        self._active_transfers.set_function(self._count_transfers)
        self._logins = Counter("pyftps_logins", "Login attempts by result.", ["result"], registry=r)
        self._bans = Counter("pyftps_bans", "Addresses banned after repeated login failures.", registry=r)

    def _build_tls_metrics(self) -> None:
        r = self.registry
        self._handshakes = Counter(
            "pyftps_tls_handshakes",
            "Completed TLS handshakes by channel, protocol version and cipher.",
            ["channel", "version", "cipher"],
            registry=r,
        )
        self._handshake_failures = Counter(
            "pyftps_tls_handshake_failures",
            "TLS handshakes that failed or timed out.",
            ["channel"],
            registry=r,
        )
        self._handshake_seconds = Histogram(
            "pyftps_tls_handshake_seconds",
            "Duration of completed TLS handshakes.",
            ["channel"],
            registry=r,
            buckets=HANDSHAKE_BUCKETS,
        )
        self._resumptions = Counter(
            "pyftps_data_tls_resumptions",
            "Data-connection TLS handshakes by session-reuse verdict (RFC 4217 §10.2): same_session and "
            "reused_unverified resumed the control session; refused did not resume; other_session resumed "
            "another login's session.",
            ["verdict"],
            registry=r,
        )

    def _build_transfer_metrics(self) -> None:
        r = self.registry
        self._transfers = Counter(
            "pyftps_transfers",
            "Data transfers by command, result and PROT level.",
            ["kind", "result", "prot"],
            registry=r,
        )
        self._received = Counter(
            "pyftps_received_bytes", "Data-connection bytes received from clients.", ["kind"], registry=r
        )
        self._sent = Counter(
            "pyftps_sent_bytes", "Data-connection bytes sent to clients.", ["kind"], registry=r
        )
        self._transfer_seconds = Histogram(
            "pyftps_transfer_duration_seconds",
            "Duration of data transfers, any result.",
            ["kind"],
            registry=r,
            buckets=TRANSFER_BUCKETS,
        )

    def _build_command_metrics(self) -> None:
        r = self.registry
        self._replies = Counter("pyftps_replies", "Replies sent by reply code.", ["code"], registry=r)
        self._command_seconds = Histogram(
            "pyftps_command_duration_seconds",
            "Time from a command's arrival to its final reply (unknown verbs count as OTHER).",
            ["command"],
            registry=r,
            buckets=COMMAND_BUCKETS,
        )

    def _zero_known_series(self) -> None:
        """Export 0 for the small fixed label sets now, so rates and alerts see them before any event."""
        for result in ("ok", "failed"):
            self._logins.labels(result)
        for reason in REFUSAL_REASONS:
            self._refused.labels(reason)
        for channel in TLS_CHANNELS:
            self._handshake_failures.labels(channel)
        for verdict in REUSE_VERDICTS:
            self._resumptions.labels(verdict)

    # ------------------------------------------------------------------ sessions and logins

    def session_opened(self, listener: str) -> None:
        """A control connection was accepted on ``listener`` (``explicit`` or ``implicit``)."""
        listener = _free(listener)
        self._child(self._sessions, listener).inc()
        with self._lock:
            self._open[listener] = self._open.get(listener, 0) + 1

    def session_closed(self, listener: str) -> None:
        """A control connection counted by :meth:`session_opened` ended; call exactly once per session."""
        listener = _free(listener)
        self._child(self._sessions_closed, listener).inc()
        with self._lock:
            self._open[listener] = max(0, self._open.get(listener, 0) - 1)

    def connection_refused(self, reason: str) -> None:
        """A connection was turned away before a session existed (``banned`` or ``limit``)."""
        self._refused.labels(_pick(reason, REFUSAL_REASONS, "other")).inc()

    def login(self, ok: bool) -> None:
        self._child(self._logins, "ok" if ok else "failed").inc()

    def ban(self) -> None:
        self._bans.inc()

    def set_active_callbacks(
        self, *, sessions: CountFunction | None = None, transfers: CountFunction | None = None
    ) -> None:
        """Let the gauges read live counts at scrape time (called in the scraping thread or loop).

        Without a ``sessions`` callback the gauge shows opened minus closed sessions; without a
        ``transfers`` callback it shows 0.
        """
        self._sessions_fn = sessions
        self._transfers_fn = transfers

    def _count_sessions(self) -> float:
        if self._sessions_fn is not None:
            return float(self._sessions_fn())
        with self._lock:
            return float(sum(self._open.values()))

    def _count_transfers(self) -> float:
        return float(self._transfers_fn()) if self._transfers_fn is not None else 0.0

    # ------------------------------------------------------------------ TLS

    def tls_handshake(self, kind: str, version: str, cipher: str, seconds: float) -> None:
        """A handshake completed on the ``control`` or ``data`` channel with this version and cipher."""
        channel = _pick(kind, TLS_CHANNELS, "other")
        self._child(self._handshakes, channel, _pick(version, TLS_VERSIONS, "other"), _free(cipher)).inc()
        self._child(self._handshake_seconds, channel).observe(max(0.0, seconds))

    def tls_handshake_failed(self, kind: str) -> None:
        self._handshake_failures.labels(_pick(kind, TLS_CHANNELS, "other")).inc()

    def data_reuse(self, verdict: str | ReuseVerdict) -> None:
        """The reuse verdict of a PROT P data connection: a ``ReuseVerdict`` or its lower-case name."""
        name = verdict.name.lower() if isinstance(verdict, ReuseVerdict) else verdict.lower()
        self._resumptions.labels(_pick(name, REUSE_VERDICTS, "unknown")).inc()

    # ------------------------------------------------------------------ transfers, replies, commands

    def transfer(
        self, kind: str, result: str, *, bytes_in: int, bytes_out: int, prot: str, seconds: float
    ) -> None:
        """A transfer ended: ``kind`` is the command (RETR, STOR, LIST...), ``result`` ok/failed/aborted."""
        kind = _pick(kind.upper(), TRANSFER_KINDS, "OTHER")
        self._transfers.labels(
            kind, _pick(result, TRANSFER_RESULTS, "other"), _pick(prot.upper(), PROT_LEVELS, "other")
        ).inc()
        if bytes_in > 0:
            self._received.labels(kind).inc(bytes_in)
        if bytes_out > 0:
            self._sent.labels(kind).inc(bytes_out)
        self._transfer_seconds.labels(kind).observe(max(0.0, seconds))

    def reply(self, code: int) -> None:
        """A reply went out (each one, preliminary 1xx replies included)."""
        child = self._reply_children.get(code)
        if child is None:
            if not 100 <= code <= 599:
                self._child(self._replies, "other").inc()
                return
            child = self._reply_children[code] = self._child(self._replies, str(code))
        child.inc()

    def command(self, verb: str, seconds: float) -> None:
        """A command got its final reply ``seconds`` after it arrived."""
        child = self._command_children.get(verb)
        if child is None:
            child = self._child(self._command_seconds, _pick(verb.upper(), KNOWN_VERBS, "OTHER"))
            if verb in KNOWN_VERBS:  # a closed set: random verbs from clients are not kept
                self._command_children[verb] = child
        child.observe(max(0.0, seconds))

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label set (the same child every time)."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child
