"""The runtime contract of the debian-12 image, against a real Docker engine."""

import json
import os
import subprocess
import time
from pathlib import Path


from fleetbake import paths
from fleetbake.pipeline import families
from integration.conftest import TEST_ARCH, TEST_ROW, build_user as image_build_user, unique_password, wait_for_log

HUNT = (Path(__file__).parents[2] / "fleetbake" / "worker" / "hunt.py").read_text()
# The README's recommended hardening, minus the restart policy.
HARDENED = dict(
    cap_drop=["ALL"],
    cap_add=["SETUID", "SETGID", "KILL"],  # KILL: the root supervisor signals the build user's twistd
    security_opt=["no-new-privileges"],
    read_only=True,
    tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=512m"},
    mem_limit="2g",
    pids_limit=1024,
)
# Nothing listens there: the worker keeps retrying, which is all these tests need.
WORKER_ENV = {"WORKERNAME": "owner-debian12-x86_64", "BUILDMASTER": "127.0.0.1:9", "MAXRETRIES": "none",
              "WORKER_ADMIN": "Jane Owner <jane@example.org>", "BUILDBOT_TESTOPTS": "-x test_gdb"}


def sh(container, command, user="root"):
    code, out = container.exec_run(command, user=user)
    return code, out.decode(errors="replace")


def build_user(client, image):
    return image_build_user(client, image)[0]


def twistd_pid(container):
    code, out = sh(container, ["python3", "-c", (
        "import os\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    if b'twistd' in open(f'/proc/{p}/cmdline','rb').read(): print(p)")])
    assert code == 0 and out.strip(), out
    return out.split()[0]


def children(pid):
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def host_environ(client, container):
    """The environment of the container's twistd (tini's grandchild, under the supervisor), read from the host."""
    tini = client.api.inspect_container(container.id)["State"]["Pid"]
    [supervisor] = children(tini)
    [twistd] = children(supervisor)
    return Path(f"/proc/{twistd}/environ").read_bytes().decode(errors="replace")


def proc_status(container, pid):
    _, out = sh(container, ["cat", f"/proc/{pid}/status"])
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def hunt(container, password):
    """As the build user, with an empty environment: what a build step sees."""
    code, out = sh(container, ["env", "-i", "/usr/bin/python3", "-c", HUNT, password[::-1]], user="buildbot")
    assert code in (0, 1), out
    return out


def put_secret(client, password, tmp_path):
    secret = tmp_path / "workerpass"
    secret.write_text(password + "\n")
    secret.chmod(0o400)
    return str(secret)


def test_image_is_labelled_and_tagged(client, image, live_project):
    img = client.images.get(image.image_id)
    labels = img.labels
    assert labels["io.fleetbake.row"] == TEST_ROW
    assert labels["io.fleetbake.inputs-hash"] == image.inputs_hash
    assert labels["io.fleetbake.worker-version"] == live_project.rows[TEST_ROW].spec.worker_version
    for key in ("created", "revision", "source", "version", "title"):
        assert labels[f"org.opencontainers.image.{key}"]
    arch = "" if TEST_ARCH is None else f"-{TEST_ARCH}"  # the row's own tag is the host's architecture's
    assert {f"fleetbake/worker:{TEST_ROW}{arch}", f"fleetbake/worker:{TEST_ROW}-{image.inputs_hash[:16]}"} <= set(img.tags)


def test_default_user_and_worker_version(client, image, live_project):
    out = client.containers.run(image.image_id, ["sh", "-c", "id -u; id -un; buildbot-worker --version"], remove=True)
    uid, user, version = out.decode().split("\n")[:3]
    row = live_project.rows[TEST_ROW].spec
    assert (int(uid), user) == (row.uid, row.user)
    assert version.strip().endswith(row.worker_version)


def test_missing_name_is_one_line_and_exit_2(client, image, run):
    container = run(image.image_id, environment={"WORKERPASS": "x"})
    assert container.wait(timeout=60)["StatusCode"] == 2
    lines = container.logs().decode().strip().splitlines()
    assert lines == ["fleetbake-worker: error: WORKERNAME is not set: pass -e WORKERNAME=<the name the fleet admins gave you>"]


