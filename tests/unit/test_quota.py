"""Unit tests for pyftps.server.quota: lazy usage scans, reservations and the 552 case, on a fake clock."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pyftps.server.quota import Quota, QuotaTracker, UploadReservation, Usage, scan_tree

MB = 1_000_000


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeScan:
    """A scanner returning set figures and counting its calls."""

    def __init__(self, nbytes: int = 0, files: int = 0) -> None:
        self.result = (nbytes, files)
        self.error: Exception | None = None
        self.calls: list[str] = []

    def __call__(self, home: str) -> tuple[int, int]:
        self.calls.append(home)
        if self.error is not None:
            raise self.error
        return self.result


def tracker_for(
    quota: Quota, nbytes: int = 0, files: int = 0, rescan_after: float | None = 3600.0
) -> tuple[QuotaTracker, FakeScan, FakeClock]:
    scan, clock = FakeScan(nbytes, files), FakeClock()
    tracker = QuotaTracker(scan, rescan_after=rescan_after, clock=clock)
    tracker.register("alice", "/home/alice", quota)
    return tracker, scan, clock


def test_usage_scans_lazily_once() -> None:
    tracker, scan, _ = tracker_for(Quota(10 * MB), nbytes=3 * MB, files=7)
    assert scan.calls == []
    assert tracker.usage("alice") == Usage(3 * MB, 7) == (3 * MB, 7)
    assert tracker.usage("alice") == (3 * MB, 7)
    assert scan.calls == ["/home/alice"]


def test_unknown_user() -> None:
    tracker, _, _ = tracker_for(Quota(1))
    with pytest.raises(KeyError):
        tracker.usage("mallory")
    assert tracker.reserve("mallory", 10**12)  # no quota registered: unlimited
    assert tracker.reserve_file("mallory")
    tracker.release("mallory", 5, 1)
    tracker.commit_upload("mallory", 0, 5, True)
    tracker.deleted("mallory", 5)


def test_reserve_commit_release_arithmetic() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=4 * MB, files=2)
    assert tracker.reserve("alice", 3 * MB)
    assert tracker.reserve("alice", 3 * MB)  # exactly at the limit: 4 + 3 + 3
    assert not tracker.reserve("alice", 1)  # the 552 case
    tracker.release("alice", 3 * MB)
    assert tracker.reserve("alice", 1)
    tracker.release("alice", 1)
    tracker.commit_upload("alice", 0, 3 * MB, True, reserved=3 * MB)
    assert tracker.usage("alice") == (7 * MB, 3)
    assert tracker.reserve("alice", 3 * MB)
    assert not tracker.reserve("alice", 1)


def test_deleted_frees_space() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=10 * MB, files=3)
    assert not tracker.reserve("alice", 1)
    tracker.deleted("alice", 4 * MB)
    assert tracker.usage("alice") == (6 * MB, 2)
    assert tracker.reserve("alice", 4 * MB)


def test_counters_never_go_negative() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=MB, files=1)
    tracker.deleted("alice", 5 * MB)  # before the first scan: ignored, the scan will see the truth
    assert tracker.usage("alice") == (MB, 1)
    tracker.deleted("alice", 5 * MB, files=3)
    tracker.release("alice", 5 * MB, 3)
    assert tracker.usage("alice") == (0, 0)
    assert tracker.reserve("alice", 10 * MB)


def test_files_limit() -> None:
    tracker, _, _ = tracker_for(Quota(max_files=3), files=2)
    upload = tracker.begin_upload("alice", creates=True)
    assert upload is not None
    assert tracker.begin_upload("alice", creates=True) is None  # 2 files + 1 reserved = 3: the 552 case
    overwrite = tracker.begin_upload("alice", old_size=10, creates=False)
    assert overwrite is not None  # replacing a file needs no new slot
    upload.commit(100)
    assert tracker.usage("alice") == (100, 3)
    assert tracker.begin_upload("alice", creates=True) is None
    tracker.deleted("alice", 100)
    assert tracker.begin_upload("alice", creates=True) is not None


def test_unlimited_quota_never_scans() -> None:
    tracker, scan, _ = tracker_for(Quota())
    assert tracker.reserve("alice", 10**15) and tracker.reserve_file("alice")
    upload = tracker.begin_upload("alice")
    assert upload is not None and upload.grow(10**15)
    assert scan.calls == []


# ---------------------------------------------------------------------------- upload reservations


def test_upload_grows_until_552() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=8 * MB, files=1)
    with tracker.begin_upload("alice") as upload:  # type: ignore[union-attr]
        assert upload.grow(MB) and upload.grow(MB)
        assert not upload.grow(1)  # over by one byte: abort with 552
        assert upload.written == 2 * MB and upload.reserved == 2 * MB
    assert tracker.usage("alice") == (8 * MB, 1)  # the temporary file is gone: nothing counted
    assert tracker.reserve("alice", 2 * MB)  # and the reservation came back


def test_overwrite_is_credited_the_old_size() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=10 * MB, files=5)
    upload = tracker.begin_upload("alice", old_size=3 * MB, creates=False)
    assert upload is not None
    assert upload.grow(3 * MB)  # same size as the file it replaces: allowed at the quota
    assert upload.reserved == 0
    assert not upload.grow(1)
    upload.commit()
    assert tracker.usage("alice") == (10 * MB, 5)


def test_overwrite_with_smaller_file_frees_space() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=10 * MB, files=5)
    upload = tracker.begin_upload("alice", old_size=3 * MB, creates=False)
    assert upload is not None and upload.grow(MB)
    upload.commit()
    assert tracker.usage("alice") == (8 * MB, 5)


def test_append_and_rest_reserve_only_growth() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=9 * MB, files=2)
    appe = tracker.begin_upload("alice", old_size=2 * MB, offset=2 * MB, creates=False, in_place=True)
    assert appe is not None and appe.grow(MB) and not appe.grow(1)
    appe.commit()
    assert tracker.usage("alice") == (10 * MB, 2)
    # REST 1 MB then STOR over a 4 MB file (the backend truncates at the offset): 3 MB may be rewritten.
    rest = tracker.begin_upload("alice", old_size=4 * MB, offset=MB, creates=False, in_place=True)
    assert rest is not None and rest.grow(3 * MB) and not rest.grow(1)
    rest.commit()
    assert tracker.usage("alice") == (10 * MB, 2)


def test_failed_in_place_upload_keeps_what_was_written() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), nbytes=MB, files=1)
    upload = tracker.begin_upload("alice", old_size=0, creates=True, in_place=True)  # APPE, new file
    assert upload is not None
    with upload:
        assert upload.grow(2 * MB)
    assert tracker.usage("alice") == (3 * MB, 2)  # the bytes are on disk under the name


def test_reservation_settles_once() -> None:
    tracker, _, _ = tracker_for(Quota(10 * MB), files=0)
    upload = tracker.begin_upload("alice")
    assert isinstance(upload, UploadReservation)
    assert upload.grow(MB)
    upload.commit()
    upload.release()  # already committed: no effect
    upload.commit()
    assert tracker.usage("alice") == (MB, 1)
    assert tracker.reserve("alice", 9 * MB) and not tracker.reserve("alice", 1)


# ---------------------------------------------------------------------------- rescans


def test_rescan_after_sees_outside_changes() -> None:
    tracker, scan, clock = tracker_for(Quota(10 * MB), nbytes=MB, files=1, rescan_after=60.0)
    assert tracker.usage("alice") == (MB, 1)
    scan.result = (5 * MB, 4)  # changed behind the server's back
    clock.now = 59.0
    assert tracker.usage("alice") == (MB, 1)  # approximate until the next scan
    clock.now = 60.0
    assert tracker.usage("alice") == (5 * MB, 4)
    assert len(scan.calls) == 2


def test_never_rescan_and_invalidate() -> None:
    tracker, scan, clock = tracker_for(Quota(10 * MB), nbytes=MB, files=1, rescan_after=None)
    tracker.usage("alice")
    scan.result = (2 * MB, 2)
    clock.now = 1e9
    assert tracker.usage("alice") == (MB, 1)
    tracker.invalidate("alice")
    assert tracker.usage("alice") == (2 * MB, 2)


def test_pending_reservations_survive_a_rescan() -> None:
    tracker, _, clock = tracker_for(Quota(10 * MB), nbytes=MB, rescan_after=60.0)
    assert tracker.reserve("alice", 8 * MB)
    clock.now = 100.0
    assert not tracker.reserve("alice", 2 * MB)  # rescanned: 1 used + 8 reserved + 2 > 10
    assert tracker.reserve("alice", MB)


def test_register_new_home_resets_usage_and_keeps_quota_change() -> None:
    tracker, scan, _ = tracker_for(Quota(10 * MB), nbytes=MB)
    tracker.usage("alice")
    tracker.register("alice", "/home/alice", Quota(MB))  # same home: only the quota changes
    assert not tracker.reserve("alice", 1)
    tracker.register("alice", "/srv/alice", Quota(10 * MB))
    tracker.usage("alice")
    assert scan.calls == ["/home/alice", "/srv/alice"]
    tracker.forget("alice")
    with pytest.raises(KeyError):
        tracker.usage("alice")


def test_scan_failure_propagates_and_is_retried() -> None:
    tracker, scan, _ = tracker_for(Quota(10 * MB), nbytes=MB, files=1)
    scan.error = OSError("storage offline")
    with pytest.raises(OSError):
        tracker.reserve("alice", 1)  # no figures to enforce yet: the caller answers 451
    scan.error = None
    assert tracker.usage("alice") == (MB, 1)


def test_failed_rescan_keeps_previous_figures() -> None:
    tracker, scan, clock = tracker_for(Quota(10 * MB), nbytes=MB, files=1, rescan_after=60.0)
    assert tracker.usage("alice") == (MB, 1)
    tracker.commit_upload("alice", 0, MB, True)
    scan.error = OSError("storage offline")
    clock.now = 60.0
    assert tracker.usage("alice") == (2 * MB, 2)  # no exception, live figures kept
    scan.error = None
    clock.now = 119.0
    assert tracker.usage("alice") == (2 * MB, 2)  # retried only after rescan_after
    clock.now = 120.0
    assert tracker.usage("alice") == (MB, 1)


# ---------------------------------------------------------------------------- threads


def test_concurrent_reservations_never_exceed_the_quota() -> None:
    tracker, _, _ = tracker_for(Quota(1000), nbytes=0)
    threads = 16
    barrier = threading.Barrier(threads)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(100):
            if tracker.reserve("alice", 1):
                with lock:
                    granted.append(1)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=10)
    assert len(granted) == 1000


def test_first_scan_runs_once_while_others_wait() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_scan(home: str) -> tuple[int, int]:
        calls.append(home)
        started.set()
        assert release.wait(5)
        return (MB, 1)

    tracker = QuotaTracker(slow_scan, clock=FakeClock())
    tracker.register("alice", "/home/alice", Quota(10 * MB))
    results: list[Usage] = []
    pool = [threading.Thread(target=lambda: results.append(tracker.usage("alice"))) for _ in range(8)]
    for thread in pool:
        thread.start()
    assert started.wait(5)
    tracker.register("bob", "/home/bob", Quota())  # the lock is free while alice's scan runs
    tracker.commit_upload("alice", 0, 500, True)  # committed during the scan: added to its result
    release.set()
    for thread in pool:
        thread.join(timeout=10)
    assert calls == ["/home/alice"]
    assert results == [Usage(MB + 500, 2)] * 8


# ---------------------------------------------------------------------------- scan_tree


def test_scan_tree(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "one").write_bytes(b"x" * 10)
    (tmp_path / "a" / "two").write_bytes(b"x" * 20)
    (tmp_path / "a" / "b" / "three").write_bytes(b"x" * 30)
    (tmp_path / "a" / ".pyftps-upload-ab12.tmp").write_bytes(b"x" * 1000)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * 5000)
    os.symlink(outside, tmp_path / "link-dir")
    os.symlink(outside / "big", tmp_path / "link-file")
    assert scan_tree(str(tmp_path), skip=lambda name: name.endswith(".tmp")) == (60, 3)
    assert scan_tree(str(tmp_path)) == (1060, 4)
    assert scan_tree(str(tmp_path / "missing")) == (0, 0)
