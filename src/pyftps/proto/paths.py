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
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise RemoteProtocolError(ReplyCode.FILE_NAME_NOT_ALLOWED, "File name too long.")
        parts.append(part)
    path = "/" + "/".join(parts)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise RemoteProtocolError(ReplyCode.FILE_NAME_NOT_ALLOWED, "Path too long.")
    return path


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
