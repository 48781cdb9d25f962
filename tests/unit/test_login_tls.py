"""Unit tests for pyftps.server.login: the accepted login carries the user's TLS overrides."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace
from typing import cast

from pyftps.auth.base import Principal
from pyftps.proto import actions as a
from pyftps.proto.permissions import Permission
from pyftps.proto.policy import UserTLSPolicy
from pyftps.server.login import _with_tls


def test_with_tls_copies_every_field_of_login_accepted() -> None:
    # _with_tls builds LoginAccepted field by field (no dataclasses.replace on the login path):
    # a new field must be added there too.
    assert [f.name for f in fields(a.LoginAccepted)] == ["name", "permissions", "tls", "rules"]
    accepted = a.LoginAccepted("bob", Permission.READ, rules=())
    tls = UserTLSPolicy(require_protected_data=False)
    result = _with_tls(a.OpOk(accepted), cast(Principal, SimpleNamespace(tls=tls)))
    assert isinstance(result, a.OpOk)
    assert result.value == a.LoginAccepted("bob", Permission.READ, tls, ())


def test_with_tls_leaves_failures_and_same_policies_alone() -> None:
    tls = UserTLSPolicy()
    principal = cast(Principal, SimpleNamespace(tls=tls))
    failed = a.OpFailed(530, "Login incorrect.")
    assert _with_tls(failed, principal) is failed
    done = a.OpOk(a.LoginAccepted("bob", Permission.READ, tls))
    assert _with_tls(done, principal) is done
