# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""What the fleet's master expects of a worker: where it listens, and which names it accepts.

Read by the entrypoint and preflight inside the image, and by `invoke service` and
`invoke preflight` on the host.
"""

import re

DEFAULT_MASTER = "buildbot-api.python.org"
DEFAULT_PORT = 9020
DEFAULT_ADDRESS = f"{DEFAULT_MASTER}:{DEFAULT_PORT}"
# Memory one regrtest process may take: a full test run peaked at 3.4 GB with -j6 on an 8 GB fleet worker
# (python/buildmaster-config#740). Caps parallel_tests (invoke request) and verify's smoke -j.
MB_PER_TEST_PROCESS = 600  # MiB
# Buildbot's rule for worker names (buildbot.util.identifiers: an identifier of at most 50 characters).
WORKER_NAME = re.compile(r"[A-Za-z_-][A-Za-z0-9_-]{0,49}")


def is_worker_name(name: str) -> bool:
    return bool(WORKER_NAME.fullmatch(name or ""))
