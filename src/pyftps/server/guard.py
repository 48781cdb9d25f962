"""Per-address login bans and connection limits against parallel password guessing (RFC 2577 §5)."""

from __future__ import annotations

import functools
import ipaddress
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field

from pyftps.proto.codes import ReplyCode

__all__ = [
    "BANNED",
    "BanPolicy",
    "ConnectionCounter",
    "ConnectionLimits",
    "CounterStats",
    "GuardStats",
    "LoginGuard",
    "Refusal",
    "address_key",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# When evicting, skip at most this many actively banned entries (moving them to the young end) so a
# spray of single failures from many addresses cannot push out the bans it is trying to escape.
_EVICTION_SECOND_CHANCES = 16


@functools.lru_cache(maxsize=4096)  # pure; each connection asks several times (bans, limits, close)
def address_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The identity an address is counted under: the IPv4 address, or the IPv6 address's prefix.

    IPv4-mapped IPv6 (``::ffff:a.b.c.d``, seen on dual-stack sockets) is the IPv4 host it maps to.
    IPv6 is counted per /64 because one subscriber or site is normally given at least a /64
    (RFC 6177; SLAAC needs one), so an attacker can rotate through 2**64 source addresses at no cost:
    per-address counting would be trivially evaded and would let one host fill the tracking table.
    The price is that hosts sharing a /64 (some hosting providers) share one counter.
    Anything that does not parse (a UNIX socket peer, "?") is its own key, unchanged.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((address.packed, ipv6_prefix), strict=False))
        return str(ipaddress.IPv6Address(address.packed))  # drop a %scope: same host either way
    return str(address)


