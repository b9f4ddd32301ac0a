"""fleetbake/worker/disk.py: the threshold, the supervisor's watch, and a cleanup that removes only what it may."""

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT
from fleetbake.worker import disk

GB = disk.GB


# --- settings -------------------------------------------------------------------------------------


def test_defaults_come_from_the_devguide_and_values_are_read():
    cfg = disk.settings({})
    assert disk.DEVGUIDE_GB == 30 and cfg.min_free_gb == 10 and cfg.interval == 60
    assert cfg.min_free == 10 * GB and cfg.idle_seconds == 5 * 60 and cfg.path == "/buildarea"
    assert cfg.threshold() == "WORKER_MIN_FREE_GB=10 GB"
    cfg = disk.settings({"WORKER_MIN_FREE_GB": " 2.5 ", "WORKER_DISK_INTERVAL": "5"}, "/srv/area")
    assert (cfg.min_free, cfg.interval, cfg.idle_seconds, cfg.path) == (int(2.5 * GB), 5, 60, "/srv/area")
    assert cfg.threshold() == "WORKER_MIN_FREE_GB=2.5 GB"
    assert disk.settings({"WORKER_MIN_FREE_GB": "0.03"}).threshold() == "WORKER_MIN_FREE_GB=0.03 GB"


@pytest.mark.parametrize("env, message", [
    ({"WORKER_MIN_FREE_GB": "lots"}, "WORKER_MIN_FREE_GB='lots' is not a number of GB"),
    ({"WORKER_MIN_FREE_GB": "10GB"}, "is not a number of GB"),
    ({"WORKER_MIN_FREE_GB": "-1"}, "is not a number of GB"),
    ({"WORKER_MIN_FREE_GB": "1e3"}, "is not a number of GB"),
    ({"WORKER_MIN_FREE_GB": "nan"}, "is not a number of GB"),
    ({"WORKER_MIN_FREE_GB": "0"}, "WORKER_MIN_FREE_GB=0: give a positive number of GB"),
    ({"WORKER_MIN_FREE_GB": "0.000"}, "give a positive number"),
    ({"WORKER_DISK_INTERVAL": "soon"}, "WORKER_DISK_INTERVAL='soon' is not a whole number of seconds"),
    ({"WORKER_DISK_INTERVAL": "0"}, r"WORKER_DISK_INTERVAL=0 is out of range \(1 to 3600 seconds\)"),
    ({"WORKER_DISK_INTERVAL": "3601"}, "out of range"),
    ({"WORKER_DISK_INTERVAL": "1.5"}, "not a whole number"),
])
def test_bad_disk_settings_are_refused(env, message):
    with pytest.raises(disk.SettingError, match=message):
        disk.settings(env)


def test_a_threshold_above_the_filesystems_size_is_refused(tmp_path):
    size = 64 * 1024**2
    fits = disk.settings({"WORKER_MIN_FREE_GB": "0.0625"}, str(tmp_path))  # exactly the size: reachable
    disk.check_fits(fits, lambda path: (size, size))
    too_big = disk.settings({"WORKER_MIN_FREE_GB": "0.07"}, str(tmp_path))
    with pytest.raises(disk.SettingError, match=r"WORKER_MIN_FREE_GB=0.07 GB is more than the whole filesystem at "
                                                r".* \(0.06 GB\): the worker could never be healthy"):
        disk.check_fits(too_big, lambda path: (size, size))
    with pytest.raises(disk.SettingError, match="No such file or directory: cannot read its free space"):
        disk.check_fits(disk.settings({}, str(tmp_path / "missing")))


def test_the_entrypoint_refuses_them_with_one_line(entrypoint, tmp_path):
    with pytest.raises(entrypoint.ConfigError, match="WORKER_MIN_FREE_GB='x' is not a number"):
        entrypoint.disk_settings({"WORKER_MIN_FREE_GB": "x"}, str(tmp_path))
    with pytest.raises(entrypoint.ConfigError, match="more than the whole filesystem"):
        entrypoint.disk_settings({"WORKER_MIN_FREE_GB": "999999"}, str(tmp_path))
    assert entrypoint.disk_settings({"WORKER_MIN_FREE_GB": "999999"}, str(tmp_path), check_size=False).min_free_gb == 999999
    result = subprocess.run(  # not -I: this checkout's fleetbake, whatever the venv has installed
        [sys.executable, "-m", "fleetbake.worker.entrypoint"], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "FLEETBAKE_USER": "nobody", "WORKERNAME": "w",
             "WORKER_MIN_FREE_GB": "0"}, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "fleetbake-worker: error: WORKER_MIN_FREE_GB=0: give a positive number of GB (the default is 10)"]


