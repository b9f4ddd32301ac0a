"""Publish's gate and the row's index document, without an engine or a registry (tests/integration/test_publish.py
pushes real images to a real registry)."""

import json

import pytest

from fleetbake.pipeline import identity, matrix, publish, record, registry as oci

ROW = "fbtest-gate"
MATRIX = f"""
smoke: [test_sys]
configurations:
  pydebug:
    configure: [--with-pydebug]
rows:
  {ROW}:
    family: debian
    base: debian:12
    packages: [build-essential]
    configurations: [pydebug]
    arches: [amd64, arm64]
"""
AMD64, ARM64 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.fixture
def rows(write_matrix):
    return matrix.load(write_matrix(MATRIX))


@pytest.fixture
def row(rows):
    return rows.rows[ROW]


def attrs(image_id, arch, variant="", labels=None, os="linux"):
    """What docker's image inspect says of an image that fleetbake built for `arch`."""
    found = {"Id": image_id, "Os": os, "Architecture": arch,
             "Config": {"Labels": {identity.ARCH_LABEL: arch, identity.INPUTS_LABEL: "f" * 64, **(labels or {})}}}
    return {**found, "Variant": variant} if variant else found


def ready(image_id, passed=True):
    """A record and the report files, as verify and report leave them."""
    record.write(image_id, "pydebug", {"row": ROW, "passed": passed, "reason": "ok"})
    record.image_dir(image_id).mkdir(parents=True, exist_ok=True)
    for name, _ in publish.REPORT_LAYERS:
        (record.image_dir(image_id) / name).write_text(name)


def test_an_image_of_each_architecture_is_cleared_only_with_its_platform_records_and_report(row, build_dir):
    arm = row.on("arm64")
    tag = identity.image_tag(arm)
    assert publish.candidate(arm, tag, None) == f"image {tag} is not built here"
    ready(ARM64)
    assert isinstance(publish.candidate(arm, tag, attrs(ARM64, "arm64", "v8")), publish.Candidate)
    assert isinstance(publish.candidate(arm, tag, attrs(ARM64, "arm64")), publish.Candidate)  # no variant: v8's
    # The amd64 image under the arm64 tag; a 32-bit ARM one; another OS: each names what it is.
    assert publish.candidate(arm, tag, attrs(ARM64, "amd64")) == (
        f"image {tag} ({ARM64[:19]}) is an image of linux/amd64, not linux/arm64/v8")
    assert publish.candidate(arm, tag, attrs(ARM64, "arm64", "v7")) == (
        f"image {tag} ({ARM64[:19]}) is an image of linux/arm64/v7, not linux/arm64/v8")
    assert publish.candidate(arm, tag, attrs(ARM64, "arm64", os="windows")).endswith(
        "is an image of windows/arm64, not linux/arm64/v8")
    # Right config, wrong label: not fleetbake's build for arm64 (a retagged image).
    assert publish.candidate(arm, tag, attrs(ARM64, "arm64", labels={identity.ARCH_LABEL: "amd64"})) == (
        f"image {tag} ({ARM64[:19]}) has {identity.ARCH_LABEL}='amd64', not 'arm64': not built by fleetbake for arm64")
    assert publish.candidate(arm, tag, attrs(ARM64, "arm64", labels={identity.INPUTS_LABEL: ""})) == (
        f"{ARM64[:19]} has no {identity.INPUTS_LABEL} label: not built by fleetbake")


def test_records_and_report_are_each_architectures_own(row, build_dir):
    arm = row.on("arm64")
    tag = identity.image_tag(arm)
    image = attrs(ARM64, "arm64", "v8")
    assert publish.candidate(arm, tag, image) == (
        f"{ARM64[:19]} has no passing verification record: run `invoke verify --os {ROW} --arch arm64`")
    ready(AMD64)  # the other architecture's record and report count for nothing here
    assert "has no passing verification record" in publish.candidate(arm, tag, image)
    record.write(ARM64, "pydebug", {"row": ROW, "passed": True, "reason": "ok"})
    assert publish.candidate(arm, tag, image) == (
        f"{ARM64[:19]} has no report (sbom.spdx.json, software.json, software.md missing): "
        f"run `invoke report --os {ROW} --arch arm64` first")
    ready(ARM64)
    cleared = publish.candidate(arm, tag, image)
    assert (cleared.row.arch, cleared.image_id, cleared.passed, cleared.reported) == ("arm64", ARM64, ["pydebug"], True)
    record.write(ARM64, "nogil", {"row": ROW, "passed": False, "reason": "test_sys failed"})
    assert publish.candidate(arm, tag, image) == f"{ARM64[:19]} failed verification (nogil)"


