"""The ``pyftps`` command line: each subcommand builds a value (a config) and hands it on."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path
from typing import NoReturn

from pyftps.auth.records import (
    CERTIFICATE_FINGERPRINTS,
    CERTIFICATE_SUBJECT,
    DIRECTORY_PERMISSIONS,
    UserStore,
    format_directory_permissions,
    normalise_directory_permissions,
)
from pyftps.settings import SettingsError, add_serve_arguments, build_config, resolve


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the FTPS server",
        description="Run the FTPS server. Every flag also reads from PYFTPS_<SECTION>_<NAME> and --config.",
    )
    add_serve_arguments(p)


def _config_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check a settings file")
    actions = p.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a TOML settings file (and PYFTPS_* variables)")
    check.add_argument("file", type=Path)


def _user_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("user", help="manage the SQLite user database")
    p.add_argument("--state-dir", type=Path, help="where users.db lives (default ~/.local/share/pyftps)")
    p.add_argument("--database", help="user store URL instead: sqlite:///path or postgresql://...")
    users = p.add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="add a user (password read from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--home", required=True, help="the user's root: a directory or s3://bucket/prefix")
    add.add_argument("--perms", default="all", help="'all', 'ro' or a list such as list,read,write")
    users.add_parser("del", help="delete a user").add_argument("name")
    change = users.add_parser("set", help="change a user's home, permissions, state or limits")
    change.add_argument("name")
    change.add_argument("--home", help="a directory or s3://bucket/prefix")
    change.add_argument("--perms")
    state = change.add_mutually_exclusive_group()
    state.add_argument("--enable", action="store_true")
    state.add_argument("--disable", action="store_true")
    change.add_argument(
        "--certificate",
        type=Path,
        metavar="PEM",
        help="let this client certificate log in without a password",
    )
    change.add_argument(
        "--certificate-subject", metavar="CN", help="accept verified certificates with this CN"
    )
    change.add_argument(
        "--dir-perm",
        action="append",
        default=[],
        metavar="PATH=PERMS",
        help="permissions at a virtual path and below, e.g. /incoming=list,write (repeatable); "
        "the longest matching path wins over --perms",
    )
    change.add_argument(
        "--clear-dir-perm",
        action="append",
        default=[],
        metavar="PATH",
        help="remove the rule for PATH ('all': every rule); applied before --dir-perm",
    )
    for limit in ("quota-bytes", "quota-files", "upload-rate", "download-rate", "max-sessions"):
        change.add_argument(f"--{limit}", type=int, metavar="N", help="a number; -1 removes the limit")
    _tls_override_arguments(change)
    users.add_parser("list", help="list users")
    users.add_parser("passwd", help="set a user's password (prompt or stdin)").add_argument("name")


# Per-user TLS overrides (SessionPolicy.with_user): option → (settings key, accepted values).
_TLS_OVERRIDES = {
    "require_tls_login": ("require_tls_for_login", ("yes", "no")),
    "require_prot_p": ("require_protected_data", ("yes", "no")),
    "ccc": ("ccc", ("never", "after-login", "always")),
    "data_reuse": ("data_reuse", ("require", "warn", "off")),
}


def _tls_override_arguments(change: argparse.ArgumentParser) -> None:
    helps = {
        "require_tls_login": "refuse this user's cleartext logins (530 after the password is checked); "
        "'no' cannot loosen a listener that requires TLS before USER",
        "require_prot_p": "this user's transfers need PROT P ('no' allows PROT C)",
        "ccc": "when this user may clear the control connection with CCC",
        "data_reuse": "TLS session reuse on this user's data connections",
    }
    for option, (_key, values) in _TLS_OVERRIDES.items():
        change.add_argument(
            f"--{option.replace('_', '-')}",
            choices=(*values, "inherit"),
            help=f"{helps[option]}; 'inherit' follows the server",
        )


def _apply_tls_overrides(settings: dict[str, object], args: argparse.Namespace) -> None:
    for option, (key, _values) in _TLS_OVERRIDES.items():
        value = getattr(args, option)
        if value == "inherit":
            settings.pop(key, None)
        elif value is not None:
            settings[key] = value == "yes" if value in ("yes", "no") else value


def _tls_summary(settings: dict[str, object]) -> str:
    from pyftps.auth.base import UserTLSPolicy

    try:
        return UserTLSPolicy.from_settings(settings).summary()
    except ValueError:
        return "tls-overrides=invalid"


_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]*@")


class _Parser(argparse.ArgumentParser):
    """argparse echoes bad arguments in its errors: passwords inside URLs are masked first."""

    def error(self, message: str) -> NoReturn:
        super().error(_URL_PASSWORD.sub(r"\1****@", message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyftps", description="FTPS server and client (explicit and implicit)")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    _serve_parser(sub)
    _config_parser(sub)
    _user_parser(sub)
    from pyftps.client.commands import add_client_commands

    add_client_commands(sub)
    from pyftps.client.doctor import add_doctor_command

    add_doctor_command(sub)
    return parser


def run_config_check(args: argparse.Namespace) -> int:
    namespace = argparse.Namespace(config=args.file)
    try:
        # Ports are checked, not probed: the file may be meant for another machine.
        config = build_config(
            resolve(namespace), pick_port=lambda host, wanted, preferred, fallback: wanted or preferred
        )
    except SettingsError as error:
        print(f"pyftps: {error}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK (explicit port {config.explicit_port}, implicit port {config.implicit_port})")
    return 0


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if first != getpass.getpass("Again: "):
            raise SystemExit("pyftps: passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def run_user(args: argparse.Namespace) -> int:
    from pyftps.auth.base import Permission
    from pyftps.auth.records import UserStoreError
    from pyftps.auth.stores import open_user_store
    from pyftps.serve import default_state_dir

    state_dir = args.state_dir or default_state_dir()
    with open_user_store(args.database or f"sqlite:///{state_dir / 'users.db'}") as store:
        try:
            if args.action == "add":
                password = _read_password(f"Password for {args.name}: ")
                store.add_user(args.name, password, _home(args.home), Permission.parse(args.perms))
            elif args.action == "del":
                store.delete_user(args.name)
            elif args.action == "set":
                _set_user(store, args)
            elif args.action == "passwd":
                store.set_password(args.name, _read_password(f"New password for {args.name}: "))
            else:
                for record in store.list_users():
                    state = "enabled" if record.enabled else "disabled"
                    line = f"{record.name}\t{record.home}\t{','.join(record.permissions.names())}\t{state}"
                    overrides = _tls_summary(record.settings)
                    line = f"{line}\t{overrides}" if overrides else line
                    rules = format_directory_permissions(record.settings)
                    print(f"{line}\t{rules}" if rules else line)
        except (UserStoreError, ValueError) as error:
            print(f"pyftps: {error}", file=sys.stderr)
            return 1
    return 0


def _home(text: str) -> str:
    """A directory is stored absolute; an s3://bucket/prefix home as given (checked)."""
    if text.startswith("s3://"):
        from pyftps.storage.factory import S3Location

        S3Location.parse(text)
        return text
    return str(Path(text).expanduser().resolve())