# --- the watch ------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def watch_with(free, *, interval=60, cleaner_argv=None, min_free_gb="10"):
    """A Watch on an injected free space (free[0], in bytes) and clock; what it logs goes into a list."""
    clock, lines = Clock(), []
    cfg = disk.settings({"WORKER_MIN_FREE_GB": min_free_gb, "WORKER_DISK_INTERVAL": str(interval)}, "/buildarea")
    watch = disk.Watch(cfg, cleaner_argv, space_of=lambda path: (free[0], 100 * GB), clock=clock, log=lines.append)
    return watch, clock, lines


def test_health_goes_low_with_the_reason_and_back_and_the_warning_is_once_per_episode():
    free = [50 * GB]
    watch, clock, lines = watch_with(free)
    assert watch.poll() is False and watch.problem is None and lines == []  # first check at once: fine

    free[0] = 2 * GB
    clock.now += 30
    assert watch.poll() is False and watch.problem is None  # not yet time to look again
    clock.now += 30
    assert watch.poll() is True
    assert watch.problem == "low disk: 2.0 GB free at /buildarea, below WORKER_MIN_FREE_GB=10 GB"
    assert lines == ["warning: low disk: 2.0 GB free at /buildarea, below WORKER_MIN_FREE_GB=10 GB: the worker reports "
                     "unhealthy, and removes what it may (idle builder directories, longest idle first) until the "
                     "space is back"]

    for left in (1 * GB, 0.5 * GB):  # still low: the reason follows the numbers, the warning is not repeated
        free[0] = int(left)
        clock.now += 60
        assert watch.poll() is True and watch.problem.startswith(f"low disk: {disk.gb(left)} GB free")
    clock.now += 60
    assert watch.poll() is False  # same numbers, nothing to rewrite
    assert len(lines) == 1

    free[0] = 12 * GB
    clock.now += 60
    assert watch.poll() is True and watch.problem is None
    assert lines[1:] == ["disk space is back: 12.0 GB free at /buildarea (WORKER_MIN_FREE_GB=10 GB)"]

    free[0] = 3 * GB  # a new episode: warned again
    clock.now += 60
    assert watch.poll() is True and len(lines) == 3 and lines[2].startswith("warning: low disk: 3.0 GB free")


def test_an_unreadable_free_space_is_unhealthy_too():
    def broken(path):
        raise FileNotFoundError(2, "No such file or directory")

    cfg = disk.settings({}, "/buildarea")
    lines = []
    watch = disk.Watch(cfg, None, space_of=broken, clock=Clock(), log=lines.append)
    assert watch.poll() is True
    assert watch.problem == "low disk? cannot read the free space at /buildarea: No such file or directory"
    assert len(lines) == 1


RECORDER = "import json, sys, time; open(sys.argv[1], 'a').write(json.dumps(sys.argv[2:]) + '\\n'); time.sleep(float(sys.argv[2]))"


