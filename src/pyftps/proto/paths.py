"""Virtual path resolution: the client's view of its tree, a chroot that never touches a disk.

Every pathname a client sends is resolved against the session's current directory into a
normalised absolute POSIX path; ``..`` can never climb above ``/``. Storage backends only ever see
the result. Backslashes are ordinary characters (TVFS, RFC 3659 §6: ``/`` is the only separator).
"""

from __future__ import annotations

from pyftps.proto.codes import ReplyCode
from pyftps.proto.errors import RemoteProtocolError

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def resolve(cwd: str, arg: str | None) -> str:
    """Resolve ``arg`` (absolute or relative to ``cwd``) to a normalised virtual path."""
    if arg is None or arg == "":
        return cwd
    if "\x00" in arg:
        raise RemoteProtocolError(ReplyCode.FILE_NAME_NOT_ALLOWED, "File name not allowed.")
    base = [] if arg.startswith("/") else [p for p in cwd.split("/") if p]
    parts = base
    for part in arg.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        if encoded_size(part) > MAX_NAME_BYTES:
            raise RemoteProtocolError(ReplyCode.FILE_NAME_NOT_ALLOWED, "File name too long.")
        parts.append(part)
    path = "/" + "/".join(parts)
    if encoded_size(path) > MAX_PATH_BYTES:
        raise RemoteProtocolError(ReplyCode.FILE_NAME_NOT_ALLOWED, "Path too long.")
    return path


def with_suffix(path: str, suffix: str) -> str:
    """``path`` with ``suffix`` added to its last name, which is shortened to keep both limits.

    STOU's server-chosen names (RFC 1123 §4.1.2.9): a client's longest allowed name plus the suffix
    must still be a name the storage accepts. The name is cut at a character, never inside one.
    """
    head, _, name = path.rpartition("/")
    excess = max(
        encoded_size(name + suffix) - MAX_NAME_BYTES,
        encoded_size(f"{head}/{name}{suffix}") - MAX_PATH_BYTES,
    )
    while excess > 0 and name:
        excess -= encoded_size(name[-1])
        name = name[:-1]
    return f"{head}/{name}{suffix}"


def encoded_size(text: str) -> int:
    """Bytes of ``text`` on the wire and on disk, the unit of MAX_NAME_BYTES and MAX_PATH_BYTES."""
    return len(text.encode("utf-8", "surrogatepass"))


def parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1] or "/"


def join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def quote(path: str) -> str:
    """Quote a pathname for a 257 reply: embedded double quotes are doubled (RFC 959 Appendix II)."""
    return '"' + path.replace('"', '""') + '"'