def test_worker_contract_with_the_hardened_run_line(client, image, run, live_project):
    password = unique_password()
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": password}, **HARDENED)
    logs = wait_for_log(container, "Starting Worker")
    assert "127.0.0.1:9, keepalive 60s" in logs
    wait_for_log(container, "Scheduling retry")

    _, comm = sh(container, ["cat", "/proc/1/comm"])
    assert comm.strip() == "tini"
    pid = twistd_pid(container)
    status = proc_status(container, pid)
    _, uid = sh(container, ["id", "-u", build_user(client, image)])
    assert status["Uid"].split()[:2] == [uid.strip()] * 2
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0 and int(status["CapInh"], 16) == 0

    # Builds inherit twistd's environment: the secret is gone, BUILDBOT_* stays.
    # It is non-dumpable: even the container's root cannot read it, the host's root can.
    environ = host_environ(client, container)
    assert password not in environ and "WORKERPASS=" not in environ and "WORKERPASS_FILE" not in environ
    assert "BUILDBOT_TESTOPTS=-x test_gdb" in environ

    _, admin = sh(container, ["cat", "/buildarea/info/admin"], user=build_user(client, image))
    _, host = sh(container, ["cat", "/buildarea/info/host"], user=build_user(client, image))
    assert admin.strip() == "Jane Owner <jane@example.org>"
    assert ROW_OS[TEST_ROW] in host and "buildbot-worker: 4.3.0" in host and "CPU: " in host
    assert f"fleetbake/worker:{TEST_ROW}" in host

    found = hunt(container, password)
    assert found.startswith("NOTHING"), found
    assert f"/proc/{pid}/environ" in found and f"/proc/{pid}/mem" in found  # non-dumpable
    assert "/proc/1/environ" in found  # tini is root
    supervisor = children(client.api.inspect_container(container.id)["State"]["Pid"])[0]
    assert "WORKERPASS" in Path(f"/proc/{supervisor}/environ").read_text()  # root's, as tini's: the hunt could not read it
    assert password not in container.logs().decode()


def test_password_file_keeps_the_secret_out_of_inspect_and_proc(client, image, run, tmp_path):
    password = unique_password()
    secret = put_secret(client, password, tmp_path)
    container = run(
        image.image_id,
        environment={**WORKER_ENV, "WORKERPASS_FILE": "/run/secrets/workerpass"},
        volumes={secret: {"bind": "/run/secrets/workerpass", "mode": "ro"}},
        **HARDENED,
    )
    wait_for_log(container, "Starting Worker")
    assert password not in json.dumps(client.api.inspect_container(container.id))
    found = hunt(container, password)
    assert found.startswith("NOTHING"), found
    history = subprocess.run(["docker", "history", "--no-trunc", image.image_id], capture_output=True, text=True, check=True)
    assert password not in history.stdout and "WORKERPASS" not in history.stdout


def test_a_world_readable_password_file_is_refused(client, image, run, tmp_path):
    secret = tmp_path / "workerpass"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS_FILE": "/run/secrets/workerpass"},
                    volumes={str(secret): {"bind": "/run/secrets/workerpass", "mode": "ro"}})
    assert container.wait(timeout=60)["StatusCode"] == 2
    assert "readable by the build user" in container.logs().decode()


