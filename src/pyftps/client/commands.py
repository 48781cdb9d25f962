"""The client subcommands of ``pyftps``: ls, get, put, mirror, rm, mkdir and mv (RFC 959, RFC 3659, RFC 4217).

URLs: ``ftps://`` is implicit FTPS (port 990), ``ftpes://`` explicit FTPS (AUTH TLS, port 21) and
``ftp://`` plain FTP, refused unless ``--plain`` is given. URL paths are relative to the login
directory; ``ftps://host//abs`` names ``/abs``. The user comes from ``--user``, the URL,
``$PYFTPS_USER`` or a netrc entry (else anonymous); the password from the URL, ``$PYFTPS_PASSWORD``,
the netrc file (``~/.netrc`` or ``--netrc-file``) or a prompt when stdin is a terminal. Passwords are
never echoed nor printed. Errors are one line on stderr (``pyftps: get /x: 550 No such file or
directory.``); ``--debug`` adds the traceback and the control-channel log.

Exit codes (scripts rely on them):

- 0: success
- 1: the server refused (a 5xx reply, e.g. 550 no such file, 530 login incorrect)
- 2: usage error (bad arguments or URL, missing password, plain FTP without ``--plain``)
- 3: connection or TLS failure, certificate problems included, timeouts, protocol violations
- 4: local I/O error (a local file missing or not writable)
- 5: transient failure (a 4xx reply: try again later)
- 6: partial failure (mirror: some files failed, the others were copied)
- 70: internal error (a bug; run again with ``--debug`` and report it)
- 130: interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import posixpath
import stat
import sys
import textwrap
import time
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from pyftps.client.connection import Client
from pyftps.client.credentials import (
    PASSWORD_ENV,
    CommandFailure,
    Endpoint,
    connect,
    endpoint_for,
    redact_url,
)
from pyftps.client.errors import FTPError, PermanentError, TransientError, UsageError
from pyftps.client.mirror import (
    LocalSink,
    MirrorOptions,
    Output,
    close_quietly,
    is_remote_dir,
    make_remote_dirs,
    mirror,
    remote_join,
    safe_name,
)
from pyftps.client.progress import Display, emit, entry_json, entry_line, wants_progress
from pyftps.client.url import parse_url
from pyftps.proto.listing import RemoteEntry

__all__ = ["COMMANDS", "EXIT_CODES_HELP", "add_client_commands", "exit_code_for", "run_client_command"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_CONNECTION, EXIT_LOCAL = 0, 1, 2, 3, 4
EXIT_TRANSIENT, EXIT_PARTIAL, EXIT_INTERNAL, EXIT_INTERRUPTED = 5, 6, 70, 130
log = logging.getLogger("pyftps.client")
COMMANDS = ("ls", "get", "put", "mirror", "rm", "mkdir", "mv")
EXIT_CODES_HELP = """\
URLs: ftps://[USER[:PASSWORD]@]HOST[:PORT]/PATH is implicit FTPS (port 990), ftpes:// explicit
FTPS (port 21), ftp:// plain FTP (only with --plain). Password: $PYFTPS_PASSWORD, ~/.netrc, or a prompt.

exit codes:
  0    success
  1    the server refused (5xx reply, e.g. 550 no such file, 530 login incorrect)
  2    usage error
  3    connection or TLS failure (certificate problems included)
  4    local I/O error
  5    transient failure (4xx reply: try again later)
  6    partial failure (mirror: some files failed)
  70   internal error (a bug: run with --debug and report it)
  130  interrupted
"""


# ---------------------------------------------------------------------------------------- parsers


def _positive_float(text: str) -> float:
    """A ``--timeout`` value: seconds, more than zero."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _parallel(text: str) -> int:
    """A ``--parallel`` value: 1 to 64 connections."""
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be 1 to 64")
    return value


