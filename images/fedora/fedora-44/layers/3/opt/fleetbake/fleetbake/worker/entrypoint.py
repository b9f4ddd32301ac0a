# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""Entrypoint of fleetbake worker images (stdlib only: the image runs it with its system python3 -I -m).

PID 1 is tini, as root. This script starts as root too. It parses every
setting once, reads the password (WORKERPASS or WORKERPASS_FILE), strips it
from the environment and puts settings and password in a pipe; then it forks.
The child drops to the build user for good with setpriv (no capabilities,
no-new-privs) and execs twistd, whose buildbot.tac marks itself non-dumpable
before reading the pipe, so no build step can find the password in /proc, in a
file or in its environment. The parent stays root as a small supervisor: it
forwards signals, and writes the worker's connection state, which the worker
reports through a second pipe, into a root-owned file that the HEALTHCHECK
reads and no build step can write. It also watches the free space of the
buildarea (fleetbake.worker.disk): below WORKER_MIN_FREE_GB the health file
says so, and idle builder directories are emptied until the space is back.
Before the drop it decides whether builds use ccache (fleetbake.worker.ccache:
only with a volume mounted at /ccache) and logs one line saying which.

`docker run IMAGE`            joins the fleet (the default `worker` command)
`docker run IMAGE hostinfo`   prints what info/host would say
`docker run IMAGE preflight`  checks this host against the devguide's requirements
`docker run IMAGE health`     the HEALTHCHECK: 0 only while logged in to the master, with enough disk space
`docker exec CONTAINER ... drain`  the graceful stop (Kubernetes' preStop): the running build ends, then the worker
`docker run IMAGE CMD ...`    runs CMD as the build user
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import platform
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fleetbake import files
from fleetbake.worker import ccache, disk, fleet, hostport, preflight

PROG = "fleetbake-worker"
BUILDAREA = "/buildarea"
TAC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "buildbot.tac")
TWISTD = "/opt/buildbot-worker/bin/twistd"
PASSWORD_FD_VAR = "WORKERPASS_FD"  # settings and password, from the entrypoint to buildbot.tac
STATUS_FD_VAR = "FLEETBAKE_STATUS_FD"  # connection state, from buildbot.tac to the supervisor
# Control variables the entrypoint consumes; builds never see the secret ones.
SECRET_VARS = ("WORKERPASS", "WORKERPASS_FILE", PASSWORD_FD_VAR, STATUS_FD_VAR)
CAP_KILL = 5
CAP_SETPCAP = 8
# Root-owned folder and file: the build user can neither write nor replace them.
HEALTH_DIR = "/tmp/fleetbake"
HEALTH_FILE = f"{HEALTH_DIR}/health"
# buildbot.tac's allow_shutdown="file": a newer mtime makes the worker ask the master for a graceful shutdown.
SHUTDOWN_STAMP = f"{BUILDAREA}/shutdown.stamp"
HEALTH_STATES = ("starting", "connected", "disconnected", "stopping", "stopped")
# The worker repeats its state this often; a state older than HEALTH_STALE means a worker
# that no longer runs (a build step can SIGSTOP it: same uid), so health says unhealthy.
HEARTBEAT = 5
HEALTH_STALE = 30
# Everything goes into the pipe before the child starts, so it must fit in one
# atomic pipe write (PIPE_BUF): the write can then never block.
PIPE_LIMIT = 4096
PASSWORD_LIMIT = 1024
KEEPALIVE_RANGE = (10, 60)  # the fleet master's interval is 60 s; longer idle gaps drop connections


class ConfigError(Exception):
    """A one-line problem with the container's settings: exit 2, nothing started."""


@dataclass(frozen=True)
class WorkerSettings:
    name: str
    master_host: str
    master_port: int
    keepalive: int
    maxretries: int | None
    umask: int
    admin: str
    host_info: str | None
    basedir: str = BUILDAREA


