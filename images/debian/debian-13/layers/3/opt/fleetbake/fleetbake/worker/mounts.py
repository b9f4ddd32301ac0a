# Generated from matrix.yml (row debian-13) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""This process's mount table, read from /proc/self/mountinfo (stdlib only).

The ccache decision needs to know whether its directory is a mount and read-only; the disk cleanup
must never enter a mount inside the buildarea, including a bind mount of the same filesystem, which
st_dev alone does not reveal.
"""

from __future__ import annotations

import re

MOUNTINFO = "/proc/self/mountinfo"


def unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes come as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def table(mountinfo: str | None = None) -> dict[str, bool]:
    """Mount points (default: MOUNTINFO's), each with whether it is mounted read-only (the last mount wins)."""
    found: dict[str, bool] = {}
    try:
        with open(mountinfo or MOUNTINFO, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 6:
                    found[unescape(fields[4])] = "ro" in fields[5].split(",")
    except OSError:
        pass
    return found


def below(directory: str, mountinfo: str | None = None) -> list[str]:
    """Mount points strictly inside `directory`."""
    prefix = directory.rstrip("/") + "/"
    return sorted(point for point in table(mountinfo) if point.startswith(prefix))
