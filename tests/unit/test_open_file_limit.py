"""``serve.raise_open_file_limit``: soft limit up to the hard limit, a warning when even that is short.

Run in a child process: the test must not change the limits of the process running the suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

resource = pytest.importorskip("resource")

CHILD = """
import logging, resource, sys
from pyftps.serve import raise_open_file_limit
logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
low = min(256, hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
connections = int(sys.argv[1])
result = raise_open_file_limit(connections)
print("RESULT", result, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def run_child(connections: int) -> tuple[list[str], int, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(connections)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    result_line = next(line for line in out if line.startswith("RESULT"))
    _, result, soft, hard = result_line.split()
    return [line for line in out if not line.startswith("RESULT")], int(result), int(soft), int(hard)


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    logged, result, soft, hard = run_child(10)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("unlimited hard limit: raised to the kernel ceiling instead")
    assert result == soft == hard
    assert logged == []


def test_a_hard_limit_too_low_for_the_connection_limit_is_logged() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 10_000_000:
        pytest.skip("no finite hard limit to exceed")
    logged, _, _, _ = run_child(hard)  # needs two descriptors per connection
    assert any("open-file limit" in line and "--max-connections" in line for line in logged), logged
