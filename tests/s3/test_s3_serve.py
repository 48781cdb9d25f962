"""`pyftps serve` with a user whose home is s3://bucket/prefix: the per-user backend choice end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from pyftps.client import SyncClient
from tests.s3.conftest import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS, fresh_prefix
from tests.support.certs import make_self_signed_cert
from tests.support.ports import free_port, free_port_range
from tests.support.processes import running_process


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_a_user_with_an_s3_home_is_served_from_the_bucket(
    s3: SeaweedFS, s3_client: object, tmp_path: Path
) -> None:
    cert = make_self_signed_cert(tmp_path / "certs")
    state = tmp_path / "state"
    prefix = fresh_prefix("serve")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYFTPS_")},
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    added = subprocess.run(
        [sys.executable, "-m", "pyftps", "user", "--state-dir", str(state), "add", "bob", "--home",
         f"s3://{BUCKET}/{prefix}"],
        input="bob-password\n", capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = free_port()
    low, high = free_port_range(4)
    argv = [
        sys.executable, "-m", "pyftps", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--implicit-port", "0", "--passive-ports", f"{low}-{high}", "--cert", str(cert.cert),
        "--key", str(cert.key), "--state-dir", str(state), "--root", str(tmp_path / "root"),
        "--s3-endpoint", s3.endpoint, "--login-delay", "0",
    ]  # fmt: skip
    payload = os.urandom(300_000)
    with running_process(argv, ready=lambda: _accepts(port), timeout=20, name="pyftps", env=env):
        options = {"user": "bob", "password": "bob-password", "cafile": str(cert.cert)}
        with SyncClient.connect("127.0.0.1", port, mode="explicit", **options) as client:
            source = tmp_path / "up.bin"
            source.write_bytes(payload)
            client.upload(source, "up.bin")
            assert [e.name for e in client.list("/")] == ["up.bin"]
            target = tmp_path / "down.bin"
            client.download("up.bin", target)
            assert target.read_bytes() == payload
    stored = s3_client.get_object(Bucket=BUCKET, Key=f"{prefix}/up.bin")["Body"].read()  # type: ignore[attr-defined]
    assert stored == payload
