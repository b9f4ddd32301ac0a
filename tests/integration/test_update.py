"""`invoke update` with real parts: a Buildbot master, a local registry, the Docker engine, a build running.

update.py runs as a worker's host runs it: /usr/bin/python3 -I on the file, the Docker CLI, no virtualenv.
The image it moves to is the session's verified debian-12 image, published with its report and records; the
one the worker runs first is that image with one file more (/etc/fleetbake-variant, which the master's `sleep`
build prints), so that a build says which image it ran on.
"""

import json
import signal
import subprocess
import time
import uuid

import pytest

from conftest import ROOT
from fleetbake.devtools import worker_rig
from fleetbake.operate import prune, update
from fleetbake.operate.buildbot_api import BuildbotApi, SUCCESS
from fleetbake.pipeline import artifact, identity, publish, registry as oci
from integration.conftest import running_master, SESSION, TEST_LABEL, unique_password, wait_connected

WORKER = "update-w"
SYSTEM_PYTHON = "/usr/bin/python3"  # what a fresh Debian 12 host has: no virtualenv, standard library only


@pytest.fixture(scope="module")
def master(tmp_path_factory, live_project):
    with running_master(tmp_path_factory, live_project, {WORKER: unique_password()}) as info:
        yield info


@pytest.fixture
def api(master):
    return BuildbotApi(master.url)


@pytest.fixture(scope="module")
def published(registry, reported, amd64_project, client):
    """REGISTRY/upd: the verified debian-12 image, pushed by `invoke publish` with its report and records."""
    for tag in identity.image_tags(amd64_project.rows["debian-12"]):
        client.api.tag(reported.image_id, *tag.split(":"))
    # The row on this host's architecture alone: publish wants every one of the row's otherwise.
    [done] = publish.publish(amd64_project, [amd64_project.rows["debian-12"]], f"{registry}/upd", log=print)
    assert done.digest
    return f"{registry}/upd", reported.image_id


@pytest.fixture(scope="module")
def older(client, published):
    yield worker_rig.derived_image(published[1], "RUN echo older > /etc/fleetbake-variant", {TEST_LABEL: SESSION})
    for image in client.images.list(filters={"label": f"{TEST_LABEL}={SESSION}"}):
        client.images.remove(image.id, force=True)


@pytest.fixture
def worker(master, api):
    """Start a worker container as the README's `docker run` does (name, restart policy, capabilities, read-only
    root, limits, volume, password file); yields its name; removes it, its roll-back copies and its volume."""
    name = f"fbtest-upd-{uuid.uuid4().hex[:8]}"
    volume = f"{name}-buildarea"

    def start(image: str) -> str:
        subprocess.run(worker_rig.docker_run_argv(name, image, master, WORKER, volume, {TEST_LABEL: SESSION,
                                                                                        "owner": "jane"}),
                       check=True, capture_output=True)
        return name

    yield start
    worker_rig.remove(name, volume)
    wait_connected(api, WORKER, connected=False, timeout=60)  # the next test's worker is not mistaken for this one


def run_update(name, registry, state_dir, *extra, timeout=600):
    """update.py as a host runs it; (exit status, stdout + stderr)."""
    result = subprocess.run([SYSTEM_PYTHON, "-I", str(ROOT / "fleetbake" / "operate" / "update.py"), "--container",
                             name, "--registry", registry, "--state-dir", str(state_dir), *extra],
                            capture_output=True, text=True, timeout=timeout, cwd="/")
    print(result.stdout, result.stderr)
    return result.returncode, result.stdout + result.stderr


def inspect(name):
    found = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True).stdout or "[]")
    return found[0] if found else None


SETTINGS = ("CapAdd", "CapDrop", "SecurityOpt", "ReadonlyRootfs", "Tmpfs", "Memory", "PidsLimit", "RestartPolicy",
            "Binds", "NetworkMode")


