"""The entrypoint's `drain` (the Kubernetes manifest's preStop): the stamp as the build user, then the wait."""

import os
import pwd
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

# As root (CI), drain drops to another user, as in the image; as a user it can only be that user.
BUILD_USER = "nobody" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name


def start(entrypoint, basedir, health):
    result = {}

    def run():
        try:
            result["code"] = entrypoint.drain({"FLEETBAKE_USER": BUILD_USER}, stamp=str(basedir / "shutdown.stamp"),
                                              health_file=str(health), poll=0.02)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture
def basedir():
    """A buildarea as the image has it: the build user's, closed to others (0700 here: not even root's group).
    Under /tmp: the build user must reach it, and pytest's folders are root's own."""
    top = Path(tempfile.mkdtemp(prefix="fleetbake-drain-"))
    top.chmod(0o755)
    folder = top / "buildarea"
    folder.mkdir(mode=0o700)
    user = pwd.getpwnam(BUILD_USER)
    os.chown(folder, user.pw_uid, user.pw_gid)
    yield folder
    shutil.rmtree(top)


def test_drain_touches_the_stamp_as_the_build_user_then_waits_for_the_worker_to_stop(entrypoint, basedir, tmp_path):
    stamp, health = basedir / "shutdown.stamp", tmp_path / "health"
    health.write_text("connected 127.0.0.1:9989\n")
    thread, result = start(entrypoint, basedir, health)
    deadline = time.monotonic() + 10
    while not stamp.exists():
        assert time.monotonic() < deadline and thread.is_alive(), result
        time.sleep(0.01)
    assert stamp.stat().st_uid == pwd.getpwnam(BUILD_USER).pw_uid
    time.sleep(0.3)
    assert thread.is_alive(), "drain returned while the worker was still connected"
    health.write_text("stopping\n")
    time.sleep(0.3)
    assert thread.is_alive(), "drain returned before the worker had stopped"
    health.write_text("stopped (exit 0)\n")
    thread.join(10)
    assert result == {"code": 0}


def test_a_stamp_touched_before_gets_a_newer_mtime(entrypoint, basedir, tmp_path):
    """buildbot-worker acts only on an mtime newer than the one it saw at start."""
    stamp, health = basedir / "shutdown.stamp", tmp_path / "health"
    health.write_text("stopped (exit 0)\n")
    user = pwd.getpwnam(BUILD_USER)
    stamp.touch()
    os.chown(stamp, user.pw_uid, user.pw_gid)
    os.utime(stamp, (1_000_000, 1_000_000))
    thread, result = start(entrypoint, basedir, health)
    thread.join(10)
    assert result == {"code": 0} and time.time() - stamp.stat().st_mtime < 60


def test_a_symlinked_stamp_is_not_followed(entrypoint, basedir, tmp_path, capfd):
    """A build step could leave shutdown.stamp as a link to a file it wants touched."""
    target, health = tmp_path / "elsewhere", tmp_path / "health"
    target.write_text("")
    os.utime(target, (1_000_000, 1_000_000))
    (basedir / "shutdown.stamp").symlink_to(target)
    thread, result = start(entrypoint, basedir, health)
    thread.join(10)
    assert isinstance(result.get("error"), entrypoint.ConfigError), result
    said = str(result["error"]) + capfd.readouterr().err  # as root, the dropped child says why
    assert "shutdown.stamp" in said and "Too many levels of symbolic links" in said, said
    assert target.stat().st_mtime == 1_000_000
