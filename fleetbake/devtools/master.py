"""A local Buildbot master for trying a worker out, and for the fleet-join tests.

Config under build/master/: one worker entry per name, a force scheduler, and
per worker a builder running the CPython fleet's Unix sequence against a CPython
repository served by `git daemon` on loopback, plus a `secret-hunt` builder and a
`fill-disk` builder (fills a small tmpfs buildarea below the worker's disk threshold).
Everything listens on 127.0.0.1: run workers with `--network host`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fleetbake import files, paths, proc
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import cpython

Log = Callable[[str], None]
INTERFACE = "127.0.0.1"
# What the test master sends as build steps. The hunt is also in every image, for owners to run; the two test
# helpers stay here, beside the master, out of the images.
STEP_SCRIPTS = (paths.ROOT / "fleetbake" / "worker" / "hunt.py", Path(__file__).with_name("forge_health.py"),
                Path(__file__).with_name("fill_disk.py"))


class MasterError(FleetbakeError):
    pass


@dataclass(frozen=True)
class MasterInfo:
    directory: Path
    pb_port: int
    www_port: int
    git_port: int
    repo: str
    workers: dict[str, str]  # name -> password

    @property
    def url(self) -> str:
        return f"http://{INTERFACE}:{self.www_port}/"

    def secret_file(self, name: str) -> Path:
        return self.directory / "secrets" / name

    def docker_run_line(self, name: str, image: str) -> str:
        return (
            f"docker run -d --name {name} --network host "
            f"-e WORKERNAME={name} -e WORKERPASS_FILE=/run/secrets/workerpass "
            f"-v {self.secret_file(name)}:/run/secrets/workerpass:ro "
            f"-e BUILDMASTER={INTERFACE}:{self.pb_port} -e WORKER_ADMIN='You <you@example.org>' "
            f"-e BUILDBOT_TESTOPTS='test_sys test_ssl' {image}"
        )


def master_dir(directory: Path | None = None) -> Path:
    return Path(directory) if directory else paths.build_dir() / "master"


def _buildbot() -> str:
    tool = Path(sys.executable).with_name("buildbot")
    if not tool.exists():
        raise MasterError("buildbot (the master) is not installed: pip install -e '.[master]'")
    return str(tool)


def parse_workers(specs: list[str]) -> dict[str, str]:
    workers = {}
    for spec in specs or ["example-worker"]:
        name, _, password = spec.partition(":")
        if not name or not all(ch.isalnum() or ch in "._-" for ch in name):
            raise UsageError(f"--worker {spec!r}: expected NAME or NAME:PASSWORD")
        workers[name] = password or secrets.token_urlsafe(18)
    return workers


def cpython_repo(source: cpython.Source, log: Log) -> Path:
    """A bare git repository of the source (cached): what the fleet's git step checks out."""
    repos = cpython.cache() / "repos"
    bare = repos / f"cpython-{source.version}.git"
    if (bare / "HEAD").is_file():
        return bare
    log(f"master: making a git repository of CPython {source.version}")
    repos.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=repos) as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        if source.is_tarball:
            proc.run(["tar", "-xf", source.path, "-C", work, "--strip-components=1"], what=f"master: unpacking {source.path.name}")
        else:
            shutil.copytree(source.path, work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        git = ["git", "-C", str(work), "-c", "user.name=fleetbake", "-c", "user.email=fleetbake@localhost"]
        proc.run([*git, "init", "-q", "-b", "main"], what="master: git init")
        proc.run([*git, "add", "-A"], what="master: git add")
        proc.run([*git, "commit", "-q", "-m", f"CPython {source.version}"], what="master: git commit")
        proc.run(["git", "clone", "-q", "--bare", work, Path(tmp) / "bare.git"], what="master: git clone --bare")
        os.replace(Path(tmp) / "bare.git", bare)
    return bare


def start(
    workers: dict[str, str],
    source_spec: str,
    pb_port: int = 9989,
    www_port: int = 8010,
    git_port: int = 9418,
    jobs: int | None = None,
    test_timeout: int = 1200,
    log: Log = print,
    directory: Path | None = None,
) -> MasterInfo:
    directory = master_dir(directory)
    stop(log=lambda _: None, directory=directory)
    source = cpython.resolve(source_spec, log)
    bare = cpython_repo(source, log)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "uploads").mkdir(exist_ok=True)
    info = MasterInfo(directory, pb_port, www_port, git_port,
                      f"git://{INTERFACE}:{git_port}/{bare.name}", workers)
    secret_dir = directory / "secrets"
    secret_dir.mkdir(mode=0o700, exist_ok=True)
    for name, password in workers.items():
        files.write_text(info.secret_file(name), password + "\n", mode=0o400)
    config = {
        "interface": INTERFACE, "pb_port": pb_port, "www_port": www_port, "repo": info.repo,
        "jobs": jobs or os.cpu_count() or 2, "test_timeout": test_timeout,
        "workers": [{"name": n, "password": p} for n, p in workers.items()],
    }
    files.write_text(directory / "fleetbake-master.json", json.dumps(config, indent=2), mode=0o600)  # holds the passwords
    buildbot = _buildbot()
    if not (directory / "buildbot.tac").is_file():
        proc.run([buildbot, "create-master", "-q", "-r", directory], what="buildbot create-master")
    shutil.copy(Path(__file__).with_name("master.cfg"), directory / "master.cfg")
    for script in STEP_SCRIPTS:  # the secret-hunt and fill-disk builders' steps; master.cfg reads them by name
        shutil.copy(script, directory / script.name)
    proc.run([buildbot, "checkconfig", directory], what="buildbot checkconfig")

    proc.run(["git", "daemon", "--reuseaddr", f"--listen={INTERFACE}", f"--port={git_port}",
              f"--base-path={bare.parent}", "--export-all", "--detach",
              f"--pid-file={directory / 'git-daemon.pid'}", bare.parent], what="master: git daemon")
    log(f"master: git daemon serves {info.repo}")
    proc.run([buildbot, "start", directory], timeout=180, what="buildbot start")
    log(f"master: running at {info.url} (workers connect to {INTERFACE}:{pb_port})")
    return info