def _common_options() -> argparse.ArgumentParser:
    """Options every client subcommand takes: login, TLS, connection and output."""
    common = argparse.ArgumentParser(add_help=False)
    login = common.add_argument_group("login and security")
    login.add_argument(
        "--user", metavar="NAME", help=f"log in as NAME (password: ${PASSWORD_ENV}, netrc, prompt)"
    )
    login.add_argument("--netrc-file", metavar="FILE", help="read credentials from FILE instead of ~/.netrc")
    login.add_argument("--cafile", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    login.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    login.add_argument("--fingerprint", metavar="SHA256", help="accept only this server certificate")
    login.add_argument("--auth-ssl", action="store_true", help="explicit FTPS with AUTH SSL (legacy servers)")
    login.add_argument("--plain", action="store_true", help="allow ftp:// URLs (no encryption at all)")
    conn = common.add_argument_group("connection and output")
    conn.add_argument("--active", action="store_true", help="active mode data connections (PORT/EPRT)")
    conn.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="wait for the server (default 30)",
    )
    conn.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    conn.add_argument("--debug", action="store_true", help="show tracebacks and the control-channel log")
    return common


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ls``, ``get``, ``put``, ``mirror``, ``rm``, ``mkdir`` and ``mv`` to ``sub``."""
    common = _common_options()

    def add(name: str, summary: str, details: str) -> argparse.ArgumentParser:
        """A subcommand parser with the common options and the exit codes in its help."""
        return sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(f"{summary}: {details}.", 100),
            parents=[common],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    ls = add("ls", "list a remote directory", "type (d, -, l), size, modification time (UTC), name")
    ls.add_argument("url", metavar="URL")
    shape = ls.add_mutually_exclusive_group()
    shape.add_argument("-l", "--long", action="store_true", help="add mode and permission columns")
    shape.add_argument("--json", action="store_true", help="one JSON array of entries")
    get = add("get", "download a file", "DEST is a file, a directory, or - for stdout")
    get.add_argument("url", metavar="URL")
    get.add_argument("dest", metavar="DEST", nargs="?")
    get.add_argument("--resume", action="store_true", help="continue a partial download (REST)")
    put = add("put", "upload files", "URL names the remote file, or a directory to upload into")
    put.add_argument("files", metavar="FILE", nargs="+")
    put.add_argument("url", metavar="URL")
    put.add_argument("--resume", action="store_true", help="continue a partial upload (REST)")
    mir = add(
        "mirror",
        "mirror a directory tree",
        "URL into DIR, or DIR onto URL with --reverse; only files whose size or time differ",
    )
    mir.add_argument("source", metavar="URL|DIR")
    mir.add_argument("target", metavar="DIR|URL")
    mir.add_argument("--reverse", action="store_true", help="upload: pyftps mirror --reverse DIR URL")
    mir.add_argument("--parallel", type=_parallel, default=2, metavar="N", help="connections (default 2)")
    mir.add_argument("--delete", action="store_true", help="remove files the source does not have")
    mir.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    rm = add("rm", "delete a remote file", "one file; -r deletes a directory tree")
    rm.add_argument("url", metavar="URL")
    rm.add_argument("-r", "--recursive", action="store_true", help="delete a directory and its contents")
    mkdir = add("mkdir", "create a remote directory", "-p creates missing parents too")
    mkdir.add_argument("url", metavar="URL")
    mkdir.add_argument("-p", "--parents", action="store_true", help="create parents; no error if it exists")
    mv = add(
        "mv", "rename a remote file or directory", "NEWPATH is relative to the login directory, or absolute"
    )
    mv.add_argument("url", metavar="URL")
    mv.add_argument("newpath", metavar="NEWPATH")


# ---------------------------------------------------------------------------------------- output


def _shown(path: str) -> str:
    """A remote path as the URL spells it (``x`` → ``/x``; ``/abs`` → ``//abs``)."""
    return "/" + path


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an exception that ended a command."""
    if isinstance(error, CommandFailure):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, PermanentError):
        return EXIT_REFUSED
    if isinstance(error, TransientError):
        return EXIT_TRANSIENT
    if isinstance(error, UsageError):
        return EXIT_USAGE
    if isinstance(error, FTPError):
        return EXIT_CONNECTION  # TLS, certificates, timeouts, closed connections, protocol violations
    if isinstance(error, OSError):
        return EXIT_LOCAL
    return EXIT_INTERNAL


class _Context:
    """One command's state: its arguments, progress display, secrets and what it is working on."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.display = Display(wants_progress(args.quiet))
        self.where = ""
        self.secrets: set[str] = set()
        env_password = os.environ.get(PASSWORD_ENV)
        if env_password:
            self.secrets.add(env_password)
        for value in vars(args).values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and "://" in item:
                    self._url_secrets(item)

    def _url_secrets(self, text: str) -> None:
        """Remember the password written in a URL argument, raw and percent-decoded."""
        with contextlib.suppress(ValueError):
            raw = urllib.parse.urlsplit(text).password
            if raw:
                self.secrets.update({raw, urllib.parse.unquote(raw)})

    def endpoint(self, raw_url: str) -> Endpoint:
        """The connection settings for ``raw_url``; its password joins the secrets."""
        endpoint = endpoint_for(self.args, raw_url)
        self.secrets.update(endpoint.secrets)
        log.debug("%s %s as %s", self.args.command, redact_url(raw_url), endpoint.user)
        self.where = _shown(endpoint.url.path)
        return endpoint

    def scrub(self, text: str) -> str:
        """``text`` with every known password replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def stderr(self, line: str) -> None:
        """A scrubbed line on stderr, above the progress bars when they are shown."""
        line = self.scrub(line).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        if self.display.enabled:
            self.display.note(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def note(self, line: str) -> None:
        """An informational line on stderr, unless ``--quiet``."""
        if not self.args.quiet:
            self.stderr(line)

    def failure(self, where: str, error: BaseException) -> None:
        """The one-line report of an error: ``pyftps: COMMAND WHERE: REASON``."""
        reason = _reason(error)
        if isinstance(error, OSError) and not isinstance(error, FTPError) and error.filename is not None:
            where = os.fsdecode(error.filename)
        self.stderr(f"pyftps: {self.args.command}{' ' if where else ''}{where}: {reason}")


def _reason(error: BaseException) -> str:
    """The part of the error line after the colon: the server's reply, or what went wrong here."""
    if isinstance(error, CommandFailure):
        return error.message
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, FTPError):
        return str(error) or type(error).__name__
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return f"internal error: {type(error).__name__}: {error} (run with --debug for details)"


