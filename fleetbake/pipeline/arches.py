"""The fleet's Linux architectures, and the one place their spellings meet.

Debian says ppc64el where OCI says ppc64le and `uname -m` says ppc64le; OCI's arm64 is `uname -m`'s aarch64,
with the variant v8; EC2 says x86_64 and arm64; binfmt_misc names its handler after QEMU's target. Everything
else in fleetbake names an architecture by its OCI name (the matrix's `arches`, `--arch`, tags, records) and
asks this table for the others.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from fleetbake.errors import CannotBuildHere

BINFMT = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Arch:
    name: str  # OCI/Docker: the matrix's spelling, `--arch`, the tag suffix
    variant: str  # OCI's platform variant ("" where there is none)
    debian: str  # dpkg --print-architecture, mmdebstrap --architectures
    machine: str  # uname -m, Python's platform.machine()
    qemu: str  # QEMU's target: qemu-<qemu>-static, the binfmt_misc handler qemu-<qemu>
    ec2: str  # EC2's architecture filter ("" where EC2 has no instance of it)
    # The nightly's runner: a native GitHub-hosted one, or "qemu" (built and verified under emulation, as manylinux).
    runner: str
    fleet_tags: tuple[str, ...]  # how the fleet's workers.py tags it (invoke request)
    byteorder: str = "little"

    @property
    def platform(self) -> str:
        """OCI's platform string: linux/arm64/v8."""
        return "/".join(("linux", self.name, self.variant) if self.variant else ("linux", self.name))


ARCHES = {
    a.name: a for a in (
        Arch("amd64", "", "amd64", "x86_64", "x86_64", "x86_64", "ubuntu-24.04", ("amd64", "x86-64")),
        Arch("arm64", "v8", "arm64", "aarch64", "aarch64", "arm64", "ubuntu-24.04-arm", ("arm", "arm64", "aarch64")),
        Arch("ppc64le", "", "ppc64el", "ppc64le", "ppc64le", "", "qemu", ("ppc64le",)),
        Arch("s390x", "", "s390x", "s390x", "s390x", "", "qemu", ("s390x",), byteorder="big"),
        Arch("riscv64", "", "riscv64", "riscv64", "riscv64", "", "qemu", ("riscv64",)),
    )
}

# What each base offers, by distribution and release (the bases' own architecture lists, as published).
OFFERED = {
    ("debian", "12"): ("amd64", "arm64", "ppc64le", "s390x"),
    ("debian", "bookworm"): ("amd64", "arm64", "ppc64le", "s390x"),
    ("debian", "13"): ("amd64", "arm64", "ppc64le", "s390x", "riscv64"),
    ("debian", "trixie"): ("amd64", "arm64", "ppc64le", "s390x", "riscv64"),
    ("ubuntu", "24.04"): ("amd64", "arm64", "ppc64le", "s390x", "riscv64"),
    ("fedora", "44"): ("amd64", "arm64", "ppc64le", "s390x"),
    ("fedora", "45"): ("amd64", "arm64", "ppc64le", "s390x"),
    ("servercore", "ltsc2022"): ("amd64",),
}


def get(name: str) -> Arch:
    """The architecture of an OCI name; KeyError for one fleetbake does not build."""
    return ARCHES[name]


def offered(base: str) -> tuple[str, ...] | None:
    """The architectures a base image offers (None: a base this table does not know)."""
    distro, _, tag = base.split("@")[0].rpartition("/")[2].partition(":")
    return OFFERED.get((distro, tag))


def from_machine(machine: str) -> Arch | None:
    """The architecture of a `uname -m` (or Docker's, OCI's or Debian's) spelling; None for one not in the table."""
    wanted = machine.lower()
    for arch in ARCHES.values():
        if wanted in (arch.name, arch.machine, arch.debian):
            return arch
    return None


def native() -> Arch:
    """This host's own architecture (what runs without emulation)."""
    arch = from_machine(platform.machine())
    if arch is None:
        raise CannotBuildHere(f"this host's architecture {platform.machine()} is none of fleetbake's "
                              f"({', '.join(ARCHES)})")
    return arch


def emulated(arch: Arch) -> bool:
    return arch.name != native().name


def binfmt_problem(arch: Arch, root: Path | None = None) -> str | None:
    """Why this host cannot run `arch`'s programs (None: natively, or through an enabled binfmt_misc handler
    whose interpreter is open already, flag F, so that it works inside containers)."""
    if not emulated(arch):
        return None
    root = root or BINFMT
    install = ("apt-get install qemu-user-static binfmt-support, then "
               "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc and update-binfmts --enable "
               "(scripts/setup.sh does all three)")
    if not (root / "status").exists():
        return f"binfmt_misc is not mounted at {root}: {install}"
    handler = root / f"qemu-{arch.qemu}"
    try:
        text = handler.read_text()
    except OSError:
        return f"no binfmt_misc handler {handler.name} for {arch.machine} programs: {install}"
    lines = text.splitlines()
    if "enabled" not in lines:
        return f"the binfmt_misc handler {handler.name} is disabled: update-binfmts --enable {handler.name}"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        return (f"the binfmt_misc handler {handler.name} lacks flag F (it has {flags or 'none'}), so containers "
                "cannot reach its interpreter: install Debian's qemu-user-static, which registers it with F")
    return None


def require_runnable(arch: Arch, doing: str = "build") -> None:
    """Refuse, with the exit of every cannot-build-here case, an architecture this host cannot run."""
    problem = binfmt_problem(arch)
    if problem:
        raise CannotBuildHere(f"cannot {doing} {arch.name} here: {problem}")
