"""fleetbake/worker/hunt.py on the host: positive controls. The hunt must say FOUND, naming the place, wherever the
password is readable: its own environment, a file, a process's environ, cmdline or memory. Otherwise a broken hunt
would pass every "the password is nowhere" test. In the image, as the build user: tests/integration/test_hunt.py."""

import io
import os
import signal
import subprocess
import sys
import uuid

from conftest import ROOT
from hunt_places import HOLD, expected, parse

# The hunt, walking the test's folders: this host's own /proc and /var are not a worker's, and slow to read.
HUNT = ("import sys; sys.path.insert(0, sys.argv[4]); from fleetbake.worker import hunt\n"
        "hunt.PROC, hunt.TOPS = sys.argv[2], (sys.argv[3],)\n"
        "sys.exit(hunt.main(sys.argv[1]))")


def hunt(password, proc, tops, env):
    argv = [sys.executable, "-I", "-c", HUNT, password[::-1], str(proc), str(tops), str(ROOT)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_the_hunt_names_every_place_it_can_read_the_password_from(tmp_path):
    password, other = f"pw-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    proc, tops = tmp_path / "proc", tmp_path / "tops"
    proc.mkdir()
    (tops / "builder" / "build").mkdir(parents=True)
    leak = tops / "builder" / "build" / "config.log"
    leak.write_bytes(os.urandom(70_000) + password.encode() + os.urandom(1000))  # deep in a binary file
    (tops / "builder" / "clean.txt").write_text("nothing here\n")
    holders = []
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-c", HOLD, password[::-1], str(proc),
             sys.executable, "-I", "-c", HUNT, password[::-1], str(proc), str(tops), str(ROOT)],
            capture_output=True, text=True, timeout=120, env={}, check=False)
        holders, verdict, places = parse(result.stdout)
        assert (result.returncode, verdict) == (1, "FOUND"), result.stdout + result.stderr
        assert places == expected(str(proc), holders) | {str(leak)}, result.stdout

        # The same places, another password: nothing (FOUND above was about the password, not the places).
        quiet = hunt(other, proc, tops, env={"LEAK": password})
        assert (quiet.returncode, quiet.stdout.splitlines()[0]) == (0, "NOTHING"), quiet.stdout + quiet.stderr
    finally:
        for pid in holders:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_hunt_walks_the_places_a_worker_keeps_files():
    """Where a build step's files may be: the buildarea (the build user's home), /tmp, and the system's folders."""
    from fleetbake.worker import hunt as module

    assert module.PROC == "/proc"
    assert {"/buildarea", "/home", "/root", "/run", "/opt", "/etc", "/tmp", "/var"} <= set(module.TOPS)


def test_the_password_can_come_from_standard_input_so_that_no_command_line_holds_it():
    import io

    from fleetbake.worker import hunt

    assert hunt.reversed_argument("-", io.StringIO("drowssap\nignored\n")) == "drowssap"
    assert hunt.reversed_argument("drowssap", io.StringIO("other\n")) == "drowssap"


def test_the_hunt_reads_in_bounded_chunks_and_finds_a_password_across_their_boundary(tmp_path, monkeypatch):
    """A file or mapping is read a chunk at a time (under QEMU a whole-file buffer per file got the hunt killed at
    the worker's memory limit), the chunks overlapping so that a password split by a boundary is still found."""
    from fleetbake.worker import hunt

    monkeypatch.setattr(hunt, "CHUNK", 64)
    needle = b"pw-0123456789"
    reads = []

    class Recording(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    for at in range(0, 200, 7):  # every offset, across several boundaries
        data = b"x" * at + needle + b"y" * 300
        reads.clear()
        assert hunt._holds(Recording(data), needle, 0, 50_000_000), at
        assert max(reads) <= 64 + len(needle)
    assert not hunt._holds(io.BytesIO(b"x" * 1000 + needle[:-1]), needle, 0, 50_000_000)
    assert not hunt._holds(io.BytesIO(b"x" * 100 + needle), needle, 0, 100)  # past `end` is not read
