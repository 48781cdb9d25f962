"""The ``pyftps`` command line: each subcommand builds a value (a config) and hands it on."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from pyftps.auth.sqlite import SqliteUserStore
from pyftps.config import ReusePolicy, ServerConfig, UserSpec
from pyftps.proto.policy import CCCPolicy, SessionPolicy
from pyftps.server.guard import BanPolicy, ConnectionLimits

DEFAULT_EXPLICIT, DEFAULT_IMPLICIT = 21, 990
FALLBACK_EXPLICIT, FALLBACK_IMPLICIT = 2121, 9990


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535 (0 disables the listener)")
    return value


def _port_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        pair = (int(low), int(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError("expected LOW-HIGH, e.g. 50000-50100") from None
    if not 1024 <= pair[0] <= pair[1] <= 65535:
        raise argparse.ArgumentTypeError("passive ports must satisfy 1024 <= LOW <= HIGH <= 65535")
    return pair


def _user(text: str) -> UserSpec:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return UserSpec(name, password)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the FTPS server")
    p.add_argument("--root", type=Path, help="directory served to --user accounts and the first user")
    p.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0; '::' for IPv6 too)")
    p.add_argument(
        "--port", type=_port, help="explicit FTPS port (default 21, or 2121 if 21 is not allowed; 0 disables)"
    )
    p.add_argument(
        "--implicit-port", type=_port, help="implicit FTPS port (default 990, or 9990; 0 disables)"
    )
    p.add_argument("--passive-ports", type=_port_range, metavar="LO-HI", help="passive data port range")
    p.add_argument("--masquerade-address", metavar="IPV4", help="address announced in PASV replies (NAT)")
    p.add_argument("--cert", type=Path, help="certificate chain (PEM); default: a generated self-signed one")
    p.add_argument("--key", type=Path, help="private key (PEM)")
    p.add_argument(
        "--user",
        type=_user,
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="an account rooted at --root (repeatable); replaces the user database",
    )
    p.add_argument(
        "--state-dir", type=Path, help="certificates and the user database (default ~/.local/share/pyftps)"
    )
    p.add_argument(
        "--data-reuse",
        choices=[r.value for r in ReusePolicy],
        default="require",
        help="data connections must resume the control TLS session (default require)",
    )
    p.add_argument("--allow-plain-login", action="store_true", help="allow USER/PASS without TLS")
    p.add_argument("--allow-plain-data", action="store_true", help="allow PROT C (unprotected data)")
    p.add_argument(
        "--ccc", choices=[c.value for c in CCCPolicy], default="after-login", help="when CCC is allowed"
    )
    p.add_argument("--idle-timeout", type=float, default=600.0, help="seconds without a command before 421")
    p.add_argument(
        "--handshake-timeout", type=float, default=30.0, help="seconds allowed for a TLS handshake"
    )
    p.add_argument(
        "--allow-foreign-data",
        action="store_true",
        help="allow data connections to/from another address than the client's (FXP; RFC 2577 risks)",
    )
    p.add_argument("--login-delay", type=float, default=3.0, help="seconds before answering a failed login")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync uploads before the 226 reply")
    p.add_argument("--max-connections", type=int, default=1000, help="control connections in all")
    p.add_argument("--max-per-ip", type=int, default=20, help="control connections from one address")
    p.add_argument("--max-per-user", type=int, default=10, help="logged-in sessions of one user")
    p.add_argument(
        "--ban-after", type=int, default=5, help="failed logins within 10 minutes that ban an address"
    )
    p.add_argument("--ban-time", type=float, default=900.0, help="first ban in seconds; doubles on repeat")
    p.add_argument(
        "--ban-allow", action="append", default=[], metavar="CIDR", help="never ban these (repeatable)"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("user", help="manage the SQLite user database")
    p.add_argument("--state-dir", type=Path, help="where users.db lives (default ~/.local/share/pyftps)")
    users = p.add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="add a user (password read from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--home", type=Path, required=True, help="the user's root directory")
    add.add_argument("--perms", default="all", help="'all', 'ro' or a list such as list,read,write")
    users.add_parser("del", help="delete a user").add_argument("name")
    change = users.add_parser("set", help="change a user's home, permissions, state or limits")
    change.add_argument("name")
    change.add_argument("--home", type=Path)
    change.add_argument("--perms")
    state = change.add_mutually_exclusive_group()
    state.add_argument("--enable", action="store_true")
    state.add_argument("--disable", action="store_true")
    for limit in ("quota-bytes", "quota-files", "upload-rate", "download-rate", "max-sessions"):
        change.add_argument(f"--{limit}", type=int, metavar="N", help="a number; -1 removes the limit")
    users.add_parser("list", help="list users")
    users.add_parser("passwd", help="set a user's password (prompt or stdin)").add_argument("name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyftps", description="FTPS server and client (explicit and implicit)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _user_parser(sub)
    return parser


def serve_config(args: argparse.Namespace) -> ServerConfig:
    from pyftps.serve import default_state_dir, pick_port

    state_dir = (args.state_dir or default_state_dir()).resolve()
    root = (args.root or state_dir / "data").resolve()
    policy = SessionPolicy(
        require_tls_for_login=not args.allow_plain_login,
        require_protected_data=not args.allow_plain_data,
        ccc=CCCPolicy(args.ccc),
        idle_timeout=args.idle_timeout,
        login_failure_delay=args.login_delay,
        passive_address=args.masquerade_address,
        allow_foreign_data_address=args.allow_foreign_data,
    )
    return ServerConfig(
        host=args.host,
        explicit_port=pick_port(args.host, args.port, DEFAULT_EXPLICIT, FALLBACK_EXPLICIT),
        implicit_port=pick_port(args.host, args.implicit_port, DEFAULT_IMPLICIT, FALLBACK_IMPLICIT),
        passive_ports=args.passive_ports,
        root=root,
        state_dir=state_dir,
        cert_file=args.cert,
        key_file=args.key,
        users=tuple(args.user),
        data_reuse=ReusePolicy(args.data_reuse),
        session=policy,
        fsync=not args.no_fsync,
        handshake_timeout=args.handshake_timeout,
        limits=ConnectionLimits(args.max_connections, args.max_per_ip, args.max_per_user),
        bans=BanPolicy(max_failures=args.ban_after, ban_time=args.ban_time, allow_list=tuple(args.ban_allow)),
    )


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if first != getpass.getpass("Again: "):
            raise SystemExit("pyftps: passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def run_user(args: argparse.Namespace) -> int:
    from pyftps.auth.base import Permission
    from pyftps.auth.sqlite import SqliteUserStore, UserStoreError
    from pyftps.serve import default_state_dir

    state_dir = args.state_dir or default_state_dir()
    with SqliteUserStore(state_dir / "users.db") as store:
        try:
            if args.action == "add":
                password = _read_password(f"Password for {args.name}: ")
                store.add_user(args.name, password, str(args.home.resolve()), Permission.parse(args.perms))
            elif args.action == "del":
                store.delete_user(args.name)
            elif args.action == "set":
                _set_user(store, args)
            elif args.action == "passwd":
                store.set_password(args.name, _read_password(f"New password for {args.name}: "))
            else:
                for record in store.list_users():
                    state = "enabled" if record.enabled else "disabled"
                    print(f"{record.name}\t{record.home}\t{','.join(record.permissions.names())}\t{state}")
        except (UserStoreError, ValueError) as error:
            print(f"pyftps: {error}", file=sys.stderr)
            return 1
    return 0


def _set_user(store: SqliteUserStore, args: argparse.Namespace) -> None:
    from pyftps.auth.base import Permission, UserLimits

    record = store.get_user(args.name)
    if record is None:
        raise ValueError(f"no such user: {args.name}")
    settings = dict(record.settings)
    for key in UserLimits.FIELDS:
        value = getattr(args, key)
        if value is not None:
            if value < 0:
                settings.pop(key, None)
            else:
                settings[key] = value
    UserLimits.from_settings(settings)  # validate before writing
    store.update_user(
        args.name,
        home=str(args.home.resolve()) if args.home else None,
        permissions=Permission.parse(args.perms) if args.perms else None,
        enabled=True if args.enable else False if args.disable else None,
        settings=settings,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from pyftps.serve import run_server

        return run_server(serve_config(args))
    return run_user(args)
