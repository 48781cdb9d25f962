"""Fixtures for the robustness suite: the in-process loopback server of ``tests/server/conftest.py``.

``start_server(**overrides)`` and ``ftp_server`` are the very fixtures the server tests use, teardown
checks included: every connection gone, no worker thread left, no loop error, no error logged.
"""

from __future__ import annotations

from tests.server.conftest import ftp_server, server_cert, start_server

__all__ = ["ftp_server", "server_cert", "start_server"]
