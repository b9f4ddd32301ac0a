"""fleetbake/operate/update.py without an engine: what a recreated container is made of, and how it runs on a host.
tests/integration/test_update.py runs it for real (a master, a registry, a build running)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from fleetbake.operate import update
from test_prune import assert_python_39_source

UPDATE = ROOT / "fleetbake" / "operate" / "update.py"
IMAGE = {"Id": "sha256:old", "Config": {
    "Env": ["PATH=/usr/bin:/bin", "FLEETBAKE_USER=buildbot"], "Cmd": ["worker"],
    "Entrypoint": ["/usr/bin/tini", "--", "/usr/bin/python3", "-I", "-m", "fleetbake.worker.entrypoint"],
    "Healthcheck": {"Test": ["CMD", "/usr/bin/python3", "-I", "-m", "fleetbake.worker.entrypoint", "health"]},
    "Labels": {"io.fleetbake.row": "debian-12", "org.opencontainers.image.created": "2026-12-01T00:00:00Z"},
    "Volumes": {"/buildarea": {}}, "WorkingDir": "", "User": ""}}
CONTAINER = {
    "Id": "0123456789abcdef" * 4, "Name": "/cpython-worker", "Image": "sha256:old",
    "Config": {**IMAGE["Config"], "Hostname": "0123456789ab", "Image": "ghcr.io/python/worker:debian-12",
               "Env": [*IMAGE["Config"]["Env"], "WORKERNAME=owner-debian12", "WORKERPASS_FILE=/run/secrets/pw"],
               "Labels": {**IMAGE["Config"]["Labels"], "owner": "jane"}},
    "HostConfig": {"Binds": ["/etc/fleetbake/pw:/run/secrets/pw:ro", "cpython-ccache:/ccache"],
                   "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}, "CapDrop": ["ALL"],
                   "CapAdd": ["SETUID", "SETGID", "KILL"], "SecurityOpt": ["no-new-privileges"], "ReadonlyRootfs": True,
                   "Tmpfs": {"/tmp": "rw,exec,nosuid,nodev,size=4g"}, "Memory": 8 << 30, "PidsLimit": 4096,
                   "NetworkMode": "workers"},
    "Mounts": [{"Type": "bind", "Source": "/etc/fleetbake/pw", "Destination": "/run/secrets/pw", "RW": False},
               {"Type": "volume", "Name": "cpython-ccache", "Destination": "/ccache", "RW": True},
               {"Type": "volume", "Name": "f00d" * 16, "Destination": "/buildarea", "RW": True}],
    "NetworkSettings": {"Networks": {"workers": {"Aliases": ["0123456789ab", "worker"], "IPAMConfig": None,
                                                 "Links": None},
                                     "monitoring": {"Aliases": None}}},
}


def test_a_recreated_container_keeps_the_owners_settings_and_takes_the_new_images_defaults():
    body = update.create_body(CONTAINER, IMAGE, "ghcr.io/python/worker:debian-12")
    # The owner's variables and labels; the old image's own are left to the new image.
    assert body["Env"] == ["WORKERNAME=owner-debian12", "WORKERPASS_FILE=/run/secrets/pw"]
    assert body["Labels"] == {"owner": "jane"}
    for key in ("Cmd", "Entrypoint", "Healthcheck", "Volumes", "Hostname"):
        assert key not in body, key
    assert body["Image"] == "ghcr.io/python/worker:debian-12"
    host = body["HostConfig"]
    # Everything as it was, but the restart policy: `no` until the new worker passed the health gate.
    assert {k: v for k, v in host.items() if k not in ("Binds", "RestartPolicy")} == \
        {k: v for k, v in CONTAINER["HostConfig"].items() if k not in ("Binds", "RestartPolicy")}
    assert host["RestartPolicy"] == {"Name": "no"}
    # The image's anonymous /buildarea volume is named, so the new container gets the same one, not a fresh one.
    assert host["Binds"] == [*CONTAINER["HostConfig"]["Binds"], f"{'f00d' * 16}:/buildarea"]
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"workers": {"Aliases": ["worker"], "IPAMConfig": None,
                                                                        "Links": None}}}
    assert update.other_networks(CONTAINER) == ["monitoring"]
    assert CONTAINER["HostConfig"]["Binds"] == ["/etc/fleetbake/pw:/run/secrets/pw:ro", "cpython-ccache:/ccache"]


def test_a_volume_mounted_without_a_name_keeps_its_volume():
    """--mount type=volume,dst=/buildarea (no source): the new container must get the same volume, not a fresh one."""
    container = json.loads(json.dumps(CONTAINER))
    container["HostConfig"]["Mounts"] = [{"Type": "volume", "Target": "/buildarea"}]
    body = update.create_body(container, IMAGE, "sha256:new")
    assert body["HostConfig"]["Mounts"] == [{"Type": "volume", "Target": "/buildarea", "Source": "f00d" * 16}]
    assert not [b for b in body["HostConfig"]["Binds"] if b.endswith(":/buildarea")]


@pytest.mark.parametrize("line, connected", [
    ("worker: connected 127.0.0.1:9020", True),
    ("worker: low disk: 3.2 GB free at /buildarea, below WORKER_MIN_FREE_GB=10 GB (worker connected 127.0.0.1:9020)",
     True),
    ("worker: no report from the worker for 40s (stopped or hung?); last: connected 127.0.0.1:9020", False),
    ("worker: no report from the worker for 40s (stopped or hung?); last: low disk (worker connected 1.2.3.4:1)", False),
    ("worker: disconnected from 127.0.0.1:9020", False), ("worker: not started", False),
])
def test_the_health_gate_takes_a_connected_worker_only(line, connected):
    assert bool(update.CONNECTED.fullmatch(line)) is connected


def test_an_owners_own_command_health_check_and_hostname_stay():
    container = json.loads(json.dumps(CONTAINER))
    container["Config"].update(Hostname="builder-7", Healthcheck={"Test": ["NONE"]}, Cmd=["worker"])
    body = update.create_body(container, IMAGE, "sha256:new")
    assert body["Hostname"] == "builder-7" and body["Healthcheck"] == {"Test": ["NONE"]}
    assert "Cmd" not in body  # the image's own default


@pytest.mark.parametrize("image, registry, repository", [
    ("ghcr.io/python/worker:debian-12", None, "ghcr.io/python/worker"),
    ("127.0.0.1:5000/fleet/worker@sha256:" + "a" * 64, None, "127.0.0.1:5000/fleet/worker"),
    ("fleetbake/worker:debian-12", "registry.example.org:5000/python/", "registry.example.org:5000/python/worker"),
])
def test_the_registry_is_the_option_or_where_the_image_came_from(image, registry, repository):
    container = {**CONTAINER, "Config": {**CONTAINER["Config"], "Image": image}}
    assert update.repository_of(container, registry) == repository


@pytest.mark.parametrize("image", ["fleetbake/worker:debian-12", "sha256:" + "b" * 64, "ghcr.io/python/other:x"])
def test_an_image_that_names_no_worker_repository_needs_the_option(image):
    container = {**CONTAINER, "Config": {**CONTAINER["Config"], "Image": image}}
    with pytest.raises(update.UpdateError) as info:
        update.repository_of(container, None)
    assert info.value.code == update.USAGE and "names no registry: give --registry HOST[:PORT]/NAMESPACE" in str(info.value)


@pytest.mark.parametrize("policy, flag", [({"Name": "unless-stopped"}, "unless-stopped"), ({"Name": ""}, "no"),
                                          ({"Name": "on-failure", "MaximumRetryCount": 5}, "on-failure:5"),
                                          ({"Name": "always", "MaximumRetryCount": 0}, "always")])
def test_the_restart_policy_is_given_back_as_it_was(policy, flag):
    assert update.restart_flag(policy) == flag


def test_the_script_and_what_it_imports_are_python_3_9_and_the_standard_library_alone(tmp_path):
    """A host runs it as prune.py: /usr/bin/python3 -I on the file, no virtualenv, from anywhere."""
    # What Python loads at start-up (a site .pth may load a module of its own) is not the script's doing.
    probe = ("import runpy, sys; sys.argv = ['update.py', '--help']; before = set(sys.modules)\n"
             f"try:\n    runpy.run_path({str(UPDATE)!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('MODULES', ' '.join(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in "
             "sys.stdlib_module_names)))")
    result = subprocess.run(["/usr/bin/python3", "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "--drain-timeout" in result.stdout, result.stderr
    outside = result.stdout.split("MODULES", 1)[1].split()
    assert outside and all(m == "fleetbake" or m.startswith("fleetbake.") for m in outside), outside
    for module in outside:
        path = ROOT.joinpath(*module.split("."))
        assert_python_39_source(path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))


@pytest.mark.parametrize("args, message", [
    (["--drain-timeout", "0"], "update: error: --drain-timeout and --health-timeout take a positive number of seconds"),
    (["--container", "fbtest-nope", "--docker", "/nonexistent/docker"],
     "update: error: /nonexistent/docker: not found (the Docker CLI; --docker PATH)"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-I", str(UPDATE), "--state-dir", str(tmp_path), *args],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode in (1, 2) and result.stderr.splitlines() == [message], result.stderr
    assert list(tmp_path.glob("*.json")) == []  # no state: nothing was begun


def test_an_unreadable_state_is_named_and_nothing_is_touched(tmp_path):
    (tmp_path / "cpython-worker.json").write_text("{half")
    result = subprocess.run([sys.executable, "-I", str(UPDATE), "--state-dir", str(tmp_path), "--container",
                             "cpython-worker", "--docker", "/bin/false"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"update: error: {tmp_path}/cpython-worker.json: unreadable (")
    assert len(result.stderr.splitlines()) == 1
