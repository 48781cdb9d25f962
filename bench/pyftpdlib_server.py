"""pyftpdlib's TLS_FTPHandler as a benchmark peer (explicit FTPS, TLS required on control and data).

argv: host port passive_lo passive_hi cert key user password root
"""

from __future__ import annotations

import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
from pyftpdlib.handlers import TLS_FTPHandler  # type: ignore[import-untyped]
from pyftpdlib.log import config_logging  # type: ignore[import-untyped]
from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]


def main(argv: list[str]) -> None:
    host, port, low, high, cert, key, user, password, root = argv
    config_logging(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, root, perm="elradfmwMT")

    class Handler(TLS_FTPHandler):  # type: ignore[misc]
        pass

    Handler.authorizer = authorizer
    Handler.certfile = cert
    Handler.keyfile = key
    Handler.tls_control_required = True
    Handler.tls_data_required = True
    Handler.passive_ports = list(range(int(low), int(high) + 1))
    server = FTPServer((host, int(port)), Handler)
    server.max_cons = 0  # no limit: the idle-session scenario opens 1000 sessions
    server.max_cons_per_ip = 0
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    main(sys.argv[1:])
