"""Package version order, as the distribution's own tools sort them (stdlib only).

The software report's "what changed" says upgraded or downgraded; that needs the package
manager's order, not a string's. `dpkg_compare` follows dpkg's verrevcmp (lib/dpkg/version.c):
epoch, then upstream version, then Debian revision, each compared in alternating runs of
non-digits (where `~` sorts before everything, even the end, and letters before other characters)
and digits (numerically).
"""

from __future__ import annotations

import re


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    if not re.fullmatch(r"[0-9]+", epoch):
        raise ValueError(f"{version!r}: not a Debian version (epoch {epoch!r})")
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def dpkg_compare(a: str, b: str) -> int:
    """<0, 0 or >0 as `dpkg --compare-versions a lt|eq|gt b`."""
    epoch_a, upstream_a, revision_a = _split(a)
    epoch_b, upstream_b, revision_b = _split(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    result = _verrevcmp(upstream_a, upstream_b)
    if result:
        return -1 if result < 0 else 1
    result = _verrevcmp(revision_a, revision_b)
    return (result > 0) - (result < 0)
