"""Unit tests for pyftps.server.login: the accepted login carries the user's TLS overrides."""

from __future__ import annotations

from dataclasses import fields

from pyftps.auth.base import Principal
from pyftps.proto import actions as a
from pyftps.proto.permissions import DirectoryRule, Permission
from pyftps.proto.policy import UserTLSPolicy
from pyftps.server.login import _accepted, _accepted_once


def test_accepted_copies_every_field_of_the_principal() -> None:
    # _accepted builds LoginAccepted field by field: a new field must be added there too.
    assert [f.name for f in fields(a.LoginAccepted)] == ["name", "permissions", "tls", "rules"]
    tls = UserTLSPolicy(require_protected_data=False)
    rules = (DirectoryRule("/pub", Permission.READ),)
    principal = Principal("bob", "/srv/bob", Permission.READ, directory_rules=rules, tls=tls)
    assert _accepted(principal) == a.OpOk(a.LoginAccepted("bob", Permission.READ, tls, rules))


def test_a_user_without_overrides_gets_the_listener_policy() -> None:
    result = _accepted(Principal("bob", "/srv/bob", tls=UserTLSPolicy()))
    assert isinstance(result.value, a.LoginAccepted)
    assert result.value.tls is None


def test_a_cached_principal_is_answered_with_one_shared_value() -> None:
    principal = Principal("bob", "/srv/bob")
    first = _accepted_once(principal)
    assert _accepted_once(principal) is first
    renewed = Principal("bob", "/srv/bob", Permission.READ)  # the cache entry was renewed
    assert _accepted_once(renewed) is not first
    assert _accepted_once(renewed) == _accepted(renewed)