def _parse_host(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Allow-list entries as networks; a bad entry fails at start-up, not at the first attack."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as error:
            raise ValueError(f"allow_list: {entry!r} is not an IP address or network") from error
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection or login is refused: the reply to send (RFC 959 §4.2 code and text)."""

    code: int
    text: str

    def line(self) -> bytes:
        """The reply as one CRLF-terminated line, for writing before the session exists."""
        return f"{self.code} {self.text}\r\n".encode("ascii")


# RFC 959 allows 421 "Service not available, closing control connection" as the greeting, which
# is what a banned or over-limit client gets (then the connection is closed). The remaining ban
# time is deliberately not disclosed: it would tell a guesser exactly when to resume.
BANNED = Refusal(
    ReplyCode.SERVICE_NOT_AVAILABLE, "Too many failed logins from your address; try again later."
)
_TOO_MANY_TOTAL = Refusal(ReplyCode.SERVICE_NOT_AVAILABLE, "Too many connections; try again later.")
_TOO_MANY_FROM_IP = Refusal(
    ReplyCode.SERVICE_NOT_AVAILABLE, "Too many connections from your address; try again later."
)
# Per-user session limit: 530 "Not logged in" (as ProFTPD's MaxClientsPerUser) keeps the control
# connection open so the client may log in as someone else or retry once a session ends.
_TOO_MANY_SESSIONS = Refusal(
    ReplyCode.NOT_LOGGED_IN, "Too many sessions for this user; close one and try again."
)


# ---------------------------------------------------------------------------- login guard


@dataclass(frozen=True, slots=True)
class BanPolicy:
    """When repeated failed logins from one address lead to a ban (RFC 2577 §5)."""

    max_failures: int = 5  # failures within ``window`` that trigger a ban
    window: float = 600.0
    ban_time: float = 900.0  # first ban
    ban_multiplier: float = 2.0  # each repeat ban lasts this much longer than the previous one
    max_ban_time: float = 86400.0
    allow_list: tuple[str, ...] = ()  # addresses or CIDR networks never banned (loopback is not implied)
    enabled: bool = True
    forget_after: float = 86400.0  # a ban is no longer "repeat" history this long after it ended
    max_tracked: int = 100_000  # bound on addresses remembered (~350 bytes each)
    ipv6_prefix: int = 64  # IPv6 is counted per prefix of this length (see address_key)

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.max_tracked < 1:
            raise ValueError("max_failures and max_tracked must be at least 1")
        if self.window <= 0 or self.ban_time < 0 or self.forget_after < 0:
            raise ValueError("window must be positive; ban_time and forget_after not negative")
        if self.ban_multiplier < 1 or self.max_ban_time < self.ban_time:
            raise ValueError("ban_multiplier must be >= 1 and max_ban_time >= ban_time")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")
        _parse_networks(self.allow_list)


@dataclass(frozen=True, slots=True)
class GuardStats:
    """A point-in-time view for metrics."""

    tracked: int  # addresses (or IPv6 prefixes) with state
    active_bans: int
    bans_total: int  # bans triggered since start
    failures_total: int  # failures recorded since start (allow-listed addresses excluded)


@dataclass(slots=True)
class _Entry:
    # Times of recent failures, newest last, at most max_failures of them. An array of doubles is
    # ~120 bytes where a deque is ~760: it keeps the whole table near 35 MB at 100k entries.
    failures: array[float] = field(default_factory=lambda: array("d"))
    banned_until: float = float("-inf")
    strikes: int = 0  # bans so far: the next one lasts ban_time * multiplier ** strikes
    last_ban_end: float = float("-inf")


class LoginGuard:
    """Counts failed logins per address and bans addresses that fail too often; thread-safe.

    RFC 2577 §5 notes that an intruder defeats per-connection limits with parallel connections, and
    that cross-session detection must not become a denial-of-service weapon. Hence bans target the
    *source address* (never the account: locking an account would let anyone lock out its owner),
    the allow list exempts trusted networks, and memory is bounded so a flood cannot exhaust it.
    Times are caller-supplied monotonic seconds (``loop.time()`` or ``time.monotonic()``).
    """

    def __init__(self, policy: BanPolicy | None = None) -> None:
        self.policy = policy if policy is not None else BanPolicy()
        self._allowed = _parse_networks(self.policy.allow_list)
        self._lock = threading.Lock()
        # Least recently touched first: stale entries and eviction victims are found at the front.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bans_total = 0
        self._failures_total = 0

    def is_allowed(self, ip: str) -> bool:
        """True for addresses on the allow list (these are never counted nor banned)."""
        if not self._allowed:
            return False  # the usual case: no address to parse (twice per session)
        host = _parse_host(ip)
        return host is not None and any(host in network for network in self._allowed)

    def is_banned(self, ip: str, now: float) -> float | None:
        """Seconds of ban left for ``ip``, or None if it may try to log in."""
        if not self.policy.enabled or self.is_allowed(ip):
            return None
        key = address_key(ip, self.policy.ipv6_prefix)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.banned_until <= now:
                return None
            return entry.banned_until - now

    def record_failure(self, ip: str, now: float) -> float | None:
        """Count one failed login; returns the ban's duration if this failure triggered one.

        Failures while already banned are not counted: the caller should not have let the attempt
        through (connections opened before the ban must be checked with :meth:`is_banned` too).
        """
        policy = self.policy
        if not policy.enabled or self.is_allowed(ip):
            return None
        key = address_key(ip, policy.ipv6_prefix)
        with self._lock:
            self._failures_total += 1
            entry = self._touch(key, now)
            if entry.banned_until > now:
                return None
            cutoff = now - policy.window
            # Filter rather than trim the front: racing threads may append slightly out of order.
            failures = array("d", (t for t in entry.failures if t > cutoff))
            failures.append(now)
            entry.failures = failures[-policy.max_failures :]
            if len(entry.failures) < policy.max_failures:
                return None
            return self._ban(entry, now)

    def record_success(self, ip: str, now: float) -> None:
        """A successful login clears the failure count, but not the repeat-ban history."""
        if not self.policy.enabled:
            return
        key = address_key(ip, self.policy.ipv6_prefix)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                del entry.failures[:]
                if self._is_stale(entry, now):
                    del self._entries[key]

    def unban(self, ip: str) -> bool:
        """Operator action: forget everything about ``ip``'s address; True if it was known."""
        key = address_key(ip, self.policy.ipv6_prefix)
        with self._lock:
            return self._entries.pop(key, None) is not None

    def sweep(self, now: float) -> int:
        """Drop every stale entry (optional: stale entries also expire lazily); returns how many."""
        with self._lock:
            stale = [key for key, entry in self._entries.items() if self._is_stale(entry, now)]
            for key in stale:
                del self._entries[key]
            return len(stale)

    def snapshot(self, now: float) -> GuardStats:
        with self._lock:
            active = sum(1 for entry in self._entries.values() if entry.banned_until > now)
            return GuardStats(len(self._entries), active, self._bans_total, self._failures_total)

    # ------------------------------------------------------------------ internals (lock held)

    def _ban(self, entry: _Entry, now: float) -> float:
        policy = self.policy
        if now - entry.last_ban_end >= policy.forget_after:
            entry.strikes = 0  # the last ban is old news: start again from ban_time
        try:
            duration = policy.ban_time * policy.ban_multiplier**entry.strikes
        except OverflowError:
            duration = policy.max_ban_time
        duration = min(duration, policy.max_ban_time)
        entry.strikes += 1
        entry.banned_until = entry.last_ban_end = now + duration
        del entry.failures[:]
        self._bans_total += 1
        return duration

    def _touch(self, key: str, now: float) -> _Entry:
        """The entry for ``key``, created if needed and marked most recently used."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        self._expire_front(now)
        if len(self._entries) >= self.policy.max_tracked:
            self._evict(now)
        entry = _Entry()
        self._entries[key] = entry
        return entry

    def _expire_front(self, now: float) -> None:
        """Lazy expiry: drop stale entries from the least recently used end (amortised O(1))."""
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if not self._is_stale(entry, now):
                return
            del self._entries[key]

    def _evict(self, now: float) -> None:
        """Make room: drop the oldest entry, giving a few active bans a second chance first."""
        for _ in range(_EVICTION_SECOND_CHANCES):
            key, entry = next(iter(self._entries.items()))
            if entry.banned_until <= now:
                break
            self._entries.move_to_end(key)
        self._entries.popitem(last=False)

    def _is_stale(self, entry: _Entry, now: float) -> bool:
        """Nothing worth keeping: no ban, no failure in the window, no repeat history that matters."""
        policy = self.policy
        if entry.banned_until > now:
            return False
        if entry.failures and max(entry.failures) > now - policy.window:
            return False
        return entry.strikes == 0 or now - entry.last_ban_end >= policy.forget_after


# ---------------------------------------------------------------------------- connection limits


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Caps on concurrent control connections and logged-in sessions; None means no cap."""

    max_total: int | None = 1000
    max_per_ip: int | None = 20  # per address key: IPv6 per /64 (see address_key)
    max_per_user: int | None = 10  # logged-in sessions of one user
    ipv6_prefix: int = 64

    def __post_init__(self) -> None:
        for name in ("max_total", "max_per_ip", "max_per_user"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")


@dataclass(frozen=True, slots=True)
class CounterStats:
    total: int
    addresses: int  # distinct address keys with open connections
    users: int  # distinct users logged in
    refused_connections: int
    refused_logins: int


class ConnectionCounter:
    """Counts open connections per address and sessions per user; refuses what exceeds the limits.

    Only keys with a non-zero count are stored, so memory follows the number of open connections.
    """

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits if limits is not None else ConnectionLimits()
        self._lock = threading.Lock()
        self._total = 0
        self._per_ip: dict[str, int] = {}
        self._per_user: dict[str, int] = {}
        self._refused_connections = 0
        self._refused_logins = 0

    def try_open(self, ip: str) -> Refusal | None:
        """Count a new connection from ``ip``, or say why it is refused (421; nothing was counted)."""
        limits = self.limits
        key = address_key(ip, limits.ipv6_prefix)
        with self._lock:
            refusal = None
            if limits.max_total is not None and self._total >= limits.max_total:
                refusal = _TOO_MANY_TOTAL
            elif limits.max_per_ip is not None and self._per_ip.get(key, 0) >= limits.max_per_ip:
                refusal = _TOO_MANY_FROM_IP
            if refusal is not None:
                self._refused_connections += 1
                return refusal
            self._total += 1
            self._per_ip[key] = self._per_ip.get(key, 0) + 1
            return None

    def close(self, ip: str) -> None:
        """A connection counted by :meth:`try_open` ended; unknown addresses are ignored."""
        key = address_key(ip, self.limits.ipv6_prefix)
        with self._lock:
            if _decrement(self._per_ip, key):
                self._total = max(0, self._total - 1)

    def try_login(self, user: str, max_sessions: int | None = None) -> Refusal | None:
        """Count a logged-in session of ``user``, or refuse it (530; nothing was counted).

        ``max_sessions`` is the user's own limit (``UserLimits.max_sessions``); when given it
        replaces the server-wide per-user limit for this user, in either direction.
        """
        limit = self.limits.max_per_user if max_sessions is None else max_sessions
        with self._lock:
            if limit is not None and self._per_user.get(user, 0) >= limit:
                self._refused_logins += 1
                return _TOO_MANY_SESSIONS
            self._per_user[user] = self._per_user.get(user, 0) + 1
            return None

    def logout(self, user: str) -> None:
        """A session counted by :meth:`try_login` ended (REIN, new USER, close); unknown users ignored."""
        with self._lock:
            _decrement(self._per_user, user)

    def snapshot(self) -> CounterStats:
        with self._lock:
            return CounterStats(
                self._total,
                len(self._per_ip),
                len(self._per_user),
                self._refused_connections,
                self._refused_logins,
            )


def _decrement(counts: dict[str, int], key: str) -> bool:
    """Lower ``counts[key]``, deleting it at zero; False (and no change) for an unknown key."""
    count = counts.get(key)
    if count is None:
        return False
    if count <= 1:
        del counts[key]
    else:
        counts[key] = count - 1
    return True
