"""Path-escape suite (issue 4, "Bad input, tried"): every path-taking command, every escape we know of.

A sentinel tree lives next to the server root, symlinks inside the root point out of it (relative,
absolute, chained, to ``/etc``, a loop), and each command is tried with ``..`` in all its spellings,
encoded dots, absolute host paths, ``/etc/passwd``, Windows separators, NUL, invalid and overlong
UTF-8, 4 KiB names and paths, and Unicode look-alikes of ``.`` and ``/``. After every attempt nothing
outside the root may have been read (access times), created, changed or deleted, no reply or data
may carry sentinel content, ``/etc/passwd`` or the root's host path, and at the end the server
still answers, on the same connection and on a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.robustness.helpers import Outside
from tests.server.conftest import ServerHandle
from tests.support.ftp_raw import FtpRaw, Reply

DOWNLOADS = ("RETR", "LIST", "NLST", "MLSD")
UPLOADS = ("STOR", "APPE")
VERBS = (
    *DOWNLOADS, *UPLOADS, "DELE", "RNFR", "RNTO", "MKD", "RMD", "SITE CHMOD", "MFMT", "CWD", "MLST", "STAT",
    "SIZE", "MDTM",
)  # fmt: skip
# Commands that act on what a final symlink points to (not on the link's own name).
FOLLOWS_FINAL_LINK = (*DOWNLOADS, "APPE", "SITE CHMOD", "MFMT", "CWD", "MLST", "STAT", "SIZE", "MDTM")


@dataclass(frozen=True)
class Payload:
    kind: str  # clamped | link | ls-link | through | bad
    raw: bytes

    def __str__(self) -> str:
        return f"{self.kind}:{self.raw[:80]!r}"


def payloads(out: Outside) -> list[Payload]:
    s, tok = out.secret_name, out.token
    clamped = [
        "..", "../..", "/..", "/../..", "../" * 12, "../sentinel", f"../sentinel/{s}", f"../../sentinel/{s}",
        f"/../sentinel/{s}", f"../sentinel/deeper-{tok}", f"../sentinel/empty-{tok}", f"../beside-{tok}.txt",
        "../" * 12 + "etc/passwd", "/etc/passwd", "/etc", "/etc/shadow", str(out.secret), str(out.dir),
        str(out.base), f"%2e%2e/sentinel/{s}", f"%2e%2e%2fsentinel%2f{s}", "..%2f..%2fsentinel",
        "%252e%252e/sentinel", "%c0%ae%c0%ae/sentinel", f"..\\sentinel\\{s}", "..\\..\\sentinel",
        "\\..\\sentinel", "C:\\..\\sentinel", f"inside/../../sentinel/{s}", "./../sentinel", "....//sentinel",
        ".../sentinel", "~/../sentinel", "-la ../sentinel", f"\uff0e\uff0e/sentinel/{s}",
        "\uff0e\uff0e\uff0fsentinel", "\u2025/sentinel", "\u2024\u2024/sentinel", "..\u2215sentinel",
        "..\u2044sentinel", "\ufe52\ufe52/sentinel", "..\u200b/sentinel", ".\u0307./sentinel",
        f"{'../' * 1365}sentinel/{s}", ("x" * 255 + "/") * 15 + "../../sentinel",
        "link_dir/back-into-root/victim.txt",  # out through a link and back in: ends inside the root
        "loop",  # a symlink loop inside the root
    ]  # fmt: skip
    link = [
        "link_dir", "abs_link", "file_link", "etc_link", "chain1", "inside/deep_link", "/link_dir",
        "link_dir/", "./file_link",
    ]  # fmt: skip
    through = [
        f"link_dir/{s}", f"abs_link/{s}", f"link_dir/deeper-{tok}/inner-{tok}.txt", f"link_dir/empty-{tok}",
        "link_dir/new", "abs_link/new", "etc_link/passwd", "etc_link/new", f"chain1/{s}",
        f"inside/deep_link/{s}", f"link_dir/../link_dir/{s}", f"/link_dir/./{s}",
    ]  # fmt: skip
    bad = ["a" * 4096, "\u00e9" * 2048, ("x" * 255 + "/") * 17]
    raw_clamped = [b"..\xff\xf4\xff\xf2/sentinel", b"..\r/sentinel", b"..\r\x00/sentinel"]
    raw_bad = [
        b"../sentinel/x\x00.txt", b"\x00", b"..\x00/sentinel", b"\xc0\xae\xc0\xae/sentinel", b"\xed\xa0\x80",
        b"..\xff\xff/sentinel", b"../sentinel/" + b"y" * 8200,
    ]  # fmt: skip
    return [
        Payload("ls-link", b"-la link_dir"),  # LIST/NLST options, then the link; a plain name elsewhere
        *(Payload("clamped", p.encode()) for p in clamped),
        *(Payload("clamped", p) for p in raw_clamped),
        *(Payload("link", p.encode()) for p in link),
        *(Payload("through", p.encode()) for p in through),
        *(Payload("bad", p.encode()) for p in bad),
        *(Payload("bad", p) for p in raw_bad),
    ]


def probe(client: FtpRaw, verb: str, arg: bytes, root: Path) -> tuple[Reply, list[Reply], bytes]:
    """Run one command with ``arg``; (the reply that answers it, every reply seen, data received)."""
    command = verb.encode() + b" " + arg
    if verb in DOWNLOADS or verb in UPLOADS:
        # Both data paths: passive with the data connection made first (curl's order), and active.
        mode = "epsv" if len(arg) % 2 else "port"
        upload = b"ESCAPED UPLOAD\n" if verb in UPLOADS else None
        result = client.transfer(command, upload=upload, mode=mode)
        replies = [result.first] if result.final is None else [result.first, result.final]
        return result.first, replies, result.data
    if verb == "RNFR":
        first = client.send(command)
        replies = [first]
        if first.code == 350:
            replies.append(client.send("RNTO stolen.txt"))
        return first, replies, b""
    if verb == "RNTO":
        if not (root / "victim.txt").exists():
            (root / "victim.txt").write_bytes(b"victim\n")
        client.expect("RNFR victim.txt", 350)
        reply = client.send(command)
        return reply, [reply], b""
    if verb == "CWD":
        reply = client.send(command)
        pwd = client.expect("PWD", 257)
        assert pwd.lines[0].startswith('257 "/'), pwd
        data = b""
        if reply.code == 250:
            data = client.transfer("LIST").data
            client.expect("CWD /", 250)
        return reply, [reply, pwd], data
    if verb == "SITE CHMOD":
        command = b"SITE CHMOD 777 " + arg
    elif verb == "MFMT":
        command = b"MFMT 20000101000000 " + arg
    reply = client.send(command)
    return reply, [reply], b""


@pytest.mark.parametrize("verb", VERBS)
def test_path_escape(ftp_server: ServerHandle, verb: str) -> None:
    out = Outside(ftp_server.root)
    out.plant_links()
    client = ftp_server.login()
    for payload in payloads(out):
        answer, replies, data = probe(client, verb, payload.raw, ftp_server.root)
        where = f"{verb} {payload}: {[str(r) for r in replies]}"
        for reply in replies:
            lines = reply.lines[1:-1] if verb == "STAT" and len(reply.lines) > 2 else reply.lines
            out.assert_not_leaked("\n".join(lines), listing=verb == "STAT" and len(reply.lines) > 2)
        out.assert_not_leaked(data, listing=verb in DOWNLOADS[1:] or verb == "CWD")
        if (
            payload.kind == "through"
            or (payload.kind == "link" and verb in FOLLOWS_FINAL_LINK)
            or (payload.kind == "ls-link" and verb in ("LIST", "NLST"))
        ):
            assert answer.code >= 400, f"followed a symlink out of the root: {where}"
        if payload.kind == "bad":
            assert 500 <= answer.code <= 599, where
        out.check_metadata()
    out.check()
    assert client.send("NOOP").code == 200
    assert ftp_server.login().send("NOOP").code == 200
