"""Publishing to a real local registry (Debian's docker-registry on 127.0.0.1)."""

import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import MINIMAL, free_port, wait_for_http
from fleetbake.pipeline import build, matrix, publish, record, verify
from integration.test_build_cli import remove_images
from test_cli import invoke

SMALL = "fbtest-publish-small"  # built here, by fleetbake, from its own bootstrapped base
SMALL_BASE = "fleetbake-test-publish/debian:12"
UNBUILT = "fbtest-publish-unbuilt"  # never built
# Rows publish looks at; the `too-new` configuration fails verification at once, without compiling.
ROWS = f"""\
smoke: [test_sys]
configurations:
  pydebug:
    configure: [--with-pydebug]
  too-new:
    description: needs a CPython that does not exist yet
    requires_python: "3.99"
rows:
  debian-12:
    family: debian
    base: debian:12
    packages: [build-essential]
    configurations: [pydebug]
  {SMALL}:
    family: debian
    base: {SMALL_BASE}
    bootstrap: {{suite: bookworm, mirror: http://deb.debian.org/debian}}
    packages: [netbase]
    configurations: [too-new]
    cpython: debian:trixie/python3.13
  {UNBUILT}:
    family: debian
    base: {SMALL_BASE}
    packages: [netbase]
    configurations: [too-new]
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory, client):
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed (scripts/setup.sh installs it)"
    port = free_port()
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\n"
        "http: {addr: '127.0.0.1:%d'}\n" % (root / "data", port)
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_http(f"http://127.0.0.1:{port}/v2/", "docker-registry")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)
    for image in client.images.list():  # untag what was tagged for this registry (the images keep their own tags)
        for tag in image.tags:
            if tag.startswith(f"127.0.0.1:{port}/"):
                client.images.remove(tag)


def catalog_tags(registry, repository):
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=5) as response:
            return sorted(json.load(response).get("tags") or [])
    except urllib.error.HTTPError:  # no such repository yet
        return []


@pytest.fixture(scope="module")
def verified(verified_image):
    return verified_image


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("publish-matrix") / "matrix.yml"
    path.write_text(ROWS)
    return matrix.load(path)


@pytest.fixture(scope="module")
def small(client, rows, tmp_path_factory):
    """The small row, built by fleetbake (contexts and bootstrap under a temporary build dir); removed at the end."""
    remove_images(client, [SMALL], SMALL_BASE)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path_factory.mktemp("publish-build")))
            [result] = build.build(rows, rows.select(SMALL), log=print)
        yield result
    finally:
        remove_images(client, [SMALL], SMALL_BASE)


def test_a_verified_image_is_pushed_with_three_tags_and_pulls_back_identical(registry, live_project, verified, client):
    image = verified
    row = live_project.rows["debian-12"]
    [done] = publish.publish(live_project, [row], f"{registry}/fleetbake", log=print)
    assert done.skipped is None and done.digest.startswith("sha256:")
    tags = catalog_tags(registry, "fleetbake/worker")
    assert tags == sorted(publish.tags_for(row, image.inputs_hash)), tags

    ref = f"{registry}/fleetbake/worker:debian-12"
    assert client.api.inspect_distribution(ref)["Descriptor"]["digest"] == done.digest
    client.images.remove(ref)
    pulled = client.images.pull(f"{registry}/fleetbake/worker", tag="debian-12")
    assert pulled.id == image.image_id
    assert f"{registry}/fleetbake/worker@{done.digest}" in pulled.attrs["RepoDigests"]


def test_an_unverified_image_is_refused_and_nothing_is_pushed(registry, client, write_matrix, build_dir):
    m = matrix.load(write_matrix(MINIMAL.replace("debian-12:", "unverified-row:")))
    image, _ = client.images.build(fileobj=io.BytesIO(b"FROM debian:12\nLABEL io.fleetbake.inputs-hash=abc\n"),
                                   tag="fleetbake/worker:unverified-row", rm=True)
    assert record.status(image.id) == ([], [])
    with pytest.raises(publish.PublishError, match="refusing to publish unverified-row: .* no passing verification record"):
        publish.publish(m, m.select("unverified-row"), f"{registry}/fleetbake", log=print)
    assert not [t for t in catalog_tags(registry, "fleetbake/worker") if t.startswith("unverified-row")]
    client.images.remove("fleetbake/worker:unverified-row", force=True)


def test_an_image_whose_verification_failed_is_refused_and_nothing_is_pushed(registry, rows, small, build_dir):
    [result] = verify.verify(rows, rows.rows[SMALL], ["too-new"], log=print)
    assert not result.passed and result.reason.startswith("needs CPython >= 3.99, the source is 3.")
    written = json.loads(result.record.read_text())
    assert written["passed"] is False and written["image_id"] == small.image_id
    assert result.record.parent == record.report_dir(small.image_id) and build_dir in result.record.parents
    assert record.status(small.image_id) == ([], ["too-new"])

    refusal = f"refusing to publish {SMALL}: {small.image_id[:19]} failed verification (too-new)"
    cli = invoke("publish", "--os", SMALL, "--registry", f"{registry}/fleetbake", "--matrix", str(rows.path),
                 env={"FLEETBAKE_BUILD_DIR": str(build_dir)})
    assert cli.returncode == 1 and cli.stderr.splitlines() == [f"error: {refusal}"], (cli.stdout, cli.stderr)
    assert "pushing" not in cli.stdout
    with pytest.raises(publish.PublishError) as info:
        publish.publish(rows, rows.select(SMALL), f"{registry}/fleetbake", log=print)
    assert str(info.value) == refusal
    assert not [t for t in catalog_tags(registry, "fleetbake/worker") if t.startswith(SMALL)]


def test_all_rows_publishes_the_verified_one_and_says_what_it_skipped_and_why(registry, rows, verified, small, monkeypatch):
    monkeypatch.delenv("FLEETBAKE_BUILD_DIR", raising=False)  # the records in build/reports/: debian-12's passes
    lines = []
    results = {r.row: r for r in publish.publish(rows, rows.select("all"), f"{registry}/fleetbake", log=lines.append)}
    assert results["debian-12"].skipped is None and results["debian-12"].digest.startswith("sha256:")
    assert results[SMALL].skipped == (f"{small.image_id[:19]} has no passing verification record: "
                                      f"run `invoke verify --os {SMALL}`")
    assert results[UNBUILT].skipped == f"fleetbake/worker:{UNBUILT} is not built here"
    assert [line for line in lines if ": skipped: " in line] == [
        f"{SMALL}: skipped: {results[SMALL].skipped}", f"{UNBUILT}: skipped: {results[UNBUILT].skipped}"]
    tags = catalog_tags(registry, "fleetbake/worker")
    assert set(publish.tags_for(rows.rows["debian-12"], verified.inputs_hash)) <= set(tags)
    assert not [t for t in tags if t.startswith(("fbtest-", SMALL, UNBUILT))], tags


def test_push_errors_are_raised(client, image):
    """Nothing listens on 127.0.0.1:1: docker-py reports that in the stream, not as an exception."""
    client.api.tag(image.image_id, "127.0.0.1:1/x/worker", "debian-12")
    try:
        with pytest.raises(publish.PublishError, match="push 127.0.0.1:1/x/worker:debian-12 failed: .*connection refused"):
            publish._push(client.api, "127.0.0.1:1/x/worker", "debian-12", print)
    finally:
        client.images.remove("127.0.0.1:1/x/worker:debian-12")