def test_sigterm_stops_cleanly_and_a_restart_reuses_the_buildarea(client, image, run):
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()}, **HARDENED)
    wait_for_log(container, "Scheduling retry")
    started = time.monotonic()
    container.stop(timeout=10)
    seconds = time.monotonic() - started
    state = client.api.inspect_container(container.id)["State"]
    assert seconds < 10 and state["ExitCode"] == 0, (seconds, state)
    assert "Server Shut Down." in container.logs().decode()

    container.start()  # same container, same /buildarea volume
    deadline = time.monotonic() + 60
    while container.logs().decode().count("Starting Worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    logs = container.logs().decode()
    assert logs.count("Starting Worker") == 2, logs[-2000:]
    assert "Another twistd server" not in logs


def test_sigkill_then_restart_joins_again(client, image, run):
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()}, **HARDENED)
    wait_for_log(container, "Starting Worker")
    container.kill("SIGKILL")
    container.wait(timeout=30)
    container.start()
    deadline = time.monotonic() + 60
    while container.logs().decode().count("Starting Worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    logs = container.logs().decode()
    assert logs.count("Starting Worker") == 2 and "Another twistd server" not in logs


def test_a_bind_mount_the_image_did_not_create_is_refused_not_taken_over(client, image, run, tmp_path):
    """Even with CHOWN granted, the worker never chowns a host tree: one line, exit 2, ownership unchanged."""
    area = tmp_path / "srv"
    (area / "data").mkdir(parents=True)
    (area / "data" / "precious").write_text("the host's own file")
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()},
                    volumes={str(area): {"bind": "/buildarea", "mode": "rw"}},
                    **{**HARDENED, "cap_add": ["CHOWN", *HARDENED["cap_add"]]})
    assert container.wait(timeout=60)["StatusCode"] == 2
    lines = container.logs().decode().strip().splitlines()
    assert len(lines) == 1 and "/buildarea belongs to uid 0, not to the build user buildbot" in lines[0], lines
    assert "named volume" in lines[0] and "chown -R" in lines[0]
    for path in (area, area / "data", area / "data" / "precious"):
        assert path.stat().st_uid == 0, path


def test_a_bind_mount_the_owner_handed_over_is_used(client, image, run, tmp_path):
    _, uid = image_build_user(client, image)
    area = tmp_path / "buildarea"
    area.mkdir()
    os.chown(area, uid, uid)  # what the refusal tells the owner to do
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()},
                    volumes={str(area): {"bind": "/buildarea", "mode": "rw"}}, **HARDENED)
    wait_for_log(container, "Starting Worker")
    assert (area / "info" / "admin").read_text().startswith("Jane Owner")


def test_the_image_is_of_its_architecture(client, image, live_project):
    """Its config names the architecture it was built for, and its programs run as that machine (natively or
    through QEMU): .ci/run takes the arm64 image through this module's contract tests too."""
    row = live_project.one(TEST_ROW, TEST_ARCH)
    attrs = client.api.inspect_image(image.image_id)
    assert (attrs["Architecture"], attrs.get("Variant", "")) == (row.arch, row.architecture.variant)
    assert attrs["Config"]["Labels"]["io.fleetbake.arch"] == row.arch
    out = client.containers.run(image.image_id, ["sh", "-c", "uname -m; python3 -c 'import sys; print(sys.byteorder)'"],
                                entrypoint=[], remove=True).decode().split()
    assert out == [row.architecture.machine, row.architecture.byteorder]


# What info/host and hostinfo say of each row's system (FLEETBAKE_TEST_ROW).
ROW_OS = {"debian-12": "Debian GNU/Linux 12", "debian-13": "Debian GNU/Linux 13"}


WORKER_VENV_LISTING = (
    "import importlib.metadata as m, json, os\n"
    "print(json.dumps([[d.metadata['Name'].lower().replace('_', '-'), d.version, os.path.realpath(str(d.locate_file('')))]\n"
    "                  for d in m.distributions()]))\n"
    "import site, sys; print(json.dumps([site.ENABLE_USER_SITE, sys.flags.no_user_site]))\n"
    # What buildbot-worker imports for either protocol: an autobahn newer than zope.interface allows fails here.
    "import buildbot_worker.bot, buildbot_worker.pb, buildbot_worker.msgpack, autobahn.twisted.websocket\n"
    # No test suites, and .pyc files that stay valid whatever the sources' times (checked-hash: flags 3).
    "import glob; top = '/opt/buildbot-worker/lib/python3*/site-packages'\n"
    "print(json.dumps([glob.glob(top + '/*/**/test', recursive=True) + glob.glob(top + '/*/**/tests', recursive=True),\n"
    "                  [p for p in glob.glob(top + '/**/*.pyc', recursive=True) if open(p, 'rb').read(8)[4:8] != b'\\3\\0\\0\\0'],\n"
    "                  len(glob.glob(top + '/**/*.pyc', recursive=True))]))\n"
)


