"""Load and validate the matrix file: operating systems (rows) x build configurations.

Validation is pydantic's; this module adds what a YAML user needs on top: the
line of every error, duplicate keys (PyYAML silently keeps the last one), and
cross-references between rows and configurations.
"""

from __future__ import annotations

import json
import os
import platform
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleetbake.errors import UsageError
from fleetbake.pipeline import arches as arches_mod
from fleetbake.pipeline.modules import OPTIONAL_MODULES

DEFAULT_MATRIX = "matrix.yml"


class MatrixError(UsageError):
    """One line: `file:line: field: reason`."""

    def __init__(self, path: str | Path, line: int | None, field: str, reason: str):
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")


# Values end up in a Dockerfile, a shell script or a command line, so each kind
# gets the narrowest pattern that still admits every real value.
def _pattern(regex: str, what: str):
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not a safe {what} (allowed: {regex})")
        return value

    return AfterValidator(check)


class _Problem(ValueError):
    """A validator's complaint about a part of its value: `at` extends the error's location."""

    def __init__(self, reason: str, *at: str | int):
        super().__init__(reason)
        self.at = at


def _one_line(value: str) -> str:
    if not value.isprintable() or len(value) > 200:
        raise ValueError("must be one line of at most 200 printable characters")
    return value


def _not_all(value: str) -> str:
    # `--os all` / `--config all` mean every one: a row or configuration so named could never be picked alone.
    if value == "all":
        raise ValueError("'all' is reserved (--os all, --config all)")
    return value


Name = Annotated[str, _pattern(r"[a-z0-9][a-z0-9.-]{0,62}", "name")]
RowName = Annotated[Name, AfterValidator(_not_all)]
ConfigName = Annotated[Name, AfterValidator(_not_all)]
Text = Annotated[str, AfterValidator(_one_line)]
EnvValue = Annotated[str, _pattern(r"[A-Za-z0-9_.,:=+/@%-]*", "environment value")]
ImageRef = Annotated[
    str, _pattern(r"[a-z0-9]+(?:[._/:-][A-Za-z0-9]+)*(?:@sha256:[0-9a-f]{64})?", "image reference")
]
Url = Annotated[str, _pattern(r"https?://[A-Za-z0-9._~:/%-]+", "mirror URL")]
PythonVersion = Annotated[str, _pattern(r"3\.[0-9]{1,2}", "Python version")]


def _source_spec(value: str) -> str:
    """Debian's source archive (through apt-get), or a python.org release tarball (any host, Windows too)."""
    if re.fullmatch(r"debian:[a-z]+/python3\.[0-9]+", value):
        return value
    release = re.fullmatch(r"https://www\.python\.org/ftp/python/(3\.[0-9]+\.[0-9]+)/Python-(3\.[0-9]+\.[0-9]+)"
                           r"((?:a|b|rc)[0-9]+)?\.tgz", value)
    if not release:
        raise ValueError(f"{value!r} is not a CPython source (debian:SUITE/python3.N, or "
                         "https://www.python.org/ftp/python/X.Y.Z/Python-X.Y.Z.tgz)")
    if release.group(2) != release.group(1):
        raise ValueError(f"{value!r}: the file's version is not its folder's ({release.group(1)})")
    return value


SourceSpec = Annotated[str, AfterValidator(_source_spec)]


# --- user -------------------------------------------------------------------

# create-user.sh keeps an account that already exists as it is, and the
# entrypoint drops to whatever account `user` names: so `user: daemon` (or
# `ubuntu`, uid 1000 in ubuntu:24.04) would run the worker with that account's
# files and rights. Refused: the accounts and privileged groups that Debian,
# Ubuntu and Fedora bases (and the packages a row installs) create, and
# Windows' built-in accounts (names there are case-insensitive).
RESERVED_USERS = frozenset(
    """
    root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody nogroup
    messagebus adm operator ftp halt shutdown tss dbus polkitd ubuntu debian fedora admin sshd syslog uuidd
    tcpdump avahi rpc rpcuser nfsnobody chrony unbound geoclue pulse colord usbmux dnsmasq landscape pollinate
    lxd sudo wheel staff disk kmem shadow tty utmp docker audio video dialout cdrom floppy plugdev netdev input
    kvm render users mysql postgres
    administrator guest defaultaccount wdagutilityaccount containeradministrator containeruser system
    """.split()
)


def _user(value: str) -> str:
    if value.isdigit():
        raise ValueError(f"{value!r} is all digits: chown, su and docker --user would read it as a uid")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError(f"{value!r} is not a portable user name (allowed: [a-z_][a-z0-9_-]{{0,31}})")
    if value in RESERVED_USERS or value.startswith(("systemd-", "_")):
        raise ValueError(
            f"{value!r} is a system account or group of the base images: the build user must be a "
            "dedicated, unprivileged account (e.g. buildbot)"
        )
    return value


User = Annotated[str, AfterValidator(_user)]


# --- packages ---------------------------------------------------------------

