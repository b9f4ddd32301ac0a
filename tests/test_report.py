"""`invoke report`'s choice of the previous verified image of a row (records only, no engine)."""

import contextlib
import socket
import threading

from fleetbake.pipeline import record, report, software

A, B, C, D = ("sha256:" + c * 64 for c in "abcd")


def verified(image_id, row="debian-12", passed=True, configuration="pydebug", arch=None):
    platform = {"platform": {"arch": arch}} if arch else {}  # records from before architectures have none
    record.write(image_id, configuration, {"row": row, "passed": passed, "reason": "ok", **platform})


def with_report(image_id):
    record.image_dir(image_id).mkdir(parents=True, exist_ok=True)
    (record.image_dir(image_id) / software.REPORT_JSON).write_text("{}")


def test_the_previous_image_is_the_last_verified_one_of_the_row_with_a_report(build_dir, monkeypatch):
    times = iter(["2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", "2026-11-27T12:00:00Z", "2026-11-28T00:00:00Z",
                  "2026-11-28T01:00:00Z"])
    monkeypatch.setattr(record, "timestamp", lambda when=None: next(times))
    verified(A)
    with_report(A)
    verified(B)  # verified, but no software report: skipped
    verified(C, row="debian-13")  # another row
    verified(D, passed=False)  # failed: not a verified image
    verified(B, configuration="nogil")
    assert [image for _, image in report.verified_images("debian-12")] == [A, B]
    assert report.previous("debian-12", B) == A
    assert report.previous("debian-12", A) is None  # nothing before the first
    assert report.previous("debian-12", D) == A  # B, newer, has no software report to compare with
    with_report(B)
    assert report.previous("debian-12", D) == B  # an image not verified yet compares with the newest verified


def test_the_previous_image_is_one_of_the_same_architecture(build_dir, monkeypatch):
    times = iter(f"2026-11-2{n}T00:00:00Z" for n in range(1, 10))
    monkeypatch.setattr(record, "timestamp", lambda when=None: next(times))
    for image, arch in ((A, None), (B, "arm64"), (C, "amd64"), (D, "arm64")):
        verified(image, arch=arch)
        with_report(image)
    assert [image for _, image in report.verified_images("debian-12")] == [A, B, C, D]
    assert [image for _, image in report.verified_images("debian-12", arch="amd64")] == [A, C]  # A's: amd64's
    assert [image for _, image in report.verified_images("debian-12", arch="arm64")] == [B, D]
    assert report.previous("debian-12", D, arch="arm64") == B
    assert report.previous("debian-12", C, arch="amd64") == A
    assert report.previous("debian-12", B, arch="arm64") is None  # the older amd64 image is not its previous one
    assert report.changes_since_local("debian-12", B, {}, "arm64") == (
        f"debian-12: `{B[:19]}` is the first verified image of this row on arm64 with a software report.\n")


@contextlib.contextmanager
def recording_engine(folder):
    """DOCKER_HOST for a unix socket of the test's own: it records each connection and closes it at once, so a
    command that asks the engine anything fails, and the test sees that it asked."""
    path = folder / "engine.sock"
    connections = []
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            connections.append(conn.recv(4096))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"unix://{path}", connections
    finally:
        server.close()


def test_a_malformed_against_is_one_line_before_any_work(tmp_path):
    """No engine is asked anything: the check comes first (this runs on a machine without one)."""
    from conftest import invoke

    with recording_engine(tmp_path) as (docker_host, connections):
        env = {"DOCKER_HOST": docker_host, "FLEETBAKE_BUILD_DIR": str(tmp_path / "build")}
        cli = invoke("report", "--os", "debian-12", "--against", "Not A Host/x", env=env)
        assert cli.returncode != 0 and cli.stdout == ""
        assert cli.stderr.splitlines() == [
            "error: --against 'Not A Host/x': expected HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python"]
        assert connections == []
        # The control: a well-formed --against gets as far as the engine, and the socket records it.
        asked = invoke("report", "--os", "debian-12", "--against", "ghcr.io/python", env=env)
        assert asked.returncode != 0 and "cannot reach the Docker engine" in asked.stderr, asked.stderr
        assert connections and connections[0].startswith(b"GET /"), connections
