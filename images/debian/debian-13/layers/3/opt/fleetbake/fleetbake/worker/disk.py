# Generated from matrix.yml (row debian-13) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""Free space where the buildarea lives: the threshold, the watch, and the safe cleanup (stdlib only).

The root supervisor (entrypoint) owns a `Watch`: every WORKER_DISK_INTERVAL seconds it reads the
free space of the buildarea's filesystem (statvfs). Below WORKER_MIN_FREE_GB it logs one warning
for the episode, and the supervisor writes the reason into its root-owned health file, so the
HEALTHCHECK says why the worker is unhealthy; when space is back it logs one line and health
follows the worker's connection again.

While space is low, the watch runs the cleanup, as the build user (the supervisor has neither
CAP_DAC_OVERRIDE, to read the buildarea, nor CAP_SYS_PTRACE, to see the build steps' /proc entries):

    python3 -I -m fleetbake.worker.disk clean --buildarea DIR --min-free-bytes N --idle-seconds S

What it may remove: the contents of the buildarea's top-level directories (builder directories,
one per builder the master assigns, and leftovers such as a build step's ~/.cache: HOME is the
buildarea) that are idle: no process has its working directory, its root or an open file below
it, and nothing below it changed (ctime, which no one can set back) for S seconds (5 intervals, at
least MIN_IDLE_SECONDS), which covers the gaps between a build's steps. Longest idle first, and only until the free space is back. The
directory itself stays (the worker holds it for its builder).

What it never touches: anything outside the buildarea; `info/` (what the master shows about the
worker); top-level files (buildbot.tac, twistd.log, twistd.pid on a plain host, an owner's notes);
symbolic links (removed as links, never followed); a directory with anything mounted at or below
it (a volume, a bind mount: the mount table says); a directory that is in use or changed recently.
Its entries are moved aside together and the processes looked at once more before anything goes:
a build that started meanwhile gets them back. Builder
directories the master no longer assigns are Buildbot's own job (delete_leftover_dirs, at every
connect).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from fleetbake.worker import mounts

GB = 1024**3  # as preflight counts: the devguide's "30 GB free disk space"
DEVGUIDE_GB = 30
# The devguide's 30 GB is what a new worker should have to itself; its builders' checkouts then
# live in it (about 1 GB each, kept between builds so that the next build only fetches). The
# watch is about the next build fitting: one build and test run peaks at a few GB (test_largefile
# alone writes 2.5 GB), so a third of the devguide's figure, with room to spare. A threshold of
# 30 GB would keep a host that had exactly the devguide's 30 GB unhealthy once its checkouts exist.
DEFAULT_MIN_FREE_GB = DEVGUIDE_GB / 3
MIN_FREE_VAR = "WORKER_MIN_FREE_GB"
INTERVAL_VAR = "WORKER_DISK_INTERVAL"
DEFAULT_INTERVAL = 60
INTERVAL_RANGE = (1, 3600)
IDLE_CHECKS = 5  # a directory is idle once nothing below it changed for this many intervals,
MIN_IDLE_SECONDS = 60  # and never sooner than this: twistd's own work between steps is not seen in /proc
ASIDE = ".fleetbake-removing"  # inside a builder directory: what the cleanup is removing
KEEP = frozenset({"info"})  # Buildbot keeps it too (remote_setBuilderList): info/admin, info/host
PROG = "fleetbake-worker"


class SettingError(ValueError):
    """A bad disk setting: the entrypoint stops with this one line and exit 2."""


@dataclass(frozen=True)
class Settings:
    min_free_gb: float
    interval: int
    path: str = "/buildarea"

    @property
    def min_free(self) -> int:
        return int(self.min_free_gb * GB)

    @property
    def idle_seconds(self) -> int:
        return max(self.interval * IDLE_CHECKS, MIN_IDLE_SECONDS)

    def threshold(self) -> str:
        return f"{MIN_FREE_VAR}={number(self.min_free_gb)} GB"


