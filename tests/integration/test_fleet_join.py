"""Joining a real Buildbot master (PyPI buildbot, same major version as the worker).

The master listens on 127.0.0.1 only; workers run with --network host, so all
traffic stays on loopback.
"""

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from fleetbake.devtools import master as master_mod
from fleetbake.pipeline import families
from fleetbake.operate.buildbot_api import BuildbotApi, FAILURE, SUCCESS
from integration.conftest import build_user, running_master, unique_password, wait_connected, wait_for_log

# Free ports: `invoke test` may run this module's two groups at once, each with its own master.
PORTS = dict(pb_port=free_port(), www_port=free_port(), git_port=free_port())
SMOKE = "test_sys test_bz2"
# The tests that compile CPython run on one worker, the ones that mostly wait (restarts, health intervals) on
# another, when there are two.
BUILDS = pytest.mark.xdist_group("test_fleet_join-builds")
FAULTS = pytest.mark.xdist_group("test_fleet_join-faults")


@pytest.fixture(scope="module")
def master(tmp_path_factory, live_project):
    workers = {"join-env": unique_password(), "join-file": unique_password(), "join-faults": unique_password()}
    with running_master(tmp_path_factory, live_project, workers, test_timeout=900, **PORTS) as info:
        yield info


@pytest.fixture
def api(master):
    return BuildbotApi(master.url)


def start_worker(run, image, master, name, password=None, use_file=False, **kwargs):
    # WORKER_MIN_FREE_GB=1: these tests are about joining and health, not about the test machine's free disk
    # (below the default 10 GB the worker would report unhealthy); tests/integration/test_disk.py is.
    env = {"WORKERNAME": name, "BUILDMASTER": f"127.0.0.1:{master.pb_port}", "MAXRETRIES": "none",
           "WORKER_ADMIN": "Jane Owner <jane@example.org>", "BUILDBOT_TESTOPTS": SMOKE, "WORKER_MIN_FREE_GB": "1",
           **kwargs.pop("environment", {})}
    volumes = kwargs.pop("volumes", {})
    if use_file:
        env["WORKERPASS_FILE"] = "/run/secrets/workerpass"
        volumes[str(master.secret_file(name))] = {"bind": "/run/secrets/workerpass", "mode": "ro"}
    else:
        env["WORKERPASS"] = password or master.workers[name]
    return run(image.image_id, network_mode="host", environment=env, volumes=volumes, **kwargs)


def build(api, builder, timeout=1500):
    builderid = api.builder_id(builder)
    after = api.last_build_number(builderid)
    api.force(builder)
    result = api.wait_for_build(builderid, after, timeout)
    return result, api.step_logs(result["buildid"])


@BUILDS
def test_worker_joins_runs_the_fleet_build_and_uploads_results(api, master, image, run):
    started = time.monotonic()
    start_worker(run, image, master, "join-env")
    joined = wait_connected(api, "join-env")
    info = api.worker("join-env")["workerinfo"]
    assert info["admin"].strip() == "Jane Owner <jane@example.org>"
    assert "Debian GNU/Linux 12" in info["host"] and info["version"] == "4.3.0"

    result, logs = build(api, "join-env-pydebug")
    assert result["results"] == SUCCESS, {k: v[-1500:] for k, v in logs.items()}
    # The worker's shell expanded ${BUILDBOT_TESTOPTS} (the owner's variable) into the runner's arguments: make
    # echoes the command it runs, and the tests run are those two modules' alone.
    runner = [line for line in logs["test"].splitlines() if "--slow-ci" in line]
    assert [line for line in runner if line.rstrip().endswith(f"-j2 --junit-xml test-results.xml {SMOKE}")], runner
    uploads = list((master.directory / "uploads").glob("join-env-*-test-results.xml"))
    assert uploads, "test-results.xml was not uploaded"
    cases = list(ET.parse(uploads[-1]).getroot().iter("testcase"))
    assert len(cases) > 50
    modules = {case.get("name").split(".")[1] for case in cases}  # regrtest names them test.<module>.<class>...
    assert modules == set(SMOKE.split()), modules
    print(f"\nfleet-join: connected in {joined:.1f}s, whole test {time.monotonic() - started:.0f}s")