def _int(env: dict[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise ConfigError(f"{name}={raw!r} is not a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range ({low} to {high})")
    return value


def parse_master(env: dict[str, str]) -> tuple[str, int]:
    """BUILDMASTER is `host`, `host:port` or `[v6]:port`; BUILDMASTER_PORT sets the port alone."""
    raw = env.get("BUILDMASTER", "").strip() or fleet.DEFAULT_MASTER
    try:
        host, port = hostport.parse_hostport(raw, None)
    except ValueError as exc:
        raise ConfigError(f"BUILDMASTER {exc}") from None
    env_port = _int(env, "BUILDMASTER_PORT", None, 1, 65535)
    if port is not None and env_port is not None and port != env_port:
        raise ConfigError(f"BUILDMASTER={raw!r} and BUILDMASTER_PORT={env_port} disagree on the port")
    return host, port or env_port or fleet.DEFAULT_PORT


def settings(env: dict[str, str]) -> WorkerSettings:
    """Every setting, parsed and checked once, before anything starts."""
    name = env.get("WORKERNAME", "").strip()
    if not name:
        raise ConfigError("WORKERNAME is not set: pass -e WORKERNAME=<the name the fleet admins gave you>")
    # Buildbot's identifier rule for worker names (ASCII part): the master refuses anything else.
    if not fleet.is_worker_name(name):
        raise ConfigError(f"WORKERNAME={name!r}: Buildbot takes at most 50 letters, digits, '_' and '-', "
                          "not starting with a digit")
    host, port = parse_master(env)
    umask_raw = env.get("UMASK", "").strip() or "022"
    if not re.fullmatch(r"(0o?)?[0-7]{1,3}", umask_raw):
        raise ConfigError(f"UMASK={umask_raw!r} is not an octal mask such as 022")
    umask = int(umask_raw.replace("0o", ""), 8)
    if umask & 0o700:
        raise ConfigError(f"UMASK={umask_raw!r} masks the owner's own bits: build steps could not use the files they create")
    low, high = KEEPALIVE_RANGE
    keepalive = _int(env, "KEEPALIVE", 60, 0, 10**6)
    if not low <= keepalive <= high:
        raise ConfigError(f"KEEPALIVE={keepalive}: use {low} to {high} seconds; the fleet master's interval is 60 s, "
                          "a longer gap (or 0, no keepalives) gets idle connections dropped and steps lost")
    retries_raw = env.get("MAXRETRIES", "").strip().lower()
    admin = env.get("WORKER_ADMIN", "").strip()
    if "\n" in admin or len(admin) > 200:
        raise ConfigError("WORKER_ADMIN: one line, at most 200 characters (e.g. 'Your Name <you@example.org>')")
    host_info = env.get("WORKER_HOST_INFO") or None
    if host_info is not None and len(host_info.encode()) > 2048:
        raise ConfigError("WORKER_HOST_INFO: at most 2048 bytes")
    return WorkerSettings(
        name=name,
        master_host=host,
        master_port=port,
        keepalive=keepalive,
        # Give up after this many failed connects, so that the restart policy
        # gives a fresh process (None: retry for ever).
        maxretries=None if retries_raw in ("none", "unlimited") else _int(env, "MAXRETRIES", 10, 1, 100000),
        umask=umask,
        admin=admin,
        host_info=host_info,
    )


def read_password(env: dict[str, str], build_uid: int | None) -> bytes:
    """The password from WORKERPASS or WORKERPASS_FILE (exactly one of them)."""
    inline, path = env.get("WORKERPASS"), env.get("WORKERPASS_FILE")
    if inline and path:
        raise ConfigError("set WORKERPASS or WORKERPASS_FILE, not both")
    if path:
        try:
            info = os.stat(path)
            with open(path, "rb") as handle:
                secret = handle.read()
        except OSError as exc:
            raise ConfigError(f"WORKERPASS_FILE={path}: {exc.strerror}") from None
        if build_uid is not None and _readable_by(info, build_uid):
            raise ConfigError(
                f"WORKERPASS_FILE={path} is readable by the build user (uid {build_uid}): "
                "make it owned by root with mode 0400 (Kubernetes: defaultMode 0400)"
            )
        secret = secret.rstrip(b"\r\n")
    else:
        secret = (inline or "").encode()
    if not secret:
        raise ConfigError("no password: pass -e WORKERPASS=... or mount a file and set WORKERPASS_FILE")
    if b"\n" in secret or b"\r" in secret or b"\0" in secret:
        raise ConfigError("the password must be a single line without NUL bytes")
    if len(secret) > PASSWORD_LIMIT:
        raise ConfigError(f"the password is {len(secret)} bytes; at most {PASSWORD_LIMIT} are accepted")
    return secret


def pipe_payload(cfg: WorkerSettings, password: bytes) -> bytes:
    """What buildbot.tac reads: one JSON line of settings, then the password."""
    payload = json.dumps(asdict(cfg), separators=(",", ":"), ensure_ascii=False).encode() + b"\n" + password
    if len(payload) > PIPE_LIMIT:
        raise ConfigError(f"settings and password take {len(payload)} bytes; at most {PIPE_LIMIT} fit the worker's pipe "
                          "(shorten WORKER_HOST_INFO or WORKER_ADMIN)")
    return payload


def read_payload(data: bytes) -> tuple[WorkerSettings, bytes]:
    head, _, password = data.partition(b"\n")
    return WorkerSettings(**json.loads(head)), password


def _readable_by(info: os.stat_result, uid: int) -> bool:
    if info.st_uid == uid:
        return True
    user = pwd.getpwuid(uid)
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    if info.st_gid in groups and info.st_mode & stat.S_IRGRP:
        return True
    return bool(info.st_mode & stat.S_IROTH)


def worker_environment(env: dict[str, str], user: pwd.struct_passwd,
                       cache: ccache.Decision | None = None) -> dict[str, str]:
    """What twistd, and so every build step, gets: no secrets, the user's HOME; with ccache on (`cache`), its
    wrappers first in PATH and its directory."""
    blacklist = env.get("WORKER_ENVIRONMENT_BLACKLIST", "WORKERPASS").split()
    clean = {
        key: value
        for key, value in env.items()
        if key not in SECRET_VARS and not any(fnmatch.fnmatchcase(key, pattern) for pattern in blacklist)
    }
    clean.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    clean.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return ccache.apply(clean, cache) if cache is not None else clean


def ccache_decision(env: dict[str, str], user: pwd.struct_passwd) -> ccache.Decision:
    """Whether the build user's builds use ccache (a volume mounted at WORKER_CCACHE_DIR, default /ccache)."""
    try:
        return ccache.decide(env, user.pw_uid, user.pw_name)
    except ccache.SettingError as exc:
        raise ConfigError(str(exc)) from None


def log_ccache(decision: ccache.Decision) -> None:
    """The one line the worker logs about ccache: a warning when a mounted cache cannot be used."""
    (_warn if decision.warning else _say)(decision.line())


def drop_privileges_argv(user: pwd.struct_passwd, can_drop_bounding: bool) -> list[str]:
    """setpriv: irreversibly become the build user, with no way back to any capability."""
    argv = [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--no-new-privs",
        "--inh-caps=-all",
    ]
    if can_drop_bounding:  # needs CAP_SETPCAP, absent under --cap-drop ALL (then already empty)
        argv.append("--bounding-set=-all")
    return [*argv, "--"]


def has_capability(cap: int, status_path: str = "/proc/self/status") -> bool:
    with open(status_path, encoding="ascii") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def host_info(image: str = "", worker_version: str = "", env: dict[str, str] | None = None) -> str:
    """info/host from the real machine, as LLVM's fleet does it; `env`: the builds' environment (default this
    process's), which says whether they use ccache."""
    lines = []
    release = _os_release().get("PRETTY_NAME", platform.system())
    lines.append(f"OS: {release} ({image})" if image else f"OS: {release}")
    lines.append(f"Kernel: {platform.system()} {platform.release()} {platform.machine()}")
    cpu = _first_match("/proc/cpuinfo", r"model name\s*:\s*(.+)") or platform.processor() or "unknown"
    lines.append(f"CPU: {preflight.cpu_count()} x {cpu}")
    mem_kib = preflight.memory_kib()
    limit = _cgroup_memory_limit()
    if mem_kib:
        memory = f"{int(mem_kib) / 1024 / 1024:.1f} GiB"
        if limit and limit < int(mem_kib) * 1024:
            memory += f" (container limit {limit / 1024**3:.1f} GiB)"
        lines.append(f"Memory: {memory}")
    for compiler in ("gcc", "clang"):
        version = _command_version([compiler, "--version"])
        if version:
            lines.append(f"Compiler: {version}")
    cache = ccache.describe(os.environ if env is None else env)
    if cache:
        lines.append(f"Compiler cache: {_command_version(['ccache', '--version']) or 'ccache'}, {cache}")
    if worker_version:
        lines.append(f"buildbot-worker: {worker_version}")
    lines.append(f"Python running the worker: {platform.python_version()}")
    return "\n".join(lines) + "\n"


def installed_worker_version(venv: str = os.path.dirname(os.path.dirname(TWISTD))) -> str:
    """buildbot-worker's version in the worker's venv, from its metadata (this Python may not be the venv's)."""
    for lib in sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))):
        for meta in glob.glob(os.path.join(lib, "buildbot_worker-*.dist-info")):
            return os.path.basename(meta)[len("buildbot_worker-"):-len(".dist-info")]
    return ""


