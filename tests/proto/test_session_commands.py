"""ServerSession command by command: argument rules, gating, sequencing, transfers, timers, parsing.

Every test drives a real :class:`~pyftps.proto.session.ServerSession` through the in-memory
:class:`~tests.proto.harness.Harness`; nothing here opens a socket or sleeps.
"""

from __future__ import annotations

import re

import pytest

from pyftps.proto import actions as a
from pyftps.proto.permissions import Permission
from pyftps.proto.policy import CCCPolicy
from pyftps.proto.specs import COMMANDS, ArgRule
from tests.proto.harness import FIRST_PASSIVE_PORT, MTIME_TEXT, README, START_TIME, Harness

# A valid argument for every verb that takes one, so that gating tests reach the check under test.
SAMPLE_ARG = {
    "USER": "alice",
    "PASS": "secret",
    "ACCT": "acct",
    "HOST": "ftp.example.com",
    "AUTH": "TLS",
    "PBSZ": "0",
    "PROT": "P",
    "ADAT": "Zm9v",
    "MIC": "Zm9v",
    "CONF": "Zm9v",
    "ENC": "Zm9v",
    "TYPE": "I",
    "MODE": "S",
    "STRU": "F",
    "REST": "0",
    "EPSV": "1",
    "PORT": "127,0,0,1,200,1",
    "EPRT": "|1|127.0.0.1|50000|",
    "RETR": "readme.txt",
    "STOR": "new.txt",
    "STOU": "new.txt",
    "APPE": "readme.txt",
    "LIST": "pub",
    "NLST": "pub",
    "MLSD": "pub",
    "CWD": "pub",
    "XCWD": "pub",
    "MKD": "newdir",
    "XMKD": "newdir",
    "RMD": "pub",
    "XRMD": "pub",
    "DELE": "readme.txt",
    "RNFR": "readme.txt",
    "RNTO": "renamed.txt",
    "SIZE": "readme.txt",
    "MDTM": "readme.txt",
    "MFMT": "20200101000000 readme.txt",
    "MLST": "readme.txt",
    "SITE": "CHMOD 644 readme.txt",
    "SMNT": "/mnt",
    "OPTS": "UTF8 ON",
    "HELP": "RETR",
    "STAT": "pub",
    "ALLO": "100",
    "LANG": "EN",
}


def line_for(verb: str) -> str:
    return f"{verb} {SAMPLE_ARG[verb]}" if COMMANDS[verb].arg is ArgRule.REQUIRED else verb


def test_every_verb_has_a_sample_argument() -> None:
    takes_arg = {v for v, spec in COMMANDS.items() if spec.arg is not ArgRule.NONE}
    assert takes_arg <= set(SAMPLE_ARG)


# ============================================================================ argument rules

NO_ARG = sorted(v for v, spec in COMMANDS.items() if spec.arg is ArgRule.NONE)
NEEDS_ARG = sorted(v for v, spec in COMMANDS.items() if spec.arg is ArgRule.REQUIRED)


@pytest.mark.parametrize("verb", NO_ARG)
def test_extra_argument_is_501(verb: str) -> None:
    h = Harness.ready()
    assert h.code(f"{verb} x") == 501
    assert not h.closed
    assert h.tls_state.value == "tls"
    assert h.state.logged_in
    assert [x for x in h.last if not isinstance(x, a.SendReply)] == []  # no side effect at all


@pytest.mark.parametrize("verb", NEEDS_ARG)
def test_missing_argument_is_501(verb: str) -> None:
    h = Harness() if verb == "AUTH" else Harness.ready()  # AUTH is gated (534) once under TLS
    ops = len(h.ops)
    assert h.code(verb) == 501
    assert h.code(f"{verb}   ") == 501  # blanks only: still no argument
    assert len(h.ops) == ops and h.transfers == []


@pytest.mark.parametrize("line", ["XYZZY", "FOO bar", "RETRIEVE x", "R2D2", "ÉTAT", "ABCDEFGHI"])
def test_unknown_verb_is_500(line: str) -> None:
    h = Harness.ready()
    assert h.code(line) == 500


def test_verbs_are_case_insensitive(ready: Harness) -> None:
    assert ready.codes("noop", "Noop", "pwd", "type i", "TyPe a") == [200, 200, 257, 200, 200]


# ============================================================================ login and permissions

LOGIN_VERBS = sorted(v for v, spec in COMMANDS.items() if spec.login)


@pytest.mark.parametrize("verb", LOGIN_VERBS)
def test_login_required_is_530(verb: str) -> None:
    h = Harness()
    h.secure()
    assert h.code(line_for(verb)) == 530
    assert h.ops == [] and h.transfers == []


@pytest.mark.parametrize(
    "line", ["FEAT", "HELP", "NOOP", "SYST", "STAT", "LANG", "OPTS UTF8 ON", "HOST ftp.example.com", "ABOR"]
)
def test_informational_commands_need_no_login(line: str) -> None:
    h = Harness()
    h.secure()
    assert h.code(line) < 400


def test_stat_of_a_path_needs_login() -> None:
    h = Harness()
    h.secure()
    assert h.code("STAT pub") == 530


def test_site_chmod_needs_login_site_help_does_not() -> None:
    h = Harness()
    h.secure()
    assert h.codes("SITE HELP", "SITE CHMOD 644 readme.txt", "SITE NOSUCH") == [214, 530, 500]


DENIED_FOR_READ_ONLY = sorted(
    v for v, spec in COMMANDS.items() if spec.perm is not None and spec.perm not in Permission.read_only()
)


@pytest.mark.parametrize("verb", DENIED_FOR_READ_ONLY)
def test_read_only_user_gets_550(verb: str) -> None:
    h = Harness.ready()
    h.send("USER bob")
    h.send("PASS secret")
    assert h.state.user == "bob"
    h.passive()
    ops, entries = len(h.ops), dict(h.fs.entries)
    assert h.code(line_for(verb)) == 550
    assert len(h.ops) == ops and h.transfers == []  # refused before any storage call
    assert h.fs.entries == entries


def test_read_only_user_is_denied_site_chmod() -> None:
    h = Harness.ready()
    h.send("USER bob")
    h.send("PASS secret")
    assert h.code("SITE CHMOD 644 readme.txt") == 550


