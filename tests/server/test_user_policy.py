"""Per-user TLS overrides and per-user max_sessions over real sockets (issue #4)."""

from __future__ import annotations

import logging

import pytest

from pyftps.auth.base import Permission, Principal, UserLimits, UserTLSPolicy
from pyftps.config import ReusePolicy
from tests.server.conftest import PASSWORD, StartServer

CAROL = Principal("carol", "", Permission.all(), tls=UserTLSPolicy(require_tls_for_login=True))
DAVE = Principal("dave", "", Permission.all(), tls=UserTLSPolicy(require_protected_data=False))
ERIN = Principal("erin", "", Permission.all(), tls=UserTLSPolicy(data_reuse="off"))
FRANK = Principal("frank", "", Permission.all(), limits=UserLimits(max_sessions=1))


def test_tls_requiring_user_is_refused_in_clear_after_the_password(start_server: StartServer) -> None:
    server = start_server(policy={"require_tls_for_login": False}, users={"carol": CAROL})
    client = server.connect()
    client.expect("USER carol", 331)  # the same as for any name: nothing tells whether it exists
    refused = client.expect(f"PASS {PASSWORD}", 530)
    assert "must log in over TLS" in refused.text
    client.expect("PWD", 530)  # not logged in
    # Another user on the same listener may still log in in clear.
    client.login("alice", PASSWORD)
    client.expect("PWD", 257)


def test_wrong_password_in_clear_gets_the_ordinary_reply(start_server: StartServer) -> None:
    server = start_server(policy={"require_tls_for_login": False}, users={"carol": CAROL})
    client = server.connect()
    client.expect("USER carol", 331)
    wrong = client.expect("PASS wrong", 530)
    client.expect("USER nobody", 331)
    assert client.expect("PASS wrong", 530).text == wrong.text == "530 Login incorrect."


def test_tls_requiring_user_is_accepted_over_tls(start_server: StartServer) -> None:
    server = start_server(policy={"require_tls_for_login": False}, users={"carol": CAROL})
    client = server.login("carol")
    (server.root / "f").write_bytes(b"content")
    assert client.retr("f") == b"content"


def test_refused_cleartext_login_gives_its_session_slot_back(start_server: StartServer) -> None:
    carol = Principal("carol", "", tls=CAROL.tls, limits=UserLimits(max_sessions=1))
    server = start_server(policy={"require_tls_for_login": False}, users={"carol": carol})
    clear = server.connect()
    clear.expect("USER carol", 331)
    clear.expect(f"PASS {PASSWORD}", 530)
    server.login("carol").expect("NOOP", 200)  # the refused login holds no slot


def test_user_allowed_prot_c_on_a_prot_p_listener_transfers_in_clear(start_server: StartServer) -> None:
    server = start_server(users={"dave": DAVE})
    (server.root / "f").write_bytes(b"plain content")
    client = server.connect()
    client.auth_tls()
    client.expect("PBSZ 0", 200)
    client.expect("PROT C", 534)  # the listener's rule until dave is known
    client.login("dave", PASSWORD)
    client.expect("PROT C", 200)
    client.protect = False
    result = client.transfer_ok("RETR f")
    assert result.data == b"plain content" and not result.data_tls
    # alice, on the same listener, still must protect her data.
    other = server.connect()
    other.auth_tls()
    other.expect("PBSZ 0", 200)
    other.login("alice", PASSWORD)
    other.expect("PROT C", 534)


def test_per_user_reuse_off_accepts_a_full_data_handshake(start_server: StartServer) -> None:
    server = start_server(users={"erin": ERIN})
    (server.root / "f").write_bytes(b"content")
    erin = server.login("erin")
    result = erin.transfer("RETR f", session_reuse=False)
    assert result.session_reused is False and result.codes == (150, 226)
    assert result.data == b"content"
    # The server-wide "require" still holds for everybody else.
    alice = server.login("alice")
    refused = alice.transfer("RETR f", session_reuse=False)
    assert refused.final is not None and refused.final.code == 522


def test_per_user_reuse_require_on_a_reuse_off_server(start_server: StartServer) -> None:
    strict = Principal("erin", "", tls=UserTLSPolicy(data_reuse="require"))
    server = start_server(data_reuse=ReusePolicy.OFF, users={"erin": strict})
    erin = server.login("erin")
    refused = erin.transfer("LIST", session_reuse=False)
    assert refused.final is not None and refused.final.code == 522
    assert erin.transfer("LIST").codes == (150, 226)


def test_per_user_max_sessions(start_server: StartServer) -> None:
    server = start_server(users={"frank": FRANK})
    first = server.login("frank")
    second = server.connect()
    second.auth_tls()
    second.prot_p()
    second.expect("USER frank", 331)
    assert "Too many sessions" in second.expect(f"PASS {PASSWORD}", 530).text
    server.login("alice").expect("NOOP", 200)  # the server-wide limit (10) is not frank's
    first.expect("QUIT", 221)
    first.wait_closed()
    second.expect("USER frank", 331)
    second.expect(f"PASS {PASSWORD}", 230)


def test_per_user_max_sessions_may_exceed_the_server_wide_limit(start_server: StartServer) -> None:
    from pyftps.server.guard import ConnectionLimits

    roomy = Principal("frank", "", limits=UserLimits(max_sessions=3))
    server = start_server(limits=ConnectionLimits(max_per_user=1), users={"frank": roomy})
    sessions = [server.login("frank") for _ in range(3)]
    fourth = server.connect()
    fourth.auth_tls()
    fourth.expect("USER frank", 331)
    fourth.expect(f"PASS {PASSWORD}", 530)
    assert all(s.send("NOOP").code == 200 for s in sessions)


def test_prot_c_chosen_before_login_is_521_for_a_user_who_requires_prot_p(start_server: StartServer) -> None:
    strict = Principal("grace", "", tls=UserTLSPolicy(require_protected_data=True))
    server = start_server(policy={"require_protected_data": False}, users={"grace": strict})
    (server.root / "f").write_bytes(b"content")
    client = server.connect()
    client.auth_tls()
    client.expect("PBSZ 0", 200)
    client.expect("PROT C", 200)  # allowed by the listener while nobody is logged in
    client.login("grace", PASSWORD)
    refused = client.transfer("RETR f", protect=False)
    assert refused.codes == (521,)
    client.expect("PROT C", 534)
    client.prot_p()
    assert client.retr("f") == b"content"


def test_refused_cleartext_login_is_not_logged_as_a_login(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(policy={"require_tls_for_login": False}, users={"carol": CAROL})
    client = server.connect()
    with caplog.at_level(logging.INFO, logger="pyftps.session"):
        client.expect("USER carol", 331)
        client.expect(f"PASS {PASSWORD}", 530)
        client.expect("NOOP", 200)  # the login's log lines are written before this reply
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "logged in" in m], messages
    assert [m for m in messages if "refused cleartext login of carol" in m], messages
