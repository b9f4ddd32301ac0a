"""Two builds of the debian-12 row from the same inputs give the same image ID: the session's image (the README's
setup built it) and a cold rebuild now (`invoke build --force`: no layer cache, the packages fetched again), or two
cold rebuilds when the archive moved on since the session's image was built (integration/conftest.cold_rebuilds).
The config fleetbake writes is the builder's own with the build's times, container and parent taken out."""

import json
import re
import tarfile

from conftest import ROOT
from fleetbake.pipeline import identity
from integration.conftest import TEST_ARCH, TEST_ROW


def saved_config(client, image_id, tmp_path):
    """The image's config as the engine stores it (from `docker save`)."""
    archive = tmp_path / "image.tar"
    with open(archive, "wb") as handle:
        for chunk in client.images.get(image_id).save(named=False):
            handle.write(chunk)
    with tarfile.open(archive) as tar:
        [manifest] = json.load(tar.extractfile("manifest.json"))
        return json.load(tar.extractfile(manifest["Config"]))


def test_two_cold_builds_give_the_same_image(client, cold_rebuilds, live_project, tmp_path):
    """Per architecture: FLEETBAKE_TEST_ARCH=arm64 runs it for arm64, built under QEMU (by hand: two cold emulated
    builds are too slow for .ci/run)."""
    row = live_project.one(TEST_ROW, TEST_ARCH)
    (first, first_id), (second, second_id) = cold_rebuilds
    for stdout in (first, second):
        assert stdout is None or ("Using cache" not in stdout and "Successfully built" in stdout)
    assert first_id == second_id, f"two cold builds differ: run `invoke diff {first_id} {second_id}`"
    assert f"built {second_id[:19]}" in second

    config = saved_config(client, second_id, tmp_path)
    assert (config["architecture"], config.get("variant", "")) == (row.arch, row.architecture.variant)
    origin = identity.source(ROOT / "images" / row.spec.family / row.name)
    assert config["created"] == origin.created and config["config"]["Labels"][identity.CREATED_LABEL] == origin.created
    assert {"container", "container_config", "docker_version"}.isdisjoint(config) and config["config"]["Image"] == ""
    made = [h for h in config["history"] if not h.get("empty_layer")]
    assert len(made) == len(config["rootfs"]["diff_ids"])
    ours = [h for h in config["history"] if h["created"] == origin.created]
    assert any(h["created_by"].startswith("/bin/sh -c #(nop) COPY dir:") for h in ours)
    assert any("normalize-layer.sh" in h["created_by"] for h in ours if not h.get("empty_layer"))
    # The run settings, layers and steps are the builder's own image's (the one before fleetbake rewrote its config).
    [builders] = re.findall(r"Successfully built ([0-9a-f]{12})", second)
    original = client.api.inspect_image(builders)
    # ... with the build's labels added to it (the builder is given none: it would make a step and a commit of each).
    labels = identity.labels(row, config["config"]["Labels"][identity.INPUTS_LABEL],
                             config["config"]["Labels"][f"{identity.LABEL_PREFIX}.base-id"], origin)
    assert {**original["Config"], "Image": "", "Labels": {**(original["Config"]["Labels"] or {}), **labels}} == config["config"]
    assert not set(labels) - set(identity.static_labels(row)) & set(original["Config"]["Labels"] or {})
    assert original["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    steps = list(reversed(client.api.history(builders)))
    assert [h["created_by"] for h in config["history"]] == [s["CreatedBy"] for s in steps]