@pytest.mark.parametrize(
    ("line", "codes"),
    [
        ("RETR readme.txt", [150, 226]),
        ("LIST", [150, 226]),
        ("NLST pub", [150, 226]),
        ("MLSD pub", [150, 226]),
    ],
)
def test_read_only_user_may_read(line: str, codes: list[int]) -> None:
    h = Harness.ready()
    h.send("USER bob")
    h.send("PASS secret")
    h.passive()
    assert h.codes(line) == codes
    assert h.codes("SIZE readme.txt", "MDTM readme.txt", "MLST readme.txt", "STAT pub") == [
        213,
        213,
        250,
        212,
    ]


def test_read_only_perm_facts(ready: Harness) -> None:
    ready.send("USER bob")
    ready.send("PASS secret")
    assert "perm=r;" in ready.one("MLST readme.txt").lines[1]
    assert "perm=el;" in ready.one("MLST pub").lines[1]


def test_new_user_flushes_the_login_and_keeps_transfer_parameters(ready: Harness) -> None:
    ready.codes("TYPE I", "CWD pub")
    assert ready.code("USER bob") == 331
    assert a.EndLogin() in ready.last
    assert ready.code("PWD") == 530
    assert ready.code("PASS secret") == 230
    assert ready.state.type.value == "I"


def test_pass_when_logged_in_is_503(ready: Harness) -> None:
    assert ready.code("PASS secret") == 503


def test_acct_is_superfluous(ready: Harness) -> None:
    assert ready.code("ACCT x") == 202


def test_login_resets_cwd() -> None:
    h = Harness.ready()
    h.send("CWD pub")
    h.login("bob")
    assert h.one("PWD").text == '"/" is the current directory.'


# ============================================================================ failed logins


def test_failed_logins_look_the_same_and_are_delayed() -> None:
    h = Harness.ready()
    h.send("USER nosuchuser")
    unknown = h.send("PASS whatever")
    assert h.kinds() == ["RunOp", "Sleep", "530"]
    h.send("USER alice")
    wrong = h.send("PASS wrong")
    assert h.kinds() == ["RunOp", "Sleep", "530"]
    assert unknown == wrong == [(530, ("Login incorrect.",))]
    assert h.sleeps == [h.policy.login_failure_delay] * 2


def test_third_failure_is_421_and_close() -> None:
    h = Harness.ready(max_login_failures=3)
    for _ in range(2):
        h.send("USER alice")
        assert h.code("PASS x") == 530
    h.send("USER alice")
    assert h.send("PASS x") == [(421, ("Too many failed logins; closing.",))]
    assert h.kinds() == ["RunOp", "Sleep", "421", "Close"]
    assert h.closed
    assert h.send("NOOP") == []  # nothing is read after the close


def test_failures_are_counted_per_connection_across_rein() -> None:
    h = Harness.ready()
    for _ in range(2):
        h.send("USER alice")
        h.send("PASS x")
    h.send("REIN")
    h.secure()
    h.send("USER alice")
    assert h.code("PASS x") == 421


def test_no_delay_when_configured_off() -> None:
    h = Harness.ready(login_failure_delay=0)
    h.send("USER alice")
    h.send("PASS x")
    assert h.kinds() == ["RunOp", "530"]


@pytest.mark.parametrize(
    ("code", "text", "closes"),
    [(421, "Login service unavailable.", True), (451, "Local error in processing.", False)],
)
def test_backend_failure_is_relayed_and_not_counted(code: int, text: str, closes: bool) -> None:
    h = Harness.ready(max_login_failures=1)
    h.hold_ops = True
    h.send("USER alice")
    h.send("PASS secret")
    assert h.complete_op(a.OpFailed(code, text)) == [(code, (text,))]
    assert h.closed is closes  # 421 means "closing the control connection" (RFC 959 §4.2.2)
    assert h.sleeps == []  # not a wrong password: no delay
    assert h.session.login_failures == 0
    if not closes:
        assert h.code("PASS secret") == 503  # the login attempt is over
        h.hold_ops = False
        h.login()


def test_authenticator_530_text_is_relayed(ready: Harness) -> None:
    """The I/O layer owns the 530 text (ops.authenticate gives one text for unknown user and wrong
    password, RFC 2577 §7; the connection guard has its own); the core relays it after the delay."""
    ready.hold_ops = True
    ready.send("USER alice")
    ready.send("PASS secret")
    text = "Too many sessions for this user; close one and try again."
    assert ready.complete_op(a.OpFailed(530, text)) == [(530, (text,))]
    assert ready.kinds() == ["Sleep", "530"]


def test_successful_login_after_a_failure(ready: Harness) -> None:
    ready.send("USER alice")
    ready.send("PASS wrong")
    ready.login()
    assert ready.state.user == "alice"


# ============================================================================ rename sequencing


def test_rnfr_rnto(ready: Harness) -> None:
    assert ready.codes("RNFR readme.txt", "RNTO pub/moved.txt") == [350, 250]
    assert ready.ops[-1] == a.RenamePath("/readme.txt", "/pub/moved.txt")
    assert "/pub/moved.txt" in ready.fs.entries


def test_rnto_without_rnfr_is_503(ready: Harness) -> None:
    assert ready.code("RNTO x") == 503
    assert not any(isinstance(op, a.RenamePath) for op in ready.ops)


def test_command_between_rnfr_and_rnto_cancels(ready: Harness) -> None:
    assert ready.codes("RNFR readme.txt", "NOOP", "RNTO x") == [350, 200, 503]


def test_failed_rnfr_leaves_nothing_pending(ready: Harness) -> None:
    assert ready.codes("RNFR nosuch", "RNTO x") == [550, 503]


def test_second_rnfr_replaces_the_first(ready: Harness) -> None:
    assert ready.codes("RNFR readme.txt", "RNFR pub", "RNTO pub2") == [350, 350, 250]
    assert ready.ops[-1] == a.RenamePath("/pub", "/pub2")


def test_rnto_is_consumed(ready: Harness) -> None:
    assert ready.codes("RNFR readme.txt", "RNTO a.txt", "RNTO b.txt") == [350, 250, 503]


def test_rnfr_root_is_550(ready: Harness) -> None:
    assert ready.code("RNFR /") == 550


