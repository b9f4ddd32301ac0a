import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    out = tmp_path / "build"
    monkeypatch.setenv("FLEETBAKE_BUILD_DIR", str(out))
    return out


@pytest.fixture
def no_ca(monkeypatch):
    """Render as a machine with no extra CA would (goldens must not depend on the host)."""
    monkeypatch.setenv("FLEETBAKE_CA_BUNDLE", "")


@pytest.fixture
def write_matrix(tmp_path):
    def write(text: str, name: str = "matrix.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture(scope="session")
def entrypoint():
    """images/common/entrypoint.py, imported as a module (it is stdlib only)."""
    spec = importlib.util.spec_from_file_location("fleetbake_entrypoint", ROOT / "images/common/entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MINIMAL = """
smoke: [test_sys]
configurations:
  pydebug:
    configure: [--with-pydebug]
rows:
  debian-12:
    family: debian
    base: debian:12
    packages: [build-essential]
    configurations: [pydebug]
"""


def free_port() -> int:
    """A loopback port nobody listens on (closed again at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, what: str, timeout: float = 30) -> None:
    """Poll a server we started on loopback until it answers."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.3)


AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}


class MotoServer:
    """moto's server on loopback: the only stand-in for AWS."""

    def __init__(self, env: dict[str, str] | None = None):
        import os
        import shutil
        import subprocess

        port = free_port()
        binary = shutil.which("moto_server", path=os.path.dirname(sys.executable))
        self.process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], env={**os.environ, **(env or {})},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{self.endpoint}/moto-api/", "moto_server")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
