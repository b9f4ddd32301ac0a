import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetbake.devtools.local_registry import free_port, wait_for_http  # noqa: E402,F401 (the tests' own)

# The unit tests' matrix: small and frozen, so that editing the live matrix.yml breaks no unrelated test.
FIXTURE_MATRIX = ROOT / "tests" / "fixtures" / "matrix.yml"
LIVE_MATRIX = ROOT / "matrix.yml"


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """tests/fixtures/matrix.yml: the matrix every unit test uses (rows debian-12, debian-13, ubuntu-24.04,
    fedora-44, fedora-45, windows-2022). Loaded once: a Matrix is frozen and no test changes it. Loaded
    from a copy in a scratch folder: generated output (images/, packer/) lands beside its matrix."""
    import shutil

    from fleetbake.pipeline import matrix

    copy = tmp_path_factory.mktemp("project") / "matrix.yml"
    shutil.copy(FIXTURE_MATRIX, copy)
    return matrix.load(copy)


@pytest.fixture(scope="session")
def live_project():
    """The repository's matrix.yml, for the tests whose point is the live matrix (it loads, validates, builds)."""
    from fleetbake.pipeline import matrix

    return matrix.load(LIVE_MATRIX)


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    out = tmp_path / "build"
    monkeypatch.setenv("FLEETBAKE_BUILD_DIR", str(out))
    return out


@pytest.fixture
def no_ca(monkeypatch):
    """Render as a machine with no extra CA would (committed output must not depend on the host)."""
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
    """fleetbake.worker.entrypoint: the module the image runs (stdlib only)."""
    from fleetbake.worker import entrypoint

    return entrypoint


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


def invoke(*args, env=None):
    """`python -m invoke ARGS` as a user runs it, from the repository (so its default matrix is the live matrix.yml)."""
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, check=False,
    )


def snapshot(top: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under top (dot files too: a left-over temporary file shows), with its bytes, mode and mtime:
    equal snapshots mean nothing was written, not even the same bytes again."""
    return {p.relative_to(top).as_posix(): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(top.rglob("*")) if p.is_file()}


def serve_on_loopback(handler):
    """An HTTP server of the tests' own on 127.0.0.1 (a free port), serving `handler` from a daemon thread;
    the caller shuts it down."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


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


class Moto(str):
    """moto's endpoint on loopback, and the AMIs it was seeded with (Debian's, decoys, Windows)."""

    def __new__(cls, endpoint: str, amis: Path):
        self = super().__new__(cls, endpoint)
        self.amis = amis
        return self


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto_server seeded with Debian 12's AMI, near-miss decoys and a Windows AMI; AWS_ENV set meanwhile."""
    import json
    import os

    amis = tmp_path_factory.mktemp("moto") / "amis.json"
    debian = {
        "ami_id": "ami-0debian1200000001", "name": "debian-12-amd64-20261101-2000", "description": "Debian 12",
        "owner_id": "136693071363", "public": True, "virtualization_type": "hvm", "architecture": "x86_64",
        "state": "available", "platform": None, "image_type": "machine", "image_location": "debian-12",
        "sriov": "simple", "root_device_type": "ebs", "root_device_name": "/dev/xvda", "hypervisor": "xen"}
    # Near misses the source_ami_filter must pass over: another owner, another architecture, another release.
    decoys = [{**debian, "ami_id": "ami-0decoy0000000000a", "owner_id": "999999999999"},
              {**debian, "ami_id": "ami-0decoy0000000000b", "name": "debian-12-arm64-20261101-2000", "architecture": "arm64"},
              {**debian, "ami_id": "ami-0decoy0000000000c", "name": "debian-11-amd64-20261101-2000"}]
    windows = {**debian, "ami_id": "ami-0windows200000001", "name": "Windows_Server-2022-English-Full-Base-2026.11.12",
               "owner_id": "801119661308", "platform": "windows", "root_device_name": "/dev/sda1"}
    amis.write_text(json.dumps([*decoys, debian, windows]))
    server = MotoServer({"MOTO_AMIS_PATH": str(amis)})
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    yield Moto(server.endpoint, amis)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def _tree_state() -> tuple[str, str]:
    """What git sees of the checkout: every changed or untracked path (ignored ones aside), and a digest of the
    changes' bytes (tracked and untracked) and of every tracked file's time, so that a test rewriting a file shows
    even when it writes the same bytes again."""
    import hashlib
    import subprocess

    def git(*argv: str) -> bytes:
        # Never writing .git/index: a session beside another (.ci/run's) must not change what that one copies.
        return subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), *argv], capture_output=True, check=True,
                              timeout=60).stdout

    import os

    status = git("status", "--porcelain=v1", "-z", "--untracked-files=all")
    digest = hashlib.sha256(git("diff", "HEAD", "--binary"))
    for entry in status.split(b"\0"):
        if entry.startswith(b"?? "):
            digest.update(entry + (ROOT / os.fsdecode(entry[3:])).read_bytes())
    for name in git("ls-files", "-z").split(b"\0"):  # a tracked file written again, even with the same bytes
        path = ROOT / os.fsdecode(name)
        if name and path.is_file():
            digest.update(name + str(path.stat().st_mtime_ns).encode())
    return os.fsdecode(status), digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched():
    """No test writes into the checkout: generated output, records and builds go to scratch folders or to the
    ignored build/. Checked once the whole session has run (its teardown errors otherwise)."""
    import shutil

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        yield  # a source tree without git (an sdist): nothing to compare with
        return
    before = _tree_state()
    yield
    after = _tree_state()
    if after != before:
        changed = sorted(set(after[0].split("\0")) ^ set(before[0].split("\0")))
        written = changed or "tracked files written again (their bytes or times)"
        pytest.fail(f"the test session wrote into the checkout: {written}; "
                    "tests must write to scratch folders (tmp_path) or build/", pytrace=False)