@pytest.mark.parametrize("between", ["NOOP x", "XYZZY", "DELE"], ids=["arg-error", "unknown-verb", "no-arg"])
def test_refused_command_between_rnfr_and_rnto_cancels(ready: Harness, between: str) -> None:
    assert ready.code("RNFR readme.txt") == 350
    assert ready.code(between) >= 500
    assert ready.code("RNTO x") == 503


# ============================================================================ REST


def test_rest_offset_goes_into_the_transfer_and_is_consumed(ready: Harness) -> None:
    ready.send("TYPE I")
    assert ready.codes("REST 100", "PASV", "RETR pub/data.bin") == [350, 227, 150, 226]
    assert ready.transfers[-1].offset == 100
    assert ready.state.rest_offset == 0
    ready.passive()
    ready.send("RETR pub/data.bin")
    assert ready.transfers[-1].offset == 0


def test_rest_reply_text(ready: Harness) -> None:
    got = ready.one("REST 42")
    assert got.code == 350
    assert "42" in got.text


def test_rest_stor_in_type_a_is_554(ready: Harness) -> None:
    ready.passive()
    assert ready.codes("REST 5", "STOR up.txt") == [350, 554]
    assert ready.transfers == []
    assert ready.state.rest_offset == 0


def test_rest_stor_in_type_i_carries_the_offset(ready: Harness) -> None:
    ready.codes("TYPE I", "PASV")
    assert ready.codes("REST 3", "STOR readme.txt") == [350, 150, 226]
    assert ready.transfers[-1].offset == 3
    assert ready.fs.data["/readme.txt"] == README[:3] + ready.upload


@pytest.mark.parametrize("verb", ["APPE", "STOU"])
def test_rest_with_appe_or_stou_is_554(ready: Harness, verb: str) -> None:
    ready.codes("TYPE I", "PASV")
    assert ready.codes("REST 3", f"{verb} readme.txt") == [350, 554]


@pytest.mark.parametrize("arg", ["abc", "-1", "1.5", "1e3", "123456789012345678901", "٣"])
def test_rest_bad_offset_is_501(ready: Harness, arg: str) -> None:
    assert ready.code(f"REST {arg}") == 501
    assert ready.state.rest_offset == 0


def test_rest_0_cancels(ready: Harness) -> None:
    ready.codes("TYPE I", "REST 10", "REST 0", "PASV", "RETR readme.txt")
    assert ready.transfers[-1].offset == 0


def test_rest_in_type_a_retr_is_an_ascii_octet_offset(ready: Harness) -> None:
    ready.codes("REST 7", "PASV", "RETR readme.txt")
    transfer = ready.transfers[-1]
    assert (transfer.offset, transfer.ascii) == (7, True)


# ============================================================================ data connection setup


def test_pasv_reply(ready: Harness) -> None:
    got = ready.one("PASV")
    p1, p2 = divmod(FIRST_PASSIVE_PORT, 256)
    assert got == (227, (f"Entering Passive Mode (127,0,0,1,{p1},{p2}).",))
    assert ready.ops[-1] == a.OpenPassive(extended=False)
    assert ready.state.passive_ready


def test_pasv_uses_the_masquerade_address() -> None:
    h = Harness.ready(passive_address="203.0.113.5")
    assert h.one("PASV").text.startswith("Entering Passive Mode (203,0,113,5,")


def test_pasv_failure_is_relayed() -> None:
    h = Harness.ready()
    h.hold_ops = True
    h.send("PASV")
    assert h.complete_op(a.OpFailed(425, "Cannot open a passive data port.")) == [
        (425, ("Cannot open a passive data port.",))
    ]
    assert not h.state.passive_ready


def test_epsv_reply(ready: Harness) -> None:
    assert ready.send("EPSV") == [(229, (f"Entering Extended Passive Mode (|||{FIRST_PASSIVE_PORT}|)",))]
    assert ready.ops[-1] == a.OpenPassive(extended=True)
    assert ready.codes("EPSV 1") == [229]


@pytest.mark.parametrize(
    "line",
    ["PORT 192,0,2,1,200,1", "EPRT |1|192.0.2.1|50000|", "EPRT |2|::1|50000|"],
    ids=["port", "eprt-v4", "eprt-v6"],
)
def test_active_to_another_host_is_504(ready: Harness, line: str) -> None:
    assert ready.code(line) == 504
    assert ready.state.active is None


@pytest.mark.parametrize(
    "line", ["PORT 127,0,0,1,3,255", "PORT 127,0,0,1,0,21", "EPRT |1|127.0.0.1|1023|"], ids=str
)
def test_active_to_a_low_port_is_504(ready: Harness, line: str) -> None:
    assert ready.code(line) == 504
    assert ready.state.active is None


def test_active_policy_overrides() -> None:
    h = Harness.ready(allow_foreign_data_address=True, allow_low_data_ports=True)
    assert h.codes("PORT 192,0,2,1,0,20", "EPRT |1|127.0.0.1|1023|") == [200, 200]


def test_port_then_transfer_uses_the_active_address(ready: Harness) -> None:
    assert ready.code("PORT 127,0,0,1,200,1") == 200
    assert a.DropDataChannel() in ready.last
    ready.send("RETR readme.txt")
    assert ready.transfers[-1].active == a.ActiveAddress("127.0.0.1", 200 * 256 + 1)


def test_port_from_an_ipv4_mapped_peer() -> None:
    h = Harness.ready(peer="::ffff:127.0.0.1", local="::ffff:127.0.0.1")
    assert h.code("PORT 127,0,0,1,200,1") == 200
    assert h.one("PASV").text.startswith("Entering Passive Mode (127,0,0,1,")


@pytest.mark.parametrize(
    "line", ["PORT 127,0,0,1,200", "PORT 127,0,0,1,0,0", "PORT 256,0,0,1,200,1", "PORT a,b,c,d,e,f"]
)
def test_port_syntax_errors_are_501(ready: Harness, line: str) -> None:
    assert ready.code(line) == 501


@pytest.mark.parametrize(
    "line", ["EPRT |1|127.0.0.1|", "EPRT |1|300.0.0.1|50000|", "EPRT |1|127.0.0.1|0|", "EPRT x"]
)
def test_eprt_syntax_errors_are_501(ready: Harness, line: str) -> None:
    assert ready.code(line) == 501


def test_eprt_other_delimiter(ready: Harness) -> None:
    assert ready.code("EPRT !1!127.0.0.1!50000!") == 200


