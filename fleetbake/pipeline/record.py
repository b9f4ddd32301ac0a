"""Verification records: build/reports/<image id>/<configuration>.json (+ .junit.xml, .log).

What `invoke report` says of the image (SBOM, software report, what changed) lives in the image/
folder beside them, so no file of it can pass for a record, whatever a configuration is called.

verify writes them; publish reads them to decide what may be pushed. This module
runs nothing and imports no container library, so publishing stays light.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fleetbake import __version__, files, paths


def report_dir(image_id: str) -> Path:
    return paths.reports_dir() / image_id.replace(":", "-")


IMAGE_DIR = "image"


def image_dir(image_id: str) -> Path:
    return report_dir(image_id) / IMAGE_DIR


def log_path(image_id: str, configuration: str) -> Path:
    return report_dir(image_id) / f"{configuration}.log"


def timestamp(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(seconds: int) -> str:
    """A time given in seconds since 1970 (SOURCE_DATE_EPOCH), as every record and config writes times."""
    return timestamp(dt.datetime.fromtimestamp(seconds, dt.timezone.utc))


def write(image_id: str, configuration: str, fields: dict[str, Any], junit: bytes | None = None) -> Path:
    """The record of one configuration's run on one image; `fields` must say whether it `passed`."""
    if not isinstance(fields.get("passed"), bool):
        raise ValueError("a verification record says whether it passed")
    directory = report_dir(image_id)
    if junit:
        files.write_file(directory / f"{configuration}.junit.xml", junit)
    record = {
        "fleetbake_version": __version__,
        "image_id": image_id,
        "configuration": configuration,
        **fields,
        "junit": f"{configuration}.junit.xml" if junit else None,
        "finished": timestamp(),
    }
    path = directory / f"{configuration}.json"
    files.write_text(path, json.dumps(record, indent=2) + "\n")  # publish never reads half a record
    return path


def load(image_id: str, configuration: str) -> dict | None:
    """The record, or None when there is none or it cannot be read."""
    try:
        record = json.loads((report_dir(image_id) / f"{configuration}.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def status(image_id: str) -> tuple[list[str], list[str]]:
    """(passed, failed) configurations recorded for this exact image ID.

    An unreadable record counts as failed: it may have said so. One naming another image counts for nothing.
    """
    passed, failed = [], []
    directory = report_dir(image_id)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        record = load(image_id, path.stem)
        if record is None:
            failed.append(path.stem)
        elif record.get("image_id") == image_id:
            (passed if record.get("passed") is True else failed).append(path.stem)
    return passed, failed


def arch_of(data: dict) -> str:
    """The architecture a record names; records from before fleetbake built others are amd64's."""
    where = data.get("platform")
    return where.get("arch", "amd64") if isinstance(where, dict) else "amd64"
