"""The family table, and each image's provisioning declared once.

A family (debian, fedora, windows) says which scripts provision its images, in which
order, with which inputs, and how the finished image runs (entrypoint, command,
environment, volume, workdir, healthcheck). render.py turns a row's plan into its
Dockerfile; packer.py turns the very same plan into the provisioners and `changes`
of every Packer target. Nothing else says how an image is provisioned.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fleetbake import paths
from fleetbake.pipeline import identity
from fleetbake.worker import ccache

HOME = "/opt/fleetbake"
# The system Python, standard library only (install-fleetbake.sh puts HOME on its path); -I: neither
# the working directory (the buildarea, which build steps write) nor PYTHON* variables on the import path.
ENTRYPOINT = ("/usr/bin/python3", "-I", "-m", "fleetbake.worker.entrypoint")
PROVISION = f"{HOME}/provision"
# The worker venv's pinned pure-Python dependencies (images/common/), copied beside install-worker.sh.
WORKER_REQUIREMENTS = "worker-requirements.txt"
CA_DIR = f"{HOME}/ca-certificates"
LAYERS_DIR = "layers"  # a Linux build context's files, per layer (Plan.placed)
NORMALIZE = "normalize-layer.sh"  # ends every Dockerfile RUN (render.dockerfile), not Packer's
WINDOWS_HOME = "C:/fleetbake"


@dataclass(frozen=True)
class Copy:
    """Files from the build context into a folder of the image (a source ending in / copies a folder's files)."""

    sources: tuple[str, ...]
    dest: str


@dataclass(frozen=True)
class Run:
    """A command run as root, with variables set for it alone."""

    command: str
    env: tuple[tuple[str, str], ...] = ()

    def line(self, windows: bool = False) -> str:
        if windows:
            return "".join(f"$env:{k} = '{v}'; " for k, v in self.env) + self.command
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env), self.command])


@dataclass(frozen=True)
class Layer:
    """One Dockerfile layer group: copies, then the commands (one RUN)."""

    copies: tuple[Copy, ...] = ()
    runs: tuple[Run, ...] = ()


@dataclass(frozen=True)
class Healthcheck:
    options: tuple[str, ...]
    command: tuple[str, ...]

    def instruction(self, pretty: bool = False) -> str:
        return " ".join(self.options) + (" \\\n    CMD " if pretty else " CMD ") + _json_array(self.command)


@dataclass(frozen=True)
class Runtime:
    """How the finished image runs: the same in the Dockerfile and in Packer's `changes`.

    No stop signal: the worker stops on SIGTERM, Docker's default, and Docker's
    `commit --change` (hence Packer's docker builder) refuses STOPSIGNAL.
    """

    env: tuple[tuple[str, str], ...]
    volume: str
    workdir: str
    healthcheck: Healthcheck
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # what follows from the row alone; a build adds its own
    notes: tuple[tuple[str, str], ...] = ()  # (instruction, why): comments for the Dockerfile

    def instructions(self, pretty: bool = False) -> list[str]:
        """Dockerfile instructions, in the form both a Dockerfile and `docker commit --change` take
        (`pretty`: continuation lines, for the Dockerfile)."""
        join = " \\\n    " if pretty else " "
        lines = ["ENV " + join.join(f"{k}={quote_word(v)}" for k, v in self.env), f"VOLUME {_json_array((self.volume,))}",
                 f"WORKDIR {self.workdir}"]
        if self.user:
            lines.append(f"USER {self.user}")
        if self.labels:
            lines.append("LABEL " + label_arguments(self.labels, join))
        return [*lines, f"HEALTHCHECK {self.healthcheck.instruction(pretty)}",
                f"ENTRYPOINT {_json_array(self.entrypoint)}", f"CMD {_json_array(self.cmd)}"]

    def dockerfile(self) -> str:
        why = dict(self.notes)
        out = []
        for line in self.instructions(pretty=True):
            keyword = line.split(" ", 1)[0]
            out += [f"# {note}" for note in why.get(keyword, "").splitlines()] + [line]
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Plan:
    layers: tuple[Layer, ...]
    runtime: Runtime

    def placed(self) -> dict[str, str]:
        """Where each copied source sits in a Linux build context: under layers/<n>/, laid out as in the image,
        so that layer n's files are one `COPY layers/<n>/ /`. A COPY into a folder stamps that folder with
        the build's clock; one into / takes every folder's time from the context, which is fixed."""
        found = {}
        for index, layer in enumerate(self.layers, start=1):
            for copy in layer.copies:
                for source in copy.sources:
                    base = f"{LAYERS_DIR}/{index}{copy.dest}/"
                    found[source] = base if source.endswith("/") else base + source.rsplit("/", 1)[-1]
        return found


