"""Per-user storage quotas (bytes and files): uploads that would exceed one end with RFC 959's 552."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Quota", "QuotaTracker", "Scanner", "UploadReservation", "Usage", "home_scanner", "scan_tree"]

log = logging.getLogger("pyftps.server")


class Usage(NamedTuple):
    nbytes: int
    files: int


Scanner = Callable[[str], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits for one user; None means no limit on that dimension."""

    max_bytes: int | None = None
    max_files: int | None = None

    def __post_init__(self) -> None:
        if (self.max_bytes is not None and self.max_bytes < 0) or (
            self.max_files is not None and self.max_files < 0
        ):
            raise ValueError("quota limits must not be negative")

    @property
    def unlimited(self) -> bool:
        return self.max_bytes is None and self.max_files is None


def scan_tree(root: str, skip: Callable[[str], bool] | None = None) -> tuple[int, int]:
    """Apparent size and count of the regular files under ``root`` (the default ``scan``).

    Symbolic links are neither followed nor counted; entries that vanish or cannot be read are
    skipped. ``skip(name)`` drops files such as the local backend's in-progress upload temporaries,
    whose bytes are already counted as reservations. A missing ``root`` is (0, 0).
    """
    total, files = 0, 0
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(entry.path)
                    elif stat.S_ISREG(info.st_mode) and not (skip is not None and skip(entry.name)):
                        total += info.st_size
                        files += 1
        except OSError:
            continue
    return total, files


def home_scanner(object_store: Scanner | None = None) -> Scanner:
    """A scanner for every kind of home: ``s3://bucket/prefix`` goes to ``object_store``, the rest
    to :func:`scan_tree`, so the tracker treats both alike.

    ``object_store`` is typically ``storage.factory.StorageFactory.s3_usage``: the sizes and count
    of the objects under the prefix, from a paginated listing with the server's shared client.
    """

    def scan(home: str) -> tuple[int, int]:
        if not home.startswith("s3://"):
            return scan_tree(home)
        if object_store is None:
            raise ValueError(f"cannot measure {home}: no object store configured")
        return object_store(home)

    return scan


@dataclass(slots=True)
class _Account:
    home: str
    quota: Quota
    used_bytes: int = 0
    used_files: int = 0
    pending_bytes: int = 0  # reserved by uploads in progress
    pending_files: int = 0
    scanned_at: float | None = None  # None: usage unknown, the next check scans
    scanning: bool = False
    invalidated: bool = False  # rescan at the next check, whatever rescan_after says
    delta_bytes: int = 0  # changes committed while a scan runs, added to its result
    delta_files: int = 0


