"""The software report: the collector on this Debian host (the same code runs in the image), what-changed in
dpkg's order, and the Markdown a person reads."""

import json
import subprocess
import sys

from conftest import ROOT
from fleetbake.pipeline import software

COLLECTOR = ROOT / "fleetbake" / "pipeline" / "software_collect.py"


def test_the_collector_reads_this_debian_host():
    """The collector is what runs inside an image; on this Debian host it reads the host's own dpkg database."""
    out = subprocess.run([sys.executable, "-I", str(COLLECTOR)], capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    assert report["os"]["ID"] == "debian" and report["manager"] == "dpkg"
    dpkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True)
    assert report["packages"]["dpkg"] == dpkg.stdout  # what dpkg says of itself
    listed = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}\n"], capture_output=True, text=True,
                            check=True).stdout
    installed = {line.split("|")[1] for line in listed.splitlines() if line.startswith("ii")}
    assert {name.split(":")[0] for name in report["packages"]} == installed  # installed ones only, each once
    assert report["tools"]["gcc"].startswith("gcc ") and report["system_python"]


def test_changes_follow_dpkgs_order():
    old = {"manager": "dpkg", "packages": {"libssl3": "3.0.17-1~deb12u2", "tzdata": "2025b-0+deb12u1", "gone": "1",
                                           "epoch": "1:1.0-1", "same": "2.0"},
           "worker": {"packages": {"buildbot-worker": "4.2.1", "twisted": "24.11.0"}}}
    new = {"manager": "dpkg", "packages": {"libssl3": "3.0.17-1~deb12u3", "tzdata": "2025a-0+deb12u1", "new": "5",
                                           "epoch": "2.0-1", "same": "2.0"},
           "worker": {"packages": {"buildbot-worker": "4.3.0", "twisted": "24.11.0"}}}
    found = software.changes(old, new)
    dist = found["distribution"]
    assert dist.added == {"new": "5"} and dist.removed == {"gone": "1"}
    assert dist.upgraded == {"libssl3": ("3.0.17-1~deb12u2", "3.0.17-1~deb12u3")}
    assert dist.downgraded == {"tzdata": ("2025b-0+deb12u1", "2025a-0+deb12u1"), "epoch": ("1:1.0-1", "2.0-1")}
    assert found["worker"].changed == {"buildbot-worker": ("4.2.1", "4.3.0")}
    text = software.changes_markdown(found, "sha256:" + "1" * 64, "sha256:" + "2" * 64)
    assert "| upgraded | libssl3 | 3.0.17-1~deb12u2 | 3.0.17-1~deb12u3 |" in text
    assert "| downgraded | epoch | 1:1.0-1 | 2.0-1 |" in text and "| added | new |  | 5 |" in text
    assert software.changes_markdown(software.changes(new, new), "a", "b").endswith("No package changed.\n")


def test_the_markdown_report_names_what_an_admin_checks():
    report = {"os": {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}, "kernel_arch": "x86_64", "system_python": "3.11.2",
              "tools": {"gcc": "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"}, "manager": "dpkg",
              "packages": {"gcc-12": "12.2.0-14+deb12u1"}, "labels": {"io.fleetbake.row": "debian-12"},
              "worker": {"python": "3.11.2", "buildbot-worker": "4.3.0", "path": "/opt/buildbot-worker",
                         "packages": {"buildbot-worker": "4.3.0"}}}
    text = software.markdown(report, "sha256:" + "2" * 64, "debian-12")
    for needle in ("OS: Debian GNU/Linux 12 (bookworm) (x86_64)", "buildbot-worker 4.3.0 on Python 3.11.2",
                   "| gcc | gcc (Debian 12.2.0-14+deb12u1) 12.2.0 |", "| io.fleetbake.row | debian-12 |",
                   "## Distribution packages (dpkg, 1)", "| gcc-12 | 12.2.0-14+deb12u1 |"):
        assert needle in text, needle


def test_only_a_report_of_the_shape_changes_reads_is_a_report():
    """A software.json read from a registry is checked before it is compared (one line, not a traceback)."""
    from fleetbake.pipeline import software as sw

    good = {"packages": {"gcc": "12.2.0-14"}, "manager": "dpkg", "worker": {"packages": {"twisted": "24.11.0"}}}
    assert sw.is_report(good) and sw.is_report({"packages": {}})
    for bad in (None, [], {"packages": []}, {"packages": {"gcc": 12}}, {**good, "worker": []},
                {**good, "worker": {"packages": {"twisted": None}}}, {**good, "manager": 1}):
        assert not sw.is_report(bad), bad
