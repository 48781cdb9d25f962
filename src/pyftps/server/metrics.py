"""Prometheus metrics of one server, kept in its own registry and fed by typed calls at each event."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable

import prometheus_client.metrics as _prometheus_metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

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

COMMAND_BOUNDS = (*COMMAND_BUCKETS, float("inf"))
_MAX_KEPT_CELLS = 64  # label sets whose cells are kept for reuse (open sets beyond it are looked up)

CountFunction = Callable[[], int]


def _pick(value: str, allowed: Iterable[str], fallback: str) -> str:
    return value if value in allowed else fallback


def _free(value: str, fallback: str = "unknown") -> str:
    """A label value from a small but open set (listener names, cipher suites): bounded in length."""
    return value[:MAX_LABEL] if value else fallback


def _use_created() -> bool:
    # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES, disable_created_metrics()).
    return bool(getattr(_prometheus_metrics, "_use_created", True))


class _Family:
    """A labelled counter or histogram kept as plain numbers, exported as ``prometheus_client`` would.

    ``prometheus_client`` takes two locks and ~10 Python calls per ``inc``/``observe``; the metrics
    updated several times per session live here instead: one dict lookup and a list update under
    the owner's lock. At scrape time :meth:`collect` writes the same names, labels, samples and
    order (``_total``/``_created``; ``_bucket``/``_count``/``_sum``/``_created``) as the library.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        *,
        lock: threading.Lock,
        buckets: tuple[float, ...] | None = None,
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.lock = lock
        self.kind = "counter" if buckets is None else "histogram"
        self.bounds = (*buckets, float("inf")) if buckets is not None else ()
        self._le = tuple(floatToGoString(bound) for bound in self.bounds)  # type: ignore[no-untyped-call]
        # label values -> [created, count] (counter) or [created, sum, count per bucket...] (histogram)
        self.cells: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def cell(self, *values: str) -> list[float]:
        """The numbers of one label set, created (at zero) on first use; update under ``lock``."""
        cell = self.cells.get(values)
        if cell is None:
            with self.lock:
                cell = self.cells.setdefault(values, [time.time(), 0.0, *(0.0 for _ in self.bounds)])
        return cell

    def observe(self, cell: list[float], amount: float) -> None:
        """A histogram observation (caller holds ``lock``): the sum, then the first bucket that fits."""
        cell[1] += amount
        cell[2 + bisect.bisect_left(self.bounds, amount)] += 1

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        created = _use_created()
        with self.lock:
            cells = [(values, list(cell)) for values, cell in self.cells.items()]
        for values, cell in cells:
            labels = dict(zip(self.labelnames, values, strict=True))
            if self.kind == "counter":
                metric.add_sample(self.name + "_total", labels, cell[1])
            else:
                total = 0.0
                for le, count in zip(self._le, cell[2:], strict=True):
                    total += count
                    metric.add_sample(self.name + "_bucket", {**labels, "le": le}, total)
                metric.add_sample(self.name + "_count", labels, total)
                if self.bounds[0] >= 0:
                    metric.add_sample(self.name + "_sum", labels, cell[1])
            if created:
                metric.add_sample(self.name + "_created", labels, cell[0])
        return [metric]


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
        # The two calls made for every reply find their numbers by reply code and by verb.
        self._reply_cells: dict[int, list[float]] = {}
        self._command_cells: dict[str, list[float]] = {}
        # And those of every session and handshake: by listener, and by (channel, version, cipher).
        self._cells: dict[tuple[int, str], tuple[str, list[float]]] = {}
        self._handshake_cells: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}
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
        self._sessions = _Family(
            r,
            "pyftps_sessions",
            "Control connections accepted (past the ban and limit checks).",
            ("listener",),
            lock=self._lock,
        )
        self._sessions_closed = _Family(
            r, "pyftps_sessions_closed", "Control connections that ended.", ("listener",), lock=self._lock
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
        self._logins = _Family(r, "pyftps_logins", "Login attempts by result.", ("result",), lock=self._lock)
        self._bans = Counter("pyftps_bans", "Addresses banned after repeated login failures.", registry=r)

    def _build_tls_metrics(self) -> None:
        r = self.registry
        self._handshakes = _Family(
            r,
            "pyftps_tls_handshakes",
            "Completed TLS handshakes by channel, protocol version and cipher.",
            ("channel", "version", "cipher"),
            lock=self._lock,
        )
        self._handshake_failures = Counter(
            "pyftps_tls_handshake_failures",
            "TLS handshakes that failed or timed out.",
            ["channel"],
            registry=r,
        )
        self._handshake_seconds = _Family(
            r,
            "pyftps_tls_handshake_seconds",
            "Duration of completed TLS handshakes.",
            ("channel",),
            lock=self._lock,
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
        self._replies = _Family(
            r, "pyftps_replies", "Replies sent by reply code.", ("code",), lock=self._lock
        )
        self._command_seconds = _Family(
            r,
            "pyftps_command_duration_seconds",
            "Time from a command's arrival to its final reply (unknown verbs count as OTHER).",
            ("command",),
            lock=self._lock,
            buckets=COMMAND_BUCKETS,
        )

    def _zero_known_series(self) -> None:
        """Export 0 for the small fixed label sets now, so rates and alerts see them before any event."""
        for result in ("ok", "failed"):
            self._logins.cell(result)
        for reason in REFUSAL_REASONS:
            self._refused.labels(reason)
        for channel in TLS_CHANNELS:
            self._handshake_failures.labels(channel)
        for verdict in REUSE_VERDICTS:
            self._resumptions.labels(verdict)

    # ------------------------------------------------------------------ sessions and logins

    def session_opened(self, listener: str) -> None:
        """A control connection was accepted on ``listener`` (``explicit`` or ``implicit``)."""
        listener, cell = self._listener_cell(self._sessions, listener)
        with self._lock:
            cell[1] += 1
            self._open[listener] = self._open.get(listener, 0) + 1

    def session_closed(self, listener: str) -> None:
        """A control connection counted by :meth:`session_opened` ended; call exactly once per session."""
        listener, cell = self._listener_cell(self._sessions_closed, listener)
        with self._lock:
            cell[1] += 1
            self._open[listener] = max(0, self._open.get(listener, 0) - 1)

    def _listener_cell(self, family: _Family, listener: str) -> tuple[str, list[float]]:
        """The listener's label value and its cell in ``family``, kept for the few listener names."""
        key = (id(family), listener)
        known = self._cells.get(key)
        if known is None:
            label = _free(listener)
            known = (label, family.cell(label))
            if len(self._cells) < _MAX_KEPT_CELLS:
                self._cells[key] = known
        return known

    def connection_refused(self, reason: str) -> None:
        """A connection was turned away before a session existed (``banned`` or ``limit``)."""
        self._refused.labels(_pick(reason, REFUSAL_REASONS, "other")).inc()

    def login(self, ok: bool) -> None:
        cell = self._logins.cell("ok" if ok else "failed")
        with self._lock:
            cell[1] += 1

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
        key = (kind, version, cipher)
        cells = self._handshake_cells.get(key)
        if cells is None:
            channel = _pick(kind, TLS_CHANNELS, "other")
            cells = (
                self._handshakes.cell(channel, _pick(version, TLS_VERSIONS, "other"), _free(cipher)),
                self._handshake_seconds.cell(channel),
            )
            if len(self._handshake_cells) < _MAX_KEPT_CELLS:  # versions x ciphers: a handful
                self._handshake_cells[key] = cells
        count, duration = cells
        with self._lock:
            count[1] += 1
            self._handshake_seconds.observe(duration, max(0.0, seconds))

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
        cell = self._reply_cells.get(code)
        if cell is None:
            if 100 <= code <= 599:  # a closed set: the cell is kept by code
                cell = self._reply_cells[code] = self._replies.cell(str(code))
            else:
                cell = self._replies.cell("other")
        with self._lock:
            cell[1] += 1

    def command(self, verb: str, seconds: float) -> None:
        """A command got its final reply ``seconds`` after it arrived."""
        cell = self._command_cells.get(verb) or self._command_cell(verb)
        seconds = max(0.0, seconds)
        with self._lock:  # _Family.observe, inlined: this runs once per command
            cell[1] += seconds
            cell[2 + bisect.bisect_left(COMMAND_BOUNDS, seconds)] += 1

    def command_replied(self, code: int, verb: str, seconds: float) -> None:
        """:meth:`reply` and :meth:`command` for a command's final reply, in one call."""
        reply = self._reply_cells.get(code)
        if reply is None:
            self.reply(code)  # makes the cell (or counts an odd code), once
        cell = self._command_cells.get(verb) or self._command_cell(verb)
        seconds = max(0.0, seconds)
        with self._lock:
            if reply is not None:
                reply[1] += 1
            cell[1] += seconds
            cell[2 + bisect.bisect_left(COMMAND_BOUNDS, seconds)] += 1

    def _command_cell(self, verb: str) -> list[float]:
        cell = self._command_seconds.cell(_pick(verb.upper(), KNOWN_VERBS, "OTHER"))
        if verb in KNOWN_VERBS:  # a closed set: random verbs from clients are not kept
            self._command_cells[verb] = cell
        return cell
