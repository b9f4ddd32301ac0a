"""The worker's disk watch, against a real master: a build step fills a small tmpfs buildarea.

The worker turns unhealthy with the reason (its HEALTHCHECK, `health` and `preflight` say it), keeps the running
build's files, removes an idle builder directory's leftovers at once and the filling build's own files once that
build is over, and is healthy again. The master listens on 127.0.0.1 only; the worker runs with --network host.
"""

import time

import pytest

from fleetbake.operate.buildbot_api import SUCCESS, BuildbotApi
from fleetbake.pipeline import families
from fleetbake.worker.disk import Settings
from integration.conftest import build_user, running_master, unique_password, wait_connected

pytestmark = pytest.mark.docker

PORTS = dict(pb_port=29989, www_port=28010, git_port=29418)
NAME = "disk-fill"
BUILDAREA_MB = 64
THRESHOLD_GB = "0.03"  # about 31 MB of the 64: fill_disk.py leaves half of it free
INTERVAL = 1  # seconds between checks
IDLE = Settings(1.0, INTERVAL).idle_seconds  # a directory is idle after 5 checks, and never before 60 s


@pytest.fixture(scope="module")
def master(tmp_path_factory, live_project):
    with running_master(tmp_path_factory, live_project, {NAME: unique_password()}, test_timeout=300, **PORTS) as info:
        yield info


def sh(container, command, user):
    code, out = container.exec_run(command, user=user)
    return code, out.decode(errors="replace")


def health(container):
    code, out = container.exec_run([*families.ENTRYPOINT, "health"])
    return code, out.decode(errors="replace")


def health_status(client, container):
    return client.api.inspect_container(container.id)["State"]["Health"]["Status"]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.5)


def test_a_build_filling_the_buildarea_turns_the_worker_unhealthy_until_it_frees_what_it_may(master, image, run, client):
    user, uid = build_user(client, image)
    container = run(
        image.image_id, network_mode="host",
        environment={"WORKERNAME": NAME, "WORKERPASS": master.workers[NAME], "BUILDMASTER": f"127.0.0.1:{master.pb_port}",
                     "MAXRETRIES": "none", "WORKER_ADMIN": "Jane Owner <jane@example.org>",
                     "WORKER_MIN_FREE_GB": THRESHOLD_GB, "WORKER_DISK_INTERVAL": str(INTERVAL)},
        # The README's hardened run line, with the buildarea on a small tmpfs given to the build user.
        cap_drop=["ALL"], cap_add=["SETUID", "SETGID", "KILL"], security_opt=["no-new-privileges"], read_only=True,
        tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=64m",
               "/buildarea": f"rw,nosuid,nodev,size={BUILDAREA_MB}m,uid={uid},gid={uid},mode=0750"},
        healthcheck={"interval": 1_000_000_000, "timeout": 5_000_000_000, "retries": 1},
    )
    api = BuildbotApi(master.url)
    wait_connected(api, NAME)
    wait_until(lambda: health_status(client, container) == "healthy", 60, "healthy at first")

    # What an earlier build left in another builder's directory, and an owner's file at the top of the buildarea.
    leftover = f"/buildarea/{NAME}-pydebug/build/leftover.bin"
    code, out = sh(container, ["sh", "-c", f"mkdir -p /buildarea/{NAME}-pydebug/build && "
                                           f"head -c 2097152 /dev/zero > {leftover} && echo mine > /buildarea/notes.txt"],
                   user)
    assert code == 0, out
    time.sleep(IDLE + 2)  # the leftover is idle now

    builder = f"{NAME}-fill-disk"
    builderid = api.builder_id(builder)
    after = api.last_build_number(builderid)
    api.force(builder)
    fill = f"/buildarea/{builder}/build/fill.bin"

    # While the build runs (fill_disk.py stays 40 s in its directory): unhealthy, and why.
    wait_until(lambda: health_status(client, container) == "unhealthy", 60, "unhealthy once the disk is full")
    code, out = health(container)
    assert code == 1 and "worker: low disk: " in out, out
    assert f"GB free at /buildarea, below WORKER_MIN_FREE_GB={THRESHOLD_GB} GB (worker connected 127.0.0.1:" in out, out
    assert "low disk: " in client.api.inspect_container(container.id)["State"]["Health"]["Log"][-1]["Output"]
    # It frees what it may: the idle leftover goes; the running build's file stays, however many checks pass.
    wait_until(lambda: sh(container, ["test", "-e", leftover], user)[0] != 0, 30, "the idle leftover removed")
    time.sleep(3 * INTERVAL)
    assert sh(container, ["test", "-f", fill], user)[0] == 0, "the running build's file was removed"
    assert health(container)[0] == 1  # 2 MB back is not enough
    # `preflight` (here in the same container, to see the same buildarea) names it too.
    code, out = container.exec_run([*families.ENTRYPOINT, "preflight", "--timeout", "2"])
    out = out.decode(errors="replace")
    assert code == 1, out
    [line] = [line for line in out.splitlines() if line.split()[:2] == ["fail", "disk"]]
    assert f"GB free at /buildarea: below WORKER_MIN_FREE_GB={THRESHOLD_GB} GB" in line, out

    result = api.wait_for_build(builderid, after, timeout=300)
    assert result["results"] == SUCCESS, result

    # The build is over: its directory is idle, emptied, and the worker is healthy again.
    wait_until(lambda: health_status(client, container) == "healthy", IDLE + 60, "healthy again after the cleanup")
    assert health(container)[0] == 0
    assert sh(container, ["test", "-e", fill], user)[0] != 0
    assert sh(container, ["test", "-d", f"/buildarea/{builder}"], user)[0] == 0  # the directory itself stays
    assert sh(container, ["cat", "/buildarea/info/admin"], user)[1].startswith("Jane Owner")  # info/ never goes
    assert sh(container, ["cat", "/buildarea/notes.txt"], user)[1] == "mine\n"  # nor a file at the top
    logs = container.logs().decode(errors="replace")
    assert logs.count("fleetbake-worker: warning: low disk: ") == 1, logs[-3000:]  # once for the episode
    assert f"fleetbake-worker: disk: removed the contents of {NAME}-pydebug/ in /buildarea" in logs
    assert f"fleetbake-worker: disk: removed the contents of {builder}/ in /buildarea" in logs
    assert logs.count("fleetbake-worker: disk space is back: ") == 1
    assert logs.index(f"removed the contents of {NAME}-pydebug/") < logs.index(f"removed the contents of {builder}/")
    assert api.connected(NAME)
