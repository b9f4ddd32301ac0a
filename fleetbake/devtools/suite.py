"""`invoke test`: the unit tests first, so that fast failures come first, then the Docker-backed tests.

Both run two at a time (pytest-xdist): most Docker tests wait on a master, a timer, a restart or a
health interval, and a compile beside them uses the CPU they leave idle. A module whose tests share an
expensive module fixture (a master, a built image) stays on one worker (tests/integration/conftest.py
groups them). Each phase's duration is printed, and appended to $FLEETBAKE_TIMINGS when it is set
(`.ci/run` prints them all at its end).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable

Log = Callable[[str], None]
NO_TESTS = 5  # pytest's exit code when a phase selected nothing (-k may pick tests of one phase only)
DOCKER_WORKERS = 2


def phases(unit_only: bool, workers: int = DOCKER_WORKERS) -> list[tuple[str, list[str]]]:
    """(name, pytest arguments) of each phase. Many unit tests wait on a subprocess (packer, the linters, moto):
    they run two at a time too."""
    parallel = ["-n", str(workers), "--dist", "loadgroup", "--no-loadscope-reorder"] if workers > 1 else []
    found = [("unit tests", ["-m", "not docker", *parallel])]
    if not unit_only:
        # The 25 slowest in every log: a test that got slower shows there first.
        found.append(("Docker tests", ["-m", "docker", *parallel, "--durations=25"]))
    return found


def run(unit_only: bool = False, k: str | None = None, workers: int = DOCKER_WORKERS, log: Log = print,
        extra: list[str] | None = None) -> int:
    """pytest's exit code: the first failing phase's (the Docker tests do not start after failing unit tests)."""
    ran = False
    for name, args in phases(unit_only, workers):
        argv = [sys.executable, "-m", "pytest", *args, *(["-k", k] if k else []), *(extra or [])]
        log(f"test: {name}: {' '.join(argv[1:])}")
        started = time.monotonic()
        code = subprocess.call(argv)
        seconds = time.monotonic() - started
        log(f"test: {name}: {'passed' if code == 0 else 'nothing selected' if code == NO_TESTS else 'FAILED'} "
            f"in {seconds:.0f} s")
        timings = os.environ.get("FLEETBAKE_TIMINGS")
        if timings:
            with open(timings, "a", encoding="utf-8") as handle:
                handle.write(f"{name}\t{seconds:.0f}\n")
        if code == NO_TESTS:
            continue
        if code:
            return code
        ran = True
    return 0 if ran else NO_TESTS
