"""Debian version order, held to the real dpkg --compare-versions on this Debian host."""

import itertools
import shutil
import subprocess

import pytest

from fleetbake.pipeline import versions

# Real versions from bookworm and trixie, and dpkg's own edge cases: ~ before the end, epochs, revisions,
# leading zeros, letters before other characters.
SAMPLES = ["1.0", "1.0-1", "1.0-1+deb12u1", "1.0-1+b1", "1.0~rc1-1", "1.0~~", "1.0~", "1.0a", "1.0+", "1.0.1",
           "1:0.9", "2:1.0", "1.00", "1.0-0", "3.11.2-6+deb12u6", "3.11.2-6", "12.2.0-14+deb12u1", "12.2.0-14",
           "2.36-9+deb12u10", "2.36-9+deb12u9", "252.39-1~deb12u1", "252.38-1~deb12u1", "1.2.13.dfsg-1",
           "1:1.2.13.dfsg-1", "0.99", "10", "9", "a", "A", "1.0-1.1", "1.0-1a"]


def test_the_order_is_dpkgs():
    assert shutil.which("dpkg"), "dpkg, the reference, is on every Debian and Ubuntu host this runs on"
    wrong = []
    for a, b in itertools.combinations(SAMPLES, 2):
        ours = versions.dpkg_compare(a, b)
        theirs = next(op for op in ("lt", "eq", "gt") if subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0)
        if {"lt": -1, "eq": 0, "gt": 1}[theirs] != ours:
            wrong.append((a, b, ours, theirs))
    assert not wrong, wrong


def test_a_bad_epoch_is_refused():
    with pytest.raises(ValueError, match="not a Debian version"):
        versions.dpkg_compare("x:1.0", "1.0")
