"""The registry client's rules that need no registry: which scheme, which referrers tag, which descriptor."""

import hashlib

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