@pytest.mark.parametrize("line", ["EPRT |3|x|5|", "EPSV 3", "EPSV 0"])
def test_unsupported_network_protocol_is_522_with_the_list(ready: Harness, line: str) -> None:
    got = ready.one(line)
    assert got.code == 522
    assert got.text.endswith("(1,2)")
    assert "(" not in got.text[: got.text.index("(1,2)")]  # RFC 2428 §2: no parentheses before it


def test_epsv_other_family_on_this_connection_is_522(ready: Harness) -> None:
    got = ready.one("EPSV 2")
    assert got.code == 522
    assert got.text.endswith("(1)")


def test_epsv_all_locks_out_the_other_setup_commands(ready: Harness) -> None:
    assert ready.send("EPSV ALL") == [(200, ("EPSV ALL OK.",))]
    assert ready.codes("PORT 127,0,0,1,200,1", "PASV", "EPRT |1|127.0.0.1|50000|") == [503, 503, 503]
    assert ready.codes("EPSV", "EPSV 1", "epsv all") == [229, 229, 200]
    assert ready.codes("RETR readme.txt") == [150, 226]


def test_rein_cancels_epsv_all(ready: Harness) -> None:
    ready.send("EPSV ALL")
    ready.send("REIN")
    ready.secure()
    ready.login()
    assert ready.code("PASV") == 227


def test_pasv_on_ipv6_is_502_and_epsv_works() -> None:
    h = Harness.ready(peer="::1", local="::1", ipv6=True)
    got = h.one("PASV")
    assert got.code == 502
    assert "EPSV" in got.text
    assert h.codes("EPSV", "EPSV 2") == [229, 229]
    assert h.one("EPSV 1").text.endswith("(2)")
    assert h.codes("EPRT |2|::1|50000|", "PORT 127,0,0,1,200,1") == [200, 504]


def test_transfer_without_data_setup_is_425(ready: Harness) -> None:
    for line in ("RETR readme.txt", "STOR x", "LIST", "NLST", "MLSD", "STOU", "APPE x"):
        assert ready.code(line) == 425, line
    assert ready.transfers == []


def test_one_transfer_per_pasv(ready: Harness) -> None:
    ready.passive()
    assert ready.codes("RETR readme.txt", "RETR readme.txt") == [150, 226, 425]


def test_prot_c_transfer_is_521_under_the_default_policy() -> None:
    h = Harness()
    assert h.codes("AUTH TLS", "PBSZ 0") == [234, 200]  # no PROT P: the level stays C
    h.login()
    assert h.code("PASV") == 227  # the PROT check waits for the transfer command (4217 §10.2)
    assert h.send("LIST") == [(521, ("Data connections must be protected: send PBSZ 0 and PROT P.",))]
    assert h.transfers == []


def test_prot_c_transfer_allowed_by_policy_is_clear() -> None:
    h = Harness.ready(require_protected_data=False)
    assert h.code("PROT C") == 200
    h.passive()
    h.send("RETR readme.txt")
    assert not h.transfers[-1].protect


# ============================================================================ transfers


def test_retr_transfer_fields(ready: Harness) -> None:
    ready.passive()
    assert ready.send("RETR pub/data.bin") == [
        (150, ("Opening ASCII mode data connection (TLS).",)),
        (226, ("Transfer complete (1028 bytes).",)),  # 1024 octets with 4 bare LFs, in TYPE A
    ]
    t = ready.transfers[-1]
    assert (t.kind, t.path, t.offset, t.ascii, t.protect, t.active) == (
        a.TransferKind.RETR,
        "/pub/data.bin",
        0,
        True,
        True,
        None,
    )
    assert t.facts == ready.state.facts
    assert (t.perm_for_file, t.perm_for_dir) == ("adfrw", "ecdflmp")


def test_listings_are_never_ascii_converted(ready: Harness) -> None:
    ready.passive()
    ready.send("LIST -la pub")
    t = ready.transfers[-1]
    assert (t.kind, t.path, t.ascii) == (a.TransferKind.LIST, "/pub", False)


def test_list_options_are_not_paths(ready: Harness) -> None:
    ready.passive()
    ready.send("NLST -a")
    assert ready.transfers[-1].path == "/"


def test_transfer_refused_before_150_is_relayed(ready: Harness) -> None:
    ready.passive()
    assert ready.send("RETR nosuch") == [(550, ("No such file or directory.",))]


def test_stor_and_appe(ready: Harness) -> None:
    ready.codes("TYPE I", "PASV")
    assert ready.codes("STOR up.bin") == [150, 226]
    ready.passive()
    assert ready.codes("APPE up.bin") == [150, 226]
    assert ready.fs.data["/up.bin"] == ready.upload * 2
    assert [t.kind for t in ready.transfers] == [a.TransferKind.STOR, a.TransferKind.APPE]


def test_stou_announces_the_name_it_stores_under(ready: Harness) -> None:
    ready.passive()
    first, done = ready.send("STOU")
    match = re.fullmatch(r"FILE: (file\.[0-9a-f]{8})", first.text)
    assert first.code == 150 and match
    assert done.code == 226
    assert ready.transfers[-1].path == "/" + match.group(1)
    assert ("/" + match.group(1)) in ready.fs.entries


def test_stou_with_a_name_keeps_it_as_prefix(ready: Harness) -> None:
    ready.send("CWD pub")
    ready.passive()
    first = ready.send("STOU report.txt")[0]
    assert re.fullmatch(r"FILE: report\.txt\.[0-9a-f]{8}", first.text)
    assert ready.transfers[-1].path.startswith("/pub/report.txt.")


@pytest.mark.parametrize("name", ["n" * 255, "é" * 127 + "x"])
def test_stou_shortens_a_long_name_to_fit_its_suffix(ready: Harness, name: str) -> None:
    ready.passive()
    first = ready.send(f"STOU {name}")[0]
    match = re.fullmatch(r"FILE: (\S+)\.[0-9a-f]{8}", first.text)
    assert first.code == 150 and match
    stored = ready.transfers[-1].path
    assert len(stored[1:].encode()) == 255  # the longest name the storage takes, and no longer
    assert name.startswith(match.group(1))  # cut at a character: "é" is never split


