"""Verify a Windows image the way the fleet builds CPython on Windows.

python/buildmaster-config's BaseWindowsBuild / Windows64Build (master/custom/factories.py):
`Tools\\buildbot\\build.bat -p x64 <build flags>`, `python.bat -m test.pythoninfo`,
`Tools\\buildbot\\test.bat -p x64 -j2 <test flags> --junit-xml test-results.xml -jN --timeout T`,
then `Tools\\buildbot\\clean.bat -p x64`. build.bat fetches PCbuild's externals from the network
first; verify's container has none, so the host fetches them into the unpacked tree beforehand
(`prepare_tree`) and build.bat finds them in place. Runs only against a Windows Docker engine:
the nightly workflow's windows-2022 runner. None of it has run on Windows yet: the plan, the
container settings, the tree and the record are unit-tested on Linux.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from fleetbake import files, proc
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import cpython
from fleetbake.pipeline.matrix import Configuration

Log = Callable[[str], None]
BUILDAREA = "C:\\buildarea"
WORK = f"{BUILDAREA}\\cpython"
SOURCE = "C:\\src\\cpython"  # the prepared tree, mounted read-only
PLATFORM = ["-p", "x64"]
JUNIT = "test-results.xml"  # relative to WORK, as the fleet's test step writes it
TEST_TIMEOUT = 1200  # the fleet's TEST_TIMEOUT
# Extension modules PCbuild builds that a worker image must make possible: the ones built from the
# externals (ssl, sqlite3, bz2, lzma, ctypes, tkinter, decimal, expat) and the Windows-only ones.
MODULES = (
    "_ssl", "_hashlib", "_sqlite3", "_bz2", "_lzma", "_ctypes", "_tkinter", "_uuid", "_zoneinfo", "_decimal",
    "pyexpat", "_elementtree", "_multiprocessing", "_overlapped", "_socket", "select", "winsound", "_wmi",
    "_ctypes_test", "_testcapi",
)
# Windows containers have no capabilities, read-only root or pids limit to set: no network and a memory cap.
SANDBOX = dict(network_mode="none", mem_limit="8g")
# Keeps the container up for `docker exec`, instead of the worker entrypoint.
IDLE = ["powershell", "-NoLogo", "-NoProfile", "-Command", "Start-Sleep -Seconds 2147483"]


def plan(config: Configuration, resources: str, jobs: int) -> list[tuple[str, list[str]]]:
    """(step, argv) pairs; batch files run through cmd /c, as buildbot-worker runs them on Windows."""
    assert config.windows is not None, "the matrix gives every configuration of a Windows row its flags"
    flags = config.windows
    timeout = int(TEST_TIMEOUT * flags.timeout_factor)
    # No spaces: the import list passes through cmd and python.bat's %* unquoted.
    imports = "[__import__(m)for(m)in(__import__('sys').argv[1:])]"
    return [
        ("unpack", ["cmd", "/c", "xcopy", SOURCE, f"{WORK}\\", "/E", "/I", "/H", "/Q", "/Y"]),
        ("build", ["cmd", "/c", "Tools\\buildbot\\build.bat", *PLATFORM, *flags.build]),
        ("pythoninfo", ["cmd", "/c", "python.bat", "-m", "test.pythoninfo"]),
        ("modules", ["cmd", "/c", "python.bat", "-c", imports, *MODULES]),
        ("tests", ["cmd", "/c", "Tools\\buildbot\\test.bat", *PLATFORM, "-j2", *flags.test, "--junit-xml", JUNIT,
                   f"-j{jobs}", "--timeout", str(timeout), f"-u{resources}", *(config.smoke or [])]),
        ("clean", ["cmd", "/c", "Tools\\buildbot\\clean.bat", *PLATFORM]),
    ]


def workdir(step: str) -> str:
    return BUILDAREA if step == "unpack" else WORK


def read_junit(api, cid: str) -> bytes | None:
    """The test step's JUnit file through `docker exec`, base64 on stdout (`docker cp` from a running Windows
    container works only under process isolation; exec under both)."""
    script = f"[Convert]::ToBase64String([IO.File]::ReadAllBytes('{WORK}\\{JUNIT}'))"
    exec_id = api.exec_create(cid, ["powershell", "-NoProfile", "-NonInteractive", "-Command", script])["Id"]
    stdout, _ = api.exec_start(exec_id, demux=True)  # stderr (warnings, progress records) kept apart
    if api.exec_inspect(exec_id)["ExitCode"] != 0 or not stdout:
        return None
    try:
        return base64.b64decode(stdout.strip(), validate=True)
    except ValueError:
        return None


def build_user(image_config: dict) -> str:
    """The image's own USER: builds run as Windows containers' unprivileged ContainerUser, never an administrator."""
    user = image_config.get("User") or ""
    if not user or user.lower() in ("containeradministrator", "administrator", "system"):
        raise UsageError(f"the Windows image runs as {user or 'ContainerAdministrator (no USER)'}: "
                         "verify builds as an unprivileged user (USER ContainerUser)")
    return user


def container_settings(image_config: dict) -> dict:
    return dict(user=build_user(image_config), entrypoint=IDLE, **SANDBOX)


# Authenticated Users: a container's ContainerUser may use a host folder only when its ACL lets them.
AUTHENTICATED_USERS = "*S-1-5-11"


def grant(folder: Path, rights: str) -> None:
    """Let the container's unprivileged user read ("RX") or change ("M") a host folder it gets mounted."""
    proc.run(["icacls", str(folder), "/grant", f"{AUTHENTICATED_USERS}:(OI)(CI){rights}", "/T", "/Q"], timeout=600,
             what=f"icacls {folder}")


