"""The command table: one :class:`CommandSpec` per verb drives checks, dispatch and HELP (RFC 959 §5.3.1).

Each entry carries its policy next to its handler (aioquic style): whether login is needed, the
argument rule, the permission checked before any storage call, the HELP text and the FEAT line.
Aliases from RFC 1123 §4.1.3.1 (XCWD, XMKD, ...) share their original's entry.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyftps.proto import cmd_access, cmd_files, cmd_info, cmd_security, cmd_transfer
from pyftps.proto.permissions import Permission

if TYPE_CHECKING:
    from pyftps.proto.actions import Action
    from pyftps.proto.commands import Command
    from pyftps.proto.session import ServerSession

Handler = Callable[["ServerSession", "Command"], "list[Action]"]


class ArgRule(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    verb: str
    handler: Handler
    arg: ArgRule
    login: bool
    perm: Permission | None
    help: str


_N, _O, _R = ArgRule.NONE, ArgRule.OPTIONAL, ArgRule.REQUIRED
P = Permission

_TABLE: tuple[tuple[str, Handler, ArgRule, bool, Permission | None, str], ...] = (
    # access control (RFC 959 §4.1.1, RFC 7151)
    ("USER", cmd_access.user, _R, False, None, "USER <name>: start a login"),
    ("PASS", cmd_access.password, _O, False, None, "PASS <password>: finish a login"),
    ("ACCT", cmd_access.account, _O, False, None, "ACCT <account>: not needed here"),
    ("REIN", cmd_access.reinitialize, _N, False, None, "REIN: log out and start over"),
    ("QUIT", cmd_access.quit, _N, False, None, "QUIT: close the connection"),
    ("HOST", cmd_access.host, _R, False, None, "HOST <name>: select a virtual host (RFC 7151)"),
    # security (RFC 2228, RFC 4217)
    ("AUTH", cmd_security.auth, _R, False, None, "AUTH TLS|SSL: start TLS on this connection"),
    ("PBSZ", cmd_security.pbsz, _R, False, None, "PBSZ 0: protection buffer size (always 0 for TLS)"),
    ("PROT", cmd_security.prot, _R, False, None, "PROT C|P: data channel protection level"),
    ("CCC", cmd_security.ccc, _N, False, None, "CCC: clear the control connection"),
    ("ADAT", cmd_security.unused, _O, False, None, "ADAT: not used by TLS"),
    ("MIC", cmd_security.unused, _O, False, None, "MIC: not used by TLS"),
    ("CONF", cmd_security.unused, _O, False, None, "CONF: not used by TLS"),
    ("ENC", cmd_security.unused, _O, False, None, "ENC: not used by TLS"),
    # transfer parameters (RFC 959 §4.1.2, RFC 2428, RFC 3659 §5)
    ("TYPE", cmd_transfer.type_, _R, False, None, "TYPE A|I: transfer type"),
    ("MODE", cmd_transfer.mode, _R, False, None, "MODE S: transfer mode (stream only)"),
    ("STRU", cmd_transfer.stru, _R, False, None, "STRU F: file structure (file only)"),
    ("REST", cmd_transfer.rest, _R, True, None, "REST <offset>: restart the next transfer there"),
    ("PASV", cmd_transfer.pasv, _N, True, None, "PASV: passive data connection (IPv4)"),
    ("EPSV", cmd_transfer.epsv, _O, True, None, "EPSV [1|2|ALL]: extended passive mode"),
    ("PORT", cmd_transfer.port, _R, True, None, "PORT h1,h2,h3,h4,p1,p2: active data connection"),
    ("EPRT", cmd_transfer.eprt, _R, True, None, "EPRT |af|addr|port|: extended active mode"),
    # transfers (RFC 959 §4.1.3, RFC 3659 §7)
    ("RETR", cmd_transfer.retr, _R, True, P.READ, "RETR <file>: download"),
    ("STOR", cmd_transfer.stor, _R, True, P.WRITE, "STOR <file>: upload"),
    ("STOU", cmd_transfer.stou, _O, True, P.WRITE, "STOU: upload under a unique name"),
    ("APPE", cmd_transfer.appe, _R, True, P.APPEND, "APPE <file>: append to a file"),
    ("LIST", cmd_transfer.list_, _O, True, P.LIST, "LIST [path]: long directory listing"),
    ("NLST", cmd_transfer.nlst, _O, True, P.LIST, "NLST [path]: names only"),
    ("MLSD", cmd_transfer.mlsd, _O, True, P.LIST, "MLSD [dir]: machine listing (RFC 3659)"),
    ("ABOR", cmd_transfer.abort, _N, False, None, "ABOR: abort the running transfer"),
    # file management (RFC 959 §4.1.3, RFC 3659)
    ("CWD", cmd_files.cwd, _R, True, None, "CWD <dir>: change directory"),
    ("CDUP", cmd_files.cdup, _N, True, None, "CDUP: go to the parent directory"),
    ("PWD", cmd_files.pwd, _N, True, None, "PWD: print the current directory"),
    ("MKD", cmd_files.mkd, _R, True, P.MKDIR, "MKD <dir>: make a directory"),
    ("RMD", cmd_files.rmd, _R, True, P.RMDIR, "RMD <dir>: remove an empty directory"),
    ("DELE", cmd_files.dele, _R, True, P.DELETE, "DELE <file>: delete a file"),
    ("RNFR", cmd_files.rnfr, _R, True, P.RENAME, "RNFR <name>: rename from"),
    ("RNTO", cmd_files.rnto, _R, True, P.RENAME, "RNTO <name>: rename to"),
    ("SIZE", cmd_files.size, _R, True, P.LIST, "SIZE <file>: size in the current TYPE (RFC 3659)"),
    ("MDTM", cmd_files.mdtm, _R, True, P.LIST, "MDTM <file>: modification time (RFC 3659)"),
    ("MFMT", cmd_files.mfmt, _R, True, P.WRITE, "MFMT <time> <file>: set the modification time"),
    ("MLST", cmd_files.mlst, _O, True, P.LIST, "MLST [path]: facts about one name (RFC 3659)"),
    ("SITE", cmd_files.site, _R, False, None, "SITE HELP|CHMOD <mode> <path>"),
    ("SMNT", cmd_files.smnt, _O, True, None, "SMNT: not implemented"),
    # information (RFC 959 §4.1.3, RFC 2389, RFC 2640)
    ("FEAT", cmd_info.feat, _N, False, None, "FEAT: list extensions (RFC 2389)"),
    ("OPTS", cmd_info.opts, _R, False, None, "OPTS UTF8 ON | OPTS MLST <facts>"),
    ("HELP", cmd_info.help_, _O, False, None, "HELP [command]"),
    ("SYST", cmd_info.syst, _N, False, None, "SYST: system type"),
    ("STAT", cmd_info.stat, _O, False, None, "STAT [path]: server or transfer status, or a listing"),
    ("NOOP", cmd_info.noop, _N, False, None, "NOOP: do nothing"),
    ("ALLO", cmd_info.allo, _O, True, None, "ALLO: not needed here"),
    ("LANG", cmd_info.lang, _O, False, None, "LANG [tag]: reply language (RFC 2640)"),
)

# RFC 1123 §4.1.3.1: the X-commands of RFC 775 are aliases.
_ALIASES = {"XCWD": "CWD", "XCUP": "CDUP", "XPWD": "PWD", "XMKD": "MKD", "XRMD": "RMD"}

COMMANDS: dict[str, CommandSpec] = {
    verb: CommandSpec(verb, handler, arg, login, perm, text)
    for verb, handler, arg, login, perm, text in _TABLE
}
COMMANDS.update({alias: COMMANDS[verb] for alias, verb in _ALIASES.items()})
