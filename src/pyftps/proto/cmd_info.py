"""Informational commands: FEAT, OPTS, HELP, SYST, STAT, NOOP, ALLO, LANG (RFC 959, 2389, 2640, 3659).

FEAT and HELP are derived from the command table so they can never advertise what is not there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

from pyftps.proto.actions import Action, ListNames, OpOk, OpResult
from pyftps.proto.codes import ReplyCode
from pyftps.proto.listing import (
    StatLike,
    feat_mlst_line,
    format_opts_mlst_reply,
    list_line,
    listable,
    parse_opts_mlst,
)
from pyftps.proto.policy import CCCPolicy

if TYPE_CHECKING:
    from pyftps.proto.commands import Command
    from pyftps.proto.session import ServerSession

_LANG_TAG = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")


def feature_lines(s: ServerSession) -> list[str]:
    """The FEAT body (RFC 2389 §3.2), one feature per line without the leading space."""
    from pyftps.proto.specs import COMMANDS

    features = []
    if s.policy.tls_available:
        features += ["AUTH TLS;SSL;", "PBSZ", "PROT C;P;"]  # MS-FTPS §4.2 form
        if s.policy.ccc is not CCCPolicy.NEVER:
            features.append("CCC")
    table = {
        "EPRT": "EPRT",
        "EPSV": "EPSV",
        "HOST": "HOST",
        "LANG": "LANG EN*",
        "MDTM": "MDTM",
        "MFMT": "MFMT",
        "MLST": feat_mlst_line(s.state.facts),
        "REST": "REST STREAM",
        "SIZE": "SIZE",
    }
    features += [line for verb, line in table.items() if verb in COMMANDS]
    features += ["TVFS", "UTF8"]
    return features


def feat(s: ServerSession, cmd: Command) -> list[Action]:
    lines = [" " + line for line in feature_lines(s)]
    return s.reply(ReplyCode.SYSTEM_STATUS, "Extensions supported:", *lines, "End")


def opts(s: ServerSession, cmd: Command) -> list[Action]:
    name, _, options = (cmd.arg or "").partition(" ")
    name = name.upper()
    if name == "UTF8":
        value = options.strip().upper()
        if value not in ("ON", "OFF", ""):
            return s.reply(ReplyCode.SYNTAX_ERROR_ARGS, "Usage: OPTS UTF8 ON")
        # RFC 2640 has no switch: paths are always UTF-8; OFF is accepted but changes nothing.
        return s.reply(ReplyCode.OK, "UTF8 set to on." if value != "OFF" else "UTF8 stays on (RFC 2640).")
    if name == "MLST":
        s.state.facts = parse_opts_mlst(options or None)
        return s.reply(ReplyCode.OK, format_opts_mlst_reply(s.state.facts))
    return s.reply(ReplyCode.SYNTAX_ERROR_ARGS, f"OPTS {name[:16]} not understood.")


def help_(s: ServerSession, cmd: Command) -> list[Action]:
    from pyftps.proto.specs import COMMANDS

    if cmd.arg and cmd.arg.strip():
        verb = cmd.arg.strip().upper()
        spec = COMMANDS.get(verb)
        if spec is None:
            return s.reply(ReplyCode.SYNTAX_ERROR_ARGS, f"Unknown command {verb[:8]}.")
        return s.reply(ReplyCode.HELP, f"Syntax: {spec.help}")
    verbs = sorted(COMMANDS)
    rows = [" " + " ".join(f"{v:<5}" for v in verbs[i : i + 10]).rstrip() for i in range(0, len(verbs), 10)]
    return s.reply(ReplyCode.HELP, "Recognized commands:", *rows, "Help OK.")


def syst(s: ServerSession, cmd: Command) -> list[Action]:
    return s.reply(ReplyCode.SYSTEM_TYPE, "UNIX Type: L8")


def noop(s: ServerSession, cmd: Command) -> list[Action]:
    return s.reply(ReplyCode.OK, "NOOP OK.")


def allo(s: ServerSession, cmd: Command) -> list[Action]:
    return s.reply(ReplyCode.SUPERFLUOUS, "ALLO is not needed on this server.")


def lang(s: ServerSession, cmd: Command) -> list[Action]:
    tag = (cmd.arg or "").strip()
    if not tag:
        return s.reply(ReplyCode.OK, "Language set to EN.")
    if not _LANG_TAG.match(tag):
        return s.reply(ReplyCode.SYNTAX_ERROR_ARGS, "Bad language tag.")
    if tag.split("-")[0].upper() != "EN":
        return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, "Only EN is supported.")
    return s.reply(ReplyCode.OK, "Language set to EN.")


def stat(s: ServerSession, cmd: Command) -> list[Action]:
    if s.transfer is not None:  # RFC 1123 §4.1.3.3: status of the running transfer
        transfer = s.transfer
        return s.reply(
            ReplyCode.FILE_STATUS,
            f"Status: {transfer.kind.value} {transfer.path}, {transfer.progress.bytes_done} bytes so far.",
        )
    if cmd.arg and cmd.arg.strip():
        return _stat_path(s, cmd.arg)
    state = s.state
    lines = [
        "pyftps status:",
        f" Connected from {s.peer_host}",
        f" Logged in as {state.user}" if state.logged_in else " Not logged in",
        f" TYPE: {'BINARY' if state.type.name == 'IMAGE' else 'ASCII'}; STRUcture: File; MODE: Stream",
        f" Control connection: {'TLS' if state.tls.protected else 'plaintext'}"
        + (f" ({s.tls_info.version})" if s.tls_info and state.tls.protected else ""),
        f" Data protection: PROT {state.prot}",
        "End of status.",
    ]
    return s.reply(ReplyCode.SYSTEM_STATUS, *lines)


def _stat_path(s: ServerSession, arg: str) -> list[Action]:
    if not s.state.logged_in:
        return s.reply(ReplyCode.NOT_LOGGED_IN, "Please log in with USER and PASS first.")
    from pyftps.proto.permissions import Permission

    if Permission.LIST not in s.state.access.anywhere:
        return s.reply(ReplyCode.FILE_UNAVAILABLE, "Permission denied.")
    target = s.resolve(arg)
    if not s.state.access.allows(Permission.LIST, target):  # the rule of the path shown
        return s.reply(ReplyCode.FILE_UNAVAILABLE, "Permission denied.")

    def listed(result: OpResult) -> list[Action]:
        if not isinstance(result, OpOk):
            return s.reply(result.code, result.text)
        info, entries = cast("tuple[StatLike, list[StatLike]]", result.value)
        shown = entries if info.is_dir else [info]
        lines = [list_line(e, now=s.now) for e in shown if listable(e.name)]
        code = ReplyCode.DIRECTORY_STATUS if info.is_dir else ReplyCode.FILE_STATUS
        return s.reply(code, f"Status of {target}:", *lines, "End of status.")

    return s.run(ListNames(target, s.policy.stat_list_limit), listed)
