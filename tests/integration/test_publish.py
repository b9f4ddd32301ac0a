"""Publishing to a real local registry (Debian's docker-registry on 127.0.0.1).

The session's debian-12 image is published from the live matrix with its row's arches cut to amd64 (the other
architectures' images take an emulated build and verify); the multi-arch index is tested on a row of two tiny
images of our own, amd64 and arm64, loaded from a config and a layer as fleetbake's builds are."""

import copy
import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request

import pytest

from conftest import LIVE_MATRIX, MINIMAL, ROOT, snapshot
from fleetbake.operate import update
from fleetbake.pipeline import (artifact, build, engine, identity, matrix, publish, record, registry as oci, report,
                                software, verify)
from integration.conftest import SESSION, TEST_LABEL
from integration.test_build_cli import remove_images
from test_cli import invoke

SMALL = "fbtest-publish-small"  # built here, by fleetbake
# The real row's base (shared, never removed here), with its own bootstrap: made as that row makes it if missing.
SMALL_BASE = "debian:12"
UNBUILT = "fbtest-publish-unbuilt"  # never built
AMD64 = "linux/amd64"  # this host's platform: what report --against compares with
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
    bootstrap: {{suite: bookworm, mirror: http://deb.debian.org/debian, security_mirror: http://deb.debian.org/debian-security}}
    packages: [netbase]
    configurations: [too-new]
    cpython: debian:trixie/python3.13
  {UNBUILT}:
    family: debian
    base: {SMALL_BASE}
    packages: [netbase]
    configurations: [too-new]
"""


@pytest.fixture(autouse=True)
def one_day(monkeypatch):
    """One day for every push and check here: a run that crosses midnight (UTC) must not see two date tags."""
    monkeypatch.setattr(publish, "today", lambda: dt.date(2026, 11, 28))


def fetch(registry, repository, path, accept=None):
    """(content type, body) straight from the registry's HTTP API: the tests check publish with urllib alone."""
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read()


def catalog_tags(registry, repository):
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=5) as response:
            return sorted(json.load(response).get("tags") or [])
    except urllib.error.HTTPError:  # no such repository yet
        return []


@pytest.fixture
def verified(reported, client):
    """The same, with the row's tag on it for this test: another session sharing the engine may have moved it."""
    client.api.tag(reported.image_id, "fleetbake/worker", "debian-12")
    return reported


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("publish-matrix") / "matrix.yml"
    path.write_text(ROWS)
    return matrix.load(path)


@pytest.fixture(scope="module")
def small(client, rows, tmp_path_factory):
    """The small row, built by fleetbake (contexts and bootstrap under a temporary build dir); removed at the end."""
    remove_images(client, [SMALL])
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path_factory.mktemp("publish-build")))
            [result] = build.build(rows, rows.select(SMALL), log=print)
        yield result
    finally:
        remove_images(client, [SMALL])


def test_a_verified_image_is_pushed_under_its_tags_and_its_index_and_pulls_back_identical(
        registry, amd64_project, verified, client):
    image = verified
    row = amd64_project.rows["debian-12"]
    [done] = publish.publish(amd64_project, [row], f"{registry}/fleetbake", log=print)
    [amd64] = done.arches
    assert done.skipped is None and done.digest.startswith("sha256:") and amd64.digest.startswith("sha256:")
    tags = catalog_tags(registry, "fleetbake/worker")
    # The index's two tags, the image's two, and the referrers fallback tag listing the image's report.
    assert tags == sorted([*publish.index_tags(row), *publish.arch_tags(row.on("amd64"), image.inputs_hash),
                           "sha256-" + amd64.digest.split(":")[1]]), tags

    ref = f"{registry}/fleetbake/worker:debian-12"
    assert client.api.inspect_distribution(ref)["Descriptor"]["digest"] == done.digest
    pulled = client.images.pull(f"{registry}/fleetbake/worker", tag="debian-12")  # the index: this host's entry
    assert pulled.id == image.image_id
    assert f"{registry}/fleetbake/worker@{done.digest}" in pulled.attrs["RepoDigests"]


