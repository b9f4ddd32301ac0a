import contextlib
import os
import time
import uuid

import docker
import pytest

from fleetbake.pipeline import arches, build, publish, record, report

TEST_LABEL = "io.fleetbake.test"
# The architecture of the image the runtime-contract tests take (.ci/run runs them again for arm64, under QEMU); the
# host's own by default. Waits for the worker grow with QEMU's slowdown. Its row is debian-12's unless
# FLEETBAKE_TEST_ROW names another (riscv64 is debian-13's only).
TEST_ARCH = os.environ.get("FLEETBAKE_TEST_ARCH") or None
TEST_ROW = os.environ.get("FLEETBAKE_TEST_ROW") or "debian-12"
SLOWDOWN = 1 if TEST_ARCH is None or not arches.emulated(arches.get(TEST_ARCH)) else 10
# Each test session cleans up only its own containers, never a concurrent session's.
SESSION = uuid.uuid4().hex


# `invoke test` runs these two at a time (pytest-xdist, --dist loadgroup). A module's tests stay together, on one
# worker, so that its module fixtures (a master, an image built for it) are made once; these modules' tests share
# none and go wherever a worker is free.
SPLIT = {"test_image", "test_verify"}
# Modules sharing a session fixture share a worker: the debian-12 cold rebuilds serve both.
GROUPS = {"test_reproducible": "cold-rebuilds", "test_packer_image": "cold-rebuilds",
          "test_plain_build": "cold-rebuilds"}  # its build may end on a layer-cache image of theirs: not beside them


# The longest first (`invoke test` passes --no-loadscope-reorder), so that no long one starts last while the
# other worker has nothing left: about 4 minutes each, then about 2.
FIRST = ("test_debian_13_builds_from_a_bootstrapped_base_and_verifies", "test_update", "test_fleet_join-builds",
         "cold-rebuilds",
         "test_ccache", "test_fleet_join-faults", "test_build_cli", "test_disk", "test_ami_rehearsal",
         "test_missing_ok_lets_a_row_without_one_module_verify_and_the_record_says_so")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks given here
