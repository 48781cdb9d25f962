"""``pyftps mirror``: make a local directory match a remote one (or the reverse), copying only files
whose size or modification time differ, with N parallel connections (RFC 3659 §3, §7; MFMT).

Modification times compare to the second (MDTM and MFMT carry whole seconds): after a download the
local file gets the remote time, after an upload MFMT gives the remote file the local time, so an
unchanged file is skipped next time. Symbolic links to directories, special files and remote entries
of unknown type are left alone. Downloads go to a hidden ``.NAME.pyftps-part`` file renamed into
place, so an interrupted run never leaves a truncated file under the real name.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from pyftps.client.connection import Client
from pyftps.client.credentials import Endpoint, connect
from pyftps.client.errors import FTPError, PermanentError, TransientError
from pyftps.client.progress import Display

__all__ = [
    "FileState",
    "LocalSink",
    "MirrorOptions",
    "Output",
    "Plan",
    "Tree",
    "close_quietly",
    "is_remote_dir",
    "make_plan",
    "make_remote_dirs",
    "mirror",
    "remote_join",
    "safe_name",
    "scan_local",
    "scan_remote",
]

PART_SUFFIX = ".pyftps-part"
EXIT_PARTIAL = 6


@dataclass(frozen=True)
class FileState:
    """What decides whether a file changed: its size and modification time (None: unknown)."""

    size: int | None
    mtime: float | None


@dataclass
class Tree:
    """A directory tree by relative POSIX path ("a/b.txt"); the root itself is not in ``dirs``."""

    files: dict[str, FileState] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


@dataclass
class Plan:
    """What a mirror run does, in this order: deletions, new directories, copies."""

    delete_files: list[str]
    delete_dirs: list[str]  # deepest first
    make_dirs: list[str]  # parents first
    copy: list[str]
    unchanged: int
    conflicts: list[str]  # a file where a directory must go, or the reverse (without --delete)


@dataclass(frozen=True)
class MirrorOptions:
    """The command line's choices for one mirror run."""

    reverse: bool  # True: upload local → remote
    local: Path
    remote: str
    parallel: int = 2
    delete: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class Output:
    """Where a run reports: a stdout line, a stderr note (unless quiet) and a one-line failure."""

    out: Callable[[str], None]
    note: Callable[[str], None]
    fail: Callable[[str, BaseException], None]


class LocalSink:
    """A local file opened at the first byte received, so a refused RETR leaves nothing behind; open
    errors stay OSError (the library reports them as usage errors when it opens the path itself)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path, self.offset = path, offset
        self._file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        """The open file, opening (and truncating at the offset) on first use."""
        if self._file is None:
            handle = open(self.path, "r+b" if self.offset else "wb")  # noqa: SIM115 - closed by close()
            if self.offset:
                handle.seek(self.offset)
                handle.truncate()
            self._file = handle
        return self._file

    def write(self, data: bytes) -> int:
        """Write ``data``, opening the file first if this is the first chunk."""
        return self._open().write(data)

    def finish(self) -> None:
        """Close after a complete transfer (creating the file when it was empty)."""
        self._open().close()

    def close(self) -> None:
        """Close whatever is open (after a failure: a file never opened stays absent)."""
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> BinaryIO:
        return cast(BinaryIO, self)

    def __exit__(self, *exc: object) -> None:
        self.close()


def remote_join(base: str, name: str) -> str:
    """``base/name`` for remote paths, where ``""`` and ``"."`` are the login directory."""
    if base in ("", "."):
        return name
    return f"{base.rstrip('/')}/{name}"


def safe_name(name: str) -> bool:
    """Whether a listed name is one plain path component (a hostile server cannot climb out)."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return False
    return not (os.sep in name or (os.altsep is not None and os.altsep in name))


def same_file(source: FileState, target: FileState) -> bool:
    """Equal sizes and, when both are known, equal modification times to the second."""
    if source.size != target.size:
        return False
    if source.mtime is None or target.mtime is None:
        return True
    return math.floor(source.mtime) == math.floor(target.mtime)