def test_failed_transfer_outcome_is_relayed(manual: Harness) -> None:
    manual.passive()
    manual.send("STOR big.bin")
    manual.data_connected()
    assert manual.transfer_done(10, code=426, text="Connection closed; transfer aborted.") == [
        (426, ("Connection closed; transfer aborted.",))
    ]


def test_abor_during_a_transfer(manual: Harness) -> None:
    manual.passive()
    assert manual.send("RETR readme.txt") == []
    assert manual.data_connected() == [(150, ("Opening ASCII mode data connection (TLS).",))]
    assert manual.send("ABOR") == []
    assert manual.last == [a.AbortTransfer()]
    assert manual.transfer_done(5, aborted=True) == [
        (426, ("Transfer aborted.",)),
        (226, ("ABOR command successful.",)),
    ]
    assert manual.code("NOOP") == 200


def test_abor_racing_a_finished_transfer(manual: Harness) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    manual.data_connected()
    manual.send("ABOR")
    assert [g.code for g in manual.transfer_done(12)] == [226, 226]  # 959 §4.1.3: already complete


def test_abor_without_a_transfer(ready: Harness) -> None:
    ready.passive()
    assert ready.send("ABOR") == [(226, ("No transfer to abort.",))]
    assert ready.kinds() == ["DropDataChannel", "226"]
    assert not ready.state.passive_ready
    assert ready.code("RETR readme.txt") == 425


def test_abor_preceded_by_telnet_ip_and_synch(manual: Harness) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    manual.data_connected()
    assert manual.feed(b"\xff\xf4\xff\xf2ABOR\r\n") == []
    assert manual.last == [a.AbortTransfer()]


def test_abor_pipelined_behind_the_transfer_command(manual: Harness) -> None:
    manual.hold_ops = True
    assert manual.send("PASV", "RETR readme.txt", "ABOR") == []
    assert manual.complete_op()[0].code == 227
    assert a.AbortTransfer() in manual.last  # the transfer is running and ABOR is next in line
    assert [g.code for g in manual.transfer_done(0, aborted=True)] == [426, 226]


def test_stat_during_a_transfer_is_answered_at_once_others_wait(manual: Harness) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    manual.data_connected()
    assert manual.running is not None
    manual.running.progress.bytes_done = 6  # what the transfer worker would have written
    assert manual.send("NOOP", "STAT", "PWD", "TYPE I") == [
        (213, ("Status: RETR /readme.txt, 6 bytes so far.",))
    ]
    assert manual.code("STAT") == 213
    assert [g.code for g in manual.transfer_done(12)] == [226, 200, 257, 200]
    assert manual.state.type.value == "I"


def test_quit_during_a_transfer_waits_for_it(manual: Harness) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    manual.data_connected()
    assert manual.send("QUIT") == []
    assert not manual.closed
    assert [g.code for g in manual.transfer_done(12)] == [226, 221]
    assert manual.closed


def test_too_many_pipelined_commands_is_421(manual: Harness) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    limit = manual.policy.max_queued_commands
    assert manual.send(*["NOOP"] * limit) == []
    assert manual.send("NOOP") == [(421, ("Too many pipelined commands.",))]
    assert manual.closed


def test_transfer_with_mlsd_facts_from_opts(ready: Harness) -> None:
    ready.send("OPTS MLST type;unix.mode;")
    ready.passive()
    ready.send("MLSD")
    assert ready.transfers[-1].facts == {"type", "unix.mode"}


def test_misuse_of_the_transfer_events_is_a_local_error(ready: Harness) -> None:
    from pyftps.proto.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        ready.session.data_connected(ready.now)
    with pytest.raises(LocalProtocolError):
        ready.session.transfer_done(a.TransferOutcome(0), ready.now)
    with pytest.raises(LocalProtocolError):
        ready.session.op_done(a.OpOk(), ready.now)


# ============================================================================ QUIT and idle timeout


def test_quit(ready: Harness) -> None:
    assert ready.send("QUIT") == [(221, ("Goodbye.",))]
    assert ready.kinds() == ["DropDataChannel", "221", "Close"]
    assert ready.send("NOOP") == []
    assert ready.session.next_deadline() is None


def test_quit_stops_pipelined_commands(ready: Harness) -> None:
    assert [g.code for g in ready.send("NOOP", "QUIT", "NOOP")] == [200, 221]


def test_idle_timeout(h: Harness) -> None:
    assert h.session.next_deadline() == START_TIME + h.policy.idle_timeout
    h.advance(h.policy.idle_timeout - 1)
    assert h.tick() == []
    h.code("NOOP")
    assert h.session.next_deadline() == h.now + h.policy.idle_timeout
    h.advance(h.policy.idle_timeout)
    assert h.tick() == [(421, ("Idle timeout: closing control connection.",))]
    assert h.kinds() == ["421", "Close"]
    assert h.session.next_deadline() is None
    assert h.tick() == []


def test_no_idle_timeout_while_a_transfer_runs(manual: Harness) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    assert manual.session.next_deadline() is None
    manual.advance(10 * manual.policy.idle_timeout)
    assert manual.tick() == []
    manual.transfer_done(12)
    assert manual.session.next_deadline() == manual.now + manual.policy.idle_timeout


def test_no_idle_timeout_while_an_operation_runs(ready: Harness) -> None:
    ready.hold_ops = True
    ready.send("CWD pub")
    assert ready.session.next_deadline() is None


def test_partial_lines_do_not_postpone_the_idle_timeout(h: Harness) -> None:
    for _ in range(3):
        h.advance(h.policy.idle_timeout / 2)
        assert h.feed(b"N") == []
    assert [g.code for g in h.tick()] == [421]


# ============================================================================ FEAT, OPTS, HELP

FEATURES = {
    "AUTH TLS;SSL;",
    "PBSZ",
    "PROT C;P;",
    "CCC",
    "EPRT",
    "EPSV",
    "HOST",
    "LANG EN*",
    "MDTM",
    "MFMT",
    "MLST type*;size*;modify*;perm*;unique*;unix.mode;",
    "REST STREAM",
    "SIZE",
    "TVFS",
    "UTF8",
}


