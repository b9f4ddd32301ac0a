"""fleetbake/pipeline/identity.py: an image's tags and labels, the same from every builder."""

from fleetbake.pipeline import families, identity


def test_tags(project):
    row = project.rows["debian-12"]
    assert identity.image_tag(row) == "fleetbake/worker:debian-12"
    assert identity.content_tag(row, "ab" * 32) == "fleetbake/worker:debian-12-" + "ab" * 8
    assert identity.packer_image_tag(row) == "fleetbake/worker:debian-12-packer"
    assert identity.rehearsal_image_tag(row) == "fleetbake/worker:debian-12-ami-rehearsal"


def test_a_builds_labels_are_the_static_ones_plus_its_own(project):
    row = project.rows["debian-12"]
    static = identity.static_labels(row)
    assert set(static) == {"org.opencontainers.image.source", "org.opencontainers.image.title",
                           "org.opencontainers.image.base.name", "io.fleetbake.row", "io.fleetbake.worker-version",
                           "io.fleetbake.fleetbake-version"}
    assert static["io.fleetbake.row"] == "debian-12" and static["org.opencontainers.image.base.name"] == row.spec.base
    built = identity.labels(row, "f" * 64, "sha256:base", identity.Source("abc123", 1764300000))
    assert {k: built[k] for k in static} == static
    assert built[identity.INPUTS_LABEL] == "f" * 64 and built["io.fleetbake.base-id"] == "sha256:base"
    assert set(built) - set(static) == {identity.CREATED_LABEL, "org.opencontainers.image.revision",
                                        "org.opencontainers.image.version", identity.INPUTS_LABEL, "io.fleetbake.base-id",
                                        identity.ARCH_LABEL}
    assert built[identity.ARCH_LABEL] == row.arch  # one Dockerfile for every architecture: a build's own label
    # The Dockerfile (and Packer's changes) carry exactly the static ones.
    assert dict(families.plan(row).runtime.labels) == static


def test_inputs_hash_covers_the_context_and_the_base():
    one = identity.inputs_hash("context", "base")
    assert len(one) == 64 and one != identity.inputs_hash("context", "other base") != identity.inputs_hash("other", "base")


def test_the_base_is_bootstrapped_with_the_images_own_dpkg_excludes():
    """An upgrade in the image must delete no file of the base (a whiteout carries the build's clock)."""
    import re

    from conftest import ROOT
    from fleetbake.pipeline import base

    script = (ROOT / "images" / "debian" / "scripts" / "configure-apt.sh").read_text()
    excludes = re.findall(r"^(path-(?:exclude|include) \S+)$", script, re.M)
    assert excludes and tuple(e.replace(" ", "=") for e in excludes) == base.DPKG_EXCLUDES
