"""Transfer threads lower their own CPU priority, once, and only their own (server/worker.py)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from pyftps.server.worker import DATA_THREAD_NICE, lower_thread_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="nice is per thread only on Linux")


def test_a_transfer_thread_runs_a_few_nice_levels_lower_and_only_once() -> None:
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def worker() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        lower_thread_priority()
        lower_thread_priority()  # a pool thread runs many transfers: lowered once
        seen.extend((before, os.getpriority(os.PRIO_PROCESS, tid)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    before, after = seen
    assert after == min(19, before + DATA_THREAD_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # this thread untouched
