"""Publish verified images: never push what was not tested, nor without its record (pypa/manylinux's rule).

`invoke publish --os ROW --registry HOST[:PORT]/NAMESPACE` pushes
<registry>/worker:<row>, :<row>-<YYYYMMDD> and :<row>-<inputs hash>, but only for
an image ID that has a passing verification record, no failing one, and a report
(`invoke report`: SBOM and software report). Then it pushes that report and the
verification records as an OCI artifact whose `subject` is the pushed image, listed
under the referrers fallback tag sha256-<image manifest hex> (artifact.py). When the
row's tag already holds this image ID and its report, nothing is pushed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Callable

from docker.errors import APIError, DockerException, ImageNotFound

from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import artifact, engine, families, identity, record, registry as oci, sbom, software
from fleetbake.pipeline.matrix import Matrix, RowView

Log = Callable[[str], None]
REGISTRY = oci.REGISTRY_NAMESPACE
ARTIFACT_TYPE, TITLE = artifact.ARTIFACT_TYPE, artifact.TITLE
# The report files the artifact carries, in this order, with their media types (IANA's where there is one);
# the verification records follow them.
REPORT_LAYERS = ((sbom.SBOM, artifact.SPDX_TYPE),
                 (software.REPORT_JSON, "application/vnd.fleetbake.software.v1+json"),
                 (software.REPORT_MD, "text/markdown"))


class PublishError(FleetbakeError):
    pass


@dataclass
class Published:
    row: str
    refs: list[str] = field(default_factory=list)
    digest: str | None = None  # the image manifest's, as pushed (or as the registry already had it)
    skipped: str | None = None  # why nothing was pushed: a refusal
    repository: str | None = None
    artifact: str | None = None  # the report artifact's manifest digest
    unchanged: bool = False  # the registry already had this image and its report: nothing was pushed

    @property
    def pushed(self) -> bool:
        return self.skipped is None and not self.unchanged and self.digest is not None

    def to_json(self) -> dict:
        return {"row": self.row, "pushed": self.pushed, "unchanged": self.unchanged, "skipped": self.skipped,
                "repository": self.repository, "digest": self.digest, "artifact": self.artifact, "refs": self.refs}


def today() -> dt.date:
    """The day in the date tag: UTC, so every runner of one night agrees."""
    return dt.datetime.now(dt.timezone.utc).date()


def tags_for(row: RowView, inputs_hash: str, day: dt.date | None = None) -> list[str]:
    day = (day or today()).strftime("%Y%m%d")
    return [row.name, f"{row.name}-{day}", f"{row.name}-{inputs_hash[:16]}"]


def _check_registry(registry: str, flag: str = "--registry") -> str:
    registry = registry.rstrip("/")
    if not REGISTRY.fullmatch(registry):
        raise UsageError(f"{flag} {registry!r}: expected HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python")
    return registry


def repository_of(registry: str, flag: str = "--registry") -> str:
    """REGISTRY/NAMESPACE/worker, the images' repository (a usage error naming `flag` for a malformed one)."""
    return f"{_check_registry(registry, flag)}/worker"


def _remote(registry: str, flag: str = "--registry") -> tuple[str, oci.Registry]:
    """The worker repository under REGISTRY/NAMESPACE, and a client for it."""
    repository = repository_of(registry, flag)
    host, _, path = repository.partition("/")
    return repository, oci.Registry(host, path)


def publish_row(row: RowView, registry: str, log: Log = print) -> Published:
    result = Published(row.name)
    tag = identity.image_tag(row)
    try:
        image = engine.client().images.get(tag)
    except ImageNotFound:
        result.skipped = f"{tag} is not built here"
        return result
    passed, failed = record.status(image.id)
    if failed:
        result.skipped = f"{image.id[:19]} failed verification ({', '.join(failed)})"
        return result
    if not passed:
        result.skipped = f"{image.id[:19]} has no passing verification record: run `invoke verify --os {row.name}`"
        return result
    # Windows images have no software report or SBOM yet (report.py reads a Linux image's packages).
    reported = not families.family_of(row).windows
    missing = [name for name, _ in REPORT_LAYERS if not (record.image_dir(image.id) / name).is_file()] if reported else []
    if missing:
        result.skipped = (f"{image.id[:19]} has no report ({', '.join(missing)} missing): "
                          f"run `invoke report --os {row.name}` first")
        return result
    inputs = image.labels.get(identity.INPUTS_LABEL)
    if not inputs:
        result.skipped = f"{image.id[:19]} has no {identity.INPUTS_LABEL} label: not built by fleetbake"
        return result
    repository, remote = _remote(registry)
    result.repository = repository
    current = published(remote, row.name, image.id, reported)
    if current:
        result.unchanged, result.digest, result.artifact = True, current[0], current[1]
        log(f"{row.name}: {repository}:{row.name} already holds {image.id[:19]}{' and its report' if reported else ''} "
            f"({current[0]}); nothing pushed")
        return result
    log(f"{row.name}: {image.id[:19]} verified ({', '.join(passed)}); pushing to {repository}")
    api = engine.client().api
    for name in tags_for(row, inputs):
        api.tag(image.id, repository, name)
        result.digest = _push(api, repository, name, log)
        result.refs.append(f"{repository}:{name}")
    log(f"{row.name}: pushed {', '.join(result.refs)} @ {result.digest}")
    if not reported:
        log(f"{row.name}: no report pushed: fleetbake makes no software report or SBOM of Windows images yet")
        return result
    result.artifact = push_report(remote, result.digest, image.id)
    log(f"{row.name}: pushed its report {repository}@{result.artifact} (referrers tag "
        f"{oci.referrers_tag(result.digest)})")
    return result


