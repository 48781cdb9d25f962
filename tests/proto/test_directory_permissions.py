"""Per-directory permissions: rule matching, every command family at its target path, MLSx perm facts.

Carol's base set is read-only; her rules make ``/incoming`` a write-only drop box, ``/pub/private``
off limits and ``/scratch`` hers to do anything in. ``/public`` is there to catch prefix matching
that is not component-wise.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyftps.proto import actions as a
from pyftps.proto.codes import ReplyCode
from pyftps.proto.permissions import (
    AccessRules,
    DirectoryRule,
    Permission,
    dir_perm,
    file_perm,
    normalise_rule_path,
)
from tests.proto.harness import FakeFS, Harness

P = Permission
DENIED = (ReplyCode.FILE_UNAVAILABLE, ("Permission denied.",))
DROP_BOX = P.WRITE | P.APPEND | P.MKDIR
CAROL_RULES = {"/incoming": DROP_BOX, "/pub/private": P(0), "/scratch": P.all()}


class RulesHarness(Harness):
    """A harness whose authenticator also knows carol (read-only, with directory rules)."""

    def __init__(self, rules: dict[str, Permission], base: Permission, **kwargs: Any) -> None:
        self.carol = AccessRules.of(base, rules)
        super().__init__(**kwargs)

    def _answer(self, op: a.Op) -> a.OpResult:
        if isinstance(op, a.Authenticate) and op.username == "carol":
            if op.password != "secret":
                return a.OpFailed(ReplyCode.NOT_LOGGED_IN, "Login incorrect.")
            return a.OpOk(a.LoginAccepted("carol", self.carol.base, rules=self.carol.rules))
        return super()._answer(op)


def carol_fs() -> FakeFS:
    fs = FakeFS()
    for directory in ("/incoming", "/pub/private", "/scratch", "/scratch/old", "/public"):
        fs.add_dir(directory)
    fs.add_file("/incoming/up.txt", b"uploaded\n")
    fs.add_file("/pub/private/secret.txt", b"secret\n")
    fs.add_file("/scratch/f.txt", b"scratch\n")
    fs.add_file("/public/p.txt", b"public\n")
    return fs


def carol(rules: dict[str, Permission] | None = None) -> RulesHarness:
    h = RulesHarness(CAROL_RULES if rules is None else rules, P.read_only(), fs=carol_fs())
    h.secure()
    h.login("carol")
    return h


# ------------------------------------------------------------------------------- the rule set


def test_longest_component_wise_prefix_wins() -> None:
    rules = AccessRules.of(P.read_only(), {"/pub": P.LIST, "/pub/in": P.WRITE, "/pub/in/deep": P(0)})
    assert rules.effective("/") == P.read_only()
    assert rules.effective("/pub") == P.LIST
    assert rules.effective("/pub/x") == P.LIST
    assert rules.effective("/public") == P.read_only()  # not component-wise: no match
    assert rules.effective("/pub/in") == P.WRITE
    assert rules.effective("/pub/inbox") == P.LIST  # sibling sharing a prefix string
    assert rules.effective("/pub/in/a/b") == P.WRITE
    assert rules.effective("/pub/in/deep") == P(0)
    assert rules.effective("/pub/in/deeper") == P.WRITE
    assert rules.effective("/pu") == P.read_only()


def test_a_rule_replaces_the_base_set_it_does_not_add_to_it() -> None:
    rules = AccessRules.of(P.all(), {"/ro": P.read_only()})
    assert not rules.allows(P.WRITE, "/ro/x")
    assert rules.allows(P.WRITE, "/rox")
    assert rules.allows(P.LIST | P.READ, "/ro")


def test_a_root_rule_shadows_the_base_set_everywhere() -> None:
    rules = AccessRules.of(P.all(), {"/": P.LIST, "/up": P.WRITE})
    assert rules.effective("/") == P.LIST
    assert rules.effective("/x/y") == P.LIST
    assert rules.effective("/up/f") == P.WRITE
    assert rules.anywhere == P.LIST | P.WRITE  # the base set applies nowhere


def test_anywhere_is_the_union_of_base_and_rules() -> None:
    assert AccessRules.of(P.read_only(), {"/in": P.WRITE}).anywhere == P.LIST | P.READ | P.WRITE
    assert AccessRules().anywhere == P(0)


def test_order_of_definition_does_not_matter() -> None:
    one = AccessRules.of(P.LIST, {"/a": P.READ, "/a/b": P.WRITE, "/a/b/c": P.DELETE})
    other = AccessRules.of(P.LIST, {"/a/b/c": P.DELETE, "/a": P.READ, "/a/b": P.WRITE})
    assert one == other
    assert [rule.path for rule in one.rules] == ["/a/b/c", "/a/b", "/a"]


@pytest.mark.parametrize(
    ("given_path", "canonical"),
    [
        ("/pub/", "/pub"),
        ("//pub//x/", "/pub/x"),
        ("/./pub/.", "/pub"),
        ("/", "/"),
        ("/a b/c\\d", "/a b/c\\d"),
    ],
)
def test_rule_paths_are_normalised(given_path: str, canonical: str) -> None:
    assert normalise_rule_path(given_path) == canonical
    assert AccessRules.of(P(0), {given_path: P.LIST}).rules[0].path == canonical


@pytest.mark.parametrize(
    "bad", ["", "pub", "./pub", "/pub/..", "/../etc", "/a/../b", "/a\x00b", "/" + "x" * 300]
)
def test_bad_rule_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_rule_path(bad)


def test_duplicate_and_uncanonical_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="same path"):
        AccessRules.of(P(0), {"/pub": P.LIST, "/pub/": P.READ})
    with pytest.raises(ValueError, match="canonical"):
        DirectoryRule("/pub/", P.LIST)


def test_permission_parse_knows_none() -> None:
    assert P.parse("none") == P.parse("") == P(0)


segments = st.sampled_from(["a", "b", "ab", "a.b", "pub", "public", "x y"])
virtual_paths = st.lists(segments, max_size=4).map(lambda parts: "/" + "/".join(parts))
flags = st.sampled_from(list(P))


def reference_effective(base: Permission, rules: dict[str, Permission], path: str) -> Permission:
    """The definition, spelled out on components: the deepest rule whose components start the path's."""
    parts = [p for p in path.split("/") if p]
    best, best_depth = base, -1
    for rule_path, granted in rules.items():
        rule_parts = [p for p in rule_path.split("/") if p]
        if parts[: len(rule_parts)] == rule_parts and len(rule_parts) > best_depth:
            best, best_depth = granted, len(rule_parts)
    return best