def test_the_worker_venv_is_the_pinned_set_with_the_distributions_compiled_packages(client, image, live_project):
    """The same worker on every architecture (.ci/run runs this on arm64 too): its venv holds buildbot-worker and
    exactly the pure-Python pins of images/common/worker-requirements.txt it needs, and the compiled dependencies
    are Debian's, which exist for every architecture where PyPI's wheels do not. The venv sees Debian's packages but
    not the user's site (in the buildarea, which build steps write), as --system-site-packages would make it. It has
    neither pip nor its dependencies' test suites, and its .pyc files are valid (else each start compiles again)."""
    pins = {}
    text = (paths.IMAGES / "common" / families.WORKER_REQUIREMENTS).read_text()
    for line in text.split("# The AMI's extras", 1)[0].splitlines():  # the AMI's boto3 and its own: not here
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    out = client.containers.run(image.image_id, ["/opt/buildbot-worker/bin/python", "-c", WORKER_VENV_LISTING],
                                entrypoint=[], remove=True, user="buildbot").decode().splitlines()
    found, user_site, (tests, stale, compiled) = json.loads(out[0]), json.loads(out[1]), json.loads(out[2])
    assert user_site == [False, 0]
    assert tests == [] and stale == [] and compiled > 500, (tests, stale, compiled)
    venv = "/opt/buildbot-worker/"
    in_venv = {name: version for name, version, where in found if where.startswith(venv)}  # no pip either
    assert len(in_venv) == len([name for name, _, where in found if where.startswith(venv)])
    assert in_venv == {**pins, "buildbot-worker": live_project.rows[TEST_ROW].spec.worker_version}
    for compiled in ("cryptography", "msgpack", "zope.interface"):
        # Debian's cryptography has both an .egg-info and a .dist-info: one place all the same.
        assert {where for name, _, where in found if name == compiled} == {"/usr/lib/python3/dist-packages"}, compiled


def test_a_build_step_cannot_forge_health(client, image, run):
    """The worker is not connected (nothing listens on port 9); the build user tries every way to say otherwise."""
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()}, **HARDENED)
    wait_for_log(container, "Scheduling retry")
    user = build_user(client, image)
    assert container.exec_run([*families.ENTRYPOINT, "health"]).exit_code == 1
    forge = (
        "import glob, os\n"
        "for path in ['/tmp/fleetbake/health', '/tmp/fleetbake/health.new', '/tmp/fleetbake-worker.health',\n"
        "             *glob.glob('/proc/[0-9]*/fd/*')]:\n"
        "    try:\n"
        "        with open(path, 'w') as f: f.write('connected forged\\n')\n"
        "        print('WROTE', path)\n"
        "    except OSError as e: print('DENIED', path, e.strerror)\n"
        "for op in (lambda: os.rename('/tmp/fleetbake', '/tmp/gone'), lambda: os.rmdir('/tmp/fleetbake'),\n"
        "           lambda: os.symlink('/tmp/mine', '/tmp/fleetbake/health')):\n"
        "    try: op(); print('CHANGED /tmp/fleetbake')\n"
        "    except OSError as e: print('DENIED', e.strerror)\n"
    )
    _, out = sh(container, ["python3", "-c", forge], user=user)
    assert "DENIED /tmp/fleetbake/health Permission denied" in out, out
    assert "CHANGED" not in out, out
    assert not [line for line in out.splitlines() if line.startswith("WROTE") and "/proc/" in line
                and not line.endswith(("/fd/0", "/fd/1", "/fd/2"))], out  # only its own descriptors
    code, state = container.exec_run([*families.ENTRYPOINT, "health"])
    assert code == 1 and b"forged" not in state, state


