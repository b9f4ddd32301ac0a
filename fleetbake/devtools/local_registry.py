"""A docker-registry of our own on loopback (Debian's docker-registry; scripts/setup.sh installs it): where the
tests and the update bench publish, since no registry outside this machine is reachable."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from fleetbake.errors import FleetbakeError


def free_port() -> int:
    """A loopback port nobody listens on (closed again at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, what: str, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    """Poll a server we started on loopback until it answers (or its process ended)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:  # urllib's URLError and HTTPError among them
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise FleetbakeError(f"{what} did not answer at {url}") from None
            time.sleep(0.3)


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Run one with its storage under `root`; yields its address (127.0.0.1:PORT); stops it at the end."""
    binary = shutil.which("docker-registry")
    if not binary:
        raise FleetbakeError("docker-registry is not installed (scripts/setup.sh installs it)")
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text("version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\n"
                      "http: {addr: '127.0.0.1:%d'}\n" % (root / "data", port))
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", "docker-registry", process=process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