@dataclass(frozen=True)
class Family:
    """A family's provisioning scripts and what its images need at run time beyond the row's packages."""

    name: str
    runtime_packages: tuple[str, ...]
    scripts: tuple[str, ...]  # provisioning scripts, relative to images/
    runtime_files: tuple[tuple[str, Path], ...] = ()  # (name in the context, source): what the image runs
    configure: str = ""  # the package manager's set-up script (Linux), run before install-packages.sh
    ccache_wrappers: str = ""  # where the distribution's ccache package keeps its compiler wrappers (Linux)
    windows: bool = False
    notes: tuple[str, ...] = field(default=())  # the Dockerfile's opening comment

    def plan(self, row, *, uid: int | None = None, pip_extras: str = "") -> Plan:
        """The row's provisioning; an AMI passes its own uid and the extras its boot needs (boto3)."""
        return (_windows_plan if self.windows else _linux_plan)(self, row, uid or row.spec.uid, pip_extras)


def _json_array(items) -> str:
    return json.dumps(list(items))


def quote_word(value: str) -> str:
    """A value as Dockerfile instructions and `docker commit --change` read it: double-quoted unless plain."""
    if re.fullmatch(r"[A-Za-z0-9_.:/@+-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def label_arguments(labels, join: str = " ") -> str:
    """LABEL's arguments (key=value pairs, in the order given), quoted as Dockerfiles and `docker commit` read them."""
    return join.join(f"{quote_word(key)}={quote_word(value)}" for key, value in labels)


def _linux_plan(family: Family, row, uid: int, pip_extras: str) -> Plan:
    p = PROVISION
    worker_env = (("BUILDBOT_WORKER_VERSION", row.spec.worker_version), ("WORKER_REQUIREMENTS", f"{p}/{WORKER_REQUIREMENTS}")) + (
        (("WORKER_PIP_EXTRAS", pip_extras),) if pip_extras else ())
    layers = (
        Layer((Copy((f"scripts/{family.configure}", "scripts/install-packages.sh", "packages.txt",
                     f"scripts/{NORMALIZE}"), p),),
              (Run(f"{p}/{family.configure}"), Run(f"{p}/install-packages.sh {p}/packages.txt"))),
        # The CA (which pip needs), the user, ccache and the worker in one layer: each RUN costs a container, a walk
        # of the file system and a commit, and a change to the CA would run the worker's install again anyway (the
        # other way round, a worker change now runs the three small steps again: 1 to 2 s, 5 under QEMU).
        Layer((Copy(("ca-certificates/",), CA_DIR),
               Copy(("scripts/install-ca.sh", "scripts/create-user.sh", "scripts/configure-ccache.sh",
                     "scripts/install-worker.sh", WORKER_REQUIREMENTS), p)),
              (Run(f"{p}/install-ca.sh {CA_DIR}"),
               Run(f"{p}/create-user.sh", (("WORKER_USER", row.spec.user), ("WORKER_UID", str(uid)))),
               Run(f"{p}/configure-ccache.sh", (("WORKER_USER", row.spec.user), ("WRAPPER_DIR", family.ccache_wrappers),
                                                 ("CACHE_DIR", ccache.CACHE_DIR), ("MAX_SIZE", ccache.DEFAULT_MAX_SIZE))),
               Run(f"{p}/install-worker.sh", worker_env))),
        Layer((Copy(("fleetbake/",), f"{HOME}/fleetbake"), Copy(("scripts/install-fleetbake.sh",), p)),
              (Run(f"{p}/install-fleetbake.sh"),)),
    )
    runtime = Runtime(
        # PATH: a `docker import`ed base has none; the classic builder adds this default, `docker commit` does not.
        env=(("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), ("LANG", "C.UTF-8"), ("FLEETBAKE_ROW", row.name), ("FLEETBAKE_IMAGE", identity.row_tag(row)),
             ("FLEETBAKE_USER", row.spec.user), (ccache.WRAPPERS_VAR, family.ccache_wrappers)),
        volume="/buildarea",
        workdir="/buildarea",
        healthcheck=Healthcheck(("--interval=30s", "--timeout=10s", "--start-period=2m", "--retries=3"),
                                (*ENTRYPOINT, "health")),
        entrypoint=("/usr/bin/tini", "-e", "143", "--", *ENTRYPOINT),
        cmd=("worker",),
        labels=tuple(identity.static_labels(row).items()),
        notes=(("VOLUME", "/buildarea alone: /ccache, the build user's, is where an owner may mount a compiler cache\n"
                          "(-v cpython-ccache:/ccache); the entrypoint turns ccache on only then."),
               ("HEALTHCHECK", "Healthy only while logged in to the master, with WORKER_MIN_FREE_GB free in /buildarea, as\n"
                               "recorded by the root supervisor in a root-owned file (/tmp/fleetbake/health) that build\n"
                               "steps cannot write."),
               ("ENTRYPOINT", "tini as PID 1 reaps the grandchildren that test runs orphan and forwards signals;\n"
                              "`-e 143` makes a SIGTERM shutdown (docker stop) exit 0.")),
    )
    return Plan(layers, runtime)


def _windows_plan(family: Family, row, uid: int, pip_extras: str) -> Plan:
    p, home = f"{WINDOWS_HOME}/provision", WINDOWS_HOME
    layers = (
        Layer((Copy(("scripts/", "packages.txt"), p),), (Run(f"{p}/Install-BuildTools.ps1 -PackagesFile {p}/packages.txt"),)),
        Layer((Copy(("ca-certificates/",), f"{home}/ca-certificates"),),
              (Run(f"{p}/Install-CaCertificates.ps1 -Path {home}/ca-certificates"),)),
        Layer((), (Run(f"{p}/Install-Worker.ps1 -WorkerVersion {row.spec.worker_version}"),)),
        Layer((Copy(tuple(name for name, _ in family.runtime_files), home),)),
    )
    runtime = Runtime(
        env=(("FLEETBAKE_ROW", row.name), ("FLEETBAKE_IMAGE", identity.row_tag(row))),
        volume="C:/buildarea",
        workdir="C:/buildarea",
        user="ContainerUser",
        healthcheck=Healthcheck(("--interval=30s", "--timeout=10s", "--start-period=2m", "--retries=3"),
                                ("powershell", "-NoProfile", "-File", f"{home}/entrypoint.ps1", "health")),
        entrypoint=("powershell", "-NoLogo", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File", f"{home}/entrypoint.ps1"),
        cmd=("worker",),
        labels=tuple(identity.static_labels(row).items()),
        notes=(("USER", "ContainerUser is Windows containers' unprivileged account: builds never run as an administrator."),),
    )
    return Plan(layers, runtime)


LINUX_SCRIPTS = ("common/scripts/normalize-layer.sh", "common/scripts/install-ca.sh", "common/scripts/create-user.sh", "common/scripts/configure-ccache.sh",
                 "common/scripts/install-worker.sh", "common/scripts/install-fleetbake.sh")


def _worker_package() -> tuple[tuple[str, Path], ...]:
    """fleetbake.worker (stdlib only), the package's __init__ and the one atomic writer: the image imports them
    as the host does."""
    package = paths.ROOT / "fleetbake"
    sources = [package / "__init__.py", package / "files.py", *sorted((package / "worker").glob("*.py")), package / "worker" / "buildbot.tac"]
    return tuple((source.relative_to(paths.ROOT).as_posix(), source) for source in sources)


LINUX_RUNTIME = _worker_package()
LINUX_NOTES = ("Builds with Docker's classic builder (docker-py has no BuildKit): no RUN --mount,",
               "no heredocs, no COPY --chmod. Layers go from least to most often changed.")


def _linux(name: str, configure: str, runtime_packages: tuple[str, ...], ccache_wrappers: str) -> Family:
    scripts = (f"{name}/scripts/{configure}", f"{name}/scripts/install-packages.sh", *LINUX_SCRIPTS)
    return Family(name, runtime_packages, scripts, LINUX_RUNTIME, configure, ccache_wrappers, notes=LINUX_NOTES)


# buildbot-worker's compiled dependencies, from the distribution: its packages exist for every architecture it
# ships, PyPI's wheels do not (install-worker.sh).
WORKER_COMPILED = {"debian": ("python3-cryptography", "python3-msgpack", "python3-zope.interface"),
                   "fedora": ("python3-cryptography", "python3-msgpack", "python3-zope-interface")}
# ccache is the image's, not a row's choice: configure-ccache.sh and the entrypoint rely on it (fleetbake.worker.ccache).
FAMILIES = {
    "debian": _linux("debian", "configure-apt.sh", ("ca-certificates", "python3-venv", "tini", "ccache", *WORKER_COMPILED["debian"]),
                     "/usr/lib/ccache"),
    "fedora": _linux("fedora", "configure-dnf.sh", ("ca-certificates", "python3", "tini", "util-linux", "shadow-utils", "ccache",
                                                    *WORKER_COMPILED["fedora"]),
                     "/usr/lib64/ccache"),
    "windows": Family(
        "windows", (), ("windows/scripts/Install-BuildTools.ps1", "windows/scripts/Install-CaCertificates.ps1",
                        "windows/scripts/Install-Worker.ps1"),
        (("entrypoint.ps1", paths.IMAGES / "windows" / "entrypoint.ps1"),), windows=True,
        notes=("Windows Server Core worker: Visual Studio Build Tools, Git, Python and buildbot-worker.",
               "Built on Windows runners (nightly); a Linux Docker engine cannot build it.")),
}
WINDOWS_SHELL = ["powershell", "-NoLogo", "-NoProfile", "-ExecutionPolicy", "Bypass", "-Command",
                 "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]


AMI_FILES = (Copy(("ami/fleetbake-worker.service", "ami/fleetbake-worker-config.service"), "/etc/systemd/system"),
             Copy(("ami/fleetbake-worker-config", "ami/fleetbake-latent-stop"), HOME))
AMI_DROPIN = "/etc/systemd/system/fleetbake-worker.service.d/image.conf"


def ami_service(runtime: Runtime) -> Layer:
    """An AMI's own last layer: the worker as a systemd service that reads its name and password at boot
    (files from images/ami/, uploaded beside the context as ami/), with the image's environment, as a
    container has it from ENV, in a drop-in."""
    lines = ["[Service]", *(f'Environment="{k}={v}"' for k, v in runtime.env)]
    dropin = (f"install -d -m 0755 {AMI_DROPIN.rsplit('/', 1)[0]} && printf '%s\\n' "
              + " ".join(shlex.quote(line) for line in lines) + f" > {AMI_DROPIN} && chmod 0644 {AMI_DROPIN}")
    return Layer(AMI_FILES, (Run(dropin), Run("systemctl enable fleetbake-worker-config.service fleetbake-worker.service")))


def family_of(row) -> Family:
    return FAMILIES[row.spec.family]


def plan(row, **kwargs) -> Plan:
    return family_of(row).plan(row, **kwargs)
