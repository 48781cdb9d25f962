"""Fixtures shared by every test layer. Keep it small: layer-specific fixtures live beside their tests."""

from __future__ import annotations

import pytest

from tests.support.certs import CertPaths, make_self_signed_cert


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    """A self-signed ECDSA P-256 certificate for localhost/127.0.0.1; clients use ``.cafile``."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))
