"""Per-user TLS overrides: the merge (SessionPolicy.with_user) and how a session applies it at login."""

from __future__ import annotations

import dataclasses

import pytest

from pyftps.proto import actions as a
from pyftps.proto.codes import ReplyCode
from pyftps.proto.policy import CCCPolicy, SessionPolicy, UserTLSPolicy
from tests.proto.harness import Harness, authenticate

LISTENER = SessionPolicy()  # requires TLS for login and PROT P; CCC after login


# ---------------------------------------------------------------------------------- the merge


def test_no_overrides_is_the_listener_policy() -> None:
    assert LISTENER.with_user(None) is LISTENER
    assert LISTENER.with_user(UserTLSPolicy()) is LISTENER


@pytest.mark.parametrize("listener_requires", [False, True])
def test_a_user_can_require_tls_for_login_but_not_drop_the_listener_requirement(
    listener_requires: bool,
) -> None:
    listener = SessionPolicy(require_tls_for_login=listener_requires)
    assert listener.with_user(UserTLSPolicy(require_tls_for_login=True)).require_tls_for_login
    # USER is answered before the server knows who logs in: a per-user "no" cannot loosen it.
    loosened = listener.with_user(UserTLSPolicy(require_tls_for_login=False))
    assert loosened.require_tls_for_login is listener_requires


@pytest.mark.parametrize("listener_requires", [False, True])
@pytest.mark.parametrize("user_requires", [False, True])
def test_protected_data_follows_the_user_either_way(listener_requires: bool, user_requires: bool) -> None:
    listener = SessionPolicy(require_protected_data=listener_requires)
    merged = listener.with_user(UserTLSPolicy(require_protected_data=user_requires))
    assert merged.require_protected_data is user_requires


@pytest.mark.parametrize("listener_ccc", list(CCCPolicy))
@pytest.mark.parametrize("user_ccc", [*CCCPolicy, None])
def test_ccc_follows_the_user_or_inherits(listener_ccc: CCCPolicy, user_ccc: CCCPolicy | None) -> None:
    merged = SessionPolicy(ccc=listener_ccc).with_user(UserTLSPolicy(ccc=user_ccc, data_reuse="warn"))
    assert merged.ccc is (user_ccc or listener_ccc)


def test_data_reuse_is_per_user_and_inherits_the_server_setting() -> None:
    assert LISTENER.data_reuse is None  # the server's tls.data_reuse
    assert LISTENER.with_user(UserTLSPolicy(data_reuse="off")).data_reuse == "off"
    assert LISTENER.with_user(UserTLSPolicy(ccc=CCCPolicy.NEVER)).data_reuse is None


def test_the_merge_keeps_everything_else() -> None:
    listener = SessionPolicy(idle_timeout=5.0, banner="hi", trace_commands=True, max_login_failures=7)
    merged = listener.with_user(UserTLSPolicy(require_protected_data=False, ccc=CCCPolicy.ALWAYS))
    assert dataclasses.replace(merged, require_protected_data=True, ccc=CCCPolicy.AFTER_LOGIN) == listener


# ---------------------------------------------------------------------------------- stored form


def test_settings_round_trip() -> None:
    policy = UserTLSPolicy(
        require_tls_for_login=True, require_protected_data=False, ccc=CCCPolicy.NEVER, data_reuse="off"
    )
    settings = policy.to_settings()
    assert settings == {
        "require_tls_for_login": True,
        "require_protected_data": False,
        "ccc": "never",
        "data_reuse": "off",
    }
    assert UserTLSPolicy.from_settings(settings) == policy
    assert UserTLSPolicy.from_settings({"quota_bytes": 5}) == UserTLSPolicy()
    assert UserTLSPolicy().to_settings() == {}
    assert policy.summary() == "tls-login=yes prot-p=no ccc=never reuse=off"
    assert UserTLSPolicy().summary() == ""


@pytest.mark.parametrize(
    "settings",
    [
        {"require_tls_for_login": "yes"},
        {"require_protected_data": 1},
        {"ccc": "sometimes"},
        {"ccc": ["never"]},
        {"data_reuse": "maybe"},
        {"data_reuse": 0},
    ],
)
def test_malformed_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"ccc|data_reuse|require_"):
        UserTLSPolicy.from_settings(settings)


