"""Update running fleetbake workers to the image their row's registry tag names now, losing no build.

    python3 -I fleetbake/operate/update.py [--container NAME]... [--registry HOST[:PORT]/NAMESPACE]
        [--drain-timeout SECONDS] [--health-timeout SECONDS] [--force] [--dry-run] [--retry] [--state-dir DIR]
        [--docker PATH]

Per container (every running one of a fleetbake image's worker, and every one an interrupted update left, unless
--container names some):
  find      the image REGISTRY/NAMESPACE/worker:<row> names now for this host's architecture (the row's tag is a
            multi-arch index: its entry for the host's platform; a single image's tag: that image); the container
            runs it already: nothing to do;
  check     refuse it unless its row is the container's and its registry report shows a passing verification
            record for that exact image ID (publish pushes the records beside the image);
  pull      by digest, before anything stops, so the pull is never time without a worker;
  drain     Buildbot's graceful shutdown (the image's buildbot.tac has allow_shutdown="file": touching
            /buildarea/shutdown.stamp): the master starts no new build there, lets the running one finish, then
            disconnects the worker, and the container exits; bounded by --drain-timeout;
  recreate  the old container is renamed NAME.rollback and a new one made with the settings read from it (the
            image's own defaults left to the new image), volumes and all, started under the same name;
  gate      the new worker must say it is connected (the image's health command) within --health-timeout;
            otherwise it is removed and the old container started again: `rolled back: <reason>` (later runs
            skip that image until a newer one is published, or --retry);
  keep      the old container stays, stopped, as NAME.previous until a later update succeeds: its image is kept
            (prune keeps every image a container uses) and `docker start` brings it back.

Crash-safe: before it changes anything, the update records what it is doing in --state-dir (under a lock); a run
that finds such a record finishes that update or restores the old worker. Exit status: 0 updated, up to date,
skipped or --dry-run; 1 an error; 2 bad usage; 3 refused (nothing changed); 4 the drain did not end within its
bound; 5 rolled back. With several containers, an error first, else the highest.

Standard library only, plus the Docker CLI (and the Docker Engine's socket, to create a container from another's
settings exactly): a host runs this file with Python 3.9 or newer, like prune.py.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator, List, Optional

if __package__ in (None, ""):  # run as a file (python3 -I .../update.py): the checkout's fleetbake, stdlib-only parts
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fleetbake import files  # noqa: E402
from fleetbake.operate import prune  # noqa: E402
from fleetbake.errors import FleetbakeError  # noqa: E402
from fleetbake.pipeline import arches, artifact, registry as oci  # noqa: E402

UPDATED, ERROR, USAGE, REFUSED, DRAIN_TIMEOUT, ROLLED_BACK = 0, 1, 2, 3, 4, 5
ROLLBACK, PREVIOUS = ".rollback", ".previous"
STAMP = "/buildarea/shutdown.stamp"
STATE, REJECTED = ".json", ".rolled-back.json"
# What the image's health command prints when the worker is logged in (buildbot.tac's report; with a disk problem,
# after it in parentheses); a stale report ("no report from the worker ...; last: ...") is not.
CONNECTED = re.compile(r"worker: (connected \S+|[^;]* \(worker connected \S+\))")
Log = Callable[[str], None]


class UpdateError(Exception):
    def __init__(self, message: str, code: int = ERROR):
        super().__init__(message)
        self.code = code


class Interrupted(Exception):
    """SIGTERM (systemctl stop) or SIGINT: end the step cleanly; the recorded state lets the next run go on."""


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/fleetbake/update")
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "fleetbake" / "update"


class Docker:
    """The Docker CLI (prune's runner), and the engine's socket for the one call the CLI has no form for."""

    def __init__(self, cli: str = "docker"):
        self.cli = cli
        self.run = prune.run_docker(cli)

    def __call__(self, *args: str) -> str:
        try:
            return self.run(list(args))
        except prune.PruneError as exc:
            raise UpdateError(str(exc)) from None

    def inspect(self, kind: str, name: str) -> Optional[dict]:
        """The container (by exact name) or image, or None when there is none."""
        try:
            found = json.loads(self(kind, "inspect", name))[0]
        except UpdateError as exc:
            if "no such" in str(exc).lower():
                return None
            raise
        except (ValueError, IndexError):
            raise UpdateError(f"docker {kind} inspect {name}: not the JSON it should be") from None
        if kind == "container" and found.get("Name") != "/" + name:
            return None  # `docker inspect` also answers to an ID prefix: another container's
        return found

    def socket_path(self) -> str:
        host = os.environ.get("DOCKER_HOST") or ""
        if not host:
            try:
                host = self("context", "inspect", "--format", "{{.Endpoints.docker.Host}}").strip()
            except UpdateError:
                host = "unix:///var/run/docker.sock"
        if not host.startswith("unix://"):
            raise UpdateError(f"the Docker engine at {host} is not a local socket: run update on the engine's host",
                              USAGE)
        return host[len("unix://"):]

    def engine(self, method: str, path: str, body: Optional[dict] = None) -> tuple[int, bytes]:
        connection = _UnixConnection(self.socket_path())
        try:
            connection.request(method, path, json.dumps(body) if body is not None else None,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise UpdateError(f"the Docker engine's socket: {exc}") from None
        finally:
            connection.close()

    def create(self, name: str, body: dict) -> str:
        """POST /containers/create: a container from a full Config + HostConfig, as `docker inspect` gives them."""
        status, answer = self.engine("POST", f"/containers/create?name={urllib.parse.quote(name)}", body)
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = None
        if status != 201 or not isinstance(parsed, dict) or "Id" not in parsed:
            reason = parsed.get("message") if isinstance(parsed, dict) else answer[:200].decode(errors="replace")
            raise UpdateError(f"docker create {name}: {reason}")
        return parsed["Id"]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


# --- settings -------------------------------------------------------------------------------------------

IMAGE_DEFAULTS = ("Cmd", "Entrypoint", "Healthcheck", "WorkingDir", "User", "StopSignal", "Volumes", "ExposedPorts",
                  "OnBuild", "Shell", "ArgsEscaped")


def create_body(container: dict, old_image: dict, image: str) -> dict:
    """What `docker create` needs to make `container` again on `image`: its settings, less what its old image set
    (an environment variable, a label, the command, the health check), so the new image's own take their place.
    Its restart policy is `no` until the new worker passed the health gate (a crashing one must not restart)."""
    config = dict(container["Config"])
    defaults = old_image.get("Config") or {}
    image_env = set(defaults.get("Env") or [])
    config["Env"] = [entry for entry in config.get("Env") or [] if entry not in image_env]
    image_labels = defaults.get("Labels") or {}
    config["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    for key in IMAGE_DEFAULTS:
        if config.get(key) == defaults.get(key):
            config.pop(key, None)
    if config.get("Hostname") == container["Id"][:12]:  # Docker's default: the new container's own ID
        config.pop("Hostname")
    config["Image"] = image
    host = json.loads(json.dumps(container["HostConfig"]))
    host["RestartPolicy"] = {"Name": "no"}
    # A volume without a name (the image's VOLUME /buildarea, or --mount without source) would be a fresh one:
    # name the old one, or the buildarea is gone.
    volumes = {m.get("Destination"): m.get("Name") for m in container.get("Mounts") or [] if m.get("Type") == "volume"}
    for mount in host.get("Mounts") or []:
        if mount.get("Type") == "volume" and not mount.get("Source") and volumes.get(mount.get("Target")):
            mount["Source"] = volumes[mount["Target"]]
    taken = {bind.split(":")[1] for bind in host.get("Binds") or [] if bind.count(":") >= 1}
    taken |= {mount.get("Target") for mount in host.get("Mounts") or []}
    for mount in container.get("Mounts") or []:
        if mount.get("Type") == "volume" and mount.get("Destination") not in taken:
            host.setdefault("Binds", []).append(f"{mount['Name']}:{mount['Destination']}{'' if mount.get('RW') else ':ro'}")
    body = {**config, "HostConfig": host}
    mode = host.get("NetworkMode") or ""
    endpoint = ((container.get("NetworkSettings") or {}).get("Networks") or {}).get(mode)
    if endpoint and mode not in ("host", "none", "bridge", "default") and not mode.startswith("container:"):
        body["NetworkingConfig"] = {"EndpointsConfig": {mode: {
            "Aliases": [a for a in endpoint.get("Aliases") or [] if a != container["Id"][:12]],
            "IPAMConfig": endpoint.get("IPAMConfig"), "Links": endpoint.get("Links")}}}
    return body


def other_networks(container: dict) -> List[str]:
    mode = (container.get("HostConfig") or {}).get("NetworkMode")
    return [n for n in ((container.get("NetworkSettings") or {}).get("Networks") or {}) if n != mode and mode != "host"]


def repository_of(container: dict, registry: Optional[str]) -> str:
    """REGISTRY/NAMESPACE/worker: --registry's, else the repository the container's image was pulled from."""
    if registry:
        registry = registry.rstrip("/")
        if not oci.REGISTRY_NAMESPACE.fullmatch(registry):
            raise UpdateError(f"--registry {registry!r}: expected HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python", USAGE)
        return registry + "/worker"
    ref = container["Config"].get("Image") or ""
    repository = ref.split("@")[0]
    if ":" in repository.rsplit("/", 1)[-1]:  # a tag, not a registry's port
        repository = repository.rsplit(":", 1)[0]
    host = repository.split("/")[0]
    if "/" not in repository or not ("." in host or ":" in host or host == "localhost") or \
            not repository.endswith("/worker") or not oci.REGISTRY_NAMESPACE.fullmatch(repository[:-len("/worker")]):
        raise UpdateError(f"{container['Name'].lstrip('/')}: its image {ref!r} names no registry: give --registry "
                          "HOST[:PORT]/NAMESPACE", USAGE)
    return repository


def host_platform() -> str:
    """This host's OCI platform (linux/arm64/v8): the entry of the row's index to pull."""
    try:
        return arches.native().platform
    except FleetbakeError as exc:
        raise UpdateError(f"{exc}: no fleetbake image runs here natively", USAGE) from None


def restart_flag(policy: dict) -> str:
    name = policy.get("Name") or "no"
    return f"{name}:{policy['MaximumRetryCount']}" if name == "on-failure" and policy.get("MaximumRetryCount") else name


def _env(entries: List[str], key: str) -> Optional[str]:
    for entry in entries or []:
        if entry.startswith(key + "="):
            return entry.split("=", 1)[1]
    return None


# --- the update ------------------------------------------------------------------------------------------

class Updater:
    def __init__(self, docker: Docker, state_dir: Path, registry: Optional[str] = None, drain_timeout: float = 4 * 3600,
                 health_timeout: float = 180, force: bool = False, dry_run: bool = False, log: Log = print,
                 retry: bool = False):
        self.docker, self.state_dir, self.registry, self.retry = docker, state_dir, registry, retry
        self.drain_timeout, self.health_timeout, self.force, self.dry_run, self.log = \
            drain_timeout, health_timeout, force, dry_run, log

    # state: what an interrupted run needs to finish or undo (no settings: the old container keeps them)
    def save(self, name: str, state: dict) -> None:
        files.write_text(self.state_dir / (name + STATE), json.dumps(state), mode=0o600, durable=True)

    def load(self, name: str, suffix: str = STATE) -> Optional[dict]:
        try:
            found = json.loads((self.state_dir / (name + suffix)).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UpdateError(f"{self.state_dir / (name + suffix)}: unreadable ({exc}): restore {name} by hand "
                              f"(`docker ps -a --filter name={name}`) and remove the file") from None
        if not isinstance(found, dict):
            raise UpdateError(f"{self.state_dir / (name + suffix)}: not an update's state: remove the file")
        return found

    def forget(self, name: str, suffix: str = STATE) -> None:
        (self.state_dir / (name + suffix)).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """One update of a container at a time (the daily timer and an owner's own run)."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.state_dir / f"{name}.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UpdateError(f"{name}: another update of it is running") from None
            yield

    def step(self, name: str, message: str) -> None:
        self.log(f"{name}: {message}")

    # the steps
    def update(self, name: str) -> int:
        if self.dry_run:
            return self.plan(name)
        with self.lock(name):
            state = self.load(name)
            if state is not None:
                self.step(name, f"an earlier update to {state['new_image'][:19]} was interrupted "
                                f"({state.get('phase', 'draining')}): finishing it")
                return self.resume(name, state)
            return self.start(name)

    def find(self, name: str):
        """(container, row, repository, the registry's verdict on the row's tag); refusals raise."""
        container = self.docker.inspect("container", name)
        if container is None:
            raise UpdateError(f"{name}: no such container", USAGE)
        row = (container["Config"].get("Labels") or {}).get(prune.ROW_LABEL)
        if not row:
            raise UpdateError(f"{name}: not a fleetbake worker (its image has no {prune.ROW_LABEL} label)", USAGE)
        if (container.get("HostConfig") or {}).get("AutoRemove"):
            raise UpdateError(f"{name}: runs with --rm: the drain would remove it and its settings; run it with "
                              "--restart unless-stopped instead (see the README)", USAGE)
        repository = repository_of(container, self.registry)
        host, _, path = repository.partition("/")
        remote = oci.Registry(host, path)
        try:
            found = artifact.verdict(remote, row, host_platform())
            if found is not None and not found.refusal and found.image_id not in (container["Image"], found.digest):
                config = json.loads(remote.get_blob(found.image_id))
                labels = (config.get("config") or {}).get("Labels") or {}
                if labels.get(prune.ROW_LABEL) != row:
                    raise UpdateError(f"{name}: refused: {repository}:{row} is an image of row "
                                      f"{labels.get(prune.ROW_LABEL)!r}, the container's is {row!r}", REFUSED)
        except oci.RegistryError as exc:
            raise UpdateError(f"{name}: {exc}") from None
        except (ValueError, AttributeError):
            raise UpdateError(f"{name}: {repository}:{row}: its image's config is not JSON") from None
        if found is None:
            raise UpdateError(f"{name}: {repository}:{row} is not in the registry", REFUSED)
        return container, row, repository, found

    def plan(self, name: str) -> int:
        state = self.load(name)
        if state is not None:
            self.step(name, f"would finish the interrupted update to {state['new_image'][:19]} (or restore the old "
                            "worker)")
            return UPDATED
        container, row, repository, found = self.find(name)
        if found.image_id in (container["Image"], found.digest):
            self.step(name, f"up to date: runs {found.image_id[:19]}, the image {repository}:{row} names")
            return UPDATED
        if found.refusal:
            raise UpdateError(f"{name}: refused: {found.refusal}", REFUSED)
        for what in (f"pull {repository}@{found.digest} ({found.image_id[:19]})",
                     f"drain {name} (graceful shutdown, at most {self.drain_timeout:.0f}s)",
                     f"rename it {name}{ROLLBACK}, create {name} on {found.image_id[:19]} with its settings",
                     f"wait at most {self.health_timeout:.0f}s for the new worker to connect, else roll back",
                     f"keep the old container as {name}{PREVIOUS}"):
            self.step(name, f"would {what}")
        return UPDATED

    def start(self, name: str) -> int:
        container, row, repository, found = self.find(name)
        if found.image_id in (container["Image"], found.digest):  # the digest: containerd's image store
            self.step(name, f"up to date: runs {found.image_id[:19]}, the image {repository}:{row} names")
            return UPDATED
        if found.refusal:
            raise UpdateError(f"{name}: refused: {found.refusal}", REFUSED)
        rejected = self.load(name, REJECTED) or {}
        if rejected.get("image") == found.image_id and not self.retry:
            self.step(name, f"skipped: {found.image_id[:19]} was rolled back on {rejected.get('when')} "
                            f"({rejected.get('reason')}); a newer image will be tried, --retry tries this one again")
            return UPDATED
        self.docker.socket_path()  # before anything stops: an engine this cannot reach fails here, not half-way
        ref = f"{repository}@{found.digest}"
        self.step(name, f"{repository}:{row} is {found.image_id[:19]} (verified: {', '.join(found.passed)}); "
                        f"the container runs {container['Image'][:19]}")
        self.step(name, f"pulling {ref}")
        self.docker("pull", "--quiet", ref)
        pulled = self.docker.inspect("image", ref)
        if pulled is None or pulled["Id"] not in (found.image_id, found.digest):
            raise UpdateError(f"{name}: refused: {ref} pulled as {(pulled or {}).get('Id', '?')[:19]}, not the "
                              f"verified {found.image_id[:19]}", REFUSED)
        # The owner's tag for the row moves with it; any other reference (an ID, a digest, a dated tag) is kept
        # as it is, and the new container names the row's tag.
        self.docker("tag", pulled["Id"], f"{repository}:{row}")
        state = {"old_id": container["Id"], "old_image": container["Image"], "new_image": pulled["Id"],
                 "image_ref": f"{repository}:{row}", "restart": container["HostConfig"].get("RestartPolicy") or {},
                 "phase": "draining", "started": time.time()}
        self.save(name, state)
        code = self.drain(name, state)
        return code if code != UPDATED else self.switch(name, state)

    def drain(self, name: str, state: dict) -> int:
        old = self.docker.inspect("container", name) or {}
        # The drained worker exits; its restart policy must not bring it back to take another build.
        self.docker("update", "--restart", "no", name)
        try:
            if not old.get("State", {}).get("Running"):
                self.step(name, "not running: nothing to drain (the new worker is started in its place)")
                return UPDATED
            user = _env(old["Config"].get("Env"), "FLEETBAKE_USER") or "buildbot"
            self.step(name, f"draining: touching {STAMP} (Buildbot's graceful shutdown); the running build, if any, "
                            f"finishes first (at most {self.drain_timeout:.0f}s)")
            # By hand, not with the image's own `drain` command: images published before it have none.
            self.docker("exec", "--user", user, name, "touch", STAMP)
            started = time.monotonic()
            while self.running(name):
                if time.monotonic() - started > self.drain_timeout:
                    if not self.force:
                        return self.abandon(name, state)
                    self.step(name, f"still draining after {self.drain_timeout:.0f}s: --force: stopping it (its "
                                    "build is interrupted)")
                    self.docker("stop", name)
                    break
                time.sleep(1)
        except BaseException:  # killed politely, or the engine failed: the old worker keeps its restart policy
            self.docker("update", "--restart", restart_flag(state["restart"]), name)
            raise
        self.step(name, f"drained in {time.monotonic() - started:.0f}s: the old worker is disconnected")
        return UPDATED

    def abandon(self, name: str, state: dict) -> int:
        """Past the drain's bound: the old worker goes on. It stops once its build is done (the master has its
        shutdown request); the next run starts it again if its restart policy does not."""
        policy = restart_flag(state["restart"])
        self.docker("update", "--restart", policy, name)
        self.save(name, {**state, "phase": "abandoned"})
        again = "its restart policy starts it again" if policy in ("always", "unless-stopped") else \
            "the next update run starts it again (or `docker start`)"
        self.step(name, f"not updated: still draining after {self.drain_timeout:.0f}s; the old worker keeps running "
                        f"its build (the master gives it no other), then stops, and {again}; --force stops it, "
                        "--drain-timeout waits longer")
        return DRAIN_TIMEOUT

    def running(self, name: str) -> bool:
        found = self.docker.inspect("container", name)
        return bool(found and found["State"].get("Running") and not found["State"].get("Restarting"))

    def switch(self, name: str, state: dict) -> int:
        if self.docker.inspect("container", name + ROLLBACK) is None:
            self.docker("rename", name, name + ROLLBACK)
        state = {**state, "phase": "switching"}
        self.save(name, state)
        began = time.monotonic()
        try:
            old = self.docker.inspect("container", name + ROLLBACK)
            if old is None:
                raise UpdateError(f"{name}{ROLLBACK}: gone")
            new = self.docker.inspect("container", name)
            if new is None:
                old_image = self.docker.inspect("image", state["old_image"]) or {}
                self.docker.create(name, create_body(old, old_image, state["image_ref"]))
                new = self.docker.inspect("container", name) or {}
            for network in other_networks(old):
                if network not in ((new.get("NetworkSettings") or {}).get("Networks") or {}):
                    self.docker("network", "connect", network, name)
            if not new.get("State", {}).get("Running"):
                self.docker("start", name)
            self.step(name, f"started {name} on {state['new_image'][:19]}; waiting for it to connect "
                            f"(at most {self.health_timeout:.0f}s)")
            reason = self.gate(name)
        except UpdateError as exc:
            reason = str(exc)
        if reason is not None:
            return self.roll_back(name, state, reason)
        self.docker("update", "--restart", restart_flag(state["restart"]), name)
        self.step(name, f"connected {time.monotonic() - began:.1f}s after the old worker stopped")
        if self.docker.inspect("container", name + PREVIOUS) is not None:
            self.docker("rm", "--force", name + PREVIOUS)
        self.docker("rename", name + ROLLBACK, name + PREVIOUS)
        self.forget(name)
        self.forget(name, REJECTED)
        self.step(name, f"updated to {state['new_image'][:19]}; the old container is kept, stopped, as "
                        f"{name}{PREVIOUS} (with its image {state['old_image'][:19]})")
        return UPDATED

    def roll_back(self, name: str, state: dict, reason: str) -> int:
        self.save(name, {**state, "phase": "rolling back", "reason": reason})
        began = time.monotonic()
        if self.docker.inspect("container", name + ROLLBACK) is not None:
            if self.docker.inspect("container", name) is not None:
                self.docker("rm", "--force", name)
            self.docker("rename", name + ROLLBACK, name)
        self.docker("update", "--restart", restart_flag(state["restart"]), name)
        if not self.running(name):
            self.docker("start", name)
        files.write_text(self.state_dir / (name + REJECTED), json.dumps(
            {"image": state["new_image"], "reason": reason, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}),
            mode=0o600, durable=True)
        self.forget(name)
        self.log(f"{name}: rolled back: {reason}")
        back = self.gate(name)
        if back is None:
            self.step(name, f"the old worker ({state['old_image'][:19]}) is connected again "
                            f"{time.monotonic() - began:.1f}s after the roll-back began")
        else:
            self.step(name, f"the old worker was started again but is not connected: {back}")
        return ROLLED_BACK

    def gate(self, name: str) -> Optional[str]:
        """None once the worker says it is connected (the image's health command); else why not, within the bound."""
        deadline = time.monotonic() + self.health_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            found = self.docker.inspect("container", name)
            state = (found or {}).get("State") or {}
            if not state.get("Running") or state.get("Restarting"):
                try:
                    tail = self.docker("logs", "--tail", "1", name).strip().splitlines()
                except UpdateError:
                    tail = []
                return f"the new worker exited (status {state.get('ExitCode')}){': ' + tail[-1] if tail else ''}"
            test = ((found.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
            command = test[1:] if test[:1] == ["CMD"] else ["sh", "-c", test[1]] if test[:1] == ["CMD-SHELL"] else \
                ["/usr/bin/python3", "-I", "-m", "fleetbake.worker.entrypoint", "health"]
            try:  # its output, whatever its exit status: not the CLI runner's, which keeps stderr alone
                probe = subprocess.run([self.docker.cli, "exec", name, *command], capture_output=True, text=True,
                                       timeout=60, check=False)
                last = ((probe.stdout.strip() or probe.stderr.strip() or "no answer").splitlines() or ["?"])[-1]
            except (OSError, subprocess.TimeoutExpired):
                last = "no answer within 60s"
            if CONNECTED.fullmatch(last):
                return None
            time.sleep(1)
        return f"not connected within {self.health_timeout:.0f}s (last health: {last})"

    def resume(self, name: str, state: dict) -> int:
        current = self.docker.inspect("container", name)
        parked = self.docker.inspect("container", name + ROLLBACK)
        phase = state.get("phase")
        if phase == "rolling back":
            return self.roll_back(name, state, state.get("reason") or "interrupted")
        if phase == "abandoned":
            self.forget(name)
            if current is not None and not current["State"].get("Running"):
                self.docker("start", name)
                self.step(name, "the old worker, left to finish its build, is started again")
            return self.start(name)
        if parked is None and current is not None and current["Id"] == state["old_id"]:
            if self.running(name):
                code = self.drain(name, state)
                if code != UPDATED:
                    return code
            return self.switch(name, state)
        if parked is not None:
            return self.switch(name, state)
        if current is not None:  # switched and renamed: only the state was left behind
            self.forget(name)
            self.step(name, f"the interrupted update had finished: runs {current['Image'][:19]}")
            return UPDATED
        raise UpdateError(f"{name}: neither {name} nor {name}{ROLLBACK} exists: look for it with "
                          f"`docker ps -a --filter name={name}`, then remove {self.state_dir / (name + STATE)}")


def workers(docker: Docker) -> List[str]:
    """Every running container of a fleetbake image's worker (its default command: not a verification's or a
    one-off `docker run IMAGE CMD`). A stopped one stays as its owner left it, unless named with --container."""
    ids = docker("container", "ls", "--quiet", "--no-trunc", "--filter", f"label={prune.ROW_LABEL}").split()
    try:
        found = prune.inspect(docker.run, "container", ids)
    except prune.PruneError as exc:
        raise UpdateError(str(exc)) from None
    return sorted(c["Name"].lstrip("/") for c in found if (c["Config"].get("Cmd") or []) == ["worker"])


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: Optional[List[str]] = None, log: Log = print) -> int:
    parser = argparse.ArgumentParser(prog="update", description=__doc__.splitlines()[0])
    parser.add_argument("--container", action="append", default=[], help="a worker container (default: all)")
    parser.add_argument("--registry", help="HOST[:PORT]/NAMESPACE (default: where the container's image is from)")
    parser.add_argument("--drain-timeout", type=float, default=4 * 3600, help="seconds to wait for the running build "
                        "(default 4 hours: a slow worker's full build and test run)")
    parser.add_argument("--health-timeout", type=float, default=180, help="seconds for the new worker to connect")
    parser.add_argument("--force", action="store_true", help="past --drain-timeout, stop the old worker anyway")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    parser.add_argument("--retry", action="store_true", help="try again an image an earlier update rolled back from")
    parser.add_argument("--state-dir", type=Path, default=None, help="where an update in progress is recorded")
    parser.add_argument("--docker", default="docker", help="the Docker CLI (default: docker on PATH)")
    args = parser.parse_args(argv)
    if args.drain_timeout <= 0 or args.health_timeout <= 0:
        print("update: error: --drain-timeout and --health-timeout take a positive number of seconds", file=sys.stderr)
        return USAGE
    with contextlib.suppress(AttributeError, ValueError):  # a step per line, as it happens, under systemd too
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    docker = Docker(args.docker)
    state_dir = args.state_dir or default_state_dir()
    updater = Updater(docker, state_dir, args.registry, args.drain_timeout, args.health_timeout, args.force,
                      args.dry_run, log, args.retry)
    try:
        names = args.container or sorted(set(workers(docker)) | {
            p.name[:-len(STATE)] for p in state_dir.glob(f"*{STATE}") if not p.name.endswith(REJECTED)})
    except UpdateError as exc:
        print(f"update: error: {exc}", file=sys.stderr)
        return ERROR
    if not names:
        log("update: no fleetbake worker container here")
    codes = []
    for name in names:
        try:
            codes.append(updater.update(name))
        except UpdateError as exc:
            print(f"update: {exc}" if exc.code == REFUSED else f"update: error: {exc}", file=sys.stderr)
            codes.append(exc.code)
        except Interrupted as exc:
            print(f"update: {name}: stopped by {exc}; the next run finishes the update or restores the old worker",
                  file=sys.stderr)
            return ERROR
        except (OSError, ValueError) as exc:
            print(f"update: error: {name}: {exc}", file=sys.stderr)
            codes.append(ERROR)
    return ERROR if ERROR in codes else max(codes, default=UPDATED)


if __name__ == "__main__":
    sys.exit(main())