def _under(path: str, roots: set[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one of them."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in roots for i in range(1, len(parts) + 1))


def make_plan(source: Tree, target: Tree, delete: bool) -> Plan:
    """The steps that make ``target`` match ``source``; with ``delete`` extraneous entries go first."""
    if delete:
        delete_files = sorted(f for f in target.files if f not in source.files)
        delete_dirs = sorted((d for d in target.dirs if d not in source.dirs), reverse=True)
        blocked: set[str] = set()
        conflicts: list[str] = []
        in_the_way: set[str] = set()
    else:
        delete_files, delete_dirs = [], []
        blocked = {d for d in source.dirs if d in target.files}
        in_the_way = {f for f in source.files if f in target.dirs}
        conflicts = sorted(blocked | in_the_way)
    make_dirs = sorted(d for d in source.dirs if d not in target.dirs and not _under(d, blocked))
    copy: list[str] = []
    unchanged = 0
    for path, state in sorted(source.files.items()):
        if path in in_the_way or _under(path, blocked):
            continue
        old = target.files.get(path)
        if old is not None and same_file(state, old):
            unchanged += 1
        else:
            copy.append(path)
    return Plan(delete_files, delete_dirs, make_dirs, copy, unchanged, conflicts)


# ---------------------------------------------------------------------------------------- scanning


def _is_part(name: str) -> bool:
    """Whether a local name is a download in progress (ours, possibly left by a crash)."""
    return name.startswith(".") and name.endswith(PART_SUFFIX)


def scan_local(root: Path) -> Tree:
    """Regular files (symlinks to files followed) and real directories under ``root``."""
    tree = Tree()
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(root / rel if rel else root) as entries:
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    tree.dirs.add(child)
                    pending.append(child)
                elif entry.is_file() and not _is_part(entry.name):
                    info = entry.stat()
                    tree.files[child] = FileState(info.st_size, info.st_mtime)
    return tree


async def _remote_mtime(client: Client, path: str) -> float | None:
    """MDTM of ``path``, None when the server will not tell."""
    with contextlib.suppress(PermanentError, TransientError):
        return await client.mtime(path)
    return None


async def scan_remote(client: Client, root: str, note: Callable[[str], None]) -> Tree:
    """Files and directories under remote ``root``; MDTM fills in times a LIST listing lacks."""
    tree = Tree()
    pending = [""]
    while pending:
        rel = pending.pop()
        for entry in await client.list(remote_join(root, rel) if rel else root or "."):
            if not safe_name(entry.name):
                note(f"pyftps: skipping unsafe remote name {entry.name!r}")
                continue
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir:
                tree.dirs.add(child)
                pending.append(child)
            elif entry.is_dir is False:
                mtime = entry.mtime
                if "modify" not in entry.facts:  # a LIST line: its time is minutes or days at best
                    mtime = await _remote_mtime(client, remote_join(root, child))
                tree.files[child] = FileState(entry.size, mtime)
    return tree


async def make_remote_dirs(client: Client, path: str) -> None:
    """``mkdir -p`` on the server: create every missing component of ``path``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    prefix = "/" if path.startswith("/") else ""
    for index in range(len(parts)):
        current = prefix + "/".join(parts[: index + 1])
        try:
            await client.mkdir(current)
        except PermanentError as refused:
            if not await is_remote_dir(client, current):
                raise refused from None


async def is_remote_dir(client: Client, path: str) -> bool:
    """Whether ``path`` is an existing directory (CWD into it and back works everywhere)."""
    home = await client.pwd()
    try:
        await client.cwd(path)
    except (PermanentError, TransientError):
        return False
    await client.cwd(home)
    return True


async def close_quietly(client: Client) -> None:
    """QUIT, ignoring a server that is already gone."""
    with contextlib.suppress(FTPError, OSError):
        await client.quit()


# ---------------------------------------------------------------------------------------- running


class _Run:
    """One mirror run: the plan's steps against one server, reporting as it goes."""

    def __init__(self, endpoint: Endpoint, opts: MirrorOptions, display: Display, output: Output) -> None:
        self.endpoint, self.opts, self.display, self.output = endpoint, opts, display, output
        self.source = Tree()
        self.failures = 0
        self.copied = 0
        self._warned_mfmt = False

    def failed(self, rel: str, error: BaseException) -> None:
        """Count and report one entry that could not be handled."""
        self.failures += 1
        self.output.fail(rel, error)

    async def trees(self, client: Client) -> tuple[Tree, Tree]:
        """(source, target) as seen now; a missing target root is created (or taken as empty)."""
        opts = self.opts
        if not opts.reverse:
            remote = await scan_remote(client, opts.remote, self.output.note)
            if not opts.local.exists():
                if not opts.dry_run:
                    opts.local.mkdir(parents=True)
                return remote, Tree()
            return remote, scan_local(opts.local)
        if not opts.local.is_dir():
            kind = NotADirectoryError if opts.local.exists() else FileNotFoundError
            code = errno.ENOTDIR if opts.local.exists() else errno.ENOENT
            raise kind(code, os.strerror(code), str(opts.local))
        local = scan_local(opts.local)
        if opts.remote.strip("/") in ("", ".") or await is_remote_dir(client, opts.remote):
            return local, await scan_remote(client, opts.remote, self.output.note)
        if not opts.dry_run:
            await make_remote_dirs(client, opts.remote)
        return local, Tree()

    def summary(self, plan: Plan) -> str:
        """``N copied, N unchanged, N deleted, N failed`` (what would happen, with --dry-run)."""
        deleted = len(plan.delete_files) + len(plan.delete_dirs)
        if self.opts.dry_run:
            return f"{len(plan.copy)} to copy, {plan.unchanged} unchanged, {deleted} to delete"
        return f"{self.copied} copied, {plan.unchanged} unchanged, {deleted} deleted, {self.failures} failed"

    def show(self, plan: Plan) -> None:
        """The ``--dry-run`` listing: one action per line."""
        verb = "put" if self.opts.reverse else "get"
        lines = [f"delete {p}" for p in plan.delete_files] + [f"rmdir {p}/" for p in plan.delete_dirs]
        lines += [f"mkdir {p}/" for p in plan.make_dirs] + [f"{verb} {p}" for p in plan.copy]
        for line in lines:
            self.output.out(line)

    async def structure(self, client: Client, plan: Plan) -> None:
        """Deletions (files, then directories deepest first) and new directories (parents first)."""
        remote = self.opts.reverse
        for rel in plan.delete_files:
            await self._step(rel, client.delete(self._remote(rel)) if remote else self._local_unlink(rel))
        for rel in plan.delete_dirs:
            await self._step(rel, client.rmdir(self._remote(rel)) if remote else self._local_rmdir(rel))
        for rel in plan.make_dirs:
            await self._step(rel, client.mkdir(self._remote(rel)) if remote else self._local_mkdir(rel))

    async def _step(self, rel: str, action: Awaitable[object]) -> None:
        """Run one deletion or mkdir, reporting a failure instead of raising it."""
        try:
            await action
        except (FTPError, OSError) as error:
            self.failed(rel, error)

    def _remote(self, rel: str) -> str:
        """The remote path of a relative entry."""
        return remote_join(self.opts.remote, rel)

    def _local(self, rel: str) -> Path:
        """The local path of a relative entry."""
        return self.opts.local.joinpath(*rel.split("/"))

    async def _local_unlink(self, rel: str) -> None:
        """Delete a local file."""
        self._local(rel).unlink()

    async def _local_rmdir(self, rel: str) -> None:
        """Delete an empty local directory."""
        self._local(rel).rmdir()

    async def _local_mkdir(self, rel: str) -> None:
        """Create a local directory."""
        self._local(rel).mkdir(exist_ok=True)

    async def copy_one(self, client: Client, rel: str) -> None:
        """Transfer one file and carry its modification time over."""
        state = self.source.files[rel]
        bar = self.display.bar(rel, state.size)
        try:
            if self.opts.reverse:
                with self._local(rel).open("rb") as source:
                    await client.upload(source, self._remote(rel), progress=bar.update)
            else:
                await self._download(client, rel, bar.update)
        finally:
            bar.finish()
        if state.mtime is None:
            return
        if not self.opts.reverse:
            path = self._local(rel)
            os.utime(path, (time.time(), state.mtime))
            return
        try:
            await client.set_mtime(self._remote(rel), state.mtime)
        except (PermanentError, TransientError) as error:
            if not self._warned_mfmt:
                self._warned_mfmt = True
                self.output.note(f"pyftps: cannot set remote times ({error}); files may be sent again")

    async def _download(self, client: Client, rel: str, progress: Callable[[int], None]) -> None:
        """Download into a hidden part file, renamed over the real name once complete."""
        final = self._local(rel)
        part = final.with_name(f".{final.name}{PART_SUFFIX}")
        try:
            sink = LocalSink(part)
            with sink as stream:
                await client.download(self._remote(rel), stream, progress=progress)
                sink.finish()
            os.replace(part, final)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise

    async def copy_all(self, first: Client, jobs: list[str]) -> None:
        """Copy ``jobs`` with up to ``parallel`` workers; ``first`` serves worker 0, the others connect."""
        pending = collections.deque(jobs)
        workers = max(1, min(self.opts.parallel, len(jobs)))
        alive = [workers]

        async def worker(client: Client | None) -> None:
            """Take jobs until none are left, connecting (again) when needed."""
            own: Client | None = None
            try:
                while pending:
                    rel = pending.popleft()
                    if client is None or client.closed:
                        try:
                            client = own = await connect(self.endpoint)
                        except (FTPError, OSError) as error:
                            if alive[0] == 1:
                                raise
                            pending.appendleft(rel)  # another connection will take it
                            self.output.note(f"pyftps: one fewer parallel connection: {error}")
                            return
                    try:
                        await self.copy_one(client, rel)
                    except (FTPError, OSError) as error:
                        self.failed(rel, error)
                    else:
                        self.copied += 1
            finally:
                alive[0] -= 1
                if own is not None:
                    await close_quietly(own)

        try:
            async with asyncio.TaskGroup() as group:
                for index in range(workers):
                    group.create_task(worker(first if index == 0 else None))
        except BaseExceptionGroup as grouped:
            raise grouped.exceptions[0] from None


async def mirror(endpoint: Endpoint, opts: MirrorOptions, display: Display, output: Output) -> int:
    """Run one mirror; 0 when everything matched or was copied, 6 when some entries failed."""
    if opts.parallel < 1:
        raise ValueError("parallel must be at least 1")
    run = _Run(endpoint, opts, display, output)
    client = await connect(endpoint)
    try:
        run.source, target = await run.trees(client)
        plan = make_plan(run.source, target, opts.delete)
        for rel in plan.conflicts:
            run.failed(rel, IsADirectoryError(errno.EISDIR, "a file and a directory have this name"))
        if opts.dry_run:
            run.show(plan)
        else:
            await run.structure(client, plan)
            display.overall("mirror", sum(run.source.files[rel].size or 0 for rel in plan.copy))
            await run.copy_all(client, plan.copy)
        display.note(run.summary(plan))
    finally:
        await close_quietly(client)
    return EXIT_PARTIAL if run.failures else 0
