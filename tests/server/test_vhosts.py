"""Virtual hosts over real sockets (RFC 7151): HOST and SNI pick a host's certificate, users and root.

Two hosts, ``a.test`` and ``b.test``, each with its own self-signed certificate, SQLite user store
and root; the fixture's default host (alice/bob, the default certificate) stays as it was.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.sqlite import SqliteUserStore
from pyftps.proto.permissions import Permission
from pyftps.server.guard import ConnectionLimits
from pyftps.server.vhosts import VirtualHost, VirtualHosts
from pyftps.tls.contexts import client_context, server_context
from tests.server.conftest import PASSWORD, ServerHandle, StartServer
from tests.support.certs import make_self_signed_cert
from tests.support.ftp_raw import FtpRaw

NAMES = ("a.test", "b.test")


@dataclasses.dataclass
class Site:
    name: str
    root: Path
    cert: Path
    store: SqliteUserStore

    def context(self) -> ssl.SSLContext:
        """A client context that trusts only this host's certificate and checks its name."""
        return client_context(cafile=self.cert)


@dataclasses.dataclass
class Hosts:
    server: ServerHandle
    sites: dict[str, Site]
    both_ca: Path  # trusts both hosts' certificates

    def connect(self, name: str | None, *, implicit: bool = False, sni: str | None = None) -> FtpRaw:
        """A control connection; ``sni`` (default: ``name``) is sent in the ClientHello."""
        server_name = sni or name or "localhost"
        context = self.sites[name].context() if name in self.sites else self.server.client_context()
        host, port = self.server.implicit if implicit else self.server.explicit
        client = FtpRaw.connect(
            host, port, implicit=implicit, context=context, server_hostname=server_name, timeout=10.0
        )
        self.server.clients.append(client)
        return client

    def login_host_first(self, name: str, user: str) -> FtpRaw:
        """Explicit FTPS the RFC 7151 way: HOST, then AUTH TLS (the host's certificate), then login."""
        client = self.connect(name)
        client.expect(f"HOST {name}", 220)
        client.auth_tls()
        client.prot_p()
        client.login(user, PASSWORD)
        client.expect("TYPE I", 200)
        return client


def _site(tmp: Path, name: str, users: dict[str, str]) -> Site:
    root = tmp / name / "root"
    root.mkdir(parents=True)
    cert = make_self_signed_cert(tmp / name / "tls", hostname=name)
    store = SqliteUserStore(tmp / name / "users.db", hasher=cheap_hasher())
    for user, home in users.items():
        (root / home).mkdir(parents=True, exist_ok=True)
        store.add_user(user, PASSWORD, home, Permission.all())
    return Site(name, root, cert.cert, store)


def _install(server: ServerHandle, sites: dict[str, Site], **config_changes: object) -> None:
    """Serve the sites as virtual hosts from now on, through the SIGHUP path (``Server.reload``)."""
    hosts = VirtualHosts(
        VirtualHost.confined(
            [site.name],
            site.root,
            site.store,
            server_context(site.cert, site.cert.with_name("key.pem"), num_tickets=1),
        )
        for site in sites.values()
    )
    config = server.server.config
    policy = dataclasses.replace(config.session, host_names=hosts.names)
    config = dataclasses.replace(config, session=policy, **config_changes)  # type: ignore[arg-type]
    ssl_context = server.server.context.ssl_context
    server.call(_reload(server, config, ssl_context, hosts))


async def _reload(server: ServerHandle, config: object, context: object, hosts: VirtualHosts) -> None:
    server.server.reload(config, context, hosts)  # type: ignore[arg-type]


@pytest.fixture
def hosts(start_server: StartServer, tmp_path: Path) -> Iterator[Hosts]:
    server = start_server()
    sites = {
        "a.test": _site(tmp_path / "vhosts", "a.test", {"anna": "anna", "carol": "carol"}),
        "b.test": _site(tmp_path / "vhosts", "b.test", {"bert": "bert", "carol": "carol"}),
    }
    (sites["a.test"].root / "anna" / "a-only.txt").write_bytes(b"file of host a\n")
    (sites["b.test"].root / "bert" / "b-only.txt").write_bytes(b"file of host b\n")
    _install(server, sites)
    both = tmp_path / "both.pem"
    both.write_bytes(b"".join(site.cert.read_bytes() for site in sites.values()))
    yield Hosts(server, sites, both)
    for site in sites.values():
        site.store.close()