@FAULTS
@pytest.mark.parametrize("use_file", [False, True], ids=["WORKERPASS", "WORKERPASS_FILE"])
def test_a_build_step_hunting_for_the_password_finds_nothing(api, master, image, run, use_file):
    name = "join-file" if use_file else "join-env"
    start_worker(run, image, master, name, use_file=use_file)
    wait_connected(api, name)
    result, logs = build(api, f"{name}-secret-hunt", timeout=300)
    hunt = logs["hunt for the password"]
    assert result["results"] == SUCCESS, hunt
    assert "NOTHING" in hunt and "FOUND" not in hunt
    assert "/mem" in hunt.split("DENIED", 1)[1]  # the worker process is non-dumpable


def health_status(client, container):
    return client.api.inspect_container(container.id)["State"]["Health"]["Status"]


def wait_health(client, container, status, timeout=60):
    deadline = time.monotonic() + timeout
    while health_status(client, container) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        time.sleep(0.5)


@FAULTS
def test_a_build_step_can_neither_forge_health_nor_escape_the_umask(api, master, image, run, client):
    container = start_worker(run, image, master, "join-faults", environment={"UMASK": "027"},
                             healthcheck={"interval": 1_000_000_000, "timeout": 5_000_000_000, "retries": 1})
    wait_connected(api, "join-faults")
    wait_health(client, container, "healthy")
    result, logs = build(api, "join-faults-secret-hunt", timeout=300)
    assert result["results"] == SUCCESS, logs
    forge = logs["forge health"]
    assert "DENIED /tmp/fleetbake/health Permission denied" in forge, forge
    assert "WROTE /tmp/fleetbake/" not in forge and "CHANGED" not in forge, forge
    assert "forger left running" in forge
    assert "o640" in logs["umask"].splitlines(), logs["umask"]  # stdout "640": UMASK=027 reached the build step

    # The master goes away while the forger keeps writing "connected" wherever it can.
    master_mod.stop_master_only(directory=master.directory)
    try:
        wait_health(client, container, "unhealthy")
        for _ in range(6):
            time.sleep(1)
            code, out = container.exec_run([*families.ENTRYPOINT, "health"])
            assert code == 1 and b"forged" not in out, out
            assert health_status(client, container) == "unhealthy"
    finally:
        master_mod.start_again(directory=master.directory)
    wait_connected(api, "join-faults", timeout=180)
    wait_health(client, container, "healthy")

    # A build step's leftover can freeze the worker (same uid): its last "connected" goes stale.
    find = "import os; print(next(p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{p}/comm').read() == 'twistd\\n'))"
    twistd = container.exec_run(["python3", "-c", find]).output.decode().strip()
    signal = "import os, signal, sys; os.kill(int(sys.argv[1]), getattr(signal, sys.argv[2]))"
    user, _ = build_user(client, image)
    assert container.exec_run(["python3", "-c", signal, twistd, "SIGSTOP"], user=user).exit_code == 0
    try:
        wait_health(client, container, "unhealthy", timeout=90)
        code, out = container.exec_run([*families.ENTRYPOINT, "health"])
        assert code == 1 and b"no report from the worker" in out, out
    finally:
        container.exec_run(["python3", "-c", signal, twistd, "SIGCONT"], user=user)
    wait_health(client, container, "healthy", timeout=180)


@FAULTS
def test_wrong_password_is_refused_in_words_an_owner_understands(api, master, image, run):
    container = start_worker(run, image, master, "join-faults", password="not-the-password")
    wait_for_log(container, "unauthorized login; check worker name and password")
    assert not api.connected("join-faults")
    code, out = container.exec_run([*families.ENTRYPOINT, "health"])
    assert code == 1 and b"connected" not in out.replace(b"disconnected", b"")


