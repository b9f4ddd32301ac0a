"""`invoke build` as a user runs it, on a small row of our own: what the README promises.

- a row whose base cannot be pulled (a registry host that never resolves) and has no bootstrap: `cannot build
  here: <reason>`, exit 3, and with `--os all` the other rows are built first;
- an unchanged row is skipped ("up to date", same image ID, quickly);
- `--force` rebuilds without the layer cache, and gives the same image ID (reproducible);
- `--refresh` bootstraps the base again and fetches the packages again; from an unchanged archive that gives
  the same base and the same image.

The small row has its own base, bootstrapped from Debian's archive; everything this module
creates (images, base, build contexts) is removed at its end. The real debian-12 row, its
base and its image are never touched.
"""

import os
import shutil
import subprocess
import sys
import time

import docker
import pytest

from conftest import ROOT

ROW = "fbtest-build-small"
UNREACHABLE = "fbtest-build-unreachable"
BASE = "fleetbake-test-build/debian:12"
# A base no registry serves anywhere, so the row is unbuildable on every machine (GitHub's runner can pull
# ubuntu:24.04): .invalid never resolves (RFC 2606), and the row has no bootstrap.
UNREACHABLE_REGISTRY = "fleetbake-unreachable.invalid"
UNREACHABLE_BASE = f"{UNREACHABLE_REGISTRY}/ubuntu:24.04"

# The unreachable row comes first: `--os all` must carry on past it.
MATRIX = f"""\
smoke: [test_sys]
configurations:
  pydebug:
    configure: [--with-pydebug]
rows:
  {UNREACHABLE}:
    family: debian
    base: {UNREACHABLE_BASE}
    packages: [netbase]
    configurations: [pydebug]
  {ROW}:
    family: debian
    base: {BASE}
    bootstrap: {{suite: bookworm, mirror: http://deb.debian.org/debian}}
    packages: [netbase]
    configurations: [pydebug]
"""


def remove_images(client, rows, base=None):
    """Everything a test row left: its images (tagged or not, intermediate layers go with them), then its own base
    if it has one (every bootstrap of it: docker import labels them with the reference)."""
    for row in rows:
        for image in client.images.list(all=True, filters={"label": f"io.fleetbake.row={row}"}):
            _remove(client, image.id)
    if base is None:
        return
    leftovers = [i.id for i in client.images.list(all=True, filters={"label": f"org.opencontainers.image.title={base}"})]
    for _ in range(len(leftovers) + 1):  # children before parents
        leftovers = [ref for ref in leftovers if not _remove(client, ref)]
    assert not leftovers, f"could not remove {leftovers}"


def _remove(client, ref) -> bool:
    try:
        client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError:  # still has a child image
        return False
    return True


def remove_our_images(client):
    remove_images(client, [ROW, UNREACHABLE], BASE)


@pytest.fixture(scope="module")
def env(client, tmp_path_factory):
    root = tmp_path_factory.mktemp("build-cli")
    matrix_path = root / "matrix.yml"
    matrix_path.write_text(MATRIX)
    remove_our_images(client)  # leftovers of an interrupted run
    # The code under test, frozen for this module: these tests compare builds with each other, and
    # an edit to images/ or fleetbake/ in the working tree between two builds changes their inputs.
    tree = root / "tree"
    for name in ("fleetbake", "images"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "tasks.py", tree / "tasks.py")
    state = {
        "matrix": str(matrix_path),
        "tree": tree,
        "env": {**os.environ, "FLEETBAKE_BUILD_DIR": str(root / "build"), "PYTHONPATH": str(tree)},
    }
    yield state
    remove_our_images(client)


def invoke(env, *args):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "invoke", *args, "--matrix", env["matrix"]], cwd=env["tree"],
                            env=env["env"], capture_output=True, text=True, timeout=1800, check=False)
    result.seconds = time.monotonic() - started
    print(result.stdout, result.stderr, sep="\n")
    return result


def image_id(client, ref):
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


# apt-get install downloading the one package of the row (netbase is "all").
PACKAGE_FETCHED = " http://deb.debian.org/debian bookworm/main amd64 netbase all "


def build_steps(stdout):
    return [line for line in stdout.splitlines() if f"[{ROW} " in line and "] Step " in line]


@pytest.fixture(scope="module")
def first_build(client, env):
    """`invoke build --os all` on a machine where one row cannot be built."""
    assert image_id(client, UNREACHABLE_BASE) is None, f"{UNREACHABLE_BASE} exists here: the test needs it unreachable"
    assert image_id(client, BASE) is None
    return invoke(env, "build", "--os", "all")


