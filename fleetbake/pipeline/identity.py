"""An image's identity: its tags, its labels and the names it goes by, for build, verify, publish and packer."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess

from fleetbake import __version__, paths

IMAGE_REPO = "fleetbake/worker"
LABEL_PREFIX = "io.fleetbake"
INPUTS_LABEL = f"{LABEL_PREFIX}.inputs-hash"
CREATED_LABEL = "org.opencontainers.image.created"  # the one label that differs between two builds of the same inputs
SOURCE_URL = "https://github.com/python/fleetbake"


def image_tag(row) -> str:
    """What the image is: fleetbake/worker:<row>, also the FLEETBAKE_IMAGE it carries."""
    return f"{IMAGE_REPO}:{row.name}"


def content_tag(row, inputs: str) -> str:
    """Exists only when an image of exactly these inputs was built."""
    return f"{IMAGE_REPO}:{row.name}-{inputs[:16]}"


def packer_image_tag(row) -> str:
    """Packer's docker target: the same image, built by Packer, beside the Dockerfile's."""
    return f"{IMAGE_REPO}:{row.name}-packer"


def rehearsal_image_tag(row) -> str:
    return f"{IMAGE_REPO}:{row.name}-ami-rehearsal"


def inputs_hash(context_digest: str, base_id: str) -> str:
    return hashlib.sha256(f"{context_digest}\0{base_id}".encode()).hexdigest()


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(paths.ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{out}-dirty" if dirty else out


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


def labels(row, inputs: str, base_id: str) -> dict[str, str]:
    """Every label a build gives the image (docker-py's `labels=`, Packer's var.labels): the static ones and
    what this build adds."""
    oci = "org.opencontainers.image"
    return {
        **static_labels(row),
        CREATED_LABEL: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{oci}.revision": git_revision(),
        f"{oci}.version": f"{row.spec.worker_version}-{inputs[:12]}",
        INPUTS_LABEL: inputs,
        f"{LABEL_PREFIX}.base-id": base_id,
    }
