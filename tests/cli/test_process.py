"""The client commands as a real process: exit codes, one-line errors, no traceback, no password.

``runner`` is a three-line main that calls ``add_client_commands``/``run_client_command`` the way
``pyftps.cli`` does; ``module`` is ``python -m pyftps`` itself, skipped until ``pyftps.cli`` registers
the client commands.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import PASSWORD, USER, CliServer
from tests.support.ports import free_port

RUNNER = """\
import argparse, sys
from pyftps.client.commands import add_client_commands, run_client_command
parser = argparse.ArgumentParser(prog="pyftps")
add_client_commands(parser.add_subparsers(dest="command", required=True))
sys.exit(run_client_command(parser.parse_args()))
"""


def wired() -> bool:
    """Whether ``pyftps.cli.build_parser()`` has the client subcommands yet."""
    try:
        from pyftps import cli

        parser = cli.build_parser()
    except Exception:  # pyftps.cli is being edited: treat as not wired
        return False
    return any(
        isinstance(action, argparse._SubParsersAction) and "ls" in action.choices
        for action in parser._actions
    )


@pytest.fixture(params=["runner", "module"])
def pyftps_argv(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "module":
        if not wired():
            pytest.skip("pyftps.cli does not register the client commands yet")
        return [sys.executable, "-m", "pyftps"]
    return [sys.executable, "-c", RUNNER]


def run(
    argv: list[str], *args: object, home: Path, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFTPS_")}
    env["HOME"] = str(home)
    if password is not None:
        env["PYFTPS_PASSWORD"] = password
    result = subprocess.run(
        [*argv, *(str(a) for a in args)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert PASSWORD not in result.stdout + result.stderr
    return result


def test_process_exit_codes_and_one_line_errors(
    pyftps_argv: list[str], server: CliServer, tmp_path: Path, clean_environment: Path
) -> None:
    (server.root / "a.txt").write_text("hello")
    url = server.url("implicit", user=None)
    ok = run(
        pyftps_argv,
        "ls",
        url,
        "--user",
        USER,
        "--cafile",
        server.cafile,
        home=clean_environment,
        password=PASSWORD,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.rstrip().endswith(" a.txt") and ok.stderr == ""

    url = server.url("explicit", "x")
    missing = run(pyftps_argv, "get", url, tmp_path / "x", "--cafile", server.cafile, home=clean_environment)
    assert missing.returncode == 1
    assert missing.stderr == "pyftps: get /x: 550 /x: no such file or directory\n"

    nobody = f"ftpes://127.0.0.1:{free_port()}/"  # nothing listens there
    closed = run(pyftps_argv, "ls", nobody, "--insecure", home=clean_environment)
    assert closed.returncode == 3 and closed.stderr.startswith("pyftps: ls /: cannot connect")


def test_help_documents_the_exit_codes(pyftps_argv: list[str], clean_environment: Path) -> None:
    shown = run(pyftps_argv, "mirror", "--help", home=clean_environment)
    assert shown.returncode == 0
    assert "exit codes:" in shown.stdout and "130  interrupted" in shown.stdout
    assert "--cafile" in shown.stdout and "--parallel" in shown.stdout
