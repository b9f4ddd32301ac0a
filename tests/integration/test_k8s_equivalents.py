"""What the Kubernetes manifest promises, proven on Docker with the suite's real Buildbot master (no cluster runs
here). Everything comes from the committed k8s/debian-12/worker-with-ccache.yaml: the init container's command
and the security contexts (through k8s.docker_equivalents), the password file's place, the probe and the preStop.

A fresh PersistentVolumeClaim's top directory is root's (Docker would copy the image's owner into a fresh named
volume): `no_copy` volumes stand in for the claims.
"""

import datetime as dt
import subprocess
import time
import uuid

import docker
import pytest
import yaml

from conftest import ROOT, free_port
from fleetbake.operate.buildbot_api import BuildbotApi, SUCCESS
from fleetbake.pipeline import k8s
from integration.conftest import build_user, running_master, SESSION, TEST_LABEL, unique_password, wait_connected, wait_for_log

PORTS = dict(pb_port=free_port(), www_port=free_port(), git_port=free_port())
NAME = "k8s-drain"
MANIFEST = ROOT / "k8s" / "debian-12" / "worker-with-ccache.yaml"


@pytest.fixture(scope="module")
def master(tmp_path_factory, live_project):
    with running_master(tmp_path_factory, live_project, {NAME: unique_password()}, test_timeout=900, **PORTS) as info:
        yield info


@pytest.fixture(scope="module")
def manifest():
    deployment = next(yaml.safe_load_all(MANIFEST.read_text()))
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["initContainers"][0], pod["containers"][0]


@pytest.fixture
def claims(client):
    """Fresh named volumes, one per claim the manifest mounts, removed after the test."""
    made = []

    def make(container):
        mounts = []
        for mount in container["volumeMounts"]:
            if mount["mountPath"] in ("/buildarea", "/ccache"):
                volume = client.volumes.create(f"fleetbake-k8s-{uuid.uuid4().hex[:12]}", labels={TEST_LABEL: SESSION})
                made.append(volume)
                mounts.append(docker.types.Mount(mount["mountPath"], volume.name, type="volume", no_copy=True))
        return mounts

    yield make
    for volume in made:
        try:
            volume.remove(force=True)
        except docker.errors.NotFound:
            pass