def test_an_unverified_image_is_refused_and_nothing_is_pushed(registry, client, write_matrix, build_dir):
    m = matrix.load(write_matrix(MINIMAL.replace("debian-12:", "unverified-row:")))
    image, _ = client.images.build(fileobj=io.BytesIO(b"FROM debian:12\nLABEL io.fleetbake.inputs-hash=abc "
                                                      b"io.fleetbake.arch=amd64\n"),
                                   tag="fleetbake/worker:unverified-row-amd64", rm=True)
    assert record.status(image.id) == ([], [])
    with pytest.raises(publish.PublishError,
                       match="refusing to publish unverified-row: amd64: .* no passing verification record"):
        publish.publish(m, m.select("unverified-row"), f"{registry}/fleetbake", log=print)
    assert not [t for t in catalog_tags(registry, "fleetbake/worker") if t.startswith("unverified-row")]
    client.images.remove("fleetbake/worker:unverified-row-amd64", force=True)


def test_an_image_whose_verification_failed_is_refused_and_nothing_is_pushed(registry, rows, small, build_dir):
    [result] = verify.verify(rows, rows.rows[SMALL], ["too-new"], log=print)
    assert not result.passed and result.reason.startswith("needs CPython >= 3.99, the source is 3.")
    written = json.loads(result.record.read_text())
    assert written["passed"] is False and written["image_id"] == small.image_id
    assert result.record.parent == record.report_dir(small.image_id) and build_dir in result.record.parents
    assert record.status(small.image_id) == ([], ["too-new"])

    refusal = f"refusing to publish {SMALL}: amd64: {small.image_id[:19]} failed verification (too-new)"
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
    assert results[SMALL].skipped == (f"amd64: {small.image_id[:19]} has no passing verification record: "
                                      f"run `invoke verify --os {SMALL}`")
    assert results[UNBUILT].skipped == f"amd64: image fleetbake/worker:{UNBUILT}-amd64 is not built here"
    assert [line for line in lines if ": skipped: " in line] == [
        f"{SMALL}: skipped: {results[SMALL].skipped}", f"{UNBUILT}: skipped: {results[UNBUILT].skipped}"]
    tags = catalog_tags(registry, "fleetbake/worker")
    row = rows.rows["debian-12"]
    assert {*publish.index_tags(row), *publish.arch_tags(row, verified.inputs_hash)} <= set(tags)
    assert not [t for t in tags if t.startswith(("fbtest-", SMALL, UNBUILT))], tags


def test_push_errors_are_raised(client, image):
    """Nothing listens on 127.0.0.1:1: docker-py reports that in the stream, not as an exception."""
    client.api.tag(image.image_id, "127.0.0.1:1/x/worker", "debian-12")
    try:
        with pytest.raises(publish.PublishError, match="push 127.0.0.1:1/x/worker:debian-12 failed: .*connection refused"):
            publish._push(client.api, "127.0.0.1:1/x/worker", "debian-12", print)
    finally:
        client.images.remove("127.0.0.1:1/x/worker:debian-12")


