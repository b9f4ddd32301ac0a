"""Build a row's image with docker-py, streaming the log, skipping when nothing changed.

Tags: fleetbake/worker:<row> and fleetbake/worker:<row>-<inputs hash>, the hash
covering the rendered context and the base image ID. The content tag existing
means an identical build exists: the build is skipped. Every time the build
leaves in the image is the inputs' (identity.source, reproducible.py), so a
rebuild of the same inputs gives the same image ID.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Callable

from docker.errors import APIError, DockerException

from fleetbake import paths
from fleetbake.errors import CannotBuildHere, FleetbakeError
from fleetbake.pipeline import arches, base, engine, families, identity, render, reproducible
from fleetbake.pipeline.matrix import Matrix, RowView

Log = Callable[[str], None]


class BuildError(FleetbakeError):
    pass


@dataclass(frozen=True)
class BuildResult:
    row: str
    image_id: str
    tags: list[str]
    inputs_hash: str
    skipped: bool
    seconds: float


def build_row(
    matrix: Matrix,
    row: RowView,
    *,
    ca_certs: list[bytes] | None,
    force: bool = False,
    refresh: bool = False,
    log: Log = print,
) -> BuildResult:
    started = time.monotonic()
    engine.require_os(row, "build", "builds")
    arches.require_runnable(row.architecture)
    context = render.render_row(matrix, row, ca_certs)
    out_dir = paths.context_dir(row.name)
    render.write_context(context, out_dir)  # for people to read; the build reads the context itself
    origin = identity.row_source(matrix, row)
    base_id = base.ensure_base(row, refresh=refresh, log=log, epoch=origin.epoch)
    inputs = identity.inputs_hash(render.context_digest(context), base_id, origin)
    tag = identity.content_tag(row, inputs)
    row_tags = identity.image_tags(row)
    api = engine.client().api

    existing = engine.image_id(tag)
    if existing and not (force or refresh):
        for row_tag in row_tags:
            api.tag(existing, *row_tag.split(":"))
        log(f"{row.name}: up to date ({tag}, {existing[:19]}); nothing to build (--force rebuilds)")
        return BuildResult(row.name, existing, [*row_tags, tag], inputs, True, time.monotonic() - started)

    emulated = " under emulation" if arches.emulated(row.architecture) else ""
    log(f"{row.name}: building {tag} for {row.platform}{emulated} from {out_dir}")
    labels = identity.labels(row, inputs, base_id, origin)
    windows = families.family_of(row).windows  # not built here: its config is left as the builder wrote it
    built = _stream_build(row, render.context_tar(context), tag, labels if windows else {},
                          nocache=force or refresh, log=log, epoch=origin.epoch, base=base.local_ref(row))
    if windows:
        for row_tag in row_tags:
            api.tag(built, *row_tag.split(":"))
        image_id, rewritten = built, "the builder's config"
    else:
        rewriting = time.monotonic()
        try:
            image_id = reproducible.recommit(built, base_id, origin.epoch, [tag, *row_tags], labels)
        except reproducible.RecommitError:
            api.remove_image(tag)  # the content tag must never name the builder's image with the clock in it
            raise
        rewritten = f"config at the inputs' time {origin.created} in {time.monotonic() - rewriting:.1f}s"
    seconds = time.monotonic() - started
    log(f"{row.name}: built {image_id[:19]} for {row.platform} in {seconds:.0f}s ({rewritten}, "
        f"commit {origin.revision[:12]}), tagged {', '.join(row_tags)} and {tag}")
    return BuildResult(row.name, image_id, [*row_tags, tag], inputs, False, seconds)


def _stream_build(row: RowView, context_tar: bytes, tag: str, image_labels: dict[str, str], nocache: bool, log: Log,
                  epoch: int = 0, base: str = "") -> str:
    step = "before the first step"
    suffix = " " + row.arch if arches.emulated(row.architecture) else ""
    image_id = None
    started = time.monotonic()
    try:
        stream = engine.client().api.build(
            fileobj=io.BytesIO(context_tar), custom_context=True, tag=tag, labels=image_labels, decode=True, rm=True,
            forcerm=True, nocache=nocache, pull=False,
            buildargs={"SOURCE_DATE_EPOCH": str(epoch), **({"BASE": base} if base else {})},
            # The base's config names the architecture, and so does the image's: its RUNs go through binfmt_misc.
            platform=row.engine_platform,
        )
        for entry in stream:
            if "stream" in entry:
                for line in entry["stream"].splitlines():
                    if line.startswith("Step "):
                        step = line
                    if line.strip():
                        elapsed = int(time.monotonic() - started)
                        log(f"[{row.name}{suffix} {elapsed // 60:02d}:{elapsed % 60:02d}] {line.rstrip()}")
            elif "aux" in entry and "ID" in entry["aux"]:
                image_id = entry["aux"]["ID"]
            elif "error" in entry:
                message = entry.get("errorDetail", {}).get("message") or entry["error"]
                raise BuildError(f"{row.name}: build failed at {step!r}: {message.strip().splitlines()[-1]}")
    except APIError as exc:  # Dockerfile parse errors and the like arrive here
        raise BuildError(f"{row.name}: build failed at {step!r}: {exc.explanation or exc}") from None
    except DockerException as exc:
        raise BuildError(f"{row.name}: build failed at {step!r}: {exc}") from None
    if image_id is None:
        image_id = engine.image_id(tag)
    if image_id is None:
        raise BuildError(f"{row.name}: the build stream ended without an image")
    return image_id


def build(
    matrix: Matrix,
    rows: list[RowView],
    *,
    ca_bundle: str | None = None,
    force: bool = False,
    refresh: bool = False,
    log: Log = print,
) -> list[BuildResult]:
    """Build each row; rows that cannot be built here are reported, the others still built."""
    certs = render.ca_certs_from(ca_bundle)
    results, unbuildable = [], []
    for row in rows:
        try:
            results.append(build_row(matrix, row, ca_certs=certs, force=force, refresh=refresh, log=log))
        except CannotBuildHere as exc:
            if len(rows) == 1:
                raise
            label = row.name if row.arch == rows[0].arch == rows[-1].arch else f"{row.name} ({row.arch})"
            log(f"{label}: {exc}")
            unbuildable.append(label)
    if unbuildable:
        raise CannotBuildHere(f"cannot build here: {', '.join(unbuildable)} (built: {', '.join(r.row for r in results) or 'none'})")
    return results