def test_feat_format(h: Harness) -> None:
    got = h.one("FEAT")
    assert got.code == 211
    assert got.lines[0] == "Extensions supported:"
    assert got.lines[-1] == "End"
    body = got.lines[1:-1]
    assert all(line.startswith(" ") and not line.startswith("  ") for line in body)
    assert {line[1:] for line in body} == FEATURES
    assert len(body) == len(FEATURES)
    wire = bytes(h.wire).decode()
    assert wire.endswith("211-Extensions supported:\r\n" + "".join(f"{x}\r\n" for x in body) + "211 End\r\n")


def test_feat_follows_the_policy() -> None:
    lines = Harness(ccc=CCCPolicy.NEVER).one("FEAT").lines
    assert " CCC" not in lines
    lines = Harness(tls_available=False).one("FEAT").lines
    assert not any(line.split()[0] in ("AUTH", "PBSZ", "PROT", "CCC") for line in lines[1:-1])


def test_feat_is_the_same_in_every_state() -> None:
    plain = Harness().one("FEAT")
    assert Harness.ready().one("FEAT") == plain
    assert Harness.implicit_ready().one("FEAT") == plain


def test_feat_with_argument_is_501(h: Harness) -> None:
    assert h.code("FEAT x") == 501


@pytest.mark.parametrize(
    ("line", "code"), [("OPTS UTF8 ON", 200), ("OPTS utf8 on", 200), ("OPTS UTF8 OFF", 200)]
)
def test_opts_utf8(h: Harness, line: str, code: int) -> None:
    assert h.code(line) == code


@pytest.mark.parametrize("line", ["OPTS UTF8 MAYBE", "OPTS NOSUCH", "OPTS FEAT", "OPTS"])
def test_opts_errors_are_501(h: Harness, line: str) -> None:
    assert h.code(line) == 501


def test_opts_mlst(ready: Harness) -> None:
    assert ready.send("OPTS MLST type;size;") == [(200, ("MLST OPTS type;size;",))]
    assert ready.one("MLST readme.txt").lines[1] == " type=file;size=12; /readme.txt"
    assert " MLST type*;size*;modify;perm;unique;unix.mode;" in ready.one("FEAT").lines
    assert ready.send("OPTS MLST size;Type;nosuch;UNIX.mode;") == [(200, ("MLST OPTS type;size;unix.mode;",))]
    assert ready.send("OPTS MLST") == [(200, ("MLST OPTS",))]
    assert ready.one("MLST readme.txt").lines[1] == "  /readme.txt"  # no facts: two blanks (3659 §7.9.2)


def test_opts_mlst_with_a_space_keeps_the_previous_selection(ready: Harness) -> None:
    ready.send("OPTS MLST type;size;")
    assert ready.code("OPTS MLST type size;") == 501
    assert ready.state.facts == {"type", "size"}
    assert ready.one("MLST readme.txt").lines[1] == " type=file;size=12; /readme.txt"


def test_help_lists_the_whole_table(h: Harness) -> None:
    got = h.one("HELP")
    assert got.code == 214
    listed = {word for line in got.lines[1:-1] for word in line.split()}
    assert listed == set(COMMANDS)
    assert all(line.startswith(" ") for line in got.lines[1:-1])


@pytest.mark.parametrize("verb", ["RETR", "retr", "XPWD"])
def test_help_for_one_command(h: Harness, verb: str) -> None:
    got = h.one(f"HELP {verb}")
    assert got.code == 214
    assert got.text == f"Syntax: {COMMANDS[verb.upper()].help}"


def test_help_for_an_unknown_command_is_501(h: Harness) -> None:
    assert h.code("HELP XYZZY") == 501


def test_syst(h: Harness) -> None:
    assert h.send("SYST") == [(215, ("UNIX Type: L8",))]


def test_stat_without_argument(ready: Harness) -> None:
    got = ready.one("STAT")
    assert got.code == 211
    assert " Logged in as alice" in got.lines
    assert " Data protection: PROT P" in got.lines
    assert " Control connection: TLS (TLSv1.3)" in got.lines


def test_stat_of_a_directory_and_a_file(ready: Harness) -> None:
    d = ready.one("STAT pub")
    assert d.code == 212
    assert d.lines[0] == "Status of /pub:"
    assert d.lines[1].startswith("-rw-r--r-- 1 ftp ftp 1024 ")
    assert d.lines[1].endswith(" data.bin")
    f = ready.one("STAT readme.txt")
    assert f.code == 213
    assert len(f.lines) == 3
    assert ready.ops[-1] == a.ListNames("/readme.txt", ready.policy.stat_list_limit)
    assert ready.code("STAT nosuch") == 550


def test_stat_skips_names_that_cannot_be_listed(ready: Harness) -> None:
    ready.fs.add_file("/pub/bad\nname", b"")
    got = ready.one("STAT pub")
    assert got.code == 212
    assert len(got.lines) == 3
    assert not any("bad" in line for line in got.lines)


# ============================================================================ file commands


def test_mlst_format(ready: Harness) -> None:
    got = ready.one("MLST readme.txt")
    assert got == (
        250,
        ("Listing /readme.txt", f" type=file;size=12;modify={MTIME_TEXT};perm=adfrw; /readme.txt", "End"),
    )
    facts = f"type=file;size=12;modify={MTIME_TEXT};perm=adfrw;"
    assert (
        bytes(ready.wire).decode().endswith(f"250-Listing /readme.txt\r\n {facts} /readme.txt\r\n250 End\r\n")
    )


def test_mlst_of_a_directory_and_of_the_cwd(ready: Harness) -> None:
    assert ready.one("MLST pub").lines[1] == f" type=dir;modify={MTIME_TEXT};perm=ecdflmp; /pub"
    assert ready.one("MLST").lines[1].endswith("; /")
    assert ready.code("MLST nosuch") == 550


def test_mlst_of_a_name_that_cannot_be_listed_is_550(ready: Harness) -> None:
    ready.fs.add_file("/a\rb", b"x")
    assert ready.feed(b"MLST a\r\x00b\r\n") == [(550, ("This name cannot be shown in an MLST reply.",))]


def test_mdtm_and_size_are_single_line_213(ready: Harness) -> None:
    assert ready.send("MDTM readme.txt") == [(213, (MTIME_TEXT,))]
    ready.send("TYPE I")
    assert ready.send("SIZE readme.txt") == [(213, ("12",))]
    ready.send("TYPE A")
    assert ready.send("SIZE readme.txt") == [(213, ("14",))]  # CRLF-converted (RFC 3659 §4)
    assert ready.ops[-2:] == [
        a.StatPath("/readme.txt"),
        a.AsciiSize("/readme.txt", ready.policy.ascii_size_limit),
    ]
    assert b"213 12\r\n" in ready.wire and b"213-" not in ready.wire