def number(value: float) -> str:
    """10.0 -> 10, 2.50 -> 2.5: as a person would write the setting."""
    return format(value, ".6f").rstrip("0").rstrip(".")


def settings(env: dict[str, str], path: str = "/buildarea") -> Settings:
    """The threshold and the check interval, as the environment gives them (checked for meaning, not only form)."""
    raw = env.get(MIN_FREE_VAR, "").strip()
    if not raw:
        min_free = DEFAULT_MIN_FREE_GB
    elif not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6})?", raw):
        raise SettingError(f"{MIN_FREE_VAR}={raw!r} is not a number of GB such as 10 or 2.5")
    else:
        min_free = float(raw)
        if min_free <= 0:
            raise SettingError(f"{MIN_FREE_VAR}={raw}: give a positive number of GB (the default is {number(DEFAULT_MIN_FREE_GB)})")
    raw_interval = env.get(INTERVAL_VAR, "").strip()
    low, high = INTERVAL_RANGE
    if not raw_interval:
        interval = DEFAULT_INTERVAL
    elif not re.fullmatch(r"[0-9]{1,9}", raw_interval):
        raise SettingError(f"{INTERVAL_VAR}={raw_interval!r} is not a whole number of seconds")
    else:
        interval = int(raw_interval)
        if not low <= interval <= high:
            raise SettingError(f"{INTERVAL_VAR}={interval} is out of range ({low} to {high} seconds)")
    return Settings(min_free, interval, path)


def space(path: str) -> tuple[int, int]:
    """(free, size) in bytes of the filesystem holding path; free as an unprivileged user may use it."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize


def check_fits(cfg: Settings, space_of: Callable[[str], tuple[int, int]] = space) -> None:
    """A threshold the filesystem cannot reach would keep the worker unhealthy for ever: refuse it."""
    try:
        _, size = space_of(cfg.path)
    except OSError as exc:
        raise SettingError(f"{cfg.path}: {exc.strerror}: cannot read its free space") from None
    if cfg.min_free > size:
        raise SettingError(f"{cfg.threshold()} is more than the whole filesystem at {cfg.path} ({gb(size)} GB): "
                           "the worker could never be healthy; give a smaller number")


def gb(size: float) -> str:
    value = size / GB
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def low_reason(free: int, cfg: Settings) -> str | None:
    """Why the worker is unhealthy, or None when there is enough space."""
    if free >= cfg.min_free:
        return None
    return f"low disk: {gb(free)} GB free at {cfg.path}, below {cfg.threshold()}"


def _log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


class Watch:
    """The supervisor's side: check every interval, say so once per low-disk episode, run the cleanup.

    `problem` is the reason to report unhealthy (None when there is enough space). `poll()` is
    cheap between checks; it returns True when `problem` changed, so that the supervisor rewrites
    its health file. The cleanup runs as a separate process (`cleaner_argv`, as the build user);
    the supervisor never waits for it, so signals and the worker's reports are handled meanwhile.
    """

    def __init__(self, cfg: Settings, cleaner_argv: list[str] | None, *,
                 space_of: Callable[[str], tuple[int, int]] = space, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = _log, cleaner_env: dict[str, str] | None = None):
        self.cfg = cfg
        self.cleaner_argv = cleaner_argv
        self.cleaner_env = cleaner_env if cleaner_env is not None else {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        self.space_of = space_of
        self.clock = clock
        self.log = log
        self.problem: str | None = None
        self.cleaner: subprocess.Popen | None = None
        self.cleanups = 0
        self._next = clock()  # the first check is at once
        self._failure_told = False

    def poll(self) -> bool:
        before = self.problem
        if self.cleaner is not None and self.cleaner.poll() is not None:
            code, self.cleaner = self.cleaner.returncode, None
            if code != 0 and not self._failure_told:
                self._failure_told = True
                self.log(f"warning: the disk cleanup exited with status {code}")
            self.check(clean=False)  # health follows what the cleanup freed at once; the next one waits its interval
        if self.clock() >= self._next:
            self._next = self.clock() + self.cfg.interval
            self.check()
        return self.problem != before

    def check(self, clean: bool = True) -> None:
        try:
            free, _ = self.space_of(self.cfg.path)
            reason = low_reason(free, self.cfg)
        except OSError as exc:
            free, reason = None, f"low disk? cannot read the free space at {self.cfg.path}: {exc.strerror}"
        if reason and self.problem is None:
            self.log(f"warning: {reason}: the worker reports unhealthy, and removes what it may (idle builder "
                     "directories, longest idle first) until the space is back")
        elif reason is None and self.problem is not None:
            self.log(f"disk space is back: {gb(free)} GB free at {self.cfg.path} ({self.cfg.threshold()})")
            self._failure_told = False
        self.problem = reason
        if clean and reason and free is not None and self.cleaner is None and self.cleaner_argv:
            self.start_cleaner()

    def start_cleaner(self) -> None:
        argv = [*self.cleaner_argv, "clean", f"--buildarea={self.cfg.path}", f"--min-free-bytes={self.cfg.min_free}",
                f"--idle-seconds={self.cfg.idle_seconds}"]
        try:
            self.cleaner = subprocess.Popen(argv, env=self.cleaner_env, cwd="/", stdin=subprocess.DEVNULL)
            self.cleanups += 1
        except OSError as exc:
            if not self._failure_told:
                self._failure_told = True
                self.log(f"warning: cannot start the disk cleanup: {exc.strerror}")

    def stop(self) -> None:
        if self.cleaner is not None:
            try:
                self.cleaner.terminate()
                self.cleaner.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.cleaner.kill()
                self.cleaner.wait()
            self.cleaner = None


# --- the cleanup (run as the build user) ---------------------------------------------------------


def _top_entry(area: str, target: str) -> str | None:
    """The buildarea's top-level entry a path lies in (None: the buildarea itself, or outside it)."""
    if target.endswith(" (deleted)"):
        target = target[: -len(" (deleted)")]
    if not target.startswith(area.rstrip("/") + "/"):
        return None
    return target[len(area.rstrip("/")) + 1:].split("/", 1)[0] or None