def _subject(client: FtpRaw) -> str:
    assert isinstance(client.sock, ssl.SSLSocket)
    certificate = client.sock.getpeercert()
    names = [value for rdn in certificate["subject"] for key, value in rdn if key == "commonName"]
    return str(names[0])


# ---------------------------------------------------------------------------- certificates


def test_host_then_auth_presents_the_hosts_certificate(hosts: Hosts) -> None:
    client = hosts.connect("b.test")
    client.expect("HOST b.test", 220)
    client.auth_tls()  # verified against b.test's certificate only, with its name
    assert _subject(client) == "b.test"


def test_implicit_with_sni_presents_the_hosts_certificate(hosts: Hosts) -> None:
    client = hosts.connect("a.test", implicit=True)
    assert client.greeting is not None and client.greeting.code == 220
    assert _subject(client) == "a.test"


def test_auth_with_sni_and_no_host_presents_the_hosts_certificate(hosts: Hosts) -> None:
    client = hosts.connect("b.test")
    client.auth_tls()
    assert _subject(client) == "b.test"
    client.expect("USER bert", 331)
    client.expect(f"PASS {PASSWORD}", 230)  # SNI alone selected b.test's users


def test_without_host_or_sni_the_default_host_is_served(hosts: Hosts) -> None:
    client = hosts.server.login("alice")  # the fixture's own users and certificate
    assert _subject(client) not in NAMES
    client.expect("PWD", 257)


def test_host_not_matching_sni_is_refused(hosts: Hosts) -> None:
    client = hosts.connect("a.test")
    client.auth_tls()
    client.expect("HOST b.test", 504)
    client.expect("HOST a.test", 220)


def test_unknown_host_name_is_refused(hosts: Hosts) -> None:
    client = hosts.connect(None)
    client.expect("HOST c.test", 504)


# ---------------------------------------------------------------------------- users and roots


def test_a_user_of_one_host_cannot_log_in_on_another(hosts: Hosts) -> None:
    client = hosts.connect("b.test")
    client.expect("HOST b.test", 220)
    client.auth_tls()
    client.expect("USER anna", 331)
    client.expect(f"PASS {PASSWORD}", 530)


def test_the_default_hosts_users_are_not_a_hosts_users(hosts: Hosts) -> None:
    client = hosts.connect("a.test")
    client.expect("HOST a.test", 220)
    client.auth_tls()
    client.expect("USER alice", 331)
    client.expect(f"PASS {PASSWORD}", 530)


@pytest.mark.parametrize("name", NAMES)
def test_transfers_resume_the_session_on_each_host(hosts: Hosts, name: str) -> None:
    user = "anna" if name == "a.test" else "bert"
    for client in (hosts.login_host_first(name, user), _implicit_login(hosts, name, user)):
        transfer = client.stor("up.bin", b"x" * 5000)
        assert transfer.session_reused
        assert client.retr("up.bin") == b"x" * 5000
        assert f"{name[0]}-only.txt" in client.nlst()
        client.expect("DELE up.bin", 250)
    assert not (hosts.sites[name].root / user / "up.bin").exists()


def _implicit_login(hosts: Hosts, name: str, user: str) -> FtpRaw:
    client = hosts.connect(name, implicit=True)
    client.login(user, PASSWORD)
    client.expect("TYPE I", 200)
    return client


def test_a_client_of_one_host_cannot_reach_anothers_files(hosts: Hosts) -> None:
    client = hosts.login_host_first("a.test", "anna")
    client.expect("CWD ../../b.test/root/bert", 550)
    assert client.nlst("/") == ["a-only.txt"]
    assert client.transfer("RETR ../../../b.test/root/bert/b-only.txt").final is None  # 550, no 150
    assert (hosts.sites["a.test"].root / "anna").is_dir()