def test_the_report_is_pushed_as_an_oci_artifact_referring_to_the_pushed_image(registry, amd64_project, verified,
                                                                               client):
    [row_done] = publish.publish(amd64_project, [amd64_project.rows["debian-12"]], f"{registry}/record", log=print)
    [done] = row_done.arches
    assert row_done.pushed and done.artifact.startswith("sha256:")
    assert client.api.inspect_distribution(f"{registry}/record/worker:debian-12-amd64")["Descriptor"]["digest"] == \
        done.digest
    image_type, image_manifest = fetch(registry, "record/worker", f"manifests/{done.digest}",
                                       "application/vnd.docker.distribution.manifest.v2+json")
    assert "sha256:" + hashlib.sha256(image_manifest).hexdigest() == done.digest

    content_type, body = fetch(registry, "record/worker", f"manifests/{done.artifact}",
                               "application/vnd.oci.image.manifest.v1+json")
    assert "sha256:" + hashlib.sha256(body).hexdigest() == done.artifact
    artifact = json.loads(body)
    assert content_type == artifact["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert artifact["artifactType"] == publish.ARTIFACT_TYPE
    assert artifact["subject"] == {"mediaType": image_type, "digest": done.digest, "size": len(image_manifest)}
    assert artifact["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                                  "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}
    assert fetch(registry, "record/worker", f"blobs/{artifact['config']['digest']}")[1] == b"{}"
    titles = [layer["annotations"]["org.opencontainers.image.title"] for layer in artifact["layers"]]
    # The report, then every passing verification record of this image (what `invoke update` checks).
    passed, failed = record.status(verified.image_id)
    assert passed and not failed
    assert titles == ["sbom.spdx.json", "software.json", "software.md", *(f"verification/{c}.json" for c in passed)]
    assert artifact["layers"][0]["mediaType"] == "application/spdx+json"
    assert {layer["mediaType"] for layer in artifact["layers"][3:]} == {"application/vnd.fleetbake.verification.v1+json"}
    for layer in artifact["layers"]:
        title = layer["annotations"]["org.opencontainers.image.title"]
        local = (record.report_dir(verified.image_id) / title.removeprefix("verification/") if title.startswith(
            "verification/") else record.image_dir(verified.image_id) / title).read_bytes()
        assert fetch(registry, "record/worker", f"blobs/{layer['digest']}")[1] == local
        assert layer["size"] == len(local)
    assert all(json.loads(fetch(registry, "record/worker", f"blobs/{layer['digest']}")[1])["passed"] is True
               for layer in artifact["layers"][3:])

    # distribution 2.8 has no referrers API: the fallback tag sha256-<hex> holds an index listing the artifact.
    tag = "sha256-" + done.digest.split(":")[1]
    assert tag in catalog_tags(registry, "record/worker")
    content_type, body = fetch(registry, "record/worker", f"manifests/{tag}", "application/vnd.oci.image.index.v1+json")
    index = json.loads(body)
    assert content_type == index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["manifests"] == [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": done.artifact,
                                   "size": len(fetch(registry, "record/worker", f"manifests/{done.artifact}",
                                                     "application/vnd.oci.image.manifest.v1+json")[1]),
                                   "artifactType": publish.ARTIFACT_TYPE}]


def test_publishing_an_image_the_registry_already_has_pushes_nothing(registry_server, amd64_project, verified):
    registry, root = registry_server
    [first] = publish.publish(amd64_project, [amd64_project.rows["debian-12"]], f"{registry}/again", log=print)
    assert first.pushed and len(first.refs) == 2 and len(first.arches[0].refs) == 2
    before, tags = snapshot(root), catalog_tags(registry, "again/worker")

    cli = invoke("publish", "--os", "debian-12", "--registry", f"{registry}/again", "--json",
                 "--matrix", str(amd64_project.path))
    assert cli.returncode == 0, cli.stderr
    [again] = json.loads(cli.stdout)  # stdout is the JSON alone: the log goes to stderr
    assert again == {**first.to_json(), "pushed": False, "unchanged": True, "refs": [],
                     "arches": [{**first.arches[0].to_json(), "pushed": False, "unchanged": True, "refs": []}]}
    assert again["digest"] == first.digest and again["arches"][0]["artifact"] == first.arches[0].artifact
    assert f"debian-12: {registry}/again/worker:debian-12-amd64 already holds {verified.image_id[:19]} and its " \
           f"report ({first.arches[0].digest}); not pushed again" in cli.stderr.splitlines()
    assert f"debian-12: {registry}/again/worker:debian-12 already holds the index of amd64 ({first.digest}), each " \
           "image with its report; nothing pushed" in cli.stderr.splitlines()
    assert "pushing" not in cli.stderr
    assert snapshot(root) == before  # no blob, manifest or tag written, not even the same bytes again
    assert catalog_tags(registry, "again/worker") == tags


def test_an_image_without_its_report_is_refused_and_nothing_is_pushed(registry, amd64_project, verified, tmp_path):
    """Its verification records (copied, real) without invoke report's files: publish names the missing step."""
    shutil.copytree(record.report_dir(verified.image_id), tmp_path / "reports" / record.report_dir(verified.image_id).name,
                    ignore=shutil.ignore_patterns(record.IMAGE_DIR))
    cli = invoke("publish", "--os", "debian-12", "--registry", f"{registry}/unreported",
                 "--matrix", str(amd64_project.path), env={"FLEETBAKE_BUILD_DIR": str(tmp_path)})
    assert cli.returncode == 1 and cli.stderr.splitlines() == [
        f"error: refusing to publish debian-12: amd64: {verified.image_id[:19]} has no report (sbom.spdx.json, software.json, "
        "software.md missing): run `invoke report --os debian-12` first"], (cli.stdout, cli.stderr)
    assert catalog_tags(registry, "unreported/worker") == []


