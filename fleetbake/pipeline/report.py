"""`invoke report --os ROW`: the record anyone can check, beside the verification records of the row's image.

For the row's image on its architecture (`--arch`, default the host's; or --image), in
build/reports/<image id>/image/ (record.image_dir):
- sbom.spdx.json: its SBOM (sbom.write, syft on the saved image);
- software.json and software.md: what is inside it, read from inside it (software.collect);
- changes.md: what changed since the previous verified image of the row on that architecture here, or
  (--against REGISTRY/NAMESPACE) since that architecture's image published there (packages added, removed,
  upgraded, downgraded), also printed, for the nightly job summary;
and the matrix page, build/reports/index.html, from every record there.
An image with no passing verification gets no report: the record is about verified images.
"""

from __future__ import annotations

import json
from pathlib import Path

from fleetbake import files, paths
from fleetbake.errors import FleetbakeError
from fleetbake.pipeline import engine, families, identity, page, publish, record, sbom, software
from fleetbake.pipeline.matrix import Matrix, RowView

CHANGES_MD = "changes.md"


def verified_images(row: str, reports: Path | None = None, arch: str | None = None) -> list[tuple[str, str]]:
    """(finished, image id) of every image of `row` (on `arch`; None: on any) with a passing record, oldest first."""
    reports = reports or paths.reports_dir()
    found: dict[str, str] = {}
    for folder in sorted(p for p in reports.iterdir() if p.is_dir()) if reports.is_dir() else []:
        for path in folder.glob("*.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if (isinstance(data, dict) and data.get("row") == row and data.get("passed") is True
                    and isinstance(data.get("image_id"), str) and folder.name == data["image_id"].replace(":", "-")
                    and (arch is None or record.arch_of(data) == arch)):
                found[data["image_id"]] = max(found.get(data["image_id"], ""), str(data.get("finished", "")))
    return sorted((when, image) for image, when in found.items())


def previous(row: str, image_id: str, reports: Path | None = None, arch: str | None = None) -> str | None:
    """The verified image of the row (on `arch`; None: on any) before this one that has a software report, if any."""
    reports = reports or paths.reports_dir()
    images = [image for _, image in verified_images(row, reports, arch)]
    earlier = images[:images.index(image_id)] if image_id in images else images
    for image in reversed(earlier):
        if (record.image_dir(image) / software.REPORT_JSON).is_file():
            return image
    return None


def changes_since_local(row: str, image_id: str, found: dict, arch: str) -> str:
    before = previous(row, image_id, arch=arch)
    if before is None:
        return f"{row}: `{image_id[:19]}` is the first verified image of this row on {arch} with a software report.\n"
    old = json.loads((record.image_dir(before) / software.REPORT_JSON).read_text())
    return software.changes_markdown(software.changes(old, found), before, image_id)


def changes_since_published(row: str, image_id: str, found: dict, registry: str, platform: str, log=print) -> str:
    """What changed since the image published in `registry` for `platform` (its entry in the row's index). When that
    cannot be read (registry down, an odd tag, an unreadable report), the summary and a log line say so and the
    report stands: a comparison that failed must not stop the nightly from publishing the image that would mend it."""
    try:
        published = publish.fetch_published(registry, row, platform)
    except FleetbakeError as exc:
        log(f"warning: {row}: could not compare with the published image: {exc}")
        return f"{row}: `{image_id[:19]}`; **could not compare with the published image**: {exc}\n"
    if published is None:
        return (f"{row}: `{image_id[:19]}`; {publish.repository_of(registry, '--against')}:{row} holds no image yet, "
                "so there is nothing to compare with.\n")
    if published.image_id == image_id:
        return f"{row}: `{image_id[:19]}` is the image {published.ref} already holds: nothing changed.\n"
    if published.software is None:
        return (f"{row}: {published.ref} holds `{published.image_id[:19]}`, pushed without a software report, "
                f"so there is nothing to compare `{image_id[:19]}` with.\n")
    return software.changes_markdown(software.changes(published.software, found), published.image_id, image_id,
                                     published.ref)


def report(matrix: Matrix, row: RowView, image: str | None = None, log=print, against: str | None = None) -> str:
    """Write the image's software report and what changed, and the page; return the what-changed Markdown.
    against: REGISTRY/NAMESPACE, to compare with the image published there (the nightly's previous image)
    instead of the previous verified image here."""
    if against:
        publish.repository_of(against, "--against")  # a malformed one fails before the work
    engine.require_os(row, "report on", "reads its software from inside the image")
    if families.family_of(row).windows:
        raise FleetbakeError(f"{row.name}: no software report or SBOM of Windows images yet: the collector reads a Linux "
                             "image's package database (publish pushes Windows images without one)")
    image_id = engine.image_id(image or identity.image_tag(row))
    again = f"--os {row.name}" + (f" --arch {row.arch}" if len(row.spec.arches) > 1 else "")
    if image_id is None:
        raise FleetbakeError(f"image {image or identity.image_tag(row)} is not here: run `invoke build {again}` "
                             "and `invoke verify` first")
    passed, _ = record.status(image_id)
    if not passed:
        raise FleetbakeError(f"{row.name}: image {image_id[:19]} has no passing verification record: "
                             f"run `invoke verify {again}` first")
    folder = record.image_dir(image_id)
    sbom.write(image_id, folder, log)
    found = software.collect(image_id)
    files.write_text(folder / software.REPORT_JSON, json.dumps(found, indent=2, sort_keys=True) + "\n")
    files.write_text(folder / software.REPORT_MD, software.markdown(found, image_id, row.name))
    summary = changes_since_published(row.name, image_id, found, against, row.platform, log) if against \
        else changes_since_local(row.name, image_id, found, row.arch)
    files.write_text(folder / CHANGES_MD, summary)
    target = page.write(matrix, generated=record.timestamp())
    log(f"report: {folder}/{{{software.REPORT_JSON},{software.REPORT_MD},{CHANGES_MD}}}; page {target}")
    return summary
