"""Publish verified images: never push what was not tested, nor without its record (pypa/manylinux's rule).

`invoke publish --os ROW --registry HOST[:PORT]/NAMESPACE` publishes the row on every architecture of its
`arches`, or not at all. Each architecture's local image (identity.arch_tag, which every build gives on every
host, and under which the nightly's jobs hand their images over) must be here, be of that
architecture (its config's and its io.fleetbake.arch label's), and have a passing verification record, no failing
one, and a report (`invoke report --arch A`: SBOM and software report). Then, per architecture, it pushes
<registry>/worker:<row>-<arch> and :<row>-<arch>-<inputs hash>, and that image's report and verification records as
an OCI artifact whose `subject` is that image's manifest, listed under the referrers fallback tag
sha256-<manifest hex> (artifact.py). Last, the row's one multi-arch tag: an OCI image index over those manifests,
each with its platform (arches.py), as <row> and <row>-<YYYYMMDD>. What the registry already holds (an
architecture's image with its report, the same index) is not pushed again.
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
class Candidate:
    """One architecture's image, cleared for publishing."""
    row: RowView  # taken for the architecture
    image_id: str
    inputs: str
    passed: list[str]
    reported: bool  # it has a report to push (Windows images have none yet)


@dataclass
class ArchPublished:
    """One architecture's image manifest in the registry, as pushed (or as the registry already had it)."""
    arch: str
    platform: str
    image_id: str
    refs: list[str] = field(default_factory=list)
    digest: str | None = None
    artifact: str | None = None  # the report artifact's manifest digest
    unchanged: bool = False
    descriptor: oci.Descriptor | None = field(default=None, repr=False)  # for the index

    def to_json(self) -> dict:
        return {"arch": self.arch, "platform": self.platform, "image_id": self.image_id,
                "pushed": not self.unchanged and self.digest is not None, "unchanged": self.unchanged,
                "digest": self.digest, "artifact": self.artifact, "refs": self.refs}


@dataclass
class Published:
    row: str
    refs: list[str] = field(default_factory=list)  # the index's tags, as pushed
    digest: str | None = None  # the index's digest: what <row> names (pushed, or as the registry already had it)
    skipped: str | None = None  # why nothing was pushed: a refusal
    repository: str | None = None
    unchanged: bool = False  # the registry already had every image, its report and the index: nothing was pushed
    arches: list[ArchPublished] = field(default_factory=list)

    @property
    def pushed(self) -> bool:
        return self.skipped is None and not self.unchanged and self.digest is not None

    def to_json(self) -> dict:
        return {"row": self.row, "pushed": self.pushed, "unchanged": self.unchanged, "skipped": self.skipped,
                "repository": self.repository, "digest": self.digest, "refs": self.refs,
                "arches": [a.to_json() for a in self.arches]}


def today() -> dt.date:
    """The day in the date tag: UTC, so every runner of one night agrees."""
    return dt.datetime.now(dt.timezone.utc).date()


def index_tags(row: RowView, day: dt.date | None = None) -> list[str]:
    """The row's multi-arch index: <row> and <row>-<YYYYMMDD>."""
    return [row.name, f"{row.name}-{(day or today()).strftime('%Y%m%d')}"]


def arch_tags(row: RowView, inputs_hash: str) -> list[str]:
    """One architecture's image: <row>-<arch> and its content tag <row>-<arch>-<inputs hash>, which no other
    architecture's can take (the architecture is in it, not only in the hash)."""
    tag = identity.arch_tag(row).partition(":")[2]
    return [tag, f"{tag}-{inputs_hash[:16]}"]


def platform(row: RowView) -> dict:
    """The index entry's platform of the row's image on its architecture: RowView.platform as OCI's object."""
    return dict(zip(("os", "architecture", "variant"), row.platform.split("/")))


def index_manifest(entries: list[tuple[oci.Descriptor, dict]]) -> dict:
    """The OCI image index over (image manifest, platform) pairs, in the row's order of its arches."""
    return {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
            "manifests": [descriptor.to_json(platform=where) for descriptor, where in entries]}


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


