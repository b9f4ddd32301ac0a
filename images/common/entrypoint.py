#!/usr/bin/python3
"""Entrypoint of fleetbake worker images (stdlib only: it runs on the image's python3).

PID 1 is tini, as root. This script starts as root too, just long enough to:
read the password (WORKERPASS or WORKERPASS_FILE), strip it from the
environment, put it in a pipe, make /buildarea the build user's, and drop to
that user for good with setpriv (no capabilities, no-new-privs). twistd then
runs buildbot.tac, which marks itself non-dumpable before reading the pipe, so
no build step can find the password in /proc, in a file or in its environment.

`docker run IMAGE`            joins the fleet (the default `worker` command)
`docker run IMAGE hostinfo`   prints what info/host would say
`docker run IMAGE preflight`  checks this host against the devguide's requirements
`docker run IMAGE health`     the HEALTHCHECK: 0 only while logged in to the master
`docker run IMAGE CMD ...`    runs CMD as the build user
"""

from __future__ import annotations

import fnmatch
import os
import platform
import pwd
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass

PROG = "fleetbake-worker"
DEFAULT_MASTER = "buildbot-api.python.org"
DEFAULT_PORT = 9020
BUILDAREA = "/buildarea"
TAC = "/opt/fleetbake/buildbot.tac"
TWISTD = "/opt/buildbot-worker/bin/twistd"
PREFLIGHT = "/opt/fleetbake/preflight.py"
PASSWORD_FD_VAR = "WORKERPASS_FD"
# Control variables the entrypoint consumes; builds never see the secret ones.
SECRET_VARS = ("WORKERPASS", "WORKERPASS_FILE", PASSWORD_FD_VAR)
CAP_SETPCAP = 8
HEALTH_FILE = "/tmp/fleetbake-worker.health"


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
    try:
        value = int(raw, 0)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range ({low} to {high})")
    return value


def parse_master(env: dict[str, str]) -> tuple[str, int]:
    """BUILDMASTER is `host` or `host:port`; BUILDMASTER_PORT sets the port alone."""
    raw = env.get("BUILDMASTER", "").strip() or DEFAULT_MASTER
    host, port = raw, None
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:([0-9]+)", raw)
    if match and (raw.startswith("[") or raw.count(":") == 1):
        host, port = match.group(1), int(match.group(2))
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", host):
        raise ConfigError(f"BUILDMASTER={raw!r} is not a host name or host:port")
    env_port = _int(env, "BUILDMASTER_PORT", None, 1, 65535)
    if port is not None and env_port is not None and port != env_port:
        raise ConfigError(f"BUILDMASTER={raw!r} and BUILDMASTER_PORT={env_port} disagree on the port")
    port = port or env_port or DEFAULT_PORT
    if not 1 <= port <= 65535:
        raise ConfigError(f"BUILDMASTER={raw!r} has an invalid port")
    return host, port