@settings(max_examples=300, deadline=None)
@given(
    base=flags,
    rules=st.dictionaries(virtual_paths, flags, max_size=6),
    path=virtual_paths,
)
def test_effective_matches_the_component_wise_definition(
    base: Permission, rules: dict[str, Permission], path: str
) -> None:
    access = AccessRules.of(base, rules)
    assert access.effective(path) == reference_effective(base, rules, path)
    assert access.effective(path) in access.anywhere  # the dispatch pre-check never refuses wrongly


@settings(max_examples=300, deadline=None)
@given(
    base=flags,
    rules=st.dictionaries(virtual_paths, flags, max_size=6),
    directory=virtual_paths,
    name=segments,
    is_dir=st.booleans(),
)
def test_listing_shortcut_matches_effective(
    base: Permission, rules: dict[str, Permission], directory: str, name: str, is_dir: bool
) -> None:
    """An MLSD entry's perm fact (one lookup) equals the fact of its full path's effective set."""
    access = AccessRules.of(base, rules)
    listed = access.effective(directory)
    t = a.Transfer(
        a.TransferKind.MLSD,
        directory,
        perm_for_file=file_perm(listed),
        perm_for_dir=dir_perm(listed),
        access=access,
    )
    path = directory.rstrip("/") + "/" + name
    assert t.entry_perm(name, is_dir=is_dir) == access.mlsx_perm(path, is_dir=is_dir)


# ------------------------------------------------------------------------------- commands


def storage_ops(h: Harness) -> list[a.Op]:
    return [op for op in h.ops if not isinstance(op, a.Authenticate | a.OpenPassive)]