class QuotaTracker:
    """Usage per user, scanned lazily once and then kept current by the server's own changes.

    What is approximate, by design (it is a guard against abuse, not an accounting system):

    * changes made behind the server's back (another program, a shell) are only seen at the next
      scan, at most ``rescan_after`` seconds later (None: never; :meth:`invalidate` forces one;
      with ``background_rescans`` the check that starts a rescan still uses the previous figures);
    * on storage shared by several nodes (an S3 bucket) each node counts its own changes at once
      and the other nodes' at its next scan: quotas are enforced per node, with eventual accuracy
      (uploads through two nodes at once may together pass the limit until the next scan);
    * a change committed while a scan runs is added to the scan's result even if the scan saw it,
      and concurrent overwrites of one file each count their growth: both over-count until the
      next scan, which errs on the side of refusing;
    * an upload in progress is a reservation; a scan running meanwhile also finds the bytes
      already written (in place for REST/APPE, or a temporary file ``scan`` does not skip);
    * sizes are apparent sizes (sparse files, block rounding and directories are not counted);
    * an upload replacing a file is credited the old file's size, so disk use may briefly exceed
      the quota by that much while the new copy is written beside the old one.

    Users never :meth:`register`-ed have no quota: their reservations always succeed. All methods
    are thread-safe; a scan runs outside the lock and only once at a time per user.
    """

    def __init__(
        self,
        scan: Scanner = scan_tree,
        *,
        rescan_after: float | None = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        background_rescans: bool = False,
    ) -> None:
        self._scan = scan
        self._rescan_after = rescan_after
        # A rescan in a thread of its own: listing a large S3 prefix must not stall the transfer
        # whose check found it due (its bytes are reserved against the previous figures meanwhile).
        self._background = background_rescans
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._accounts: dict[str, _Account] = {}

    @property
    def rescan_after(self) -> float | None:
        """Seconds after which a user's usage is measured again at the next check (None: never)."""
        return self._rescan_after

    def register(self, user: str, home: str, quota: Quota) -> None:
        """Set (at each login) a user's home and quota; a changed home makes the usage unknown."""
        with self._cond:
            account = self._accounts.get(user)
            if account is None or account.home != home:
                self._accounts[user] = _Account(home, quota)
            else:
                account.quota = quota

    def tracks(self, user: str) -> bool:
        """Whether the user has a quota (uploads of other users need no accounting at all)."""
        with self._cond:
            return user in self._accounts

    def forget(self, user: str) -> None:
        with self._cond:
            self._accounts.pop(user, None)

    def invalidate(self, user: str) -> None:
        """Rescan at the next check (e.g. after files were changed outside the server)."""
        with self._cond:
            account = self._accounts.get(user)
            if account is not None:
                account.invalidated = True

    def wait_scanned(self, user: str, timeout: float | None = None) -> bool:
        """Wait until no scan of the user's home runs (for tests and tools); False on timeout."""

        def idle() -> bool:
            account = self._accounts.get(user)
            return account is None or not account.scanning

        with self._cond:
            return self._cond.wait_for(idle, timeout)

    def usage(self, user: str) -> Usage:
        """Bytes and files in the user's home, scanning it if not known yet (KeyError if unknown)."""
        with self._cond:
            account = self._current(user)
            if account is None:
                raise KeyError(user)
            return Usage(account.used_bytes, account.used_files)

    def reserve(self, user: str, nbytes: int) -> bool:
        """Reserve ``nbytes`` for an upload in progress; False if that would exceed the quota (552)."""
        with self._cond:
            account = self._accounts.get(user)
            if account is None or nbytes <= 0:
                return True
            limit = account.quota.max_bytes
            if limit is not None:
                account = self._current(user)
                if account is None:
                    return True
                if account.used_bytes + account.pending_bytes + nbytes > limit:
                    return False
            account.pending_bytes += nbytes
            return True

    def reserve_file(self, user: str) -> bool:
        """Reserve one new file; False if the user already has ``max_files`` (552)."""
        with self._cond:
            account = self._accounts.get(user)
            if account is None:
                return True
            limit = account.quota.max_files
            if limit is not None:
                account = self._current(user)
                if account is None:
                    return True
                if account.used_files + account.pending_files + 1 > limit:
                    return False
            account.pending_files += 1
            return True

    def release(self, user: str, nbytes: int = 0, files: int = 0) -> None:
        """Give back reservations of an upload that failed or was aborted."""
        with self._cond:
            account = self._accounts.get(user)
            if account is not None:
                account.pending_bytes = max(0, account.pending_bytes - nbytes)
                account.pending_files = max(0, account.pending_files - files)

    def commit_upload(
        self,
        user: str,
        old_size: int,
        new_size: int,
        created: bool,
        *,
        reserved: int = 0,
        reserved_files: int = 0,
    ) -> None:
        """An upload is in place: its reservations become usage, atomically (no window to steal)."""
        with self._cond:
            account = self._accounts.get(user)
            if account is None:
                return
            account.pending_bytes = max(0, account.pending_bytes - reserved)
            account.pending_files = max(0, account.pending_files - reserved_files)
            self._adjust(account, new_size - old_size, 1 if created else 0)

    def deleted(self, user: str, size: int, files: int = 1) -> None:
        """A file of ``size`` bytes was removed through the server (DELE, or an overwritten target)."""
        with self._cond:
            account = self._accounts.get(user)
            if account is not None:
                self._adjust(account, -size, -files)

    def begin_upload(
        self, user: str, *, old_size: int = 0, offset: int = 0, creates: bool = True, in_place: bool = False
    ) -> UploadReservation | None:
        """Start tracking one upload; None if it would create a file beyond ``max_files`` (552).

        ``old_size`` is the target's current size (0 if absent), ``offset`` where writing starts
        (REST offset, the old size for APPE, 0 for a plain STOR), ``creates`` whether it is new,
        ``in_place`` whether the backend writes the target itself (REST, APPE) rather than a
        temporary file. Call from the operation thread before the 150: the first check may scan.
        """
        with self._cond:
            account = self._accounts.get(user)
            if account is not None and account.quota.max_bytes is not None:
                self._current(user)  # scan now, not in the middle of the transfer
        if creates and not self.reserve_file(user):
            return None
        return UploadReservation(
            self, user, old_size=old_size, offset=offset, reserved_file=creates, in_place=in_place
        )

    # ------------------------------------------------------------------ internals (lock held)

    def _adjust(self, account: _Account, nbytes: int, files: int) -> None:
        if account.scanning:
            account.delta_bytes += nbytes
            account.delta_files += files
        if account.scanned_at is not None:  # before the first scan there is nothing to adjust
            account.used_bytes = max(0, account.used_bytes + nbytes)
            account.used_files = max(0, account.used_files + files)

    def _due(self, account: _Account) -> bool:
        if account.scanned_at is None or account.invalidated:
            return True
        return self._rescan_after is not None and self._clock() - account.scanned_at >= self._rescan_after

    def _current(self, user: str) -> _Account | None:
        """The account with known usage, scanning first if due; None if the user is not registered.

        During a first scan other callers wait; during a rescan they go on with the previous
        figures (stale for a moment beats stalling every upload of the user), and so does the
        caller that finds a rescan due when ``background_rescans`` is set.
        """
        while True:
            account = self._accounts.get(user)
            if account is None:
                return None
            if account.scanning:
                if account.scanned_at is not None:
                    return account
                self._cond.wait()
                continue
            if not self._due(account):
                return account
            if self._background and account.scanned_at is not None:
                self._rescan_in_background(account)
                return account
            self._run_scan(account)
            if self._accounts.get(user) is account:
                return account
            # The account was replaced (new home) or forgotten during the scan: look again.

    def _run_scan(self, account: _Account) -> None:
        """Scan ``account.home`` with the lock released, then install the result (lock held).

        A failed first scan raises (no figures to enforce); a failed rescan keeps the previous
        figures, logs, and is retried after ``rescan_after``, so a storage hiccup stops no upload.
        """
        first = account.scanned_at is None
        started = self._begin_scan(account)
        result: tuple[int, int] | None = None
        self._cond.release()
        try:
            result = self._scan(account.home)
        except Exception as error:
            if first:
                raise
            _rescan_failed(account.home, error)
        finally:
            self._cond.acquire()
            self._finish_scan(account, started, result)

    def _rescan_in_background(self, account: _Account) -> None:
        started = self._begin_scan(account)

        def rescan() -> None:
            result: tuple[int, int] | None = None
            try:
                result = self._scan(account.home)
            except Exception as error:
                _rescan_failed(account.home, error)
            finally:
                with self._cond:
                    self._finish_scan(account, started, result)

        try:
            threading.Thread(target=rescan, name="pyftps-quota-scan", daemon=True).start()
        except RuntimeError as error:  # no thread to be had: keep the figures, retry later
            _rescan_failed(account.home, error)
            self._finish_scan(account, started, None)

    def _begin_scan(self, account: _Account) -> float:
        account.scanning, account.invalidated = True, False
        account.delta_bytes = account.delta_files = 0
        return self._clock()

    def _finish_scan(self, account: _Account, started: float, result: tuple[int, int] | None) -> None:
        account.scanning = False
        self._cond.notify_all()
        if result is None and account.scanned_at is None:
            return  # a failed first scan: the usage stays unknown, the next check scans again
        account.scanned_at = started
        if result is not None:  # else the live figures stand (they already include the deltas)
            account.used_bytes = max(0, result[0] + account.delta_bytes)
            account.used_files = max(0, result[1] + account.delta_files)