def with_newline(text: str) -> str:
    return text.rstrip("\n") + "\n"


def _os_release(path: str = "/etc/os-release") -> dict[str, str]:
    values = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value.strip('"')
    except OSError:
        pass
    return values


def _first_match(path: str, pattern: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            match = re.search(pattern, handle.read())
    except OSError:
        return None
    return match.group(1).strip() if match else None


def _cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as handle:
                raw = handle.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
    return None


def _command_version(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def prepare_buildarea(path: str, user: pwd.struct_passwd) -> None:
    """The buildarea must already be the build user's: the worker never takes over a tree it did not create."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} is not a directory")
    if info.st_uid != user.pw_uid or not info.st_mode & stat.S_IWUSR:
        raise ConfigError(
            f"{path} belongs to uid {info.st_uid}, not to the build user {user.pw_name} (uid {user.pw_uid}), and the "
            f"worker never takes over a directory it did not create: use a named volume (-v cpython-buildarea:{path}) "
            f"or, for a host directory, chown -R {user.pw_uid}:{user.pw_gid} it first"
        )


def build_user(env: dict[str, str]) -> pwd.struct_passwd:
    name = env.get("FLEETBAKE_USER", "buildbot")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"the image has no user {name!r}") from None


def twistd_argv() -> list[str]:
    # --pidfile= : no twistd.pid, so a restart after a crash never meets
    # "Another twistd server is running". --logfile=- : logs go to stdout.
    return [TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", f"--python={TAC}"]


def disk_settings(env: dict[str, str], path: str = BUILDAREA, check_size: bool = True) -> disk.Settings:
    """WORKER_MIN_FREE_GB and WORKER_DISK_INTERVAL; with check_size, a threshold the filesystem can reach."""
    try:
        cfg = disk.settings(env, path)
        if check_size:
            disk.check_fits(cfg)
    except disk.SettingError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def disk_watch(cfg: disk.Settings, prefix: list[str]) -> disk.Watch:
    """The supervisor's disk watch; its cleanup runs as the build user (prefix: the privilege drop), who alone
    may read the buildarea and the build steps' /proc entries (the supervisor has no CAP_DAC_OVERRIDE, no
    CAP_SYS_PTRACE), with no secret in its environment."""
    return disk.Watch(cfg, [*prefix, sys.executable, "-I", "-m", "fleetbake.worker.disk"])


def start_worker(env: dict[str, str]) -> int:
    cfg = settings(env)  # fail fast, before anything starts
    disk_settings(env, check_size=False)
    try:
        ccache.settings(env)
    except ccache.SettingError as exc:
        raise ConfigError(str(exc)) from None
    if os.getuid() == 0:
        user = build_user(env)
        password = read_password(env, user.pw_uid)
        prepare_buildarea(BUILDAREA, user)
        if not has_capability(CAP_KILL):  # the supervisor (root) must be able to stop the worker (build uid)
            raise ConfigError("no CAP_KILL: add --cap-add KILL, so that docker stop can reach the worker")
        prefix = drop_privileges_argv(user, has_capability(CAP_SETPCAP))
    else:
        user = pwd.getpwuid(os.getuid())
        password = read_password(env, None)
        prefix = []
        _warn("started as a non-root user: build steps can read this process's environment and forge its health")
    watch = disk_watch(disk_settings(env), prefix)
    cache = ccache_decision(env, user)
    payload = pipe_payload(cfg, password)
    try:
        own_health_dir()
    except OSError as exc:
        raise ConfigError(f"{HEALTH_DIR}: {exc.strerror}: the worker needs a /tmp of its own, fresh at each start "
                          "(--tmpfs /tmp:rw,exec,nosuid,nodev,size=4g)") from None
    secret_read, secret_write = os.pipe()
    os.write(secret_write, payload)  # at most PIPE_BUF bytes into an empty pipe: never blocks
    os.close(secret_write)
    del password, payload
    log_ccache(cache)
    status_read, status_write = os.pipe()
    child_env = worker_environment(env, user, cache)
    child_env[PASSWORD_FD_VAR] = str(secret_read)
    child_env[STATUS_FD_VAR] = str(status_write)
    argv = prefix + twistd_argv()
    write_health("starting")
    # Signals wait until the supervisor's handlers are in place; the child unblocks them before exec.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    pid = os.fork()
    if pid == 0:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            os.close(status_read)
            os.set_inheritable(secret_read, True)
            os.set_inheritable(status_write, True)
            os.execvpe(argv[0], argv, child_env)
        finally:
            os._exit(127)
    os.close(secret_read)
    os.close(status_write)
    return supervise(pid, status_read, watch=watch)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # docker stop, systemctl stop, Ctrl-C
FORWARDED = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def health_line(state: str, disk_problem: str | None) -> str:
    """What the health file says: the worker's state, after the disk's problem when there is one."""
    return f"{disk_problem} (worker {state})" if disk_problem else state


def supervise(pid: int, status_fd: int, health_file: str = HEALTH_FILE, watch: disk.Watch | None = None) -> int:
    """Forward signals to the worker and record what it reports, until it exits; return its exit status.

    Stopped by a signal, the supervisor ends by that same signal once the worker is gone, as
    the worker alone did before it: tini's `-e 143` then makes `docker stop` exit 0, and
    systemd sees a stop (EXIT_CODE=killed), not a worker that gave up on its master (exit 0).

    With a disk `watch`, a low disk goes into the health file before the worker's state. The file's
    time stays the time of the worker's last report, so a frozen worker still goes stale.
    """
    received: list[int] = []
    state, reported = "starting", time.time()

    def record() -> None:
        write_health(health_line(state, watch.problem if watch else None), health_file, mtime=reported)

    def forward(signum: int, _frame: object) -> None:
        if signum in STOP_SIGNALS:
            received.append(signum)
        _forward(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    pending = b""
    open_pipe = True
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if watch is not None and watch.poll():
            record()
        if not open_pipe:
            time.sleep(0.5)
            continue
        ready, _, _ = select.select([status_fd], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(status_fd, 4096)
        if not chunk:
            open_pipe = False
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            reported_state = line.decode("utf-8", "replace").strip()
            if reported_state.split(" ", 1)[0] in HEALTH_STATES:
                state, reported = reported_state, time.time()
                record()
        pending = pending[-4096:]
    if watch is not None:
        watch.stop()
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    write_health(f"stopped (exit {code})", health_file)
    if received:
        signal.signal(received[0], signal.SIG_DFL)
        os.kill(os.getpid(), received[0])
    return code


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:  # gone already; or no CAP_KILL, which start_worker checks first
        pass


def run_command(env: dict[str, str], argv: list[str]) -> None:
    if os.getuid() == 0:
        user = build_user(env)
        child_env = worker_environment(env, user, ccache_decision(env, user))
        argv = drop_privileges_argv(user, has_capability(CAP_SETPCAP)) + argv
    else:
        user = pwd.getpwuid(os.getuid())
        child_env = worker_environment(env, user, ccache_decision(env, user))
    try:
        os.execvpe(argv[0], argv, child_env)
    except FileNotFoundError:
        raise ConfigError(f"command not found: {argv[0]}") from None


def own_health_dir(path: str = HEALTH_DIR) -> None:
    """A folder only this (root) process can write; whatever stands in its place is moved aside."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
                                 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        os.rename(path, f"{path}.untrusted-{os.getpid()}-{time.monotonic_ns()}")
        info = None
    if info is None:
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)


