"""Remove old fleetbake worker images that no container uses, keeping the newest of each row.

Nightly image updates pile up on a worker's host: each `docker pull` or `invoke build` leaves the
previous image behind (untagged, or under its content tag). Run daily (`invoke service` writes a
systemd timer, a LaunchDaemon or a Scheduled Task for it; the README has a cron line):

    python3 -I fleetbake/operate/prune.py [--keep N] [--delete] [--docker PATH]

A dry run unless --delete. Standard library only, and no import of fleetbake: a host runs this
file with any Python 3.9 or newer (macOS's /usr/bin/python3 is 3.9) and the Docker CLI.

What is a fleetbake worker image: one with the label io.fleetbake.row (every image fleetbake builds,
and every one it publishes, carries it; fleetbake.pipeline.identity). Its age: the label
org.opencontainers.image.created, else the image's Created time. Kept: the newest --keep (1) of each
row, and every image a container uses, running or stopped. The others are removed by their tags,
without --force, so that Docker itself refuses an image a container took meanwhile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

ROW_LABEL = "io.fleetbake.row"  # identity.LABEL_PREFIX + ".row" (tests/test_prune.py holds them equal)
CREATED_LABEL = "org.opencontainers.image.created"  # identity.CREATED_LABEL
Docker = Callable[[Sequence[str]], str]


class PruneError(Exception):
    """A one-line problem: the Docker CLI is missing or failed."""


@dataclass(frozen=True)
class Image:
    id: str
    row: str
    created: dt.datetime
    tags: Tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.id.split(":", 1)[-1][:12]


@dataclass(frozen=True)
class Decision:
    image: Image
    keep: bool
    why: str


def parse_time(text: str) -> Optional[dt.datetime]:
    """Docker's and OCI's RFC 3339 times (nanoseconds, Z or an offset), as an aware datetime; None if not one."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", (text or "").strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    try:
        when = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zone == "Z":
        offset = dt.timedelta(0)
    else:
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * (1 if zone[0] == "+" else -1)
    return when.replace(microsecond=micro, tzinfo=dt.timezone(offset))


def image_from_inspect(data: dict) -> Optional[Image]:
    labels = (data.get("Config") or {}).get("Labels") or {}
    row = labels.get(ROW_LABEL)
    if not row:
        return None
    created = parse_time(labels.get(CREATED_LABEL, "")) or parse_time(data.get("Created", "")) or \
        dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    tags = tuple(tag for tag in data.get("RepoTags") or () if not tag.endswith(":<none>"))
    return Image(data["Id"], row, created, tags)


def decide(images: List[Image], used: Set[str], keep: int = 1) -> List[Decision]:
    """Per row, newest first: keep the first `keep` and every image a container uses; remove the others."""
    rows: Dict[str, List[Image]] = {}
    for image in images:
        rows.setdefault(image.row, []).append(image)
    decisions = []
    for row in sorted(rows):
        ordered = sorted(rows[row], key=lambda image: (image.created, image.id), reverse=True)
        for rank, image in enumerate(ordered):
            if rank < keep:
                decisions.append(Decision(image, True, f"newest of {row}" if rank == 0 else f"{rank + 1}. newest of {row}"))
            elif image.id in used:
                decisions.append(Decision(image, True, "a container uses it"))
            else:
                decisions.append(Decision(image, False, f"older than the newest {keep} of {row}, no container uses it"))
    return decisions


def run_docker(docker: str) -> Docker:
    def call(args: Sequence[str]) -> str:
        try:
            result = subprocess.run([docker, *args], capture_output=True, text=True, timeout=300, check=False)
        except FileNotFoundError:
            raise PruneError(f"{docker}: not found (the Docker CLI; --docker PATH)") from None
        except subprocess.TimeoutExpired:
            raise PruneError(f"docker {args[0]} {args[1]}: no answer within 300s") from None
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
            raise PruneError(f"docker {' '.join(args[:2])}: {lines[-1]}")
        return result.stdout
    return call


def inspect(docker: Docker, kind: str, ids: List[str]) -> List[dict]:
    """`docker <kind> inspect` of the listed ones that still exist: one removed since the list was made (another
    prune, a `docker run --rm` ending) is skipped, not an error. A gone container uses no image."""
    if not ids:
        return []
    try:
        return json.loads(docker([kind, "inspect", *ids]))
    except PruneError as exc:
        if "no such" not in str(exc).lower():
            raise
    # One of them is gone: each on its own, the gone one alone answering "no such".
    return [item for one in ids if len(ids) > 1 for item in inspect(docker, kind, [one])]


def fleetbake_images(docker: Docker) -> List[Image]:
    ids = sorted(set(docker(["image", "ls", "--quiet", "--no-trunc", "--filter", f"label={ROW_LABEL}"]).split()))
    images = [image_from_inspect(item) for item in inspect(docker, "image", ids)]
    return [image for image in images if image is not None]


def used_images(docker: Docker) -> Set[str]:
    containers = docker(["container", "ls", "--all", "--quiet", "--no-trunc"]).split()
    return {item["Image"] for item in inspect(docker, "container", containers)}


def prune(docker: Docker, keep: int = 1, delete: bool = False, log: Callable[[str], None] = print) -> int:
    """Say what is kept and what goes (removing it with delete); the number of images that could not be removed."""
    failures = 0
    for decision in decide(fleetbake_images(docker), used_images(docker), keep):
        image = decision.image
        names = ", ".join(image.tags) or "(untagged)"
        when = image.created.strftime("%Y-%m-%dT%H:%M:%SZ") if image.created.year > 1 else "?"
        line = f"{image.short}  {image.row}  {when}  {names}: {decision.why}"
        if decision.keep:
            log(f"keep    {line}")
        elif not delete:
            log(f"remove  {line} (dry run: --delete removes it)")
        else:
            try:  # by name, without --force: Docker refuses an image a container took since the list was made
                docker(["image", "rm", *(image.tags or (image.id,))])
                log(f"removed {line}")
            except PruneError as exc:
                failures += 1
                log(f"kept    {line}: {exc}")
    return failures


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="prune", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=int, default=1, help="newest images kept per row (default 1)")
    parser.add_argument("--delete", action="store_true", help="remove them (default: say what would go)")
    parser.add_argument("--docker", default="docker", help="the Docker CLI (default: docker on PATH)")
    args = parser.parse_args(argv)
    if args.keep < 1:
        print("prune: error: --keep takes 1 or more: the newest image of each row always stays", file=sys.stderr)
        return 2
    try:
        failures = prune(run_docker(args.docker), args.keep, args.delete)
    except PruneError as exc:
        print(f"prune: error: {exc}", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
