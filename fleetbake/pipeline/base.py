"""Base images: pulled where a registry answers, else bootstrapped from the distribution archive.

Air-gapped sites (and our CI machines) reach no registry but do reach Debian's
archive: mmdebstrap (or debootstrap) builds a minbase root filesystem, and
`docker import` brings it in under the row's own reference (e.g. debian:12).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Callable

from docker.errors import APIError, DockerException

from fleetbake import paths, proc
from fleetbake.errors import CannotBuildHere, FleetbakeError
from fleetbake.pipeline import engine
from fleetbake.pipeline.matrix import RowView

Log = Callable[[str], None]


def ensure_base(row: RowView, refresh: bool = False, log: Log = print) -> str:
    """The base image ID for the row, getting it when missing (or always, with refresh)."""
    ref = row.spec.base
    if not refresh and (image := engine.image_id(ref)):
        return image
    pull_error = _pull(ref, log)
    if pull_error is None:
        return engine.image_id(ref)
    if row.spec.bootstrap is None:
        raise CannotBuildHere(f"cannot build here: {row.name}: base {ref} cannot be pulled ({pull_error}) and the row has no bootstrap")
    log(f"base {ref}: no registry answers ({pull_error}); bootstrapping it from {row.spec.bootstrap.mirror}")
    return bootstrap(row, log)


def _pull(ref: str, log: Log) -> str | None:
    repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    log(f"base {ref}: pulling")
    try:
        for entry in engine.client().api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in entry:
                return entry["error"].strip()
    except (APIError, DockerException) as exc:
        return getattr(exc, "explanation", None) or str(exc).splitlines()[0]
    return None


# images/debian/scripts/configure-apt.sh's dpkg excludes, from the first package on: an upgrade in the image then
# deletes no file of the base, since a deletion leaves a whiteout stamped with the build's clock (reproducible.py).
DPKG_EXCLUDES = ("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/man/*",
                 "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/lintian/*")


def bootstrap_command(row: RowView, target: str) -> list[str]:
    spec = row.spec.bootstrap
    assert spec is not None
    sources = [f"deb {spec.mirror} {spec.suite} main", f"deb {spec.mirror} {spec.suite}-updates main"]
    if spec.security_mirror:
        sources.append(f"deb {spec.security_mirror} {spec.suite}-security main")
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=auto",
        "--format=tar",
        "--quiet",
        *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
        # A container needs no package lists until its first `apt-get update`.
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
        spec.suite,
        target,
        *sources,
    ]


def bootstrap(row: RowView, log: Log = print) -> str:
    if shutil.which("mmdebstrap") is None:
        raise CannotBuildHere(
            f"cannot build here: {row.name}: mmdebstrap is not installed (apt-get install mmdebstrap, or run scripts/setup.sh)"
        )
    ref = row.spec.base
    repo, _, tag = ref.rpartition(":")
    paths.build_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.build_dir(), prefix=".bootstrap-") as tmp:
        tarball = f"{tmp}/rootfs.tar"
        started = time.monotonic()
        command = bootstrap_command(row, tarball)
        log(f"base {ref}: {' '.join(command[:4])} {row.spec.bootstrap.suite} ...")
        proc.run(command, what=f"base {ref}: mmdebstrap")
        log(f"base {ref}: bootstrapped in {time.monotonic() - started:.0f}s; importing")
        changes = [
            'CMD ["/bin/bash"]',
            f"LABEL org.opencontainers.image.title={ref} io.fleetbake.bootstrap={row.spec.bootstrap.suite}",
        ]
        try:
            engine.client().api.import_image_from_file(tarball, repository=repo, tag=tag, changes=changes)
        except (APIError, DockerException) as exc:
            raise FleetbakeError(f"base {ref}: docker import failed: {exc}") from None
    image = engine.image_id(ref)
    if image is None:
        raise FleetbakeError(f"base {ref}: docker import reported success but the image is missing")
    log(f"base {ref}: imported as {image[:19]}")
    return image
