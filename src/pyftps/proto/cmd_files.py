"""Handlers of file-management commands: CWD, PWD, MKD, RMD, DELE, RNFR/RNTO, SIZE, MDTM, MFMT, MLST, SITE.

RFC 959 §4.1.3, RFC 3659 §3-§4 and §7, RFC 1123 §4.1.3.1 (X-aliases share these handlers).
Storage errors come back as :class:`~pyftps.proto.actions.OpFailed` replies already mapped by the
I/O layer; a handler only decides what success looks like. Each handler checks its permission at the
resolved target path (per-directory rules, :mod:`pyftps.proto.permissions`) before any storage call;
CWD and CDUP need none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyftps.proto import paths
from pyftps.proto.actions import (
    Action,
    AsciiSize,
    Chmod,
    DeleteFile,
    MakeDir,
    OpOk,
    OpResult,
    RemoveDir,
    RenamePath,
    SetMtime,
    StatPath,
)
from pyftps.proto.cmd_transfer import refuse_unless
from pyftps.proto.codes import ReplyCode
from pyftps.proto.grammar import TransferType, format_time_val, parse_chmod_mode, parse_mfmt_arg
from pyftps.proto.listing import StatLike, listable, mlst_line
from pyftps.proto.permissions import Permission

if TYPE_CHECKING:
    from pyftps.proto.commands import Command
    from pyftps.proto.session import ServerSession


def _on_ok(s: ServerSession, then: Callable[[object], list[Action]]) -> Callable[[OpResult], list[Action]]:
    """Continuation that relays a failure reply as is and calls ``then`` with a success value."""

    def continuation(result: OpResult) -> list[Action]:
        if isinstance(result, OpOk):
            return then(result.value)
        return s.reply(result.code, result.text)

    return continuation


def _stat(value: object) -> StatLike:
    assert hasattr(value, "is_dir"), "StatPath must return a FileInfo"
    return value  # type: ignore[return-value]


def cwd(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)

    def changed(value: object) -> list[Action]:
        if not _stat(value).is_dir:
            return s.reply(ReplyCode.FILE_UNAVAILABLE, "Not a directory.")
        s.state.cwd = target
        return s.reply(ReplyCode.FILE_ACTION_OK, f"Directory changed to {paths.quote(target)}.")

    return s.run(StatPath(target), _on_ok(s, changed))


def cdup(s: ServerSession, cmd: Command) -> list[Action]:
    s.state.cwd = paths.parent(s.state.cwd)
    return s.reply(ReplyCode.OK, f"Directory changed to {paths.quote(s.state.cwd)}.")


def pwd(s: ServerSession, cmd: Command) -> list[Action]:
    return s.reply(ReplyCode.PATH_CREATED, f"{paths.quote(s.state.cwd)} is the current directory.")


def mkd(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)
    if refused := refuse_unless(s, Permission.MKDIR, target):
        return refused
    done = _on_ok(s, lambda _: s.reply(ReplyCode.PATH_CREATED, f"{paths.quote(target)} created."))
    return s.run(MakeDir(target), done)


def rmd(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)
    if target == "/":
        return s.reply(ReplyCode.FILE_UNAVAILABLE, "Cannot remove the root directory.")
    if refused := refuse_unless(s, Permission.RMDIR, target):
        return refused
    return s.run(
        RemoveDir(target), _on_ok(s, lambda _: s.reply(ReplyCode.FILE_ACTION_OK, "Directory removed."))
    )


def dele(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)
    if refused := refuse_unless(s, Permission.DELETE, target):
        return refused
    return s.run(DeleteFile(target), _on_ok(s, lambda _: s.reply(ReplyCode.FILE_ACTION_OK, "File deleted.")))


def rnfr(s: ServerSession, cmd: Command) -> list[Action]:
    source = s.resolve(cmd.arg)
    if source == "/":
        return s.reply(ReplyCode.FILE_UNAVAILABLE, "Cannot rename the root directory.")
    if refused := refuse_unless(s, Permission.RENAME, source):
        return refused  # before the StatPath: a refused area does not say what exists in it

    def found(value: object) -> list[Action]:
        s.state.rename_from = source
        return s.reply(ReplyCode.PENDING_FURTHER_INFO, "Ready for RNTO.")

    return s.run(StatPath(source), _on_ok(s, found))


def rnto(s: ServerSession, cmd: Command) -> list[Action]:
    source, s.state.rename_from = s.state.rename_from, None
    if source is None:
        return s.reply(ReplyCode.BAD_SEQUENCE, "Send RNFR first.")
    target = s.resolve(cmd.arg)
    if refused := refuse_unless(s, Permission.RENAME, target):
        return refused  # the RNFR is spent: nothing was renamed
    done = _on_ok(s, lambda _: s.reply(ReplyCode.FILE_ACTION_OK, "Rename successful."))
    return s.run(RenamePath(source, target), done)


def size(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)
    if refused := refuse_unless(s, Permission.LIST, target):
        return refused
    if s.state.type is TransferType.ASCII:
        # RFC 3659 §4: the size a TYPE A transfer would send, or 550 when too costly to compute.
        def counted(value: object) -> list[Action]:
            return s.reply(ReplyCode.FILE_STATUS, str(value))

        return s.run(AsciiSize(target, s.policy.ascii_size_limit), _on_ok(s, counted))

    def sized(value: object) -> list[Action]:
        info = _stat(value)
        if info.is_dir:
            return s.reply(ReplyCode.FILE_UNAVAILABLE, "Not a regular file.")
        return s.reply(ReplyCode.FILE_STATUS, str(info.size))

    return s.run(StatPath(target), _on_ok(s, sized))


def mdtm(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)
    if refused := refuse_unless(s, Permission.LIST, target):
        return refused
    done = _on_ok(s, lambda value: s.reply(ReplyCode.FILE_STATUS, format_time_val(_stat(value).mtime)))
    return s.run(StatPath(target), done)


def mfmt(s: ServerSession, cmd: Command) -> list[Action]:
    mtime, name = parse_mfmt_arg(cmd.arg or "")
    target = s.resolve(name)
    if refused := refuse_unless(s, Permission.WRITE, target):
        return refused
    stamp = format_time_val(mtime)
    done = _on_ok(s, lambda _: s.reply(ReplyCode.FILE_STATUS, f"Modify={stamp}; {name}"))
    return s.run(SetMtime(target, mtime), done)


def mlst(s: ServerSession, cmd: Command) -> list[Action]:
    target = s.resolve(cmd.arg)
    if refused := refuse_unless(s, Permission.LIST, target):
        return refused

    def described(value: object) -> list[Action]:
        info = _stat(value)
        if not listable(target):
            return s.reply(ReplyCode.FILE_UNAVAILABLE, "This name cannot be shown in an MLST reply.")
        perm = s.state.access.mlsx_perm(target, is_dir=info.is_dir)
        line = mlst_line(info, s.state.facts, perm=perm, path=target)
        return s.reply(ReplyCode.FILE_ACTION_OK, f"Listing {target}", line, "End")

    return s.run(StatPath(target), _on_ok(s, described))


def site(s: ServerSession, cmd: Command) -> list[Action]:
    words = (cmd.arg or "").split(" ", 2)
    sub = words[0].upper()
    if sub == "HELP":
        return s.reply(ReplyCode.HELP, "SITE commands: HELP, CHMOD <mode> <path>", "End")
    if sub != "CHMOD":
        return s.reply(ReplyCode.SYNTAX_ERROR, f"SITE {sub[:16]} not understood.")
    if not s.state.logged_in:
        return s.reply(ReplyCode.NOT_LOGGED_IN, "Please log in with USER and PASS first.")
    if Permission.CHMOD not in s.state.access.anywhere:  # SITE has no table permission: pre-check here
        return s.reply(ReplyCode.FILE_UNAVAILABLE, "Permission denied.")
    if len(words) < 3 or not words[2]:
        return s.reply(ReplyCode.SYNTAX_ERROR_ARGS, "Usage: SITE CHMOD <octal mode> <path>")
    mode = parse_chmod_mode(words[1])
    target = s.resolve(words[2])
    if refused := refuse_unless(s, Permission.CHMOD, target):
        return refused
    return s.run(
        Chmod(target, mode), _on_ok(s, lambda _: s.reply(ReplyCode.OK, "SITE CHMOD command successful."))
    )


def smnt(s: ServerSession, cmd: Command) -> list[Action]:
    return s.reply(ReplyCode.NOT_IMPLEMENTED, "SMNT is not implemented.")