@contextlib.asynccontextmanager
async def _session(endpoint: Endpoint) -> AsyncIterator[Client]:
    """A connected client, closed with QUIT at the end."""
    client = await connect(endpoint)
    try:
        yield client
    finally:
        await close_quietly(client)


# ---------------------------------------------------------------------------------------- ls


async def _listing(client: Client, path: str) -> list[RemoteEntry]:
    """The entries of directory ``path``, or the one entry of a file (MLSD refuses files)."""
    try:
        return await client.list(path or ".")
    except PermanentError as refused:
        if not path:
            raise
        try:
            entry = await client.stat(path)
        except (PermanentError, TransientError):
            raise refused from None
        if entry.is_dir:
            raise
        return [dataclasses.replace(entry, name=posixpath.basename(entry.name.rstrip("/")) or entry.name)]


async def _all_facts(client: Client) -> None:
    """Ask for every MLSx fact the server offers (``unix.mode`` is often off by default; RFC 3659 §7.9)."""
    offered = (await client.features()).get("MLST", "")
    facts = [fact.rstrip("*") for fact in offered.split(";") if fact.strip()]
    if any(not fact.endswith("*") for fact in offered.split(";") if fact.strip()):
        await client.quote("OPTS", "MLST " + "".join(f"{fact};" for fact in facts))


async def _ls(ctx: _Context) -> int:
    """``pyftps ls URL``: one entry per line, ``-l`` with mode and permissions, or ``--json``."""
    args = ctx.args
    endpoint = ctx.endpoint(args.url)
    async with _session(endpoint) as client:
        if args.long or args.json:
            await _all_facts(client)
        entries = sorted(await _listing(client, endpoint.url.path), key=lambda e: e.name)
    if args.json:
        emit(json.dumps([entry_json(e) for e in entries]))
    else:
        for entry in entries:
            emit(entry_line(entry, args.long))
    return EXIT_OK


# ---------------------------------------------------------------------------------------- get and put


def _base_name(path: str) -> str:
    """The last component of a remote path, refused when it names no file."""
    name = posixpath.basename(path.rstrip("/"))
    if not safe_name(name):
        raise CommandFailure(EXIT_USAGE, "the URL names no file (use pyftps mirror for a directory)")
    return name


def _local_target(dest: str | None, path: str) -> Path:
    """Where ``get`` writes: DEST, the remote name inside directory DEST, or in the working directory."""
    if dest is None:
        return Path(_base_name(path))
    target = Path(dest)
    into = target.is_dir() or dest.endswith(("/", os.sep))
    return target / _base_name(path) if into else target