def test_a_running_build_finishes_the_worker_moves_to_the_new_image_with_its_settings_and_buildarea(
        api, master, published, older, worker, client, tmp_path):
    registry, newest = published
    name = worker(older)
    wait_connected(api, WORKER)
    before = inspect(name)
    subprocess.run(["docker", "exec", "-u", "buildbot", name, "sh", "-c", "echo kept > /buildarea/owner-file"],
                   check=True)
    builderid, running = worker_rig.start_build(api, f"{WORKER}-sleep")
    with worker_rig.Disconnections(api, WORKER) as watch:
        code, output = run_update(name, registry, tmp_path / "state")
        wait_connected(api, WORKER)
    assert code == 0, output
    assert f"{name}: draining" in output and f"{name}: updated to {newest[:19]}" in output
    assert "(verified: pydebug" in output

    # The build that was running ended as it would have: SUCCESS, on the old image, and was not run again.
    done = worker_rig.finished(api, running["buildid"])
    assert done["results"] == SUCCESS, done
    log = "".join(api.step_logs(done["buildid"]).values())
    assert "older" in log and "slept" in log
    assert api.get(f"builders/{builderid}/builds?number__gt={running['number']}")["builds"] == []

    after = inspect(name)
    assert after["Image"] == newest and after["Id"] != before["Id"]
    for key in SETTINGS:
        assert after["HostConfig"][key] == before["HostConfig"][key], key
    assert after["Config"]["Labels"]["owner"] == "jane"
    image_env = set(client.images.get(newest).attrs["Config"]["Env"])
    assert sorted(set(after["Config"]["Env"]) - image_env) == sorted(
        e for e in before["Config"]["Env"] if e not in set(client.images.get(older).attrs["Config"]["Env"]))
    assert subprocess.run(["docker", "exec", "-u", "buildbot", name, "cat", "/buildarea/owner-file"],
                          capture_output=True, text=True).stdout == "kept\n"
    # The old container stays, stopped, with its image: prune keeps an image a container uses.
    previous = inspect(name + update.PREVIOUS)
    assert previous["Id"] == before["Id"] and not previous["State"]["Running"] and previous["Image"] == older
    decisions = prune.decide(prune.fleetbake_images(prune.run_docker("docker")), prune.used_images(
        prune.run_docker("docker")))
    assert [d.keep for d in decisions if d.image.id == older] == [True]

    # The next build runs on the new image.
    _, second = worker_rig.start_build(api, f"{WORKER}-sleep")
    done = worker_rig.finished(api, second["buildid"])
    assert done["results"] == SUCCESS and "release" in "".join(api.step_logs(done["buildid"]).values())
    print(f"\ndisconnected after the drained build: {', '.join(f'{gap:.1f}s' for gap in watch.gaps)}")
    assert len(watch.gaps) == 1 and watch.gaps[0] <= 20, watch.gaps


def test_a_worker_on_the_newest_image_is_left_alone(api, published, worker, tmp_path):
    registry, newest = published
    name = worker(newest)
    wait_connected(api, WORKER)
    before = inspect(name)
    code, output = run_update(name, registry, tmp_path / "state")
    assert code == 0 and f"{name}: up to date: runs {newest[:19]}" in output, output
    after = inspect(name)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])


def test_an_image_without_a_passing_record_in_the_registry_is_refused_and_nothing_changes(
        api, published, older, worker, client, registry, tmp_path):
    # The verified image pushed alone, as `docker push` does: no report, no records beside it.
    client.api.tag(published[1], f"{registry}/bare/worker", "debian-12")
    for _ in client.api.push(f"{registry}/bare/worker", tag="debian-12", stream=True, decode=True):
        pass
    name = worker(older)
    wait_connected(api, WORKER)
    before = inspect(name)
    code, output = run_update(name, f"{registry}/bare", tmp_path / "state")
    assert code == 3, output
    assert f"{registry}/bare/worker:debian-12 ({published[1][:19]}) has no report in the registry" in output
    after = inspect(name)
    assert (after["Id"], after["State"]["StartedAt"], after["State"]["Running"]) == \
        (before["Id"], before["State"]["StartedAt"], True)
    assert inspect(name + update.ROLLBACK) is None and not list((tmp_path / "state").glob("*.json"))


