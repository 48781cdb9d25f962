"""Helpers shared by the robustness tests: a sentinel tree outside the root, TLS records, waiting."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import ssl
import stat
import time
from collections.abc import Callable
from pathlib import Path

from pyftps.storage.local import TEMP_PREFIX

TEMP_NAME = re.compile(r"\.pyftps-upload-[0-9a-f]+\.tmp\Z")
THREE_DAYS_NS = 3 * 86400 * 10**9
PASSWD = Path("/etc/passwd")


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def temp_files(directory: Path) -> list[str]:
    """Upload temporaries (hidden, never listed) left in ``directory``."""
    return sorted(name for name in os.listdir(directory) if name.startswith(TEMP_PREFIX))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_until_closed(sock: socket.socket, seconds: float = 10.0) -> tuple[str, bytes]:
    """Read until the peer closes: ``("eof" | "reset", bytes received)``; ``TimeoutError`` otherwise."""
    sock.settimeout(seconds)
    received = bytearray()
    deadline = time.monotonic() + seconds
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return "reset", bytes(received)
        except TimeoutError:
            raise TimeoutError(f"the server kept the connection open for {seconds} s") from None
        if not chunk:
            return "eof", bytes(received)
        received += chunk


def client_hello(context: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> bytes:
    """The bytes of a real TLS ClientHello from ``context`` (nothing is sent anywhere)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:8]
    return hello


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


class Outside:
    """A sentinel tree next to the server root, plus ``/etc/passwd``: what a path escape would hit.

    Every file and directory gets an access time three days in the past, so that with ``relatime``
    any read of a file or listing of a directory moves it forward; :meth:`check` compares type, mode,
    size, mtime, atime (not of symlinks: a lookup through one moves it), inode and symlink target of
    every entry (contents only at the very end, since reading them moves the access time) and the
    names in every directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root.parent
        self.token = secrets.token_hex(6)
        self.marker = f"SENTINEL-CONTENT-{self.token}".encode()
        self.dir = self.base / "sentinel"
        self.secret_name = f"outside-{self.token}.txt"
        self.secret = self.dir / self.secret_name
        self.files: dict[Path, bytes] = {
            self.secret: self.marker + b"\n",
            self.dir / f"deeper-{self.token}" / f"inner-{self.token}.txt": self.marker + b" inner\n",
            self.base / f"beside-{self.token}.txt": self.marker + b" beside the root\n",
        }
        for path, content in self.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        (self.dir / f"empty-{self.token}").mkdir()
        os.symlink(str(self.root), self.dir / "back-into-root")
        self.passwd = PASSWD.read_bytes() if PASSWD.exists() else b""
        self.passwd_line = self.passwd.split(b"\n", 1)[0]
        self.passwd_stat = self._passwd_stat()
        self._age()
        self.before = self.state()

    # ------------------------------------------------------------------ building the root

    def plant_links(self) -> None:
        """Symlinks inside the root that point out of it (relative, absolute, chained, to /etc, a loop)."""
        root = self.root
        (root / "inside").mkdir(exist_ok=True)
        os.symlink("../sentinel", root / "link_dir")
        os.symlink(str(self.dir), root / "abs_link")
        os.symlink(f"../sentinel/{self.secret_name}", root / "file_link")
        os.symlink("/etc", root / "etc_link")
        os.symlink("../../sentinel", root / "inside" / "deep_link")
        os.symlink("chain2", root / "chain1")
        os.symlink("../sentinel", root / "chain2")
        os.symlink("loop", root / "loop")
        (root / "victim.txt").write_bytes(b"victim\n")

    # ------------------------------------------------------------------ state

    def _paths(self) -> list[Path]:
        out: list[Path] = []
        stack = [self.base]
        while stack:
            path = stack.pop()
            if path == self.root:
                continue
            out.append(path)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                stack.extend(sorted(path.iterdir()))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return out

    def _age(self) -> None:
        for path in self._paths():
            st = os.lstat(path)
            os.utime(path, ns=(st.st_mtime_ns - THREE_DAYS_NS, st.st_mtime_ns), follow_symlinks=False)

    def state(self) -> dict[str, object]:
        """Metadata of everything outside the root; reading directories leaves their atime as it was."""
        snapshot: dict[str, object] = {}
        stack = [self.base]
        while stack:
            path = stack.pop()
            if path == self.root:
                continue
            st = os.lstat(path)
            key = str(path.relative_to(self.base.parent))
            entry: tuple[object, ...] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, st.st_atime_ns,
                st.st_ino,
            )  # fmt: skip
            if stat.S_ISLNK(st.st_mode):
                # A path lookup through a symlink reads it (its atime moves): resolution, not a data read.
                entry = (*entry[:4], *entry[5:], os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                names = sorted(os.listdir(path))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                entry += (tuple(names),)
                stack.extend(path / name for name in names)
            snapshot[key] = entry
        return snapshot

    @staticmethod
    def _passwd_stat() -> tuple[int, ...]:
        st = os.stat(PASSWD)
        return (st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))

    def check(self) -> None:
        """Nothing outside the root was read, created, changed or deleted; contents compared too."""
        self.check_metadata()
        for path, content in self.files.items():
            assert path.read_bytes() == content, path
        if PASSWD.exists():
            assert PASSWD.read_bytes() == self.passwd

    def check_metadata(self) -> None:
        """Nothing outside the root was read, created, changed or deleted (contents left unread)."""
        after = self.state()
        changed = {
            key: (self.before.get(key), after.get(key))
            for key in self.before.keys() | after.keys()
            if self.before.get(key) != after.get(key)
        }
        assert not changed, f"outside the root changed: {changed}"
        if PASSWD.exists():
            assert self._passwd_stat() == self.passwd_stat

    def assert_not_leaked(self, text: bytes | str, *, listing: bool = False) -> None:
        """No sentinel content, no /etc/passwd line, no host path of the root; no outside name listed."""
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        assert self.marker not in data, data[:200]
        if self.passwd_line:
            assert self.passwd_line not in data, data[:200]
        assert str(self.root).encode() not in data, data[:200]
        if listing:
            assert self.token.encode() not in data, data[:200]
