"""Transfer parameters and transfer commands (RFC 959 §4.1.2-4.1.3, 2428, 3659 §5/§7, 4217 §9-§10).

Data-connection setup (PASV/EPSV/PORT/EPRT) is checked here against RFC 2577 (no bounce to another
host or to a port below 1024); the PROT level is checked only when a transfer command arrives
(RFC 4217 §10.2), with 521 when the policy wants protected data (CONFORMANCE.md §7 item 4).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from pyftps.proto import paths
from pyftps.proto.actions import (
    AbortTransfer,
    Action,
    ActiveAddress,
    DropDataChannel,
    OpenPassive,
    OpOk,
    OpResult,
    Transfer,
    TransferKind,
    TransferOutcome,
)
from pyftps.proto.codes import ReplyCode
from pyftps.proto.grammar import (
    TransferType,
    canonical_host,
    format_epsv_reply_text,
    format_pasv_reply_text,
    parse_eprt_arg,
    parse_epsv_arg,
    parse_mode_arg,
    parse_port_arg,
    parse_rest_arg,
    parse_stru_arg,
    parse_type_arg,
    same_host,
)
from pyftps.proto.permissions import Permission, dir_perm, file_perm
from pyftps.proto.replies import Reply

if TYPE_CHECKING:
    from pyftps.proto.commands import Command
    from pyftps.proto.session import ServerSession


# What each transfer needs at its target path (the command table pre-checks the same flag).
_NEEDS = {
    TransferKind.RETR: Permission.READ,
    TransferKind.STOR: Permission.WRITE,
    TransferKind.STOU: Permission.WRITE,
    TransferKind.APPE: Permission.APPEND,
    TransferKind.LIST: Permission.LIST,
    TransferKind.NLST: Permission.LIST,
    TransferKind.MLSD: Permission.LIST,
}


def refuse_unless(s: ServerSession, perm: Permission, path: str) -> list[Action] | None:
    """The 550 reply when *perm* is not granted at the resolved *path*, else None."""
    if s.state.access.allows(perm, path):
        return None
    return s.reply(ReplyCode.FILE_UNAVAILABLE, "Permission denied.")


# ---------------------------------------------------------------- parameters


def type_(s: ServerSession, cmd: Command) -> list[Action]:
    s.state.type = parse_type_arg(cmd.arg)
    return s.reply(ReplyCode.OK, f"Type set to {'I' if s.state.type is TransferType.IMAGE else 'A'}.")


def mode(s: ServerSession, cmd: Command) -> list[Action]:
    parse_mode_arg((cmd.arg or "").strip())
    return s.reply(ReplyCode.OK, "Mode set to S.")


def stru(s: ServerSession, cmd: Command) -> list[Action]:
    parse_stru_arg((cmd.arg or "").strip())
    return s.reply(ReplyCode.OK, "Structure set to F.")


def rest(s: ServerSession, cmd: Command) -> list[Action]:
    s.state.rest_offset = parse_rest_arg((cmd.arg or "").strip())
    return s.reply(ReplyCode.PENDING_FURTHER_INFO, f"Restarting at {s.state.rest_offset}. Send RETR or STOR.")


# ---------------------------------------------------------------- data connection setup


def _epsv_all_refusal(s: ServerSession) -> list[Action] | None:
    if s.state.epsv_all:
        return s.reply(ReplyCode.BAD_SEQUENCE, "EPSV ALL is in effect: only EPSV is allowed (RFC 2428 §3).")
    return None


def pasv(s: ServerSession, cmd: Command) -> list[Action]:
    if refused := _epsv_all_refusal(s):
        return refused
    if s.ipv6 and s.policy.passive_address is None:
        return s.reply(ReplyCode.NOT_IMPLEMENTED, "PASV cannot express IPv6 addresses: use EPSV.")
    return s.run(OpenPassive(extended=False), lambda result: _passive_opened(s, result, extended=False))


def epsv(s: ServerSession, cmd: Command) -> list[Action]:
    arg = parse_epsv_arg(cmd.arg.strip() if cmd.arg else None)
    if arg == "ALL":
        s.state.epsv_all = True
        return s.reply(ReplyCode.OK, "EPSV ALL OK.")
    if arg is not None and arg != (2 if s.ipv6 else 1):
        supported = "2" if s.ipv6 else "1"
        return s.reply(
            ReplyCode.TLS_DATA_NEGOTIATION_FAILED, f"Network protocol not supported, use ({supported})"
        )
    return s.run(OpenPassive(extended=True), lambda result: _passive_opened(s, result, extended=True))


def _passive_opened(s: ServerSession, result: OpResult, *, extended: bool) -> list[Action]:
    if not isinstance(result, OpOk) or not isinstance(result.value, int):
        if isinstance(result, OpOk):
            return s.reply(ReplyCode.CANT_OPEN_DATA, "Cannot open a passive data port.")
        return s.reply(result.code, result.text)
    s.state.passive_ready, s.state.active = True, None
    if extended:
        return s.reply(ReplyCode.ENTERING_EXTENDED_PASSIVE, format_epsv_reply_text(result.value))
    host = s.policy.passive_address or canonical_host(s.local_host)
    return s.reply(ReplyCode.ENTERING_PASSIVE, format_pasv_reply_text(host, result.value))


def port(s: ServerSession, cmd: Command) -> list[Action]:
    if refused := _epsv_all_refusal(s):
        return refused
    host, number = parse_port_arg((cmd.arg or "").strip())
    return _set_active(s, host, number, "PORT")


def eprt(s: ServerSession, cmd: Command) -> list[Action]:
    if refused := _epsv_all_refusal(s):
        return refused
    _family, host, number = parse_eprt_arg((cmd.arg or "").strip())
    return _set_active(s, host, number, "EPRT")


def _set_active(s: ServerSession, host: str, number: int, verb: str) -> list[Action]:
    if not s.policy.allow_foreign_data_address and not same_host(host, s.peer_host):
        # RFC 2577 §2-3 (bounce attack); PROJ: only the client's own address.
        return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, f"{verb} must name your own address.")
    if number < 1024 and not s.policy.allow_low_data_ports:
        return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, f"{verb} to a port below 1024 is refused.")
    s.state.active, s.state.passive_ready = (host, number), False
    return [DropDataChannel(), *s.reply(ReplyCode.OK, f"{verb} command successful.")]


# ---------------------------------------------------------------- transfers


def retr(s: ServerSession, cmd: Command) -> list[Action]:
    return _transfer(s, TransferKind.RETR, s.resolve(cmd.arg))


def stor(s: ServerSession, cmd: Command) -> list[Action]:
    return _transfer(s, TransferKind.STOR, s.resolve(cmd.arg))


def appe(s: ServerSession, cmd: Command) -> list[Action]:
    return _transfer(s, TransferKind.APPE, s.resolve(cmd.arg))


def stou(s: ServerSession, cmd: Command) -> list[Action]:
    # RFC 1123 §4.1.2.9: the server picks the name and announces it in the 150 reply.
    wanted = s.resolve(cmd.arg) if cmd.arg and cmd.arg.strip() else paths.join(s.state.cwd, "file")
    return _transfer(s, TransferKind.STOU, paths.with_suffix(wanted, f".{secrets.token_hex(4)}"))


def list_(s: ServerSession, cmd: Command) -> list[Action]:
    return _transfer(s, TransferKind.LIST, s.resolve(_strip_ls_options(cmd.arg)))


def nlst(s: ServerSession, cmd: Command) -> list[Action]:
    return _transfer(s, TransferKind.NLST, s.resolve(_strip_ls_options(cmd.arg)))


def mlsd(s: ServerSession, cmd: Command) -> list[Action]:
    return _transfer(s, TransferKind.MLSD, s.resolve(cmd.arg))


def _strip_ls_options(arg: str | None) -> str | None:
    """Clients send ``LIST -la`` or ``LIST -a dir``; options are not path names."""
    if not arg:
        return arg
    words = arg.split(" ")
    while words and words[0].startswith("-") and len(words[0]) > 1:
        words.pop(0)
    return " ".join(words) or None


def _transfer(s: ServerSession, kind: TransferKind, path: str) -> list[Action]:
    if refused := refuse_unless(s, _NEEDS[kind], path):
        return refused  # checked first, as the table's pre-check was: REST and PASV stay as they were
    offset, s.state.rest_offset = s.state.rest_offset, 0  # REST applies to the next transfer only
    if not (s.state.passive_ready or s.state.active):
        return s.reply(ReplyCode.CANT_OPEN_DATA, "Use PASV, EPSV, PORT or EPRT first.")
    if s.state.prot != "P" and s.policy.require_protected_data:
        return s.reply(
            ReplyCode.PROT_LEVEL_REFUSED, "Data connections must be protected: send PBSZ 0 and PROT P."
        )
    ascii_mode = s.state.type is TransferType.ASCII and not kind.listing
    if kind.upload and offset and ascii_mode:
        return s.reply(ReplyCode.INVALID_REST, "REST with TYPE A uploads is not supported: use TYPE I.")
    if kind in (TransferKind.STOU, TransferKind.APPE) and offset:
        return s.reply(ReplyCode.INVALID_REST, f"REST cannot be combined with {kind.value}.")
    active = ActiveAddress(*s.state.active) if s.state.active else None
    access = s.state.access
    s.state.passive_ready, s.state.active = False, None  # one transfer per PASV/PORT (RFC 1123 §4.1.2.6)
    transfer = Transfer(
        kind=kind,
        path=path,
        offset=offset,
        ascii=ascii_mode,
        protect=s.state.prot == "P",
        active=active,
        facts=s.state.facts,
        perm_for_file=file_perm(access.effective(path)),
        perm_for_dir=dir_perm(access.effective(path)),
        access=access if access.rules else None,  # entries may differ from the listed directory
    )
    return s.run_transfer(transfer)


def preliminary_reply(s: ServerSession, transfer: Transfer) -> Reply:
    security = " (TLS)" if transfer.protect else ""
    if transfer.kind is TransferKind.STOU:
        return Reply.of(ReplyCode.FILE_STATUS_OK, f"FILE: {paths.basename(transfer.path)}")
    if transfer.kind.listing:
        return Reply.of(
            ReplyCode.FILE_STATUS_OK, f"Opening data connection for {transfer.kind.value}{security}."
        )
    mode_name = "ASCII" if transfer.ascii else "BINARY"
    return Reply.of(ReplyCode.FILE_STATUS_OK, f"Opening {mode_name} mode data connection{security}.")


def final_replies(
    s: ServerSession, transfer: Transfer, outcome: TransferOutcome, aborted: bool
) -> list[Action]:
    done = f"Transfer complete ({outcome.bytes_done} bytes)."
    if aborted:
        # RFC 959 §4.1.3: 426 for the aborted command, then 226 for ABOR itself.
        first = (
            s.reply(ReplyCode.CLOSING_DATA, done)
            if outcome.ok
            else s.reply(ReplyCode.TRANSFER_ABORTED, "Transfer aborted.")
        )
        return first + s.reply(ReplyCode.CLOSING_DATA, "ABOR command successful.")
    if outcome.ok:
        return s.reply(ReplyCode.CLOSING_DATA, done)
    assert outcome.code is not None or outcome.aborted
    return s.reply(outcome.code or ReplyCode.TRANSFER_ABORTED, outcome.text or "Transfer aborted.")


def abort(s: ServerSession, cmd: Command) -> list[Action]:
    if s.transfer is not None:
        s.abort_requested = True
        return [AbortTransfer()]
    s.state.passive_ready, s.state.active = False, None
    return [DropDataChannel(), *s.reply(ReplyCode.CLOSING_DATA, "No transfer to abort.")]