def test_the_cleanup_runs_while_low_one_at_a_time_with_no_secret(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    monkeypatch.setenv("WORKERPASS", "s3cret")  # the supervisor's own environment holds it; the cleaner must not
    free = [50 * GB]
    argv = [sys.executable, "-c", RECORDER, str(calls), "0.5"]
    watch, clock, _ = watch_with(free, interval=5, cleaner_argv=argv)
    watch.poll()
    assert watch.cleaner is None  # enough space: no cleanup
    free[0] = 1 * GB
    clock.now += 5
    watch.poll()
    assert watch.cleaner is not None and watch.cleanups == 1
    assert watch.cleaner.args[-3:] == ["--buildarea=/buildarea", f"--min-free-bytes={10 * GB}", "--idle-seconds=60"]
    assert watch.cleaner.args[-4] == "clean"
    assert set(watch.cleaner_env) == {"PATH", "LANG"}
    clock.now += 5
    watch.poll()
    assert watch.cleanups == 1  # still running: no second one
    watch.cleaner.wait(timeout=30)
    free[0] = 20 * GB  # what the cleanup freed
    watch.poll()  # it finished: the free space is read again at once, not an interval later
    assert watch.cleaner is None and watch.problem is None
    recorded = calls.read_text().splitlines()
    assert len(recorded) == 1


def test_a_cleanup_that_frees_nothing_is_not_restarted_before_its_interval():
    """The supervisor polls about once a second; on a disk that stays low, one cleanup per interval, not per poll."""
    free = [1 * GB]
    watch, clock, _ = watch_with(free, interval=5, cleaner_argv=[sys.executable, "-c", "pass"])
    for _ in range(12):
        watch.poll()
        if watch.cleaner is not None:
            watch.cleaner.wait(timeout=30)
        clock.now += 1
    watch.poll()
    assert watch.cleanups == 3 and watch.problem  # at 0, 5 and 10 s


def test_a_failing_cleanup_is_told_once_and_the_watch_stops_its_cleaner():
    free = [1 * GB]
    watch, clock, lines = watch_with(free, interval=1, cleaner_argv=[sys.executable, "-c", "raise SystemExit(3)"])
    watch.poll()
    for _ in range(3):
        watch.cleaner.wait(timeout=30)
        clock.now += 1
        watch.poll()
    assert lines.count("warning: the disk cleanup exited with status 3") == 1
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    watch, clock, _ = watch_with(free, cleaner_argv=sleeper)
    watch.poll()
    process = watch.cleaner
    watch.stop()
    assert process.poll() is not None and watch.cleaner is None


# --- the supervisor's health file ------------------------------------------------------------------

SUPERVISED = """
import os, subprocess, sys
from fleetbake.worker import disk, entrypoint
health, control, child_code = sys.argv[1:4]
read_end, write_end = os.pipe()
child = subprocess.Popen([sys.executable, "-c", child_code], pass_fds=(write_end,),
                         env={**os.environ, "STATUS_FD": str(write_end)})
os.close(write_end)
cfg = disk.settings({"WORKER_MIN_FREE_GB": "10", "WORKER_DISK_INTERVAL": "1"}, "/buildarea")
watch = disk.Watch(cfg, None, space_of=lambda path: (int(open(control).read()), 100 * disk.GB))
sys.exit(entrypoint.supervise(child.pid, read_end, health, watch=watch))
"""
# The worker: reports once, then keeps quiet (as a frozen worker would) until told to stop.
QUIET_WORKER = ("import os, sys, time; fd = int(os.environ['STATUS_FD'])\n"
                "os.write(fd, b'connected m:1\\n')\n"
                "while not os.path.exists(sys.argv[1] if len(sys.argv) > 1 else '/nonexistent'): time.sleep(0.1)\n")


def wait_for(path, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if predicate(text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{path}: {text!r}")


def test_the_supervisor_reports_low_disk_with_the_reason_and_keeps_the_workers_report_time(entrypoint, tmp_path, capsys):
    health, control, stop = tmp_path / "health", tmp_path / "free", tmp_path / "stop"
    control.write_text(str(50 * GB))
    worker = QUIET_WORKER.replace("sys.argv[1] if len(sys.argv) > 1 else '/nonexistent'", repr(str(stop)))
    process = subprocess.Popen([sys.executable, "-c", SUPERVISED, str(health), str(control), worker], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(health, lambda text: text == "connected m:1\n")
        reported = health.stat().st_mtime
        assert entrypoint.health(str(health)) == 0
        # Not synchronisation: the clock must pass the report time, so that a disk check stamping "now" shows.
        while time.time() < reported + 0.1:
            time.sleep(0.01)
        control.write_text(str(2 * GB))
        text = wait_for(health, lambda text: text.startswith("low disk"))
        assert text == "low disk: 2.0 GB free at /buildarea, below WORKER_MIN_FREE_GB=10 GB (worker connected m:1)\n"
        # Still the time of the worker's last report, not of the disk check: a frozen worker goes stale all the same.
        assert abs(health.stat().st_mtime - reported) < 0.01
        assert entrypoint.health(str(health)) == 1
        assert "worker: low disk: 2.0 GB free at /buildarea, below WORKER_MIN_FREE_GB=10 GB" in capsys.readouterr().out
        control.write_text(str(30 * GB))
        wait_for(health, lambda text: text == "connected m:1\n")
        assert abs(health.stat().st_mtime - reported) < 0.01
        assert entrypoint.health(str(health)) == 0
        stop.write_text("")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert health.read_text() == "stopped (exit 0)\n"
    log = process.stderr.read()
    assert log.count("fleetbake-worker: warning: low disk: 2.0 GB free") == 1, log
    assert log.count("fleetbake-worker: disk space is back: 30.0 GB free at /buildarea") == 1, log


def test_write_health_sets_the_time_it_is_given(entrypoint, tmp_path):
    folder = tmp_path / "fleetbake"
    entrypoint.own_health_dir(str(folder))
    health = folder / "health"
    entrypoint.write_health("connected m:1", str(health), mtime=1_000_000.5)
    assert health.stat().st_mtime == 1_000_000.5
    entrypoint.write_health("connected m:1", str(health))
    assert abs(health.stat().st_mtime - time.time()) < 5


# --- the cleanup ----------------------------------------------------------------------------------


def tree(root, spec):
    """Files from {relative path: size}."""
    for relative, size in spec.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)


def names(path):
    return sorted(p.name for p in path.iterdir())


def stamp_after(probe, moment, timeout=5):
    """Touch `probe` until the filesystem stamps it later than `moment`; return that time. The filesystem's clock
    is coarse (kernel ticks): once it passed `moment`, every later change is stamped after it."""
    deadline = time.monotonic() + timeout
    while True:
        probe.touch()
        stamped = probe.stat().st_ctime
        if stamped > moment:
            return stamped
        assert time.monotonic() < deadline, f"the filesystem clock stays at {stamped}"
        time.sleep(0.001)


@pytest.fixture
def area(tmp_path):
    """A buildarea as a worker leaves it: info/, the worker's own files, builder directories, a ~/.cache;
    links out of it; and, outside it, files that must survive. Everything in it is older than `mid`
    but `recent/`, created after."""
    root = tmp_path / "buildarea"
    outside = tmp_path / "outside"
    tree(outside, {"precious": 10, "dir/keep": 10})
    tree(root, {"info/admin": 10, "info/host": 10, "buildbot.tac": 10, "twistd.log": 10, "twistd.pid": 10,
                "3.x.idle/build/python": 1000, "3.x.idle/build/Lib/os.py": 1000, "3.x.idle/build/.git/HEAD": 10,
                "3.14.busy/build/python": 1000, ".cache/pip/wheel": 1000})
    (root / "3.x.idle" / "build" / "precious-link").symlink_to(outside / "precious")
    (root / "3.x.idle" / "build" / "dir-link").symlink_to(outside / "dir")
    (root / "link-out").symlink_to(outside)
    readonly = root / "3.x.idle" / "build" / "readonly"
    tree(readonly, {"sub/file": 10})
    (readonly / "sub").chmod(0o500)
    readonly.chmod(0o000)
    (root / "3.13.empty").mkdir()
    probe = tmp_path / "clock"
    probe.touch()
    mid = stamp_after(probe, probe.stat().st_ctime)  # after every change above
    stamp_after(probe, mid)
    tree(root, {"recent/build/config.log": 10})  # stamped after mid
    return SimpleNamespace(root=root, mid=mid, outside=outside, probe=probe)


def clean(area, *, busy=(), min_free=None, idle=60, now=None, space_of=None):
    lines = []
    removed = disk.clean(str(area.root), min_free if min_free is not None else 10**18, idle,
                         space_of=space_of or (lambda path: (0, 10**12)), busy_of=lambda path: set(busy),
                         clock=lambda: (now if now is not None else area.mid + idle), log=lines.append)
    return removed, lines


def test_the_cleanup_empties_idle_directories_only(area):
    removed, lines = clean(area, busy={"3.14.busy"})
    assert removed == ["3.x.idle", ".cache"] or removed == [".cache", "3.x.idle"]
    assert names(area.root / "3.x.idle") == [] and names(area.root / ".cache") == []  # emptied; the directories stay
    assert names(area.root / "3.14.busy" / "build") == ["python"]  # in use by a running build
    assert names(area.root / "recent" / "build") == ["config.log"]  # changed within the idle period
    assert names(area.root / "info") == ["admin", "host"]
    for own in ("buildbot.tac", "twistd.log", "twistd.pid"):
        assert (area.root / own).read_bytes() == b"x" * 10
    assert (area.root / "link-out").is_symlink()  # a link is never followed, nor removed at the top
    assert names(area.outside) == ["dir", "precious"] and names(area.outside / "dir") == ["keep"]
    assert all(line.startswith("disk: removed the contents of ") for line in lines) and len(lines) == 2, lines
    assert (area.root / "3.13.empty").is_dir()  # an empty builder directory: kept, and nothing said
    assert not any("could not remove" in line for line in lines), lines


def test_nothing_is_removed_while_the_space_suffices_and_the_longest_idle_goes_first(area):
    assert clean(area, min_free=0) == ([], [])
    assert names(area.root / "3.x.idle" / "build")
    os.utime(area.root / ".cache" / "pip" / "wheel")  # ctime: .cache changed after 3.x.idle

    def du(path):
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink() and os.access(f.parent, os.R_OK))

    total = 10**6
    # Removing 3.x.idle (about 2 kB, the longest idle) is enough: .cache must stay.
    removed, _ = clean(area, busy={"3.14.busy"}, min_free=total - du(area.root) + 1500,
                       space_of=lambda path: (total - du(area.root), total), now=time.time() + 60)
    assert removed == ["3.x.idle"] and names(area.root / ".cache" / "pip") == ["wheel"]


def test_a_build_that_starts_meanwhile_keeps_its_directory(area):
    calls = []

    def busy(path):
        calls.append(path)
        # Listed idle, busy by the time each would go.
        return {"3.14.busy"} if len(calls) == 1 else {"3.14.busy", "3.x.idle", ".cache", "3.13.empty"}

    removed = disk.clean(str(area.root), 10**18, 60, space_of=lambda path: (0, 10**12), busy_of=busy,
                         clock=lambda: area.mid + 60, log=lambda line: None)
    assert removed == [] and names(area.root / "3.x.idle" / "build") and len(calls) == 4  # once, then per candidate


def test_a_build_that_starts_while_the_entries_go_aside_gets_them_back(area):
    """The last look comes once everything is aside: the build's files come back, nothing is removed; what the
    build made anew meanwhile stays, and the old entry of that name waits aside for a later cleanup."""
    build = area.root / "3.x.idle" / "build"

    def starts(path):
        if not (build.parent / disk.ASIDE).exists():
            return set()
        (area.root / "3.x.idle" / "Makefile").write_text("new")  # a build step began
        return {"3.x.idle"}

    lines = []
    removed = disk.clean(str(area.root), 10**18, 60, space_of=lambda path: (0, 10**12), busy_of=starts,
                         clock=lambda: area.mid + 60, log=lines.append)
    assert "3.x.idle" not in removed
    assert [line for line in lines if "3.x.idle/" in line and "a build started there meanwhile; left as it was" in line]
    assert sorted(names(build)) == sorted([".git", "Lib", "dir-link", "precious-link", "python", "readonly"])
    assert names(area.root / "3.x.idle") == ["Makefile", "build"]  # no folder left aside
    assert (build.parent / "Makefile").read_text() == "new"


def test_a_directory_with_a_mount_inside_is_left_alone(area, tmp_path):
    """A bind mount of the same filesystem has the same st_dev: the mount table is what tells."""
    info = tmp_path / "mountinfo"
    info.write_text(f"21 1 0:20 / / rw - overlay overlay rw\n30 21 8:1 /srv {area.root}/3.x.idle/build/srv rw - ext4 /dev/sda1 rw\n")
    _, kept = disk.candidates(os.open(area.root, os.O_RDONLY), str(area.root), 60, area.mid + 60, set(), str(info))
    assert kept["3.x.idle"] == "a filesystem is mounted there"
    _, kept = disk.candidates(os.open(area.root, os.O_RDONLY), str(area.root), 60, area.mid + 60, set(), str(tmp_path / "none"))
    assert "3.x.idle" not in kept


def test_a_link_into_a_recently_changed_place_does_not_make_a_directory_look_busy(area):
    """The walk that finds the newest change does not follow links: outside/ changed after the idle period began."""
    stamp_after(area.probe, area.mid)
    (area.outside / "dir" / "new").write_text("fresh")
    _, kept = disk.candidates(os.open(area.root, os.O_RDONLY), str(area.root), 60, area.mid + 60, set())
    assert "3.x.idle" not in kept and kept["recent"].startswith("changed ")


def test_running_processes_are_found_by_cwd_and_open_files(area, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=area.root / "3.14.busy" / "build")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1]); time.sleep(60)",
                               str(area.root / ".cache" / "pip" / "wheel")], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while (found := disk.busy_entries(str(area.root))) != {"3.14.busy", ".cache"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found == {"3.14.busy", ".cache"}
        removed, _ = clean(area, busy=disk.busy_entries(str(area.root)))
        assert removed == ["3.x.idle"] and names(area.root / "3.14.busy" / "build") == ["python"]
    finally:
        sleeper.kill()
        holder.kill()
    assert disk._top_entry("/buildarea", "/buildarea/b1/build/x.o (deleted)") == "b1"
    assert disk._top_entry("/buildarea", "/buildarea") is None
    assert disk._top_entry("/buildarea", "/buildarea2/b") is None
    assert disk._top_entry("/buildarea", "socket:[1234]") is None


def test_the_cleaner_command_the_watch_runs(area):
    """As the supervisor starts it: python -I -m fleetbake.worker.disk clean ... (here without the privilege drop, and
    without -I, so that this checkout's module runs whatever the venv has installed)."""
    result = subprocess.run([sys.executable, "-m", "fleetbake.worker.disk", "clean", f"--buildarea={area.root}",
                             f"--min-free-bytes={10**18}", "--idle-seconds=0"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "fleetbake-worker: disk: removed the contents of 3.x.idle/" in result.stderr
    assert names(area.root / "3.x.idle") == [] and names(area.root / "info") == ["admin", "host"]
    assert names(area.outside) == ["dir", "precious"]


def runs_as(pid, command, uid):
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
        uids = [line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")]
    except FileNotFoundError:
        return False
    return comm == f"{command}\n" and uids == [str(uid)]


@pytest.mark.skipif(os.getuid() != 0, reason="drops to another user, as the supervisor does")
def test_as_the_build_user_it_sees_the_builds_and_removes_what_tests_left_unreadable(entrypoint, tmp_path):
    """The supervisor's way: setpriv to the build user (here nobody), who owns the buildarea and runs the builds."""
    import pwd
    import shutil
    import tempfile

    user = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(dir="/tmp", prefix="fleetbake-disk-")  # reachable by nobody (pytest's tmp_path is not)
    try:
        os.chmod(top, 0o755)
        root = os.path.join(top, "buildarea")
        tree_root = type(tmp_path)(root)
        tree(tree_root, {"info/admin": 10, "3.x/build/python": 1000, "3.x/build/locked/sub/file": 10,
                         "3.14/build/python": 1000})
        for base, dirs, files_ in os.walk(root):
            for name in [base, *(os.path.join(base, n) for n in dirs + files_)]:
                os.chown(name, user.pw_uid, user.pw_gid)
        os.chmod(os.path.join(root, "3.x", "build", "locked", "sub"), 0o500)  # as a test may leave them
        os.chmod(os.path.join(root, "3.x", "build", "locked"), 0o000)
        drop = entrypoint.drop_privileges_argv(user, can_drop_bounding=True)
        build = subprocess.Popen([*drop, "sleep", "60"], cwd=os.path.join(root, "3.14", "build"))
        try:
            # The build has started once setpriv has become the user and run sleep: the cleaner can see it then.
            deadline = time.monotonic() + 20
            while not runs_as(build.pid, "sleep", user.pw_uid):
                assert time.monotonic() < deadline and build.poll() is None, "the build never started"
                time.sleep(0.01)
            result = subprocess.run(
                [*drop, sys.executable, "-m", "fleetbake.worker.disk", "clean", f"--buildarea={root}",
                 f"--min-free-bytes={10**18}", "--idle-seconds=0"], cwd="/", capture_output=True, text=True, timeout=60,
                env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}, check=False)
        finally:
            build.kill()
        assert result.returncode == 0, result.stderr
        assert "removed the contents of 3.x/" in result.stderr and "could not remove" not in result.stderr, result.stderr
        assert os.listdir(os.path.join(root, "3.x")) == []
        assert os.listdir(os.path.join(root, "3.14", "build")) == ["python"]  # its build runs there
        assert os.listdir(os.path.join(root, "info")) == ["admin"]
    finally:
        shutil.rmtree(top)


def test_the_test_masters_fill_step_refuses_a_real_disk(tmp_path, monkeypatch, capsys):
    """fill_disk.py fills only a small dedicated filesystem (the integration test's tmpfs), never a host's disk."""
    from fleetbake.devtools import fill_disk

    monkeypatch.chdir(tmp_path)
    if disk.space(str(tmp_path))[1] <= fill_disk.LARGEST:
        pytest.skip("tmp_path is a small filesystem here")
    assert fill_disk.main(0) == 1
    assert "refused: this filesystem holds" in capsys.readouterr().out and not (tmp_path / "fill.bin").exists()