# Their whole point is to let one user act as root: the build user must not
# be able to become root inside the image.
PRIVILEGE_PACKAGES = frozenset(
    "sudo sudo-ldap sudo-rs doas opendoas pkexec policykit-1 polkit polkitd polkitd-pkla super calife really "
    "gsudo".split()
)


def _package(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9+._-]*(=[A-Za-z0-9.+~:-]+)?", value):
        allowed = r"[A-Za-z0-9][A-Za-z0-9+._-]*(=[A-Za-z0-9.+~:-]+)?"
        raise ValueError(f"{value!r} is not a safe package name (allowed: {allowed})")
    name = value.partition("=")[0]
    if name.endswith("-"):
        raise ValueError(f"{value!r}: apt-get reads a trailing '-' as 'remove this package'")
    if name.lower() in PRIVILEGE_PACKAGES:
        raise ValueError(f"{name!r} lets the build user become root; a worker image must not contain it")
    return value


Package = Annotated[str, AfterValidator(_package)]


# --- configure flags --------------------------------------------------------

_FLAG_VALUE = r"[A-Za-z0-9_.,:=+/@%-]*"
# Variables CPython's configure reads ("Some influential environment
# variables"), and the <MODULE>_CFLAGS / <MODULE>_LIBS overrides of its
# pkg-config checks. Not CONFIG_SITE or CONFIG_SHELL (configure runs them as
# shell code) nor HOSTRUNNER (it would run in place of ./python).
CONFIGURE_VARIABLES = frozenset(
    "CC CXX CPP CXXCPP LD AR RANLIB CFLAGS CPPFLAGS CXXFLAGS LDFLAGS LIBS OPT CFLAGS_NODIST LDFLAGS_NODIST "
    "PKG_CONFIG PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PROFILE_TASK BOLT_INSTRUMENT_FLAGS BOLT_APPLY_FLAGS".split()
)
# verify passes --prefix itself and tests (or makes read-only) that tree: with
# another installation directory the installed configuration tests another one.
_INSTALL_DIRS = (
    "prefix exec-prefix bindir sbindir libexecdir sysconfdir sharedstatedir localstatedir runstatedir libdir "
    "includedir oldincludedir datarootdir datadir infodir localedir mandir docdir htmldir dvidir pdfdir psdir "
    "srcdir enable-framework".split()
)
# Options after which configure does not configure this image (autoconf also
# takes any unambiguous abbreviation of them, as of the ones above).
_NOT_CONFIGURING = {
    "help": "prints its help and exits", "version": "prints its version and exits",
    "no-create": "stops before writing the Makefile", "no-recursion": "skips the subdirectories",
    "norecursion": "skips the subdirectories", "cache-file": "takes results from a cache file, not this image",
    "config-cache": "takes results from a cache file, not this image",
}


def _flag_key(value: str) -> str:
    """What a flag sets: --enable-x and --disable-x set the same thing."""
    name = value.partition("=")[0]
    for on, off in (("--enable-", "--disable-"), ("--with-", "--without-")):
        if name.startswith(off):
            return on + name.removeprefix(off)
    return name


def _flag(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.,:=+/@%-]+", value):
        raise ValueError(f"{value!r} is not a safe configure flag (allowed: [A-Za-z0-9_.,:=+/@%-]+)")
    option = re.fullmatch(rf"--(enable|disable|with|without)-[a-z0-9][a-z0-9_-]*(={_FLAG_VALUE})?", value)
    variable = re.fullmatch(rf"([A-Z][A-Z0-9_]*)=({_FLAG_VALUE})", value)
    abbreviation = value.partition("=")[0].removeprefix("--") if value.startswith("--") else ""
    # autoconf accepts any unambiguous abbreviation (--pre for --prefix).
    if abbreviation and any(o.startswith(abbreviation) for o in _INSTALL_DIRS):
        raise ValueError(f"{value!r}: verify sets --prefix itself; another installation directory would test another tree")
    for option_name, why in _NOT_CONFIGURING.items():
        if abbreviation and option_name.startswith(abbreviation):
            raise ValueError(f"{value!r}: with it configure {why}")
    if option:
        return value
    if variable:
        var = variable.group(1)
        if var in CONFIGURE_VARIABLES or re.fullmatch(r"[A-Z][A-Z0-9]*_(CFLAGS|LIBS)", var):
            return value
        known = ", ".join(sorted(CONFIGURE_VARIABLES))
        raise ValueError(f"{value!r}: {var} is not a configure variable (known: {known}, <MODULE>_CFLAGS, <MODULE>_LIBS)")
    raise ValueError(
        f"{value!r} is not a configure feature option (--enable-X, --disable-X, --with-X, --without-X, "
        f"optionally =VALUE with VALUE {_FLAG_VALUE}) or VAR=VALUE"
    )


