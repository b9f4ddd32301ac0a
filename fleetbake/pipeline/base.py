"""Base images: pulled where a registry answers, else bootstrapped from the distribution archive.

Air-gapped sites (and our CI machines) reach no registry but do reach Debian's
archive: mmdebstrap builds a minbase root filesystem, and `docker load` brings it in
under the row's own reference (e.g. debian:12). With SOURCE_DATE_EPOCH mmdebstrap's
tar is the same bytes for the same packages, and the image config is written here at
that time (`docker import` would stamp it with the clock): the same archive state gives
the same base ID, so a nightly --refresh changes the image only when a package did.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from docker.errors import APIError, DockerException

from fleetbake import paths, proc
from fleetbake.errors import CannotBuildHere
from fleetbake.pipeline import arches, engine, record
from fleetbake.pipeline.matrix import RowView

Log = Callable[[str], None]


def local_ref(row: RowView) -> str:
    """The name the row's base goes by here: its own for the host's architecture, one per architecture else
    (one local name holds one image, so debian:12 cannot be both the amd64 and the arm64 root file system)."""
    if not arches.emulated(row.architecture):
        return row.spec.base
    return f"fleetbake/base:{row.name}-{row.arch}"


def ensure_base(row: RowView, refresh: bool = False, log: Log = print, epoch: int = 0) -> str:
    """The base image ID for the row on its architecture, getting it when missing (or always, with refresh)."""
    ref = local_ref(row)
    if not refresh and (image := engine.image_id(ref)):
        return _checked(row, image)
    pull_error = _pull(row, ref, log)
    if pull_error is None:
        return _checked(row, engine.image_id(ref))
    if row.spec.bootstrap is None:
        raise CannotBuildHere(f"cannot build here: {row.name}: base {row.spec.base} cannot be pulled ({pull_error}) "
                              "and the row has no bootstrap")
    log(f"base {ref}: no registry answers ({pull_error}); bootstrapping it from {row.spec.bootstrap.mirror} for {row.arch}")
    return bootstrap(row, log, epoch)


def _checked(row: RowView, image: str) -> str:
    """The base, refused when its config names another architecture (a build on it would be mislabelled)."""
    attrs = engine.client().api.inspect_image(image)
    have = attrs.get("Architecture") or "?"
    if have != row.arch:
        raise CannotBuildHere(f"cannot build {row.arch} here: base {local_ref(row)} ({image[:19]}) is a {have} image; "
                              f"remove it (docker rmi {local_ref(row)}) or run invoke base --refresh")
    return image


def _pull(row: RowView, ref: str, log: Log) -> str | None:
    """Pull the row's base for its architecture under `ref`; the reason it failed, or None. A pull for another
    architecture names the pulled image by the base's own tag: that tag is put back where it was."""
    base = row.spec.base
    repo, _, tag = base.rpartition(":") if ":" in base.split("/")[-1] else (base, "", "latest")
    log(f"base {base}: pulling for {row.platform}")
    api = engine.client().api
    before = engine.image_id(base)
    try:
        for entry in api.pull(repo, tag=tag, stream=True, decode=True, platform=row.engine_platform):
            if "error" in entry:
                return entry["error"].strip()
        if ref != base:
            api.tag(base, *ref.rsplit(":", 1))
            if before:
                api.tag(before, repo, tag)
            else:  # the base's own name stays for the host's own architecture's image, never another's
                api.remove_image(base, noprune=True)
    except (APIError, DockerException) as exc:
        return getattr(exc, "explanation", None) or str(exc).splitlines()[0]
    return None


# images/debian/scripts/configure-apt.sh's dpkg excludes, from the first package on: an upgrade in the image then
# deletes no file of the base, since a deletion leaves a whiteout stamped with the build's clock (reproducible.py).
DPKG_EXCLUDES = ("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/man/*",
                 "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/lintian/*", "path-exclude=/usr/share/locale/*",
                 "path-include=/usr/share/locale/locale.alias")


def bootstrap_command(row: RowView, target: str) -> list[str]:
    spec = row.spec.bootstrap
    assert spec is not None
    sources = [f"deb {spec.mirror} {spec.suite} main", f"deb {spec.mirror} {spec.suite}-updates main"]
    if spec.security_mirror:
        sources.append(f"deb {spec.security_mirror} {spec.suite}-security main")
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--architectures={row.architecture.debian}",
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


def bootstrap(row: RowView, log: Log = print, epoch: int = 0) -> str:
    if shutil.which("mmdebstrap") is None:
        raise CannotBuildHere(
            f"cannot build here: {row.name}: mmdebstrap is not installed (apt-get install mmdebstrap, or run scripts/setup.sh)"
        )
    arches.require_runnable(row.architecture)
    ref = local_ref(row)
    paths.build_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.build_dir(), prefix=".bootstrap-") as tmp:
        tarball = f"{tmp}/rootfs.tar"
        started = time.monotonic()
        command = bootstrap_command(row, tarball)
        log(f"base {ref}: {' '.join(command[:5])} {row.spec.bootstrap.suite} ...")
        proc.run(command, what=f"base {ref}: mmdebstrap", env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        log(f"base {ref}: bootstrapped in {time.monotonic() - started:.0f}s; loading")
        image = engine.load_config(_config(row, Path(tarball), epoch), [ref], [tarball], f"base {ref}", scratch=tmp)
    log(f"base {ref}: loaded as {image[:19]}")
    return image


def _config(row: RowView, rootfs: Path, epoch: int) -> dict:
    """The one-layer image's config: the root file system's digest, the bootstrap's labels, the time `epoch`."""
    digest = hashlib.sha256()
    with open(rootfs, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    created = record.utc(epoch)
    arch = row.architecture
    return {
        "architecture": arch.name, **({"variant": arch.variant} if arch.variant else {}), "os": "linux",
        "created": created,
        "config": {"Cmd": ["/bin/bash"], "Labels": {"org.opencontainers.image.title": row.spec.base,
                                                    "io.fleetbake.bootstrap": row.spec.bootstrap.suite}},
        "history": [{"created": created, "created_by": f"fleetbake: mmdebstrap --variant=minbase {row.spec.bootstrap.suite}"}],
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
    }