def candidate(row: RowView, tag: str, attrs: dict | None) -> Candidate | str:
    """The row's image on its architecture (`attrs`: docker's inspect of the local `tag`, None when there is none)
    cleared for publishing, or why not."""
    if attrs is None:
        return f"image {tag} is not built here"
    image_id = attrs["Id"]
    arch, where = row.architecture, platform(row)
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    found = oci.platform_string({"os": attrs.get("Os"), "architecture": attrs.get("Architecture"),
                                 "variant": attrs.get("Variant")})
    if (attrs.get("Os"), attrs.get("Architecture")) != (where["os"], arch.name) or \
            attrs.get("Variant") not in (None, "", arch.variant):
        return f"image {tag} ({image_id[:19]}) is an image of {found}, not {oci.platform_string(where)}"
    if labels.get(identity.ARCH_LABEL) != arch.name:
        return (f"image {tag} ({image_id[:19]}) has {identity.ARCH_LABEL}={labels.get(identity.ARCH_LABEL)!r}, "
                f"not {arch.name!r}: not built by fleetbake for {arch.name}")
    again = f"--os {row.name}" + (f" --arch {arch.name}" if len(row.spec.arches) > 1 else "")
    passed, failed = record.status(image_id)
    if failed:
        return f"{image_id[:19]} failed verification ({', '.join(failed)})"
    if not passed:
        return f"{image_id[:19]} has no passing verification record: run `invoke verify {again}`"
    # Windows images have no software report or SBOM yet (report.py reads a Linux image's packages).
    reported = not families.family_of(row).windows
    missing = [name for name, _ in REPORT_LAYERS if not (record.image_dir(image_id) / name).is_file()] if reported else []
    if missing:
        return f"{image_id[:19]} has no report ({', '.join(missing)} missing): run `invoke report {again}` first"
    inputs = labels.get(identity.INPUTS_LABEL)
    if not inputs:
        return f"{image_id[:19]} has no {identity.INPUTS_LABEL} label: not built by fleetbake"
    return Candidate(row, image_id, inputs, passed, reported)


def _inspect(tag: str) -> dict | None:
    try:
        return engine.client().images.get(tag).attrs
    except ImageNotFound:
        return None


def gate(row: RowView) -> list[Candidate] | str:
    """Every architecture of the row cleared for publishing, or why not, naming each architecture that is not."""
    cleared, refusals = [], []
    for name in row.spec.arches:
        taken = row.on(name)
        tag = identity.arch_tag(taken)
        found = candidate(taken, tag, _inspect(tag))
        if isinstance(found, str):
            refusals.append(f"{name}: {found}")
        else:
            cleared.append(found)
    return "; ".join(refusals) if refusals else cleared


def publish_row(row: RowView, registry: str, log: Log = print) -> Published:
    result = Published(row.name)
    cleared = gate(row)
    if isinstance(cleared, str):  # one architecture short: nothing is pushed, not even the others
        result.skipped = cleared
        return result
    repository, remote = _remote(registry)
    result.repository = repository
    for image in cleared:
        result.arches.append(publish_arch(image, repository, remote, log))
    entries = [(done.descriptor, platform(image.row)) for done, image in zip(result.arches, cleared)]
    index = index_manifest(entries)
    expected = oci.Descriptor.of(oci.OCI_INDEX, oci.canonical(index))
    there = remote.head_manifest(row.name)
    result.digest = expected.digest
    if there is not None and there.digest == expected.digest:
        if all(done.unchanged for done in result.arches):
            result.unchanged = True
            log(f"{row.name}: {repository}:{row.name} already holds the index of {', '.join(row.spec.arches)} "
                f"({expected.digest}), each image with its report; nothing pushed")
            return result
        log(f"{row.name}: {repository}:{row.name} already holds this index ({expected.digest})")
        return result
    for tag in index_tags(row):
        remote.put_manifest(index, tag)
        result.refs.append(f"{repository}:{tag}")
    log(f"{row.name}: pushed the index {', '.join(result.refs)} @ {expected.digest} "
        f"({', '.join(oci.platform_string(where) for _, where in entries)})")
    return result