def test_the_manifest_security_context_on_docker_joins_drains_and_stops(master, manifest, claims, client, image, run):
    pod, init, worker = manifest
    api = BuildbotApi(master.url)
    secret = next(v["secret"] for v in pod["volumes"] if v["name"] == "workerpass")
    secret_dir = next(m["mountPath"] for m in worker["volumeMounts"] if m["name"] == "workerpass")
    env = {e["name"]: e["value"] for e in worker["env"]}
    # The ConfigMap's settings (the owner's); WORKER_MIN_FREE_GB=1: the test machine's free disk is not the point.
    settings = {"WORKERNAME": NAME, "BUILDMASTER": f"127.0.0.1:{master.pb_port}", "MAXRETRIES": "none",
                "WORKER_ADMIN": "Jane Owner <jane@example.org>", "WORKER_MIN_FREE_GB": "1"}
    started = time.monotonic()

    mounts = claims(worker)
    # The init container, as the manifest has it, gives the fresh claims to the build user.
    own = run(image.image_id, entrypoint=init["command"][:1], command=init["command"][1:], mounts=mounts,
              **k8s.docker_equivalents(init, pod))
    assert own.wait(timeout=60)["StatusCode"] == 0, own.logs()
    container = run(image.image_id, network_mode="host", environment={**settings, **env}, mounts=mounts,
                    # Root's 0400 file, as a Secret volume with defaultMode 0400 and no fsGroup gives it.
                    volumes={str(master.secret_file(NAME)): {"bind": f"{secret_dir}/{secret['items'][0]['path']}",
                                                             "mode": "ro"}},
                    **k8s.docker_equivalents(worker, pod))
    host = client.api.inspect_container(container.id)["HostConfig"]
    # What Docker applied is what the manifest says (tests/test_k8s.py checks the manifest against the README).
    caps, memory = worker["securityContext"]["capabilities"], worker["resources"]["limits"]["memory"]
    assert host["CapDrop"] == caps["drop"] and {c.removeprefix("CAP_") for c in host["CapAdd"]} == set(caps["add"])
    assert host["ReadonlyRootfs"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == int(memory.removesuffix("Gi")) << 30 and host["NanoCpus"] > 0
    assert (master.secret_file(NAME).stat().st_mode & 0o777) == secret["defaultMode"]
    wait_connected(api, NAME)
    logs = wait_for_log(container, "ccache on:")  # the /ccache claim, owned by the build user, is used
    # The readiness and liveness probes' command, exec'd as Kubernetes does (root, the container's capabilities).
    probe = worker["readinessProbe"]["exec"]["command"]
    assert probe == worker["livenessProbe"]["exec"]["command"]
    deadline = time.monotonic() + 30
    while (health := container.exec_run(probe)).exit_code != 0:
        assert time.monotonic() < deadline, health.output
        time.sleep(0.5)
    assert health.output.decode().startswith("worker: connected 127.0.0.1:"), health.output

    # A build runs; the preStop command drains: the build finishes, then the worker leaves and the container stops.
    builder = f"{NAME}-sleep"
    builderid = api.builder_id(builder)
    after = api.last_build_number(builderid)
    api.force(builder)
    deadline = time.monotonic() + 120
    while not api.get(f"builders/{builderid}/builds?number__gt={after}")["builds"]:
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.5)
    drained = time.monotonic()
    prestop = subprocess.Popen(["docker", "exec", container.id, *worker["lifecycle"]["preStop"]["exec"]["command"]],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert api.connected(NAME), "the worker left before its build ended"
        api.force(builder)  # queued behind the running build: a draining worker must not start it
        result = api.wait_for_build(builderid, after, timeout=180)
        ended = time.monotonic()
        wait_connected(api, NAME, connected=False, timeout=60)
        assert container.wait(timeout=60)["StatusCode"] == 0  # stopped by itself: nobody sent a signal
        said, _ = prestop.communicate(timeout=30)
    finally:
        prestop.kill()
    assert result["results"] == SUCCESS, api.step_logs(result["buildid"])
    assert "slept" in api.step_logs(result["buildid"])["sleep"]
    builds = api.get(f"builders/{builderid}/builds?number__gt={after}")["builds"]
    assert len(builds) == 1, builds  # not retried, and the build queued meanwhile never started here
    assert "drain: touched /buildarea/shutdown.stamp" in said, said
    logs = container.logs().decode(errors="replace")
    assert "Initiating shutdown because /buildarea/shutdown.stamp was touched" in logs, logs[-3000:]
    assert "worker shutting down on command from master" in logs, logs[-3000:]
    finished = client.api.inspect_container(container.id)["State"]["FinishedAt"]  # RFC 3339, nanoseconds
    exited = dt.datetime.fromisoformat(finished[:26].rstrip("Z") + "+00:00").timestamp()
    print(f"\nk8s equivalents: the build ended {ended - drained:.0f}s after the preStop began, the container exited "
          f"{exited - result['complete_at']:.1f}s after the build's end (the master's clock); "
          f"whole test {time.monotonic() - started:.0f}s")


def test_without_the_init_container_a_fresh_claim_is_refused(manifest, claims, client, image, run):
    """What the init container is for: the entrypoint never takes over a buildarea it does not own."""
    pod, _, worker = manifest
    name, uid = build_user(client, image)
    container = run(image.image_id, network_mode="host", mounts=claims(worker),
                    environment={"WORKERNAME": NAME, "WORKERPASS": "unused", "BUILDMASTER": "127.0.0.1:1"},
                    **k8s.docker_equivalents(worker, pod))
    assert container.wait(timeout=60)["StatusCode"] == 2
    logs = container.logs().decode(errors="replace")
    assert f"/buildarea belongs to uid 0, not to the build user {name} (uid {uid})" in logs, logs
