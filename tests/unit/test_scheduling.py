"""Transfer threads lower their own CPU priority, once, only their own, and run on if refused."""

from __future__ import annotations

import argparse
import ctypes
import errno
import functools
import os
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pyftps.server import scheduling
from pyftps.server.scheduling import LOW_NICE_STEP, TransferPriority, lower_thread_priority
from pyftps.settings import SettingsError, add_serve_arguments, build_config, resolve

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="policy and nice are per thread only on Linux"
)

Reading = tuple[int, int]  # (scheduling policy, nice) of a thread


def _read(tid: int) -> Reading:
    return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)


def _in_thread(body: Callable[[], None]) -> tuple[Reading, Reading]:
    """Run ``body`` in a new thread; the thread's (policy, nice) before and after."""
    seen: list[Reading] = []
    failures: list[BaseException] = []

    def run() -> None:
        tid = threading.get_native_id()
        seen.append(_read(tid))
        try:
            body()
        except BaseException as error:  # re-raised in the test's thread
            failures.append(error)
        seen.append(_read(tid))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]
    return seen[0], seen[1]


@linux_only
def test_the_default_policy_is_sched_idle_applied_once_to_the_calling_thread_only() -> None:
    own = _read(threading.get_native_id())

    def body() -> None:
        lower_thread_priority()
        lower_thread_priority(TransferPriority.LOW)  # a pool thread runs many transfers: set once

    before, after = _in_thread(body)
    assert before[0] == os.SCHED_OTHER
    assert after == (os.SCHED_IDLE, before[1])
    assert _read(threading.get_native_id()) == own


@linux_only
def test_low_is_a_few_nice_levels_down_and_normal_changes_nothing() -> None:
    before, after = _in_thread(lambda: lower_thread_priority(TransferPriority.LOW))
    assert after == (os.SCHED_OTHER, min(19, before[1] + LOW_NICE_STEP))
    before, after = _in_thread(lambda: lower_thread_priority(TransferPriority.NORMAL))
    assert after == before


def _refuse(*args: object) -> None:
    raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))


def _io_class(tid: int) -> tuple[int, int]:
    """The thread's own I/O priority (class, level); class 0: none, derived from the CPU policy."""
    get, _ = scheduling._IOPRIO_SYSCALLS[platform.machine()]
    value = ctypes.CDLL(None, use_errno=True).syscall(get, 1, tid)
    assert value >= 0
    return value >> 13, value & 0x1FFF


known_ioprio = pytest.mark.skipif(
    platform.machine() not in scheduling._IOPRIO_SYSCALLS, reason="ioprio numbers known for this machine only"
)


@linux_only
@known_ioprio
def test_an_idle_thread_keeps_best_effort_disk_io_and_an_administrators_class_is_kept() -> None:
    classes: list[tuple[int, int]] = []

    def plain() -> None:
        lower_thread_priority(TransferPriority.IDLE)
        classes.append(_io_class(threading.get_native_id()))

    def ioniced() -> None:  # as under `ionice -c3`: the idle I/O class, chosen on purpose
        tid = threading.get_native_id()
        _, set_ = scheduling._IOPRIO_SYSCALLS[platform.machine()]
        assert ctypes.CDLL(None, use_errno=True).syscall(set_, 1, tid, 3 << 13) == 0
        lower_thread_priority(TransferPriority.IDLE)
        classes.append(_io_class(tid))

    _in_thread(plain)
    _in_thread(ioniced)
    assert classes == [(2, 4), (3, 0)]  # best-effort at nice 0's level; the chosen class untouched


@linux_only
def test_without_a_pinned_io_class_there_is_no_sched_idle_but_the_nice_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduling, "_keep_best_effort_io", _refuse)
    before, after = _in_thread(lower_thread_priority)
    assert after == (os.SCHED_OTHER, min(19, before[1] + LOW_NICE_STEP))


@linux_only
def test_a_refused_sched_idle_falls_back_to_the_nice_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduling.os, "sched_setscheduler", _refuse)
    before, after = _in_thread(lower_thread_priority)
    assert after == (os.SCHED_OTHER, min(19, before[1] + LOW_NICE_STEP))


@linux_only
def test_when_everything_is_refused_the_thread_runs_on_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduling.os, "sched_setscheduler", _refuse)
    monkeypatch.setattr(scheduling.os, "setpriority", _refuse)
    for priority in TransferPriority:
        before, after = _in_thread(functools.partial(lower_thread_priority, priority))
        assert after == before


def test_elsewhere_than_linux_nothing_is_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduling.sys, "platform", "darwin")
    monkeypatch.setattr(scheduling.os, "sched_setscheduler", _refuse, raising=False)
    monkeypatch.setattr(scheduling.os, "setpriority", _refuse)
    _in_thread(lower_thread_priority)  # would raise through _refuse if it tried


def _config_priority(tmp_path: Path, *flags: str) -> TransferPriority:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--state-dir", str(tmp_path / "state"), *flags])
    config = build_config(
        resolve(args, {}), pick_port=lambda host, given, privileged, fallback: given or fallback
    )
    return config.transfer_priority


def test_the_option_defaults_to_idle_and_takes_low_and_normal(tmp_path: Path) -> None:
    assert _config_priority(tmp_path) is TransferPriority.IDLE
    assert _config_priority(tmp_path, "--transfer-priority", "low") is TransferPriority.LOW
    assert _config_priority(tmp_path, "--transfer-priority", "normal") is TransferPriority.NORMAL
    with pytest.raises(SettingsError, match="expected one of idle, low, normal"):
        _config_priority(tmp_path, "--transfer-priority", "realtime")