def test_image_reports_its_own_build_dependencies(client, image):
    """Every package of the row is installed (dpkg), and nothing pulls recommends in: no automatically installed
    package is there only because another one recommends it (apt would autoremove it once Recommends no longer
    count)."""
    out = client.containers.run(image.image_id, ["sh", "-c", "dpkg-query -W -f '${Package}\\n'"], remove=True).decode()
    installed = set(out.split())
    from fleetbake.pipeline import matrix as m
    from conftest import ROOT

    row = m.load(ROOT / "matrix.yml").rows[TEST_ROW]
    assert set(row.all_packages) - installed == set()
    assert {"tini", "python3-venv", "ca-certificates"} <= installed
    script = ("apt-mark showauto | wc -l; apt-get --simulate -o APT::AutoRemove::RecommendsImportant=false "
              "-o APT::AutoRemove::SuggestsImportant=false autoremove | sed -n 's/^Remv \\([^ ]*\\) .*/\\1/p'")
    auto, *kept_by_recommends = client.containers.run(image.image_id, ["sh", "-c", script], remove=True).decode().split()
    assert int(auto) > 100  # apt knows which packages came in as dependencies: the check below can see them
    assert kept_by_recommends == []


def test_preflight_runs_inside_the_image(client, image):
    """No network: every network probe (DNS, the master, each of the devguide's outbound ports) fails, and nothing
    leaves the container; the local checks still run."""
    from fleetbake.worker.preflight import DEVGUIDE_PORTS

    container = client.containers.run(image.image_id, ["preflight", "--timeout", "2"], network_mode="none",
                                      environment={"BUILDMASTER": "127.0.0.1:1"}, detach=True)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 1
        out = container.logs().decode()
    finally:
        container.remove(force=True)
    network = [line for line in out.splitlines() if line.split()[1:2] in (["dns"], ["master"], ["outbound"])]
    assert len(network) == 2 + len(DEVGUIDE_PORTS), out
    assert all(line.split()[0] in ("fail", "warn") for line in network), out
    assert "fail  master 127.0.0.1:1" in out and "ok    cpus" in out and "at /buildarea" in out


def test_hostinfo_says_what_info_host_will_say(client, image, run):
    printed = client.containers.run(image.image_id, ["hostinfo"], remove=True).decode()
    assert f"OS: {ROW_OS[TEST_ROW]}" in printed and "CPU: " in printed and "buildbot-worker: 4.3.0" in printed
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()}, **HARDENED)
    wait_for_log(container, "Starting Worker")
    _, written = sh(container, ["cat", "/buildarea/info/host"], user=build_user(client, image))
    # Identical but for the memory line: the hardened run has a container limit.
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("Memory:")]  # noqa: E731
    assert strip(written) == strip(printed)


def test_worker_host_info_replaces_the_generated_text(client, image, run):
    custom = "Rack 4, donated by Example Corp\nAMD EPYC, ECC memory"
    printed = client.containers.run(image.image_id, ["hostinfo"], environment={"WORKER_HOST_INFO": custom},
                                    remove=True).decode()
    assert printed == custom + "\n"
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password(),
                                                 "WORKER_HOST_INFO": custom}, **HARDENED)
    wait_for_log(container, "Starting Worker")
    assert sh(container, ["cat", "/buildarea/info/host"], user=build_user(client, image))[1] == custom + "\n"


def test_without_cap_kill_the_worker_is_not_started(client, image, run):
    """The root supervisor could not stop the build user's worker: one line, exit 2, before anything starts."""
    container = run(image.image_id, environment={**WORKER_ENV, "WORKERPASS": unique_password()},
                    **{**HARDENED, "cap_add": ["SETUID", "SETGID"]})
    assert container.wait(timeout=60)["StatusCode"] == 2
    assert container.logs().decode().strip().splitlines() == [
        "fleetbake-worker: error: no CAP_KILL: add --cap-add KILL, so that docker stop can reach the worker"]