@FAULTS
def test_faults_restart_kill_term_and_health(api, master, image, run, client):
    container = start_worker(run, image, master, "join-faults",
                             healthcheck={"interval": 1_000_000_000, "timeout": 5_000_000_000, "retries": 1})
    wait_connected(api, "join-faults")
    deadline = time.monotonic() + 60
    while client.api.inspect_container(container.id)["State"]["Health"]["Status"] != "healthy":
        assert time.monotonic() < deadline, "never healthy"
        time.sleep(0.5)

    master_mod.stop_master_only(directory=master.directory)
    deadline = time.monotonic() + 60
    while client.api.inspect_container(container.id)["State"]["Health"]["Status"] != "unhealthy":
        assert time.monotonic() < deadline, "still healthy with the master gone"
        time.sleep(0.5)
    restarted = time.monotonic()
    master_mod.start_again(directory=master.directory)
    reconnect = time.monotonic() - restarted
    reconnect += wait_connected(api, "join-faults", timeout=180)
    print(f"\nreconnect after master restart: {reconnect:.1f}s")

    container.kill("SIGKILL")
    container.wait(timeout=30)
    container.start()
    wait_connected(api, "join-faults", timeout=120)
    # The master lists the worker as connected while the login is still going on (it asks the worker for its info
    # first); the worker logs "Connected to buildmaster" when the login returns, a moment later: wait for the line.
    listed = time.monotonic()
    # The first run was killed maybe before it logged its reconnect, so count the lines of the second run only.
    logs = wait_for_log(container, "Connected to buildmaster", timeout=30, after=("Starting Worker --", 2))
    print(f"'Connected to buildmaster' {time.monotonic() - listed:.2f}s after the master listed the worker")
    assert "Another twistd server" not in logs

    started = time.monotonic()
    container.stop(timeout=10)
    stopped = time.monotonic() - started
    assert stopped < 10 and client.api.inspect_container(container.id)["State"]["ExitCode"] == 0
    print(f"SIGTERM stop: {stopped:.1f}s")
    wait_connected(api, "join-faults", connected=False, timeout=30)


@FAULTS
def test_master_unreachable_at_start_retries_and_logs_each_attempt(image, run):
    container = run(image.image_id, network_mode="host",
                    environment={"WORKERNAME": "w", "WORKERPASS": "p", "BUILDMASTER": "127.0.0.1:19", "MAXRETRIES": "3"})
    logs = wait_for_log(container, "Scheduling retry 2 to connect", timeout=60)
    assert "fleetbake: worker w -> 127.0.0.1:19" in logs
    assert container.wait(timeout=120)["StatusCode"] == 0  # gave up after 3: the restart policy takes over
    assert "Scheduling retry 3 to connect" in container.logs().decode()


@BUILDS
def test_a_full_buildarea_fails_the_build_not_the_worker(api, master, image, run, client):
    """The build fails; the worker stays connected, and is healthy again once its disk watch has removed what the
    failed build left (at once if git cleaned up after itself). A threshold of 5 MB: the default 10 GB is more than
    this 20 MB buildarea, which the worker refuses."""
    _, uid = build_user(client, image)
    container = start_worker(run, image, master, "join-faults",
                             environment={"WORKER_MIN_FREE_GB": "0.005", "WORKER_DISK_INTERVAL": "1"},
                             tmpfs={"/buildarea": f"rw,size=20m,uid={uid},gid={uid},mode=0750"})
    wait_connected(api, "join-faults")
    result, logs = build(api, "join-faults-pydebug", timeout=300)
    assert result["results"] == FAILURE
    assert "No space left on device" in "".join(logs.values())
    assert api.connected("join-faults")
    deadline = time.monotonic() + 60
    while container.exec_run([*families.ENTRYPOINT, "health"])[0] != 0:
        assert time.monotonic() < deadline, container.exec_run([*families.ENTRYPOINT, "health"]).output
        time.sleep(1)


