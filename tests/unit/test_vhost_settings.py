"""``[[vhost]]`` tables in the settings file: parsing, start-up validation, ``pyftps config check``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from tests.support.certs import make_self_signed_cert

from pyftps.auth.base import Principal
from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.cli import main
from pyftps.config import ServerConfig, VhostConfig
from pyftps.proto.permissions import Permission
from pyftps.serve import build_vhosts
from pyftps.server.vhosts import VirtualHost, VirtualHosts, confine_home
from pyftps.settings import SettingsError, add_serve_arguments, build_config, resolve


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyftps.toml"
    path.write_text(text)
    return path


def _config(tmp_path: Path, text: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(
        ["--state-dir", str(tmp_path / "state"), "--config", str(_write(tmp_path, text))]
    )
    return build_config(
        resolve(args, {}), pick_port=lambda host, given, privileged, fallback: given or fallback
    )


def _cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    paths = make_self_signed_cert(tmp_path / name, hostname=name)
    return paths.cert, paths.key


def test_no_vhosts_is_todays_single_host(tmp_path: Path) -> None:
    config = _config(tmp_path, "[server]\nport = 2121\n")
    assert config.vhosts == ()
    assert config.session.host_names == frozenset()


def test_vhost_tables_are_read_and_their_names_accepted_by_host(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path, "a.example")
    config = _config(
        tmp_path,
        f"""
[[vhost]]
names = ["A.Example.", "www.a.example"]
root = "{tmp_path / "a"}"
cert = "{cert}"
key = "{key}"
users = "sqlite:///{tmp_path / "a.db"}"

[[vhost]]
names = "b.example"
root = "{tmp_path / "b"}"
anonymous_root = "pub"
""",
    )
    a, b = config.vhosts
    assert a == VhostConfig(
        ("a.example", "www.a.example"), tmp_path / "a", cert, key, f"sqlite:///{tmp_path / 'a.db'}"
    )
    assert b.names == ("b.example",) and b.cert_file is None and b.users is None
    assert b.anonymous_root == tmp_path / "b" / "pub"  # relative: inside the host's root
    assert config.session.host_names == {"a.example", "www.a.example", "b.example"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('names = ["a.example"]', "'root' is required"),
        ('root = "/srv/x"', "'names' must list"),
        ('names = ["a.example"]\nroot = "/srv/x"\nport = 21', "unknown setting 'port'"),
        ('names = ["bad name"]\nroot = "/srv/x"', "not a DNS host name"),
        ('names = ["192.0.2.1"]\nroot = "/srv/x"', "an address, not a host name"),
        (
            'names = ["a.example"]\nroot = "/srv/x"\ncert = "/nonexistent/c.pem"',
            "'cert' and 'key' go together",
        ),
        (
            'names = ["a.example"]\nroot = "/srv/x"\ncert = "/nonexistent/c.pem"\nkey = "/nonexistent/k.pem"',
            "cannot read TLS certificate file '/nonexistent/c.pem'",
        ),
        ('names = ["a.example"]\nroot = "/srv/x"\nusers = "mysql://db"', "unsupported database URL scheme"),
    ],
)
def test_bad_vhost_tables_are_refused_with_a_clear_message(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(SettingsError, match="vhost #1") as caught:
        _config(tmp_path, f"[[vhost]]\n{table}\n")
    assert message in str(caught.value)


def test_a_name_used_twice_is_refused(tmp_path: Path) -> None:
    text = '[[vhost]]\nnames = ["a.example"]\nroot = "/srv/a"\n\n'
    text += '[[vhost]]\nnames = ["A.example."]\nroot = "/srv/b"\n'
    with pytest.raises(SettingsError, match=r"vhost #2: name 'a\.example' is already used by vhost #1"):
        _config(tmp_path, text)


def test_vhost_must_be_an_array_of_tables(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"write \[\[vhost\]\]"):
        _config(tmp_path, '[vhost]\nnames = ["a.example"]\n')


def test_config_check_reports_a_bad_vhost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path, '[[vhost]]\nnames = ["a.example"]\nroot = "/srv/a"\ncert = "/no/c.pem"\nkey = "/no/k.pem"\n'
    )
    assert main(["config", "check", str(path)]) == 2
    assert "vhost #1 (a.example)" in capsys.readouterr().err


def test_build_vhosts_opens_stores_and_certificates_and_reload_keeps_the_stores(tmp_path: Path) -> None:
    cert, key = _cert(tmp_path, "a.example")
    config = _config(
        tmp_path,
        f'[[vhost]]\nnames = ["a.example"]\nroot = "{tmp_path / "a"}"\ncert = "{cert}"\nkey = "{key}"\n'
        f'users = "sqlite:///{tmp_path / "a.db"}"\n',
    )
    hosts = build_vhosts(config)
    host = hosts.find("A.EXAMPLE.")
    assert host is not None and host.ssl_context is not None and (tmp_path / "a").is_dir()
    again = build_vhosts(config, running=hosts)  # SIGHUP: a fresh certificate, the same user store
    renewed = again.find("a.example")
    assert renewed is not None and renewed.authenticator is host.authenticator
    assert renewed.ssl_context is not host.ssl_context


def _static(home: str) -> StaticAuthenticator:
    principal = Principal("bob", home, Permission.all())
    return StaticAuthenticator.from_plain({"bob": ("pw", principal)}, hasher=cheap_hasher())


def test_homes_are_confined_to_the_hosts_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert confine_home(root, "bob") == str(root / "bob")
    assert confine_home(root, str(root / "x" / ".." / "bob")) == str(root / "bob")
    assert confine_home(root, "") == str(root)
    for outside in ("../other", str(tmp_path / "rootx"), "/etc", "s3://bucket/bob", "a/../../x"):
        assert confine_home(root, outside) is None, outside


def test_a_symlink_out_of_the_root_is_not_inside_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert confine_home(root, "link/elsewhere") is None


def test_a_hosts_users_are_renamed_for_limits_and_homes_resolved(tmp_path: Path) -> None:
    host = VirtualHost.confined(["a.example"], tmp_path, _static("bob"))
    principal = host.authenticator.authenticate("bob", "pw")
    assert principal is not None and principal.home == str(tmp_path / "bob")
    assert host.principal(principal).name == "a.example/bob"
    outside = VirtualHost.confined(["b.example"], tmp_path / "b", _static(str(tmp_path)))
    assert outside.authenticator.authenticate("bob", "pw") is None


def test_names_are_unique_across_hosts(tmp_path: Path) -> None:
    one = VirtualHost.confined(["a.example"], tmp_path, _static("x"))
    two = VirtualHost.confined(["b.example", "A.example"], tmp_path, _static("x"))
    with pytest.raises(ValueError, match=r"'a\.example' is configured twice"):
        VirtualHosts([one, two])


def test_a_hosts_anonymous_root_lets_anonymous_in_read_only(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f'[[vhost]]\nnames = ["a.example"]\nroot = "{tmp_path / "a"}"\nanonymous_root = "pub"\n'
        f'users = "sqlite:///{tmp_path / "a.db"}"\n',
    )
    host = build_vhosts(config).find("a.example")
    assert host is not None
    principal = host.authenticator.authenticate("anonymous", "guest@example.com")
    assert principal is not None and principal.home == str(tmp_path / "a" / "pub")
    assert principal.permissions == Permission.read_only()
    assert (tmp_path / "a" / "pub").is_dir()