TRANSFERS = [
    ("RETR /readme.txt", True),  # base set
    ("RETR /public/p.txt", True),  # /pub's neighbour, not under it
    ("RETR /scratch/f.txt", True),
    ("RETR /incoming/up.txt", False),  # a drop box cannot be read
    ("RETR /pub/private/secret.txt", False),
    ("STOR /incoming/new.txt", True),
    ("STOR /scratch/new.txt", True),
    ("STOR /new.txt", False),
    ("STOR /incomingx", False),
    ("STOR /pub/private/new.txt", False),
    ("APPE /incoming/up.txt", True),
    ("APPE /readme.txt", False),
    ("LIST /", True),
    ("LIST /pub", True),
    ("LIST /incoming", False),
    ("NLST /incoming", False),
    ("MLSD /incoming", False),
    ("LIST -la /pub/private", False),
    ("MLSD /scratch", True),
]


@pytest.mark.parametrize(("line", "allowed"), TRANSFERS)
def test_transfers_check_their_target(line: str, allowed: bool) -> None:
    h = carol()
    h.passive()
    replies = h.send(line)
    if allowed:
        assert replies[-1].code == ReplyCode.CLOSING_DATA, replies
        assert len(h.transfers) == 1
    else:
        assert replies == [DENIED]
        assert h.transfers == []
        assert h.state.passive_ready  # refused before the data channel was used


def test_stou_checks_the_name_it_makes() -> None:
    h = carol()
    h.passive()
    assert h.send("STOU") == [DENIED]  # in / (read-only)
    assert h.code("CWD /incoming") == ReplyCode.FILE_ACTION_OK
    assert h.send("STOU")[-1].code == ReplyCode.CLOSING_DATA
    assert h.transfers[-1].path.startswith("/incoming/file.")


def test_rest_survives_a_refused_transfer() -> None:
    h = carol()
    h.send("TYPE I")
    h.passive()
    assert h.code("REST 5") == ReplyCode.PENDING_FURTHER_INFO
    assert h.send("RETR /incoming/up.txt") == [DENIED]
    assert h.send("RETR /scratch/f.txt")[-1].code == ReplyCode.CLOSING_DATA
    assert h.transfers[-1].offset == 5


FILE_COMMANDS = [
    ("MKD /incoming/d", True),
    ("MKD /scratch/d", True),
    ("MKD /d", False),
    ("MKD /pub/private/d", False),
    ("RMD /scratch/old", True),
    ("RMD /incoming/sub", False),  # no RMDIR in the drop box
    ("RMD /pub", False),
    ("DELE /scratch/f.txt", True),
    ("DELE /incoming/up.txt", False),
    ("DELE /readme.txt", False),
    ("SIZE /readme.txt", True),
    ("SIZE /incoming/up.txt", False),
    ("MDTM /scratch/f.txt", True),
    ("MDTM /pub/private/secret.txt", False),
    ("MFMT 20240101000000 /scratch/f.txt", True),
    ("MFMT 20240101000000 /incoming/up.txt", True),  # WRITE is granted there
    ("MFMT 20240101000000 /readme.txt", False),
    ("MLST /scratch", True),
    ("MLST /incoming", False),
    ("MLST /incoming/up.txt", False),
    ("SITE CHMOD 600 /scratch/f.txt", True),
    ("SITE CHMOD 600 /readme.txt", False),
    ("STAT /pub", True),
    ("STAT /incoming", False),
    ("STAT /pub/private/secret.txt", False),
    ("RNFR /scratch/f.txt", True),
    ("RNFR /readme.txt", False),
    ("RNFR /incoming/up.txt", False),  # no RENAME in the drop box
]


@pytest.mark.parametrize(("line", "allowed"), FILE_COMMANDS)
def test_file_commands_check_their_target(line: str, allowed: bool) -> None:
    h = carol()
    got = h.one(line)
    if allowed:
        assert got.code < 400, got
        assert storage_ops(h), "an allowed command reaches storage"
    else:
        assert got == DENIED
        assert storage_ops(h) == [], "nothing reaches storage before the permission check"


def test_relative_paths_are_checked_once_resolved() -> None:
    h = carol()
    assert h.code("CWD /scratch") == ReplyCode.FILE_ACTION_OK
    assert h.one("DELE ../incoming/up.txt") == DENIED
    assert h.one("MKD ../../incoming/./d").code == ReplyCode.PATH_CREATED
    assert "/incoming/d" in h.fs.entries
    assert h.code("DELE f.txt") == ReplyCode.FILE_ACTION_OK


