"""CPython sources for verification: a directory, a tarball, a URL, a git ref, or Debian's archive.

Downloads land in the cache (~/.cache/fleetbake/cpython) and are reused.
`debian:SUITE/PACKAGE` fetches a release tarball through apt's signed source
index (the `.orig.tar` is the upstream release), using private apt state so
the host's apt configuration is left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fleetbake import files, paths, proc
from fleetbake.errors import CannotBuildHere, FleetbakeError, UsageError

Log = Callable[[str], None]
DEFAULT_GIT_URL = "https://github.com/python/cpython.git"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_PY_VERSION = re.compile(rb'#define\s+PY_VERSION\s+"([^"]+)"')


@dataclass(frozen=True)
class Source:
    spec: str
    path: Path  # a directory with ./configure, or a tarball with one top-level directory
    version: str
    sha256: str | None = None  # tarballs only

    @property
    def is_tarball(self) -> bool:
        return self.path.is_file()

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(re.match(r"[0-9]+", minor).group(0))

    def to_json(self) -> dict[str, str | None]:
        return {"spec": self.spec, "path": str(self.path), "version": self.version, "sha256": self.sha256}


def cache() -> Path:
    path = paths.cache_dir() / "cpython"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve(spec: str, log: Log = print) -> Source:
    if spec.startswith("debian:"):
        return from_tarball(spec, debian_source(spec, log))
    if spec.startswith(("http://", "https://")):
        return from_tarball(spec, download(spec, log))
    if spec.startswith("git:"):
        return from_directory(spec, git_checkout(spec.removeprefix("git:"), log))
    path = Path(spec).expanduser()
    if path.is_dir():
        return from_directory(spec, path.resolve())
    if path.is_file():
        return from_tarball(spec, path.resolve())
    raise UsageError(
        f"--cpython {spec}: not a directory, tarball, http(s) URL, git:REF or debian:SUITE/PACKAGE"
    )


def check_fetchable(spec: str) -> None:
    """Refuse, before any work, a source this host cannot fetch by design: Debian's archive needs apt-get and
    Debian's archive keyring (an Ubuntu host trusts only Ubuntu's keys). A cached tarball needs neither."""
    debian = _debian_source_parts(spec)
    if debian is None or _orig_tarballs(debian[0], debian[2]):
        return
    if shutil.which("apt-get") is None:
        raise CannotBuildHere(f"cannot fetch here: --cpython {spec} comes from Debian's archive through apt-get, "
                              "which this host does not have; pass a release tarball, directory or URL instead")
    if not DEBIAN_KEYRING.is_file():
        raise CannotBuildHere(f"cannot fetch here: --cpython {spec}: apt checks Debian's archive against "
                              f"{DEBIAN_KEYRING}, which is missing (apt-get install debian-archive-keyring)")


def _debian_source_parts(spec: str) -> tuple[Path, str, str] | None:
    """(cache folder, suite, package) of `debian:SUITE/python3.N`, or None for any other spec."""
    match = re.fullmatch(r"debian:([a-z]+)/(python3\.[0-9]+)", spec)
    return (cache() / f"debian-{match.group(1)}-{match.group(2)}", *match.groups()) if match else None


def from_directory(spec: str, path: Path) -> Source:
    patchlevel = path / "Include" / "patchlevel.h"
    if not (path / "configure").is_file() or not patchlevel.is_file():
        raise UsageError(f"--cpython {spec}: {path} is not a CPython source tree (no configure or Include/patchlevel.h)")
    return Source(spec, path, _version(patchlevel.read_bytes(), spec))


def from_tarball(spec: str, path: Path) -> Source:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    try:
        with tarfile.open(path) as archive:
            member = next(
                (m for m in archive if m.name.count("/") == 2 and m.name.endswith("/Include/patchlevel.h")), None
            )
            if member is None:
                raise UsageError(f"--cpython {spec}: {path.name} is not a CPython release tarball (no Include/patchlevel.h)")
            data = archive.extractfile(member).read()
    except tarfile.TarError as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(f"--cpython {spec}: {path.name} is not a readable tarball ({reason})") from None
    return Source(spec, path, _version(data, spec), digest.hexdigest())


def _version(patchlevel: bytes, spec: str) -> str:
    match = _PY_VERSION.search(patchlevel)
    if not match:
        raise UsageError(f"--cpython {spec}: no PY_VERSION in Include/patchlevel.h")
    return match.group(1).decode()


def download(url: str, log: Log) -> Path:
    name = os.path.basename(urllib.parse.urlparse(url).path) or "cpython.tar"
    target = cache() / f"url-{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if target.is_file():
        log(f"cpython: cached {target}")
        return target
    log(f"cpython: downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            files.write_file(target, response.read())  # held in memory: a release tarball is tens of MB
    except OSError as exc:
        raise FleetbakeError(f"--cpython {url}: download failed: {exc}") from None
    return target


def git_checkout(ref: str, log: Log) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", ref) or ".." in ref:
        raise UsageError(f"--cpython git:{ref}: not a valid git ref")
    url = os.environ.get("FLEETBAKE_CPYTHON_GIT", DEFAULT_GIT_URL)
    key = hashlib.sha256(f"{url}\0{ref}".encode()).hexdigest()[:12]
    target = cache() / f"git-{key}-{ref.replace('/', '_')}"
    immutable = re.fullmatch(r"[0-9a-f]{40}|v[0-9][0-9a-z.]*", ref)  # a commit or a release tag
    if immutable and (target / "configure").is_file():
        log(f"cpython: cached checkout of {ref} in {target}")
        return target
    log(f"cpython: fetching {ref} from {url}")
    with files.staged_dir(target, prefix=".git-") as tmp:
        for step, command in (
            ("init", ["git", "init", "--quiet", tmp]),
            ("fetch", ["git", "-C", tmp, "fetch", "--quiet", "--depth=1", url, ref]),
            ("checkout", ["git", "-C", tmp, "checkout", "--quiet", "FETCH_HEAD"]),
        ):
            proc.run(command, timeout=600, what=f"--cpython git:{ref}: git {step}")
    return target


def debian_source(spec: str, log: Log) -> Path:
    """`debian:trixie/python3.13` -> the upstream tarball from Debian's source archive."""
    debian = _debian_source_parts(spec)
    if debian is None:
        raise UsageError(f"--cpython {spec}: expected debian:SUITE/python3.N")
    home, suite, package = debian
    found = _orig_tarballs(home, package)
    if found:
        log(f"cpython: cached {found[-1]}")
        return found[-1]
    check_fetchable(spec)
    mirror = os.environ.get("FLEETBAKE_DEBIAN_MIRROR", DEBIAN_MIRROR)
    state = home / ".apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    # Debian's own keys, whatever the host trusts: on an Ubuntu runner apt knows only Ubuntu's.
    (state / "sources.list").write_text(f"deb-src [signed-by={DEBIAN_KEYRING}] {mirror} {suite} main\n")
    options = [
        f"-oDir::Etc::SourceList={state}/sources.list",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={state}/lists",
        f"-oDir::Cache={state}/cache",
        "-oAPT::Sandbox::User=root",
        "-qq",
    ]
    log(f"cpython: fetching {package} from {mirror} {suite} (deb-src)")
    for step in (["update"], ["source", "--download-only", package]):
        proc.run(["apt-get", *options, *step], cwd=home, timeout=900, what=f"--cpython {spec}: apt-get {step[0]}")
    shutil.rmtree(state, ignore_errors=True)
    found = _orig_tarballs(home, package)
    if not found:
        raise FleetbakeError(f"--cpython {spec}: apt-get source gave no .orig.tar")
    for extra in home.iterdir():  # keep only the upstream tarball
        if extra not in found:
            extra.unlink()
    return found[-1]


def _orig_tarballs(directory: Path, package: str) -> list[Path]:
    return sorted(p for p in directory.glob(f"{package}_*.orig.tar.*") if p.suffix in (".gz", ".xz", ".bz2"))