def push_another_night(registry, namespace, software_report, scratch):
    """An image of debian-12 as another night pushed it: a config of its own (another image ID) and, unless
    software_report is None, a report with that software.json, pushed by publish's own push_report."""
    remote = oci.Registry(registry, f"{namespace}/worker")
    config = remote.push_blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"night": namespace}},
                                          "rootfs": {"type": "layers", "diff_ids": []}}).encode(),
                              "application/vnd.oci.image.config.v1+json")
    image = remote.put_manifest({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config.to_json(),
                                 "layers": []}, "debian-12")
    if software_report is not None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("FLEETBAKE_BUILD_DIR", str(scratch))
            folder = record.image_dir(config.digest)
            folder.mkdir(parents=True)
            for name, _ in publish.REPORT_LAYERS:
                (folder / name).write_text(json.dumps(software_report) if name == software.REPORT_JSON else name)
            publish.push_report(remote, image.digest, config.digest)
    return config.digest


def test_report_against_a_registry_says_what_changed_since_the_image_published_there(registry, verified, tmp_path):
    """The nightly's case: the runner starts empty, and the previous image is the one in the registry."""
    mine = json.loads((record.image_dir(verified.image_id) / software.REPORT_JSON).read_text())
    older = copy.deepcopy(mine)
    first, second = sorted(mine["packages"])[:2]
    del older["packages"][first]
    older["packages"][second] = "0.0-1"
    older["packages"]["fbtest-removed"] = "1.0"
    old_id = push_another_night(registry, "nights", older, tmp_path / "night")

    # On a copy of the image's records: this run's changes.md is not the one build/reports/ should keep.
    folder = record.report_dir(verified.image_id)
    shutil.copytree(folder, tmp_path / "reports" / folder.name)
    cli = invoke("report", "--os", "debian-12", "--image", verified.image_id, "--against", f"{registry}/nights/",
                 env={"FLEETBAKE_BUILD_DIR": str(tmp_path)})
    assert cli.returncode == 0, cli.stderr
    changes = (tmp_path / "reports" / folder.name / record.IMAGE_DIR / report.CHANGES_MD).read_text()
    assert cli.stdout.endswith(changes)  # after the log lines: the job summary takes changes.md
    lines = changes.splitlines()
    assert lines[0] == (f"Changes from `{old_id[:19]}` ({registry}/nights/worker:debian-12) "
                        f"to `{verified.image_id[:19]}`:")
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| change")]
    assert rows == [f"| added | {first} |  | {mine['packages'][first]} |", "| removed | fbtest-removed | 1.0 |  |",
                    f"| upgraded | {second} | 0.0-1 | {mine['packages'][second]} |"]


