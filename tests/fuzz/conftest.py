"""Hypothesis profiles for the fuzz suite.

The default run (``fuzz`` profile) is derandomised, so it is deterministic and fits a CI budget. The
``long`` profile is for a soak run and explores at random::

    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -p no:cacheprovider tests/fuzz

``--hypothesis-profile=long`` works too. ``PYFTPS_FUZZ_EXAMPLES=N`` sets the example count of every
fuzz test to exactly ``N`` (either profile). The profiles are applied only to the tests in this
directory (through :func:`fuzz_settings`), never loaded globally, so other suites keep their own
settings when everything runs in one session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG_EXAMPLES = 100_000

_COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("fuzz", derandomize=True, **_COMMON)
settings.register_profile("long", derandomize=False, max_examples=LONG_EXAMPLES, **_COMMON)


def profile_name() -> str:
    chosen = os.environ.get("HYPOTHESIS_PROFILE") or settings.get_current_profile_name()
    return "long" if chosen == "long" else "fuzz"


def example_count(default: int) -> int:
    """How many examples a fuzz test runs: ``default`` normally, at least 100k under ``long``."""
    override = os.environ.get("PYFTPS_FUZZ_EXAMPLES")
    if override:
        return int(override)
    return max(default, LONG_EXAMPLES) if profile_name() == "long" else default


def fuzz_settings(default: int) -> settings:
    """Settings for one fuzz test: the active fuzz profile with ``example_count(default)`` examples."""
    return settings(settings.get_profile(profile_name()), max_examples=example_count(default))