@pytest.mark.parametrize("type_", ["A", "I"])
def test_size_of_a_directory_or_missing_file_is_550(ready: Harness, type_: str) -> None:
    ready.send(f"TYPE {type_}")
    assert ready.codes("SIZE pub", "SIZE nosuch", "MDTM nosuch") == [550, 550, 550]


def test_mfmt(ready: Harness) -> None:
    assert ready.send("MFMT 20200102030405 readme.txt") == [(213, ("Modify=20200102030405; readme.txt",))]
    assert ready.ops[-1] == a.SetMtime("/readme.txt", 1577934245.0)
    assert ready.send("MDTM readme.txt") == [(213, ("20200102030405",))]
    assert ready.codes("MFMT 2020 readme.txt", "MFMT 20200102030405", "MFMT 20200102030405 nosuch") == [
        501,
        501,
        550,
    ]


def test_cwd_cdup_pwd(ready: Harness) -> None:
    assert ready.codes("CWD pub", "PWD") == [250, 257]
    assert ready.replies[-1].text == '"/pub" is the current directory.'
    assert ready.codes("CDUP", "CDUP", "XPWD") == [200, 200, 257]
    assert ready.replies[-1].text == '"/" is the current directory.'
    assert ready.codes("XCWD /pub", "XCUP") == [250, 200]
    assert ready.codes("CWD readme.txt", "CWD nosuch") == [550, 550]
    assert ready.state.cwd == "/"


def test_cwd_cannot_escape_the_root(ready: Harness) -> None:
    assert ready.code("CWD ../../..") == 250
    assert ready.state.cwd == "/"
    assert ready.ops[-1] == a.StatPath("/")


def test_pwd_doubles_quotes(ready: Harness) -> None:
    ready.codes('MKD a"b', 'CWD a"b')
    assert ready.one("PWD").text == '"/a""b" is the current directory.'


def test_mkd_rmd_dele(ready: Harness) -> None:
    assert ready.send("MKD new") == [(257, ('"/new" created.',))]
    assert ready.codes("XMKD new", "XRMD new", "RMD new", "DELE readme.txt", "DELE readme.txt") == [
        550,
        250,
        550,
        250,
        550,
    ]
    assert ready.code("RMD /") == 550


def test_mkd_with_two_spaces_creates_a_name_with_a_leading_space(ready: Harness) -> None:
    assert ready.send("MKD  two") == [(257, ('"/ two" created.',))]
    assert ready.ops[-1] == a.MakeDir("/ two")
    assert "/ two" in ready.fs.entries


def test_paths_resolve_against_the_cwd(ready: Harness) -> None:
    ready.send("CWD pub")
    ready.codes("MKD x", "MKD ../y", "MKD /z/../w", "MKD ./v/")
    made = [op.path for op in ready.ops if isinstance(op, a.MakeDir)]
    assert made == ["/pub/x", "/y", "/w", "/pub/v"]


def test_site_chmod(ready: Harness) -> None:
    assert ready.code("SITE CHMOD 600 readme.txt") == 200
    assert ready.ops[-1] == a.Chmod("/readme.txt", 0o600)
    assert ready.codes("SITE CHMOD 4755 readme.txt", "SITE CHMOD 644", "SITE chmod 644 nosuch") == [
        501,
        501,
        550,
    ]


def test_smnt_and_allo(ready: Harness) -> None:
    assert ready.codes("SMNT /x", "ALLO 100", "ALLO") == [502, 202, 202]


def test_type_mode_stru(ready: Harness) -> None:
    assert ready.codes("TYPE I", "TYPE A", "TYPE A N", "TYPE L 8", "TYPE E", "TYPE A T", "TYPE L 7") == [
        200,
        200,
        200,
        200,
        504,
        504,
        504,
    ]
    assert ready.codes("MODE S", "MODE B", "MODE C", "MODE X") == [200, 504, 504, 501]
    assert ready.codes("STRU F", "STRU R", "STRU P", "STRU X") == [200, 504, 504, 501]


# ============================================================================ HOST and LANG


def test_host(h: Harness) -> None:
    assert h.send("HOST ftp.example.com") == [(220, ("Host ftp.example.com accepted.",))]
    assert h.state.host == "ftp.example.com"
    assert h.codes("HOST 192.0.2.1:21", "HOST [::1]:21", "HOST bad_name", "HOST") == [501, 501, 501, 501]
    assert h.codes("HOST 127.0.0.1", "HOST 192.0.2.1", "HOST [::1]") == [220, 504, 504]
    h.secure()
    h.login()
    assert h.code("HOST ftp.example.com") == 503


def test_host_with_configured_names() -> None:
    h = Harness(host_names=frozenset({"ftp.example.com"}))
    assert h.codes("HOST FTP.Example.COM", "HOST other.example") == [220, 504]


def test_host_must_match_sni() -> None:
    h = Harness(sni="a.example")
    assert h.code("HOST b.example") == 220  # before AUTH there is no SNI to compare with
    h.secure()
    assert h.codes("HOST b.example", "HOST A.example", "HOST 127.0.0.1") == [504, 220, 504]


def test_host_resets_a_pending_login(h: Harness) -> None:
    h.secure()
    h.send("USER alice")
    assert h.codes("HOST ftp.example.com", "PASS secret") == [220, 503]


def test_host_survives_auth(h: Harness) -> None:
    h.send("HOST ftp.example.com")
    h.secure()
    assert h.state.host == "ftp.example.com"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("LANG", 200),
        ("LANG EN", 200),
        ("LANG en-US", 200),
        ("LANG zz", 504),
        ("LANG fr-FR", 504),
        ("LANG 1", 501),
    ],
)
def test_lang(h: Harness, line: str, code: int) -> None:
    assert h.code(line) == code


# ============================================================================ parsing at the session


def test_pipelined_commands_are_answered_in_order(ready: Harness) -> None:
    replies = ready.send("CWD pub", "PWD", "CDUP", "PWD", "NOOP")
    assert [g.code for g in replies] == [250, 257, 200, 257, 200]
    assert replies[1].text.startswith('"/pub"') and replies[3].text.startswith('"/"')