def _set_user(store: UserStore, args: argparse.Namespace) -> None:
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
    if args.certificate is not None:
        from pyftps.tls.certs import certificate_fingerprint

        fingerprint = certificate_fingerprint(args.certificate.read_bytes())
        known = list(settings.get(CERTIFICATE_FINGERPRINTS) or [])
        settings[CERTIFICATE_FINGERPRINTS] = [*known, fingerprint] if fingerprint not in known else known
    if args.certificate_subject is not None:
        settings[CERTIFICATE_SUBJECT] = args.certificate_subject
    if args.dir_perm or args.clear_dir_perm:
        settings[DIRECTORY_PERMISSIONS] = _directory_rules(
            settings.get(DIRECTORY_PERMISSIONS) or {}, args.dir_perm, args.clear_dir_perm
        )
    _apply_tls_overrides(settings, args)
    UserLimits.from_settings(settings)  # validate before writing
    store.update_user(
        args.name,
        home=_home(args.home) if args.home else None,
        permissions=Permission.parse(args.perms) if args.perms else None,
        enabled=True if args.enable else False if args.disable else None,
        settings=settings,
    )


def _directory_rules(current: object, wanted: list[str], cleared: list[str]) -> dict[str, str]:
    """The user's directory rules after ``--clear-dir-perm`` then ``--dir-perm`` (ValueError if bad)."""
    rules = normalise_directory_permissions(current)
    for path in cleared:
        if path == "all":
            rules.clear()
            continue
        (canonical,) = normalise_directory_permissions({path: ""})
        if rules.pop(canonical, None) is None:
            raise ValueError(f"no directory rule for {canonical}")
    for item in wanted:
        path, sep, perms = item.rpartition("=")
        if not sep or not path:
            raise ValueError(f"--dir-perm wants PATH=PERMS (such as /incoming=list,write), got {item!r}")
        ((canonical, text),) = normalise_directory_permissions({path: perms}).items()
        rules[canonical] = text
    return normalise_directory_permissions(rules)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pyftps.client.commands import run_client_command

    code = run_client_command(args)
    if code is not None:
        return code
    from pyftps.client.doctor import run_doctor

    code = run_doctor(args)
    if code is not None:
        return code
    if args.command == "serve":
        return run_serve(args)
    if args.command == "config":
        return run_config_check(args)
    return run_user(args)


def run_serve(args: argparse.Namespace) -> int:
    from pyftps.serve import pick_port, run_server

    try:
        values = resolve(args)
        config = build_config(values, pick_port=pick_port)
    except SettingsError as error:
        print(f"pyftps: {error}", file=sys.stderr)
        return 2
    from pyftps.server.logs import configure_logging

    configure_logging(values["logging.format"] == "json", values["logging.level"])
    return run_server(config, reload=lambda: build_config(resolve(args), pick_port=pick_port))
