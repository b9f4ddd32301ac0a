"""The record of a published image in its registry: an OCI artifact whose `subject` is the image's manifest.

`invoke publish` writes it (the SBOM, the software report and the verification records); `invoke report
--against` reads its software report, and `invoke update` its records, to pull only an image that passed.
Standard library only, through registry.py: update.py runs on a worker's host without the checkout's virtualenv.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fleetbake.pipeline import registry as oci

# fleetbake's record of the image, more than its SBOM: a type of its own says so, and tools looking for an SBOM
# still find it by its layer's SPDX media type.
ARTIFACT_TYPE = "application/vnd.fleetbake.report.v1"
TITLE = "org.opencontainers.image.title"
SPDX_TYPE = "application/spdx+json"
RECORD_TYPE = "application/vnd.fleetbake.verification.v1+json"
# A record's title: under its own folder, so no configuration's name can pass for a report file.
RECORD_PREFIX = "verification/"


def image_id(manifest: dict) -> str | None:
    """The image ID a manifest names: its config digest (so it is with Docker's classic image store)."""
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


def reports(remote: oci.Registry, subject_digest: str) -> list[str]:
    """The digests of the report artifacts the referrers tag lists for this image manifest, oldest first."""
    return [m["digest"] for m in remote.referrers(subject_digest)
            if isinstance(m, dict) and m.get("artifactType") == ARTIFACT_TYPE and isinstance(m.get("digest"), str)]


def layers(artifact: dict, media_type: str) -> list[dict]:
    return [layer for layer in artifact.get("layers") or [] if isinstance(layer, dict)
            and layer.get("mediaType") == media_type and isinstance(layer.get("digest"), str)]


@dataclass
class Verdict:
    """What the registry says of the image under a tag for one platform: its manifest (the platform's, when the tag
    is an index) and image ID, and why it may not be pulled (None: it has a report and passing verification records
    for this exact image ID, none failing)."""
    digest: str
    image_id: str
    refusal: str | None
    passed: tuple[str, ...] = ()


def verdict(remote: oci.Registry, tag: str, platform: str) -> Verdict | None:
    """The tag's image for `platform` ("linux/arm64/v8": the host's, for an update) and its verdict; None when the
    tag is not there. A row's tag is an index: its report is the platform's image's, whose manifest is the subject."""
    ref = f"{remote.host}/{remote.repository}:{tag}"
    try:
        found = remote.resolve(tag, platform)
    except oci.NoPlatform as exc:
        return Verdict(exc.index.digest, "", str(exc))
    if found is None:
        return None
    descriptor, manifest, index = found
    if index is not None:
        ref = f"{ref} ({platform})"
    image = image_id(manifest)
    if image is None:
        return Verdict(descriptor.digest, "", f"{ref} is not an image's manifest (it names no config)")
    listed = reports(remote, descriptor.digest)
    artifact = remote.get_manifest(listed[-1]) if listed else None
    if artifact is None:
        return Verdict(descriptor.digest, image, f"{ref} ({image[:19]}) has no report in the registry: "
                                                 "`invoke publish` pushes one with every verified image")
    if not layers(artifact[1], SPDX_TYPE):
        return Verdict(descriptor.digest, image, f"{ref} ({image[:19]}): its report {listed[-1][:19]} has no SBOM")
    passed, failed = [], []
    for layer in layers(artifact[1], RECORD_TYPE):
        try:
            record = json.loads(remote.get_blob(layer["digest"]))
        except ValueError:
            record = None
        name = ((layer.get("annotations") or {}).get(TITLE) or "?").removeprefix(RECORD_PREFIX).removesuffix(".json")
        if not isinstance(record, dict) or record.get("image_id") != image:
            continue  # a record of another image counts for nothing
        (passed if record.get("passed") is True else failed).append(name)
    if failed:
        return Verdict(descriptor.digest, image, f"{ref} ({image[:19]}) failed verification ({', '.join(failed)})")
    if not passed:
        return Verdict(descriptor.digest, image, f"{ref} ({image[:19]}) has no passing verification record in "
                                                 "its report")
    return Verdict(descriptor.digest, image, None, tuple(passed))