def _flags(values: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for index, value in enumerate(values):
        key = _flag_key(value)
        if key in seen:
            first = values[seen[key]]
            raise _Problem(f"{value!r} sets what {first!r} sets: configure keeps the last, the record would show both", index)
        seen[key] = index
    return values


Flag = Annotated[str, AfterValidator(_flag)]
Flags = Annotated[list[Flag], AfterValidator(_flags)]


# --- environment ------------------------------------------------------------

# Names a configuration's `env` may not set: each would change what is being
# tested or how verify's sandbox behaves, while the record shows the usual steps.
_ENV_REFUSED = [
    (r"LD_.*|GCONV_PATH|OPENSSL_(CONF|ENGINES|MODULES)", "it loads other code into every program the build runs"),
    (r"_?PYTHON.*", "it changes which interpreter, standard library or tests run"),
    (
        r"PATH|SHELL|BASH_ENV|ENV|IFS|CDPATH|SHELLOPTS|BASHOPTS|PS4|PROMPT_COMMAND|CONFIG_SHELL|CONFIG_SITE"
        r"|MAKEFLAGS|MFLAGS|GNUMAKEFLAGS|MAKEFILES|MAKELEVEL",
        "it changes which commands or shell code the build steps run",
    ),
    (r"HOME|USER|LOGNAME|PWD|TMPDIR|TMP|TEMP", "verify's sandbox sets it (the build user's account, the tmpfs /tmp)"),
    (r"TERM|DISPLAY|XAUTHORITY", "verify sets it for the curses and tkinter tests (TERM=xterm, Xvfb)"),
    (r"(BUILDBOT|WORKER|FLEETBAKE).*",
     "it is reserved for the worker and fleetbake (BUILDBOT=1 tells the tests they run on a buildbot)"),
]


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ValueError(f"{value!r} is not a safe environment variable name (allowed: [A-Z_][A-Z0-9_]*)")
    for regex, why in _ENV_REFUSED:
        if re.fullmatch(regex, value):
            raise ValueError(f"{value} may not be set: {why}")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


# --- smoke tests ------------------------------------------------------------


def _test_name(value: str) -> str:
    # Anything else (say `-x`, `--fromfile`) would be a regrtest option, not a test.
    if not re.fullmatch(r"(test\.)?test_[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", value) or len(value) > 100:
        raise ValueError(f"{value!r} is not a regrtest test name (test_xxx or test.test_xxx)")
    return value


def _smoke(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("is empty: `python -m test` without test names runs the whole test suite")
    seen: set[str] = set()
    for index, value in enumerate(values):
        name = value.removeprefix("test.")
        if name in seen:
            raise _Problem(f"{value!r} is listed twice", index)
        seen.add(name)
    return values


Smoke = Annotated[list[Annotated[str, AfterValidator(_test_name)]], AfterValidator(_smoke)]


# --- the rest -----------------------------------------------------------------


def _worker_version(value: str) -> str:
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]+){1,2}(?:[a-z]+[0-9]*)?", value):
        raise ValueError(f"{value!r} is not a buildbot-worker version (like 4.3.0)")
    # The image's buildbot.tac passes maxRetries and delete_leftover_dirs (the 4.x Worker API).
    if int(value.split(".")[0]) < 4:
        raise ValueError(f"{value!r}: the image's buildbot.tac needs buildbot-worker 4.0 or later")
    return value


def _optional_module(value: str) -> str:
    if value not in OPTIONAL_MODULES:
        raise ValueError(f"{value!r} is not an optional module verify checks (known: {', '.join(OPTIONAL_MODULES)})")
    return value


def _reason_text(value: str) -> str:
    _one_line(value)
    if len(value.split()) < 2:
        raise ValueError(f"{value!r}: say why in a few words")
    return value


