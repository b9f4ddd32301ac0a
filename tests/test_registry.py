"""The registry client's rules that need no registry: which scheme, which referrers tag, which descriptor."""

import hashlib
import json

import pytest

from fleetbake.pipeline import registry


@pytest.mark.parametrize("host, url", [
    ("127.0.0.1:5000", "http://127.0.0.1:5000"), ("localhost:5000", "http://localhost:5000"),
    ("localhost", "http://localhost"), ("[::1]:5000", "http://[::1]:5000"),
    ("ghcr.io", "https://ghcr.io"), ("registry.example:5000", "https://registry.example:5000"),
    ("127.0.0.2:5000", "https://127.0.0.2:5000"), ("localhost.example", "https://localhost.example"),
])
def test_plain_http_only_for_this_machine(host, url):
    assert registry.base_url(host) == url
    assert registry.Registry(host, "ns/worker", token="").url == f"{url}/v2/ns/worker"


def test_the_referrers_tag_follows_the_oci_schema():
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    assert registry.referrers_tag(digest) == "sha256-" + hashlib.sha256(b"x").hexdigest()
    assert registry.referrers_tag("sha512:" + "a" * 128) == "sha512-" + "a" * 64  # truncated to 64 characters


def test_a_descriptor_is_the_blobs_digest_and_size():
    empty = registry.Descriptor.of(registry.EMPTY_TYPE, registry.EMPTY)
    assert empty.to_json() == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                               "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
    assert empty.to_json(annotations={"a": "b"}, artifactType=None)["annotations"] == {"a": "b"}


def test_the_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(registry.TOKEN_ENV, "t0ken")
    monkeypatch.delenv(registry.USER_ENV, raising=False)
    client = registry.Registry("ghcr.io", "python/worker")
    assert (client.token, client.user, client.authorization) == ("t0ken", "fleetbake", None)  # sent only when asked
    monkeypatch.setenv(registry.TOKEN_ENV, "")
    assert registry.Registry("ghcr.io", "python/worker").token is None


def test_an_index_entry_is_picked_by_os_architecture_and_variant():
    def entry(digest, **platform):
        return {"mediaType": registry.OCI_MANIFEST, "digest": digest, "size": 1, "platform": platform}

    index = {"manifests": [
        {"mediaType": registry.OCI_MANIFEST, "digest": "sha256:att", "size": 1,  # buildx's attestation: no image
         "platform": {"os": "unknown", "architecture": "unknown"}},
        entry("sha256:v7", os="linux", architecture="arm", variant="v7"),
        entry("sha256:plain", os="linux", architecture="arm64"),
        entry("sha256:v8", os="linux", architecture="arm64", variant="v8"),
        entry("sha256:win", os="windows", architecture="amd64"),
        {"digest": "sha256:nowhere", "size": 1}]}  # no platform: never picked
    assert registry.pick(index, "linux/arm64/v8")["digest"] == "sha256:v8"  # the exact variant before none
    assert registry.pick({"manifests": index["manifests"][:3]}, "linux/arm64/v8")["digest"] == "sha256:plain"
    assert registry.pick(index, "linux/arm/v6") is None
    assert registry.pick(index, "linux/amd64") is None  # the Windows image is not Linux's
    assert registry.pick(index, "windows/amd64")["digest"] == "sha256:win"
    assert registry.pick({}, "linux/amd64") is None
    assert [registry.platform_string(e["platform"]) for e in index["manifests"][:3]] == [
        "unknown/unknown", "linux/arm/v7", "linux/arm64"]


@pytest.mark.parametrize("media_type, manifest, index", [
    (registry.OCI_INDEX, {"manifests": []}, True), (registry.DOCKER_LIST, {"manifests": []}, True),
    ("", {"mediaType": registry.OCI_INDEX}, True), ("", {"manifests": []}, True),  # a registry that says no type
    (registry.OCI_MANIFEST, {"config": {}, "layers": []}, False), (registry.DOCKER_MANIFEST, {"config": {}}, False),
    ("", {"config": {}, "manifests": []}, False)])
def test_an_index_is_known_by_its_media_type_or_its_shape(media_type, manifest, index):
    assert registry.is_index(registry.Descriptor(media_type, "sha256:x", 1), manifest) is index


def test_a_single_images_tag_resolves_only_for_the_platform_its_config_names():
    """A row's tag from before the index (one amd64 image) is not an arm64 host's image: update, verdict and
    report --against are told so, never handed the amd64 image."""
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST,
                "config": {"digest": registry.digest_of(config), "size": len(config)}, "layers": []}

    class One(registry.Registry):
        def get_manifest(self, reference):
            return registry.Descriptor(registry.OCI_MANIFEST, "sha256:" + "1" * 64, 1), manifest

        def get_blob(self, digest):
            assert digest == registry.digest_of(config)
            return config

    remote = One("127.0.0.1:5000", "ns/worker")
    assert remote.resolve("debian-12", "linux/amd64")[2] is None
    with pytest.raises(registry.NoPlatform, match=r"ns/worker:debian-12 is one image for linux/amd64, not linux/arm64/v8"):
        remote.resolve("debian-12", "linux/arm64/v8")
