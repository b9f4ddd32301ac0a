"""The sandbox every verification runs in, shown from inside a real verify container (verify._container, the one
`invoke verify` compiles and tests in): no network, no capabilities, a read-only root. Each property has its
control beside it: the same probe in a container without that part of the sandbox succeeds."""

import socket
import threading

import pytest

from fleetbake.pipeline import cpython, verify
from integration.conftest import build_user

PROBE = ("import socket, sys\n"
         "try:\n"
         "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5).sendall(b'escaped')\n"
         "    print('CONNECTED')\n"
         "except OSError as e:\n"
         "    print('REFUSED', e)\n")
CAPS = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"


class Listener:
    """A TCP server of the test's own on the host's loopback: it records every connection it is given."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.seen.append(conn.recv(64))
                except OSError:
                    self.seen.append(b"")

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def sandbox(live_project, image):
    """A verify container of the debian-12 image, as `invoke verify` starts it."""
    row = live_project.rows["debian-12"]
    source = cpython.resolve(row.spec.cpython, print)
    with verify._container(row, image.image_id, source) as container:
        yield container.get_wrapped_container()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def exec_in(container, argv):
    code, out = container.exec_run(argv)
    return code, out.decode(errors="replace")


def test_the_sandbox_has_no_network_interface_but_its_own_loopback(sandbox, run, image):
    assert exec_in(sandbox, ["ls", "/sys/class/net"])[1].split() == ["lo"]
    # The control: a container on Docker's default network has an interface out.
    control = run(image.image_id, entrypoint=["ls", "/sys/class/net"])
    control.wait(timeout=60)
    assert "eth0" in control.logs().decode().split()


def test_the_sandbox_cannot_reach_a_server_on_the_host(sandbox, listener, run, image):
    code, out = exec_in(sandbox, ["python3", "-c", PROBE, str(listener.port)])
    assert "REFUSED" in out, out
    # The control: the same probe from a container on the host's network reaches the server.
    control = run(image.image_id, entrypoint=["python3", "-c", PROBE, str(listener.port)], network_mode="host")
    assert control.wait(timeout=60)["StatusCode"] == 0 and b"CONNECTED" in control.logs()
    assert listener.seen == [b"escaped"]  # the control's connection, and no other


def test_the_sandbox_process_has_no_capabilities(sandbox, run, image):
    code, out = exec_in(sandbox, ["sh", "-c", CAPS])
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert set(caps) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} and all(int(v, 16) == 0 for v in caps.values()), out
    assert exec_in(sandbox, ["id", "-u"])[1].strip() != "0"
    # The control: a plain container's root has Docker's default set.
    control = run(image.image_id, entrypoint=["sh", "-c", CAPS], user="root")
    control.wait(timeout=60)
    assert int(dict(line.split(":\t") for line in control.logs().decode().splitlines())["CapEff"], 16) != 0


def test_the_sandbox_root_is_read_only_and_only_its_scratch_is_writable(sandbox, run, image, client):
    # Folders of the root file system the build user may write to by their permissions: only the mount refuses.
    probes = "for f in /var/tmp/probe /ccache/probe; do touch $f 2>&1 || echo refused; done"
    code, out = exec_in(sandbox, ["sh", "-c", probes])
    assert out.count("Read-only file system") == 2 and out.count("refused") == 2, out
    for writable in ("/tmp", "/buildarea"):
        assert exec_in(sandbox, ["touch", f"{writable}/probe"])[0] == 0, writable
    # The control: the same user, in a container whose root is not read-only, writes both.
    user, _ = build_user(client, image)
    control = run(image.image_id, entrypoint=["sh", "-c", probes], user=user)
    control.wait(timeout=60)
    assert control.logs() == b""
