"""Unit tests for quotas on every kind of home (issue #6) and the S3 settings plumbing (issue #4).

``home_scanner`` sends ``s3://`` homes to the object-store scanner and directories to ``scan_tree``;
the server builds its tracker from ``--quota-rescan``; ``--s3-allow-backslash`` reaches the
storage factory. The object store itself is exercised in ``tests/s3/test_s3_quota.py``.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

import pytest

from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.config import ServerConfig
from pyftps.server.app import Server
from pyftps.server.quota import Quota, QuotaTracker, home_scanner
from pyftps.settings import SettingsError, add_serve_arguments, build_config, resolve
from pyftps.storage.base import InvalidName

MB = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBucket:
    """An object-store scanner over set figures, recording which homes it measured."""

    def __init__(self, nbytes: int = 0, files: int = 0) -> None:
        self.result = (nbytes, files)
        self.calls: list[str] = []

    def __call__(self, home: str) -> tuple[int, int]:
        self.calls.append(home)
        return self.result


def test_home_scanner_sends_s3_homes_to_the_object_store(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_bytes(b"x" * 10)
    bucket = FakeBucket(5 * MB, 3)
    scan = home_scanner(bucket)
    assert scan("s3://bucket/alice") == (5 * MB, 3)
    assert scan(str(tmp_path)) == (10, 1)
    assert bucket.calls == ["s3://bucket/alice"]


def test_home_scanner_without_an_object_store_refuses_s3_homes(tmp_path: Path) -> None:
    scan = home_scanner()
    assert scan(str(tmp_path)) == (0, 0)
    with pytest.raises(ValueError, match="no object store"):
        scan("s3://bucket/alice")


def test_s3_home_is_tracked_like_a_directory() -> None:
    """Reservations, 552, deletions and periodic rescans: the same tracker for an s3:// home."""
    bucket, clock = FakeBucket(6 * MB, 2), FakeClock()
    tracker = QuotaTracker(home_scanner(bucket), rescan_after=300.0, clock=clock)
    tracker.register("alice", "s3://bucket/alice", Quota(10 * MB, 3))
    upload = tracker.begin_upload("alice")  # the first check scans the prefix
    assert upload is not None and bucket.calls == ["s3://bucket/alice"]
    assert upload.grow(3 * MB)
    assert not upload.grow(2 * MB)  # 6 + 3 + 2 > 10: 552
    upload.release()
    assert tracker.begin_upload("alice") is not None  # the third file
    assert tracker.begin_upload("alice") is None  # a fourth: beyond quota_files
    tracker.release("alice", files=1)
    tracker.deleted("alice", 4 * MB)  # DELE through the server frees room at once
    assert tracker.usage("alice") == (2 * MB, 1)
    bucket.result = (9 * MB, 2)  # another node uploaded meanwhile
    clock.now = 299.0
    assert tracker.usage("alice") == (2 * MB, 1)
    clock.now = 300.0
    assert tracker.usage("alice") == (9 * MB, 2)
    assert not tracker.reserve("alice", 2 * MB)
    assert len(bucket.calls) == 2


class GatedScan:
    """A scanner whose rescans block until the test opens the gate (the first scan does not)."""

    def __init__(self) -> None:
        self.results = [(1 * MB, 1), (6 * MB, 3)]
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.error: Exception | None = None

    def __call__(self, home: str) -> tuple[int, int]:
        self.calls += 1
        if self.calls > 1:
            self.entered.set()
            self.gate.wait(10)  # if the caller itself scanned, the test fails instead of hanging
            if self.error is not None:
                raise self.error
        return self.results[min(self.calls, 2) - 1]


def test_background_rescan_does_not_stall_the_check_that_starts_it() -> None:
    scan, clock = GatedScan(), FakeClock()
    tracker = QuotaTracker(scan, rescan_after=60.0, clock=clock, background_rescans=True)
    tracker.register("alice", "s3://bucket/alice", Quota(10 * MB))
    assert tracker.usage("alice") == (1 * MB, 1)  # the first scan is synchronous: figures needed
    clock.now = 60.0
    assert tracker.usage("alice") == (1 * MB, 1)  # due: started in a thread, previous figures meanwhile
    assert scan.entered.wait(10)
    upload = tracker.begin_upload("alice")  # checks during the rescan start no second one
    assert upload is not None and upload.grow(2 * MB)
    upload.commit()  # committed while the rescan runs: added to its result
    scan.gate.set()
    assert tracker.wait_scanned("alice", timeout=10)
    assert tracker.usage("alice") == (8 * MB, 4)
    assert scan.calls == 2