def test_cwd_needs_no_permission() -> None:
    h = carol()
    assert h.code("CWD /pub/private") == ReplyCode.FILE_ACTION_OK
    assert h.code("CWD /incoming") == ReplyCode.FILE_ACTION_OK
    assert h.code("CDUP") == ReplyCode.OK


def test_rename_checks_source_and_destination() -> None:
    h = carol()
    assert h.codes("RNFR /scratch/f.txt", "RNTO /scratch/g.txt") == [350, 250]
    assert "/scratch/g.txt" in h.fs.entries


def test_a_refused_rnto_renames_nothing() -> None:
    h = carol()
    assert h.code("RNFR /scratch/f.txt") == ReplyCode.PENDING_FURTHER_INFO
    assert h.one("RNTO /incoming/f.txt") == DENIED
    assert not any(isinstance(op, a.RenamePath) for op in h.ops)
    assert "/scratch/f.txt" in h.fs.entries and "/incoming/f.txt" not in h.fs.entries
    assert h.state.rename_from is None  # the pair is spent
    assert h.code("RNTO /scratch/g.txt") == ReplyCode.BAD_SEQUENCE


def test_rename_out_of_a_read_only_area_is_refused_at_rnfr() -> None:
    h = carol({"/in": P.all()})
    assert h.one("RNFR /readme.txt") == DENIED
    assert h.code("RNTO /in/readme.txt") == ReplyCode.BAD_SEQUENCE


def test_a_flag_granted_nowhere_is_refused_at_dispatch() -> None:
    h = carol({"/incoming": DROP_BOX})
    assert h.one("DELE /incoming/up.txt") == DENIED
    assert h.one("SITE CHMOD 600 /readme.txt") == DENIED
    assert storage_ops(h) == []


def test_a_user_without_rules_behaves_as_before() -> None:
    h = Harness.ready()
    h.login("bob")  # read-only, no rules
    h.passive()
    assert h.send("STOR x") == [DENIED]
    assert h.send("RETR /readme.txt")[-1].code == ReplyCode.CLOSING_DATA
    assert h.state.access == AccessRules(P.read_only())


def test_rules_are_forgotten_at_rein_and_a_new_user() -> None:
    h = carol()
    assert h.state.access.rules
    assert h.code("REIN") == ReplyCode.SERVICE_READY
    assert h.state.access == AccessRules()
    assert h.state.permissions == P(0)


# ------------------------------------------------------------------------------- MLSx perm facts


def test_mlst_perm_fact_follows_the_rule_of_the_path() -> None:
    h = carol({"/incoming": DROP_BOX | P.LIST, "/scratch": P.all()})
    assert "perm=ecdflmp;" in h.one("MLST /scratch").lines[1]
    assert "perm=eclm;" in h.one("MLST /incoming").lines[1]
    assert "perm=aw;" in h.one("MLST /incoming/up.txt").lines[1]
    assert "perm=r;" in h.one("MLST /readme.txt").lines[1]
    assert "perm=el;" in h.one("MLST /pub").lines[1]


def test_mlsd_perm_facts_follow_each_entry() -> None:
    h = carol()
    h.passive()
    assert h.send("MLSD /")[-1].code == ReplyCode.CLOSING_DATA
    t = h.transfers[-1]
    assert (t.perm_for_file, t.perm_for_dir) == ("r", "el")  # the listed directory's own rule
    assert t.entry_perm("incoming", is_dir=True) == "ecm"
    assert t.entry_perm("scratch", is_dir=True) == "ecdflmp"
    assert t.entry_perm("public", is_dir=True) == "el"
    assert t.entry_perm("readme.txt", is_dir=False) == "r"
    h.passive()
    h.send("MLSD /pub")
    t = h.transfers[-1]
    assert t.entry_perm("private", is_dir=True) == "e"
    assert t.entry_perm("data.bin", is_dir=False) == "r"


def test_without_rules_the_transfer_carries_no_rule_set() -> None:
    h = Harness.ready()
    h.passive()
    h.send("MLSD /")
    t = h.transfers[-1]
    assert t.access is None
    assert t.entry_perm("pub", is_dir=True) == dir_perm(P.all()) == "ecdflmp"
    assert t.entry_perm("readme.txt", is_dir=False) == file_perm(P.all()) == "adfrw"
