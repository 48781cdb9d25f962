"""HOST tells the I/O layer which virtual host logins are for (RFC 7151): the SelectHost action."""

from __future__ import annotations

from pyftps.proto import actions as a
from tests.proto.harness import Harness

NAMES = frozenset({"a.example", "b.example"})


def _selected(h: Harness) -> list[str | None]:
    return [action.name for action in h.actions if isinstance(action, a.SelectHost)]


def test_host_selects_the_named_host_before_its_reply() -> None:
    h = Harness(host_names=NAMES)
    assert h.code("HOST a.example") == 220
    assert h.kinds(h.last)[:2] == ["SelectHost", "220"]
    assert _selected(h) == ["a.example"]


def test_host_names_compare_without_case() -> None:
    h = Harness(host_names=NAMES)
    assert h.code("HOST B.Example") == 220
    assert _selected(h) == ["b.example"]
    assert h.state.host == "b.example"


def test_unknown_host_selects_nothing() -> None:
    h = Harness(host_names=NAMES)
    assert h.code("HOST c.example") == 504
    assert _selected(h) == []


def test_host_after_login_selects_nothing() -> None:
    h = Harness.ready(host_names=NAMES)
    assert h.code("HOST a.example") == 503
    assert _selected(h) == []


def test_host_after_auth_must_match_sni_and_then_selects_it() -> None:
    h = Harness(host_names=NAMES, sni="B.example.")
    h.secure()
    assert h.code("HOST a.example") == 504
    assert _selected(h) == []
    assert h.code("HOST b.example") == 220
    assert _selected(h) == ["b.example"]


def test_host_resets_the_login_then_selects() -> None:
    h = Harness(host_names=NAMES)
    h.send("USER alice")
    assert h.code("HOST a.example") == 220
    assert h.code("PASS secret") == 503  # the pending USER went with the old host


def test_rein_after_host_goes_back_to_the_default_host() -> None:
    h = Harness(host_names=NAMES)
    h.send("HOST a.example")
    h.send("REIN")
    assert h.kinds(h.last)[0] == "SelectHost"
    assert _selected(h) == ["a.example", None]


def test_rein_without_host_selects_nothing() -> None:
    h = Harness()
    h.send("REIN")
    assert _selected(h) == []


def test_host_of_an_address_literal_selects_it_for_the_io_layer_to_ignore() -> None:
    h = Harness(host_names=NAMES)
    literal = h.session.local_host
    assert h.code(f"HOST {literal}") == 220
    assert _selected(h) == [literal]