def test_failed_background_rescan_keeps_the_figures(caplog: pytest.LogCaptureFixture) -> None:
    scan, clock = GatedScan(), FakeClock()
    tracker = QuotaTracker(scan, rescan_after=60.0, clock=clock, background_rescans=True)
    tracker.register("alice", "s3://bucket/alice", Quota(10 * MB))
    tracker.usage("alice")
    scan.error = OSError("store unreachable")
    scan.gate.set()
    clock.now = 60.0
    tracker.usage("alice")
    assert tracker.wait_scanned("alice", timeout=10)
    assert tracker.usage("alice") == (1 * MB, 1)  # not due again before another 60 s
    assert scan.calls == 2
    assert "rescanning s3://bucket/alice failed" in caplog.text


def test_failed_first_scan_leaves_the_usage_unknown() -> None:
    calls: list[str] = []

    def flaky(home: str) -> tuple[int, int]:
        calls.append(home)
        if len(calls) == 1:
            raise OSError("store unreachable")
        return (MB, 1)

    tracker = QuotaTracker(flaky, background_rescans=True)
    tracker.register("alice", "s3://bucket/alice", Quota(10 * MB))
    with pytest.raises(OSError, match="unreachable"):
        tracker.begin_upload("alice")  # 451 for this upload, nothing enforced on invented figures
    assert tracker.usage("alice") == (MB, 1)  # scanned again, synchronously, at the next check
    assert len(calls) == 2


def _server(config: ServerConfig) -> Server:
    return Server(
        config, authenticator=StaticAuthenticator.from_plain({}, hasher=cheap_hasher()), ssl_context=None
    )


def test_the_server_tracker_rescans_at_the_configured_interval(tmp_path: Path) -> None:
    config = ServerConfig(root=tmp_path, state_dir=tmp_path, quota_rescan=42.0)
    assert _server(config).context.quotas.rescan_after == 42.0
    assert _server(ServerConfig(root=tmp_path, state_dir=tmp_path)).context.quotas.rescan_after == 300.0


def _config(argv: list[str], tmp_path: Path, environ: dict[str, str] | None = None) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--state-dir", str(tmp_path), *argv])
    values = resolve(args, environ or {})
    return build_config(values, pick_port=lambda host, given, privileged, fallback: given or fallback)


def test_settings_defaults(tmp_path: Path) -> None:
    config = _config([], tmp_path)
    assert config.s3_allow_backslash is True
    assert config.quota_rescan == 300.0


@pytest.mark.parametrize(
    ("argv", "environ", "toml"),
    [
        (["--s3-allow-backslash", "false", "--quota-rescan", "60"], {}, ""),
        ([], {"PYFTPS_STORAGE_S3_ALLOW_BACKSLASH": "no", "PYFTPS_LIMITS_QUOTA_RESCAN": "60"}, ""),
        ([], {}, "[storage]\ns3_allow_backslash = false\n[limits]\nquota_rescan = 60\n"),
    ],
    ids=["flag", "env", "toml"],
)
def test_settings_from_every_source(
    argv: list[str], environ: dict[str, str], toml: str, tmp_path: Path
) -> None:
    if toml:
        (tmp_path / "pyftps.toml").write_text(toml)
        argv = ["--config", str(tmp_path / "pyftps.toml")]
    config = _config(argv, tmp_path, environ)
    assert config.s3_allow_backslash is False
    assert config.quota_rescan == 60.0


def test_settings_zero_rescan_means_never_and_bad_values_are_named(tmp_path: Path) -> None:
    assert _config(["--quota-rescan", "0"], tmp_path).quota_rescan is None
    with pytest.raises(SettingsError, match="--s3-allow-backslash: expected true or false"):
        _config(["--s3-allow-backslash", "maybe"], tmp_path)
    with pytest.raises(SettingsError, match="PYFTPS_LIMITS_QUOTA_RESCAN"):
        _config([], tmp_path, {"PYFTPS_LIMITS_QUOTA_RESCAN": "-1"})


def test_factory_passes_allow_backslash_to_s3_storage() -> None:
    pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")
    from pyftps.storage.factory import StorageFactory

    # Refused before any request: the endpoint is never contacted.
    options: dict[str, Any] = {"s3_endpoint": "http://127.0.0.1:9", "s3_region": "us-east-1"}
    strict = StorageFactory(s3_allow_backslash=False, **options).for_home("s3://bucket/alice")
    with pytest.raises(InvalidName, match="not allowed"):
        strict.open_write("/back\\slash")
    with pytest.raises(InvalidName):
        strict.make_dir("/dir\\name")


def test_transfer_pool_size_is_a_setting(tmp_path: Path) -> None:
    assert _config([], tmp_path).max_transfer_threads == 256
    assert _config(["--transfer-threads", "32"], tmp_path).max_transfer_threads == 32
    assert _config([], tmp_path, {"PYFTPS_LIMITS_TRANSFER_THREADS": "16"}).max_transfer_threads == 16
    with pytest.raises(SettingsError, match="--transfer-threads"):
        _config(["--transfer-threads", "0"], tmp_path)
    config = ServerConfig(root=tmp_path, state_dir=tmp_path, max_transfer_threads=7)
    assert _server(config).context.transfer_executor._max_workers == 7