def test_a_new_image_that_never_connects_is_rolled_back_within_the_bound(
        api, published, older, worker, client, registry, tmp_path):
    # It runs, but its worker never starts: only the health bound can tell.
    silent = worker_rig.derived_image(published[1], 'ENTRYPOINT ["sleep", "infinity"]', {TEST_LABEL: SESSION})
    worker_rig.push_with_records(registry, "silent", silent, published[1], tmp_path / "build")
    name = worker(older)
    wait_connected(api, WORKER)
    started = time.monotonic()
    code, output = run_update(name, f"{registry}/silent", tmp_path / "state", "--health-timeout", "30")
    took = time.monotonic() - started
    assert code == 5, output
    assert f"{name}: rolled back: not connected within 30s (last health: worker: not started)" in output
    assert inspect(name)["Image"] == older
    wait_connected(api, WORKER)
    assert inspect(name + update.ROLLBACK) is None and not (tmp_path / "state" / f"{name}.json").exists()
    assert inspect(name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    # The image is remembered, and not tried again every day.
    assert json.loads((tmp_path / "state" / f"{name}.rolled-back.json").read_text())["image"] == silent
    code, output = run_update(name, f"{registry}/silent", tmp_path / "state")
    assert code == 0 and f"{name}: skipped: {silent[:19]} was rolled back on " in output, output
    assert inspect(name)["Image"] == older
    print(f"\nupdate with a roll-back: {took:.1f}s (drain of an idle worker, 30s bound, roll-back)")


def test_a_new_image_whose_worker_exits_is_rolled_back_at_once(api, published, older, worker, client, registry,
                                                             tmp_path):
    broken = worker_rig.derived_image(published[1], 'ENTRYPOINT ["sh", "-c", "echo cannot start; exit 1"]',
                                      {TEST_LABEL: SESSION})
    worker_rig.push_with_records(registry, "broken", broken, published[1], tmp_path / "build")
    name = worker(older)
    wait_connected(api, WORKER)
    code, output = run_update(name, f"{registry}/broken", tmp_path / "state")
    assert code == 5, output
    assert f"{name}: rolled back: the new worker exited (status 1): cannot start" in output
    assert inspect(name)["Image"] == older and inspect(name)["State"]["Running"]
    wait_connected(api, WORKER)


def test_an_update_killed_after_the_drain_is_finished_by_the_next_run(api, published, older, worker, tmp_path):
    registry, newest = published
    name = worker(older)
    wait_connected(api, WORKER)
    process = subprocess.Popen([SYSTEM_PYTHON, "-I", str(ROOT / "fleetbake" / "operate" / "update.py"),
                                "--container", name, "--registry", registry, "--state-dir", str(tmp_path / "state")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    old_id = inspect(name)["Id"]
    # Killed the moment the drained worker is gone: update.py looks once a second, so it has not gone on yet.
    deadline = time.monotonic() + 120
    while (container := inspect(name)) is not None and container["State"]["Running"]:
        assert time.monotonic() < deadline and process.poll() is None, process.poll()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert "draining" in output and "started" not in output, output  # after the drain, before the start
    # The old worker's container is there (stopped, maybe renamed); no new one runs.
    left = inspect(name) or inspect(name + update.ROLLBACK)
    assert left["Id"] == old_id and not left["State"]["Running"]
    assert list((tmp_path / "state").glob("*.json"))

    code, output = run_update(name, registry, tmp_path / "state")
    assert code == 0, output
    assert "was interrupted (draining): finishing it" in output
    assert inspect(name)["Image"] == newest and inspect(name)["State"]["Running"]
    wait_connected(api, WORKER)
    assert not list((tmp_path / "state").glob("*.json"))


@pytest.mark.parametrize("command", ["rename", "start"])
def test_an_update_killed_right_after_it_renamed_or_started_is_finished_by_the_next_run(command, api, published, older,
                                                                                      worker, tmp_path):
    """Two more kill points, exactly: a Docker CLI that kills update.py once it has run `docker rename` (the old
    container is NAME.rollback, no new one yet) or `docker start` (the new one started, not yet gated)."""
    registry, newest = published
    name = worker(older)
    wait_connected(api, WORKER)
    killer = tmp_path / "docker"
    killer.write_text(f"#!/bin/sh\ndocker \"$@\"; status=$?\n[ \"$1\" = {command} ] && kill -9 $PPID\nexit $status\n")
    killer.chmod(0o755)
    code, output = run_update(name, registry, tmp_path / "state", "--docker", str(killer))
    assert code == -9 and f"{name}: draining" in output and "updated to" not in output, (code, output)
    assert inspect(name + update.ROLLBACK) is not None  # the old worker's container, ready to come back

    code, output = run_update(name, registry, tmp_path / "state")
    phase = {"rename": "draining", "start": "switching"}[command]  # the switch is recorded once the rename is done
    assert code == 0 and f"was interrupted ({phase}): finishing it" in output, output
    assert inspect(name)["Image"] == newest and inspect(name)["State"]["Running"]
    assert inspect(name + update.ROLLBACK) is None and inspect(name + update.PREVIOUS)["Image"] == older
    assert inspect(name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    wait_connected(api, WORKER)


def test_a_drain_past_its_bound_leaves_the_old_worker_running(api, published, older, worker, tmp_path):
    registry, _ = published
    name = worker(older)
    wait_connected(api, WORKER)
    _, running = worker_rig.start_build(api, f"{WORKER}-sleep")
    code, output = run_update(name, registry, tmp_path / "state", "--drain-timeout", "3")
    assert code == 4, output
    assert "not updated: still draining after 3s; the old worker keeps running its build" in output
    assert inspect(name)["Image"] == older and inspect(name)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert worker_rig.finished(api, running["buildid"])["results"] == SUCCESS
    # Its build done, the old worker stops, and its restart policy brings it back.
    wait_connected(api, WORKER, connected=False, timeout=60)
    wait_connected(api, WORKER, timeout=120)
    assert inspect(name)["Image"] == older


def night(registry, namespace, labels, records_of, sbom=True):
    """A tiny image (a config, no layers) under REGISTRY/NAMESPACE/worker:debian-12, with a report artifact holding
    the records `records_of(image ID)` gives ({configuration: record fields}); without the SBOM when `sbom` is
    false. Its image ID."""
    remote = oci.Registry(registry, f"{namespace}/worker")
    config = remote.push_blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                                          "rootfs": {"type": "layers", "diff_ids": []}}).encode(),
                              "application/vnd.oci.image.config.v1+json")
    image = remote.put_manifest({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config.to_json(),
                                 "layers": []}, "debian-12")
    layers = [remote.push_blob(json.dumps(fields).encode(), artifact.RECORD_TYPE).to_json(
        annotations={artifact.TITLE: f"verification/{name}.json"}) for name, fields in records_of(config.digest).items()]
    if sbom:
        layers.insert(0, remote.push_blob(b"{}", artifact.SPDX_TYPE).to_json(annotations={artifact.TITLE: "sbom.spdx.json"}))
    report = remote.put_manifest({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": artifact.ARTIFACT_TYPE,
                                  "config": remote.push_blob(oci.EMPTY, oci.EMPTY_TYPE).to_json(), "layers": layers,
                                  "subject": image.to_json()})
    remote.add_referrer(image, report.to_json(artifactType=artifact.ARTIFACT_TYPE))
    return config.digest


@pytest.mark.parametrize("case, message", [
    ("failed", "failed verification (asan)"),
    ("another image's", "has no passing verification record in its report"),
    ("no sbom", "has no SBOM"),
    ("another row", "is an image of row 'fedora-44', the container's is 'debian-12'"),
])
def test_what_the_registry_says_of_an_image_decides_and_nothing_changes(case, message, api, older, worker, registry,
                                                                       tmp_path):
    """The registry's record is read, not trusted blindly: each way it can say no."""
    def records_of(image_id):
        named = f"sha256:{'0' * 64}" if case == "another image's" else image_id  # a record names its image
        found = {"pydebug": {"passed": True, "image_id": named}}
        if case == "failed":
            found["asan"] = {"passed": False, "image_id": named}
        return found

    namespace = case.replace(" ", "-").replace("'", "")
    night(registry, namespace, {"io.fleetbake.row": "fedora-44" if case == "another row" else "debian-12"},
          records_of, sbom=case != "no sbom")
    name = worker(older)
    wait_connected(api, WORKER)
    before = inspect(name)
    code, output = run_update(name, f"{registry}/{namespace}", tmp_path / "state")
    assert code == 3 and message in output, output
    after = inspect(name)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    assert not list((tmp_path / "state").glob("*.json"))