def prepare_tree(source: cpython.Source, log: Log) -> Path:
    """The release tarball unpacked (top folder stripped) with PCbuild's externals fetched, cached by its hash."""
    if not source.is_tarball or not source.sha256:
        raise UsageError(f"--cpython {source.spec}: a Windows row is verified from a release tarball "
                         "(https://www.python.org/ftp/python/X.Y.Z/Python-X.Y.Z.tgz), not a directory")
    target = cpython.cache() / f"windows-{source.sha256[:16]}"
    done = target / ".fleetbake-externals"
    if done.is_file():
        log(f"cpython: cached tree with externals in {target}")
        return target
    with files.staged_dir(target, prefix=".windows-") as tmp:  # a failed fetch leaves no half tree
        log(f"cpython: unpacking {source.path.name}")
        unpack(source.path, tmp)
        log("cpython: fetching PCbuild's externals (build.bat would; the verify container has no network)")
        proc.run(["cmd", "/c", "PCbuild\\get_externals.bat"], cwd=tmp, timeout=1800, stream=log,
                 what=f"--cpython {source.spec}: PCbuild\\get_externals.bat")
        missing = [name for name in expected_externals((tmp / "PCbuild" / "get_externals.bat").read_text())
                   if not (tmp / "externals" / name).is_dir()]
        if missing:  # the batch file's exit code is only its last fetch's
            raise FleetbakeError(f"--cpython {source.spec}: PCbuild\\get_externals.bat left out {', '.join(missing)}")
        grant(tmp, "RX")
        files.write_text(tmp / done.name, f"{source.sha256}\n")
    return target


def expected_externals(get_externals: str) -> list[str]:
    """The folders get_externals.bat fetches by default: its unconditional ones and those a --no-X turns off
    (the IncludeXSrc ones are off unless asked for)."""
    found = []
    for match in re.finditer(r'^(?:if NOT "%(\w+)%"=="false"\s+)?set (libraries|binaries)=%\2%\s+(\S+)\s*$',
                             get_externals, flags=re.MULTILINE):
        if not (match.group(1) or "").endswith("Src"):
            found.append(match.group(3))
    return found


def has_extraction_filters() -> bool:
    """tarfile's extraction filters (PEP 706) came in Python 3.11.4; Debian 12's python3 is 3.11.2."""
    return hasattr(tarfile, "data_filter")


def unpack(tarball: Path, into: Path) -> None:
    """Extract without the top-level folder (tar --strip-components=1), refusing paths that leave `into`."""

    def stripped(member: tarfile.TarInfo) -> dict[str, str] | None:
        parts = PurePosixPath(member.name).parts[1:]
        if not parts:
            return None
        changes = {"name": "/".join(parts)}
        if member.islnk():
            changes["linkname"] = "/".join(PurePosixPath(member.linkname).parts[1:])
        return changes

    def strip(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        changes = stripped(member)
        return None if changes is None else tarfile.data_filter(member.replace(**changes, deep=False), dest)

    def checked(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        # A generator: extractall checks each member just before writing it, against the tree as it is then.
        for member in archive:
            changes = stripped(member)
            if changes is not None:
                member = copy.copy(member)
                for key, value in changes.items():
                    setattr(member, key, value)
                yield _data_member(member, str(into))

    try:
        with tarfile.open(tarball) as archive:
            if has_extraction_filters():
                archive.extractall(into, filter=strip)
            else:
                archive.extractall(into, members=checked(archive))
    except tarfile.TarError as exc:
        raise UsageError(f"--cpython {tarball.name}: cannot unpack: {str(exc).splitlines()[0]}") from None
    except KeyError as exc:  # tarfile before 3.11.4: a hard link to a member the archive does not have
        raise UsageError(f"--cpython {tarball.name}: cannot unpack: a hard link names {exc.args[0]!r}, which the "
                         "archive does not have") from None


def _data_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile.data_filter's checks and changes, for a Python without it (before 3.11.4): no absolute path, nothing
    outside dest, no link to outside it, no device or fifo, no setuid or group/other write, no owner from the archive.
    Changes the member in place (a copy) and returns it; a refusal is a tarfile.TarError."""
    dest = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([os.path.realpath(path), dest]) == dest

    name = member.name
    if os.path.isabs(name):
        raise tarfile.TarError(f"member {name!r} has an absolute path")
    if not inside(os.path.join(dest, name)):
        raise tarfile.TarError(f"{name!r} would be extracted outside the destination")
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            raise tarfile.TarError(f"{name!r} is a link to an absolute path")
        base = os.path.join(dest, os.path.dirname(name)) if member.issym() else dest
        if not inside(os.path.join(base, member.linkname)):
            raise tarfile.TarError(f"{name!r} would link to {member.linkname!r}, which is outside the destination")
    mode = member.mode & 0o755
    if member.isreg() or member.islnk():
        mode = (mode if mode & 0o100 else mode & ~0o111) | 0o600
    elif member.isdir():
        mode = 0o755  # data_filter leaves a folder's mode to the umask; this Python's chmod needs a number
    elif not member.issym():
        raise tarfile.TarError(f"{name!r} is a special file")
    member.mode = mode
    # This Python's chown needs numbers: the extracting user's own (it changes nothing unless run as root).
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    return member