def test_the_gate_clears_every_architecture_or_names_each_one_that_is_not(row, build_dir, monkeypatch):
    local = {identity.arch_tag(row.on("amd64")): attrs(AMD64, "amd64"),
             identity.arch_tag(row.on("arm64")): attrs(ARM64, "arm64", "v8")}
    monkeypatch.setattr(publish, "_inspect", local.get)  # docker's inspect of the local tags
    ready(AMD64)
    arm_tag = identity.arch_tag(row.on("arm64"))
    assert publish.gate(row) == f"arm64: {ARM64[:19]} has no passing verification record: " \
                                f"run `invoke verify --os {ROW} --arch arm64`"
    del local[arm_tag]
    record.write(AMD64, "pydebug", {"row": ROW, "passed": False, "reason": "test_sys failed"})
    assert publish.gate(row) == (f"amd64: {AMD64[:19]} failed verification (pydebug); "
                                 f"arm64: image {arm_tag} is not built here")
    ready(AMD64)
    local[arm_tag] = attrs(ARM64, "arm64", "v8")
    ready(ARM64)
    assert [(c.row.arch, c.image_id) for c in publish.gate(row)] == [("amd64", AMD64), ("arm64", ARM64)]


def test_a_refused_architecture_stops_the_row_before_any_registry_is_asked(rows, row, build_dir, monkeypatch):
    """Nothing listens on 127.0.0.1:1: reaching the registry would be another error than the refusal."""
    monkeypatch.setattr(publish, "_inspect", {identity.arch_tag(row.on("amd64")): attrs(AMD64, "amd64")}.get)
    ready(AMD64)
    with pytest.raises(publish.PublishError) as info:
        publish.publish(rows, [row], "127.0.0.1:1/ns", log=print)
    assert str(info.value) == (f"refusing to publish {ROW}: arm64: image {identity.arch_tag(row.on('arm64'))} "
                               "is not built here")


def test_the_index_lists_each_architectures_manifest_with_its_platform(row):
    amd, arm = (oci.Descriptor(oci.DOCKER_MANIFEST, digest, 500 + n) for n, digest in enumerate((AMD64, ARM64)))
    index = publish.index_manifest([(amd, publish.platform(row.on("amd64"))), (arm, publish.platform(row.on("arm64")))])
    assert index == {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": oci.DOCKER_MANIFEST, "digest": AMD64, "size": 500,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": oci.DOCKER_MANIFEST, "digest": ARM64, "size": 501,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]}
    # What resolve picks from it: the host's entry, whatever the order.
    assert oci.pick(index, "linux/arm64/v8")["digest"] == ARM64
    assert oci.pick(index, "linux/amd64")["digest"] == AMD64
    assert oci.pick(index, "linux/s390x") is None
    # The same entries give the same bytes: re-running publish can tell the index is there already.
    assert oci.canonical(index) == oci.canonical(json.loads(json.dumps(index)))


def test_each_architecture_has_tags_no_other_can_take(row):
    import datetime as dt

    hash_ = "0123456789abcdef" * 4
    amd, arm = publish.arch_tags(row.on("amd64"), hash_), publish.arch_tags(row.on("arm64"), hash_)
    assert amd == [f"{ROW}-amd64", f"{ROW}-amd64-0123456789abcdef"]
    assert arm == [f"{ROW}-arm64", f"{ROW}-arm64-0123456789abcdef"]
    index = publish.index_tags(row, dt.date(2026, 11, 28))
    assert index == [ROW, f"{ROW}-20261128"]
    assert not set(amd) & set(arm) and not set(index) & set(amd + arm)