async def _remote_entry(client: Client, path: str) -> RemoteEntry | None:
    """MLST (or SIZE and MDTM) facts of ``path``, None when the server will not tell."""
    try:
        return await client.stat(path)
    except (PermanentError, TransientError):
        return None


def _resume_offset(ctx: _Context, dest: Path, size: int | None) -> int | None:
    """Where a resumed download starts; None when the local file is already complete."""
    try:
        have = dest.stat().st_size
    except FileNotFoundError:
        return 0
    if size is None or have < size:
        return have
    if have == size:
        return None
    ctx.note(f"pyftps: {dest} is larger than the remote file; downloading it again")
    return 0


async def _get(ctx: _Context) -> int:
    """``pyftps get URL [DEST]``: download, resume with ``--resume``, keep the remote modification time."""
    args = ctx.args
    endpoint = ctx.endpoint(args.url)
    path = endpoint.url.path
    if args.dest == "-" and args.resume:
        raise CommandFailure(EXIT_USAGE, "--resume needs a file to resume, not stdout")
    dest = None if args.dest == "-" else _local_target(args.dest, path)
    async with _session(endpoint) as client:
        entry = await _remote_entry(client, path)
        if entry is not None and entry.is_dir:
            raise CommandFailure(EXIT_USAGE, "is a directory (use pyftps mirror)")
        size = entry.size if entry is not None else None
        if dest is None:
            sys.stdout.flush()
            bar = ctx.display.bar(posixpath.basename(path), size)
            await client.download(path, sys.stdout.buffer, progress=bar.update)
            sys.stdout.buffer.flush()
            return EXIT_OK
        offset = _resume_offset(ctx, dest, size) if args.resume else 0
        if offset is None:
            ctx.note(f"pyftps: {dest} is already complete")
        else:
            bar = ctx.display.bar(dest.name, size, offset)
            sink = LocalSink(dest, offset)
            with sink as stream:
                await client.download(path, stream, offset=offset, progress=bar.update)
                sink.finish()
    if entry is not None and entry.mtime is not None:
        os.utime(dest, (time.time(), entry.mtime))
    return EXIT_OK


def _check_source(ctx: _Context, file: Path) -> os.stat_result:
    """The ``stat`` of a file to upload, refusing directories."""
    ctx.where = str(file)
    info = file.stat()
    if stat.S_ISDIR(info.st_mode):
        raise CommandFailure(EXIT_USAGE, "is a directory (use pyftps mirror --reverse)")
    return info


async def _into_directory(client: Client, path: str, count: int) -> bool:
    """Whether ``put`` uploads into ``path`` as a directory rather than to it as a file name."""
    if count > 1 or path in ("", ".") or path.endswith("/"):
        return True
    entry = await _remote_entry(client, path)
    return entry is not None and entry.is_dir is True


async def _put_one(ctx: _Context, client: Client, file: Path, remote: str) -> None:
    """Upload one file (from the remote size with ``--resume``), then give it the local time (MFMT)."""
    info = _check_source(ctx, file)
    ctx.where = _shown(remote)
    offset = 0
    if ctx.args.resume:
        try:
            offset = await client.size(remote)
        except (PermanentError, TransientError):
            offset = 0
        if offset > info.st_size:
            ctx.note(f"pyftps: {_shown(remote)} is larger than {file}; uploading it again")
            offset = 0
    if ctx.args.resume and offset == info.st_size:
        ctx.note(f"pyftps: {_shown(remote)} is already complete")
    else:
        bar = ctx.display.bar(file.name, info.st_size, offset)
        with file.open("rb") as source:
            await client.upload(source, remote, offset=offset, progress=bar.update)
    with contextlib.suppress(PermanentError, TransientError):  # MFMT is optional: keep the upload
        await client.set_mtime(remote, info.st_mtime)


async def _put(ctx: _Context) -> int:
    """``pyftps put FILE... URL``: upload to a file name, or into a directory."""
    args = ctx.args
    files = [Path(name) for name in args.files]
    for file in files:
        _check_source(ctx, file)
    endpoint = ctx.endpoint(args.url)
    path = endpoint.url.path
    async with _session(endpoint) as client:
        into = await _into_directory(client, path, len(files))
        for file in files:
            await _put_one(ctx, client, file, remote_join(path, file.name) if into else path)
    return EXIT_OK


# ---------------------------------------------------------------------------------------- the rest