# ---------------------------------------------------------------------------------- in a session


def _log_in(h: Harness, tls: UserTLSPolicy, password: str = "secret") -> list[int]:
    """USER/PASS as alice, with the authenticator answering with ``tls`` as her overrides."""
    h.hold_ops = True
    codes = h.codes("USER alice", f"PASS {password}")
    result = authenticate(h.users, a.Authenticate("alice", password))
    if isinstance(result, a.OpOk) and isinstance(result.value, a.LoginAccepted):
        result = a.OpOk(dataclasses.replace(result.value, tls=tls))
    codes += [got.code for got in h.complete_op(result)]
    h.hold_ops = False
    return codes


def test_a_tls_requiring_user_is_refused_in_clear_only_after_the_password() -> None:
    h = Harness(require_tls_for_login=False, login_failure_delay=2.0)
    assert _log_in(h, UserTLSPolicy(require_tls_for_login=True)) == [331, ReplyCode.NOT_LOGGED_IN]
    assert "must log in over TLS" in h.replies[-1].text
    assert h.count(a.EndLogin) == 1  # the I/O layer gives the session slot back
    assert h.sleeps == [2.0]  # the same pause as a wrong password
    assert not h.state.logged_in and h.state.user is None
    assert h.session.login_failures == 0  # the password was right: no step towards a ban
    assert h.code("PWD") == ReplyCode.NOT_LOGGED_IN
    assert h.session.policy == h.policy


def test_a_wrong_password_in_clear_gets_the_ordinary_reply() -> None:
    h = Harness(require_tls_for_login=False, login_failure_delay=2.0)
    assert _log_in(h, UserTLSPolicy(require_tls_for_login=True), "wrong") == [331, 530]
    assert h.replies[-1].text == "Login incorrect."
    assert h.session.login_failures == 1
    assert h.count(a.EndLogin) == 0


def test_the_tls_requiring_user_logs_in_over_tls() -> None:
    h = Harness(require_tls_for_login=False)
    h.secure()
    assert _log_in(h, UserTLSPolicy(require_tls_for_login=True)) == [331, ReplyCode.LOGGED_IN]
    assert h.session.policy.require_tls_for_login


def test_user_allowed_prot_c_on_a_prot_p_listener() -> None:
    h = Harness()
    h.secure()
    assert h.code("PROT C") == ReplyCode.REQUEST_DENIED_POLICY  # the listener's rule before login
    assert _log_in(h, UserTLSPolicy(require_protected_data=False)) == [331, 230]
    assert h.code("PROT C") == ReplyCode.OK
    h.passive()
    assert [got.code for got in h.send("RETR /readme.txt")] == [150, 226]
    assert h.transfers[-1].protect is False


def test_prot_c_chosen_before_login_meets_the_users_requirement_at_the_transfer() -> None:
    h = Harness(require_protected_data=False)
    h.secure(prot="C")
    assert _log_in(h, UserTLSPolicy(require_protected_data=True)) == [331, 230]
    h.passive()
    assert h.code("RETR /readme.txt") == ReplyCode.PROT_LEVEL_REFUSED  # RFC 4217 §10.2
    assert h.transfers == []
    assert h.code("PROT C") == ReplyCode.REQUEST_DENIED_POLICY
    assert h.codes("PROT P") == [200]


def test_ccc_per_user() -> None:
    h = Harness()
    h.secure()
    assert _log_in(h, UserTLSPolicy(ccc=CCCPolicy.NEVER)) == [331, 230]
    assert h.code("CCC") == ReplyCode.REQUEST_DENIED_POLICY

    h = Harness(ccc=CCCPolicy.NEVER)
    h.secure()
    assert _log_in(h, UserTLSPolicy(ccc=CCCPolicy.AFTER_LOGIN)) == [331, 230]
    assert h.code("CCC") == ReplyCode.OK


@pytest.mark.parametrize("ending", [("REIN",), ("USER bob",), ("CCC", "REIN")])
def test_the_overrides_end_with_the_login(ending: tuple[str, ...]) -> None:
    h = Harness()
    h.secure()
    _log_in(h, UserTLSPolicy(require_protected_data=False, data_reuse="off"))
    assert h.session.policy.data_reuse == "off"
    for line in ending:
        h.send(line)
    assert not h.state.logged_in
    assert h.session.policy == h.policy