def settings(env: dict[str, str]) -> WorkerSettings:
    name = env.get("WORKERNAME", "").strip()
    if not name:
        raise ConfigError("WORKERNAME is not set: pass -e WORKERNAME=<the name the fleet admins gave you>")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"WORKERNAME={name!r} may only contain letters, digits, '.', '_' and '-'")
    host, port = parse_master(env)
    umask_raw = env.get("UMASK", "").strip() or "0o022"
    try:
        umask = int(umask_raw, 8) if not umask_raw.startswith("0o") else int(umask_raw, 0)
    except ValueError:
        raise ConfigError(f"UMASK={umask_raw!r} is not an octal mask") from None
    if not 0 <= umask <= 0o777:
        raise ConfigError(f"UMASK={umask_raw!r} is out of range")
    return WorkerSettings(
        name=name,
        master_host=host,
        master_port=port,
        # 60 s is the fleet master's value; create-worker's 600 s causes disconnects.
        keepalive=_int(env, "KEEPALIVE", 60, 0, 3600),
        # Give up after this many failed connects, so that the restart policy
        # gives a fresh process (None: retry for ever).
        maxretries=None
        if env.get("MAXRETRIES", "").strip().lower() in ("none", "unlimited")
        else _int(env, "MAXRETRIES", 10, 1, 100000),
        umask=umask,
        admin=env.get("WORKER_ADMIN", "").strip(),
        host_info=env.get("WORKER_HOST_INFO") or None,
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
    if b"\n" in secret:
        raise ConfigError("the password must be a single line")
    return secret


def _readable_by(info: os.stat_result, uid: int) -> bool:
    if info.st_uid == uid:
        return True
    user = pwd.getpwuid(uid)
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    if info.st_gid in groups and info.st_mode & stat.S_IRGRP:
        return True
    return bool(info.st_mode & stat.S_IROTH)


def worker_environment(env: dict[str, str], user: pwd.struct_passwd) -> dict[str, str]:
    """What twistd, and so every build step, gets: no secrets, the user's HOME."""
    blacklist = env.get("WORKER_ENVIRONMENT_BLACKLIST", "WORKERPASS").split()
    clean = {
        key: value
        for key, value in env.items()
        if key not in SECRET_VARS and not any(fnmatch.fnmatchcase(key, pattern) for pattern in blacklist)
    }
    clean.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    clean.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return clean


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


def host_info(image: str = "", worker_version: str = "") -> str:
    """info/host from the real machine, as LLVM's fleet does it."""
    lines = []
    release = _os_release().get("PRETTY_NAME", platform.system())
    lines.append(f"OS: {release} ({image})" if image else f"OS: {release}")
    lines.append(f"Kernel: {platform.system()} {platform.release()} {platform.machine()}")
    cpu = _first_match("/proc/cpuinfo", r"model name\s*:\s*(.+)") or platform.processor() or "unknown"
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines.append(f"CPU: {count} x {cpu}")
    mem_kib = _first_match("/proc/meminfo", r"MemTotal:\s*([0-9]+) kB")
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
    if worker_version:
        lines.append(f"buildbot-worker: {worker_version}")
    lines.append(f"Python running the worker: {platform.python_version()}")
    return "\n".join(lines) + "\n"


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
    """Make the volume the build user's (a bind mount may arrive root-owned)."""
    os.makedirs(path, exist_ok=True)
    if os.stat(path).st_uid == user.pw_uid:
        return
    try:
        for root, dirs, files in os.walk(path):
            os.lchown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
    except PermissionError:
        raise ConfigError(
            f"{path} is not owned by {user.pw_name} and cannot be chowned: "
            f"add --cap-add CHOWN, or chown the volume to uid {user.pw_uid}"
        ) from None


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


def start_worker(env: dict[str, str]) -> None:
    settings(env)  # fail fast, before anything starts
    if os.getuid() == 0:
        user = build_user(env)
        password = read_password(env, user.pw_uid)
        prepare_buildarea(BUILDAREA, user)
        prefix = drop_privileges_argv(user, has_capability(CAP_SETPCAP))
    else:
        user = pwd.getpwuid(os.getuid())
        password = read_password(env, None)
        prefix = []
        _warn("started as a non-root user: build steps can read this process's environment; start as root")
    read_end, write_end = os.pipe()
    os.write(write_end, password)  # far below the pipe buffer: never blocks
    os.close(write_end)
    os.set_inheritable(read_end, True)
    child_env = worker_environment(env, user)
    child_env[PASSWORD_FD_VAR] = str(read_end)
    argv = prefix + twistd_argv()
    os.execvpe(argv[0], argv, child_env)


def run_command(env: dict[str, str], argv: list[str]) -> None:
    if os.getuid() == 0:
        user = build_user(env)
        child_env = worker_environment(env, user)
        argv = drop_privileges_argv(user, has_capability(CAP_SETPCAP)) + argv
    else:
        child_env = worker_environment(env, pwd.getpwuid(os.getuid()))
    try:
        os.execvpe(argv[0], argv, child_env)
    except FileNotFoundError:
        raise ConfigError(f"command not found: {argv[0]}") from None


def write_health(state: str, path: str = HEALTH_FILE) -> None:
    """Atomically record the worker's connection state (world-readable: the check runs as root without caps)."""
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(state + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def health(path: str = HEALTH_FILE) -> int:
    """Exit status for HEALTHCHECK: 0 only when logged in to the master."""
    try:
        with open(path, encoding="utf-8") as handle:
            state = handle.read().strip()
    except OSError:
        state = "not started"
    print(f"worker: {state}")
    return 0 if state.startswith("connected") else 1


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    try:
        if not argv or argv[0] == "worker":
            start_worker(env)
        elif argv[0] == "preflight":
            host, port = parse_master(env)
            run_command(env, [sys.executable, PREFLIGHT, f"--master={host}:{port}", *argv[1:]])
        elif argv[0] == "health":
            return health()
        elif argv[0] == "hostinfo":
            sys.stdout.write(host_info(env.get("FLEETBAKE_IMAGE", "")))
        else:
            run_command(env, argv)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