def test_pipelined_commands_wait_for_a_running_operation(ready: Harness) -> None:
    ready.hold_ops = True
    assert ready.send("CWD pub", "PWD", "MKD x") == []
    assert ready.complete_op() == [
        (250, ('Directory changed to "/pub".',)),
        (257, ('"/pub" is the current directory.',)),
    ]
    assert ready.pending_op == a.MakeDir("/pub/x")
    assert [g.code for g in ready.complete_op()] == [257]


def test_split_reads(h: Harness) -> None:
    assert h.feed(b"NO") == []
    assert h.feed(b"OP\r\n") == [(200, ("NOOP OK.",))]
    assert h.feed(b"NOOP\r") == []
    assert h.feed(b"\n") == [(200, ("NOOP OK.",))]
    assert [g.code for g in h.feed(b"NOOP\r\nNOOP\r\n")] == [200, 200]


def test_bare_lf_ends_a_line(h: Harness) -> None:
    assert h.feed(b"NOOP\n") == [(200, ("NOOP OK.",))]


def test_empty_lines_are_ignored(h: Harness) -> None:
    assert h.feed(b"\r\n   \r\n\n") == []
    assert h.code("NOOP") == 200


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (b"\xff\xfd\x01", b"\xff\xfc\x01"),  # DO ECHO -> WONT ECHO
        (b"\xff\xfb\x03", b"\xff\xfe\x03"),  # WILL SGA -> DONT SGA
        (b"\xff\xfc\x01", None),  # WONT: no answer
        (b"\xff\xfe\x01", None),  # DONT: no answer
        (b"\xff\xfa\x18\x01\xff\xf0", None),  # subnegotiation skipped
        (b"\xff\xf1", None),  # NOP
    ],
)
def test_telnet_negotiation(h: Harness, data: bytes, answer: bytes | None) -> None:
    assert h.feed(data) == []
    assert h.raw == ([answer] if answer else [])
    assert h.code("NOOP") == 200


def test_telnet_inside_a_command_is_removed(h: Harness) -> None:
    assert h.feed(b"NO\xff\xfd\x01OP\r\n") == [(200, ("NOOP OK.",))]
    assert h.kinds() == ["SendRaw", "200"]


def test_iac_iac_is_a_data_byte(ready: Harness) -> None:
    assert ready.feed(b"MKD \xff\xff\r\n") == [(501, ("Command is not valid UTF-8 (RFC 2640).",))]


def test_overlong_line_then_next_command(h: Harness) -> None:
    assert h.feed(b"NOOP " + b"x" * 10_000 + b"\r\nNOOP\r\n") == [
        (500, ("Command line too long.",)),
        (200, ("NOOP OK.",)),
    ]


def test_overlong_line_across_many_reads(h: Harness) -> None:
    for _ in range(20):
        assert h.feed(b"x" * 1000) == []
    assert h.feed(b"\r\n") == [(500, ("Command line too long.",))]
    assert h.code("NOOP") == 200


def test_line_just_under_the_limit_is_accepted(h: Harness) -> None:
    limit = h.policy.max_line
    assert h.send(" " * (limit - len("NOOP") - 1) + "NOOP") == [(200, ("NOOP OK.",))]


def test_line_of_exactly_the_limit_is_accepted(h: Harness) -> None:
    limit = h.policy.max_line
    line = (" " * (limit - len("NOOP")) + "NOOP").encode()
    assert len(line) == limit
    assert h.feed(line + b"\n") == [(200, ("NOOP OK.",))]  # passes
    assert h.feed(line + b"\r\n") == [(200, ("NOOP OK.",))]


@pytest.mark.parametrize("data", [b"MKD \xc3\x28\r\n", b"MKD \x80abc\r\n", b"\xe9TAT\r\n"])
def test_invalid_utf8_is_501(ready: Harness, data: bytes) -> None:
    assert ready.feed(data) == [(501, ("Command is not valid UTF-8 (RFC 2640).",))]
    assert ready.code("NOOP") == 200


@pytest.mark.parametrize("data", [b"NO\x00OP\r\n", b"MKD a\x00b\r\n", b"\x00\r\n"])
def test_nul_is_501(ready: Harness, data: bytes) -> None:
    assert ready.feed(data) == [(501, ("NUL bytes are not allowed in commands.",))]
    assert not any(isinstance(op, a.MakeDir) for op in ready.ops)


def test_cr_nul_in_a_pathname_is_a_cr(ready: Harness) -> None:
    assert ready.feed(b"MKD a\r\x00b\r\n")[0].code == 257
    assert ready.ops[-1] == a.MakeDir("/a\rb")


def test_control_characters_in_arguments_are_501(ready: Harness) -> None:
    assert ready.feed(b"MKD a\x01b\r\n")[0].code == 501


def test_utf8_pathnames(ready: Harness) -> None:
    assert ready.send("MKD café") == [(257, ('"/café" created.',))]


def test_reply_text_cannot_forge_a_reply_line(ready: Harness) -> None:
    ready.feed(b"MKD a\r\x00250 forged\r\n")
    assert b"\r\n250 forged" not in ready.wire
    assert ready.wire.count(b"\r\n") == len(ready.wire.splitlines())


# ============================================================================ channel changes with a queue


def test_auth_pipelined_behind_a_running_operation_drops_the_connection() -> None:
    """Plaintext queued behind AUTH cannot be a ClientHello (RFC 4217 §10.1): 234, then close."""
    h = Harness(require_tls_for_login=False)
    h.send("USER alice")
    h.hold_ops = True
    assert h.send("PASS secret", "AUTH TLS", "NOOP") == []
    assert [g.code for g in h.complete_op()] == [230, 234]
    assert h.kinds()[-1] == "Close"
    assert h.closed
    assert h.tls_initial == []


@pytest.mark.parametrize("verb", ["REIN", "CCC"])
def test_commands_queued_behind_a_channel_change_are_discarded(manual: Harness, verb: str) -> None:
    manual.passive()
    manual.send("RETR readme.txt")
    assert manual.send(verb, "PWD") == []
    codes = [g.code for g in manual.transfer_done(12)]
    assert codes == [226, 220 if verb == "REIN" else 200]
    assert manual.send("NOOP") == [(200, ("NOOP OK.",))]
