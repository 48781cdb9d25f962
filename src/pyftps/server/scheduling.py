"""CPU priority of the transfer threads, so that the event loop answers every session's commands first.

The loop needs little CPU (about 5 % of a core beside four full-speed PROT P downloads) but needs it
at once; transfer threads want every cycle they can get. On 2 busy cores a NOOP waited for a CPU,
not for the GIL (py-spy --gil: transfer threads hold it in under 4 % of the samples).

Measured with ``bench/run.py --quick --only latency`` (4 ftplib PROT P downloads niced +10, a NOOP
every 10 ms on another session, 5 s) on 2 shared cores, Linux 6.18 (EEVDF). Each cell: medians of
6-8 rounds, the variant against nice +5 (the previous policy) in the same run, servers alternating;
p99 of the NOOP round trip in ms, and the four downloads' MB/s. vsftpd ran in the same runs.

=========================================  =======================  ===================  ==========
transfer threads                           p99 ms (nice +5)         MB/s (nice +5)       vsftpd p99
=========================================  =======================  ===================  ==========
SCHED_IDLE, final code, 8 rounds           8.8 (14.0)               558 (585)            7.0
SCHED_IDLE, final code, 3 loaded runs      13.3-22.4 (18.6-35.8)    217-412 (284-423)    9.7-15.7
SCHED_IDLE, three earlier runs             5.7-11.4 (13.9-20.1)     501-739 (371-713)    5.4-10.2
SCHED_IDLE, two earlier loaded runs        16.5, 17.5 (17.4, 15.3)  354, 327 (449, 483)  8.9, 8.5
SCHED_IDLE, 2 CPU hogs in another session  20.8 (37.5)              173 (234)            15.5
nice +10                                   14.2 (14.2)              606 (538)            6.4
nice +19, two runs                         13.2, 14.1 (17.4, 20.1)  517, 458 (449, 371)  8.9, 10.2
SCHED_BATCH, nice +5                       14.2 (14.2)              476 (538)            6.4
nice 0 (equal priority), two runs          19.9, 28.8 (13.9, 18.0)  763, 477 (713, 407)  5.4, 15.0
loop thread slice 0.1/0.3/0.7 ms, nice +5  17.3-20.3 (14.2-17.4)    388-553 (449-538)    6.4-8.9
nice +5 and a 20 ms slice, two runs        22.6, 15.0 (35.8, 18.6)  278, 535 (284, 423)  15.7, 9.7
=========================================  =======================  ===================  ==========

The loop thread's own wait for a CPU (``/proc/<tid>/schedstat``) per wake-up: 0.4-0.5 ms with
nice +5 transfers, 0.15-0.2 ms with SCHED_IDLE ones, 0.6-1.0 ms at equal priority.

SCHED_IDLE is the one policy that hands the CPU to the waking loop at once: EEVDF preempts an
idle-policy task for any normal one, whereas nice levels and SCHED_BATCH only change the share
and the running thread keeps its slice. A short EEVDF slice for the loop thread (``sched_setattr``
with ``sched_runtime``, allowed unprivileged since Linux 6.12) made nothing better, so it is not
used (a long slice for the transfer threads helped ``low`` somewhat, in two runs only). The cost:
idle transfers give way to every other program too (in a cgroup or autogroup the group's CPU share
also follows its threads' weights): in half the runs loaded from outside, downloads were 20-30 %
slower and the p99 gain shrank; ``--transfer-priority low`` keeps the previous policy for hosts
that share their CPUs with other heavy work.

SCHED_IDLE would also put the thread's disk I/O in the idle class, so the thread's I/O class is
pinned to best-effort first. Both policies need no privilege, and neither can be undone without one
(RLIMIT_NICE), so a pool thread keeps it for its life; the pool serves only data connections.
Elsewhere than Linux, priorities are per process, so nothing is done.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import logging
import os
import platform
import sys
import threading

log = logging.getLogger("pyftps.server")

LOW_NICE_STEP = 5  # "low": the previous policy, five nice levels below the loop
_applied = threading.local()

# ioprio_get(2) and ioprio_set(2): their numbers by machine (Python has no wrapper).
_IOPRIO_SYSCALLS = {"x86_64": (252, 251), "aarch64": (31, 30), "riscv64": (31, 30)}
_IOPRIO_WHO_PROCESS = 1  # given a thread id, acts on that thread alone
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_CLASS_BE = 2


class TransferPriority(enum.Enum):
    """The CPU priority a transfer thread gives itself (``--transfer-priority``)."""

    IDLE = "idle"  # SCHED_IDLE: runs when nothing at normal priority wants the CPU
    LOW = "low"  # nice +5: a smaller share, no immediate hand-over to the loop
    NORMAL = "normal"  # as the event loop


def lower_thread_priority(priority: TransferPriority = TransferPriority.IDLE) -> None:
    """Give the calling thread ``priority``, once per thread; a refusal leaves it as it is.

    SCHED_IDLE is used only once the thread's disk I/O class is pinned to best-effort (see
    :func:`_keep_best_effort_io`); if either is refused (a seccomp filter, say) the nice step is tried.
    """
    if priority is TransferPriority.NORMAL or sys.platform != "linux" or getattr(_applied, "done", False):
        return
    _applied.done = True
    tid = threading.get_native_id()
    if priority is TransferPriority.IDLE:
        try:
            _keep_best_effort_io(tid)
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError as error:
            log.debug("transfer thread %s: no SCHED_IDLE (%s); trying nice +%d", tid, error, LOW_NICE_STEP)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + LOW_NICE_STEP)
    except OSError as error:  # transfers still run, at normal priority
        log.debug("cannot lower the priority of transfer thread %s: %s", tid, error)


def _keep_best_effort_io(tid: int) -> None:
    """Pin the thread's disk I/O class to best-effort, the one it has now.

    A thread without an I/O class of its own takes it from its CPU policy, and SCHED_IDLE means the
    idle I/O class (``task_nice_ioclass`` in the kernel): with BFQ or mq-deadline a RETR's reads and
    a STOR's writes and fsync would wait behind every other program's disk I/O. A class set by the
    administrator (``ionice``) is kept. Raises OSError if the class cannot be pinned.
    """
    numbers = _IOPRIO_SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(errno.ENOSYS, f"no ioprio_set number known for {platform.machine()}")
    get, set_ = numbers
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.syscall(get, _IOPRIO_WHO_PROCESS, tid)
    if current < 0:
        raise OSError(ctypes.get_errno(), "ioprio_get")
    if current >> _IOPRIO_CLASS_SHIFT:
        return  # a class of its own: unaffected by the CPU policy
    level = (os.getpriority(os.PRIO_PROCESS, tid) + 20) // 5  # the level the kernel derives from nice
    if libc.syscall(set_, _IOPRIO_WHO_PROCESS, tid, (_IOPRIO_CLASS_BE << _IOPRIO_CLASS_SHIFT) | level):
        code = ctypes.get_errno()
        raise OSError(code, f"ioprio_set: {os.strerror(code)}")
