"""ccache in the real debian-12 image: off without a volume, on with a fresh named one under the hardened run line,
off with a warning on a directory the build user does not own, and a warm `invoke verify --ccache` that hits."""

import json
import uuid

import docker
import pytest

from conftest import MINIMAL
from fleetbake.pipeline import matrix, verify
from fleetbake.worker import ccache
from integration.conftest import build_user, wait_for_log

pytestmark = pytest.mark.docker

# The README's run line.
HARDENED = dict(cap_drop=["ALL"], cap_add=["SETUID", "SETGID", "KILL"], security_opt=["no-new-privileges"],
                read_only=True, tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=256m"}, network_mode="none")
WORKER_ENV = {"WORKERNAME": "ccache-probe", "WORKERPASS": "not-a-real-password", "BUILDMASTER": "127.0.0.1:1",
              "MAXRETRIES": "1"}
COMPILE_TWICE = (
    "printf 'int twice(int x) { return 2 * x; }\\n' > /tmp/a.c && sleep 2 && cd /tmp && "
    "gcc -c a.c -o a.o && gcc -c a.c -o b.o && clang -c a.c -o c.o && clang -c a.c -o d.o && "
    "echo PATH=$PATH && ccache --print-stats && "
    # A build step lifting the bound writes the cache's own ccache.conf; the environment still wins.
    "ccache -M 0 >/dev/null && ccache --show-config | grep -w max_size"
)


@pytest.fixture
def volume(client):
    """A named volume of this test's own, removed afterwards with the containers that used it."""
    name = f"fleetbake-test-ccache-{uuid.uuid4().hex[:12]}"
    yield name
    for container in client.containers.list(all=True, filters={"volume": name}):
        container.remove(force=True)
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


def output(container) -> tuple[int, str]:
    status = container.wait(timeout=300)["StatusCode"]
    return status, container.logs().decode(errors="replace")


def test_the_image_wraps_gcc_and_clang_and_builds_see_no_ccache_without_a_volume(image, run):
    container = run(image.image_id, command=["sh", "-c", "ls /usr/lib/ccache; echo PATH=$PATH; echo DIR=${CCACHE_DIR-unset}; "
                                                "cat /etc/ccache.conf; stat -c '%U %a' /ccache"], **HARDENED)
    status, out = output(container)
    assert status == 0, out
    wrappers = set(out.split("PATH=", 1)[0].split())
    assert {"cc", "gcc", "c++", "g++", "clang", "clang++"} <= wrappers, out
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" in out and "DIR=unset" in out
    assert "cache_dir = /ccache" in out and "temporary_dir = /ccache/tmp" in out and "buildbot 750" in out


def test_a_fresh_named_volume_caches_gcc_and_clang_under_the_hardened_run_line(image, run, client, volume):
    container = run(image.image_id, command=["sh", "-c", COMPILE_TWICE], volumes={volume: {"bind": "/ccache", "mode": "rw"}},
                    **HARDENED)
    status, out = output(container)
    assert status == 0, out
    assert "PATH=/usr/lib/ccache:/usr/local/sbin:" in out, out
    stats = ccache.parse_stats(out)
    assert stats["hits"] >= 2 and stats["misses"] >= 2, out  # the second gcc and the second clang compile hit
    assert "(environment) max_size = 5.0G" in out, out  # not the 0 the step wrote
    _, uid = build_user(client, image)
    owner = client.containers.run(image.image_id, ["stat", "-c", "%u", "/ccache"], remove=True,
                                  volumes={volume: {"bind": "/ccache", "mode": "ro"}})
    assert int(owner) == uid  # Docker gave the new volume the image's owner


def test_the_worker_says_on_or_off_in_one_line(image, run, volume, tmp_path):
    on = run(image.image_id, environment=WORKER_ENV, volumes={volume: {"bind": "/ccache", "mode": "rw"}}, **HARDENED)
    wait_for_log(on, "fleetbake-worker: ccache on: /ccache (a mounted volume, CCACHE_MAXSIZE=5G); compilers through "
                     "/usr/lib/ccache")
    off = run(image.image_id, environment=WORKER_ENV, **HARDENED)
    wait_for_log(off, "fleetbake-worker: ccache off: /ccache is not a mounted volume")
    foreign = tmp_path / "root-owned"
    foreign.mkdir(mode=0o755)  # the test runs as root: a host directory the build user does not own
    warned = run(image.image_id, environment=WORKER_ENV, volumes={str(foreign): {"bind": "/ccache", "mode": "rw"}},
                 **HARDENED)
    wait_for_log(warned, "fleetbake-worker: warning: ccache off: /ccache is mounted but belongs to uid 0")
    bad = run(image.image_id, environment={**WORKER_ENV, "CCACHE_MAXSIZE": "0"}, **HARDENED)
    assert bad.wait(timeout=60)["StatusCode"] == 2
    assert "CCACHE_MAXSIZE='0': 0 means no limit" in bad.logs().decode()


def test_verify_with_ccache_twice_is_warm_the_second_time(live_project, image, volume, build_dir, write_matrix):
    """pydebug with test_sys alone (the compile is the point), on a fresh volume, then again on the same one."""
    m = matrix.load(write_matrix(MINIMAL))
    row, source = m.rows["debian-12"], live_project.rows["debian-12"].spec.cpython
    [cold] = verify.verify(m, row, ["pydebug"], source, image=image.image_id, ccache_volume_name=volume, log=print)
    assert cold.passed, cold.reason
    cold_record = json.loads(cold.record.read_text())  # the warm run writes the same record file
    [warm] = verify.verify(m, row, ["pydebug"], source, image=image.image_id, ccache_volume_name=volume, log=print)
    assert warm.passed, warm.reason
    warm_record = json.loads(warm.record.read_text())
    assert cold_record["ccache"] is True and warm_record["ccache"] is True
    assert cold_record["ccache_stats"]["misses"] > cold_record["ccache_stats"]["hits"]
    assert warm_record["ccache_stats"]["hits"] > warm_record["ccache_stats"]["misses"]
    assert warm.seconds("configure", "make") < cold.seconds("configure", "make")
    print(f"pydebug compile: cold {cold.seconds('configure', 'make'):.1f} s, warm {warm.seconds('configure', 'make'):.1f} s")