OptionalModule = Annotated[str, AfterValidator(_optional_module)]
Reason = Annotated[str, AfterValidator(_reason_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# The fleet's Windows builders (master/custom/factories.py): Tools\\buildbot\\build.bat -p x64 <build>,
# test.bat -p x64 <test>. Only options that choose what is built and run: verify fetches the externals
# itself (so not -E) and picks the platform (-p x64).
# build.bat's -c, and the free-threaded build; the other options would build something the plan does not
# test (--pgo, -c PGInstrument: another interpreter; --no-ssl and the like: modules verify imports).
WINDOWS_BUILD_FLAGS = {"--disable-gil": "free-threaded build"}
WINDOWS_CONFIGURATIONS = ("Debug", "Release")
WINDOWS_TEST_FLAGS = {"+d": "runs python.exe, the release build", "--disable-gil": "runs python3.Nt, the free-threaded one"}


class Windows(_Strict):
    """How the fleet's Windows builders build and test this configuration."""

    build: list[str] = []
    test: list[str] = []
    # The fleet's Windows factories keep the 1200 s per-test timeout unless they say otherwise.
    timeout_factor: float = Field(default=1.0, ge=0.25, le=10)

    @model_validator(mode="after")
    def _meaningful(self) -> Windows:
        build, index = {}, 0
        while index < len(self.build):
            flag = self.build[index]
            if flag in build:
                raise _Problem(f"{flag!r} is listed twice", "build", index)
            if flag == "-c":
                value = self.build[index + 1] if index + 1 < len(self.build) else ""
                if value not in WINDOWS_CONFIGURATIONS:
                    raise _Problem(f"-c takes {' or '.join(WINDOWS_CONFIGURATIONS)} here, not {value!r}", "build", index)
                build["-c"] = value
                index += 2
                continue
            if flag not in WINDOWS_BUILD_FLAGS:
                raise _Problem(f"{flag!r} is not a build.bat option verify passes (known: -c Debug|Release, "
                               f"{', '.join(WINDOWS_BUILD_FLAGS)}; -p and -E are verify's own)", "build", index)
            build[flag] = ""
            index += 1
        for index, flag in enumerate(self.test):
            if flag not in WINDOWS_TEST_FLAGS:
                raise _Problem(f"{flag!r} is not a test.bat option verify passes (known: {', '.join(WINDOWS_TEST_FLAGS)})",
                               "test", index)
            if flag in self.test[:index]:
                raise _Problem(f"{flag!r} is listed twice", "test", index)
        # test.bat runs the interpreter that build.bat built: python_d.exe unless +d, python3.Nt with --disable-gil.
        debug = build.get("-c", "Debug") == "Debug"
        if debug == ("+d" in self.test):
            raise _Problem("a Debug build is tested without +d, any other with +d (test.bat would run an "
                           "interpreter that was not built)", "test")
        if ("--disable-gil" in build) != ("--disable-gil" in self.test):
            raise _Problem("--disable-gil goes in both build and test, or in neither", "test")
        return self


class Configuration(_Strict):
    description: Text = ""
    configure: Flags = []
    env: dict[EnvName, EnvValue] = {}
    install: bool = False
    smoke: Smoke | None = None
    requires_python: PythonVersion | None = None
    # int(1200 s x factor) is regrtest's --timeout, which reads 0 as "no timeout at all".
    timeout_factor: float = Field(default=1.0, ge=0.25, le=10)
    # Set where the Windows row can build it: the fleet's Windows builder flags (configure is Unix's).
    windows: Windows | None = None


class Bootstrap(_Strict):
    suite: Name
    mirror: Url
    security_mirror: Url | None = None


InstanceType = Annotated[str, _pattern(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "instance type")]
AmiNameFilter = Annotated[str, _pattern(r"[A-Za-z0-9_.*-]+", "AMI name filter")]


class AmiArch(_Strict):
    """One architecture's AMI build: its build instance and the source AMI's name filter."""

    instance_type: InstanceType
    source_ami_name: AmiNameFilter


def _ec2_architecture(instance_type: str) -> str:
    """What an EC2 instance type runs, from its family's name: Graviton's (arm64) carry a g right after the
    generation (m7g, c7gn, r8gd, t4g, im4gn, is4gen, x2gd, hpc7g, g5g), or are the first Graviton's a1."""
    family = instance_type.partition(".")[0]
    parts = re.fullmatch(r"([a-z]+)([0-9]+)([a-z]*)(-flex)?", family)
    if parts is None or parts.group(1) == "mac":
        raise ValueError(f"{instance_type!r}: not an instance type family this check knows (FAMILY.SIZE such as "
                         "m7i.large or m7g.large; no mac or u- hosts)")
    return "arm64" if parts.group(3).startswith("g") or family == "a1" else "x86_64"


_ARCH_SPELLINGS = re.compile(
    r"(?<![a-z0-9])(" + "|".join(sorted({re.escape(s) for a in arches_mod.ARCHES.values()
                                         for s in (a.name, a.machine, a.debian, a.ec2) if s}, key=len, reverse=True))
    + r")(?![a-z0-9])", re.IGNORECASE)


def _check_ami_arch(name: str, build: AmiArch, *at: str) -> None:
    """An architecture EC2 has, an instance type of that architecture, a name filter that names no other."""
    if name not in arches_mod.ARCHES:
        raise _Problem(f"{name!r} is not an architecture fleetbake builds (known: {', '.join(arches_mod.ARCHES)})", *at)
    arch = arches_mod.get(name)
    if not arch.ec2:
        has = ", ".join(a.name for a in arches_mod.ARCHES.values() if a.ec2)
        raise _Problem(f"EC2 has no {name} instances: an AMI is built for {has} only", *at)
    try:
        runs = _ec2_architecture(build.instance_type)
    except ValueError as exc:
        raise _Problem(str(exc), *at, "instance_type") from None
    if runs != arch.ec2:
        wanted = ("a Graviton one (a g after the generation: m7g, c7g, t4g, r7g...)" if arch.ec2 == "arm64"
                  else "an x86_64 one (m5, m7i, c7a... : no g after the generation)")
        raise _Problem(f"{build.instance_type} is {'a Graviton (arm64)' if runs == 'arm64' else 'an x86_64'} instance "
                       f"type: {name} needs {wanted}", *at, "instance_type")
    for said in _ARCH_SPELLINGS.finditer(build.source_ami_name):
        other = arches_mod.from_machine(said.group(1))  # EC2's spellings are uname -m's or OCI's
        if other.name != name:
            spelling = {other.name: arch.name, other.machine: arch.machine, other.debian: arch.debian}
            own = build.source_ami_name[:said.start()] + spelling.get(said.group(1).lower(), arch.name) \
                + build.source_ami_name[said.end():]
            what = said.group(1) if said.group(1).lower() == other.name else f"{said.group(1)} ({other.name})"
            raise _Problem(f"{build.source_ami_name} names {what}, not {name} (for {name}: {own})", *at, "source_ami_name")


class Ami(_Strict):
    """The AMI target (invoke packer --target ami): one amazon-ebs build per architecture under `arches`
    (OCI names: amd64, arm64), all provisioned alike. The flat form (instance_type and source_ami_name
    beside the rest, no `arches`) is amd64's alone."""

    instance_type: InstanceType | None = None
    source_ami_name: AmiNameFilter | None = None
    arches: dict[str, AmiArch] = {}
    source_ami_owner: Annotated[str, _pattern(r"[0-9]{12}|amazon", "AMI owner")]
    ssh_username: Name = "admin"
    volume_gb: int = Field(default=30, ge=30, le=16384)  # the devguide's 30 GB at least
    # The build user's uid on the AMI: cloud-init gives the image's login user
    # (ssh_username) uid 1000 at first boot, before Packer provisions.
    uid: int = Field(default=1001, ge=1001, le=60000)

    @model_validator(mode="after")
    def _builds_fit(self) -> Ami:
        if self.arches:
            for field in ("instance_type", "source_ami_name"):
                if field in self.model_fields_set:
                    raise _Problem(f"with arches, each architecture sets its own (arches.<arch>.{field})", field)
        elif self.source_ami_name is None:
            raise _Problem("required field is missing (or give each architecture its own under arches)",
                           "source_ami_name")
        for name, build in self.builds.items():
            _check_ami_arch(name, build, *(("arches", name) if self.arches else ()))
        return self

    @property
    def builds(self) -> dict[str, AmiArch]:
        """Architecture (OCI name) -> its build instance and source AMI, in the matrix's order."""
        if self.arches:
            return dict(self.arches)
        return {"amd64": AmiArch(instance_type=self.instance_type or "m5.large", source_ami_name=self.source_ami_name)}

    def check_row_arches(self, arches: list[str]) -> None:
        """Only the row's own architectures get an AMI (Row calls this: the row's arches are not the AMI's to see)."""
        for name in self.builds:
            if name not in arches:
                raise _Problem(f"{name} is not one of the row's arches ({', '.join(arches)})",
                               "ami", *(("arches", name) if self.arches else ()))


class Resources(_Strict):
    """What one worker of this row gets (the Kubernetes manifest's requests, equal to its limits: invoke k8s)."""

    # The devguide asks for 2 CPUs at least; whole CPUs, so that make -j and regrtest -j see what they get.
    cpus: int = Field(default=2, ge=2, le=256)
    # Whole GiB: the README's `docker run --memory 8g`; less and the test suite's big-memory tests fail.
    memory_gb: int = Field(default=8, ge=2, le=1024)
    # The PersistentVolumeClaims: the devguide's 30 GB at least for /buildarea; ccache's own (CCACHE_MAXSIZE
    # is set one GiB below it, so the cache never fills its volume).
    buildarea_gb: int = Field(default=30, ge=30, le=16384)
    ccache_gb: int = Field(default=6, ge=2, le=1024)


# What a base's tag says: a bookworm root file system imported as debian:13 would be a lie.
RELEASES = {
    "debian": {"11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"},
    "ubuntu": {"20.04": "focal", "22.04": "jammy", "24.04": "noble", "24.10": "oracular", "25.04": "plucky",
               "25.10": "questing"},
}
RUNNERS = {"windows": "windows-2022"}  # every other family builds on ubuntu-24.04


def _arch(value: str) -> str:
    if value not in arches_mod.ARCHES:
        raise ValueError(f"{value!r} is not an architecture fleetbake builds (known: {', '.join(arches_mod.ARCHES)}; "
                         "OCI's spelling: arm64, not aarch64; ppc64le, not ppc64el)")
    return value


ArchName = Annotated[str, AfterValidator(_arch)]


class Row(_Strict):
    family: Literal["debian", "fedora", "windows"]
    # Where the nightly workflow builds it (a GitHub-hosted runner label).
    runner: Literal["ubuntu-24.04", "windows-2022"] = "ubuntu-24.04"
    base: ImageRef
    bootstrap: Bootstrap | None = None
    packages: list[Package] = Field(min_length=1)
    extra_packages: list[Package] = []
    worker_version: Annotated[str, AfterValidator(_worker_version)] = "4.3.0"
    user: User = "buildbot"
    uid: int = Field(default=1000, ge=1000, le=60000)
    configurations: list[Name] = Field(min_length=1)
    # The architectures it is built for (OCI's names); the first is the one a host of none of them builds.
    arches: list[ArchName] = Field(default=["amd64"], min_length=1)
    cpython: SourceSpec | None = None
    ami: Ami | None = None
    resources: Resources = Resources()
    # Optional modules that may stay unbuilt on this row: module -> reason.
    missing_ok: dict[OptionalModule, Reason] = {}
    # The row's own smoke tests, for configurations that name none (Windows has no curses or fcntl).
    smoke: Smoke | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Row:
        runner = RUNNERS.get(self.family, "ubuntu-24.04")
        if self.runner != runner:
            raise _Problem(f"family {self.family} builds on {runner}, not {self.runner}", "runner")
        if self.family == "windows" and self.missing_ok:
            raise _Problem("the Windows plan imports one fixed list of modules every Windows image must build: "
                           "it takes no missing_ok", "missing_ok")
        if self.family == "windows" and self.cpython and self.cpython.startswith("debian:"):
            raise _Problem(f"{self.cpython} is fetched with apt-get, which the {runner} runner does not have: "
                           "use a python.org release tarball (https://www.python.org/ftp/python/X.Y.Z/Python-X.Y.Z.tgz)",
                           "cpython")
        if self.bootstrap is not None:
            _check_bootstrap(self.family, self.base, self.bootstrap.suite)
        offered = arches_mod.offered(self.base)
        for index, arch in enumerate(self.arches):
            if arch in self.arches[:index]:
                raise _Problem(f"{arch!r} is listed twice", "arches", index)
            if offered is not None and arch not in offered:
                raise _Problem(f"{self.base} is not published for {arch} (it is for {', '.join(offered)})", "arches", index)
            if offered is None and arch != "amd64":
                raise _Problem(f"fleetbake does not know which architectures {self.base} offers: "
                               "only amd64 is allowed (fleetbake/pipeline/arches.py OFFERED lists the known bases)",
                               "arches", index)
        if self.ami is not None:
            self.ami.check_row_arches(self.arches)
        return self


def _check_bootstrap(family: str, base: str, suite: str) -> None:
    if family != "debian":
        raise _Problem(f"bootstrap runs mmdebstrap, for the debian family only (this row is {family})", "bootstrap")
    if "@" in base:
        raise _Problem(f"an imported root file system cannot have the digest {base} pins", "bootstrap")
    distro, _, tag = base.rpartition("/")[2].partition(":")
    if distro not in RELEASES or not tag:
        raise _Problem(f"{base!r}: a bootstrapped base is named debian:TAG or ubuntu:TAG (or REPO/debian:TAG)", "base")
    if tag[0].isdigit() and tag not in RELEASES[distro]:
        raise _Problem(f"{base}: unknown {distro} release {tag} (known: {', '.join(RELEASES[distro])}); "
                       "tag it with the suite name instead", "base")
    says = RELEASES[distro].get(tag, tag)
    if suite != says:
        raise _Problem(f"{suite!r} is not what {base} says ({says})", "bootstrap", "suite")
    if any(suite in releases.values() for other, releases in RELEASES.items() if other != distro):
        raise _Problem(f"{suite!r} is not a {distro} suite", "bootstrap", "suite")


class _Schema(_Strict):
    smoke: Smoke | None = None
    configurations: dict[ConfigName, Configuration] = Field(min_length=1)
    rows: dict[RowName, Row] = Field(min_length=1)


@dataclass(frozen=True)
class RowView:
    """A row with its name, its resolved configurations and the architecture it is taken for."""

    name: str
    spec: Row
    configurations: dict[str, Configuration]
    # The OCI name; a row is taken for the host's own architecture unless told otherwise (`on`).
    arch: str = ""

    def __post_init__(self):
        if not self.arch:
            native = arches_mod.from_machine(platform.machine())
            object.__setattr__(self, "arch", native.name if native and native.name in self.spec.arches
                               else self.spec.arches[0])

    @property
    def architecture(self) -> arches_mod.Arch:
        return arches_mod.get(self.arch)

    @property
    def platform(self) -> str:
        """OCI's platform of the row's image on its architecture: linux/arm64/v8; windows/amd64 for a Windows row."""
        name = "windows" if self.spec.family == "windows" else "linux"
        return "/".join(part for part in (name, self.arch, self.architecture.variant) if part)

    @property
    def engine_platform(self) -> str | None:
        """What the engine is asked to pull and build for: the row's platform; None for a Windows row, whose
        engine takes its own (as before architectures)."""
        return None if self.spec.family == "windows" else self.platform

    def on(self, arch: str) -> RowView:
        """The row taken for another of its architectures."""
        return replace(self, arch=arch)

    @property
    def all_packages(self) -> list[str]:
        return list(dict.fromkeys([*self.spec.packages, *self.spec.extra_packages]))

    def to_json(self) -> dict[str, Any]:
        return {
            "os": self.name,
            "family": self.spec.family,
            "base": self.spec.base,
            "worker_version": self.spec.worker_version,
            "runner": self.spec.runner,
            "configurations": list(self.configurations),
            "arches": list(self.spec.arches),
            # Where the nightly builds each: a native runner, or "qemu" (the row's runner, under emulation).
            "arch_runners": {name: arches_mod.get(name).runner for name in self.spec.arches},
        }


@dataclass(frozen=True)
class Matrix:
    path: Path
    rows: dict[str, RowView]
    text: str  # the file as read, for input hashing

    def select(self, os_name: str | None, arch: str | None = None) -> list[RowView]:
        """`all` (or None) gives every row; otherwise the named one. Each is taken for `arch`: None is the
        host's own (or the row's first), `all` every architecture of the row; a named one skips the rows of `all`
        that lack it, and is an error for a named row."""
        if os_name in (None, "all"):
            rows = list(self.rows.values())
        elif os_name not in self.rows:
            raise MatrixError(
                self.path, None, "--os", f"unknown row {os_name!r} (known: {', '.join(self.rows)})"
            )
        else:
            rows = [self.rows[os_name]]
        if arch is None:
            return rows
        if arch == "all":
            return [row.on(name) for row in rows for name in row.spec.arches]
        known = sorted({name for row in rows for name in row.spec.arches}, key=list(arches_mod.ARCHES).index)
        if arch not in known:
            where = f"row {rows[0].name} is" if len(rows) == 1 else "the rows are"
            raise MatrixError(self.path, None, "--arch",
                              f"{where} not built for {arch!r} (known: {', '.join(known)}, or all)")
        return [row.on(arch) for row in rows if arch in row.spec.arches]

    def one(self, os_name: str, arch: str | None = None) -> RowView:
        """The named row, for tasks that work on a single one."""
        if os_name in (None, "all"):
            raise MatrixError(self.path, None, "--os", f"this task takes one row, not 'all' (known: {', '.join(self.rows)})")
        if arch == "all":
            raise MatrixError(self.path, None, "--arch", "this task takes one architecture, not 'all'")
        return self.select(os_name, arch)[0]

    def configurations(self, row: RowView, config: str | None) -> list[str]:
        if config in (None, "all"):
            return list(row.configurations)
        if config not in row.configurations:
            raise MatrixError(
                self.path,
                None,
                "--config",
                f"row {row.name} has no configuration {config!r} (known: {', '.join(row.configurations)})",
            )
        return [config]

    def to_json(self) -> str:
        # One line: CI writes it straight into $GITHUB_OUTPUT.
        return json.dumps([r.to_json() for r in self.rows.values()], separators=(",", ":"))

    def table(self) -> str:
        names = list(dict.fromkeys(c for r in self.rows.values() for c in r.configurations))
        header = ["row", "base", "worker", *names]
        lines = [header]
        for row in self.rows.values():
            marks = ["x" if c in row.configurations else "-" for c in names]
            lines.append([row.name, row.spec.base, row.spec.worker_version, *marks])
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


# --- YAML with line numbers -------------------------------------------------


# Any file can be handed to --matrix: these bound what reading it may cost.
MAX_BYTES = 1 << 20  # the real matrix is a few KiB
MAX_DEPTH = 32  # the real matrix nests 5 deep
MAX_NODES = 100_000  # counting an alias's nodes each time it is used (billion laughs)
# A matrix holds strings, numbers, booleans, lists and mappings (and `<<` merges).
_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


class _Refused(Exception):
    def __init__(self, node_or_mark: Any, reason: str, field: str = ""):
        mark = getattr(node_or_mark, "start_mark", node_or_mark)
        self.line, self.reason, self.field = (mark.line + 1 if mark else None), reason, field


class _Loader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML's composer recurses once per nesting level: stop long before Python's limit.
        event = self.peek_event()
        if self.depth >= MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        # `!!bool x`, `!!timestamp x` ... make PyYAML raise plain Python errors; only !!str is of use.
        if getattr(event, "tag", None) not in (None, "!", "tag:yaml.org,2002:str"):
            tag = event.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(event.start_mark, f"explicit YAML tag {tag} (a matrix uses none but !!str)")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _walk(node: yaml.Node, path: str, file: Path, loader: _Loader, seen: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """Refuse duplicate keys, odd values and oversized alias expansions; return (nodes, height).

    Aliases share nodes, so each is walked once and its size remembered: the
    totals count what the constructor and pydantic would see, at no more cost.
    An alias only points back to a node already walked (or, in a cycle, being
    walked), so the recursion stays within the composer's MAX_DEPTH.
    """
    if id(node) in seen:
        size, height = seen[id(node)]
        if size < 0:
            raise _Refused(node, "an alias refers to the node that contains it", path)
        return size, height
    seen[id(node)] = (-1, 0)  # on the current path: meeting it again is a cycle
    if node.tag not in _TAGS:
        what = "a date" if node.tag.endswith(":timestamp") else f"a {node.tag.rpartition(':')[2]} value"
        raise _Refused(node, f"{what} is not a matrix value (quote it to make it a string)", path)
    size, height = 1, 0
    children: list[tuple[str, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line = key.start_mark.line + 1
            if name in first:
                raise MatrixError(file, line, path or "(top)", f"duplicate key {name!r} (first on line {first[name]})")
            first[name] = line
            children += [(path, key), (_join(path, name), value)]
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(node.value)]
    elif node.tag.endswith((":int", ":float")):
        # The resolver takes `0x_` or a 5000-digit number for a number that int() then refuses.
        try:
            loader.construct_object(node)
        except ValueError:
            shown = node.value if len(node.value) <= 20 else node.value[:20] + "..."
            raise _Refused(node, f"{shown!r} is not a number that can be read", path) from None
    for child_path, child in children:
        child_size, child_height = _walk(child, child_path, file, loader, seen)
        size, height = size + child_size, max(height, child_height + 1)
        if size > MAX_NODES:
            raise _Refused(node, f"more than {MAX_NODES} values once aliases are expanded", path)
        if height > MAX_DEPTH:  # name the child that is too deep, not the top
            raise _Refused(child, f"nested more than {MAX_DEPTH} levels deep (counting aliases)", child_path)
    seen[id(node)] = (size, height)
    return size, height


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _line_of(root: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The line of the deepest node that `loc` reaches."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _field(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if part != "[key]":  # pydantic's marker for "the key itself", which the path already ends with
            path = _join(path, part)
    return path


def _reason(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"].endswith("_type") or error["type"] == "model_type":
        return f"{message.lower()}, got {type(error['input']).__name__}"
    return message


def _read(path: Path) -> str:
    """The file's text: a regular file of at most MAX_BYTES, in UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise MatrixError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise MatrixError(path, None, "", "is a directory, not a matrix file")
        if not stat.S_ISREG(mode):
            raise MatrixError(path, None, "", "not a regular file (a FIFO or device may never end)")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_BYTES + 1)  # never more, whatever size the file claims
    except OSError as exc:
        raise MatrixError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise MatrixError(path, None, "", f"larger than {MAX_BYTES >> 20} MiB: not a matrix file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MatrixError(path, line, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _compose(path: Path, text: str) -> tuple[yaml.Node, Any]:
    """The document's node graph, checked, and the data built from it."""
    loader = None
    try:
        loader = _Loader(text)  # checks for non-printable characters right away
        root = loader.get_single_node()
        if root is None:
            raise MatrixError(path, None, "", "file is empty")
        _walk(root, "", path, loader, {})
        if not isinstance(root, yaml.MappingNode):
            raise MatrixError(path, root.start_mark.line + 1, "", "top level must be a mapping")
        return root, loader.construct_document(root)
    except _Refused as exc:
        raise MatrixError(path, exc.line, exc.field, exc.reason) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise MatrixError(path, line, "", f"malformed YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise MatrixError(path, line, "", f"malformed YAML: character #x{exc.character:04x} is not allowed") from None
    except yaml.YAMLError as exc:
        raise MatrixError(path, None, "", f"malformed YAML: {str(exc).splitlines()[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load(path: str | Path = DEFAULT_MATRIX) -> Matrix:
    path = Path(path)
    text = _read(path)
    root, data = _compose(path, text)
    try:
        schema = _Schema.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        problem = (error.get("ctx") or {}).get("error")
        if isinstance(problem, _Problem):
            loc += problem.at
        raise MatrixError(path, _line_of(root, loc), _field(loc), _reason(error)) from None
    return Matrix(path=path, rows=_resolve(schema, path, root), text=text)


def _resolve(schema: _Schema, path: Path, root: yaml.Node) -> dict[str, RowView]:
    for name, config in schema.configurations.items():
        if not (config.smoke or schema.smoke) and not all(row.smoke for row in schema.rows.values()):
            loc = ("configurations", name)
            raise MatrixError(path, _line_of(root, loc), _field(loc), "no smoke tests (set `smoke`)")
    rows = {}
    for row_name, row in schema.rows.items():
        configs = {}
        for index, config_name in enumerate(row.configurations):
            loc = ("rows", row_name, "configurations", index)
            if config_name not in schema.configurations:
                known = ", ".join(schema.configurations)
                raise MatrixError(
                    path, _line_of(root, loc), _field(loc), f"unknown configuration {config_name!r} (known: {known})"
                )
            if config_name in configs:
                raise MatrixError(path, _line_of(root, loc), _field(loc), f"{config_name!r} is listed twice")
            config = schema.configurations[config_name]
            if row.family == "windows" and config.windows is None:
                raise MatrixError(path, _line_of(root, loc), _field(loc),
                                  f"configuration {config_name!r} has no `windows` flags: the fleet's Windows builders "
                                  "do not run configure, so verify would not know how to build it")
            if row.family == "windows" and config.install:
                raise MatrixError(path, _line_of(root, loc), _field(loc),
                                  f"configuration {config_name!r} installs (make install): the fleet's Windows builders "
                                  "test the build tree, and so does verify")
            if config.smoke is None:
                smoke = row.smoke or schema.smoke
                if not smoke:
                    raise MatrixError(path, _line_of(root, loc), _field(loc),
                                      f"configuration {config_name!r} has no smoke tests here (set `smoke`)")
                config = config.model_copy(update={"smoke": list(smoke)})
            configs[config_name] = config
        rows[row_name] = RowView(row_name, row, configs)
    return rows
