"""An image's identity: its tags, its labels and the names it goes by, for build, verify, publish and packer."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fleetbake import __version__, paths
from fleetbake.errors import FleetbakeError

IMAGE_REPO = "fleetbake/worker"
LABEL_PREFIX = "io.fleetbake"
INPUTS_LABEL = f"{LABEL_PREFIX}.inputs-hash"
ARCH_LABEL = f"{LABEL_PREFIX}.arch"  # a build's: the row's Dockerfile is one for every architecture
CREATED_LABEL = "org.opencontainers.image.created"  # the inputs' time (Source.created), not the build's
SOURCE_URL = "https://github.com/python/fleetbake"


def row_tag(row) -> str:
    """The row's name, fleetbake/worker:<row>: the FLEETBAKE_IMAGE every architecture's image carries. In a
    registry it is the multi-arch index; here it is the image of the host's own architecture."""
    return f"{IMAGE_REPO}:{row.name}"


def image_tag(row) -> str:
    """What the row's image on its architecture is called here: fleetbake/worker:<row> for the host's own
    architecture (what `docker run` here takes), fleetbake/worker:<row>-<arch> for the others."""
    from fleetbake.pipeline import arches

    return row_tag(row) if not arches.emulated(row.architecture) else arch_tag(row)


def arch_tag(row) -> str:
    """The image of one architecture, whatever the host: fleetbake/worker:<row>-<arch>."""
    return f"{IMAGE_REPO}:{row.name}-{row.arch}"


def image_tags(row) -> list[str]:
    """Every name a build gives the row's image besides its content tag."""
    return list(dict.fromkeys([image_tag(row), arch_tag(row)]))


def content_tag(row, inputs: str) -> str:
    """Exists only when an image of exactly these inputs was built."""
    return f"{IMAGE_REPO}:{row.name}-{inputs[:16]}"


def packer_image_tag(row) -> str:
    """Packer's docker target: the same image, built by Packer, beside the Dockerfile's."""
    return f"{IMAGE_REPO}:{row.name}-packer"


def rehearsal_image_tag(row) -> str:
    return f"{IMAGE_REPO}:{row.name}-ami-rehearsal"


def inputs_hash(context_digest: str, base_id: str, origin: Source | None = None) -> str:
    """What an image is made from: the context, the base and (Docker images) the commit whose time it carries."""
    where = f"\0{origin.revision}\0{origin.epoch}" if origin else ""
    return hashlib.sha256(f"{context_digest}\0{base_id}{where}".encode()).hexdigest()


@dataclass(frozen=True)
class Source:
    """Where an image's inputs come from: the commit that last changed the row's committed context, and its time.

    The time is the build's SOURCE_DATE_EPOCH: every time the build leaves in the image is this one, so the same
    inputs give the same image ID on any day, and a commit that leaves the row's context alone changes nothing.
    """

    revision: str
    epoch: int

    @property
    def created(self) -> str:
        from fleetbake.pipeline import record

        return record.utc(self.epoch)


def source(folder: Path) -> Source:
    """The Source of a row's committed context folder (images/<family>/<row>/). SOURCE_DATE_EPOCH in the
    environment overrides the time, as everywhere; outside a git checkout the time is 0 (1970)."""
    def git(*argv: str) -> str:
        # --no-optional-locks: reading the identity never rewrites .git/index (git status refreshes it otherwise,
        # under a copy of the checkout another process is making: .ci/run's unit-as-user tar of it).
        return subprocess.run(["git", "--no-optional-locks", "-C", str(paths.ROOT), *argv], capture_output=True,
                              text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        found = git("log", "-1", "--format=%H %ct", "--", str(folder))
        dirty = git("status", "--porcelain", "--untracked-files=normal", "--", str(folder))
    except (OSError, subprocess.SubprocessError):
        found, dirty = "", ""
    revision, _, when = found.partition(" ")
    revision = (f"{revision}-dirty" if dirty else revision) if revision else "unknown"
    forced = os.environ.get("SOURCE_DATE_EPOCH", "")
    if forced:
        if not forced.isdigit():
            raise FleetbakeError(f"SOURCE_DATE_EPOCH={forced!r}: not a number of seconds since 1970")
        return Source(revision, int(forced))
    return Source(revision, int(when) if when.isdigit() else 0)


def row_source(matrix, row) -> Source:
    """The Source of the row's committed context, images/<family>/<row>/: what every target stamps its image with."""
    return source(paths.image_dir(matrix, row))


def static_labels(row) -> dict[str, str]:
    """The labels that follow from the row alone: the Dockerfile (and Packer's `changes`) carry them."""
    oci = "org.opencontainers.image"
    return {
        f"{oci}.source": SOURCE_URL,
        f"{oci}.title": f"CPython buildbot worker ({row.name})",
        f"{oci}.base.name": row.spec.base,
        f"{LABEL_PREFIX}.row": row.name,
        f"{LABEL_PREFIX}.worker-version": row.spec.worker_version,
        f"{LABEL_PREFIX}.fleetbake-version": __version__,
    }


def labels(row, inputs: str, base_id: str, origin: Source) -> dict[str, str]:
    """Every label a build gives the image (reproducible.recommit's, Packer's var.labels): the static ones and
    what this build adds."""
    oci = "org.opencontainers.image"
    return {
        **static_labels(row),
        CREATED_LABEL: origin.created,
        f"{oci}.revision": origin.revision,
        f"{oci}.version": f"{row.spec.worker_version}-{inputs[:12]}",
        INPUTS_LABEL: inputs,
        f"{LABEL_PREFIX}.base-id": base_id,
        ARCH_LABEL: row.arch,
    }