def write_health(state: str, path: str = HEALTH_FILE, mtime: float | None = None) -> None:
    """Atomically record the worker's connection state (mtime: when the worker reported it, default now);
    when that fails, leave no stale state behind."""
    try:
        files.write_text(Path(path), state + "\n", 0o644, mtime=mtime)
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass


def health(path: str = HEALTH_FILE) -> int:
    """Exit status for HEALTHCHECK: 0 only when logged in to the master (and no low disk before it), as recorded
    by the root supervisor."""
    state = "not started"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as handle:
            info, folder = os.fstat(handle.fileno()), os.lstat(os.path.dirname(path))
            state = handle.read().strip()
        if os.getuid() == 0 and (info.st_uid != 0 or folder.st_uid != 0 or not stat.S_ISDIR(folder.st_mode)):
            state = f"untrusted health file (owned by uid {info.st_uid}): {state}"
        age = time.time() - info.st_mtime
        if age > HEALTH_STALE:
            state = f"no report from the worker for {age:.0f}s (stopped or hung?); last: {state}"
    except OSError:
        pass
    print(f"worker: {state}")
    return 0 if state.startswith("connected") else 1


def touch_stamp(path: str = SHUTDOWN_STAMP) -> None:
    """A fresh mtime on the stamp (never through a symlink a build step left there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def drain(env: dict[str, str], stamp: str = SHUTDOWN_STAMP, health_file: str = HEALTH_FILE, poll: float = 2.0) -> int:
    """Drain through Buildbot's graceful shutdown: touch the stamp as the build user, then wait for the worker to stop.

    The master starts no new build, lets the running one finish, then tells the worker to stop; the
    supervisor then exits and so does the container. Root here has no CAP_DAC_OVERRIDE (the build user's
    buildarea is closed to it): a child drops to the build user to touch the stamp. No bound of its own:
    Kubernetes' terminationGracePeriodSeconds is the bound.
    """
    if os.getuid() == 0:
        user = build_user(env)
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
                touch_stamp(stamp)
                code = 0
            except OSError as exc:
                print(f"{PROG}: error: drain: {stamp}: {exc.strerror}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]):
            raise ConfigError(f"drain: {stamp}: not touched as {user.pw_name}")
    else:
        try:
            touch_stamp(stamp)
        except OSError as exc:
            raise ConfigError(f"drain: {stamp}: {exc.strerror}") from None
    _say(f"drain: touched {stamp}: the master lets the running build finish, then stops the worker")
    while True:
        try:
            with open(health_file, encoding="utf-8") as handle:
                state = handle.read().strip()
        except OSError:
            state = ""
        if state.startswith("stopped"):
            _say(f"drain: worker {state}")
            return 0
        time.sleep(poll)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    try:
        if not argv or argv[0] == "worker":
            return start_worker(env)
        elif argv[0] == "preflight":
            host, port = parse_master(env)
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            run_command(env, [sys.executable, "-I", "-m", "fleetbake.worker.preflight", f"--master={address}", *argv[1:]])
        elif argv[0] == "health":
            return health()
        elif argv[0] == "drain":
            return drain(env)
        elif argv[0] == "hostinfo":  # what info/host will say, WORKER_HOST_INFO included
            cfg = settings({**env, "WORKERNAME": "hostinfo"})
            if cfg.host_info:
                sys.stdout.write(with_newline(cfg.host_info))
            else:  # what the builds' environment will be, ccache included
                try:
                    user = build_user(env) if os.getuid() == 0 else pwd.getpwuid(os.getuid())
                except ConfigError:  # no build user (not an image): no builds to describe
                    builds = env
                else:
                    builds = worker_environment(env, user, ccache_decision(env, user))
                sys.stdout.write(host_info(env.get("FLEETBAKE_IMAGE", ""), installed_worker_version(), builds))
        else:
            run_command(env, argv)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