def busy_entries(area: str, proc: str = "/proc") -> set[str]:
    """Top-level entries of the buildarea a process works in: its cwd or root there, or a file open below.

    Only the processes this user may inspect count, which is every build step (they run as the
    build user and are dumpable); twistd is not dumpable, so its own open files (a file upload in
    progress) are not seen: the idle period covers them.
    """
    busy: set[str] = set()
    try:
        me = str(os.getpid())  # the cleanup's own descriptors point into the directory it is emptying
        pids = [name for name in os.listdir(proc) if name.isdigit() and name != me]
    except OSError:
        return busy
    for pid in pids:
        links = [f"{proc}/{pid}/cwd", f"{proc}/{pid}/root"]
        try:
            links += [f"{proc}/{pid}/fd/{fd}" for fd in os.listdir(f"{proc}/{pid}/fd")]
        except OSError:
            pass
        for link in links:
            try:
                top = _top_entry(area, os.readlink(link))
            except OSError:  # gone, or not ours to look at
                continue
            if top:
                busy.add(top)
    return busy


def last_change(area_fd: int, name: str, dev: int, since: float) -> float:
    """The newest ctime of the directory `name` and anything below it, stopping early at one newer than `since`.

    os.fwalk opens each directory relative to its parent without following symbolic links, so a
    link cannot lead the walk out of the buildarea; other filesystems are not entered.
    """
    newest = os.stat(name, dir_fd=area_fd, follow_symlinks=False).st_ctime
    for _, dirnames, filenames, dir_fd in os.fwalk(name, dir_fd=area_fd, follow_symlinks=False):
        for entry in [*dirnames, *filenames]:
            try:
                info = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            newest = max(newest, info.st_ctime)
            if info.st_dev != dev and entry in dirnames:
                dirnames.remove(entry)
        if newest > since:
            break
    return newest