def published(remote: oci.Registry, tag: str, image_id: str, reported: bool = True) -> tuple[str, str | None] | None:
    """(image manifest digest, report artifact digest) when `tag` already holds this image ID (its config digest)
    and the referrers tag lists its report; else None, and publishing goes ahead (a push that stopped half-way
    gets its report on the next run)."""
    found = remote.get_manifest(tag)
    if not found or artifact.image_id(found[1]) != image_id:
        return None
    if not reported:
        return found[0].digest, None
    reports = artifact.reports(remote, found[0].digest)
    latest = remote.get_manifest(reports[-1]) if reports else None
    # A report pushed before it carried the records (or a half-pushed one) is pushed again, with them.
    return (found[0].digest, reports[-1]) if latest and artifact.layers(latest[1], artifact.RECORD_TYPE) else None


@dataclass
class PublishedImage:
    """What the registry holds under a row's tag: the image ID, and its software report if one was pushed."""
    ref: str
    image_id: str
    software: dict | None


def fetch_published(registry: str, row: str) -> PublishedImage | None:
    """The image REGISTRY/NAMESPACE/worker:ROW and its report's software.json; None when the tag is not there.
    What `invoke report --against` compares with: a nightly runner starts empty, the registry is its memory.
    The image ID is the manifest's config digest, as for `published`."""
    repository, remote = _remote(registry, "--against")
    ref = f"{repository}:{row}"
    found = remote.get_manifest(row)
    if found is None:
        return None
    descriptor, manifest = found
    image_id = artifact.image_id(manifest)
    if image_id is None:
        raise PublishError(f"{ref}: not a single image's manifest (a {descriptor.media_type or 'document'} with no "
                           "config): fleetbake publishes one image per tag")
    reports = artifact.reports(remote, descriptor.digest)
    if not reports:
        return PublishedImage(ref, image_id, None)
    found_artifact = remote.get_manifest(reports[-1])
    if found_artifact is None:
        raise PublishError(f"{ref}: its referrers tag lists the report {reports[-1]}, which is not there")
    layers = [layer for layer in found_artifact[1].get("layers") or [] if isinstance(layer, dict)
              and (layer.get("annotations") or {}).get(TITLE) == software.REPORT_JSON and isinstance(layer.get("digest"), str)]
    if not layers:
        raise PublishError(f"{ref}: its report {reports[-1]} has no {software.REPORT_JSON}")
    try:
        found_report = json.loads(remote.get_blob(layers[0]["digest"]))
    except ValueError:
        found_report = None
    if not software.is_report(found_report):
        raise PublishError(f"{ref}: {software.REPORT_JSON} in its report {reports[-1]} is not a fleetbake software report")
    return PublishedImage(ref, image_id, found_report)


def push_report(remote: oci.Registry, image_digest: str, image_id: str) -> str:
    """Push the image's report and its verification records as an OCI artifact referring to the pushed manifest;
    list it under the fallback tag. An updater pulls only an image whose artifact shows a passing record."""
    subject = remote.head_manifest(image_digest)
    if subject is None or subject.digest != image_digest:
        raise PublishError(f"{remote.url}: the pushed manifest {image_digest} is not there to refer to")
    config = remote.push_blob(oci.EMPTY, oci.EMPTY_TYPE)
    layers = []
    for name, media_type in REPORT_LAYERS:
        descriptor = remote.push_blob((record.image_dir(image_id) / name).read_bytes(), media_type)
        layers.append(descriptor.to_json(annotations={TITLE: name}))
    passed, _ = record.status(image_id)
    for configuration in passed:
        descriptor = remote.push_blob((record.report_dir(image_id) / f"{configuration}.json").read_bytes(),
                                      artifact.RECORD_TYPE)
        layers.append(descriptor.to_json(annotations={TITLE: f"{artifact.RECORD_PREFIX}{configuration}.json"}))
    manifest = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                "config": config.to_json(), "layers": layers, "subject": subject.to_json()}
    # By digest: the artifact needs no tag of its own; the referrers tag is how it is found.
    pushed = remote.put_manifest(manifest)
    remote.add_referrer(subject, pushed.to_json(artifactType=ARTIFACT_TYPE))
    return pushed.digest


def _push(api, repository: str, tag: str, log: Log) -> str:
    """docker-py's push does not raise on failure: the stream says so."""
    digest = None
    try:
        for entry in api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in entry:
                detail = entry.get("errorDetail", {}).get("message") or entry["error"]
                raise PublishError(f"push {repository}:{tag} failed: {detail.strip()}")
            if "aux" in entry and "Digest" in entry["aux"]:
                digest = entry["aux"]["Digest"]
            elif entry.get("status") and entry.get("id") is None:
                log(f"  {entry['status']}")
    except (APIError, DockerException) as exc:
        raise PublishError(f"push {repository}:{tag} failed: {exc}") from None
    if digest is None:
        raise PublishError(f"push {repository}:{tag}: the registry reported no digest")
    return digest


def publish(matrix: Matrix, rows: list[RowView], registry: str, log: Log = print) -> list[Published]:
    registry = _check_registry(registry)
    results = [publish_row(row, registry, log) for row in rows]
    for result in results:
        if result.skipped:
            log(f"{result.row}: skipped: {result.skipped}")
    if len(rows) == 1 and results[0].skipped:
        raise PublishError(f"refusing to publish {rows[0].name}: {results[0].skipped}")
    return results


def to_json(results: list[Published]) -> str:
    """For CI: what was pushed, by digest (the attestation's subject), and what was left as it was."""
    return json.dumps([r.to_json() for r in results], indent=2)