@BUILDS
def test_status_reports_and_notifies(master, image, run, api, tmp_path):
    start_worker(run, image, master, "join-env")
    wait_connected(api, "join-env")
    notified = tmp_path / "notified"
    notify = tmp_path / "notify.sh"
    notify.write_text(f'#!/bin/sh\necho "$1" >> {notified}\n')
    notify.chmod(0o755)

    def status(*args):
        return subprocess.run([sys.executable, "-m", "invoke", "status", "--master", master.url, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    online = status("--worker", "join-env")
    assert online.returncode == 0 and "join-env" in online.stdout and "online" in online.stdout
    offline = status("--notify-cmd", str(notify))
    assert offline.returncode == 1 and "OFFLINE" in offline.stdout
    assert set(notified.read_text().split()) == {"join-file", "join-faults"}
    unknown = status("--worker", "nobody")
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("error:") and "unknown worker" in unknown.stderr


@BUILDS
def test_a_plain_host_worker_from_invoke_service_joins(api, master, tmp_path):
    """The service files' buildbot.tac, run by twistd on this host as the unit would run it."""
    from fleetbake.operate import service

    venv = Path(sys.executable).parent.parent
    s = service.settings("linux", "join-file", master=f"127.0.0.1:{master.pb_port}", admin="Plain Host <p@x>",
                         buildarea=str(tmp_path), venv=str(venv), password_file=str(master.secret_file("join-file")))
    files = service.write(s, tmp_path)
    worker = subprocess.Popen([str(venv / "bin" / "twistd"), "--nodaemon", "--pidfile=", "--logfile=-",
                               f"--python={files['buildbot.tac']}"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_connected(api, "join-file", timeout=60)
        assert api.worker("join-file")["workerinfo"]["admin"].strip() == "Plain Host <p@x>"
    finally:
        worker.terminate()
        assert worker.wait(timeout=15) in (0, -15)  # twistd re-raises SIGTERM; systemd counts that as clean



def files_holding(stream, needle: bytes) -> list[str]:
    """The members of a tar stream (docker export; docker save, whose layer.tar members hold their files' bytes as
    they are) whose bytes hold the needle."""
    import tarfile

    from integration.test_packer_image import _Stream

    with tarfile.open(fileobj=_Stream(stream), mode="r|") as archive:
        return [member.name for member in archive if member.isfile() and needle in archive.extractfile(member).read()]


@BUILDS
@pytest.mark.parametrize("use_file", [True, False], ids=["WORKERPASS_FILE", "WORKERPASS"])
def test_the_password_is_in_no_layer_of_a_worker_that_ran(api, master, image, run, client, use_file):
    """A worker that logged in with a known password, then stopped: no file of its writable layer (`docker diff`,
    `docker export`), of its buildarea volume, or of a `docker commit` of it holds the password. Run without
    --read-only, as an owner might: with it, the writable layer would be empty by construction."""
    name = "join-file" if use_file else "join-env"
    password = master.workers[name].encode()
    container = start_worker(run, image, master, name, use_file=use_file)
    wait_connected(api, name)
    container.stop(timeout=30)
    wait_connected(api, name, connected=False, timeout=30)

    changed = [c["Path"] for c in client.api.diff(container.id) or []]
    assert files_holding(container.export(chunk_size=1 << 20), password) == [], changed

    [area] = [m for m in client.api.inspect_container(container.id)["Mounts"] if m["Destination"] == "/buildarea"]
    written = [p for p in Path(area["Source"]).rglob("*") if p.is_file()]
    assert {"admin", "host"} <= {p.name for p in written}  # the worker did write there
    assert [str(p) for p in written if password in p.read_bytes()] == []

    committed = container.commit(repository="fleetbake-test/committed-worker", tag=name)
    try:
        holding = files_holding(committed.save(named=False, chunk_size=1 << 20), password)
        assert [member for member in holding if member.endswith("layer.tar")] == []
        # -e WORKERPASS is in the container's configuration, which docker commit copies into the image's config
        # (the README says -e shows in docker inspect); WORKERPASS_FILE keeps it out.
        assert (password.decode() in " ".join(committed.attrs["Config"]["Env"])) is (not use_file)
        assert bool(holding) is (not use_file), holding  # the config (<id>.json) and nothing else
    finally:
        client.images.remove(committed.id, force=True, noprune=True)  # never its parent