def test_a_home_outside_the_hosts_root_cannot_log_in(hosts: Hosts, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    hosts.sites["a.test"].store.add_user("eve", PASSWORD, str(outside), Permission.all())
    hosts.sites["a.test"].store.add_user("mallory", PASSWORD, "../../b.test/root", Permission.all())
    for user in ("eve", "mallory"):
        client = hosts.connect("a.test")
        client.expect("HOST a.test", 220)
        client.auth_tls()
        client.expect(f"USER {user}", 331)
        client.expect(f"PASS {PASSWORD}", 530)


def test_rein_forgets_the_host(hosts: Hosts) -> None:
    client = hosts.connect(None)
    client.expect("HOST a.test", 220)
    client.expect("REIN", 220)
    client.auth_tls()
    client.login("alice", PASSWORD)  # a default-host user again


def test_the_same_user_name_on_two_hosts_is_two_users(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(limits=ConnectionLimits(max_per_user=1))
    sites = {name: _site(tmp_path / "vhosts", name, {"carol": "carol", "dave": "dave"}) for name in NAMES}
    try:
        _install(server, sites)
        hosts = Hosts(server, sites, tmp_path / "unused.pem")
        hosts.login_host_first("a.test", "carol")
        hosts.login_host_first("b.test", "carol")  # not a second session of a.test's carol
        client = hosts.connect("a.test")
        client.expect("HOST a.test", 220)
        client.auth_tls()
        client.expect("USER carol", 331)
        client.expect(f"PASS {PASSWORD}", 530)  # this one is: the per-user limit of 1 holds
    finally:
        for site in sites.values():
            site.store.close()


# ---------------------------------------------------------------------------- TLS sessions


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"])
def test_a_ticket_of_one_host_does_not_resume_on_anothers_data_connection(
    hosts: Hosts, version: ssl.TLSVersion
) -> None:
    """HOST before AUTH seals the control session's tickets with that host's own keys.

    Under TLS 1.2 the server cannot tell which connection a ticket came from (tls.contexts): only
    the separate keys keep a.test's ticket from resuming on b.test.
    """
    shared = client_context(cafile=hosts.both_ca)  # one client context: the session may be offered
    shared.maximum_version = version
    sessions = {}
    for name, user in (("a.test", "anna"), ("b.test", "bert")):
        client = FtpRaw.connect(*hosts.server.explicit, context=shared, server_hostname=name, timeout=10.0)
        hosts.server.clients.append(client)
        client.expect(f"HOST {name}", 220)
        client.auth_tls()
        client.prot_p()
        client.login(user, PASSWORD)
        client.expect("TYPE I", 200)
        sessions[name] = client
    a_session = sessions["a.test"].session
    assert a_session is not None
    b = sessions["b.test"]
    plan = b.pasv()
    sock = b.open_tcp(plan)
    try:
        b.expect("LIST", 150)
        data = shared.wrap_socket(sock, server_hostname="b.test", session=a_session)
        reused = data.session_reused
        data.close()
    except (ssl.SSLError, OSError):
        reused = False
    finally:
        sock.close()
    assert not reused
    assert b.read_reply().code == 522  # RFC 4217 §10.2: the data connection must resume this session


def test_reload_presents_a_renewed_certificate_and_live_sessions_keep_theirs(
    hosts: Hosts, tmp_path: Path
) -> None:
    live = _implicit_login(hosts, "a.test", "anna")
    assert isinstance(live.sock, ssl.SSLSocket)
    old_der = live.sock.getpeercert(binary_form=True)
    renewed = make_self_signed_cert(tmp_path / "renewed", hostname="a.test")
    hosts.sites["a.test"] = dataclasses.replace(hosts.sites["a.test"], cert=renewed.cert)
    _install(hosts.server, hosts.sites)  # what SIGHUP does with re-read certificates
    fresh = hosts.connect("a.test", implicit=True)  # trusts only the renewed certificate
    assert isinstance(fresh.sock, ssl.SSLSocket)
    assert fresh.sock.getpeercert(binary_form=True) != old_der
    assert live.stor("still.bin", b"y" * 100).session_reused  # the old session's data still resumes