def _rescan_failed(home: str, error: BaseException) -> None:
    log.warning("quota: rescanning %s failed; keeping the previous usage", home, exc_info=error)


class UploadReservation:
    """The quota side of one upload: grows its reservation as bytes arrive, then commits or releases.

    Only growth beyond the target's old size is reserved (``offset + written - old_size``), so
    replacing or resuming a file at the quota still works. Used by one upload's worker thread only
    (the tracker it calls is thread-safe). As a context manager it calls :meth:`abort` on exit
    unless committed, so every failure path settles the reservation.
    """

    def __init__(
        self,
        tracker: QuotaTracker,
        user: str,
        *,
        old_size: int,
        offset: int,
        reserved_file: bool,
        in_place: bool = False,
    ) -> None:
        self._tracker, self.user = tracker, user
        self.old_size, self.offset = old_size, offset
        self.written = 0
        self.reserved = 0
        self._reserved_file = reserved_file
        self.in_place = in_place
        self._done = False

    def grow(self, nbytes: int) -> bool:
        """Account for ``nbytes`` more received; False when the quota is exceeded (abort with 552)."""
        written = self.written + nbytes
        needed = max(0, self.offset + written - self.old_size)
        extra = needed - self.reserved
        if extra > 0 and not self._tracker.reserve(self.user, extra):
            return False
        self.written = written
        self.reserved = max(self.reserved, needed)
        return True

    def commit(self, new_size: int | None = None, *, created: bool | None = None) -> None:
        """The upload is in place; ``new_size`` defaults to ``offset + written``."""
        if self._done:
            return
        self._done = True
        size = self.offset + self.written if new_size is None else new_size
        self._tracker.commit_upload(
            self.user,
            self.old_size,
            size,
            self._reserved_file if created is None else created,
            reserved=self.reserved,
            reserved_files=1 if self._reserved_file else 0,
        )

    def abort(self) -> None:
        """The upload failed: an in-place write keeps what it wrote (commit it), a temporary is gone."""
        if self.in_place:
            self.commit()
        else:
            self.release()

    def release(self) -> None:
        """Give everything back: nothing of the upload remains on disk (idempotent)."""
        if self._done:
            return
        self._done = True
        self._tracker.release(self.user, self.reserved, 1 if self._reserved_file else 0)

    def __enter__(self) -> UploadReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
