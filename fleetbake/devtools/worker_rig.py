"""A worker container run as the README's `docker run` says, on a local master, with builds to keep it busy:
what tests/integration/test_update.py and the update bench (update_bench.py) both drive."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from pathlib import Path

from fleetbake.devtools.master import MasterInfo
from fleetbake.operate.buildbot_api import BuildbotApi
from fleetbake.pipeline import engine, publish, record, registry as oci


def docker_run_argv(name: str, image: str, master: MasterInfo, worker: str, volume: str,
                    labels: dict[str, str] | None = None) -> list[str]:
    """The README's hardened `docker run`, on the host network (the master listens on loopback)."""
    return ["docker", "run", "-d", "--name", name, *(f"--label={k}={v}" for k, v in (labels or {}).items()),
            "--restart", "unless-stopped", "--network", "host",
            "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "KILL",
            "--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/tmp:rw,exec,nosuid,nodev,size=512m",
            "--memory", "3g", "--pids-limit", "4096", "-v", f"{volume}:/buildarea",
            "-e", f"WORKERNAME={worker}", "-e", "WORKERPASS_FILE=/run/secrets/workerpass",
            "-v", f"{master.secret_file(worker)}:/run/secrets/workerpass:ro",
            "-e", f"BUILDMASTER=127.0.0.1:{master.pb_port}", "-e", "WORKER_ADMIN=Jane <jane@example.org>",
            "-e", "WORKER_MIN_FREE_GB=1", "-e", "MAXRETRIES=none", image]


def derived_image(base: str, lines: str, labels: dict[str, str] | None = None) -> str:
    """An image made from `base` with a few Dockerfile lines more: the same row label, another image ID."""
    image, _ = engine.client().images.build(fileobj=io.BytesIO(f"FROM {base}\n{lines}\n".encode()), rm=True,
                                            labels=labels or {})
    return image.id


def push_with_records(registry: str, namespace: str, image_id: str, verified_id: str, scratch: Path) -> str:
    """Push `image_id` to REGISTRY/NAMESPACE/worker:debian-12 with a report and passing records of its own, as an
    image that passed verification elsewhere would have: the verified image's report and records, re-addressed to
    it (`scratch` is a build folder for them). The pushed manifest's digest."""
    repository = f"{registry}/{namespace}/worker"
    api = engine.client().api
    api.tag(image_id, repository, "debian-12")
    digest = publish._push(api, repository, "debian-12", lambda _: None)
    reports = {name: (record.image_dir(verified_id) / name).read_bytes() for name, _ in publish.REPORT_LAYERS}
    records = {config: record.load(verified_id, config) for config in record.status(verified_id)[0]}
    previous = os.environ.get("FLEETBAKE_BUILD_DIR")
    os.environ["FLEETBAKE_BUILD_DIR"] = str(scratch)  # the re-addressed records never land in build/reports
    try:
        folder = record.image_dir(image_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in reports.items():
            (folder / name).write_bytes(content)
        for config, fields in records.items():
            record.write(image_id, config, {**fields, "image_id": image_id})
        publish.push_report(oci.Registry(registry, f"{namespace}/worker"), digest, image_id)
    finally:
        if previous is None:
            del os.environ["FLEETBAKE_BUILD_DIR"]
        else:
            os.environ["FLEETBAKE_BUILD_DIR"] = previous
    return digest


def start_build(api: BuildbotApi, builder: str, timeout: float = 120) -> tuple[int, dict]:
    """Force a build and wait until it runs; (builder ID, the build)."""
    builderid = api.builder_id(builder)
    after = api.last_build_number(builderid)
    api.force(builder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        builds = api.get(f"builders/{builderid}/builds?number__gt={after}")["builds"]
        if builds:
            return builderid, builds[0]
        time.sleep(0.5)
    raise AssertionError(f"no build of {builder} started within {timeout:.0f}s")


def finished(api: BuildbotApi, buildid: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api.get(f"builds/{buildid}")["builds"][0]
        if found["complete"]:
            return found
        time.sleep(1)
    raise AssertionError(f"build {buildid} did not finish within {timeout:.0f}s")


class Disconnections:
    """The master's view, sampled every 0.2 s while in use: how long the worker was not connected, each time."""

    def __init__(self, api: BuildbotApi, worker: str):
        self.api, self.worker, self.gaps, self.stop = api, worker, [], threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        since = None
        while not self.stop.is_set():
            try:
                connected = self.api.connected(self.worker)
            except Exception:  # a busy master: no sample this time
                connected = None
            now = time.monotonic()
            if connected is False and since is None:
                since = now
            elif connected and since is not None:
                self.gaps.append(now - since)
                since = None
            time.sleep(0.2)

    def __enter__(self) -> Disconnections:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def remove(name: str, volume: str | None = None) -> None:
    """The container, the copies an update keeps of it, and its buildarea volume."""
    from fleetbake.operate import update

    for suffix in ("", update.ROLLBACK, update.PREVIOUS):
        subprocess.run(["docker", "rm", "--force", name + suffix], capture_output=True, check=False)
    if volume:
        subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)
