"""A TLS connection's session id, read without ``.session``, whose getter leaks on CPython < 3.12.7.

On those versions every read of ``SSLObject.session`` (or ``SSLSocket.session``) copies the session
and never frees the copy (CPython gh-116810): ~1 KiB per read on a server, for good. The server
reads the id once per control handshake and once per resumed TLS 1.3 data connection (the
same-session check, RFC 4217 §10.2), so 1000 clients leaked ~3 MiB per burst, and the copies,
scattered among freed session memory, kept ~12 MiB more resident after it (bench ``scale_1000``).

Here the id is read with OpenSSL's own getters (``SSL_get_session``: no copy, no reference taken)
on the ``SSL *`` of the ``_ssl._SSLSocket``. That pointer is read from the object's C struct, so its
layout is checked first on every call (its type and context pointers must be where CPython 3.11
puts them); anywhere that check or the OpenSSL symbols fail, ``.session.id`` is used as before.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from collections.abc import Callable
from functools import cache

__all__ = ["session_id"]

# CPython 3.11 Modules/_ssl.c: PySSLSocket { PyObject_HEAD; PyObject *Socket; SSL *ssl; PySSLContext
# *ctx; ... }: in pointer-sized words, ob_refcnt, ob_type, Socket, ssl, ctx.
_TYPE, _SSL, _CTX = 1, 3, 4
_Reader = Callable[[object], "bytes | None"]


def session_id(obj: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """``obj.session.id``, or None when there is no session (no handshake yet, or no TLS left)."""
    reader = _direct_reader()
    raw = getattr(obj, "_sslobj", None)
    if reader is not None and raw is not None and _layout_ok(raw):
        return reader(raw)
    session = obj.session
    return session.id if session is not None else None


def _layout_ok(raw: object) -> bool:
    if type(raw).__basicsize__ <= (_CTX + 1) * ctypes.sizeof(ctypes.c_void_p):
        return False  # not even room for the words below: some other object
    words = (ctypes.c_void_p * (_CTX + 1)).from_address(id(raw))
    context = getattr(raw, "context", None)
    return words[_TYPE] == id(type(raw)) and context is not None and words[_CTX] == id(context)


@cache
def _direct_reader() -> _Reader | None:
    """The leak-free reader, or None where the getter does not leak or OpenSSL cannot be reached."""
    if sys.version_info >= (3, 12, 7) or sys.implementation.name != "cpython":
        return None
    try:
        import _ssl

        libssl = ctypes.CDLL(_ssl.__file__)  # its symbols come from the libssl it was linked with
        get_session = libssl.SSL_get_session
        get_id = libssl.SSL_SESSION_get_id
    except (OSError, AttributeError, ImportError):
        return None
    get_session.argtypes, get_session.restype = [ctypes.c_void_p], ctypes.c_void_p
    get_id.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
    get_id.restype = ctypes.c_void_p
    struct: type = getattr(_ssl, "_SSLSocket", object)
    if struct.__basicsize__ <= (_CTX + 1) * ctypes.sizeof(ctypes.c_void_p):
        return None  # not the struct described above

    def read(raw: object) -> bytes | None:
        pointer = ctypes.c_void_p.from_address(id(raw) + _SSL * ctypes.sizeof(ctypes.c_void_p)).value
        if not pointer:
            return None
        session = get_session(pointer)  # borrowed: the SSL holds it while ``raw`` is alive
        if not session:
            return None
        length = ctypes.c_uint()
        data = get_id(session, ctypes.byref(length))
        return ctypes.string_at(data, length.value) if data else b""

    return read
