"""Publishing to a real local registry (Debian's docker-registry on 127.0.0.1)."""

import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import MINIMAL, free_port, wait_for_http
from fleetbake import matrix, publish, verify


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
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


def catalog_tags(registry, repository):
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=5) as response:
            return sorted(json.load(response).get("tags") or [])
    except urllib.error.HTTPError:  # no such repository yet
        return []


def test_a_verified_image_is_pushed_with_three_tags_and_pulls_back_identical(registry, project, image, client):
    row = project.rows["debian-12"]
    passed, failed = publish.verification_status(image.image_id)
    if "pydebug" not in passed:  # the verify test or setup usually did this already
        [result] = verify.verify(project, row, ["pydebug"], log=print)
        assert result.passed
    [done] = publish.publish(project, [row], f"{registry}/fleetbake", log=print)
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
    assert publish.verification_status(image.id) == ([], [])
    with pytest.raises(publish.PublishError, match="refusing to publish unverified-row: .* no passing verification record"):
        publish.publish(m, m.select("unverified-row"), f"{registry}/fleetbake", log=print)
    assert not [t for t in catalog_tags(registry, "fleetbake/worker") if t.startswith("unverified-row")]
    client.images.remove("fleetbake/worker:unverified-row", force=True)


def test_all_rows_reports_what_it_skipped(registry, project, client):
    lines = []
    results = {r.row: r for r in publish.publish(project, project.select("all"), f"{registry}/fleetbake", log=lines.append)}
    assert results["debian-12"].skipped is None
    assert any(line.startswith("debian-13: skipped: ") for line in lines) or results["debian-13"].skipped is None


def test_push_errors_are_raised(client, image):
    """Nothing listens on 127.0.0.1:1: docker-py reports that in the stream, not as an exception."""
    client.api.tag(image.image_id, "127.0.0.1:1/x/worker", "debian-12")
    try:
        with pytest.raises(publish.PublishError, match="push 127.0.0.1:1/x/worker:debian-12 failed: .*connection refused"):
            publish._push(client.api, "127.0.0.1:1/x/worker", "debian-12", print)
    finally:
        client.images.remove("127.0.0.1:1/x/worker:debian-12")
