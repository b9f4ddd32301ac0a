import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from fleetbake.errors import UsageError
from fleetbake.pipeline import cpython

PATCHLEVEL = b'#define PY_VERSION              "3.14.0a1+"\n'


def make_tree(root):
    (root / "Include").mkdir(parents=True)
    (root / "Include" / "patchlevel.h").write_bytes(PATCHLEVEL)
    (root / "configure").write_text("#!/bin/sh\n")
    return root


def make_tarball(path, top="Python-3.14.0a1"):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in ((f"{top}/configure", b"#!/bin/sh\n"), (f"{top}/Include/patchlevel.h", PATCHLEVEL)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_directory_and_tarball_sources(tmp_path):
    tree = cpython.resolve(str(make_tree(tmp_path / "cpython")), log=lambda _: None)
    assert tree.version == "3.14.0a1+" and tree.version_tuple == (3, 14) and not tree.is_tarball
    tarball = cpython.resolve(str(make_tarball(tmp_path / "Python.tgz")), log=lambda _: None)
    assert tarball.is_tarball and tarball.version == "3.14.0a1+" and len(tarball.sha256) == 64


@pytest.mark.parametrize("spec, message", [
    ("/nonexistent/source", "not a directory, tarball"),
    ("git:main;rm", "not a valid git ref"),
    ("debian:bookworm/perl", "expected debian:SUITE/python3.N"),
])
def test_bad_sources(spec, message):
    with pytest.raises(UsageError, match=message):
        cpython.resolve(spec, log=lambda _: None)


def test_a_non_cpython_tarball_is_refused(tmp_path):
    path = tmp_path / "other.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("other/README")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(UsageError, match="not a CPython release tarball"):
        cpython.resolve(str(path), log=lambda _: None)
    (tmp_path / "junk.tar").write_text("junk")
    with pytest.raises(UsageError, match="not a readable tarball"):
        cpython.resolve(str(tmp_path / "junk.tar"), log=lambda _: None)


def test_git_refs_are_fetched_once_and_cached(tmp_path, monkeypatch):
    repo = make_tree(tmp_path / "upstream")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], ["tag", "v3.14.0a1"]):
        subprocess.run(["git", "-C", str(repo), *command], check=True)
    monkeypatch.setenv("FLEETBAKE_CPYTHON_GIT", f"file://{repo}")
    monkeypatch.setenv("FLEETBAKE_CACHE", str(tmp_path / "cache"))
    messages = []
    first = cpython.resolve("git:v3.14.0a1", log=messages.append)
    assert first.version == "3.14.0a1+" and (first.path / "configure").is_file()
    second = cpython.resolve("git:v3.14.0a1", log=messages.append)
    assert second.path == first.path and "cached" in messages[-1]


# --- Debian's archive: apt-get with Debian's own keys, checked before any work ----------------------


@pytest.fixture
def debian_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cpython, "cache", lambda: tmp_path)
    return tmp_path


def test_without_apt_get_or_debians_keyring_fetching_is_refused_before_any_work(debian_cache, tmp_path, monkeypatch):
    from fleetbake.errors import CannotBuildHere

    monkeypatch.setattr(cpython.shutil, "which", lambda name: None)
    with pytest.raises(CannotBuildHere, match=r"^cannot fetch here: --cpython debian:trixie/python3.13 .* apt-get"):
        cpython.check_fetchable("debian:trixie/python3.13")
    monkeypatch.setattr(cpython.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(cpython, "DEBIAN_KEYRING", tmp_path / "missing.gpg")
    with pytest.raises(CannotBuildHere, match="missing.gpg, which is missing .apt-get install debian-archive-keyring"):
        cpython.check_fetchable("debian:trixie/python3.13")
    # A tarball already in the cache needs neither.
    monkeypatch.setattr(cpython.shutil, "which", lambda name: None)
    (debian_cache / "debian-trixie-python3.13").mkdir()
    (debian_cache / "debian-trixie-python3.13" / "python3.13_3.13.5.orig.tar.xz").write_bytes(b"")
    cpython.check_fetchable("debian:trixie/python3.13")
    cpython.check_fetchable("https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tgz")  # no apt needed


def test_apt_reads_debians_archive_with_debians_keyring_only(debian_cache, tmp_path, monkeypatch):
    keyring = tmp_path / "debian-archive-keyring.gpg"
    keyring.write_bytes(b"keys")
    monkeypatch.setattr(cpython, "DEBIAN_KEYRING", keyring)
    monkeypatch.setattr(cpython.shutil, "which", lambda name: f"/usr/bin/{name}")
    seen = []

    def fake_run(argv, *, cwd, **kwargs):
        sources = next(a for a in argv if a.startswith("-oDir::Etc::SourceList=")).split("=", 1)[1]
        seen.append((argv[-1], Path(sources).read_text()))
        if "source" in argv:
            (Path(cwd) / "python3.13_3.13.5.orig.tar.xz").write_bytes(b"")
            (Path(cwd) / "python3.13_3.13.5-2.dsc").write_bytes(b"")
        return ""

    monkeypatch.setattr(cpython.proc, "run", fake_run)
    tarball = cpython.debian_source("debian:trixie/python3.13", log=lambda _: None)
    line = f"deb-src [signed-by={keyring}] http://deb.debian.org/debian trixie main\n"
    assert seen == [("update", line), ("python3.13", line)]
    assert tarball.name == "python3.13_3.13.5.orig.tar.xz" and [p.name for p in tarball.parent.iterdir()] == [tarball.name]