def _open_dir(parent_fd: int, name: str, expected: os.stat_result) -> int:
    """A directory, opened without following links, that is the one listed (not something swapped in since)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=parent_fd)
    except PermissionError:
        # One of ours that a test left without read or search permission (chmod 000): give it back.
        path_fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            if not os.path.samestat(expected, os.fstat(path_fd)):
                raise OSError(f"{name} changed while being removed")
            os.chmod(f"/proc/self/fd/{path_fd}", stat.S_IMODE(expected.st_mode) | stat.S_IRWXU)
        finally:
            os.close(path_fd)
        fd = os.open(name, flags, dir_fd=parent_fd)
    if not os.path.samestat(expected, os.fstat(fd)):
        os.close(fd)
        raise OSError(f"{name} changed while being removed")
    if stat.S_IMODE(expected.st_mode) & stat.S_IRWXU != stat.S_IRWXU and expected.st_uid == os.geteuid():
        os.chmod(fd, stat.S_IMODE(expected.st_mode) | stat.S_IRWXU)  # so that its entries can go
    return fd


def remove_tree(parent_fd: int, name: str, dev: int, errors: list[str]) -> None:
    """Remove `name` (relative to parent_fd): a link or file is unlinked, a directory emptied first.

    Never follows a symbolic link and never enters another filesystem; each directory is opened
    relative to its parent's descriptor, so renaming a path component meanwhile cannot redirect it.
    """
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        return
    if info.st_dev != dev:
        errors.append(f"{name}: another filesystem is mounted there; left alone")
        return
    fd = _open_dir(parent_fd, name, info)
    try:
        for entry in os.listdir(fd):
            try:
                remove_tree(fd, entry, dev, errors)
            except OSError as exc:
                errors.append(f"{entry}: {exc.strerror or exc}")
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def empty_dir(area_fd: int, name: str, dev: int, in_use: Callable[[], bool] = lambda: False) -> tuple[int, list[str]]:
    """Remove everything inside the top-level directory `name`, keeping the directory itself; return how many
    entries it held (0 when nothing was removed), and what could not be removed.

    All its entries are first renamed into one folder aside, each rename atomic; then `in_use` is asked
    again (a build step that started meanwhile still has its working directory or files below `name`,
    wherever they were moved). If it is, they are put back, as far as their names are still free, and
    nothing is removed. A build that starts after that finds the directory empty and checks out afresh.
    """
    errors: list[str] = []
    info = os.stat(name, dir_fd=area_fd, follow_symlinks=False)
    fd = _open_dir(area_fd, name, info)
    aside = ASIDE
    try:
        names = os.listdir(fd)
        entries = [entry for entry in names if entry != aside]
        if not entries and aside not in names:
            return 0, errors
        if aside not in names:
            os.mkdir(aside, 0o700, dir_fd=fd)
        aside_fd = _open_dir(fd, aside, os.stat(aside, dir_fd=fd, follow_symlinks=False))
        try:
            moved = []
            for entry in entries:
                try:
                    os.rename(entry, entry, src_dir_fd=fd, dst_dir_fd=aside_fd)
                    moved.append(entry)
                except OSError as exc:  # a mount point (EBUSY), or gone
                    errors.append(f"{entry}: {exc.strerror or exc}")
            if in_use():
                # Nothing is removed: each entry goes back unless the build made a new one of that name
                # meanwhile; what stays aside is removed by a later cleanup, once the directory is idle.
                for entry in moved:
                    if _exists(fd, entry):
                        continue
                    try:
                        os.rename(entry, entry, src_dir_fd=aside_fd, dst_dir_fd=fd)
                    except OSError as exc:
                        errors.append(f"{entry}: {exc.strerror or exc}")
                try:
                    os.rmdir(aside, dir_fd=fd)
                except OSError:
                    pass
                raise Busy
        finally:
            os.close(aside_fd)
        try:
            remove_tree(fd, aside, dev, errors)
        except OSError as exc:
            errors.append(f"{aside}: {exc.strerror or exc}")
        except RecursionError:  # deeper than Python's recursion limit: what is left stays
            errors.append(f"{aside}: nested too deeply")
    finally:
        os.close(fd)
    return len(names), errors


class Busy(Exception):
    """A build started in the directory while its entries were being moved aside: they were put back."""


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


@dataclass
class Candidate:
    name: str
    changed: float


def candidates(area_fd: int, area: str, idle_seconds: float, now: float, busy: set[str],
               mountinfo: str | None = None) -> tuple[list[Candidate], dict[str, str]]:
    """Idle top-level directories, longest idle first, and why each other one is left alone."""
    dev = os.fstat(area_fd).st_dev
    # A bind mount of the same filesystem has the same st_dev: the mount table tells.
    mounted = {_top_entry(area, point) for point in mounts.below(area, mountinfo)}
    idle, kept = [], {}
    for name in sorted(os.listdir(area_fd)):
        try:
            info = os.stat(name, dir_fd=area_fd, follow_symlinks=False)
        except OSError:
            continue
        if name in KEEP or not stat.S_ISDIR(info.st_mode):
            continue  # info/, the worker's own files, links: never
        if info.st_dev != dev or name in mounted:
            kept[name] = "a filesystem is mounted there"
        elif name in busy:
            kept[name] = "in use by a running build"
        else:
            try:
                changed = last_change(area_fd, name, dev, now - idle_seconds)
            except OSError as exc:
                kept[name] = f"cannot be read: {exc.strerror}"
                continue
            if changed > now - idle_seconds:
                kept[name] = f"changed {max(0, now - changed):.0f}s ago"
            else:
                idle.append(Candidate(name, changed))
    return sorted(idle, key=lambda c: c.changed), kept


def clean(area: str, min_free: int, idle_seconds: float, *, space_of: Callable[[str], tuple[int, int]] = space,
          busy_of: Callable[[str], set[str]] = busy_entries, clock: Callable[[], float] = time.time,
          log: Callable[[str], None] = _log, mountinfo: str | None = None) -> list[str]:
    """Empty idle top-level directories of the buildarea, longest idle first, until `min_free` bytes are free.

    Returns the names emptied. `busy_of` is asked again right before each one goes, and once more when
    its entries are aside, before anything is removed.
    """
    area = os.path.realpath(area)
    removed: list[str] = []
    area_fd = os.open(area, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        dev = os.fstat(area_fd).st_dev
        if space_of(area)[0] >= min_free:
            return removed
        idle, _ = candidates(area_fd, area, idle_seconds, clock(), busy_of(area), mountinfo)
        for candidate in idle:
            free = space_of(area)[0]
            if free >= min_free:
                break
            # A build may have started since the list was made: look again, just before.
            if candidate.name in busy_of(area) or last_change(area_fd, candidate.name, dev, clock() - idle_seconds) \
                    > clock() - idle_seconds:
                continue
            try:
                entries, errors = empty_dir(area_fd, candidate.name, dev, lambda: candidate.name in busy_of(area))
            except Busy:
                log(f"disk: {candidate.name}/ in {area}: a build started there meanwhile; left as it was")
                continue
            if not entries:  # an empty builder directory: nothing to say
                continue
            freed = space_of(area)[0] - free
            removed.append(candidate.name)
            idle_for = max(0, clock() - candidate.changed)
            log(f"disk: removed the contents of {candidate.name}/ in {area}, idle for {idle_for / 60:.0f} min "
                f"({gb(max(freed, 0))} GB freed)")
            for error in errors[:5]:
                log(f"disk: could not remove {candidate.name}/{error}")
    finally:
        os.close(area_fd)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetbake.worker.disk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cleaner = sub.add_parser("clean", help="empty idle builder directories until enough space is free")
    cleaner.add_argument("--buildarea", required=True)
    cleaner.add_argument("--min-free-bytes", type=int, required=True)
    cleaner.add_argument("--idle-seconds", type=float, required=True)
    args = parser.parse_args(argv)
    try:
        clean(args.buildarea, args.min_free_bytes, args.idle_seconds)
    except OSError as exc:
        _log(f"disk: cleanup stopped: {exc.filename or args.buildarea}: {exc.strerror or exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
