"""Publish verified images: never push what was not tested (pypa/manylinux's rule).

`invoke publish --os ROW --registry HOST[:PORT]/NAMESPACE` pushes
<registry>/worker:<row>, :<row>-<YYYYMMDD> and :<row>-<inputs hash>, but only for
an image ID that has a passing verification record and no failing one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Callable

from docker.errors import APIError, DockerException, ImageNotFound

from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import engine, identity, record
from fleetbake.pipeline.matrix import Matrix, RowView

Log = Callable[[str], None]
REGISTRY = re.compile(r"[a-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9._-]+)+|[a-z0-9.-]+(:[0-9]{1,5})?")


class PublishError(FleetbakeError):
    pass


@dataclass
class Published:
    row: str
    refs: list[str] = field(default_factory=list)
    digest: str | None = None
    skipped: str | None = None  # why nothing was pushed


def tags_for(row: RowView, inputs_hash: str, today: dt.date | None = None) -> list[str]:
    day = (today or dt.datetime.now(dt.timezone.utc).date()).strftime("%Y%m%d")
    return [row.name, f"{row.name}-{day}", f"{row.name}-{inputs_hash[:16]}"]


def _check_registry(registry: str) -> str:
    registry = registry.rstrip("/")
    if not REGISTRY.fullmatch(registry):
        raise UsageError(f"--registry {registry!r}: expected HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python")
    return registry


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
    inputs = image.labels.get(identity.INPUTS_LABEL)
    if not inputs:
        result.skipped = f"{image.id[:19]} has no {identity.INPUTS_LABEL} label: not built by fleetbake"
        return result
    repository = f"{registry}/worker"
    log(f"{row.name}: {image.id[:19]} verified ({', '.join(passed)}); pushing to {repository}")
    api = engine.client().api
    for name in tags_for(row, inputs):
        api.tag(image.id, repository, name)
        result.digest = _push(api, repository, name, log)
        result.refs.append(f"{repository}:{name}")
    log(f"{row.name}: pushed {', '.join(result.refs)} @ {result.digest}")
    return result


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