def publish_arch(image: Candidate, repository: str, remote: oci.Registry, log: Log) -> ArchPublished:
    """Push one architecture's image and its report, unless the registry holds both already."""
    row = image.row
    done = ArchPublished(row.arch, row.platform, image.image_id)
    tags = arch_tags(row, image.inputs)
    current = published(remote, tags[0], image.image_id, image.reported)
    if current:
        done.unchanged, done.descriptor, done.artifact = True, current[0], current[1]
        done.digest = current[0].digest
        log(f"{row.name}: {repository}:{tags[0]} already holds {image.image_id[:19]}"
            f"{' and its report' if image.reported else ''} ({done.digest}); not pushed again")
        return done
    log(f"{row.name}: {row.arch}: {image.image_id[:19]} verified ({', '.join(image.passed)}); pushing to {repository}")
    api = engine.client().api
    for tag in tags:
        api.tag(image.image_id, repository, tag)
        done.digest = _push(api, repository, tag, log)
        done.refs.append(f"{repository}:{tag}")
    done.descriptor = remote.head_manifest(done.digest)
    if done.descriptor is None or done.descriptor.digest != done.digest:
        raise PublishError(f"{remote.url}: the pushed manifest {done.digest} is not there")
    log(f"{row.name}: pushed {', '.join(done.refs)} @ {done.digest}")
    if not image.reported:
        log(f"{row.name}: no report pushed: fleetbake makes no software report or SBOM of Windows images yet")
        return done
    done.artifact = push_report(remote, done.digest, image.image_id)
    log(f"{row.name}: {row.arch}: pushed its report {repository}@{done.artifact} (referrers tag "
        f"{oci.referrers_tag(done.digest)})")
    return done


def published(remote: oci.Registry, tag: str, image_id: str,
              reported: bool = True) -> tuple[oci.Descriptor, str | None] | None:
    """(image manifest, report artifact digest) when `tag` already holds this image ID (its config digest) and the
    referrers tag lists its report; else None, and publishing goes ahead (a push that stopped half-way gets its
    report on the next run)."""
    found = remote.get_manifest(tag)
    if not found or artifact.image_id(found[1]) != image_id:
        return None
    if not reported:
        return found[0], None
    reports = artifact.reports(remote, found[0].digest)
    latest = remote.get_manifest(reports[-1]) if reports else None
    # A report pushed before it carried the records (or a half-pushed one) is pushed again, with them.
    return (found[0], reports[-1]) if latest and artifact.layers(latest[1], artifact.RECORD_TYPE) else None


@dataclass
class PublishedImage:
    """What the registry holds under a row's tag for one platform: the image ID, and its software report if one
    was pushed."""
    ref: str
    image_id: str
    software: dict | None


def fetch_published(registry: str, row: str, platform: str) -> PublishedImage | None:
    """The image REGISTRY/NAMESPACE/worker:ROW for `platform` (the row's tag is an index: its entry for the
    platform; an older, single image's tag: that image) and its report's software.json; None when the tag is not
    there. What `invoke report --against` compares with: a nightly runner starts empty, the registry is its memory.
    The image ID is the manifest's config digest, as for `published`."""
    repository, remote = _remote(registry, "--against")
    try:
        found = remote.resolve(row, platform)
    except oci.NoPlatform:  # published, but not yet for this platform (a single image of another, or an index
        return None         # without it): nothing of this platform to compare with
    if found is None:
        return None
    descriptor, manifest, index = found
    ref = f"{repository}:{row}" + (f" ({platform})" if index else "")
    image_id = artifact.image_id(manifest)
    if image_id is None:
        raise PublishError(f"{ref}: not an image's manifest (a {descriptor.media_type or 'document'} with no config)")
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