def test_report_against_a_registry_with_no_image_the_same_image_or_one_without_a_report(
        registry, amd64_project, verified, tmp_path):
    image_id = verified.image_id
    mine = json.loads((record.image_dir(image_id) / software.REPORT_JSON).read_text())
    assert publish.fetch_published(f"{registry}/empty", "debian-12", AMD64) is None
    assert report.changes_since_published("debian-12", image_id, mine, f"{registry}/empty", AMD64) == (
        f"debian-12: `{image_id[:19]}`; {registry}/empty/worker:debian-12 holds no image yet, "
        "so there is nothing to compare with.\n")

    publish.publish(amd64_project, [amd64_project.rows["debian-12"]], f"{registry}/same", log=print)
    # The row's tag is an index now: its entry for the platform.
    assert publish.fetch_published(f"{registry}/same", "debian-12", AMD64) == publish.PublishedImage(
        f"{registry}/same/worker:debian-12 (linux/amd64)", image_id, mine)
    assert report.changes_since_published("debian-12", image_id, mine, f"{registry}/same", AMD64) == (
        f"debian-12: `{image_id[:19]}` is the image {registry}/same/worker:debian-12 (linux/amd64) already holds: "
        "nothing changed.\n")
    # An index without the platform (a new architecture's first night): nothing of it to compare with.
    with pytest.raises(oci.NoPlatform, match=rf"^{registry}/same/worker:debian-12 is an index with no image for "
                                             r"linux/arm64/v8 \(it lists linux/amd64\)$"):
        oci.Registry(registry, "same/worker").resolve("debian-12", "linux/arm64/v8")
    assert publish.fetch_published(f"{registry}/same", "debian-12", "linux/arm64/v8") is None

    bare = push_another_night(registry, "bare", None, tmp_path)
    assert publish.fetch_published(f"{registry}/bare", "debian-12", AMD64).software is None
    assert report.changes_since_published("debian-12", image_id, mine, f"{registry}/bare", AMD64) == (
        f"debian-12: {registry}/bare/worker:debian-12 holds `{bare[:19]}`, pushed without a software report, "
        f"so there is nothing to compare `{image_id[:19]}` with.\n")

    for namespace, broken in (("broken", {"packages": "not a table"}), ("broken2", {"packages": {}, "worker": []})):
        push_another_night(registry, namespace, broken, tmp_path / namespace)
        with pytest.raises(publish.PublishError, match=rf"/{namespace}/worker:debian-12: software.json in its report "
                                                       r"sha256:\w+ is not a fleetbake software report"):
            publish.fetch_published(f"{registry}/{namespace}", "debian-12", AMD64)
    # The report stands and says so (the nightly must still publish the image that would mend the tag).
    lines = []
    summary = report.changes_since_published("debian-12", image_id, mine, f"{registry}/broken", AMD64,
                                             log=lines.append)
    assert summary.startswith(f"debian-12: `{image_id[:19]}`; **could not compare with the published image**: "
                              f"{registry}/broken/worker:debian-12: software.json in its report sha256:")
    assert lines == [f"warning: debian-12: could not compare with the published image: {summary.split('**: ')[1].strip()}"]
    assert "could not compare" in report.changes_since_published("debian-12", image_id, mine, "127.0.0.1:1/down", AMD64,
                                                                 print)


# --- one row, two architectures: the multi-arch index ------------------------------------------------------------

MULTI = "fbtest-multiarch"
MULTI_ROWS = f"""\
smoke: [test_sys]
configurations:
  pydebug:
    configure: [--with-pydebug]
rows:
  {MULTI}:
    family: debian
    base: debian:12
    packages: [netbase]
    configurations: [pydebug]
    arches: [amd64, arm64]
"""


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    path = tmp_path_factory.mktemp("multi-matrix") / "matrix.yml"
    path.write_text(MULTI_ROWS)
    return matrix.load(path)


def tiny_image(row, scratch):
    """A one-file image of the row on its architecture, under the names a build gives it here (identity.image_tags),
    with the labels publish reads: its config says the architecture, as an emulated build's does."""
    arch = row.architecture
    layer = scratch / f"{arch.name}.tar"
    data = f"{row.name} on {arch.platform}\n".encode()
    with tarfile.open(layer, "w") as archive:
        info = tarfile.TarInfo("etc/fleetbake-arch")
        info.size, info.mtime = len(data), 0
        archive.addfile(info, io.BytesIO(data))
    inputs = hashlib.sha256(f"tiny {arch.name}".encode()).hexdigest()
    config = {"architecture": arch.name, **({"variant": arch.variant} if arch.variant else {}), "os": "linux",
              "created": "1970-01-01T00:00:00Z",
              "config": {"Cmd": ["/nothing"], "Labels": {identity.ARCH_LABEL: arch.name, identity.INPUTS_LABEL: inputs,
                                                         "io.fleetbake.row": row.name}},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()]}}
    # A second name: a test untags the first and the image stays.
    tags = [*identity.image_tags(row), identity.content_tag(row, inputs)]
    return engine.load_config(config, tags, [layer], f"{row.name} {arch.name}", scratch)


@pytest.fixture(scope="module")
def tiny(client, multi, tmp_path_factory):
    """{arch: image ID} of the row's two images; removed at the end."""
    scratch = tmp_path_factory.mktemp("tiny")
    row = multi.rows[MULTI]
    remove_images(client, [MULTI])
    try:
        yield {arch: tiny_image(row.on(arch), scratch) for arch in row.spec.arches}
    finally:
        remove_images(client, [MULTI])