async def _mirror(ctx: _Context) -> int:
    """``pyftps mirror URL DIR`` and ``pyftps mirror --reverse DIR URL``."""
    args = ctx.args
    local, url = (args.source, args.target) if args.reverse else (args.target, args.source)
    if "://" in local or "://" not in url:
        raise CommandFailure(EXIT_USAGE, "usage: pyftps mirror URL DIR, or pyftps mirror --reverse DIR URL")
    endpoint = ctx.endpoint(url)
    opts = MirrorOptions(
        args.reverse, Path(local), endpoint.url.path, args.parallel, args.delete, args.dry_run
    )
    output = Output(out=emit, note=ctx.note, fail=ctx.failure)
    return await mirror(endpoint, opts, ctx.display, output)


async def _remove_tree(client: Client, path: str) -> None:
    """Delete a remote directory with everything in it, depth first."""
    for entry in await client.list(path):
        if not safe_name(entry.name):
            continue
        child = remote_join(path, entry.name)
        if entry.is_dir:
            await _remove_tree(client, child)
        else:
            await client.delete(child)
    await client.rmdir(path)


async def _rm(ctx: _Context) -> int:
    """``pyftps rm URL``: delete one file, or a tree with ``-r``."""
    args = ctx.args
    endpoint = ctx.endpoint(args.url)
    path = endpoint.url.path
    if path.strip("/") in ("", "."):
        raise CommandFailure(EXIT_USAGE, "refusing to remove the login or root directory")
    async with _session(endpoint) as client:
        if args.recursive and await is_remote_dir(client, path):
            await _remove_tree(client, path)
        else:
            await client.delete(path)
    return EXIT_OK


async def _mkdir(ctx: _Context) -> int:
    """``pyftps mkdir URL``: create a directory, with its parents given ``-p``."""
    args = ctx.args
    endpoint = ctx.endpoint(args.url)
    path = endpoint.url.path
    if path.strip("/") in ("", "."):
        raise CommandFailure(EXIT_USAGE, "the URL names no directory to create")
    async with _session(endpoint) as client:
        if args.parents:
            await make_remote_dirs(client, path)
        else:
            await client.mkdir(path)
    return EXIT_OK


def _new_path(endpoint: Endpoint, text: str) -> str:
    """NEWPATH as given, or the path of a URL naming the same server."""
    if "://" not in text:
        return text
    try:
        other = parse_url(text, allow_plain=True)
    except ValueError as error:
        raise CommandFailure(EXIT_USAGE, f"NEWPATH: {error}") from None
    if (other.host, other.port) != (endpoint.url.host, endpoint.url.port):
        raise CommandFailure(EXIT_USAGE, "NEWPATH must be on the same server (FTP renames cannot move files)")
    return other.path


async def _mv(ctx: _Context) -> int:
    """``pyftps mv URL NEWPATH``: rename on the server (RNFR/RNTO)."""
    args = ctx.args
    endpoint = ctx.endpoint(args.url)
    target = _new_path(endpoint, args.newpath)
    if not target or not endpoint.url.path:
        raise CommandFailure(EXIT_USAGE, "both the URL and NEWPATH must name a file or directory")
    async with _session(endpoint) as client:
        await client.rename(endpoint.url.path, target)
    return EXIT_OK


_HANDLERS: dict[str, Callable[[_Context], Coroutine[Any, Any, int]]] = {
    "ls": _ls,
    "get": _get,
    "put": _put,
    "mirror": _mirror,
    "rm": _rm,
    "mkdir": _mkdir,
    "mv": _mv,
}


def run_client_command(args: argparse.Namespace) -> int | None:
    """Run a client subcommand and return its exit code; None when ``args.command`` is not one of them."""
    handler = _HANDLERS.get(getattr(args, "command", None) or "")
    if handler is None:
        return None
    if args.debug:
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
        logging.getLogger("pyftps").setLevel(logging.DEBUG)  # PASS is never logged with its argument
    ctx = _Context(args)
    try:
        with ctx.display:
            return asyncio.run(handler(ctx))
    except BrokenPipeError:  # `pyftps ls URL | head`: the reader went away, nothing to report
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_LOCAL
    except (Exception, KeyboardInterrupt) as error:
        if args.debug:
            ctx.stderr(traceback.format_exc().rstrip())
        ctx.failure(ctx.where, error)
        return exit_code_for(error)
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