def start_again(log: Log = print, directory: Path | None = None) -> None:
    """Restart a stopped master with its existing config (for the reconnect test)."""
    proc.run([_buildbot(), "start", master_dir(directory)], timeout=180, what="buildbot start")
    log("master: started again")


def stop_master_only(log: Log = print, directory: Path | None = None) -> None:
    directory = master_dir(directory)
    if (directory / "twistd.pid").is_file():
        # A master that is already gone is stopped: the exit code does not matter.
        proc.call([_buildbot(), "stop", directory], timeout=120, what="buildbot stop")
        log("master: stopped")


def stop(log: Log = print, directory: Path | None = None) -> None:
    stop_master_only(log, directory)
    pid_file = master_dir(directory) / "git-daemon.pid"
    if pid_file.is_file():
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            log("master: git daemon stopped")
        except (ValueError, ProcessLookupError):
            pass
        pid_file.unlink(missing_ok=True)


def serve(matrix, workers: list[str] | None, cpython: str | None, pb_port: int, www_port: int, git_port: int,
          log: Log = print) -> MasterInfo:
    """`invoke master`: start it for debian-12's CPython (or `cpython`), and say how to run each worker against it."""
    from fleetbake.pipeline import identity

    row = matrix.one("debian-12")
    info = start(parse_workers(workers), cpython or row.spec.cpython, pb_port, www_port, git_port, log=log)
    log(f"web UI and REST API: {info.url}")
    for name in info.workers:
        log(f"worker {name}:\n  {info.docker_run_line(name, identity.image_tag(row))}")
    log("stop it with: invoke master --stop")
    return info