def test_os_all_builds_what_it_can_and_exits_3_naming_the_row_it_cannot(client, first_build):
    result = first_build
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: cannot build here: {UNREACHABLE} (built: {ROW})"]

    out = result.stdout.splitlines()
    refused = [i for i, line in enumerate(out) if line.startswith(f"{UNREACHABLE}: cannot build here: {UNREACHABLE}: "
                                                                   f"base {UNREACHABLE_BASE} cannot be pulled")]
    built = [i for i, line in enumerate(out) if line.startswith(f"{ROW}: built ")]
    assert refused and built, "the log must say which row was refused and which was built"
    assert refused[0] < built[0], "the row after the unbuildable one is still built"
    assert "and the row has no bootstrap" in out[refused[0]]
    assert any(line.startswith(f"base {BASE}: no registry answers") and "bootstrapping it from http://deb.debian.org/debian"
               in line for line in out)

    image = client.images.get(f"fleetbake/worker:{ROW}")
    assert image.labels["io.fleetbake.row"] == ROW
    assert image.labels["io.fleetbake.base-id"] == image_id(client, BASE)
    assert f"fleetbake/worker:{ROW}-{image.labels['io.fleetbake.inputs-hash'][:16]}" in image.tags
    assert image_id(client, UNREACHABLE_BASE) is None and image_id(client, f"fleetbake/worker:{UNREACHABLE}") is None


def test_a_single_unbuildable_row_says_why_and_exits_3(client, env):
    result = invoke(env, "build", "--os", UNREACHABLE)
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot build here: {UNREACHABLE}: base {UNREACHABLE_BASE} cannot be pulled (")
    assert line.endswith(") and the row has no bootstrap")
    assert UNREACHABLE_REGISTRY in line.partition(" cannot be pulled (")[2]  # the engine's reason names the host


def settle(client, env):
    """Build the row and return its image: an image identical to what the next build would make now exists."""
    result = invoke(env, "build", "--os", ROW)
    assert result.returncode == 0, result.stderr
    return client.images.get(f"fleetbake/worker:{ROW}")


def test_an_unchanged_row_is_skipped_quickly_with_the_same_image(client, env, first_build):
    before = settle(client, env)
    result = invoke(env, "build", "--os", ROW)
    assert result.returncode == 0, result.stderr
    inputs = before.labels["io.fleetbake.inputs-hash"]
    assert f"{ROW}: up to date (fleetbake/worker:{ROW}-{inputs[:16]}, {before.id[:19]}); nothing to build" in result.stdout
    assert build_steps(result.stdout) == []
    assert image_id(client, f"fleetbake/worker:{ROW}") == before.id
    assert result.seconds < 30 and result.seconds < first_build.seconds / 3, (result.seconds, first_build.seconds)


def test_force_rebuilds_every_step_without_the_layer_cache(client, env, first_build):
    before = settle(client, env)  # an identical image exists: without --force this build is a no-op
    inputs = before.labels["io.fleetbake.inputs-hash"]
    result = invoke(env, "build", "--os", ROW, "--force")
    assert result.returncode == 0, result.stderr
    after = client.images.get(f"fleetbake/worker:{ROW}")
    assert f"{ROW}: building fleetbake/worker:{ROW}-{inputs[:16]}" in result.stdout  # not "up to date"
    steps = build_steps(result.stdout)
    assert steps[:2] and steps[0].endswith(f"Step 1/{len(steps)} : ARG BASE={BASE}"), steps[:2]
    assert steps[1].endswith(f"Step 2/{len(steps)} : FROM ${{BASE}}"), steps[:2]
    assert "Using cache" not in result.stdout
    assert PACKAGE_FETCHED in result.stdout  # the packages are downloaded again
    assert after.id == before.id  # rebuilt from scratch, and the same inputs give the same image
    assert after.labels["io.fleetbake.inputs-hash"] == inputs
    assert f"fleetbake/worker:{ROW}-{inputs[:16]}" in after.tags


def test_refresh_bootstraps_the_base_again_and_fetches_the_packages_again(client, env, first_build):
    before = settle(client, env)
    base_before = image_id(client, BASE)
    assert before.labels["io.fleetbake.base-id"] == base_before
    result = invoke(env, "build", "--os", ROW, "--refresh")
    assert result.returncode == 0, result.stderr
    base_after = image_id(client, BASE)
    after = client.images.get(f"fleetbake/worker:{ROW}")
    assert f"base {BASE}: no registry answers" in result.stdout
    assert f"base {BASE}: loaded as {base_after[:19]}" in result.stdout
    # Bootstrapped and fetched again from an archive that did not change: the same base, the same image.
    assert base_after == base_before, "the same archive must give the same base (SOURCE_DATE_EPOCH, docker load)"
    assert after.labels["io.fleetbake.base-id"] == base_after
    assert after.id == before.id
    assert build_steps(result.stdout) and "Using cache" not in result.stdout
    assert PACKAGE_FETCHED in result.stdout