def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.docker)
            module = item.module.__name__.rpartition(".")[2]
            if module not in SPLIT and not item.get_closest_marker("xdist_group"):  # a test may name its own
                item.add_marker(pytest.mark.xdist_group(GROUPS.get(module, module)))

    def rank(item):
        group = item.get_closest_marker("xdist_group")
        names = (group.args[0] if group else None, item.originalname)
        return next((FIRST.index(name) for name in names if name in FIRST), len(FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def client():
    engine = docker.from_env(timeout=600)
    engine.ping()
    yield engine
    for container in engine.containers.list(all=True, filters={"label": f"{TEST_LABEL}={SESSION}"}):
        container.remove(force=True, v=True)


@pytest.fixture(scope="session")
def image(client, live_project):
    """The row's image (debian-12's unless FLEETBAKE_TEST_ROW), for FLEETBAKE_TEST_ARCH, built through fleetbake
    (a no-op when setup already built it)."""
    [result] = build.build(live_project, live_project.select(TEST_ROW, TEST_ARCH), log=print)
    return result


@pytest.fixture(scope="session")
def amd64_project(tmp_path_factory):
    """The live matrix with debian-12 built for amd64 alone: the session's verified image is the whole row."""
    import yaml

    from conftest import LIVE_MATRIX
    from fleetbake.pipeline import matrix

    document = yaml.safe_load(LIVE_MATRIX.read_text())
    row = document["rows"]["debian-12"]
    row["arches"] = ["amd64"]
    if isinstance((row.get("ami") or {}).get("arches"), dict):  # per-architecture settings must name a row's arch
        row["ami"]["arches"] = {k: v for k, v in row["ami"]["arches"].items() if k == "amd64"}
    path = tmp_path_factory.mktemp("amd64-matrix") / "matrix.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    loaded = matrix.load(path)
    assert loaded.rows["debian-12"].spec.arches == ["amd64"] and len(loaded.rows) == len(matrix.load(LIVE_MATRIX).rows)
    return loaded


@pytest.fixture(scope="session")
def verified_image(image, live_project):
    """The row's image with a passing pydebug record: setup's, or one verified here for real."""
    from fleetbake.pipeline import record, verify

    passed, failed = record.status(image.image_id)
    assert not failed, f"{image.image_id[:19]} has failing records: {failed}"
    if "pydebug" not in passed:
        [result] = verify.verify(live_project, live_project.one(TEST_ROW, TEST_ARCH), ["pydebug"], log=print)
        assert result.passed, result.reason
    return image


@pytest.fixture(scope="session")
def cold_rebuilds(client, image, live_project):
    """Two builds of the debian-12 row from the same inputs, [(stdout, image ID)] each, the second a cold one made
    now as a user runs it (`invoke build --os debian-12 --force`: no layer cache, the packages fetched again). The
    first is the session's image (the README's setup built it; stdout None) when the cold rebuild has its ID;
    otherwise Debian's archive moved on since that image was built, and a second cold rebuild is the first.
    test_reproducible compares them; test_packer_image compares Packer's image, built right after, with the last
    (both read the archive as it is now). The row's tags stay on the session's image."""
    import os
    import subprocess

    from conftest import ROOT
    from fleetbake.pipeline import identity

    import re

    row = live_project.one(TEST_ROW, TEST_ARCH)

    def rebuild():
        result = subprocess.run([str(ROOT / ".venv" / "bin" / "invoke"), "build", "--os", row.name, "--force",
                                 "--arch", row.arch],
                                cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                timeout=1800)
        # The row's tags back on the session's image at once: a rebuild from an archive that moved on is not the
        # verified image, and other tests (and .ci/run's verifications) read those tags meanwhile.
        for tag in (*identity.image_tags(row), identity.content_tag(row, image.inputs_hash)):
            client.images.get(image.image_id).tag(*tag.split(":"))
        assert result.returncode == 0, result.stderr[-2000:]
        [built] = re.findall(rf"^{row.name}: built sha256:([0-9a-f]+) ", result.stdout, re.M)  # not a tag: see above
        return result.stdout, client.images.get(built).id

    builds = [(None, image.image_id), rebuild()]
    if builds[1][1] != image.image_id:
        print(f"the session's image {image.image_id[:19]} was built from an older state of Debian's archive: "
              "comparing two cold rebuilds made now")
        builds = [builds[1], rebuild()]
    return builds


@pytest.fixture
def run(client):
    """Start a container labelled for cleanup; removed (with its volumes) after the test."""
    started = []

    def start(image, **kwargs):
        labels = {TEST_LABEL: SESSION, **kwargs.pop("labels", {})}
        container = client.containers.run(image, detach=True, labels=labels, **kwargs)
        started.append(container)
        return container

    yield start
    for container in started:
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass


def build_user(client, image) -> tuple[str, int]:
    """The image's build user and uid, as the image itself declares them (never a hard-coded 1000)."""
    from fleetbake.pipeline import verify

    name = verify.build_user(image.image_id)
    uid = client.containers.run(image.image_id, ["id", "-u", name], remove=True)
    return name, int(uid)


def wait_for_log(container, needle: str, timeout: float = 60 * SLOWDOWN, after: tuple[str, int] = ("", 0)) -> str:
    """The container's logs once they hold `needle`; with `after=(marker, n)`, only after the n-th `marker` counts
    (a restarted container keeps the logs of its earlier runs, and a killed run may not have logged the needle)."""
    marker, nth = after
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = container.logs().decode(errors="replace")
        parts = logs.split(marker) if marker else [logs]
        if len(parts) > nth and needle in marker.join(parts[nth:]):
            return logs
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} not in the logs of {container.name}:\n{container.logs().decode(errors='replace')[-3000:]}")


def unique_password() -> str:
    return f"pw-{uuid.uuid4().hex}"


@contextlib.contextmanager
def running_master(tmp_path_factory, live_project, workers: dict, **options):
    """A test master (fleetbake.devtools.master) for `workers` (name -> password), on free loopback ports unless
    `options` name them; stopped at the end."""
    from conftest import free_port
    from fleetbake.devtools import master as master_mod

    directory = tmp_path_factory.mktemp("master")
    options = {"pb_port": free_port(), "www_port": free_port(), "git_port": free_port(), "jobs": 2, **options}
    info = master_mod.start(workers, live_project.rows[TEST_ROW].spec.cpython, directory=directory, **options)
    try:
        yield info
    finally:
        master_mod.stop(directory=directory)


def wait_connected(api, name, connected=True, timeout=120):
    return api.wait_connected(name, connected, timeout)


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory, client):
    """(address, storage folder) of a docker-registry of our own on loopback."""
    from fleetbake.devtools import local_registry

    root = tmp_path_factory.mktemp("registry")
    with local_registry.serve(root) as address:
        yield address, root / "data"
    for image in client.images.list():  # untag what was tagged for this registry (the images keep their own tags)
        for tag in image.tags:
            if tag.startswith(f"{address}/"):
                client.images.remove(tag)


@pytest.fixture(scope="module")
def registry(registry_server):
    return registry_server[0]


@pytest.fixture(scope="module")
def reported(verified_image, live_project):
    """The row's verified image with its report (invoke report's files), made here for real if missing."""
    folder = record.image_dir(verified_image.image_id)
    if not all((folder / name).is_file() for name, _ in publish.REPORT_LAYERS):
        report.report(live_project, live_project.one(TEST_ROW, TEST_ARCH), verified_image.image_id, log=print)
    return verified_image