@pytest.fixture
def ready(tiny, multi, client, build_dir):
    """Both images with a passing record (its platform block, as verify writes it) and a report, in a build dir of
    the test's own; the row's names on them again (a test may have moved one)."""
    row = multi.rows[MULTI]
    for arch, image_id in tiny.items():
        for tag in identity.image_tags(row.on(arch)):
            client.images.get(image_id).tag(*tag.split(":"))
        record.write(image_id, "pydebug", {"row": MULTI, "passed": True, "reason": "ok",
                                           "platform": {"arch": arch, "platform": row.on(arch).architecture.platform}})
        folder = record.image_dir(image_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, _ in publish.REPORT_LAYERS:
            text = json.dumps({"packages": {"netbase": f"6.4-{arch}"}}) if name == software.REPORT_JSON else name
            (folder / name).write_text(text)
    return tiny


def test_the_index_lists_each_platform_and_each_image_has_its_own_report(registry, multi, ready, client):
    row = multi.rows[MULTI]
    [done] = publish.publish(multi, [row], f"{registry}/multi", log=print)
    assert done.pushed and [a.arch for a in done.arches] == ["amd64", "arm64"]
    amd, arm = done.arches
    inputs = {arch: client.images.get(image).labels[identity.INPUTS_LABEL] for arch, image in ready.items()}
    assert catalog_tags(registry, "multi/worker") == sorted([
        *publish.index_tags(row), *(t for a in ("amd64", "arm64") for t in publish.arch_tags(row.on(a), inputs[a])),
        *("sha256-" + a.digest.split(":")[1] for a in done.arches)])
    assert done.refs == [f"{registry}/multi/worker:{t}" for t in publish.index_tags(row)]

    # The index, as the registry serves it: OCI's media type, one entry per architecture with its platform.
    content_type, body = fetch(registry, "multi/worker", f"manifests/{MULTI}", oci.OCI_INDEX)
    index = json.loads(body)
    assert content_type == index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert "sha256:" + hashlib.sha256(body).hexdigest() == done.digest
    assert [(m["digest"], m["platform"]) for m in index["manifests"]] == [
        (amd.digest, {"architecture": "amd64", "os": "linux"}),
        (arm.digest, {"architecture": "arm64", "os": "linux", "variant": "v8"})]
    assert fetch(registry, "multi/worker", f"manifests/{MULTI}-20261128", oci.OCI_INDEX)[1] == body
    for entry, (arch, image_id) in zip(index["manifests"], ready.items()):
        content_type, manifest = fetch(registry, "multi/worker", f"manifests/{entry['digest']}", entry["mediaType"])
        assert (content_type, len(manifest)) == (entry["mediaType"], entry["size"])
        assert json.loads(manifest)["config"]["digest"] == image_id  # the local image, as it is
        # Its report: that architecture's files and records, its manifest the subject.
        [listed] = artifact.reports(oci.Registry(registry, "multi/worker"), entry["digest"])
        found = json.loads(fetch(registry, "multi/worker", f"manifests/{listed}", oci.OCI_MANIFEST)[1])
        assert found["subject"]["digest"] == entry["digest"]
        [software_layer] = [layer for layer in found["layers"]
                            if layer["annotations"][publish.TITLE] == software.REPORT_JSON]
        assert json.loads(fetch(registry, "multi/worker", f"blobs/{software_layer['digest']}")[1])["packages"] == {
            "netbase": f"6.4-{arch}"}
        [records] = artifact.layers(found, artifact.RECORD_TYPE)
        written = json.loads(fetch(registry, "multi/worker", f"blobs/{records['digest']}")[1])
        assert (written["image_id"], written["platform"]["arch"]) == (image_id, arch)

    # Readers follow the index to their platform: update's verdict, report --against, docker pull.
    remote = oci.Registry(registry, "multi/worker")
    for platform, image_id, digest in (("linux/amd64", ready["amd64"], amd.digest),
                                       ("linux/arm64/v8", ready["arm64"], arm.digest)):
        verdict = artifact.verdict(remote, MULTI, platform)
        assert (verdict.digest, verdict.image_id, verdict.refusal, verdict.passed) == (digest, image_id, None,
                                                                                       ("pydebug",))
        assert publish.fetch_published(f"{registry}/multi", MULTI, platform).image_id == image_id
    assert artifact.verdict(remote, MULTI, "linux/s390x").refusal == (
        f"{registry}/multi/worker:{MULTI} is an index with no image for linux/s390x (it lists linux/amd64, "
        "linux/arm64/v8)")
    pulled = client.images.pull(f"{registry}/multi/worker", tag=MULTI)
    assert pulled.id == ready["amd64"]  # this host's


def test_publishing_the_row_again_pushes_nothing_and_json_lists_each_digest(registry_server, multi, ready, build_dir):
    registry, root = registry_server
    [first] = publish.publish(multi, [multi.rows[MULTI]], f"{registry}/twice", log=print)
    before = snapshot(root)
    cli = invoke("publish", "--os", MULTI, "--registry", f"{registry}/twice", "--json", "--matrix", str(multi.path),
                 env={"FLEETBAKE_BUILD_DIR": str(build_dir)})
    assert cli.returncode == 0, cli.stderr
    [again] = json.loads(cli.stdout)
    assert (again["pushed"], again["unchanged"], again["digest"], again["refs"]) == (False, True, first.digest, [])
    fields = ("arch", "platform", "image_id", "digest", "artifact", "unchanged")
    assert [tuple(a[f] for f in fields) for a in again["arches"]] == [
        (a.arch, a.platform, ready[a.arch], a.digest, a.artifact, True) for a in first.arches]
    assert snapshot(root) == before  # no blob, manifest or tag written


@pytest.mark.parametrize("case", ["missing", "failed", "wrong architecture"])
def test_an_architecture_not_ready_means_nothing_is_pushed_and_one_line_says_why(
        case, registry_server, multi, ready, client, build_dir):
    registry, root = registry_server
    arm_tag = identity.arch_tag(multi.rows[MULTI].on("arm64"))
    if case == "missing":
        client.images.remove(arm_tag)
        why = f"arm64: image {arm_tag} is not built here"
    elif case == "failed":
        record.write(ready["arm64"], "pydebug", {"row": MULTI, "passed": False, "reason": "test_sys failed"})
        why = f"arm64: {ready['arm64'][:19]} failed verification (pydebug)"
    else:  # the amd64 image under the arm64 image's name
        client.images.get(ready["amd64"]).tag(*arm_tag.split(":"))
        why = f"arm64: image {arm_tag} ({ready['amd64'][:19]}) is an image of linux/amd64, not linux/arm64/v8"
    before = snapshot(root)
    cli = invoke("publish", "--os", MULTI, "--registry", f"{registry}/notready", "--matrix", str(multi.path),
                 env={"FLEETBAKE_BUILD_DIR": str(build_dir)})
    assert (cli.returncode, cli.stderr.splitlines()) == (1, [f"error: refusing to publish {MULTI}: {why}"]), cli.stdout
    assert "pushing" not in cli.stdout
    assert catalog_tags(registry, "notready/worker") == []
    assert snapshot(root) == before  # not even the amd64 image's blobs


def test_update_pulls_this_hosts_image_from_the_index(registry, multi, ready, client, tmp_path):
    """update.py as a host runs it (/usr/bin/python3 -I, --dry-run): a container of the row's arm64 image is to move
    to the index's entry for this host's platform, by that manifest's digest."""
    [done] = publish.publish(multi, [multi.rows[MULTI]], f"{registry}/upd-multi", log=print)
    mine = next(a for a in done.arches if a.platform == update.host_platform())
    container = client.containers.create(ready["arm64"], name=f"fbtest-multi-{SESSION[:8]}",
                                         labels={TEST_LABEL: SESSION})
    try:
        result = subprocess.run(["/usr/bin/python3", "-I", str(ROOT / "fleetbake" / "operate" / "update.py"),
                                 "--container", container.name, "--registry", f"{registry}/upd-multi", "--dry-run",
                                 "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=120)
    finally:
        container.remove(force=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{container.name}: would pull {registry}/upd-multi/worker@{mine.digest} ({ready[mine.arch][:19]})" in \
        result.stdout.splitlines(), result.stdout
