"""Publishing to a real local registry (Debian's docker-registry on 127.0.0.1)."""

import copy
import datetime as dt
import hashlib
import io
import json
import shutil
import urllib.error
import urllib.request

import pytest

from conftest import MINIMAL, snapshot
from fleetbake.pipeline import build, matrix, publish, record, registry as oci, report, software, verify
from integration.test_build_cli import remove_images
from test_cli import invoke

SMALL = "fbtest-publish-small"  # built here, by fleetbake
# The real row's base (shared, never removed here), with its own bootstrap: made as that row makes it if missing.
SMALL_BASE = "debian:12"
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


def test_a_verified_image_is_pushed_with_three_tags_and_pulls_back_identical(registry, live_project, verified, client):
    image = verified
    row = live_project.rows["debian-12"]
    [done] = publish.publish(live_project, [row], f"{registry}/fleetbake", log=print)
    assert done.skipped is None and done.digest.startswith("sha256:")
    tags = catalog_tags(registry, "fleetbake/worker")
    # The three tags, and the referrers fallback tag listing the image's report (the next test reads it).
    assert tags == sorted([*publish.tags_for(row, image.inputs_hash), "sha256-" + done.digest.split(":")[1]]), tags

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


def test_the_report_is_pushed_as_an_oci_artifact_referring_to_the_pushed_image(registry, live_project, verified, client):
    [done] = publish.publish(live_project, [live_project.rows["debian-12"]], f"{registry}/record", log=print)
    assert done.pushed and done.artifact.startswith("sha256:")
    assert client.api.inspect_distribution(f"{registry}/record/worker:debian-12")["Descriptor"]["digest"] == done.digest
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


def test_publishing_an_image_the_registry_already_has_pushes_nothing(registry_server, live_project, verified):
    registry, root = registry_server
    [first] = publish.publish(live_project, [live_project.rows["debian-12"]], f"{registry}/again", log=print)
    assert first.pushed and len(first.refs) == 3
    before, tags = snapshot(root), catalog_tags(registry, "again/worker")

    cli = invoke("publish", "--os", "debian-12", "--registry", f"{registry}/again", "--json")
    assert cli.returncode == 0, cli.stderr
    [again] = json.loads(cli.stdout)  # stdout is the JSON alone: the log goes to stderr
    assert again == {**first.to_json(), "pushed": False, "unchanged": True, "refs": []}
    assert again["digest"] == first.digest and again["artifact"] == first.artifact
    assert f"debian-12: {registry}/again/worker:debian-12 already holds {verified.image_id[:19]} and its report " \
           f"({first.digest}); nothing pushed" in cli.stderr.splitlines()
    assert "pushing" not in cli.stderr
    assert snapshot(root) == before  # no blob, manifest or tag written, not even the same bytes again
    assert catalog_tags(registry, "again/worker") == tags


def test_an_image_without_its_report_is_refused_and_nothing_is_pushed(registry, verified, tmp_path):
    """Its verification records (copied, real) without invoke report's files: publish names the missing step."""
    shutil.copytree(record.report_dir(verified.image_id), tmp_path / "reports" / record.report_dir(verified.image_id).name,
                    ignore=shutil.ignore_patterns(record.IMAGE_DIR))
    cli = invoke("publish", "--os", "debian-12", "--registry", f"{registry}/unreported",
                 env={"FLEETBAKE_BUILD_DIR": str(tmp_path)})
    assert cli.returncode == 1 and cli.stderr.splitlines() == [
        f"error: refusing to publish debian-12: {verified.image_id[:19]} has no report (sbom.spdx.json, software.json, "
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
        registry, live_project, verified, tmp_path):
    image_id = verified.image_id
    mine = json.loads((record.image_dir(image_id) / software.REPORT_JSON).read_text())
    assert publish.fetch_published(f"{registry}/empty", "debian-12") is None
    assert report.changes_since_published("debian-12", image_id, mine, f"{registry}/empty") == (
        f"debian-12: `{image_id[:19]}`; {registry}/empty/worker:debian-12 holds no image yet, "
        "so there is nothing to compare with.\n")

    publish.publish(live_project, [live_project.rows["debian-12"]], f"{registry}/same", log=print)
    assert publish.fetch_published(f"{registry}/same", "debian-12") == publish.PublishedImage(
        f"{registry}/same/worker:debian-12", image_id, mine)
    assert report.changes_since_published("debian-12", image_id, mine, f"{registry}/same") == (
        f"debian-12: `{image_id[:19]}` is the image {registry}/same/worker:debian-12 already holds: nothing changed.\n")

    bare = push_another_night(registry, "bare", None, tmp_path)
    assert publish.fetch_published(f"{registry}/bare", "debian-12").software is None
    assert report.changes_since_published("debian-12", image_id, mine, f"{registry}/bare") == (
        f"debian-12: {registry}/bare/worker:debian-12 holds `{bare[:19]}`, pushed without a software report, "
        f"so there is nothing to compare `{image_id[:19]}` with.\n")

    for namespace, broken in (("broken", {"packages": "not a table"}), ("broken2", {"packages": {}, "worker": []})):
        push_another_night(registry, namespace, broken, tmp_path / namespace)
        with pytest.raises(publish.PublishError, match=rf"/{namespace}/worker:debian-12: software.json in its report "
                                                       r"sha256:\w+ is not a fleetbake software report"):
            publish.fetch_published(f"{registry}/{namespace}", "debian-12")
    # The report stands and says so (the nightly must still publish the image that would mend the tag).
    lines = []
    summary = report.changes_since_published("debian-12", image_id, mine, f"{registry}/broken", log=lines.append)
    assert summary.startswith(f"debian-12: `{image_id[:19]}`; **could not compare with the published image**: "
                              f"{registry}/broken/worker:debian-12: software.json in its report sha256:")
    assert lines == [f"warning: debian-12: could not compare with the published image: {summary.split('**: ')[1].strip()}"]
    assert "could not compare" in report.changes_since_published("debian-12", image_id, mine, "127.0.0.1:1/down", print)
