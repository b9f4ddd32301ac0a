"""The software report: the collector on the host the suite runs on (the same code runs in the image), what-changed
in dpkg's order, and the Markdown a person reads."""

import json
import platform
import shutil
import subprocess
import sys

from conftest import ROOT
from fleetbake.pipeline import software, software_collect

COLLECTOR = ROOT / "fleetbake" / "pipeline" / "software_collect.py"

# The host, read here without the collector: Debian 12 on the project's CI machine, Ubuntu 24.04 on GitHub's runner.
HOST_OS = platform.freedesktop_os_release()
# The package database the collector must read on this host: the first of its tools that is installed.
HOST_MANAGER = "dpkg" if shutil.which("dpkg-query") else "rpm" if shutil.which("rpm") else None


def host_packages() -> set[str]:
    """The names of the packages installed on this host, from its own package tool."""
    if HOST_MANAGER == "dpkg":
        listed = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}\n"], capture_output=True,
                                text=True, check=True).stdout
        return {line.split("|")[1] for line in listed.splitlines() if line.startswith("ii")}
    if HOST_MANAGER == "rpm":
        return set(subprocess.run(["rpm", "-qa", "--qf", "%{NAME}\n"], capture_output=True, text=True,
                                  check=True).stdout.split())
    return set()


def test_the_host_detection_matches_the_os_family():
    """Debian and its derivatives (Ubuntu) keep packages with dpkg, Fedora and its kin with rpm."""
    family = {HOST_OS["ID"], *HOST_OS.get("ID_LIKE", "").split()}
    if "debian" in family:
        assert HOST_MANAGER == "dpkg", HOST_OS
    elif family & {"fedora", "rhel", "suse"}:
        assert HOST_MANAGER == "rpm", HOST_OS
    assert HOST_MANAGER is None or host_packages(), "an installed package tool lists no package"


def test_the_collector_reads_this_host():
    """The collector is what runs inside an image; here it reads the host's own OS release, package database and
    tools, whichever they are."""
    out = subprocess.run([sys.executable, "-I", str(COLLECTOR)], capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    keys = ("PRETTY_NAME", "ID", "VERSION_ID", "VERSION_CODENAME")
    assert report["os"] == {key: HOST_OS[key] for key in keys if key in HOST_OS}
    assert report["manager"] == HOST_MANAGER
    assert {name.split(":")[0] for name in report["packages"]} == host_packages()  # installed ones only, each once
    if HOST_MANAGER == "dpkg":
        dpkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpkg"], capture_output=True, text=True, check=True)
        assert report["packages"]["dpkg"] == dpkg.stdout  # what dpkg says of itself
    installed = {name for name in software_collect.TOOLS if shutil.which(name)}
    assert set(report["tools"]) == installed
    assert "gcc" not in installed or report["tools"]["gcc"].startswith("gcc ")
    assert report["system_python"] == platform.python_version()


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
